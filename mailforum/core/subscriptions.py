"""Joining, leaving and following topics, safely: double opt-in, single-use signed tokens, caps.

Nobody can subscribe or unsubscribe someone else (RELIABILITY S4–S7):

- ``request`` records a pending ``Confirmation`` and mails a confirmation to the
  address itself — never to whoever asked. At most one request is pending per
  (list, address) (a repeat sends nothing) and at most ``[subscriptions]
  confirmations_per_day`` (3) confirmation mails go to one address per day across
  all lists; further requests are accepted silently and send nothing (S5). The
  mail carries nothing the requester wrote: only the address, escaped (S4).
- ``confirm`` checks the token (HMAC over purpose, confirmation id and list id, with
  an expiry; ``hmac.compare_digest``), then marks the row used with a conditional
  UPDATE, so of two simultaneous confirms exactly one acts and the other hears
  "already confirmed" (S6). Then it acts and sends the welcome or goodbye mail.
- ``unsubscribe_by_link`` is the RFC 8058 one-click path: the token in the link is
  signed per member and list (S7).

Tokens are never logged.
"""

from __future__ import annotations

import datetime as dt
import enum
import logging
from dataclasses import dataclass

from sqlalchemy import delete, func, select, update
from sqlalchemy.orm import Session

from mailforum.config import Config
from mailforum.core import answers, audit, bans, tokens
from mailforum.core.lists import Address, add_members, find_member, identity
from mailforum.db import queries
from mailforum.db.models import (
    ConfirmAction,
    Confirmation,
    DeliveryMode,
    MailingList,
    Member,
    SubscriptionKind,
    Topic,
    TopicSubscription,
)
from mailforum.mail.addresses import Kind, list_address
from mailforum.mail.compose import mailto

log = logging.getLogger(__name__)


class Status(enum.StrEnum):
    DONE = "done"  # the action was taken
    ALREADY = "already"  # the token was used before (or the change was already in place)
    EXPIRED = "expired"  # a genuine token, too old (or superseded by a newer request)
    INVALID = "invalid"  # malformed, forged, of another purpose or list


@dataclass(frozen=True, slots=True)
class Outcome:
    """What a confirmation or an unsubscribe link did (for the answer mail or the web page)."""

    status: Status
    action: str = ""
    list_name: str = ""
    address: str = ""
    topic_id: int | None = None
    detail: str = ""  # e.g. "already a member", "not a member"
    list_title: str = ""


@dataclass(frozen=True, slots=True)
class Preview:
    """What a link would do, for the page a GET shows (a GET changes nothing: link scanners)."""

    status: Status
    action: str = ""
    list_name: str = ""
    list_title: str = ""
    address: str = ""
    topic_id: int | None = None


def _key(config: Config) -> bytes:
    return tokens.derive_key(config.site.secret_key)


# --- requests ---------------------------------------------------------------------------------


def pending(session: Session, list_id: int, address: str, now: dt.datetime) -> Confirmation | None:
    """The unexpired, unused request for (list, address), if any."""
    return session.scalars(
        select(Confirmation).where(
            Confirmation.list_id == list_id,
            Confirmation.address == address,
            Confirmation.used_at.is_(None),
            Confirmation.expires_at > now,
        )
    ).first()


def mails_today(session: Session, address: str, now: dt.datetime) -> int:
    """Confirmation mails sent to ``address`` in the last 24 hours, across all lists (S5)."""
    count = session.scalar(
        select(func.count()).where(
            Confirmation.address == address,
            Confirmation.mailed.is_(True),
            Confirmation.created_at > now - dt.timedelta(hours=24),
        )
    )
    return int(count or 0)


