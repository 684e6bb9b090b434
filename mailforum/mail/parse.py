"""Raw bytes → ``ParsedMessage``: the typed view of a message that the core works with.

Parsing uses the stdlib ``email`` package with ``policy.compat32``: on list mail it is
several times faster than ``policy.default`` (bench/parse.py measures both), and we
decode the few headers we need ourselves, with fallbacks for lying or unknown
charsets, so no ``LookupError`` or ``UnicodeDecodeError`` ever escapes.

Hostile structure is refused before the parser sees it: ``check_structure`` walks
the MIME boundaries without recursion and raises ``Unprocessable`` past a nesting
depth of 20 or 500 parts (RELIABILITY §3.8, B34, B35, B37), so such a message costs
milliseconds and is parked with its reason at once.

HTML-only mail gets its text body from inscriptis (Apache-2.0, maintained, renders
lists and tables as text; ~0.3 ms for a typical HTML mail), with the "strict" CSS
profile so no layout indentation leaks into the text.
"""

from __future__ import annotations

import codecs
import datetime as dt
import hashlib
import io
import re
import textwrap
import unicodedata
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from email.header import decode_header
from email.message import Message
from email.parser import BytesHeaderParser, BytesParser
from email.policy import compat32
from email.utils import getaddresses, parsedate_to_datetime
from html import unescape

from inscriptis import get_text
from inscriptis.css_profiles import CSS_PROFILES
from inscriptis.model.config import ParserConfig

from mailforum.errors import MailforumError
from mailforum.mail.headers import canonical_msgid, msgid_list
from mailforum.textsafe import safe_filename

MAX_PARTS = 500  # RELIABILITY §3.8
MAX_DEPTH = 20  # RELIABILITY §3.8: nesting of multiparts and attached messages
MAX_HEADER_BLOCK = 256 * 1024  # the ingest server refuses more than [smtp] max_header_size before 250
MAX_SUBJECT = 998  # one RFC 5322 line: a 100 KiB Subject is kept whole in the raw message only
MAX_ADDRESSES = 1000  # RELIABILITY §3.8: addresses read from one header


class Unprocessable(MailforumError):
    """The message can never be processed (hostile structure); park it at once, don't retry."""


@dataclass(frozen=True, slots=True)
class Attachment:
    filename: str
    content_type: str
    size: int


@dataclass(frozen=True, slots=True)
class Addressees:
    """The To and Cc of a message as its sender wrote them: (display name, addr-spec) pairs."""

    to: tuple[tuple[str, str], ...]
    cc: tuple[tuple[str, str], ...]

    @property
    def addresses(self) -> frozenset[str]:
        """Every To and Cc address, for comparison (lower-cased, like members' addresses)."""
        return frozenset(addr.lower() for _, addr in self.to + self.cc)


@dataclass(frozen=True, slots=True)
class ParsedMessage:
    message_id: str  # canonical <id>; synthesised from the content when the header lacks one
    synthesized_id: bool
    in_reply_to: str | None
    references: str | None
    subject: str
    from_address: str  # lower-cased addr-spec, "" when missing or unparseable
    from_name: str
    date: dt.datetime | None
    text_body: str
    html_body: str | None
    attachments: tuple[Attachment, ...]
    fingerprint: str
    headers: dict[str, str] = field(default_factory=dict)  # selected decoded headers, lower-case names
    # Why the From: cannot be attributed ("" when it is exactly one honest mailbox): see ``_sender``.
    from_problem: str = ""
    addressees: Addressees = field(default_factory=lambda: Addressees((), ()))

    def header(self, name: str) -> str:
        return self.headers.get(name.lower(), "")

    @property
    def recipients(self) -> tuple[str, ...]:
        """To and Cc addresses, lower-cased, in order: parsed before decoding, as ``addressees``."""
        return tuple(addr.lower() for _, addr in self.addressees.to + self.addressees.cc)


# Headers policy and threading read; everything else stays in the raw bytes.
KEPT_HEADERS = (
    "auto-submitted",
    "precedence",
    "list-id",
    "list-post",
    "x-loop",
    "x-mailforum-loop",
    "thread-index",
    "thread-topic",
    "x-autoreply",
    "x-autorespond",
    "authentication-results",
    "content-type",
    # RFC 3834 / mailing-list markers that core.answers reads before answering anyone (I6).
    "list-unsubscribe",
    "list-help",
    "list-subscribe",
    "list-owner",
    "list-archive",
    "x-auto-response-suppress",
    "x-vacation",
)


# Loop markers: every value is kept (joined by ", "), not only the first.
ALL_VALUES_KEPT = ("x-loop", "x-mailforum-loop", "list-id", "list-post")


