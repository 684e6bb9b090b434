"""Posts written in the browser take mail's path: they become a real message in the spool.

A signed-in member's new topic or reply is turned into the message their mail client
would have sent — our own Message-ID, ``From`` the member (with their name), ``To`` the
list, ``In-Reply-To``/``References`` from the stored thread, ``Date``, and
``X-Mailforum-Source: web`` saying where it came from — and written to the spool as an
SMTP arrival is (``db.spool.insert_batch``), with the protocol ``web``. From there the
spool processor treats it like any other message: policy, moderation, rate limits,
threading, fan-out and digests all apply unchanged.

A reply goes to the member's own signed reply address for the post it answers
(``NAME+r-TOKEN@``), the strongest threading evidence mail has, so it lands under that
very post. The session counts as authentication, like a passed DMARC check: the
processor trusts the From of a spool entry only when its protocol is ``web``, which
nothing but this module writes (ingest writes ``smtp`` and ``lmtp``), never because of
a header a sender could write. The tags ticked on the new-topic form travel the same way,
in ``X-Mailforum-Web-Tags`` (``core.topics.WEB_TAGS_HEADER``), read only for spool entries
of protocol ``web`` (RELIABILITY S42).

Nothing from input reaches a header unchecked: the subject and the member's name pass
``compose.header_text`` (no CR, LF or other control characters, even after RFC 2047
decoding), attachment names are the stdlib's RFC 2231 parameters of a cleaned name.
"""

from __future__ import annotations

import datetime as dt
import logging
import secrets
from collections.abc import Sequence
from dataclasses import dataclass
from email.headerregistry import Address
from email.message import EmailMessage
from email.utils import format_datetime

from sqlalchemy.orm import Session

from mailforum.config import Config
from mailforum.core import tokens, topics
from mailforum.db import ancestry, spool
from mailforum.db.models import MailingList, Member, Post, PostStatus
from mailforum.errors import InvalidInput
from mailforum.mail.addresses import Kind, list_address
from mailforum.mail.compose import POLICY, canonical_body, clean, header_text, references, safe_msgid
from mailforum.mail.headers import reply_subject
from mailforum.textsafe import strip_bidi

log = logging.getLogger(__name__)

WEB = spool.WEB  # the spool protocol of a post written in the browser: its From is the signed-in member
SOURCE_HEADER = "X-Mailforum-Source"
MAX_SUBJECT = 200  # characters a subject typed in the form may have
MAX_ATTACHMENTS = 10


@dataclass(frozen=True, slots=True)
class Upload:
    """A file attached in the form."""

    filename: str
    content_type: str
    data: bytes


@dataclass(frozen=True, slots=True)
class Draft:
    """What the member wrote: the subject (a new topic's; a reply takes its parent's) and the text."""

    subject: str
    body: str
    uploads: tuple[Upload, ...] = ()
    tags: tuple[str, ...] = ()  # a new topic's tags, ticked on the form (words of the vocabulary)


@dataclass(frozen=True, slots=True)
class Spooled:
    """A web post in the spool: the entry and the Message-ID the post will have."""

    spool_id: int
    message_id: str


def new_message_id(domain: str) -> str:
    return f"<web.{secrets.token_hex(12)}@{domain}>"


def check_draft(config: Config, draft: Draft, reply: bool) -> Draft:
    """The draft with a clean subject and body, or InvalidInput saying what is wrong."""
    subject = header_text(strip_bidi(draft.subject))
    body = canonical_body(draft.body)
    if not reply and not subject:
        raise InvalidInput("a new topic needs a subject")
    if len(subject) > MAX_SUBJECT:
        raise InvalidInput(f"the subject is longer than {MAX_SUBJECT} characters")
    if not body.strip() and not draft.uploads:
        raise InvalidInput("the message is empty")
    if len(draft.uploads) > MAX_ATTACHMENTS:
        raise InvalidInput(f"at most {MAX_ATTACHMENTS} attachments")
    tags = tuple(dict.fromkeys(topics.tag_name(t) for t in draft.tags)) if not reply else ()
    size = len(body.encode("utf-8")) + sum(len(u.data) for u in draft.uploads)
    if size > config.smtp.max_message_size:
        raise InvalidInput(
            f"the message is larger than {config.smtp.max_message_size // 1024} kB, the list's limit"
        )
    return Draft(subject, body, draft.uploads, tags)


