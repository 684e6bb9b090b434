"""A digest as bytes: rendered once per list and period, personalised per member by splicing.

Rendering the template per subscriber took 81 s for 10,000 digests of 50 posts, and
building each as an ``EmailMessage`` 65 s (measured as bench/digest.py does); so the text and
HTML are rendered once with a marker where each post's reply address goes, cut at the
markers, and each piece is quoted-printable encoded once. A member's digest is then a
join: the constant byte runs (``gaps``) with their signed reply addresses (``slots``)
between them.

A reply address is ``[a-z0-9+.-]`` and ``@`` only, so it needs no encoding. In a
quoted-printable body it is put on a line of its own with soft line breaks (``=``
CRLF) on both sides, so no encoded line grows past the RFC 2045 limit and decoders join
it back seamlessly. A slot may also be a header value (``Slot.header``), such as the
``Reply-To`` of a message embedded in a MIME digest: there it goes in bare, after the
same printable-ASCII check as every spliced header (``compose._spliceable``).
"""

from __future__ import annotations

import binascii
import datetime as dt
import email
import email.policy
import re
import secrets
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from email.headerregistry import Address
from email.message import EmailMessage, Message
from email.utils import format_datetime

from mailforum.mail.compose import (
    _BROKEN_HEAD,
    POLICY,
    ListIdentity,
    PostView,
    _spliceable,
    canonical_body,
    header_text,
    list_headers,
    post_headers,
)
from mailforum.mail.wire import END, WireData, stuff

# Where a post's reply address goes in the rendered text: ESC R <post id> ESC. ESC never
# survives canonical_body, so input cannot forge a marker.
MARK = "\x1bR{}\x1b"
_MARK = re.compile(r"\x1bR(\d+)\x1b")
_SOFT = b"=\r\n"


def marker(post_id: int) -> str:
    return MARK.format(post_id)


def _qp(text: str) -> bytes:
    encoded = binascii.b2a_qp(text.encode("utf-8"), quotetabs=False, istext=True, header=False)
    return encoded.replace(b"\n", b"\r\n")


@dataclass(frozen=True, slots=True)
class Slot:
    """Where one member's reply address for one post goes: a QP body, or a header value."""

    post_id: int
    header: bool = False


def _pieces(text: str) -> list[bytes | Slot]:
    """The encoded text cut at the markers: bytes, slot, bytes, …"""
    out: list[bytes | Slot] = []
    parts = _MARK.split(text)
    for at, part in enumerate(parts):
        if at % 2:
            out.append(Slot(int(part)))
        else:
            out.append(_qp(canonical_body(part)) if part else b"")
    return out


@dataclass(frozen=True, slots=True)
class SharedDigest:
    """One list's digest for one period: the header block, and the body as gaps and slots.

    ``gaps`` has one more item than ``slots``: gap, slot, gap, …, gap. ``wire_head``,
    ``wire_gaps`` and ``wire_end`` are the same in SMTP DATA form (``mail.wire``), made
    once for every member's copy; they are the very objects of ``head`` and ``gaps``
    wherever dot-stuffing changes nothing.
    """

    head: bytes
    gaps: tuple[bytes, ...]
    slots: tuple[Slot, ...]
    post_ids: tuple[int, ...]
    wire_head: bytes
    wire_gaps: tuple[bytes, ...]
    wire_end: bytes
    # Each slot's post, as an index into post_ids, and whether it is a header value.
    plan: tuple[tuple[int, bool], ...]

    @property
    def size(self) -> int:
        """Bytes held (without the few spliced in per member)."""
        held = len(self.head) + sum(len(gap) for gap in self.gaps)
        if self.wire_head is not self.head:
            held += len(self.wire_head)
        return held + sum(len(w) for w, gap in zip(self.wire_gaps, self.gaps, strict=True) if w is not gap)

    def personalise(
        self, message_id: str, reply_address: Callable[[int], str], unsubscribe: Sequence[str]
    ) -> bytes:
        """The bytes for one member: their Message-ID, List-Unsubscribe and reply addresses."""
        return self.join(message_id, [reply_address(pid) for pid in self.post_ids], unsubscribe)

    def join(
        self, message_id: str, addresses: Sequence[str], unsubscribe: Sequence[str], wire: bool = False
    ) -> bytes:
        """One member's digest, given their reply address for each of ``post_ids`` (in order).

        With ``wire``, a ``mail.wire.WireData``: the DATA bytes the relay client sends as
        they are (not for a message that is still to be changed, such as DKIM-signed).
        """
        if len(addresses) != len(self.post_ids):
            raise ValueError(f"{len(addresses)} reply addresses for {len(self.post_ids)} posts")
        if not all(addresses):
            raise ValueError("an empty reply address")
        # One check for all: the printable-ASCII test of _spliceable holds for the whole
        # if it holds for the concatenation.
        if addresses:
            _spliceable("".join(addresses))
        encoded = [address.encode("ascii") for address in addresses]
        lines = [b"Message-ID: " + _spliceable(message_id)]
        if unsubscribe:
            lines.append(
                b"List-Unsubscribe: " + b", ".join(b"<" + _spliceable(u) + b">" for u in unsubscribe)
            )
        if wire:
            gaps, head = self.wire_gaps, self.wire_head
            # A body slot's address starts a line: dot-stuffed like the rest (never, in
            # practice: list names start with a letter or digit).
            starts = [b"." + a if a[:1] == b"." else a for a in encoded]
        else:
            gaps, head, starts = self.gaps, self.head, encoded
        soft = [_SOFT + address + _SOFT for address in starts]
        body: list[bytes] = [b""] * (2 * len(self.plan) + 1)
        body[::2] = gaps
        body[1::2] = [encoded[at] if header else soft[at] for at, header in self.plan]
        if not wire:
            return b"".join((head, b"\r\n".join(lines), b"\r\n\r\n", *body))
        return WireData(b"".join((head, b"\r\n".join(lines), b"\r\n\r\n", *body, self.wire_end)))