def split_header_block(raw: bytes) -> tuple[bytes, bytes]:
    """(header block, body) at the first empty line; CRLF or LF."""
    if raw.startswith((b"\r\n", b"\n")):
        return b"", raw[2:] if raw.startswith(b"\r\n") else raw[1:]
    at_crlf = raw.find(b"\r\n\r\n")
    at_lf = raw.find(b"\n\n")
    if at_crlf != -1 and (at_lf == -1 or at_crlf < at_lf):
        return raw[:at_crlf], raw[at_crlf + 4 :]
    if at_lf != -1:
        return raw[:at_lf], raw[at_lf + 2 :]
    return raw, b""


# --- the structure scan (no recursion, no parse) --------------------------------------------

_CONTENT_TYPE = re.compile(rb"(?im)^content-type[ \t]*:[ \t]*((?:[^\r\n]*)(?:\r?\n[ \t][^\r\n]*)*)")
_DASHES = re.compile(rb"(?m)^--")
_ENTITY_END = re.compile(rb"\r?\n\r?\n")


def _entity_header(raw: bytes, start: int) -> tuple[bytes, bytes | None, int]:
    """(content type, boundary, body start) of the entity whose header block starts at ``start``."""
    if raw.startswith(b"\n", start) or raw.startswith(b"\r\n", start):
        block_end = start
        body = start + (1 if raw[start : start + 1] == b"\n" else 2)
    else:
        found = _ENTITY_END.search(raw, start)
        block_end = found.start() if found else len(raw)
        body = found.end() if found else len(raw)
    block = raw[start:block_end]
    ctype = _CONTENT_TYPE.search(block)
    if not ctype:
        return b"", None, body
    # Read as the stdlib parser reads it, so that no spelling (RFC 2231 ``boundary*0=``, a
    # quoted "; boundary=" inside another parameter) shows the scan one boundary and the parser another.
    probe = Message()
    probe["Content-Type"] = ctype.group(1).decode("ascii", "surrogateescape")
    kind = probe.get_content_type()
    if kind.startswith("message/") and kind != "message/delivery-status":
        return b"message/rfc822", None, body  # the parser reads every other message/* as a message
    boundary = probe.get_boundary() if kind.startswith("multipart/") else None
    mark = boundary.encode("ascii", "surrogateescape").rstrip() if boundary else None
    return kind.encode("ascii", "surrogateescape"), mark, body


def check_structure(raw: bytes, max_depth: int = MAX_DEPTH, max_parts: int = MAX_PARTS) -> None:
    """Refuse hostile MIME structure before any recursive parse (RELIABILITY B34, B35, B37).

    Walks boundary lines with an explicit stack: a multipart's parts and an attached
    message (``message/rfc822``, also the default inside ``multipart/digest``) are one
    level deeper than their container. Linear in the size of the message.
    """
    if raw.count(b"\r") != raw.count(b"\r\n"):  # the parser ends a line at a bare CR too
        raw = raw.replace(b"\r\n", b"\n").replace(b"\r", b"\n")
    header, _ = split_header_block(raw)
    if len(header) > MAX_HEADER_BLOCK:
        raise Unprocessable(f"header block too large ({len(header)} bytes)")
    stack: list[tuple[bytes, int, bool]] = []  # (boundary, depth of the multipart, is digest)
    parts = 0

    def enter(pos: int, depth: int, in_digest: bool) -> int:
        """Read the entity at ``pos`` (and any messages attached inside it); returns its body start."""
        nonlocal parts
        while True:
            if depth > max_depth:
                raise Unprocessable(f"MIME nesting too deep (more than {max_depth} levels)")
            kind, boundary, body = _entity_header(raw, pos)
            if kind == b"message/rfc822" or (not kind and in_digest):
                parts += 1
                if parts > max_parts:
                    raise Unprocessable(f"too many MIME parts (more than {max_parts})")
                pos, depth, in_digest = body, depth + 1, False
                continue
            if boundary:
                stack.append((b"--" + boundary, depth, kind == b"multipart/digest"))
            return body

    pos = enter(0, 0, False)
    while stack:
        found = _DASHES.search(raw, pos)
        if not found:
            break
        line_end = raw.find(b"\n", found.start())
        line_end = len(raw) if line_end == -1 else line_end
        line = raw[found.start() : line_end].rstrip()
        pos = line_end + 1
        for level in range(len(stack) - 1, -1, -1):
            mark, depth, digest = stack[level]
            if not line.startswith(mark):
                continue
            rest = line[len(mark) :]
            if rest == b"--":  # the closing delimiter: this multipart and any unclosed inner ones end
                del stack[level:]
            elif not rest:
                del stack[level + 1 :]
                parts += 1
                if parts > max_parts:
                    raise Unprocessable(f"too many MIME parts (more than {max_parts})")
                pos = enter(pos, depth + 1, digest)
            else:
                continue
            break


check_limits = check_structure


# --- charsets and header text -----------------------------------------------------------------

