"""Outgoing mail as bytes: built once per post, personalised per recipient by splicing.

Building an ``EmailMessage`` per copy costs ~2 ms (20 s for 10,000 copies); splicing
the per-recipient header lines into bytes rendered once per post costs microseconds
(measured as bench/fanout.py does). So ``notification`` builds the shared part once with the
stdlib ``email`` package (policy ``SMTP``: CRLF, RFC 2047 for non-ASCII, folding),
and ``personalise`` adds the few lines that differ per recipient — ``Reply-To`` with
the signed reply address and ``List-Unsubscribe`` — after checking that they hold
nothing but printable ASCII.

Every value that came from a sender (subject, display name, addresses, Message-IDs)
passes ``clean()`` first: no CR, LF, NUL or other control characters can reach a
header we write (RELIABILITY S12, B23; CVE-2024-6923). Bodies are canonicalised to
CRLF with no stray CR or LF (Postfix ``cleanup_replace_stray_cr_lf``) and sent
quoted-printable, so no line is too long for any relay; dot-stuffing is the SMTP
client's job (``runners.relay_client``).
"""

from __future__ import annotations

import base64
import datetime as dt
import functools
import hashlib
import re
import secrets
from collections.abc import Sequence
from dataclasses import dataclass
from email import errors, policy, quoprimime
from email.headerregistry import Address, AddressHeader, HeaderRegistry
from email.message import EmailMessage
from email.utils import format_datetime
from itertools import dropwhile
from urllib.parse import quote

from mailforum.errors import RecipientRefused
from mailforum.mail.addresses import Kind, parse_recipient
from mailforum.mail.headers import is_tag, leading_prefixes
from mailforum.textsafe import strip_bidi, url_filename

_HEADERS = HeaderRegistry()
# An address, so names are encoded right. The registry mixes the class into BaseHeader, so it
# needs none itself, but typeshed asks for a BaseHeader subclass.
_HEADERS.map_to_type("x-original-from", AddressHeader)  # type: ignore[arg-type]
MAX_LINE = 78
POLICY = policy.SMTP.clone(max_line_length=MAX_LINE, header_factory=_HEADERS)
MAX_REFERENCES = 20
MAX_COPIED = 50  # the sender's To and Cc addresses a copy shows, each
_CONTROL = re.compile(r"[\x00-\x1f\x7f\u0085\u2028\u2029]+")
_SAFE_SPLICE = re.compile(r"^[\x21-\x7e]+$")
# msg-id as RFC 5322 §3.6.4 writes it (dot-atom-text on both sides), nothing looser: odd ids
# with quotes or backslashes are folded wrongly by the stdlib (a bare LF), so they are mapped.
_ATEXT = r"[A-Za-z0-9!#$%&'*+/=?^_`{|}~.-]"
_STRICT_MSGID = re.compile(rf"^<{_ATEXT}+@(?:{_ATEXT}+|\[[\x21-\x5a\x5e-\x7e]*\])>$")


def header_text(value: str) -> str:
    """Input text made safe to assign to a header: no control characters, even after decoding.

    The stdlib decodes RFC 2047 encoded-words in any string assigned to a header, so a
    literal ``=?utf-8?b?DQpCY2M6…?=`` in a subject would turn into CR LF "Bcc:" on the
    way out (CVE-2024-6923 class). We decode the way the stdlib will, clean, and repeat
    until nothing changes; what we assign then decodes to itself.
    """
    value = clean(value)
    for _ in range(4):
        decoded = clean(str(_HEADERS("subject", value)))
        if decoded == value:
            return value
        value = decoded
    return clean(value.replace("=?", "= ?"))


def safe_msgid(value: str) -> str:
    """The Message-ID as we write it: itself when strictly valid, else a stable stand-in.

    The stand-in is derived from the id, so every copy and every reply's References
    map the same stored id to the same written one.
    """
    value = clean(value)
    if _STRICT_MSGID.match(value) and len(value) <= 250:
        return value
    digest = hashlib.sha256(value.encode("utf-8", "surrogatepass")).hexdigest()[:32]
    return f"<{digest}@mailforum.invalid>"


