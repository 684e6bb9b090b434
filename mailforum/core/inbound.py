"""What a route handler gets and returns: one message for one of our recipients, and what was done.

Kept apart from ``core.routing`` so that every use case (posting, commands, bounces)
can take an ``Arrival`` without importing the module that holds the route table.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING

from sqlalchemy.orm import Session

from mailforum.config import Config
from mailforum.db.models import MailingList, Post
from mailforum.mail.addresses import Recipient
from mailforum.mail.parse import ParsedMessage

if TYPE_CHECKING:
    from mailforum.core.fanout import Deferred

__all__ = ["Arrival", "Outcome", "RouteHandler"]


@dataclass(frozen=True, slots=True)
class Arrival:
    """One message for one of our recipients, with everything a route handler needs."""

    session: Session
    config: Config
    mlist: MailingList
    recipient: Recipient
    parsed: ParsedMessage
    raw: bytes
    mail_from: str
    spool_id: int | None
    received_at: dt.datetime
    now: dt.datetime
    imported: bool = False  # an operator's import: the posting policy does not apply
    # Written in the browser by a signed-in member (core.webpost): the session proved the From.
    web: bool = False
    # A processing batch's fan-out, written when the batch ends (core.fanout.Deferred); None: at once.
    deferred: Deferred | None = None


@dataclass(frozen=True, slots=True)
class Outcome:
    """What processing did with one recipient's copy; ``posted`` when a post was stored."""

    summary: str
    discarded: bool = False
    post: Post | None = None


RouteHandler = Callable[[Arrival], Outcome]