def _assemble(head: bytes, pieces: Sequence[bytes | Slot]) -> SharedDigest:
    """The shared digest from its header block and body pieces (neighbouring bytes joined)."""
    gaps: list[list[bytes]] = [[]]
    slots: list[Slot] = []
    for piece in pieces:
        if isinstance(piece, Slot):
            slots.append(piece)
            gaps.append([])
        else:
            gaps[-1].append(piece)
    joined = tuple(b"".join(gap) for gap in gaps)
    post_ids = tuple(dict.fromkeys(s.post_id for s in slots))
    where = {pid: at for at, pid in enumerate(post_ids)}
    # The body starts a line (after the header block); so does every gap after a body
    # slot (its soft line break), not one after a header slot (the rest of that line).
    wire_gaps = tuple(stuff(gap, at == 0 or not slots[at - 1].header) for at, gap in enumerate(joined))
    last = wire_gaps[-1]
    ends_line = last.endswith(b"\r\n") if last else not slots or not slots[-1].header
    return SharedDigest(
        head,
        joined,
        tuple(slots),
        post_ids,
        stuff(head, True),
        wire_gaps,
        END if ends_line else b"\r\n" + END,
        tuple((where[s.post_id], s.header) for s in slots),
    )


def _head(ident: ListIdentity, subject: str, date: dt.datetime, content_type: str) -> bytes:
    """The digest's shared header block: From the list (as a digest), the List-* headers."""
    msg = EmailMessage(policy=POLICY)
    title = header_text(ident.title) or ident.name
    msg["From"] = Address(display_name=f"{title} digest", addr_spec=ident.address)
    msg["To"] = Address(display_name=title, addr_spec=ident.address)
    msg["Subject"] = ident.tagged(subject)
    msg["Date"] = format_datetime(date.astimezone(dt.UTC))
    list_headers(msg, ident)
    msg["MIME-Version"] = "1.0"
    msg["Content-Type"] = content_type
    return _folded(msg)


def _folded(msg: EmailMessage) -> bytes:
    """The message's headers as folded bytes, refused unless they are exactly the fields set.

    Every line is either one of the fields assigned, in order, or a folded continuation
    (starting with a space or tab); nothing in a value can start a field of its own
    (RELIABILITY S12, B23), and no stray CR, LF or NUL survives.
    """
    head = b"".join(POLICY.fold_binary(name, value) for name, value in msg.items())
    lines = head.split(b"\r\n")
    starts = [  # an empty line would end the header block: it counts as a field, and fails
        line.split(b":", 1)[0].decode("ascii", "replace").lower()
        for line in lines[:-1]
        if not line.startswith((b" ", b"\t"))
    ]
    if (
        lines[-1]
        or _BROKEN_HEAD.search(head.replace(b"\r\n", b""))
        or starts != [name.lower() for name in msg]
    ):
        raise ValueError("generated header block is malformed")
    return head


def _boundary() -> str:
    # "=_" cannot occur in quoted-printable text, so the boundary never collides.
    return "=_digest_" + secrets.token_hex(12)


_TEXT_PART = b"Content-Type: text/plain; charset=utf-8\r\nContent-Transfer-Encoding: quoted-printable\r\n\r\n"