_BROKEN_HEAD = re.compile(rb"\r(?!\n)|(?<!\r)\n|\x00")


def display_text(value: str) -> str:
    """``header_text`` for a display name that other text follows ("X via list"): without
    bidi controls too, even those an encoded-word decodes to."""
    for _ in range(4):
        stripped = strip_bidi(header_text(value))
        if stripped == value:
            return value
        value = stripped
    return strip_bidi(header_text(value)).replace("=?", "= ?")


def clean(value: str) -> str:
    """A header value from input, on one line: control characters become one space."""
    return _CONTROL.sub(" ", value).strip()


def canonical_body(text: str) -> str:
    """Text with only LF line ends (the generator writes CRLF), without NUL or stray CR."""
    text = text.replace("\r\n", "\n").replace("\r", "\n").replace("\x00", "")
    return re.sub(r"[\x01-\x08\x0b\x0c\x0e-\x1f\x7f]", "", text)


@dataclass(frozen=True, slots=True)
class ListIdentity:
    """A list's addresses and links: the one place that spells them.

    Keep the URLs in step with the web archive's routes (runners/web.py ``ROUTES``).
    ``unsubscribe_url`` is the per-recipient RFC 8058 one-click link that goes first in
    ``List-Unsubscribe`` (see ``personalise``).
    """

    name: str
    title: str
    domain: str
    base_url: str
    subject_tag: str  # "" for none

    @property
    def address(self) -> str:
        return f"{self.name}@{self.domain}"

    @property
    def list_id(self) -> str:
        """RFC 2919 List-Id: an optional phrase and <name.domain>."""
        return f"{self.name}.{self.domain}"

    @property
    def request_address(self) -> str:
        return f"{self.name}-request@{self.domain}"

    @property
    def unsubscribe_mailto(self) -> str:
        return f"mailto:{self.name}+unsubscribe@{self.domain}"

    @property
    def archive_url(self) -> str:
        """The list's page in the web archive (runners/web.py: /lists/{list})."""
        return f"{self.base_url.rstrip('/')}/lists/{quote(self.name)}"

    @property
    def preferences_url(self) -> str:
        """The member's preferences page for this list (runners/web.py: /lists/{list}/preferences).

        The same link for everyone, never one that signs in by itself: it opens the page after
        the reader signs in (by a link mailed to them), so a forwarded copy gives nobody else
        the settings."""
        return f"{self.archive_url}/preferences"

    def topic_url(self, topic_id: int) -> str:
        return f"{self.archive_url}/topics/{topic_id}"

    def post_url(self, post_id: int) -> str:
        """A post's permalink (runners/web.py: /lists/{list}/posts/{id})."""
        return f"{self.archive_url}/posts/{post_id}"

    def attachment_url(self, post_id: int, index: int, filename: str) -> str:
        """One attachment's download (runners/web.py: /lists/{list}/posts/{id}/attachments/{n}/{name});
        the name is a safe generated one, the download is saved under the real one."""
        return f"{self.post_url(post_id)}/attachments/{index}/{url_filename(filename, index)}"

    def unsubscribe_url(self, token: str) -> str:
        """The per-recipient one-click unsubscribe link (RFC 8058), ending in its signed token.

        Outside ``/lists/NAME/``: the token names the list, and the link must work for
        private lists too, whose every archive URL answers 404 (RELIABILITY S15).
        """
        return f"{self.base_url.rstrip('/')}/unsubscribe/{quote(token, safe='')}"

    def confirm_url(self, token: str) -> str:
        """The page that shows a pending confirmation with a button (GET shows, POST confirms)."""
        return f"{self.base_url.rstrip('/')}/confirm/{quote(token, safe='')}"

    def topic_action(self, action: str, topic_id: int) -> str:
        """mailto: link that watches or mutes a topic (NAME+watch-T@domain)."""
        return f"mailto:{self.name}+{action}-{topic_id}@{self.domain}"

    def tagged(self, subject: str) -> str:
        """The subject with the list tag after its leading reply/forward prefixes, once.

        ``Subject`` → ``[dev] Subject``; ``Re: Subject``, ``[dev] Re: Subject`` and
        ``Re: [DEV] Subject`` → ``Re: [dev] Subject``; ``Re: [dev] Re: [dev] Subject`` →
        ``Re: Re: [dev] Subject``: always where the list's own copies have it after a
        client's ``Re:``, spelled the same, so a threaded reader (mutt compares subjects
        as they are) sees one subject all along the thread. Reply and forward prefixes
        stay as the sender wrote them; other lists' tags stay after ours. A tag inside
        the subject's own words ("… (was: [dev] Old)") is text, not our tag.
        """
        subject = header_text(subject) or "(no subject)"
        tag = self.subject_tag
        if not tag:
            return subject
        prefixes, rest = leading_prefixes(subject)
        others = [p for p in prefixes if p.lower() != tag.lower()]
        words = len(others) - len(list(dropwhile(lambda p: not is_tag(p), others)))
        return " ".join([*others[:words], tag, *others[words:], rest]).strip()


