"""What a member's digest holds: the posts between two marks, by topic, less what they muted.

A digest is a post-id range: the list's published posts with ``start < id <= end``
(``core.digest_enqueue`` says why, and where the marks come from). ``member_contents``
is the one place that decides what each member's digest holds — the range's topics
less the topics the member muted — and the run that enqueues digests, the delivery
worker that renders them (``core.copies``) and ``digest send --dry-run``
(``core.digest_render.preview_digests``) all ask it. They differ only in what they load
for a range: a run needs the topic ids (is anything left?), rendering the posts' text
(``load_topics``: trimmed, cut, new topics first), a MIME digest each post whole
(``load_originals``).
"""

from __future__ import annotations

import datetime as dt
import logging
import re
from collections import defaultdict
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from typing import Generic, Protocol, TypeVar

from sqlalchemy import BigInteger, ColumnElement, any_, bindparam, func, select
from sqlalchemy.dialects import postgresql
from sqlalchemy.orm import InstrumentedAttribute, Session

from mailforum.batching import chunks
from mailforum.config import Config
from mailforum.core.topics import tags_of
from mailforum.db.ancestry import ancestors
from mailforum.db.models import (
    Post,
    PostStatus,
    SubscriptionKind,
    TagSubscription,
    Topic,
    TopicSubscription,
    TopicTag,
)
from mailforum.mail.parse import Attachment
from mailforum.mail.quotes import ATTRIBUTION, ORIGINAL_MESSAGE
from mailforum.textsafe import safe_filename

log = logging.getLogger(__name__)

DAILY = "daily"
WEEKLY = "weekly"
FREQUENCIES = (DAILY, WEEKLY)


# ---------------------------------------------------------------------------
# Which topics, for which member


class HasId(Protocol):
    """A topic as some loader gives it: ``DigestTopic``, ``RangeTopic``."""

    @property
    def id(self) -> int: ...


T = TypeVar("T", bound=HasId)


@dataclass(frozen=True, slots=True)
class Contents(Generic[T]):
    """What one member's digest holds: the topics of their range less those they muted."""

    member_id: int | None
    start: int
    end: int
    muted: frozenset[int]  # the range's topics this member muted: left out
    topics: tuple[T, ...]  # the rest, in the order loaded; empty: no digest


def member_contents(
    session: Session,
    members: Sequence[tuple[int | None, int]],
    end: int,
    load: Callable[[int, int], tuple[T, ...]],
) -> list[Contents[T]]:
    """What each member's digest holds, in the order given; the one rule for runs, copies, previews.

    ``members``: (member id, start mark) pairs (``digest_enqueue.starts``; a copy's
    start is in its payload); a member gone (None) has muted nothing. ``load(start,
    end)`` gives the range's topics, once per start; the members' mutes are read
    together (a query per 1,000 members), not one member at a time.
    """
    ranges: dict[int, tuple[T, ...]] = {}
    for _, start in members:
        if start not in ranges:
            ranges[start] = load(start, end)
    topic_ids = {t.id for topics in ranges.values() for t in topics}
    muted = muted_topics(session, [m for m, _ in members if m is not None], topic_ids)
    out = []
    nothing: frozenset[int] = frozenset()
    for member_id, start in members:
        topics = ranges[start]
        mine = muted.get(member_id) if member_id is not None else None
        if not mine:  # most members mute nothing: their digest is the range's, as it is
            out.append(Contents(member_id, start, end, nothing, topics))
            continue
        excluded = frozenset(t.id for t in topics if t.id in mine)
        kept = tuple(t for t in topics if t.id not in excluded)
        out.append(Contents(member_id, start, end, excluded, kept))
    return out


def _among_lists(column: InstrumentedAttribute[int], ids: Iterable[int]) -> ColumnElement[bool]:
    return column.in_(list(ids))


def _among_arrays(column: InstrumentedAttribute[int], ids: Iterable[int]) -> ColumnElement[bool]:
    """``column = ANY(:ids)``: one array parameter, so the statement's text is the same
    for any number of ids (an ``IN`` list is new text per length, parsed again by psycopg
    each time: a tenth of the delivery worker's CPU for digests on PostgreSQL)."""
    return column == any_(bindparam(None, list(ids), type_=postgresql.ARRAY(BigInteger)))