# Labels that lie, as browsers treat them (WHATWG Encoding Standard): mail labelled with a
# subset is usually written in the superset. UTF-7 is never decoded: "+ADw-script+AD4-"
# must stay text (RELIABILITY B32).
CHARSET_ALIASES = {
    "us-ascii": "utf-8",
    "ascii": "utf-8",
    "iso-8859-1": "cp1252",
    "latin1": "cp1252",
    "latin-1": "cp1252",
    "iso8859-1": "cp1252",
    "iso-8859-9": "cp1254",
    "iso-8859-11": "cp874",
    "tis-620": "cp874",
    "gb2312": "gb18030",
    "gbk": "gb18030",
    "x-gbk": "gb18030",
    "euc-cn": "gb18030",
    "ks_c_5601-1987": "cp949",
    "euc-kr": "cp949",
    "shift_jis": "cp932",
    "shift-jis": "cp932",
    "sjis": "cp932",
    "x-sjis": "cp932",
    "iso-8859-8-i": "iso-8859-8",
    "x-mac-roman": "mac-roman",
    "utf8": "utf-8",
    "unicode-1-1-utf-8": "utf-8",
    "utf-7": "ascii",
    "unicode-1-1-utf-7": "ascii",
    "x-unknown": "utf-8",
    "unknown-8bit": "utf-8",
    "unknown": "utf-8",
    "default": "utf-8",
    "x-user-defined": "cp1252",
}
# Python codecs that are not character sets a mail part can be written in.
_NOT_CHARSETS = {"utf-7", "unicode-escape", "raw-unicode-escape", "undefined", "idna", "punycode"}
_codec_cache: dict[str, str] = {}


def codec_for(charset: str | None) -> str:
    """The Python codec for a declared charset; UTF-8 for anything unknown or unsafe."""
    name = (charset or "utf-8").strip().strip("\"'").lower()[:40]
    cached = _codec_cache.get(name)
    if cached is not None:
        return cached
    label = CHARSET_ALIASES.get(name, name)
    try:
        info = codecs.lookup(label)
        codec = info.name if info._is_text_encoding and info.name not in _NOT_CHARSETS else "utf-8"
    except (LookupError, ValueError, TypeError):
        codec = "utf-8"
    if len(_codec_cache) < 1000:
        _codec_cache[name] = codec
    return codec


def decode_text(data: bytes, charset: str | None) -> str:
    """Decode with the declared charset, falling back to UTF-8, then Windows-1252, then Latin-1.

    Never raises; the result is ``clean_text``: no NUL (PostgreSQL text cannot hold
    it, B9), no ESC or other control character a terminal or a page would act on.
    """
    codec = codec_for(charset)
    for candidate in (codec, "utf-8", "cp1252"):
        try:
            return clean_text(data.decode(candidate))
        except (UnicodeError, LookupError):
            continue
    return clean_text(data.decode("latin-1"))


_CONTROL = re.compile(r"[\x00-\x1f\x7f-\x9f]+")
_DIRT = re.compile(r"[\x00-\x08\x0b-\x1f\x7f-\x9f]")  # every C0/C1 control but tab and newline


def clean_text(text: str) -> str:
    """Text as it may be stored and shown: line ends as "\\n", tab kept, other controls dropped
    (a vertical tab or form feed becomes a space, so the words either side stay apart).

    Every text that enters storage from a message (bodies, subjects, names, attachment
    names) passes here or through ``decode_header_value``, so exports, pages, digests
    and CLI output never carry ESC, BEL or their friends.
    """
    if "\r" in text:
        text = text.replace("\r\n", "\n").replace("\r", "\n")
    if not _DIRT.search(text):
        return text
    return _DIRT.sub("", text.replace("\x0b", " ").replace("\x0c", " "))  # page breaks still part words


def _unsurrogate(text: str) -> str:
    """compat32 turns raw 8-bit header bytes into surrogates; decode those bytes with a fallback."""
    if text.isascii():
        return text
    try:
        raw = text.encode("utf-8", "surrogateescape")
    except UnicodeEncodeError:
        return text
    return decode_text(raw, "utf-8")


def decode_header_value(value: object, limit: int = 0) -> str:
    """An RFC 2047 header value as text, on one line, without control characters (B23, B30)."""
    if value is None:
        return ""
    text = str(value)
    if limit:
        text = text[: limit * 4]
    text = _unsurrogate(text)  # raw 8-bit bytes (no encoded-word): UTF-8, else Windows-1252 (B30)
    if "=?" not in text:
        decoded = text
    else:
        try:
            parts = decode_header(text)
        except Exception:  # malformed encoded-words: show the value as it came
            parts = [(text, None)]
        out = []
        for chunk, charset in parts:
            if isinstance(chunk, bytes):
                if charset is None:  # the stretches between encoded-words, as decode_header left them
                    try:
                        out.append(chunk.decode("raw-unicode-escape"))
                    except UnicodeError:
                        out.append(decode_text(chunk, "utf-8"))
                else:
                    out.append(decode_text(chunk, charset))
            else:
                out.append(chunk)
        decoded = "".join(out)
    decoded = _CONTROL.sub(" ", clean_text(decoded)).strip()  # line breaks and tabs: a space
    return decoded[:limit] if limit else decoded