@dataclass(frozen=True, slots=True)
class PostView:
    """What a notification shows of a post (plain values, so mail/ needs no database)."""

    message_id: str
    subject: str
    author_name: str
    author_address: str
    date: dt.datetime
    topic_id: int
    ancestors: tuple[str, ...]  # Message-IDs from the topic root down to the parent
    # The To and Cc the sender wrote, (display name, address) pairs: copies show them (B52).
    to: tuple[tuple[str, str], ...] = ()
    cc: tuple[tuple[str, str], ...] = ()
    tags: tuple[str, ...] = ()  # the topic's tags (words of the list's vocabulary)


def tags_in_subject(subject: str, list_tag: str, tags: Sequence[str]) -> str:
    """The copy's subject with ``[tag]`` for each of the topic's tags it does not show yet,
    after the list's own tag (mail filters sort on it): ``[dev] [agile] Sprint length``."""
    shown = subject.lower()
    missing = " ".join(f"[{t}]" for t in tags if f"[{t.lower()}]" not in shown)
    if not missing:
        return subject
    at = subject.find(list_tag) if list_tag else -1
    if at < 0:
        prefixes, rest = leading_prefixes(subject)
        replies = [p for p in prefixes if not is_tag(p)]
        others = [p for p in prefixes if is_tag(p)]
        return " ".join([*replies, missing, *others, rest]).strip()
    end = at + len(list_tag)
    return f"{subject[:end]} {missing}{subject[end:]}"


@dataclass(frozen=True, slots=True)
class SharedCopy:
    """A message rendered once: the shared header block (CRLF-terminated lines) and the body."""

    head: bytes
    body: bytes

    def personalise(self, reply_to: str, unsubscribe: Sequence[str]) -> bytes:
        """The bytes for one recipient: adds ``Reply-To`` and ``List-Unsubscribe``.

        ``unsubscribe`` lists URIs, https first when there is one (RFC 8058 asks for an
        https URI; mailto is the fallback clients also understand).
        """
        lines = [b"Reply-To: " + _spliceable(reply_to)]
        if unsubscribe:
            lines.append(
                b"List-Unsubscribe: " + b", ".join(b"<" + _spliceable(u) + b">" for u in unsubscribe)
            )
        return self.head + b"\r\n".join(lines) + b"\r\n\r\n" + self.body


def _spliceable(value: str) -> bytes:
    if not _SAFE_SPLICE.match(value):
        raise ValueError(f"not a safe header value: {value!r}")
    return value.encode("ascii")


def references(ancestors: Sequence[str]) -> list[str]:
    """The References list: the root and the nearest ancestors, at most ``MAX_REFERENCES``."""
    ids = [safe_msgid(a) for a in ancestors if clean(a)]
    if len(ids) <= MAX_REFERENCES:
        return ids
    return [ids[0], *ids[-(MAX_REFERENCES - 1) :]]