def build(
    ident: ListIdentity, subject: str, text: str, html: str, date: dt.datetime, post_ids: Sequence[int]
) -> SharedDigest:
    """The shared standard digest: headers (From the list, as a digest) and a multipart/alternative body."""
    boundary = _boundary()
    head = _head(ident, subject, date, f'multipart/alternative; boundary="{boundary}"')
    b = boundary.encode("ascii")
    part = b"Content-Type: text/%s; charset=utf-8\r\nContent-Transfer-Encoding: quoted-printable\r\n\r\n"
    pieces: list[bytes | Slot] = [b"--" + b + b"\r\n" + part % b"plain"]
    pieces += _pieces(text)
    pieces.append(b"\r\n--" + b + b"\r\n" + part % b"html")
    pieces += _pieces(html)
    pieces.append(b"\r\n--" + b + b"--\r\n")
    return _assemble(head, pieces)


# -- the MIME digest (RFC 1153, RFC 2046 §5.1.5) -----------------------------------


@dataclass(frozen=True, slots=True)
class EmbeddedPost:
    """One post as a MIME digest carries it: its headers' values and its whole text, rendered."""

    post_id: int
    view: PostView
    text: str


Embedded = tuple[bytes | Slot, ...]


def embed(ident: ListIdentity, post: EmbeddedPost) -> Embedded:
    """One post as a ``message/rfc822`` part, regenerated from what we stored.

    Never the stored raw message: it may carry forged Authentication-Results, huge
    attachments or hostile HTML. The headers are the ones every copy of the post has
    (``compose.post_headers``: DMARC-safe From, the post's own Message-ID, In-Reply-To
    and References from the stored thread), plus ``Reply-To`` — a slot for the member's
    signed reply address, so Reply in any mail program threads under this post — and a
    ``text/plain`` body, quoted-printable, so the part is 7-bit as RFC 2046 §5.2.1 asks.
    """
    msg = EmailMessage(policy=POLICY)
    post_headers(msg, ident, post.view)
    return (
        b"Content-Type: message/rfc822\r\n\r\n" + _folded(msg) + b"Reply-To: ",
        Slot(post.post_id, header=True),
        b"\r\nMIME-Version: 1.0\r\n" + _TEXT_PART + _qp(canonical_body(post.text)),
    )


def build_mime(
    ident: ListIdentity,
    subject: str,
    contents: str,
    footer: str,
    posts: Sequence[Embedded],
    date: dt.datetime,
) -> SharedDigest:
    """The shared MIME digest: multipart/mixed of the contents (text/plain, with reply-address
    markers), a multipart/digest of the posts (``embed``, in the contents' order), and a footer.
    """
    outer, inner = _boundary(), _boundary()
    head = _head(ident, subject, date, f'multipart/mixed; boundary="{outer}"')
    o, i = outer.encode("ascii"), inner.encode("ascii")
    pieces: list[bytes | Slot] = [b"--" + o + b"\r\n" + _TEXT_PART]
    pieces += _pieces(contents)
    pieces.append(b"\r\n--" + o + b'\r\nContent-Type: multipart/digest; boundary="' + i + b'"\r\n\r\n')
    for post in posts:
        pieces.append(b"--" + i + b"\r\n")
        pieces += post
        pieces.append(b"\r\n")
    pieces.append(b"--" + i + b"--\r\n\r\n--" + o + b"\r\n" + _TEXT_PART)
    pieces += _pieces(footer)
    pieces.append(b"\r\n--" + o + b"--\r\n")
    return _assemble(head, pieces)


_SHOWN = ("From", "Subject", "Date", "Message-ID", "In-Reply-To", "References", "Reply-To")


def outline(data: bytes) -> str:
    """A digest as an operator reads it (``digest send --dry-run``): each part, its type, text.

    Embedded messages show the headers a reader's mail program threads and replies by.
    """
    msg = email.message_from_bytes(data, policy=email.policy.default)
    out: list[str] = []

    def show(part: Message, number: str) -> None:
        kind = part.get_content_type()
        if kind == "message/rfc822":
            payload = part.get_payload()
            assert isinstance(payload, list) and isinstance(payload[0], Message)  # our own digest
            inner = payload[0]
            out.append(f"=== {number}: message/rfc822")
            out.extend(f"{name}: {inner[name]}" for name in _SHOWN if inner[name] is not None)
            out.append("")
            out.append(_text(inner))
        elif part.is_multipart():
            children = part.get_payload()
            assert isinstance(children, list)
            out.append(f"=== {number or 'digest'}: {kind}, {len(children)} parts")
            for at, child in enumerate(children, 1):
                show(child, f"{number}.{at}" if number else str(at))
        else:
            out.append(f"=== {number}: {kind}")
            out.append(_text(part))

    show(msg, "")
    return "\n".join(out)


def _text(part: Message) -> str:
    if not isinstance(part, EmailMessage) or part.get_content_maintype() != "text":
        return "(not text)"
    return str(part.get_content()).replace("\r\n", "\n").rstrip("\n") + "\n"


def unmark(text: str, replacement: str) -> str:
    """The rendered text with every reply-address marker replaced (for previews)."""
    return _MARK.sub(replacement.replace("\\", "\\\\"), text)