def _parse_date(value: str | None, now: dt.datetime | None = None) -> dt.datetime | None:
    if not value:
        return None
    try:
        parsed = parsedate_to_datetime(value)
    except (TypeError, ValueError, IndexError, OverflowError):
        return None
    if parsed is None:
        return None
    if parsed.tzinfo is None:
        parsed = parsed.replace(tzinfo=dt.UTC)
    # Garbage years are kept in the raw message only (RELIABILITY B43).
    latest = (now or dt.datetime.now(dt.UTC)).year + 1
    if not 1980 <= parsed.year <= latest:
        return None
    try:
        return parsed.astimezone(dt.UTC)
    except (OverflowError, ValueError):
        return None


_DATE_HEADER = re.compile(rb"(?im)^date[ \t]*:[ \t]*([^\r\n]*(?:\r?\n[ \t][^\r\n]*)*)")


def header_date(raw: bytes) -> dt.datetime | None:
    """The sane Date of a raw message, read from its header block alone (cheap; no parse)."""
    header, _ = split_header_block(raw[:MAX_HEADER_BLOCK])
    found = _DATE_HEADER.search(header)
    if not found:
        return None
    return _parse_date(found.group(1).decode("ascii", "replace"))


_RECEIVED_HEADER = re.compile(rb"(?im)^received[ \t]*:([^\r\n]*(?:\r?\n[ \t][^\r\n]*)*)")


def received_date(raw: bytes) -> dt.datetime | None:
    """The date of the newest (topmost) Received: that has a sane one, after its last ";"."""
    header, _ = split_header_block(raw[:MAX_HEADER_BLOCK])
    for found in _RECEIVED_HEADER.finditer(header):
        stamp = found.group(1).rpartition(b";")[2]
        when = _parse_date(stamp.decode("ascii", "replace")) if stamp.strip() else None
        if when is not None:
            return when
    return None


_ENVELOPE_DATE = re.compile(
    r"\b[A-Z][a-z]{2},?\s+(?P<month>[A-Z][a-z]{2})\s+(?P<day>\d{1,2})\s+(?P<time>\d{1,2}:\d{2}(?::\d{2})?)"
    r"\s+(?:(?P<zone1>[A-Z]{3,4}|[+-]\d{4})\s+)?(?P<year>\d{4})(?:\s+(?P<zone2>[+-]\d{4}|[A-Z]{3,4}))?"
)


def envelope_date(line: bytes) -> dt.datetime | None:
    """The date of an mbox From_ line ("From ann@example.com Wed Nov 27 10:00:00 2002"; UTC
    unless a zone follows); None when it has none or a garbage one."""
    found = _ENVELOPE_DATE.search(line.decode("ascii", "replace"))
    if found is None:
        return None
    zone = found["zone1"] or found["zone2"] or "+0000"
    return _parse_date(f"{found['day']} {found['month']} {found['year']} {found['time']} {zone}")


_ADDR_SPEC = re.compile(r"^[^\s@<>()\[\],;:\\\"]+@[^\s@<>()\[\],;:\\\"]+$")


def addressees(raw: bytes) -> Addressees:
    """To and Cc parsed from the raw header block, before any RFC 2047 decoding.

    Parsing first and decoding only the display names after means an encoded-word
    cannot turn into an address (``=?utf-8?q?bob=40example.org?= <ann@example.org>``
    names ann alone); anything that is not a plain addr-spec is left out.
    """
    header, _ = split_header_block(raw)
    return _addressees_of(_HEADER_PARSER.parsebytes(header + b"\n\n"))


def _addressees_of(msg: Message) -> Addressees:
    return Addressees(_pairs(msg.get_all("to") or []), _pairs(msg.get_all("cc") or []))


def _pairs(values: Sequence[object]) -> tuple[tuple[str, str], ...]:
    try:
        found = getaddresses([_unsurrogate(str(v)) for v in values])[:MAX_ADDRESSES]
    except Exception:
        return ()
    kept: dict[str, tuple[str, str]] = {}
    for name, addr in found:
        addr = addr.strip()
        if _ADDR_SPEC.match(addr) and addr.isascii():
            kept.setdefault(addr.lower(), (decode_header_value(name, 200), addr))
    return tuple(kept.values())


# --- the From: mailbox, read as a DMARC validator reads it (RFC 5322 §3.4, CVE-2023-27043) ----------

