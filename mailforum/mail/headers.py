"""Header helpers for threading: Message-ID lists and subject normalisation."""

from __future__ import annotations

import re

# RFC 5322 msg-id, loosely: clients put spaces, quotes and missing brackets in them.
_MSGID = re.compile(r"<([^<>\s]+)>")
_BARE = re.compile(r"^[^\s<>@]+@[^\s<>@]+$")
MAX_REFERENCES = 20  # RELIABILITY §3.8: the last 20 References (plus In-Reply-To first)

# Reply and forward prefixes in the languages mail clients ship: Re, Aw (de), Sv (sv/da/no),
# Antw (nl), Vs (fi), Ref, Rif (it), Odp (pl), Ynt (tr), Fwd/Fw/Wg/Tr/Rv/Enc.
_PREFIX = re.compile(
    r"^\s*(?:(?:re|aw|sv|antw|antwort|vs|ref|rif|odp|ynt|res|r|fwd|fw|wg|tr|rv|enc|doorst)"
    r"(?:\s*[\[(]\d+[\])])?\s*[:：]|\[[^\]]{1,64}\])\s*",
    re.IGNORECASE,
)
_REPLY_PREFIX = re.compile(
    r"^\s*(?:\[[^\]]{1,64}\]\s*)*(?:re|aw|sv|antw|antwort|vs|ref|rif|odp|ynt|res|r)"
    r"(?:\s*[\[(]\d+[\])])?\s*[:：]",
    re.IGNORECASE,
)
_WAS = re.compile(r"\s*[(\[]\s*was\s*:.*[)\]]\s*$", re.IGNORECASE)
_SPACE = re.compile(r"\s+")


def canonical_msgid(value: str) -> str | None:
    """``<id@host>`` from one Message-ID value, or None when there is none."""
    found = _MSGID.search(value)
    if found:
        return f"<{found.group(1)}>"
    bare = value.strip().strip('"')
    if _BARE.match(bare):
        return f"<{bare}>"
    return None


def msgid_list(value: str | None) -> list[str]:
    """All Message-IDs in a References or In-Reply-To value, in order, without repeats."""
    if not value:
        return []
    seen: dict[str, None] = {}
    for found in _MSGID.finditer(value):
        seen.setdefault(f"<{found.group(1)}>", None)
    if not seen:
        single = canonical_msgid(value)
        return [single] if single else []
    return list(seen)


def thread_evidence(in_reply_to: str | None, references: str | None) -> list[str]:
    """Parent candidates, strongest first: In-Reply-To, then References last to first."""
    ordered: dict[str, None] = {}
    irt = msgid_list(in_reply_to)
    if irt:
        # In-Reply-To may name several ids; the first is the parent by convention.
        ordered.setdefault(irt[0], None)
    for ref in reversed(msgid_list(references)[-MAX_REFERENCES:]):
        ordered.setdefault(ref, None)
    return list(ordered)


def subject_key(subject: str) -> str:
    """The subject without reply/forward prefixes and list tags, case-folded, for matching."""
    previous = None
    text = _WAS.sub("", subject)
    while previous != text:
        previous = text
        text = _PREFIX.sub("", text, count=1)
    return _SPACE.sub(" ", text).strip().casefold()[:255]


def looks_like_reply(subject: str) -> bool:
    return bool(_REPLY_PREFIX.match(subject))