def _author_address(name: str, address: str) -> Address | None:
    try:
        return Address(display_name=header_text(name), addr_spec=clean(address))
    except (ValueError, IndexError, TypeError, errors.MessageError):  # an unparseable address: leave it out
        return None


def copied(ident: ListIdentity, pairs: Sequence[tuple[str, str]]) -> list[Address]:
    """The addresses a sender put in To or Cc, as a copy shows them (at most ``MAX_COPIED``).

    Only what the sender wrote, never a member we add (RELIABILITY S16). Our own list
    address is left out (``To`` names it first anyway), and so is every other address of
    ours that is not a list's (a signed reply address, -request, -bounces): reply-all
    must not send to another member's reply key. Names pass ``header_text`` and
    addresses ``clean``, so no CR or LF from input reaches the header.
    """
    shown: list[Address] = []
    for name, address in pairs:
        if len(shown) >= MAX_COPIED:
            break
        if not _foreign_or_list(ident, address):
            continue
        found = _author_address(name, address)
        if found is not None:
            shown.append(found)
    return shown


def _foreign_or_list(ident: ListIdentity, address: str) -> bool:
    """Not ours, or the plain posting address of another of our lists."""
    if address.lower() == ident.address.lower():
        return False
    if address.rpartition("@")[2].lower() != ident.domain.lower():
        return True
    try:
        return parse_recipient(address, ident.domain).kind is Kind.POST
    except RecipientRefused:
        return False


def post_headers(msg: EmailMessage, ident: ListIdentity, post: PostView) -> None:
    """A post's own headers, as every copy of it shows them (notifications, MIME digests).

    ``From`` is the list address with the author's name (DMARC-safe: we never send
    with the author's domain), the author goes to ``X-Original-From``. ``To`` names the
    list, then what the sender put in To; ``Cc`` is the sender's Cc (``copied``), so
    readers see who got the post directly. ``Message-ID``
    is the post's own, so every copy and the author's sent copy are one message;
    ``In-Reply-To``/``References`` name the stored parents.
    """
    author = display_text(post.author_name) or display_text(post.author_address.split("@")[0]) or "Someone"
    title = display_text(ident.title) or ident.name
    msg["From"] = Address(display_name=f"{author} via {title}", addr_spec=ident.address)
    msg["To"] = [Address(display_name=title, addr_spec=ident.address), *copied(ident, post.to)]
    cc = copied(ident, post.cc)
    if cc:
        msg["Cc"] = cc
    msg["Subject"] = tags_in_subject(ident.tagged(post.subject), ident.subject_tag, post.tags)
    if post.tags:  # tag names are [a-z0-9_-] (core.topics.TAG_NAME): nothing to escape
        msg["Keywords"] = ", ".join(post.tags)
        msg["X-Mailforum-Tags"] = ", ".join(post.tags)
    msg["Date"] = format_datetime(post.date.astimezone(dt.UTC))
    msg["Message-ID"] = safe_msgid(post.message_id)
    refs = references(post.ancestors)
    if refs:
        msg["In-Reply-To"] = refs[-1]
        msg["References"] = " ".join(refs)
    original = _author_address(post.author_name, post.author_address)
    if original is not None:
        msg["X-Original-From"] = original


def list_headers(msg: EmailMessage, ident: ListIdentity) -> None:
    """The list headers of the list's mail to its members (a post's copy, a digest).

    RFC 2369/2919 List-* headers, ``Precedence: list``, ``Auto-Submitted:
    auto-generated`` and our loop marker; ``List-Unsubscribe`` is per member.
    """
    title = header_text(ident.title) or ident.name
    msg["List-Id"] = f"{_phrase(title)} <{ident.list_id}>"
    msg["List-Post"] = f"<mailto:{ident.address}>"
    msg["List-Help"] = f"<mailto:{ident.request_address}?subject=help>"
    msg["List-Archive"] = f"<{ident.archive_url}>"
    msg["List-Unsubscribe-Post"] = "List-Unsubscribe=One-Click"
    msg["Precedence"] = "list"
    msg["Auto-Submitted"] = "auto-generated"
    msg["X-Loop"] = ident.address