MAX_FROM = 2000  # a From: longer than this is not one mailbox anyone reads
_FROM_TOKEN = re.compile(
    r"""(?P<ws>\s+)
    |(?P<quoted>"(?:[^"\\]|\\.)*")
    |(?P<literal>\[(?:[^\[\]\\]|\\.)*\])
    |(?P<atom>[^\s()<>\[\]:;@\\,."\x00-\x1f\x7f]+)
    |(?P<special>[<>@,.:;])""",
    re.VERBOSE | re.DOTALL,
)
_QUOTED_PAIR = re.compile(r"\\(.)", re.DOTALL)
# Something a reader takes for an address, after NFKC (so a full-width "＠" counts too).
_ADDRESS_LIKE = re.compile(r"[^\s<>()\[\]\"',;:]+@[^\s<>()\[\]\"',;:]+")
_Token = tuple[str, str]  # (kind, text as written)


class FromProblem(ValueError):
    """The From: field is not exactly one mailbox we can attribute a message to."""


def _comment_end(value: str, start: int) -> int:
    """The index after the comment opening at ``start`` (comments nest; ``\\`` quotes one character)."""
    depth, pos = 0, start
    while pos < len(value):
        char = value[pos]
        if char == "\\":
            pos += 1
        elif char == "(":
            depth += 1
        elif char == ")":
            depth -= 1
            if depth == 0:
                return pos + 1
        pos += 1
    raise FromProblem("unbalanced parenthesis")


def _from_tokens(value: str) -> tuple[list[_Token], list[str]]:
    """The tokens of a raw From: value, and its comments apart (their text, unquoted)."""
    tokens: list[_Token] = []
    comments: list[str] = []
    pos = 0
    while pos < len(value):
        if value[pos] == "(":
            end = _comment_end(value, pos)
            comments.append(_QUOTED_PAIR.sub(r"\1", value[pos + 1 : end - 1]))
            pos = end
            continue
        found = _FROM_TOKEN.match(value, pos)
        if found is None:
            what = {")": "unbalanced parenthesis", '"': "unbalanced quote", "\\": "stray backslash"}
            raise FromProblem(what.get(value[pos], f"unexpected character {value[pos]!r}"))
        kind = found.lastgroup or ""
        tokens.append((found.group() if kind == "special" else kind, found.group()))
        pos = found.end()
    return tokens, comments


def _addr_spec(tokens: list[_Token]) -> str:
    """``local@domain`` from its tokens: dot-atoms or quoted strings, one @, nothing else."""
    kinds = [kind for kind, _ in tokens]
    while kinds and kinds[0] == "ws":
        del kinds[0], tokens[0]
    while kinds and kinds[-1] == "ws":
        del kinds[-1], tokens[-1]
    if not tokens:
        raise FromProblem("no address")
    if kinds.count("@") != 1:
        raise FromProblem("not one address")
    at = kinds.index("@")
    local, domain = kinds[:at], kinds[at + 1 :]
    if not _dotted(local, ("atom", "quoted")) or not (_dotted(domain, ("atom",)) or domain == ["literal"]):
        raise FromProblem("malformed address")
    address = "".join(text for _, text in tokens)
    if "=?" in address:
        raise FromProblem("an encoded-word in the address")
    return address


def _dotted(kinds: list[str], words: tuple[str, ...]) -> bool:
    """word *("." word): the shape of a dot-atom (or of an obsolete local part)."""
    return (
        bool(kinds)
        and len(kinds) % 2 == 1
        and all(kind in words if i % 2 == 0 else kind == "." for i, kind in enumerate(kinds))
    )


def _phrase(tokens: list[_Token]) -> str:
    """A display name from its tokens: quoted strings unquoted, encoded-words decoded."""
    if any(kind not in ("atom", "quoted", "ws", ".", "literal") for kind, _ in tokens):
        raise FromProblem("special characters in the display name")
    text = "".join(
        " " if kind == "ws" else _QUOTED_PAIR.sub(r"\1", word[1:-1]) if kind == "quoted" else word
        for kind, word in tokens
    )
    return decode_header_value(text)


def mailbox(value: str) -> tuple[str, str, list[str]]:
    """(addr-spec, display name, comments) of a raw From: value that is exactly one mailbox.

    The value is read as written, encoded-words and all, the way a DMARC validator
    reads it: a list, a group, a second angle address, an unbalanced quote or
    parenthesis, anything but one plain addr-spec raises ``FromProblem``.
    """
    if len(value) > MAX_FROM:
        raise FromProblem("too long")
    tokens, comments = _from_tokens(_unsurrogate(value))
    kinds = [kind for kind, _ in tokens]
    for special, what in ((",", "more than one address"), (":", "a group"), (";", "a group")):
        if special in kinds:
            raise FromProblem(what)
    if "<" not in kinds and ">" not in kinds:
        return _addr_spec(tokens), "", comments
    if kinds.count("<") != 1 or kinds.count(">") != 1 or kinds.index(">") < kinds.index("<"):
        raise FromProblem("not one angle address")
    opened, closed = kinds.index("<"), kinds.index(">")
    if any(kind != "ws" for kind in kinds[closed + 1 :]):
        raise FromProblem("text after the address")
    return _addr_spec(tokens[opened + 1 : closed]), _phrase(tokens[:opened]), comments


