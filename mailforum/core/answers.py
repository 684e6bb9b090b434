"""Automatic answers to people: whether we may answer at all, and one answer as one outbox row.

Everything that writes to a person because they wrote to us (command results, help,
confirmations, moderator notices, bounce warnings) goes through here, so the rules
of RFC 3834 and RELIABILITY I6 live in one place:

- ``should_answer`` is a table of small named checks; the first that fires is the
  reason *not* to answer (a null sender, ``Auto-Submitted`` other than ``no``,
  ``Precedence: bulk|junk|list``, any ``List-*`` header, our own addresses or loop
  marker, a vacation/out-of-office marker, a delivery report).
- ``answer`` renders ``templates/<template>.txt.j2`` and ``.html.j2`` (per-list
  overridable through ``[outbound] templates``) and enqueues ONE outbox row of kind
  ``notice`` in the caller's transaction. At most ``[subscriptions] answers_per_day``
  (10) answers go to one address per 24 hours across all lists, counted from the
  outbox; ``capped=False`` is for mail to moderators and operators.

The delivery worker (core.copies ``Composer``) builds the message: From
``NAME-request@`` (or ``NAME-owner@`` when ``context["sender"] == "owner"``),
``Auto-Submitted: auto-replied``, ``X-Loop``, ``List-Id``, a fresh Message-ID, an
optional ``Reply-To`` (``context["reply_to"]``, one of our own addresses).

    >>> if should_answer(parsed, mail_from, config) is None:
    ...     answer(session, config, mlist, parsed.from_address, "command/help", {}, now,
    ...            in_reply_to=parsed.message_id)
"""

from __future__ import annotations

import datetime as dt
import logging
import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from email.utils import make_msgid
from typing import Any

from sqlalchemy import func, select
from sqlalchemy.orm import Session

from mailforum.config import Config
from mailforum.db import outbox
from mailforum.db.models import MailingList, OutboxEntry, OutboxKind
from mailforum.db.payloads import NoticePayload
from mailforum.mail.compose import clean
from mailforum.mail.parse import ParsedMessage
from mailforum.render import Renderer, Template

log = logging.getLogger(__name__)

CAP_WINDOW = dt.timedelta(hours=24)
SENDER_ROLES = ("request", "owner")

# --- should we answer at all? (RFC 3834 §2, RELIABILITY I6) -------------------------------


@dataclass(frozen=True, slots=True)
class Incoming:
    """What the checks look at: the parsed message, its envelope sender and our domain."""

    parsed: ParsedMessage
    mail_from: str
    domain: str


Check = Callable[[Incoming], str | None]

AUTO_PRECEDENCE = {"bulk", "junk", "list"}
LIST_HEADERS = ("list-id", "list-post", "list-unsubscribe", "list-help", "list-subscribe", "list-owner",
                "list-archive")  # fmt: skip
# Subjects of vacation programs and out-of-office assistants that set no header (many do not).
VACATION_SUBJECT = re.compile(
    r"^\s*(out of (the )?office|automatic reply|auto[- ]?reply|auto(matische)?\s*(antwort|response)|"
    r"auto:|away from (the|my) (office|desk)|on vacation|vacation (reply|notice|message)|"
    r"abwesenheit|réponse automatique|respuesta automática|risposta automatica)",
    re.IGNORECASE,
)
# Local parts that only machines use (RFC 2142 mailbox names, common no-reply senders).
MACHINE_LOCALS = re.compile(
    r"^(mailer-daemon|postmaster|no-?reply|do-?not-?reply|bounces?|auto-?reply|autoresponder)([+.-].*)?$",
    re.IGNORECASE,
)


def null_sender(msg: Incoming) -> str | None:
    """``MAIL FROM:<>``: a bounce or another notice; answering it could loop (B11)."""
    return "null envelope sender" if msg.mail_from.strip() in ("", "<>") else None