def muted_topics(session: Session, member_ids: Sequence[int], topic_ids: set[int]) -> dict[int, set[int]]:
    """Per member, which of ``topic_ids`` they muted: the topic itself, or a tag of it (unless
    they watch the topic or follow another of its tags, as core.fanout decides for copies)."""
    out: dict[int, set[int]] = defaultdict(set)
    if not member_ids or not topic_ids:
        return out
    among = _among_arrays if session.get_bind().dialect.name == "postgresql" else _among_lists
    for chunk in chunks(member_ids, 1000):
        rows = session.execute(
            select(TopicSubscription.member_id, TopicSubscription.topic_id, TopicSubscription.kind).where(
                among(TopicSubscription.member_id, chunk),
                among(TopicSubscription.topic_id, topic_ids),
            )
        )
        watched: set[tuple[int, int]] = set()
        for member_id, topic_id, kind in rows:
            if kind == SubscriptionKind.MUTE.value:
                out[member_id].add(topic_id)
            else:
                watched.add((member_id, topic_id))
        by_tag: dict[tuple[int, int], str] = {}
        for member_id, topic_id, kind in session.execute(
            select(TagSubscription.member_id, TopicTag.topic_id, TagSubscription.kind)
            .join(TopicTag, TopicTag.tag_id == TagSubscription.tag_id)
            .where(among(TagSubscription.member_id, chunk), among(TopicTag.topic_id, topic_ids))
        ):
            if by_tag.get((member_id, topic_id)) != SubscriptionKind.WATCH.value:
                by_tag[(member_id, topic_id)] = kind
        for (member_id, topic_id), kind in by_tag.items():
            if kind == SubscriptionKind.MUTE.value and (member_id, topic_id) not in watched:
                out[member_id].add(topic_id)
    return out


def _in_range(list_id: int, start: int, end: int) -> tuple[ColumnElement[bool], ...]:
    return (
        Post.list_id == list_id,
        Post.status == PostStatus.PUBLISHED.value,
        Post.id > start,
        Post.id <= end,
    )


@dataclass(frozen=True, slots=True)
class RangeTopic:
    """A topic with posts in a range, by id only: all a run asks is whether anything is left."""

    id: int


def range_topics(session: Session, list_id: int, start: int, end: int) -> tuple[RangeTopic, ...]:
    """The topics of the range's posts, in the order of their first post in it."""
    topic_ids = session.scalars(
        select(Post.topic_id).where(*_in_range(list_id, start, end)).order_by(Post.id)
    )
    return tuple(RangeTopic(t) for t in dict.fromkeys(topic_ids))


# ---------------------------------------------------------------------------
# A standard digest: each post's new text, by topic


@dataclass(frozen=True, slots=True)
class DigestPost:
    id: int
    topic_id: int
    author: str
    when: dt.datetime
    subject: str
    text: str  # trimmed, possibly cut
    cut: bool


@dataclass(frozen=True, slots=True)
class DigestTopic:
    id: int
    subject: str
    new: bool  # the topic started in this period
    posts: tuple[DigestPost, ...]
    tags: tuple[str, ...] = ()  # the topic's tags: a digest groups its topics by the first


def trim(text: str) -> str:
    """The new text of a post: quoted lines, their attribution and the signature removed.

    Our own small rules (the parsing library on PyPI, email-reply-parser, is unmaintained
    since 2020): lines starting with ">", an "On … wrote:" line right before quoted
    lines, everything from "-- " (RFC 3676 signature separator) or an Outlook
    "-----Original Message-----" on. A post that is nothing but quote keeps its text.
    """
    lines = text.replace("\r\n", "\n").replace("\r", "\n").split("\n")
    out: list[str] = []
    for line in lines:
        if line in ("-- ", "--") or ORIGINAL_MESSAGE.match(line):
            break
        if line.lstrip().startswith(">"):
            while out and not out[-1].strip():
                out.pop()
            if out and ATTRIBUTION.match(out[-1].strip()):
                out.pop()
            continue
        out.append(line)
    result = "\n".join(out).strip("\n")
    result = re.sub(r"\n{3,}", "\n\n", result)
    return result if result.strip() else text.strip()