def impostor(address: str, shown: list[str]) -> str:
    """The first address-like text a reader sees in a display name or comment that is not ``address``."""
    for text in shown:
        for looks in _ADDRESS_LIKE.findall(unicodedata.normalize("NFKC", text)):
            if looks.strip(".").casefold() != address.casefold():
                return looks[:80]
    return ""


def _sender(values: list[str]) -> tuple[str, str, str]:
    """(lower-cased address, display name, problem) from the From: fields of a message.

    The problem is "" when there is exactly one From: naming exactly one mailbox, and
    no display name or comment that reads as another address. The address is "" when
    the field is not one mailbox; for a misleading name it is the mailbox itself.
    """
    if not values:
        return "", "", ""
    if len(values) > 1:
        return "", "", f"{len(values)} From: fields"
    try:
        address, name, comments = mailbox(values[0])
    except FromProblem as exc:
        return "", "", f"From: {exc}"
    shown = [decode_header_value(text) for text in (name, *comments) if text.strip()]
    name = (name or " ".join(shown))[:200]
    other = impostor(address, shown)
    if other:
        return address.lower(), name, f"the display name looks like another address ({other})"
    return address.lower(), name, ""


# --- bodies -------------------------------------------------------------------------------

_HTML_CONFIG = ParserConfig(css=CSS_PROFILES["strict"].copy(), display_links=False, display_images=False)


# Beyond this much HTML, inscriptis costs seconds (2.6 s for 400 kB of table cells), and the web
# view converts again: tags are stripped instead, in linear time (RELIABILITY B35, L8).
HTML_LAYOUT_LIMIT = 200_000
_TAG = re.compile(r"<[^<>]*>")  # "[^<>]": linear even on a run of "<" with no ">"


def html_to_text(markup: str) -> str:
    """Readable text from HTML (inscriptis): paragraphs, lists and tables kept, markup gone."""
    if not markup.strip():
        return ""
    try:
        if len(markup) > HTML_LAYOUT_LIMIT:
            raise ValueError("too large to lay out")
        text = get_text(markup, _HTML_CONFIG)
    except Exception:  # too large, or lxml refuses a hostile document: strip the tags
        text = unescape(_TAG.sub(" ", markup))
    lines = [line.rstrip() for line in clean_text(text).splitlines()]
    return textwrap.dedent(re.sub(r"\n{3,}", "\n\n", "\n".join(lines))).strip("\n")


def unflow(text: str, delsp: bool) -> str:
    """Undo RFC 3676 format=flowed: join soft-broken lines of the same quote depth.

    A line ending in a space continues on the next (with ``delsp=yes`` that space is
    the client's, and goes). Space-stuffing is removed; the signature separator
    ``-- `` is never joined.
    """
    out: list[str] = []
    pending: str | None = None
    pending_depth = 0
    for line in text.split("\n"):
        line = line.rstrip("\r")
        depth = len(line) - len(line.lstrip(">"))
        content = line[depth:]
        if content.startswith(" "):
            content = content[1:]  # space-stuffing (or the space after the quote marks)
        flowed = content.endswith(" ") and content != "-- "
        if pending is not None and depth != pending_depth:
            out.append(">" * pending_depth + (" " if pending_depth else "") + pending)
            pending = None
        if flowed and delsp:
            content = content[:-1]
        pending = content if pending is None else pending + content
        pending_depth = depth
        if not flowed:
            out.append(">" * depth + (" " if depth and pending else "") + pending)
            pending = None
    if pending is not None:
        out.append(">" * pending_depth + (" " if pending_depth else "") + pending)
    return "\n".join(out)


def _leaves(msg: Message) -> list[Message]:
    """Non-multipart parts in order, without descending into attached messages (no recursion)."""
    leaves: list[Message] = []
    stack = [msg]
    while stack:
        part = stack.pop()
        payload = part.get_payload()
        if part.is_multipart() and part.get_content_maintype() == "multipart" and isinstance(payload, list):
            stack.extend(child for child in reversed(payload) if isinstance(child, Message))
        else:
            leaves.append(part)
    return leaves


def _part_text(part: Message, data: bytes) -> str:
    try:
        charset = part.get_content_charset()
    except Exception:
        charset = None
    text = decode_text(data, charset)
    params = {k.lower(): v.lower() for k, v in part.get_params() or [] if isinstance(v, str)}
    if params.get("format") == "flowed":
        text = unflow(text, params.get("delsp") == "yes")
    return text


def _filename(part: Message) -> str:
    try:
        name = part.get_filename()
    except Exception:  # RFC 2231 continuations with a bad charset or missing segments (B32)
        name = None
    # Cut later, by bytes and keeping the extension (textsafe.safe_filename); this bounds the work.
    return decode_header_value(name, limit=1000) if name else ""