def request(
    session: Session,
    config: Config,
    mlist: MailingList,
    who: Address,
    action: ConfirmAction,
    now: dt.datetime,
    *,
    topic_id: int | None = None,
    source: str = "mail",
    in_reply_to: str | None = None,
) -> bool:
    """Ask ``who`` to confirm ``action`` on ``mlist``; True when a confirmation mail was queued.

    The answer is the same whether or not ``who`` is a member (no oracle, S4): a
    member asking to subscribe gets the same confirmation, and confirming it says so.
    """
    if action != ConfirmAction.UNSUBSCRIBE and bans.banned(session, mlist, who.address):
        log.info("request to %s from a banned address; nothing sent", mlist.name)
        return False
    existing = pending(session, mlist.id, who.address, now)
    if existing is not None:
        if existing.action == action.value and existing.topic_id == topic_id:
            log.info("confirmation for %s already pending; nothing sent", mlist.name)
            return False
        existing.expires_at = now  # superseded: still one pending request per (list, address)
    if mails_today(session, who.address, now) >= config.subscriptions.confirmations_per_day:
        log.info("confirmation cap reached for an address (list %s); nothing sent", mlist.name)
        return False
    row = Confirmation(
        list_id=mlist.id,
        address=who.address,
        display_name=who.display_name,
        action=action.value,
        topic_id=topic_id,
        source=source,
        mailed=True,
        created_at=now,
        expires_at=now + dt.timedelta(days=config.subscriptions.confirm_days),
    )
    session.add(row)
    session.flush()
    # The address carries a short token (B53); the link may keep the long one.
    token = tokens.sign_short(_key(config), tokens.CONFIRM, (row.id,), row.expires_at)
    link_token = tokens.sign(_key(config), tokens.CONFIRM, (row.id, mlist.id), row.expires_at)
    domain = config.site.domain
    reply_to = list_address(mlist.name, domain, Kind.CONFIRM, token)
    context = {
        "action": action.value,
        "address": who.address,
        "topic_id": topic_id,
        "token": token,
        "reply_to": reply_to,
        "confirm_url": identity(config, mlist).confirm_url(link_token),
        "confirm_mailto": mailto(reply_to, f"confirm {token}"),
        "expires_days": config.subscriptions.confirm_days,
        "topic_url": topic_url(config, mlist, topic_id),
        "source": source,
    }
    if not answers.answer(
        session, config, mlist, who.address, "command/confirm", context, now, in_reply_to=in_reply_to
    ):
        row.mailed = False
        row.expires_at = now
        return False
    return True


def topic_url(config: Config, mlist: MailingList, topic_id: int | None) -> str:
    return "" if topic_id is None else identity(config, mlist).topic_url(topic_id)


# --- confirming -------------------------------------------------------------------------------


def _lookup(
    session: Session, config: Config, token: str, now: dt.datetime
) -> tuple[Status, Confirmation | None]:
    try:
        if tokens.is_short(token):  # from an address: the MAC names one row, of one list
            (confirmation_id,) = tokens.verify(_key(config), tokens.CONFIRM, token, now, fields=1)
            list_id = None
        else:
            confirmation_id, list_id = tokens.verify(_key(config), tokens.CONFIRM, token, now, fields=2)
    except tokens.InvalidToken as exc:
        return (Status.EXPIRED if "expired" in str(exc) else Status.INVALID), None
    row = session.get(Confirmation, confirmation_id)
    if row is None or list_id not in (None, row.list_id):
        return Status.INVALID, None
    if row.used_at is not None:
        return Status.ALREADY, row
    if row.expires_at <= now:
        return Status.EXPIRED, row
    return Status.DONE, row


def preview(session: Session, config: Config, token: str, now: dt.datetime) -> Preview:
    """What ``confirm`` would do with this token; changes nothing."""
    status, row = _lookup(session, config, token, now)
    if row is None:
        return Preview(status)
    mlist = session.get(MailingList, row.list_id)
    assert mlist is not None
    return Preview(status, row.action, mlist.name, mlist.display_title, row.address, row.topic_id)


def confirm(
    session: Session,
    config: Config,
    token: str,
    now: dt.datetime,
    *,
    in_reply_to: str | None = None,
    replier: Address | None = None,
) -> Outcome:
    """Carry out the request a confirmation token names, once; sends welcome/goodbye/result mail.

    The new member's display name is the one the address's owner gave: from ``replier``
    (the From of a confirming reply, when it is the same address) or an operator's
    invitation. A name from the request itself could be a forger's ("Click http://…",
    S4) and is not kept when the confirmation comes by link.
    """
    status, row = _lookup(session, config, token, now)
    if row is None or status is not Status.DONE:
        return _outcome(session, status, row)
    won = session.execute(
        update(Confirmation)
        .where(Confirmation.id == row.id, Confirmation.used_at.is_(None))
        .values(used_at=now)
        .execution_options(synchronize_session=False)
    )
    if int(won.rowcount or 0) != 1:  # type: ignore[attr-defined]
        return _outcome(session, Status.ALREADY, row)
    mlist = session.get(MailingList, row.list_id)
    assert mlist is not None
    name = row.display_name if row.source == "invite" else ""
    if replier is not None and replier.address == row.address:
        name = replier.display_name
    who = Address(row.address, name)
    action = ConfirmAction(row.action)
    if action is ConfirmAction.SUBSCRIBE:
        return subscribe(session, config, mlist, who, now, welcome=True, in_reply_to=in_reply_to)
    if action is ConfirmAction.UNSUBSCRIBE:
        return unsubscribe(session, config, mlist, who.address, now, in_reply_to=in_reply_to)
    assert row.topic_id is not None
    return watch_confirmed(session, config, mlist, who, row.topic_id, now, in_reply_to=in_reply_to)