def cut(text: str, limit: int) -> tuple[str, bool]:
    """At most ``limit`` characters, cut at a paragraph or word boundary."""
    if len(text) <= limit:
        return text, False
    head = text[:limit]
    at = head.rfind("\n\n")
    if at < limit // 2:
        at = head.rfind(" ")
    if at < limit // 2:
        at = limit
    return head[:at].rstrip() + " …", True


def load_topics(
    session: Session, config: Config, list_id: int, start: int, end: int
) -> tuple[DigestTopic, ...]:
    """The range's posts grouped by topic: new topics first, then the most active."""
    posts = session.execute(
        select(
            Post.id,
            Post.topic_id,
            Post.author_name,
            Post.author_address,
            Post.received_at,
            Post.subject,
            Post.text_body,
        )
        .where(*_in_range(list_id, start, end))
        .order_by(Post.id)
    ).all()
    grouped: dict[int, list[DigestPost]] = defaultdict(list)
    limit = config.digest.max_post_chars
    for pid, tid, name, address, received, subject, body in posts:
        try:
            text, was_cut = cut(trim(body or ""), limit)
        except Exception:  # a poison post never blocks the digest (F14, CVE-2005-3573)
            log.exception("post %s left out of a digest", pid)
            continue
        author = name or (address.split("@")[0] if address else "") or "Someone"
        grouped[tid].append(DigestPost(pid, tid, author, received, subject or "", text, was_cut))
    if not grouped:
        return ()
    topics = {t.id: t for t in session.scalars(select(Topic).where(Topic.id.in_(list(grouped))))}
    first_ids = dict(
        session.execute(
            select(Post.topic_id, func.min(Post.id))
            .where(Post.topic_id.in_(list(grouped)), Post.status == PostStatus.PUBLISHED.value)
            .group_by(Post.topic_id)
        ).all()
    )
    tags = tags_of(session, list(grouped))
    out = []
    for tid, items in grouped.items():
        topic = topics.get(tid)
        subject = (topic.subject if topic is not None else "") or items[0].subject or "(no subject)"
        out.append(
            DigestTopic(tid, subject, first_ids.get(tid, 0) > start, tuple(items), tuple(tags.get(tid, ())))
        )
    # Grouped by tag (the first, by name; untagged topics last), then new topics first, then the most active.
    out.sort(key=lambda t: (not t.tags, t.tags[:1], not t.new, -len(t.posts), -t.posts[-1].id))
    return tuple(out)


# ---------------------------------------------------------------------------
# A MIME digest: each post whole


@dataclass(frozen=True, slots=True)
class OriginalPost:
    """A post whole, as a MIME digest embeds it: the values of its headers and its full text."""

    id: int
    topic_id: int
    message_id: str
    subject: str
    author_name: str
    author_address: str
    date: dt.datetime  # the Date: header when sane, else when it arrived (as its copies show it)
    text: str  # the whole text body: not trimmed, not cut
    attachments: tuple[Attachment, ...]  # listed by name with a link, never embedded
    ancestors: tuple[str, ...]  # Message-IDs from the topic root down to the parent


def load_originals(session: Session, post_ids: Sequence[int]) -> dict[int, OriginalPost]:
    """The stored posts, by id, for a MIME digest (posts gone since are simply missing).

    In-Reply-To and References come from the stored thread, as post copies have them
    (``db.ancestry``, one level of the tree at a time for all posts at once).
    """
    columns = select(
        Post.id,
        Post.topic_id,
        Post.message_id,
        Post.parent_id,
        Post.subject,
        Post.author_name,
        Post.author_address,
        Post.date,
        Post.received_at,
        Post.text_body,
        Post.attachments,
    )
    rows = [
        row
        for chunk in chunks(post_ids, 1000)
        for row in session.execute(columns.where(Post.id.in_(chunk))).all()
    ]
    chains = ancestors(session, {r.id: (r.message_id, r.parent_id) for r in rows})
    out = {}
    for r in rows:
        files = tuple(
            Attachment(
                safe_filename(str(a.get("filename") or "")), str(a.get("type") or ""), int(a.get("size") or 0)
            )
            for a in (r.attachments or [])
            if isinstance(a, dict)
        )
        out[r.id] = OriginalPost(
            r.id,
            r.topic_id,
            r.message_id,
            r.subject or "",
            r.author_name or "",
            r.author_address or "",
            r.date or r.received_at,
            r.text_body or "",
            files,
            chains[r.id],
        )
    return out
