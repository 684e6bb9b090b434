"""Read queries of the JSON API and the owner pages: cursor pages of lists, members,
held posts and topics, and the counts behind ``/metrics``.

A cursor page is keyset paging: each page is one indexed query ``WHERE key > cursor
ORDER BY key LIMIT n+1`` (the extra row says whether there is a next page), so walking
a 10,000-member list costs the same per page from the first to the last.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, Generic, TypeVar

from sqlalchemy import func, or_, select
from sqlalchemy.orm import Session

from mailforum.db.models import (
    MailingList,
    Member,
    OutboxEntry,
    OutboxState,
    Post,
    PostStatus,
    SpoolEntry,
    SpoolState,
    Topic,
)

T = TypeVar("T")


@dataclass(frozen=True, slots=True)
class Page(Generic[T]):
    items: list[T]
    next: str | None  # the cursor of the next page, None on the last one


def _page(rows: Sequence[T], limit: int, key: str) -> Page[T]:
    if len(rows) > limit:
        items = list(rows[:limit])
        return Page(items, str(getattr(items[-1], key)))
    return Page(list(rows), None)


def lists_page(session: Session, after: str | None, limit: int, only: int | None = None) -> Page[MailingList]:
    """Lists by name; ``only`` a list id (a token bound to one list)."""
    query = select(MailingList).order_by(MailingList.name).limit(limit + 1)
    if after:
        query = query.where(MailingList.name > after)
    if only is not None:
        query = query.where(MailingList.id == only)
    return _page(session.scalars(query).all(), limit, "name")


MEMBER_COLUMNS = (
    Member.id,
    Member.address,
    Member.display_name,
    Member.delivery_mode,
    Member.digest_frequency,
    Member.delivery_disabled_at,
    Member.avoid_duplicates,
    Member.bounce_score,
    Member.created_at,
)


def members_page(session: Session, mlist: MailingList, after: int, limit: int) -> Page[Any]:
    """Members in the order they joined (by id): rows of ``MEMBER_COLUMNS``, named as on ``Member``
    (plain rows: a page of 500 costs a fraction of what as many ORM objects do)."""
    rows: Sequence[Any] = session.execute(
        select(*MEMBER_COLUMNS)
        .where(Member.list_id == mlist.id, Member.id > after)
        .order_by(Member.id)
        .limit(limit + 1)
    ).all()
    return _page(rows, limit, "id")


def held_page(session: Session, mlist: MailingList, after: int, limit: int) -> Page[Post]:
    """Held posts, oldest first."""
    rows = session.scalars(
        select(Post)
        .where(Post.list_id == mlist.id, Post.status == PostStatus.HELD.value, Post.id > after)
        .order_by(Post.id)
        .limit(limit + 1)
    ).all()
    return _page(rows, limit, "id")


def topics_page(
    session: Session, mlist: MailingList, before: int | None, limit: int, tag_id: int | None = None
) -> Page[Topic]:
    """Topics that show a post, newest first (only those filed under the tag ``tag_id``)."""
    query = (
        select(Topic)
        .where(Topic.list_id == mlist.id, Topic.merged_into_id.is_(None), Topic.post_count > 0)
        .order_by(Topic.id.desc())
        .limit(limit + 1)
    )
    if before is not None:
        query = query.where(Topic.id < before)
    if tag_id is not None:
        from mailforum.db.models import TopicTag

        query = query.where(Topic.id.in_(select(TopicTag.topic_id).where(TopicTag.tag_id == tag_id)))
    return _page(session.scalars(query).all(), limit, "id")


def topic_posts(session: Session, topic: Topic, limit: int = 1000) -> list[Post]:
    """The published posts of a topic, in the order they arrived."""
    return list(
        session.scalars(
            select(Post)
            .where(Post.topic_id == topic.id, Post.status == PostStatus.PUBLISHED.value)
            .order_by(Post.received_at, Post.id)
            .limit(limit)
        )
    )


def member_count(session: Session, mlist: MailingList) -> int:
    return session.scalar(select(func.count()).where(Member.list_id == mlist.id)) or 0


# --- /metrics ------------------------------------------------------------------------------


def spool_by_state(session: Session) -> dict[str, int]:
    rows = session.execute(select(SpoolEntry.state, func.count()).group_by(SpoolEntry.state))
    return {state: count for state, count in rows}


def outbox_by_state(session: Session) -> dict[str, int]:
    rows = session.execute(select(OutboxEntry.state, func.count()).group_by(OutboxEntry.state))
    return {state: count for state, count in rows}


def posts_by_status(session: Session) -> dict[str, int]:
    rows = session.execute(select(Post.status, func.count()).group_by(Post.status))
    return {status: count for status, count in rows}


def members_total(session: Session) -> tuple[int, int]:
    """(members, members whose delivery bounces disabled)."""
    total = session.scalar(select(func.count()).select_from(Member)) or 0
    disabled = session.scalar(select(func.count()).where(Member.delivery_disabled_at.is_not(None))) or 0
    return total, disabled


# --- the owner pages ---------------------------------------------------------------------------


def members_search(session: Session, mlist: MailingList, text: str, after: int, limit: int) -> Page[Any]:
    """Members whose address or name contains ``text`` (any case), by id, as ``members_page``."""
    query = select(*MEMBER_COLUMNS).where(Member.list_id == mlist.id, Member.id > after)
    if text:
        pattern = "%" + text.lower().replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_") + "%"
        query = query.where(
            or_(
                Member.address.like(pattern, escape="\\"),
                func.lower(Member.display_name).like(pattern, escape="\\"),
            )
        )
    rows: Sequence[Any] = session.execute(query.order_by(Member.id).limit(limit + 1)).all()
    return _page(rows, limit, "id")


def failed_copies(session: Session, mlist: MailingList, limit: int = 100) -> list[OutboxEntry]:
    """The list's outbox copies given up on, newest first."""
    return list(
        session.scalars(
            select(OutboxEntry)
            .where(OutboxEntry.list_id == mlist.id, OutboxEntry.state == OutboxState.FAILED.value)
            .order_by(OutboxEntry.id.desc())
            .limit(limit)
        )
    )


