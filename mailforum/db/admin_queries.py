"""Read queries of the JSON API and the owner pages: cursor pages of lists, members,
held posts and topics, and the counts behind ``/metrics``.

A cursor page is keyset paging: each page is one indexed query ``WHERE key > cursor
ORDER BY key LIMIT n+1`` (the extra row says whether there is a next page), so walking
a 10,000-member list costs the same per page from the first to the last.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, Generic, TypeVar

from sqlalchemy import func, select
from sqlalchemy.orm import Session

from mailforum.db.models import MailingList, Member, OutboxEntry, Post, PostStatus, SpoolEntry, Topic

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


def topics_page(session: Session, mlist: MailingList, before: int | None, limit: int) -> Page[Topic]:
    """Topics that show a post, newest first."""
    query = (
        select(Topic)
        .where(Topic.list_id == mlist.id, Topic.merged_into_id.is_(None), Topic.post_count > 0)
        .order_by(Topic.id.desc())
        .limit(limit + 1)
    )
    if before is not None:
        query = query.where(Topic.id < before)
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