_NOT_BASE64 = re.compile(r"[^A-Za-z0-9+/]+")


def _decoded_size(part: Message) -> int:
    """Size of an attachment's content, without a decoded copy of a large base64 body (B39)."""
    payload = part.get_payload()
    if not isinstance(payload, str):
        return 0
    cte = str(part.get("content-transfer-encoding", "")).strip().lower()
    if cte == "base64":
        return len(_NOT_BASE64.sub("", payload)) * 3 // 4
    try:
        data = part.get_payload(decode=True)
    except Exception:
        return len(payload)
    return len(data) if isinstance(data, bytes) else len(payload)


def _attached_message(part: Message, filename: str, ctype: str) -> Attachment:
    return Attachment(_attachment_name(part, filename), ctype, len(attachment_bytes(part)))


def _content_type(part: Message) -> str:
    """The part's type; a multipart whose boundary never appears is the sender's text."""
    ctype = part.get_content_type()
    if ctype.startswith("multipart/") and not isinstance(part.get_payload(), list):
        return "text/plain"
    return ctype


def _classified(msg: Message) -> Iterator[tuple[str, Message, str]]:
    """Each leaf part as ("text" | "html" | "attachment", part, decoded filename), in order.

    The first inline text/plain part is the text body and the first inline text/html
    the HTML body; everything else, attached messages included, is an attachment.
    """
    text = html = False
    for part in _leaves(msg):
        ctype = _content_type(part)
        disposition = str(part.get("content-disposition") or "").split(";")[0].strip().lower()
        filename = _filename(part)
        is_body = ctype in ("text/plain", "text/html") and disposition != "attachment"
        if not is_body or (filename and part is not msg and disposition != "inline"):
            yield "attachment", part, filename
        elif ctype == "text/plain" and not text:
            text = True
            yield "text", part, filename
        elif ctype == "text/html" and not html:
            html = True
            yield "html", part, filename
        else:
            yield "attachment", part, filename


def attachment_parts(msg: Message) -> list[tuple[Message, str]]:
    """The parts ``parse`` records as a post's attachments, in the same order, with their names."""
    return [
        (part, _attachment_name(part, name)) for kind, part, name in _classified(msg) if kind == "attachment"
    ]


def _attachment_name(part: Message, filename: str) -> str:
    """The filename, or for an attached message without one its subject ("message" at worst),
    made safe to show and save (no path, ``..`` or controls, at most 255 bytes)."""
    if filename or part.get_content_maintype() != "message":
        return safe_filename(filename)
    inner = _enclosed_message(part)
    subject = decode_header_value(inner.get("subject"), 255) if inner is not None else ""
    return safe_filename(subject) or "message"


def _enclosed_message(part: Message) -> Message | None:
    """The message a ``message/*`` part holds, if it holds one."""
    inner = part.get_payload()
    return inner[0] if isinstance(inner, list) and inner and isinstance(inner[0], Message) else None


def attachment_bytes(part: Message) -> bytes:
    """The content of an attachment part: transfer-decoded, never decompressed (B40)."""
    if part.get_content_maintype() == "message":
        inner = _enclosed_message(part)
        if inner is not None:
            try:
                return inner.as_bytes()
            except Exception:
                return b""
        return str(part.get_payload() or "").encode("utf-8", "surrogateescape")
    try:
        payload = part.get_payload(decode=True)
    except Exception:
        return b""
    return payload if isinstance(payload, bytes) else b""


def parse_message(raw: bytes) -> Message:
    """The stdlib ``Message`` of ``raw`` after the structure scan (raises ``Unprocessable``)."""
    check_structure(raw)
    try:
        return _message(raw)
    except RecursionError:
        raise Unprocessable("MIME structure too deep to parse") from None


def _bodies(msg: Message) -> tuple[str, str | None, tuple[Attachment, ...]]:
    text: str | None = None
    markup: str | None = None
    attachments: list[Attachment] = []
    for kind, part, filename in _classified(msg):
        ctype = part.get_content_type()
        if kind == "attachment":
            if part.get_content_maintype() == "message":
                attachments.append(_attached_message(part, filename, ctype))
            else:
                attachments.append(Attachment(_attachment_name(part, filename), ctype, _decoded_size(part)))
            continue
        try:
            payload = part.get_payload(decode=True)
        except Exception:
            payload = None
        data = payload if isinstance(payload, bytes) else b""
        if kind == "text":
            text = _part_text(part, data)
        else:
            markup = _part_text(part, data)
    if text is None:
        text = html_to_text(markup) if markup else ""
    return text, markup, tuple(attachments)


