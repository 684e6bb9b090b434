"""A digest as bytes: rendered once per list and period, personalised per member by splicing.

Rendering the template per subscriber took 81 s for 10,000 digests of 50 posts, and
building each as an ``EmailMessage`` 65 s (issue 6's measurements); so the text and
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
import re
import secrets
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from email.headerregistry import Address
from email.message import EmailMessage
from email.utils import format_datetime

from mailforum.mail.compose import (
    _BROKEN_HEAD,
    POLICY,
    ListIdentity,
    _phrase,
    _spliceable,
    canonical_body,
    header_text,
)

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

    ``gaps`` has one more item than ``slots``: gap, slot, gap, …, gap.
    """

    head: bytes
    gaps: tuple[bytes, ...]
    slots: tuple[Slot, ...]
    post_ids: tuple[int, ...]

    def personalise(
        self, message_id: str, reply_address: Callable[[int], str], unsubscribe: Sequence[str]
    ) -> bytes:
        """The bytes for one member: their Message-ID, List-Unsubscribe and reply addresses."""
        bare = {pid: _spliceable(reply_address(pid)) for pid in self.post_ids}
        soft = {pid: _SOFT + address + _SOFT for pid, address in bare.items()}
        lines = [b"Message-ID: " + _spliceable(message_id)]
        if unsubscribe:
            lines.append(
                b"List-Unsubscribe: " + b", ".join(b"<" + _spliceable(u) + b">" for u in unsubscribe)
            )
        body: list[bytes] = [b""] * (2 * len(self.slots) + 1)
        body[::2] = self.gaps
        body[1::2] = [bare[s.post_id] if s.header else soft[s.post_id] for s in self.slots]
        return b"".join((self.head, b"\r\n".join(lines), b"\r\n\r\n", *body))


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
    return SharedDigest(
        head,
        tuple(b"".join(gap) for gap in gaps),
        tuple(slots),
        tuple(dict.fromkeys(s.post_id for s in slots)),
    )


def build(
    ident: ListIdentity, subject: str, text: str, html: str, date: dt.datetime, post_ids: Sequence[int]
) -> SharedDigest:
    """The shared digest: headers (From the list, as a digest) and a multipart/alternative body."""
    msg = EmailMessage(policy=POLICY)
    title = header_text(ident.title) or ident.name
    msg["From"] = Address(display_name=f"{title} digest", addr_spec=ident.address)
    msg["To"] = Address(display_name=title, addr_spec=ident.address)
    msg["Subject"] = ident.tagged(subject)
    msg["Date"] = format_datetime(date.astimezone(dt.UTC))
    msg["List-Id"] = f"{_phrase(title)} <{ident.list_id}>"
    msg["List-Post"] = f"<mailto:{ident.address}>"
    msg["List-Help"] = f"<mailto:{ident.request_address}?subject=help>"
    msg["List-Archive"] = f"<{ident.archive_url}>"
    msg["List-Unsubscribe-Post"] = "List-Unsubscribe=One-Click"
    msg["Precedence"] = "list"
    msg["Auto-Submitted"] = "auto-generated"
    msg["X-Loop"] = ident.address
    msg["MIME-Version"] = "1.0"
    # "=_" cannot occur in quoted-printable text, so the boundary never collides.
    boundary = "=_digest_" + secrets.token_hex(12)
    msg["Content-Type"] = f'multipart/alternative; boundary="{boundary}"'
    head = b"".join(POLICY.fold_binary(name, value) for name, value in msg.items())
    if _BROKEN_HEAD.search(head.replace(b"\r\n", b"")):  # never a stray CR, LF or NUL in a header
        raise ValueError("generated header block is malformed")
    b = boundary.encode("ascii")
    part = b"Content-Type: text/%s; charset=utf-8\r\nContent-Transfer-Encoding: quoted-printable\r\n\r\n"
    pieces: list[bytes | Slot] = [b"--" + b + b"\r\n" + part % b"plain"]
    pieces += _pieces(text)
    pieces.append(b"\r\n--" + b + b"\r\n" + part % b"html")
    pieces += _pieces(html)
    pieces.append(b"\r\n--" + b + b"--\r\n")
    return _assemble(head, pieces)


def unmark(text: str, replacement: str) -> str:
    """The rendered text with every reply-address marker replaced (for previews)."""
    return _MARK.sub(replacement.replace("\\", "\\\\"), text)