def _outcome(session: Session, status: Status, row: Confirmation | None) -> Outcome:
    if row is None:
        return Outcome(status)
    mlist = session.get(MailingList, row.list_id)
    return Outcome(
        status,
        row.action,
        mlist.name if mlist else "",
        row.address,
        row.topic_id,
        list_title=mlist.display_title if mlist else "",
    )


# --- the acts themselves ------------------------------------------------------------------------


def member_context(
    config: Config, mlist: MailingList, member: Member | None, address: str
) -> dict[str, object]:
    return {
        "address": address,
        "mode": member.delivery_mode if member else "",
        "digest": member.digest_frequency or "" if member else "",
        "unsubscribe_mailto": mailto(list_address(mlist.name, config.site.domain, Kind.UNSUBSCRIBE)),
        "help_mailto": mailto(list_address(mlist.name, config.site.domain, Kind.REQUEST), "help"),
        "max_lines": config.subscriptions.max_command_lines,
        "show_help": False,
        "nothing_understood": False,
    }


def subscribe(
    session: Session,
    config: Config,
    mlist: MailingList,
    who: Address,
    now: dt.datetime,
    *,
    mode: DeliveryMode = DeliveryMode.ALL,
    welcome: bool = True,
    in_reply_to: str | None = None,
) -> Outcome:
    """Add ``who`` (confirmed, or an operator's act) and send the welcome mail."""
    member = find_member(session, mlist.id, who.address)
    if member is not None:
        return Outcome(
            Status.ALREADY,
            ConfirmAction.SUBSCRIBE.value,
            mlist.name,
            who.address,
            detail="already a member",
            list_title=mlist.display_title,
        )
    add_members(session, mlist, [who], mode, now)
    member = find_member(session, mlist.id, who.address)
    if welcome:
        context = member_context(config, mlist, member, who.address)
        answers.answer(
            session, config, mlist, who.address, "command/welcome", context, now, in_reply_to=in_reply_to
        )
    audit.member_action(
        session,
        actor=who.address,
        action="member.join",
        list_id=mlist.id,
        target=who.address,
        detail={"mode": mode.value},
    )
    log.info("subscribed an address to %s", mlist.name)
    return Outcome(
        Status.DONE, ConfirmAction.SUBSCRIBE.value, mlist.name, who.address, list_title=mlist.display_title
    )


def unsubscribe(
    session: Session,
    config: Config,
    mlist: MailingList,
    address: str,
    now: dt.datetime,
    *,
    goodbye: bool = True,
    in_reply_to: str | None = None,
) -> Outcome:
    """Remove the member ``address`` and send the goodbye mail."""
    member = find_member(session, mlist.id, address)
    gone = session.execute(delete(Member).where(Member.id == member.id)) if member is not None else None
    if gone is None or int(gone.rowcount or 0) != 1:  # type: ignore[attr-defined]  # two clicks at once
        return Outcome(
            Status.ALREADY,
            ConfirmAction.UNSUBSCRIBE.value,
            mlist.name,
            address,
            detail="not a member",
            list_title=mlist.display_title,
        )
    if goodbye:
        context = member_context(config, mlist, None, address)
        answers.answer(
            session, config, mlist, address, "command/goodbye", context, now, in_reply_to=in_reply_to
        )
    audit.member_action(session, actor=address, action="member.leave", list_id=mlist.id, target=address)
    log.info("unsubscribed an address from %s", mlist.name)
    return Outcome(
        Status.DONE, ConfirmAction.UNSUBSCRIBE.value, mlist.name, address, list_title=mlist.display_title
    )