def no_from(msg: Incoming) -> str | None:
    """No usable From: there is nobody to answer (B21), nor to a From: that is not one honest mailbox."""
    return msg.parsed.from_problem or (None if msg.parsed.from_address else "no From address")


def auto_submitted(msg: Incoming) -> str | None:
    """RFC 3834 §5: any ``Auto-Submitted`` other than ``no`` is a machine's mail."""
    value = msg.parsed.header("auto-submitted").strip().lower()
    if value and value.split(";")[0].strip() != "no":
        return f"Auto-Submitted: {value[:40]}"
    return None


def bulk_precedence(msg: Incoming) -> str | None:
    value = msg.parsed.header("precedence").strip().lower()
    return f"Precedence: {value}" if value in AUTO_PRECEDENCE else None


def list_traffic(msg: Incoming) -> str | None:
    """Mail from a mailing list (ours or anyone's) is never answered automatically."""
    for name in LIST_HEADERS:
        if msg.parsed.header(name):
            return f"{name} header present"
    return None


def our_own(msg: Incoming) -> str | None:
    """Our own addresses, or our loop marker: an answer would talk to ourselves."""
    suffix = "@" + msg.domain.lower()
    for who in (msg.parsed.from_address, msg.mail_from):
        if who and who.lower().rstrip(">").endswith(suffix):
            return "sent from one of our own addresses"
    for name in ("x-loop", "x-mailforum-loop"):
        if msg.domain.lower() in msg.parsed.header(name).lower():
            return f"{name} is ours"
    return None


def machine_sender(msg: Incoming) -> str | None:
    for who in (msg.parsed.from_address, msg.mail_from):
        if who and MACHINE_LOCALS.match(who.split("@")[0]):
            return f"machine sender {who.split('@')[0][:40]}"
    return None


def vacation(msg: Incoming) -> str | None:
    """Vacation programs and out-of-office assistants that do not say Auto-Submitted."""
    for name in ("x-autoreply", "x-autorespond", "x-vacation"):
        if msg.parsed.header(name):
            return f"{name} header present"
    if VACATION_SUBJECT.match(msg.parsed.subject):
        return "out-of-office subject"
    return None


def delivery_report(msg: Incoming) -> str | None:
    """A DSN or MDN (multipart/report) that came with a non-null sender."""
    return "delivery report" if "multipart/report" in msg.parsed.header("content-type").lower() else None


CHECKS: tuple[tuple[str, Check], ...] = (
    ("null-sender", null_sender),
    ("no-from", no_from),
    ("auto-submitted", auto_submitted),
    ("precedence", bulk_precedence),
    ("list-traffic", list_traffic),
    ("ours", our_own),
    ("machine-sender", machine_sender),
    ("vacation", vacation),
    ("report", delivery_report),
)


def should_answer(parsed: ParsedMessage, mail_from: str, config: Config) -> str | None:
    """The reason NOT to answer this message automatically, or None when a human may be answered."""
    incoming = Incoming(parsed, mail_from or "", config.site.domain)
    for name, check in CHECKS:
        reason = check(incoming)
        if reason:
            return f"{name}: {reason}"
    return None


# --- one answer ------------------------------------------------------------------------------

_renderers: dict[str, Renderer] = {}


def renderer(config: Config) -> Renderer:
    """One Renderer (and its compiled templates) per override folder, shared by all callers."""
    key = config.outbound.templates or ""
    found = _renderers.get(key)
    if found is None:
        found = _renderers[key] = Renderer(key or None)
    return found


@dataclass(frozen=True, slots=True)
class Rendered:
    subject: str
    text: str
    html: str


def render(config: Config, mlist: MailingList, template: str, context: Mapping[str, Any]) -> Rendered:
    """Text and HTML of ``template`` for ``mlist``; the subject from the text's ``subject`` block."""
    values = {**base_context(config, mlist), **context}

    def text_and_subject(text_template: Template) -> tuple[str, str]:
        block = text_template.blocks.get("subject")
        subject = (
            "".join(block(text_template.new_context(values))) if block else str(values.get("subject", ""))
        )
        return subject, text_template.render(values)

    # The list's own templates where it stores some (render.py: sandboxed, the built-in
    # one if they fail). The subject is one line whatever a template prints (no CR/LF
    # reaches a header).
    found = renderer(config)
    subject, text = found.use(mlist, f"{template}.txt.j2", text_and_subject)
    return Rendered(" ".join(subject.split()), text, found.render(mlist, f"{template}.html.j2", values))


