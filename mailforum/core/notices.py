"""Mail the list itself writes to one person: bounce warnings, moderator notices, replies.

A notice is one outbox row of kind ``list-notice`` written in the caller's
transaction; its payload holds the rendered subject and text and which of the
list's addresses it comes from. ``build`` turns the payload into bytes for the
delivery worker (core/notify.Composer). Every notice is marked as ours and as
automatic (``Auto-Submitted: auto-replied``, ``X-Loop``, ``List-Id``), so no
well-behaved responder answers it and our own loop rule drops it if it comes back
(RFC 3834; RELIABILITY I6, S10). Values from input pass ``header_text`` first.

Issue 5's ``core/answers.answer`` is the shared form of this; when both are on
main these notices can move onto it (same idea, one kind).
"""

from __future__ import annotations

import datetime as dt
import logging
from dataclasses import dataclass
from email.headerregistry import Address
from email.message import EmailMessage
from email.utils import format_datetime, make_msgid
from typing import Any

from sqlalchemy import func, select
from sqlalchemy.orm import Session

from mailforum.config import Config
from mailforum.db import outbox
from mailforum.db.models import MailingList, OutboxEntry, OutboxKind
from mailforum.mail.addresses import Kind, list_address
from mailforum.mail.compose import POLICY, canonical_body, header_text, safe_msgid

log = logging.getLogger(__name__)

# RELIABILITY I6/S10: at most this many automatic notices to one address per day (all lists).
DAILY_CAP = 10


@dataclass(frozen=True, slots=True)
class Notice:
    """What one notice says; ``role`` picks the From address (request or owner)."""

    to: str
    subject: str
    text: str
    role: str = "request"
    reply_to: str = ""
    in_reply_to: str = ""


def sent_today(session: Session, address: str, now: dt.datetime) -> int:
    return int(
        session.scalar(
            select(func.count()).where(
                OutboxEntry.kind == OutboxKind.LIST_NOTICE.value,
                func.lower(OutboxEntry.recipient) == address.lower(),
                OutboxEntry.created_at >= now - dt.timedelta(days=1),
            )
        )
        or 0
    )


def send(
    session: Session,
    config: Config,
    mlist: MailingList,
    notice: Notice,
    now: dt.datetime,
    *,
    member_id: int | None = None,
    capped: bool = True,
    dedupe_key: str | None = None,
) -> bool:
    """Enqueue one notice in the caller's transaction; False when the daily cap stopped it."""
    if capped and sent_today(session, notice.to, now) >= DAILY_CAP:
        log.info("notice to a recipient of %s not sent: daily cap reached", mlist.name)
        return False
    payload: dict[str, Any] = {
        "list": mlist.name,
        "title": mlist.display_title,
        "subject": notice.subject,
        "text": notice.text,
        "role": notice.role,
        "reply_to": notice.reply_to,
        "in_reply_to": notice.in_reply_to,
    }
    copy = outbox.NewCopy(
        list_id=mlist.id,
        recipient=notice.to,
        message_id=make_msgid(domain=config.site.domain),
        member_id=member_id,
        kind=OutboxKind.LIST_NOTICE,
        dedupe_key=dedupe_key,
        payload=payload,
    )
    outbox.enqueue(session, [copy], now)
    return True


def build(payload: dict[str, Any], to: str, message_id: str, domain: str, now: dt.datetime) -> bytes:
    """The bytes of a notice (text/plain, CRLF, quoted-printable)."""
    name = str(payload["list"])
    title = header_text(str(payload.get("title") or name)) or name
    role = Kind.OWNER if payload.get("role") == "owner" else Kind.REQUEST
    msg = EmailMessage(policy=POLICY)
    msg["From"] = Address(display_name=title, addr_spec=list_address(name, domain, role))
    msg["To"] = Address(addr_spec=header_text(to))
    msg["Subject"] = header_text(str(payload["subject"])) or "(no subject)"
    msg["Date"] = format_datetime(now.astimezone(dt.UTC))
    msg["Message-ID"] = safe_msgid(message_id)
    if payload.get("in_reply_to"):
        msg["In-Reply-To"] = safe_msgid(str(payload["in_reply_to"]))
    if payload.get("reply_to"):
        msg["Reply-To"] = Address(addr_spec=header_text(str(payload["reply_to"])))
    msg["List-Id"] = f"<{name}.{domain}>"
    msg["Auto-Submitted"] = "auto-replied"
    msg["X-Loop"] = list_address(name, domain)
    msg["Precedence"] = "list"
    msg.set_content(canonical_body(str(payload["text"])), cte="quoted-printable")
    return msg.as_bytes(policy=POLICY)
