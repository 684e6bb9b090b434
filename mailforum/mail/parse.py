"""Raw bytes → ``ParsedMessage``: the typed view of a message that the core works with.

Parsing uses the stdlib ``email`` package with ``policy.compat32``: it is several
times faster than ``policy.default`` (bench/parse.py), and we decode only the few
headers we need ourselves, with fallbacks for lying or unknown charsets, so no
``LookupError`` or ``UnicodeDecodeError`` ever escapes. Hostile structure is
refused before the parser sees it (``check_limits``), so a message costs
milliseconds, not seconds.
"""

from __future__ import annotations

import codecs
import datetime as dt
import hashlib
import html
import re
from dataclasses import dataclass, field
from email import message_from_bytes
from email.header import decode_header
from email.message import Message
from email.policy import compat32
from email.utils import getaddresses, parsedate_to_datetime

import nh3

from mailforum.errors import MailforumError
from mailforum.mail.headers import canonical_msgid

MAX_PARTS = 500
MAX_CONTAINERS = 100  # multipart and message/rfc822 containers: bounds the nesting depth


class Unprocessable(MailforumError):
    """The message can never be processed (hostile structure); park it at once, don't retry."""


@dataclass(frozen=True, slots=True)
class Attachment:
    filename: str
    content_type: str
    size: int


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
    headers: dict[str, str] = field(default_factory=dict)  # selected raw headers, lower-case names

    def header(self, name: str) -> str:
        return self.headers.get(name.lower(), "")


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


def split_header_block(raw: bytes) -> tuple[bytes, bytes]:
    """(header block, body) at the first empty line; CRLF or LF."""
    for sep in (b"\r\n\r\n", b"\n\n"):
        at = raw.find(sep)
        if at != -1:
            return raw[:at], raw[at + len(sep) :]
    return raw, b""


def check_limits(raw: bytes, max_parts: int = MAX_PARTS, max_containers: int = MAX_CONTAINERS) -> None:
    """Refuse hostile MIME structure before any recursive parse (RELIABILITY B34, B35, B37)."""
    lowered = raw.lower()
    containers = lowered.count(b"multipart/") + lowered.count(b"message/rfc822")
    if containers > max_containers:
        raise Unprocessable(f"MIME structure too deep or too large ({containers} containers)")
    delimiters = len(re.findall(rb"(?m)^--[^\r\n]", raw))
    if delimiters > max_parts * 2:
        raise Unprocessable(f"too many MIME parts (about {delimiters // 2})")


def decode_text(data: bytes, charset: str | None) -> str:
    """Decode with the declared charset, falling back to UTF-8 then Latin-1; never raises."""
    name = (charset or "utf-8").strip().strip('"').lower()
    try:
        codec = codecs.lookup(name).name
    except LookupError:
        codec = "utf-8"
    if codec == "utf-7":  # +ADw-script+AD4- must not turn into markup (RELIABILITY B32)
        codec = "ascii"
    for candidate in (codec, "utf-8"):
        try:
            return data.decode(candidate).replace("\x00", "")
        except (UnicodeDecodeError, LookupError):
            continue
    return data.decode("latin-1").replace("\x00", "")


def decode_header_value(value: str | None) -> str:
    """An RFC 2047 header value as text, on one line, without control characters."""
    if value is None:
        return ""
    value = str(value)
    try:
        parts = decode_header(value)
    except Exception:  # malformed encoded-words: show the value as it came
        parts = [(value, None)]
    out = []
    for chunk, charset in parts:
        if isinstance(chunk, bytes):
            # compat32 turns raw 8-bit header bytes into surrogates; get the bytes back first
            out.append(decode_text(chunk, charset))
        else:
            out.append(_unsurrogate(chunk))
    text = "".join(out)
    return _CONTROL.sub(" ", text).strip()


_CONTROL = re.compile(r"[\x00-\x1f\x7f]+")


def _unsurrogate(text: str) -> str:
    try:
        raw = text.encode("utf-8", "surrogateescape")
    except UnicodeEncodeError:
        return text
    return decode_text(raw, "utf-8")


