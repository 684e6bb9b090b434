"""Mail the list writes to one person about list health: bounce warnings, moderator notices.

A thin layer over the shared automatic answers (core/answers.py): one ``notice``
outbox row in the caller's transaction, rendered from ``templates/command/message``
(per-list overridable), From ``NAME-request@`` or ``NAME-owner@``, marked
``Auto-Submitted: auto-replied`` with our loop marker and List-Id, capped at
``[subscriptions] answers_per_day`` per address unless ``capped=False`` (moderators).
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass
from typing import Any

from sqlalchemy.orm import Session

from mailforum.config import Config
from mailforum.core import answers
from mailforum.db.models import MailingList

TEMPLATE = "command/message"


@dataclass(frozen=True, slots=True)
class Notice:
    """What one notice says; ``role`` picks the From address (request or owner)."""

    to: str
    subject: str
    text: str
    role: str = "request"
    reply_to: str = ""
    in_reply_to: str = ""


def send(
    session: Session,
    config: Config,
    mlist: MailingList,
    notice: Notice,
    now: dt.datetime,
    *,
    capped: bool = True,
) -> bool:
    """Enqueue one notice in the caller's transaction; False when the cap (or the address) stopped it."""
    context: dict[str, Any] = {"subject": notice.subject, "body": notice.text, "sender": notice.role}
    if notice.reply_to:
        context["reply_to"] = notice.reply_to
    return answers.answer(
        session,
        config,
        mlist,
        notice.to,
        TEMPLATE,
        context,
        now,
        in_reply_to=notice.in_reply_to or None,
        capped=capped,
    )