def compose(
    session: Session,
    config: Config,
    mlist: MailingList,
    member: Member,
    draft: Draft,
    parent: Post | None,
    now: dt.datetime,
    message_id: str | None = None,
) -> bytes:
    """The message a mail client would send for this draft, as bytes (CRLF, folded, encoded)."""
    domain = config.site.domain
    msg = EmailMessage(policy=POLICY)
    msg["Received"] = f"from the web by {domain} (mailforum, signed-in session); {format_datetime(now)}"
    name = header_text(strip_bidi(member.display_name))
    msg["From"] = Address(display_name=name, addr_spec=clean(member.address))
    msg["To"] = Address(
        display_name=header_text(mlist.display_title), addr_spec=list_address(mlist.name, domain)
    )
    if parent is not None:
        subject = reply_subject(header_text(parent.subject)) if parent.subject else "Re:"
        chain = ancestry.ancestors(session, {parent.id: (parent.message_id, parent.parent_id)})[parent.id]
        msg["In-Reply-To"] = safe_msgid(parent.message_id)
        msg["References"] = " ".join(references((*chain, parent.message_id)))
    else:
        subject = draft.subject
    msg["Subject"] = subject
    msg["Date"] = format_datetime(now)
    msg["Message-ID"] = message_id or new_message_id(domain)
    msg[SOURCE_HEADER] = WEB
    if parent is None and draft.tags:  # read back only for spool protocol "web" (core/topics.web_tags)
        msg[topics.WEB_TAGS_HEADER] = ", ".join(topics.tag_name(t) for t in draft.tags)
    msg["MIME-Version"] = "1.0"
    msg.set_content(draft.body or "\n", charset="utf-8", cte="quoted-printable")
    for upload in draft.uploads:
        maintype, _, subtype = (upload.content_type or "application/octet-stream").partition("/")
        if not maintype.isascii() or not subtype or maintype == "multipart" or maintype == "message":
            maintype, subtype = "application", "octet-stream"
        filename = (
            header_text(strip_bidi(upload.filename)).replace("/", "_").replace("\\", "_") or "attachment"
        )
        msg.add_attachment(upload.data, maintype=maintype, subtype=subtype, filename=filename)
    return msg.as_bytes()


def write(
    session: Session,
    config: Config,
    mlist: MailingList,
    member: Member,
    draft: Draft,
    parent: Post | None,
    now: dt.datetime,
) -> Spooled:
    """Check the draft, compose it and write it to the spool in the caller's transaction.

    The caller commits and then wakes the spool processors (``runners.wakeup.SPOOL``).
    ``parent`` must be a published post of the same list; ``member`` the signed-in member.
    """
    if member.list_id != mlist.id:
        raise InvalidInput(f"{member.address} is not a member of {mlist.name}")
    if parent is not None and (parent.list_id != mlist.id or parent.status != PostStatus.PUBLISHED.value):
        raise InvalidInput("that post cannot be answered")
    draft = check_draft(config, draft, reply=parent is not None)
    message_id = new_message_id(config.site.domain)
    raw = compose(session, config, mlist, member, draft, parent, now, message_id)
    if len(raw) > config.smtp.max_message_size:
        raise InvalidInput(
            f"the message is larger than {config.smtp.max_message_size // 1024} kB, the list's limit"
        )
    if parent is None:
        rcpt = list_address(mlist.name, config.site.domain)
    else:  # the member's own reply address for that post, as the Reply button of their copy has it
        key = tokens.derive_key(config.site.secret_key)
        expires = now + dt.timedelta(days=config.outbound.reply_token_days)
        token = tokens.sign_short(key, tokens.REPLY, (member.id, parent.id), expires)
        rcpt = list_address(mlist.name, config.site.domain, Kind.REPLY, token)
    entry = spool.NewMessage(raw=raw, mail_from=member.address, rcpt_tos=(rcpt,), protocol=WEB, peer="web")
    (spool_id,) = spool.insert_batch(session, [entry], now)
    log.info("web post by member %s to %s spooled as %s", member.id, mlist.name, spool_id)
    return Spooled(spool_id, message_id)


def quoted(post: Post, author: str) -> str:
    """A post's text quoted for an answer: "NAME wrote:" and every line behind "> "."""
    lines = (post.text_body or "").rstrip("\n").split("\n")
    return f"{author} wrote:\n" + "\n".join(f"> {line}" if line else ">" for line in lines) + "\n\n"


__all__: Sequence[str] = ("WEB", "Draft", "Spooled", "Upload", "check_draft", "compose", "quoted", "write")