def watch_confirmed(
    session: Session,
    config: Config,
    mlist: MailingList,
    who: Address,
    topic_id: int,
    now: dt.datetime,
    *,
    in_reply_to: str | None = None,
) -> Outcome:
    """Follow a topic after confirming; someone not yet a member joins with mode "none"."""
    topic = queries.resolve_topic(session, mlist, topic_id)
    if topic is None:
        return Outcome(
            Status.INVALID,
            ConfirmAction.WATCH.value,
            mlist.name,
            who.address,
            topic_id,
            "no such topic",
            list_title=mlist.display_title,
        )
    member = find_member(session, mlist.id, who.address)
    joined = member is None
    if member is None:
        add_members(session, mlist, [who], DeliveryMode.NONE, now)
        member = find_member(session, mlist.id, who.address)
        assert member is not None
    set_topic(session, member, topic, SubscriptionKind.WATCH, now)
    context = {
        **member_context(config, mlist, member, who.address),
        "results": [
            {
                "command": f"watch {topic.id}",
                "ok": True,
                "message": f"You now get every new post in topic {topic.id} by mail"
                + (" (you joined the list with delivery mode 'none' for that)." if joined else "."),
            }
        ],
    }
    answers.answer(
        session, config, mlist, who.address, "command/result", context, now, in_reply_to=in_reply_to
    )
    return Outcome(
        Status.DONE,
        ConfirmAction.WATCH.value,
        mlist.name,
        who.address,
        topic.id,
        list_title=mlist.display_title,
    )


def set_topic(
    session: Session, member: Member, topic: Topic, kind: SubscriptionKind | None, now: dt.datetime
) -> None:
    """Watch or mute ``topic`` for ``member``; ``kind=None`` removes the override."""
    existing = session.scalars(
        select(TopicSubscription).where(
            TopicSubscription.member_id == member.id, TopicSubscription.topic_id == topic.id
        )
    ).first()
    if (existing.kind if existing is not None else None) != (kind.value if kind else None):
        audit.member_action(
            session,
            actor=member.address,
            action=f"member.{kind.value if kind else 'topic-default'}",
            list_id=member.list_id,
            target=str(topic.id),
            detail={"topic": topic.id, "was": existing.kind if existing is not None else None},
        )
    if kind is None:
        if existing is not None:
            session.delete(existing)
        return
    if existing is None:
        session.add(
            TopicSubscription(member_id=member.id, topic_id=topic.id, kind=kind.value, created_at=now)
        )
    else:
        existing.kind = kind.value
    session.flush()


def welcome(
    session: Session, config: Config, mlist: MailingList, people: list[Address], now: dt.datetime
) -> int:
    """Send the welcome mail to members an operator added (``members add --welcome``)."""
    sent = 0
    for who in people:
        member = find_member(session, mlist.id, who.address)
        if member is not None:
            context = member_context(config, mlist, member, who.address)
            sent += answers.answer(session, config, mlist, who.address, "command/welcome", context, now)
    return sent


# --- one-click unsubscribe (RFC 8058) ------------------------------------------------------------


def _link_member(
    session: Session, config: Config, token: str, now: dt.datetime
) -> tuple[Status, MailingList | None, Member | None]:
    try:
        member_id, list_id = tokens.verify(_key(config), tokens.UNSUBSCRIBE, token, now, fields=2)
    except tokens.InvalidToken as exc:
        return (Status.EXPIRED if "expired" in str(exc) else Status.INVALID), None, None
    mlist = session.get(MailingList, list_id)
    if mlist is None:
        return Status.INVALID, None, None
    member = session.get(Member, member_id)
    if member is None or member.list_id != list_id:
        return Status.ALREADY, mlist, None
    return Status.DONE, mlist, member


def unsubscribe_preview(session: Session, config: Config, token: str, now: dt.datetime) -> Preview:
    status, mlist, member = _link_member(session, config, token, now)
    if mlist is None:
        return Preview(status)
    address = member.address if member else ""
    return Preview(status, ConfirmAction.UNSUBSCRIBE.value, mlist.name, mlist.display_title, address)


def unsubscribe_by_link(session: Session, config: Config, token: str, now: dt.datetime) -> Outcome:
    """The one-click unsubscribe: the signed link is the proof, no confirmation mail."""
    status, mlist, member = _link_member(session, config, token, now)
    if mlist is None or member is None:
        title = mlist.display_title if mlist else ""
        return Outcome(status, ConfirmAction.UNSUBSCRIBE.value, mlist.name if mlist else "", list_title=title)
    return unsubscribe(session, config, mlist, member.address, now)