def parked_entries(session: Session, limit: int = 100) -> list[SpoolEntry]:
    """Spool entries whose processing failed (parked for an operator), newest first."""
    return list(
        session.scalars(
            select(SpoolEntry)
            .where(SpoolEntry.state == SpoolState.FAILED.value)
            .order_by(SpoolEntry.id.desc())
            .limit(limit)
        )
    )


@dataclass(frozen=True, slots=True)
class Activity:
    """The raw points of a list's activity charts since ``since`` (bucketed by the caller)."""

    posts: list[tuple[dt.datetime, str]]  # (received_at, author) of published posts
    joined: list[dt.datetime]  # created_at of every current member
    members_before: int  # members who joined before ``since``
    bounced: list[dt.datetime]  # bounce_last_at of members who bounced since
    delivery: list[tuple[dt.datetime, float]]  # (sent_at, seconds from queued to sent), a sample


def activity(session: Session, mlist: MailingList, since: dt.datetime, sample: int = 5000) -> Activity:
    posts = [
        (r[0], r[1])
        for r in session.execute(
            select(Post.received_at, Post.author_address).where(
                Post.list_id == mlist.id, Post.status == PostStatus.PUBLISHED.value, Post.received_at >= since
            )
        )
    ]
    joined = list(
        session.scalars(
            select(Member.created_at).where(Member.list_id == mlist.id, Member.created_at >= since)
        )
    )
    before = (
        session.scalar(select(func.count()).where(Member.list_id == mlist.id, Member.created_at < since)) or 0
    )
    bounced = list(
        session.scalars(
            select(Member.bounce_last_at).where(Member.list_id == mlist.id, Member.bounce_last_at >= since)
        )
    )
    sent = session.execute(
        select(OutboxEntry.sent_at, OutboxEntry.created_at)
        .where(
            OutboxEntry.list_id == mlist.id,
            OutboxEntry.state == OutboxState.SENT.value,
            OutboxEntry.sent_at >= since,
        )
        .order_by(OutboxEntry.id.desc())
        .limit(sample)
    )
    delivery = [(s, max((s - c).total_seconds(), 0.0)) for s, c in sent if s is not None]
    return Activity(posts, joined, int(before), [b for b in bounced if b is not None], delivery)