def _parse_date(value: str | None) -> dt.datetime | None:
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
    if not 1980 <= parsed.year <= dt.datetime.now(dt.UTC).year + 1:
        return None
    return parsed.astimezone(dt.UTC)


def _sender(msg: Message) -> tuple[str, str]:
    values = msg.get_all("from") or []
    if not values:
        return "", ""
    decoded = [decode_header_value(v) for v in values[:1]]
    pairs = getaddresses(decoded)
    if not pairs:
        return "", ""
    name, addr = pairs[0]
    if "@" not in addr:
        return "", name
    return addr.strip().lower(), name.strip()


def html_to_text(markup: str) -> str:
    """Readable text from HTML: block ends become line breaks, all tags and scripts go."""
    markup = re.sub(r"(?i)<\s*(br|/p|/div|/li|/tr|/h[1-6])\b[^>]*>", "\n", markup)
    stripped = nh3.clean(markup, tags=set(), clean_content_tags={"script", "style", "head", "title"})
    text = html.unescape(stripped)
    return re.sub(r"\n{3,}", "\n\n", text).strip()


def _bodies(msg: Message) -> tuple[str, str | None, tuple[Attachment, ...]]:
    text: str | None = None
    markup: str | None = None
    attachments: list[Attachment] = []
    for part in msg.walk():
        if part.is_multipart():
            continue
        ctype = part.get_content_type()
        disposition = (part.get("content-disposition") or "").split(";")[0].strip().lower()
        filename = part.get_filename()
        payload = part.get_payload(decode=True)
        data = payload if isinstance(payload, bytes) else b""
        if disposition == "attachment" or filename or not ctype.startswith("text/"):
            if part is msg and ctype.startswith("text/"):
                pass  # a single-part message is its body even if it calls itself an attachment
            else:
                name = decode_header_value(filename) if filename else ""
                attachments.append(Attachment(name, ctype, len(data)))
                continue
        if ctype == "text/plain" and text is None:
            text = decode_text(data, part.get_content_charset())
        elif ctype == "text/html" and markup is None:
            markup = decode_text(data, part.get_content_charset())
    if text is None:
        text = html_to_text(markup) if markup else ""
    return text.replace("\r\n", "\n"), markup, tuple(attachments)


def fingerprint(raw: bytes, msg: Message) -> str:
    """Identity of a message across deliveries: identifying headers plus the body bytes.

    Trace headers (Received, Delivered-To …) differ between two deliveries of the same
    message, so the whole raw bytes would not do (RELIABILITY F2, F13).
    """
    digest = hashlib.sha256()
    for name in ("message-id", "from", "date", "subject"):
        digest.update(str(msg.get(name, "")).strip().encode("utf-8", "surrogateescape"))
        digest.update(b"\0")
    digest.update(split_header_block(raw)[1].replace(b"\r\n", b"\n"))
    return digest.hexdigest()


def parse(raw: bytes) -> ParsedMessage:
    """Parse one message; raises ``Unprocessable`` for hostile structure, nothing else."""
    check_limits(raw)
    msg = message_from_bytes(raw, policy=compat32)
    print_ = fingerprint(raw, msg)
    declared = canonical_msgid(_unsurrogate(str(msg.get("message-id", ""))))
    message_id = declared or f"<{print_[:32]}@mailforum.invalid>"
    address, name = _sender(msg)
    text, markup, attachments = _bodies(msg)
    kept = {h: decode_header_value(msg.get(h)) for h in KEPT_HEADERS if msg.get(h) is not None}
    return ParsedMessage(
        message_id=message_id,
        synthesized_id=declared is None,
        in_reply_to=_unsurrogate(str(msg["in-reply-to"])) if msg.get("in-reply-to") else None,
        references=_unsurrogate(str(msg["references"])) if msg.get("references") else None,
        subject=decode_header_value(msg.get("subject")),
        from_address=address,
        from_name=name,
        date=_parse_date(_unsurrogate(str(msg.get("date", "")))),
        text_body=text,
        html_body=markup,
        attachments=attachments,
        fingerprint=print_,
        headers=kept,
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
