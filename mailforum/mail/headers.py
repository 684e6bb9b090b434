"""Header helpers for threading: Message-ID lists, subject normalisation, Outlook's Thread-Index.

Everything here is a pure function of header text (already RFC 2047-decoded by
``mail.parse``), so the threader's rules can be tested one at a time.
"""

from __future__ import annotations

import base64
import binascii
import functools
import hashlib
import re
import unicodedata
from dataclasses import dataclass

MAX_REFERENCES = 20  # RELIABILITY §3.8: the last 20 References (plus In-Reply-To first)
MAX_MSGID = 250  # longer ids are replaced by a stable digest (the column allows 998)
MAX_IDS_SCANNED = 1000  # a hostile References header of megabytes costs one bounded scan

# RFC 5322 msg-id, loosely: clients fold long ids, put spaces and quotes in them, and
# leave the brackets off. Comments "(…)" and quoted strings ("Ann's message of …")
# in In-Reply-To are not ids; addresses in them are dropped with them.
_MSGID = re.compile(r"<([^<>]{1,2000})>")
_COMMENT = re.compile(r"\([^()]*\)")
_QUOTED = re.compile(r'"(?:[^"\\]|\\.)*"')
_BARE = re.compile(r"^[^\s<>@]+@[^\s<>@]+$")
_SPACE = re.compile(r"\s+")
_SEPARATORS = re.compile(r"[\s,;]+")
_FROM_ADDRESS = re.compile(r"\bfrom\s+[^<>()]{0,200}?<([^<>]{1,2000})>", re.IGNORECASE)
_CONTROL = re.compile(r"[\x00-\x1f\x7f]")


def _clean_id(inner: str) -> str | None:
    inner = _SPACE.sub("", _CONTROL.sub("", inner)).strip("<>\"'")
    if not inner or inner in ("@",):
        return None
    if len(inner) > MAX_MSGID:
        inner = hashlib.sha256(inner.encode("utf-8", "surrogatepass")).hexdigest()[:40] + "@long-id.invalid"
    return f"<{inner}>"


def canonical_msgid(value: str) -> str | None:
    """``<id@host>`` from one Message-ID value, or None when there is none.

    The first valid id wins (``<> <id@host>`` names ``<id@host>``). Whitespace inside
    the brackets (folding), control characters and doubled brackets are removed; a
    bare ``id@host`` gets its brackets; an over-long id becomes a digest, the same
    digest wherever it is referenced.
    """
    for found in _MSGID.finditer(value[: 200 * MAX_IDS_SCANNED]):
        cleaned = _clean_id(found.group(1))
        if cleaned:
            return cleaned
    bare = _bare_ids(_COMMENT.sub(" ", value[: 200 * MAX_IDS_SCANNED]))
    return bare[0] if bare else None


def _bare_ids(text: str) -> list[str]:
    """Ids written without brackets (``id@host id@host``), as some clients and gateways do.

    Only when every word is one: in free text (Gnus' ``ann@example.com's message of
    "DATE"``) a word with an ``@`` is an address, not an id.
    """
    found: list[str] = []
    for token in _SEPARATORS.split(text.strip())[:MAX_IDS_SCANNED]:
        cleaned = _clean_id(token.strip('"')) if _BARE.match(token.strip('"')) else None
        if cleaned is None:
            return []
        found.append(cleaned)
    return found


def _bracketed(text: str) -> list[str]:
    found: list[str] = []
    for number, match in enumerate(_MSGID.finditer(text)):
        if number >= MAX_IDS_SCANNED:
            break
        if cleaned := _clean_id(match.group(1)):
            found.append(cleaned)
    return found


def msgid_list(value: str | None) -> list[str]:
    """All Message-IDs in a References or In-Reply-To value, in order, without repeats.

    Ids are the ``<…>`` tokens outside comments and quoted strings (the free text of
    MH and exmh, ``Your message of "DATE." <id>``), else any ``<…>`` token, else the
    bare ``id@host`` words.
    """
    if not value:
        return []
    value = value[: 200 * MAX_IDS_SCANNED]
    outside = _QUOTED.sub(" ", _COMMENT.sub(" ", value))
    ids = _bracketed(outside) or _bracketed(value) or _bare_ids(outside)
    return list(dict.fromkeys(ids))


def parent_id(in_reply_to: str | None, references: str | None = None) -> str | None:
    """The parent an In-Reply-To names: its last id, or the last of its ids References confirms.

    Free-text forms put the author's address before the id (exmh's ``Message from
    NAME <addr> of "DATE" <id>``, elm's ``<id> from "NAME" <addr>``): an address
    after "from" is never the parent, unless References names it too.
    """
    if not in_reply_to:
        return None
    ids = msgid_list(in_reply_to)
    confirmed = set(msgid_list(references)) & set(ids)
    if confirmed:
        return [mid for mid in ids if mid in confirmed][-1]
    outside = _QUOTED.sub(" ", _COMMENT.sub(" ", in_reply_to[: 200 * MAX_IDS_SCANNED]))
    authors = {_clean_id(m.group(1)) for m in _FROM_ADDRESS.finditer(outside)}
    candidates = [mid for mid in ids if mid not in authors]
    return candidates[-1] if candidates else None