def notification(ident: ListIdentity, post: PostView, text: str, html: str) -> SharedCopy:
    """The shared part of a post's notification: headers and a multipart/alternative body.

    The post's own headers come from ``post_headers``; the list headers follow.
    """
    msg = EmailMessage(policy=POLICY)
    post_headers(msg, ident, post)
    boundary, body = alternative(text, html)
    mime = f'MIME-Version: 1.0\r\nContent-Type: multipart/alternative;\r\n boundary="{boundary}"\r\n'
    head = _head(msg) + _list_head(ident) + mime.encode("ascii")
    if _BROKEN_HEAD.search(head.removesuffix(b"\r\n")):  # defence in depth: no stray CR, LF or NUL
        raise ValueError("generated header block is malformed")
    return SharedCopy(head, body)


def _head(msg: EmailMessage) -> bytes:
    """The header block of a message without a body, CRLF after every line."""
    head, sep, _ = msg.as_bytes(policy=POLICY).partition(b"\r\n\r\n")
    if not sep:
        raise ValueError("generated header block is malformed")
    return head + b"\r\n"


@functools.lru_cache(maxsize=256)
def _list_head(ident: ListIdentity) -> bytes:
    """``list_headers`` as bytes, made once per list: the same for each of its posts."""
    msg = EmailMessage(policy=POLICY)
    list_headers(msg, ident)
    return _head(msg)


def alternative(text: str, html: str) -> tuple[str, bytes]:
    """(boundary, body) of a multipart/alternative of ``text`` and ``html``, each UTF-8 and
    quoted-printable, as ``EmailMessage.set_content`` and ``add_alternative`` make it.

    Written here, not by the ``email`` package: its MIME objects were more than half the
    CPU of every post's shared copy (bench/posts.py; 1.2 of 2.1 ms). The boundary is
    the package's kind (``=`` runs around random digits), which quoted-printable text
    cannot contain: it writes every ``=`` as ``=3D``.
    """
    boundary = f"{'=' * 15}{secrets.randbelow(10**19):019d}=="
    parts = [
        b"--" + boundary.encode("ascii") + b"\r\n"
        b"Content-Type: text/" + subtype + b'; charset="utf-8"\r\n'
        b"Content-Transfer-Encoding: quoted-printable\r\n\r\n" + _quoted_printable(body) + b"\r\n"
        for subtype, body in ((b"plain", text), (b"html", html))
    ]
    return boundary, b"".join(parts) + b"--" + boundary.encode("ascii") + b"--\r\n"


def _quoted_printable(text: str) -> bytes:
    """``canonical_body(text)`` in UTF-8 and quoted-printable with CRLF line ends, as
    ``email.contentmanager`` encodes it (lines of at most 78 characters)."""
    lines = canonical_body(text).encode("utf-8").splitlines()
    data = quoprimime.body_encode((b"\n".join(lines) + b"\n").decode("latin-1"), MAX_LINE)
    return data.replace("\n", "\r\n").encode("ascii")


@dataclass(frozen=True, slots=True)
class NoticeView:
    """An automatic answer to one person (core.answers): rendered text, HTML and who it is from."""

    to: str
    subject: str
    text: str
    html: str
    message_id: str
    date: dt.datetime
    sender_role: str = "request"  # "request" (NAME-request@) or "owner" (NAME-owner@)
    in_reply_to: str | None = None
    reply_to: str | None = None  # one of our own addresses, e.g. NAME+confirm-TOKEN@domain


