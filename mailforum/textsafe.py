"""Text from mail made safe to show: bidirectional controls, attachment names.

A display name or subject holding U+202E (RIGHT-TO-LEFT OVERRIDE) and its kind reverses
whatever follows it on the line: "evil\u202egnp.exe" reads as "evilexe.png", a name
followed by "via dev" swallows the list's name. In pages user text is isolated
(``<bdi>``, ``dir="auto"``); where markup cannot isolate it (``<title>``, attributes,
header display names, file names) the controls are removed with ``strip_bidi``.
"""

from __future__ import annotations

import re
import unicodedata

# Embeddings and overrides (LRE RLE PDF LRO RLO), isolates (LRI RLI FSI PDI) and the
# marks (LRM RLM ALM): every Unicode bidi formatting character (UAX #9 table 4).
BIDI_CONTROLS = re.compile("[\u202a-\u202e\u2066-\u2069\u200e\u200f\u061c]")


def strip_bidi(text: str) -> str:
    """``text`` without bidirectional formatting characters."""
    return BIDI_CONTROLS.sub("", text)


MAX_FILENAME_BYTES = 255  # what file systems take (ext4, NTFS, APFS)
_PATH_SEPARATORS = re.compile(r"[/\\]")
_RESERVED = re.compile(r'[<>:"|?*]+')  # not in a Windows file name
_DOTS = re.compile(r"\.{2,}")
_SPACES = re.compile(r"\s+")
_NOT_URL_SAFE = re.compile(r"[^A-Za-z0-9._-]+")
_EXTENSION = re.compile(r"\.[A-Za-z0-9]{1,10}\Z")


def safe_filename(name: str) -> str:
    """An attachment's name fit to show and save: its last path segment, without controls,
    format characters, ``..`` or reserved characters, at most 255 bytes of UTF-8 (the
    extension kept). ``""`` when nothing is left."""
    name = unicodedata.normalize("NFC", name)
    segments = [s for s in _PATH_SEPARATORS.split("".join(_name_char(c) for c in name)) if s.strip(" .")]
    last = segments[-1] if segments else ""
    return _fit(_SPACES.sub(" ", _RESERVED.sub("_", _DOTS.sub(".", last))).strip(" ."), MAX_FILENAME_BYTES)


def url_filename(name: str, index: int) -> str:
    """The last segment of an attachment's download URL: ASCII letters, digits, ``.``, ``_``
    and ``-`` only, made from the safe name, or ``attachment-N`` and its extension."""
    safe = safe_filename(name)
    extension = _EXTENSION.search(safe)
    ext = extension.group(0) if extension else ""
    stem = _NOT_URL_SAFE.sub("_", safe[: len(safe) - len(ext)]).strip("._-")
    return _DOTS.sub(".", stem[:80].rstrip("._-") or f"attachment-{index + 1}") + ext


def _name_char(char: str) -> str:
    category = unicodedata.category(char)
    if category in ("Cc", "Zl", "Zp"):  # controls and line breaks: a space
        return " "
    return "" if category in ("Cf", "Cs", "Co") else char  # format (bidi, zero-width), broken


def _fit(name: str, limit: int) -> str:
    """``name`` cut to ``limit`` bytes of UTF-8 on a character boundary, its extension kept."""
    if len(name.encode()) <= limit:
        return name
    extension = _EXTENSION.search(name)
    ext = extension.group(0) if extension and extension.start() else ""
    stem = name[: len(name) - len(ext)].encode()[: limit - len(ext)].decode("utf-8", "ignore")
    return stem.rstrip(" .") + ext