def ancestry(message_id: str, in_reply_to: str | None, references: str | None) -> list[str]:
    """The ids a message names, oldest first, its direct parent last.

    References truncated by the client keep their first (the thread's root) and last
    ids; we keep the root and the last ``MAX_REFERENCES``. In-Reply-To, when it names
    an id, is the parent (``parent_id``).
    """
    refs = msgid_list(references)
    chain = refs[:1] + refs[1:][-MAX_REFERENCES:] if len(refs) > MAX_REFERENCES + 1 else refs
    parent = parent_id(in_reply_to, references)
    if parent:
        if parent in chain:
            chain.remove(parent)
        chain.append(parent)
    return [mid for mid in chain if mid != message_id]


def thread_evidence(in_reply_to: str | None, references: str | None) -> list[str]:
    """Parent candidates, strongest first: In-Reply-To, then References last to first."""
    return list(reversed(ancestry("", in_reply_to, references)))


# --- subjects -------------------------------------------------------------------------------

# Reply and forward prefixes in the languages mail clients ship, as a table: each word is
# a prefix when followed by a colon (ASCII or full-width), optionally with a counter
# ("Re[2]:", "Re(3):", "Re^2:"). Forward prefixes are stripped for matching, but do not
# make a message look like a reply.
REPLY_WORDS = (
    "re",  # English and most clients
    "aw",  # German Outlook (Antwort)
    "antw",  # Dutch
    "antwort",  # German
    "sv",  # Swedish, Danish, Norwegian (Svar)
    "vs",  # Finnish (Vastaus), Norwegian Outlook
    "ref",  # Portuguese
    "rif",  # Italian
    "r",  # Italian (R:)
    "odp",  # Polish
    "ynt",  # Turkish
    "res",  # Portuguese (Resposta)
    "răspuns",  # Romanian
    "atb",  # Latvian
    "vá",  # Icelandic
    "απ",  # Greek
    "σχετ",  # Greek
    "отв",  # Russian
    "ответ",  # Russian
    "回复",  # Chinese (simplified)
    "回覆",  # Chinese (traditional)
    "答复",  # Chinese
    "返信",  # Japanese
    "答覆",  # Chinese
    "השב",  # Hebrew
    "رد",  # Arabic
)
FORWARD_WORDS = (
    "fwd",
    "fw",
    "wg",  # German (Weitergeleitet)
    "tr",  # French (Transféré)
    "rv",  # Spanish (Reenviado)
    "enc",  # Portuguese (Encaminhado)
    "doorst",  # Dutch
    "vl",  # Finnish (Välitetty)
    "vs",
    "pd",  # Polish
    "ilt",  # Turkish
    "転送",  # Japanese
    "转发",  # Chinese
    "пересл",  # Russian
)

_COUNTER = r"(?:\s*(?:\[\d+\]|\(\d+\)|\^\d+|\*\d+))?"
_WORDS = "|".join(sorted({re.escape(w) for w in REPLY_WORDS + FORWARD_WORDS}, key=len, reverse=True))
_REPLY_ONLY = "|".join(sorted({re.escape(w) for w in REPLY_WORDS}, key=len, reverse=True))
_TAG = r"\[[^\[\]]{1,64}\]"
# One leading prefix or list tag; applied repeatedly ("Re: [dev] AW: [dev] Re: …").
_PREFIX = re.compile(rf"^(?:\s*(?:(?:{_WORDS}){_COUNTER}\s*[:：]|{_TAG}))+\s*", re.IGNORECASE)
_REPLY_PREFIX = re.compile(rf"^\s*(?:{_TAG}\s*)*(?:{_REPLY_ONLY}){_COUNTER}\s*[:：]", re.IGNORECASE)
_ONE_PREFIX = re.compile(rf"\s*(?:(?:{_WORDS}){_COUNTER}\s*[:：]|{_TAG})", re.IGNORECASE)
# Trailing forms: "(fwd)" (pine), "- Re:"-less trailing tags are rare and left alone.
_SUFFIX = re.compile(r"\s*\((?:fwd|fw)\)\s*$", re.IGNORECASE)
# "New subject (was: Old subject)", also with brackets or without the colon.
_WAS = re.compile(r"^(?P<new>.*?)\s*[(\[]\s*was\s*:?\s*(?P<old>.+?)\s*[)\]]\s*$", re.IGNORECASE | re.DOTALL)
_PUNCT_EDGES = re.compile(r"^[\s\-–—:;,.!?]+|[\s\-–—:;,.!?]+$")

# Subjects so common that sharing one says nothing about sharing a thread: the subject
# fallback never joins topics by these (DESIGN.md: strangers' "Question" threads stay apart).
GENERIC_SUBJECTS = frozenset(
    {
        "",
        "question",
        "questions",
        "a question",
        "quick question",
        "help",
        "help!",
        "help needed",
        "help please",
        "please help",
        "need help",
        "hello",
        "hi",
        "hey",
        "hi all",
        "hello all",
        "hello everyone",
        "hi everyone",
        "test",
        "testing",
        "problem",
        "problems",
        "issue",
        "query",
        "urgent",
        "info",
        "information",
        "request",
        "inquiry",
        "enquiry",
        "thanks",
        "thank you",
        "update",
        "no subject",
        "(no subject)",
        "untitled",
        "fyi",
        "bug",
        "error",
        "idea",
        "suggestion",
        "feedback",
        "meeting",
        "news",
    }
)