def notice(ident: ListIdentity, view: NoticeView) -> bytes:
    """A whole automatic answer: multipart/alternative, marked ``Auto-Submitted: auto-replied``.

    RFC 3834 §3.1.7 asks answers to carry ``Auto-Submitted: auto-replied``; the
    loop marker (``X-Loop``) and ``List-Id`` make sure no list of ours, and no
    well-behaved responder, answers back (RELIABILITY I6, I7). Every header value
    passes ``header_text``/``clean`` or is ours; nothing from input can break a line.
    """
    msg = EmailMessage(policy=POLICY)
    title = display_text(ident.title) or ident.name
    role = "owner" if view.sender_role == "owner" else "request"
    sender = f"{ident.name}-{role}@{ident.domain}"
    msg["From"] = Address(
        display_name=f"{title} ({'owners' if role == 'owner' else 'commands'})", addr_spec=sender
    )
    msg["To"] = Address(addr_spec=clean(view.to))
    msg["Subject"] = header_text(view.subject) or "(no subject)"
    msg["Date"] = format_datetime(view.date.astimezone(dt.UTC))
    msg["Message-ID"] = safe_msgid(view.message_id)
    if view.in_reply_to and clean(view.in_reply_to):
        parent = safe_msgid(view.in_reply_to)
        msg["In-Reply-To"] = parent
        msg["References"] = parent
    if view.reply_to:
        msg["Reply-To"] = _spliceable(view.reply_to).decode("ascii")
    msg["List-Id"] = f"{_phrase(title)} <{ident.list_id}>"
    msg["List-Help"] = f"<mailto:{ident.request_address}?subject=help>"
    msg["Auto-Submitted"] = "auto-replied"
    msg["X-Auto-Response-Suppress"] = "All"  # Exchange/Outlook: no out-of-office answer to this
    msg["X-Loop"] = ident.address
    msg.set_content(canonical_body(view.text), cte="quoted-printable")
    msg.add_alternative(canonical_body(view.html), subtype="html", cte="quoted-printable")
    raw = msg.as_bytes(policy=POLICY)
    head, sep, _ = raw.partition(b"\r\n\r\n")
    if not sep or _BROKEN_HEAD.search(head):  # defence in depth: never emit a stray CR, LF or NUL
        raise ValueError("generated header block is malformed")
    return raw


def site_notice(domain: str, sender: str, view: NoticeView) -> bytes:
    """Mail from the site about no list (a sign-in link, core/signin.py): From ``sender``,
    marked ``Auto-Submitted: auto-generated``, no List-* headers (it is not list mail)."""
    msg = EmailMessage(policy=POLICY)
    msg["From"] = Address(display_name=header_text(domain)[:60], addr_spec=clean(sender))
    msg["To"] = Address(addr_spec=clean(view.to))
    msg["Subject"] = header_text(view.subject) or "(no subject)"
    msg["Date"] = format_datetime(view.date.astimezone(dt.UTC))
    msg["Message-ID"] = safe_msgid(view.message_id)
    msg["Auto-Submitted"] = "auto-generated"
    msg["X-Auto-Response-Suppress"] = "All"
    msg["X-Loop"] = clean(sender)
    msg.set_content(canonical_body(view.text), cte="quoted-printable")
    msg.add_alternative(canonical_body(view.html), subtype="html", cte="quoted-printable")
    raw = msg.as_bytes(policy=POLICY)
    head, sep, _ = raw.partition(b"\r\n\r\n")
    if not sep or _BROKEN_HEAD.search(head):
        raise ValueError("generated header block is malformed")
    return raw


def _phrase(text: str) -> str:
    """A display phrase for List-Id: a quoted string of printable ASCII, or one RFC 2047 word."""
    text = header_text(text)[:60]
    if text.isascii():
        return '"' + text.replace("\\", "\\\\").replace('"', '\\"') + '"'
    return "=?utf-8?b?" + base64.b64encode(text.encode("utf-8")).decode("ascii") + "?="


def mailto(address: str, subject: str = "") -> str:
    """A mailto: URI with an optional subject, safe inside a URL and an href."""
    uri = "mailto:" + quote(clean(address), safe="@+")
    if subject:
        uri += "?subject=" + quote(clean(subject), safe="")
    return uri