def base_context(config: Config, mlist: MailingList) -> dict[str, Any]:
    """What every answer template may use, besides the caller's context."""
    domain = config.site.domain
    base = config.site.base_url.rstrip("/")
    return {
        "list": {
            "name": mlist.name,
            "title": mlist.display_title,
            "address": f"{mlist.name}@{domain}",
            "request_address": f"{mlist.name}-request@{domain}",
            "owner_address": f"{mlist.name}-owner@{domain}",
            "subscribe_address": f"{mlist.name}+subscribe@{domain}",
            "unsubscribe_address": f"{mlist.name}+unsubscribe@{domain}",
            "archive_url": f"{base}/lists/{mlist.name}/",
            # Opens after sign-in; never a link that signs in by itself.
            "preferences_url": f"{base}/lists/{mlist.name}/preferences",
        },
        "site": {"domain": domain, "base_url": base},
        "subject": "",
    }


def answers_today(session: Session, to: str, now: dt.datetime) -> int:
    """Automatic answers queued for ``to`` in the last 24 hours, across all lists."""
    count = session.scalar(
        select(func.count()).where(
            OutboxEntry.kind == OutboxKind.NOTICE.value,
            OutboxEntry.recipient == to,
            OutboxEntry.created_at > now - CAP_WINDOW,
        )
    )
    return int(count or 0)


def _address(to: str) -> str | None:
    """The recipient as we store it, or None when it cannot be written to a header safely."""
    cleaned = clean(to).lower()
    if cleaned != to.strip().lower() or cleaned.count("@") != 1 or " " in cleaned or len(cleaned) > 320:
        return None
    local, _, domain = cleaned.partition("@")
    return cleaned if local and domain else None


def answer(
    session: Session,
    config: Config,
    mlist: MailingList,
    to: str,
    template: str,
    context: Mapping[str, Any],
    now: dt.datetime,
    *,
    in_reply_to: str | None = None,
    capped: bool = True,
) -> bool:
    """Render ``template`` and enqueue one ``notice`` row to ``to``; False when nothing was queued.

    Nothing is queued when ``to`` is not a plain address, is one of ours, or (``capped``)
    already had ``answers_per_day`` answers in the last 24 hours (RELIABILITY I6).
    ``context["sender"]`` picks the From (``"request"``, default, or ``"owner"``);
    ``context["reply_to"]`` sets a Reply-To (one of our own addresses).
    """
    address = _address(to)
    if address is None or address.endswith("@" + config.site.domain.lower()):
        log.info("no answer from %s: recipient unusable or ours", mlist.name)
        return False
    if capped and answers_today(session, address, now) >= config.subscriptions.answers_per_day:
        log.info("no answer from %s: daily answer cap reached for a recipient", mlist.name)
        return False
    sender = str(context.get("sender", "request"))
    reply_to = context.get("reply_to")
    rendered = render(config, mlist, template, context)
    payload: NoticePayload = {
        "template": template,
        "subject": rendered.subject,
        "text": rendered.text,
        "html": rendered.html,
        "in_reply_to": clean(in_reply_to) if in_reply_to else None,
        "sender": sender if sender in SENDER_ROLES else "request",
        "reply_to": str(reply_to) if reply_to else None,
    }
    outbox.enqueue(
        session,
        [
            outbox.NewCopy(
                list_id=mlist.id,
                recipient=address,
                message_id=make_msgid("notice", domain=config.site.domain),
                kind=OutboxKind.NOTICE,
                payload=payload,
            )
        ],
        now,
    )
    return True