def _strip_prefixes(subject: str) -> str:
    return _PREFIX.sub("", _SUFFIX.sub("", subject), count=1)


def _normalise(text: str) -> str:
    text = unicodedata.normalize("NFKC", text)
    text = _SPACE.sub(" ", text).strip()
    return _PUNCT_EDGES.sub("", text).casefold()[:255]


@dataclass(frozen=True, slots=True)
class SubjectInfo:
    """What the threader reads from a subject line."""

    key: str  # the topic it names, normalised ("" when none)
    was_key: str  # the old topic named by "New (was: Old)", else ""
    title: str  # the subject for display, without reply prefixes, list tags and "(was: …)"
    is_reply: bool  # starts with a reply prefix, or announces a change with "(was: …)"

    @property
    def generic(self) -> bool:
        return is_generic(self.key)


@functools.lru_cache(maxsize=4096)
def reply_subject(subject: str) -> str:
    """The subject of an answer: ``Re: `` in front unless it is a reply already (in any of the
    prefixes ``subject_info`` knows, after list tags) — never "Re: Re: …"."""
    return subject if _REPLY_PREFIX.match(subject) else f"Re: {subject}"


def leading_prefixes(subject: str) -> tuple[list[str], str]:
    """The reply/forward prefixes and ``[tags]`` a subject starts with, one by one as written
    (``["Re:", "[dev]", "AW:"]``), and the rest of it."""
    found: list[str] = []
    position = 0
    while len(found) < 50 and (prefix := _ONE_PREFIX.match(subject, position)) and prefix.end() > position:
        found.append(prefix.group().strip())
        position = prefix.end()
    return found, subject[position:].strip()


def is_tag(prefix: str) -> bool:
    """Whether one of ``leading_prefixes`` is a ``[tag]`` (not a reply or forward word)."""
    return prefix.startswith("[")


def subject_info(subject: str) -> SubjectInfo:
    subject = unicodedata.normalize("NFKC", subject[:2000])
    stripped = _strip_prefixes(subject)
    was_key = ""
    changed = _WAS.match(stripped)
    if changed and changed.group("new").strip():
        was_key = _normalise(_strip_prefixes(changed.group("old")))
        stripped = changed.group("new")
    title = _SPACE.sub(" ", stripped).strip()
    is_reply = bool(_REPLY_PREFIX.match(subject)) or bool(was_key)
    return SubjectInfo(_normalise(stripped), was_key, title, is_reply)


def subject_key(subject: str) -> str:
    """The subject without reply/forward prefixes, list tags and "(was: …)", for matching."""
    return subject_info(subject).key


def looks_like_reply(subject: str) -> bool:
    return subject_info(subject).is_reply


def is_generic(key: str) -> bool:
    """A normalised subject that says nothing: empty, very short, or a stock phrase."""
    return key in GENERIC_SUBJECTS or len(key) < 4


# --- Outlook's Thread-Index -------------------------------------------------------------------

THREAD_INDEX_HEADER = 22  # bytes: 6 of FILETIME and 16 of conversation GUID
THREAD_INDEX_CHILD = 5  # each reply appends one 5-byte block
MAX_THREAD_DEPTH = 200


@dataclass(frozen=True, slots=True)
class ThreadIndex:
    """Outlook's ``Thread-Index``: a conversation id and this message's place in it."""

    conversation: str  # hex of the first 22 bytes: the same for every message of the conversation
    index: str  # hex of the whole value
    depth: int  # number of child blocks (0: the conversation's first message)

    @property
    def parent_index(self) -> str | None:
        """The index the direct parent carries: this one without its last block."""
        if self.depth == 0:
            return None
        return self.index[: -2 * THREAD_INDEX_CHILD]


def thread_index(value: str | None) -> ThreadIndex | None:
    """Decode a Thread-Index header; None when absent or malformed."""
    if not value:
        return None
    text = _SPACE.sub("", value)
    if len(text) > 4 * (THREAD_INDEX_HEADER + THREAD_INDEX_CHILD * MAX_THREAD_DEPTH) // 3 + 4:
        return None
    try:
        data = base64.b64decode(text + "=" * (-len(text) % 4), validate=True)
    except (binascii.Error, ValueError):
        return None
    if len(data) < THREAD_INDEX_HEADER or (len(data) - THREAD_INDEX_HEADER) % THREAD_INDEX_CHILD:
        return None
    if not any(data[6:THREAD_INDEX_HEADER]):  # an all-zero GUID names no conversation
        return None
    return ThreadIndex(
        data[:THREAD_INDEX_HEADER].hex(),
        data.hex(),
        (len(data) - THREAD_INDEX_HEADER) // THREAD_INDEX_CHILD,
    )