def fingerprint(raw: bytes, heads: dict[str, str]) -> str:
    """Identity of a message across deliveries: identifying headers plus the body bytes.

    Trace headers (Received, Delivered-To …) differ between two deliveries of the same
    message, so the whole raw bytes would not do (RELIABILITY F2, F13).
    """
    digest = hashlib.sha256()
    for name in ("message-id", "from", "date", "subject"):
        digest.update(heads.get(name, "").strip().encode("utf-8", "surrogateescape"))
        digest.update(b"\0")
    digest.update(split_header_block(raw)[1].replace(b"\r\n", b"\n"))
    return digest.hexdigest()


# Headers that carry Message-IDs: the first value that names one wins, so an empty or
# broken first copy (``Message-ID: <>``) cannot hide a valid second one.
_ID_HEADERS = {"message-id": canonical_msgid, "in-reply-to": msgid_list, "references": msgid_list}


def _first_headers(msg: Message) -> dict[str, str]:
    """Lower-case name → the first raw value (compat32 would wrap 8-bit values in Header objects).

    For the id headers (``_ID_HEADERS``), the first value that holds a valid id.
    """
    first: dict[str, str] = {}
    for name, value in msg.raw_items():
        key, text = name.lower(), value if isinstance(value, str) else str(value)
        if key not in first or (
            key in _ID_HEADERS and not _ID_HEADERS[key](first[key]) and _ID_HEADERS[key](text)
        ):
            first[key] = text
    return first


def _all_values(msg: Message, name: str) -> list[str]:
    """Every raw value of one header, in order."""
    return [str(value) for key, value in msg.raw_items() if key.lower() == name]


def parse(raw: bytes) -> ParsedMessage:
    """Parse one message; raises ``Unprocessable`` for hostile structure, nothing else."""
    check_structure(raw)
    try:
        return _parsed(raw, _message(raw))
    except RecursionError:  # a structure the scan did not see: still never fatal
        raise Unprocessable("MIME structure too deep to parse") from None


_HEADER_PARSER = BytesHeaderParser(policy=compat32)
_PARSER = BytesParser(policy=compat32)


def _message(raw: bytes) -> Message:
    """The stdlib parse of ``raw``; a single-part message is parsed as headers plus its body.

    For a message that is not multipart, the full parser only splits the body into
    lines and joins them again: parsing the header block alone and setting the body as
    the payload gives the same ``Message`` at a fraction of the cost (bench/parse.py).
    """
    header, body = split_header_block(raw)
    msg = _HEADER_PARSER.parsebytes(header + b"\n\n")
    if msg.get_content_maintype() in ("multipart", "message") or msg.defects:
        # Fed from a stream, the parser holds the message in chunks: peak memory about 3×
        # its size instead of 8× for message_from_bytes (RELIABILITY B39).
        return _PARSER.parse(io.BytesIO(raw))
    msg.set_payload(body.decode("ascii", "surrogateescape"))
    return msg


def _parsed(raw: bytes, msg: Message) -> ParsedMessage:
    heads = _first_headers(msg)
    print_ = fingerprint(raw, heads)
    declared = canonical_msgid(_unsurrogate(heads.get("message-id", "")))
    message_id = declared or f"<{print_[:32]}@mailforum.invalid>"
    address, name, problem = _sender(_all_values(msg, "from"))
    text, markup, attachments = _bodies(msg)
    kept = {h: decode_header_value(heads[h], 2000) for h in KEPT_HEADERS if h in heads}
    for marker in ALL_VALUES_KEPT:  # ours may sit below another list's marker (B49)
        if marker in heads:
            kept[marker] = decode_header_value(", ".join(_all_values(msg, marker)), 2000)
    return ParsedMessage(
        message_id=message_id,
        synthesized_id=declared is None,
        in_reply_to=_unsurrogate(heads["in-reply-to"]) if "in-reply-to" in heads else None,
        references=_unsurrogate(heads["references"]) if "references" in heads else None,
        subject=decode_header_value(heads.get("subject"), MAX_SUBJECT),
        from_address=address,
        from_name=name,
        date=_parse_date(_unsurrogate(heads.get("date", ""))),
        text_body=text,
        html_body=markup,
        attachments=attachments,
        fingerprint=print_,
        headers=kept,
        from_problem=problem,
        addressees=_addressees_of(msg),
    )


def scan_headers(raw: bytes) -> tuple[int, dict[str, list[str]]]:
    """Cheap look at the header block before the 250: its size and a few header values.

    Used by the ingest server for checks that must not cost a full parse (hop count,
    loop marker, header size). Returns (size of the header block, lower-case name → values).
    """
    block, _ = split_header_block(raw)
    wanted = {b"received", b"x-loop", b"x-mailforum-loop", b"list-id"}
    found: dict[str, list[str]] = {}
    for line in block.split(b"\n"):
        if not line or line[:1] in (b" ", b"\t"):
            continue
        name, colon, value = line.partition(b":")
        if colon and name.strip().lower() in wanted:
            found.setdefault(name.strip().lower().decode("ascii", "replace"), []).append(
                value.strip().decode("utf-8", "replace")
            )
    return len(block), found
