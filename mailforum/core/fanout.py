"""Who hears of a post: delivery mode × per-topic watch/mute × the author rule.

Called inside the transaction that stores the post, so the outbox rows and the
post are committed together (DESIGN invariant 2). The decision for one member is a
table of rules, read top to bottom; the first that matches decides:

    muted      the member muted this topic                 → nothing, whatever the mode
    author     the member wrote the post (receive_own off)  → nothing
    addressed  the post's To/Cc names the member (avoid_duplicates on) → nothing: the sender's
               copy reached them (Mailman's "avoid duplicate copies", RELIABILITY B52)
    watching   the member watches this topic               → the post, whatever the mode
    tag-muted  the member mutes a tag of the topic (and follows none of its tags) → nothing
    tag-followed the member follows a tag of the topic     → the post, whatever the mode (even none)
    mode-all   delivery mode "all"                         → the post
    new-topic  mode "new-topics" and the post opens a topic → the post
    (else)     modes "digest", "none", "new-topics" on replies → nothing now

Held posts notify no one, and members whose delivery bounces disabled hear nothing.
Digests are not decided here: a digest member still finds a post that named them in
their digest; only the single copy is skipped.
Members watch the topics they start or reply to unless they turned ``watch_own`` off.
"""

from __future__ import annotations

import datetime as dt
import enum
import functools
from collections import defaultdict
from collections.abc import Callable
from dataclasses import dataclass, replace
from typing import Any, Final

from sqlalchemy import Select, Table, and_, bindparam, case, func, select
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.orm import Session

from mailforum import crash
from mailforum.core.lists import find_member
from mailforum.db import outbox
from mailforum.db.base import Id, UTCDateTime
from mailforum.db.models import (
    DeliveryMode,
    Member,
    Post,
    PostStatus,
    SubscriptionKind,
    TagSubscription,
    TopicSubscription,
    TopicTag,
)
from mailforum.mail.parse import addressees


@dataclass(frozen=True, slots=True)
class Candidate:
    """A member of the post's list, with their setting for the post's topic."""

    member_id: int
    address: str
    mode: str
    receive_own: bool
    subscription: str | None  # "watch", "mute" or None
    avoid_duplicates: bool = True
    tag: str | None = None  # "watch" (follows a tag of the topic), "mute" (mutes one) or None


@dataclass(frozen=True, slots=True)
class PostFacts:
    author: str  # lower-case address
    starts_topic: bool  # the first published post of its topic
    addressed: frozenset[str] = frozenset()  # the To and Cc addresses, lower-cased


@dataclass(frozen=True, slots=True)
class Rule:
    name: str
    applies: Callable[[Candidate, PostFacts], bool]
    sends: bool


RULES: tuple[Rule, ...] = (
    Rule("muted", lambda c, p: c.subscription == SubscriptionKind.MUTE.value, False),
    Rule("author", lambda c, p: c.address == p.author and not c.receive_own, False),
    Rule("addressed", lambda c, p: c.avoid_duplicates and c.address in p.addressed, False),
    Rule("watching", lambda c, p: c.subscription == SubscriptionKind.WATCH.value, True),
    Rule("tag-muted", lambda c, p: c.tag == SubscriptionKind.MUTE.value, False),
    Rule("tag-followed", lambda c, p: c.tag == SubscriptionKind.WATCH.value, True),
    Rule("mode-all", lambda c, p: c.mode == DeliveryMode.ALL.value, True),
    Rule("new-topic", lambda c, p: c.mode == DeliveryMode.NEW_TOPICS.value and p.starts_topic, True),
)


def decide(candidate: Candidate, facts: PostFacts, rules: tuple[Rule, ...] = RULES) -> Rule | None:
    """The rule that decides for this member, or None (nothing is sent)."""
    for rule in rules:
        if rule.applies(candidate, facts):
            return rule
    return None


def candidates(session: Session, list_id: int, topic_id: int) -> list[Candidate]:
    """Every member of the list with their watch/mute setting for the topic and its tags (one query).

    A member's tag choice is ``watch`` when they follow a tag of the topic, ``mute`` when
    they mute one and follow none, else None.
    """
    rows = session.execute(_candidates(), {"list_id": list_id, "topic_id": topic_id})
    return [
        Candidate(r[0], r[1].lower(), r[2], bool(r[3]), r[4], bool(r[5]), _tag_choice(r[6])) for r in rows
    ]


@functools.cache
def _candidates() -> Select[Any]:
    """``candidates``' statement, built once (every post runs it; building it cost more than running it)."""
    topic_id = bindparam("topic_id", type_=Id)
    watches = case((TagSubscription.kind == SubscriptionKind.WATCH.value, 1), else_=0)
    by_tag = (
        select(TagSubscription.member_id.label("member_id"), func.max(watches).label("watching"))
        .join(TopicTag, TopicTag.tag_id == TagSubscription.tag_id)
        .where(TopicTag.topic_id == topic_id)
        .group_by(TagSubscription.member_id)
        .subquery()
    )
    return (
        select(
            Member.id,
            Member.address,
            Member.delivery_mode,
            Member.receive_own,
            TopicSubscription.kind,
            Member.avoid_duplicates,
            by_tag.c.watching,
        )
        .outerjoin(
            TopicSubscription,
            and_(TopicSubscription.member_id == Member.id, TopicSubscription.topic_id == topic_id),
        )
        .outerjoin(by_tag, by_tag.c.member_id == Member.id)
        .where(Member.list_id == bindparam("list_id", type_=Id), Member.delivery_disabled_at.is_(None))
        .order_by(Member.id)
    )


def _tag_choice(watching: int | None) -> str | None:
    if watching is None:
        return None
    return SubscriptionKind.WATCH.value if watching else SubscriptionKind.MUTE.value


def recipients(session: Session, post: Post, starts_topic: bool) -> list[Candidate]:
    """The members who get ``post`` now; none for a post that is not published."""
    if post.status != PostStatus.PUBLISHED.value:
        return []
    facts = PostFacts(post.author_address.lower(), starts_topic, _addressed(post))
    chosen = []
    for candidate in candidates(session, post.list_id, post.topic_id):
        rule = decide(candidate, facts)
        if rule is not None and rule.sends:
            chosen.append(candidate)
    return chosen


def _addressed(post: Post) -> frozenset[str]:
    """The post's To and Cc addresses as parsed from its raw header (never from decoded text)."""
    return addressees(post.raw).addresses if post.raw else frozenset()


def enqueue_post(session: Session, post: Post, starts_topic: bool, now: dt.datetime) -> int:
    """Write one outbox row per recipient of ``post``, in one statement; returns how many.

    Every copy carries the post's own Message-ID (DESIGN: rules easy to get wrong). A
    member who got this message as a member of another list gets no second copy: a
    cross-post arrives once (F13b); the statement itself leaves them out.
    """
    return _enqueue(session, post, [c.member_id for c in recipients(session, post, starts_topic)], now)


def _enqueue(session: Session, post: Post, member_ids: list[int], now: dt.datetime) -> int:
    count = outbox.enqueue_members(
        session,
        list_id=post.list_id,
        post_id=post.id,
        message_id=post.message_id,
        member_ids=member_ids,
        now=now,
        once_per_message=True,
    )
    crash.point("mid_outbox_fanout")  # the rows are written, the post's transaction is not committed
    return count


@functools.cache
def _watch_insert(dialect_name: str) -> Any:
    """``watch_own``'s INSERT … ON CONFLICT DO NOTHING for the dialect, built once."""
    dialect = postgresql if dialect_name == "postgresql" else sqlite
    table: Table = TopicSubscription.__table__  # type: ignore[assignment]
    return (
        dialect.insert(table)
        .values(
            member_id=bindparam("member_id", type_=Id),
            topic_id=bindparam("topic_id", type_=Id),
            kind=SubscriptionKind.WATCH.value,
            created_at=bindparam("created_at", type_=UTCDateTime()),
        )
        .on_conflict_do_nothing(index_elements=["member_id", "topic_id"])
    )


class Unknown(enum.Enum):
    """Not looked up yet (``watch_own``'s author)."""

    TOKEN = 0


UNKNOWN: Final = Unknown.TOKEN


def watch_own(
    session: Session, post: Post, now: dt.datetime, author: Member | Unknown | None = UNKNOWN
) -> bool:
    """Make the author watch the post's topic if they are a member with ``watch_own`` on.

    ``author`` is their membership when the caller has looked it up already (the posting
    policy has). An explicit watch or mute of theirs is left as it is (one INSERT that
    does nothing on the (member, topic) key). Returns True when a watch was added.
    """
    if not post.author_address:
        return False
    member = find_member(session, post.list_id, post.author_address) if author is UNKNOWN else author
    if not isinstance(member, Member) or not member.watch_own:
        return False
    added = session.execute(
        _watch_insert(session.get_bind().dialect.name),
        {"member_id": member.id, "topic_id": post.topic_id, "created_at": now},
    )
    return bool(added.rowcount)  # type: ignore[attr-defined]


@dataclass(frozen=True, slots=True)
class _Waiting:
    post: Post
    starts_topic: bool
    author: Member | Unknown | None


class Deferred:
    """The fan-out of a processing batch's published posts, written when the batch ends.

    Live posts stored in one transaction (runners.worker) are told here instead of being
    fanned out one by one: ``flush`` reads each topic's candidates once, not once per post,
    and adds the authors' watches in one statement, not one per post (bench/posts.py).
    The outcome is the one-by-one outcome: posts are decided in the order they came, a
    watch that an earlier post of the batch gave its author counts for the later posts
    of that topic as it would have from the table, and ``core.routing`` flushes before any
    message that is not a post (a command, a bounce, a moderator's answer) is handled, so
    a change of membership sits between the same posts it did before.
    """

    def __init__(self) -> None:
        self._waiting: list[_Waiting] = []

    def add(self, post: Post, starts_topic: bool, author: Member | Unknown | None) -> None:
        self._waiting.append(_Waiting(post, starts_topic, author))

    def flush(self, session: Session, now: dt.datetime) -> int:
        """Write the waiting posts' outbox rows and their authors' watches; returns the rows written."""
        waiting, self._waiting = self._waiting, []
        if not waiting:
            return 0
        topics: dict[tuple[int, int], list[Candidate]] = {}
        watching: dict[tuple[int, int], set[int]] = defaultdict(set)  # gained in this batch
        watches: list[dict[str, Any]] = []
        written = 0
        for item in waiting:
            post = item.post
            key = (post.list_id, post.topic_id)
            author = item.author
            if author is UNKNOWN and post.author_address:
                author = find_member(session, post.list_id, post.author_address)
            if isinstance(author, Member) and author.watch_own and post.author_address:
                # watch_own's INSERT … DO NOTHING: an explicit watch or mute stays as it is.
                watches.append({"member_id": author.id, "topic_id": post.topic_id, "created_at": now})
                watching[key].add(author.id)
            if key not in topics:
                topics[key] = candidates(session, *key)
            gained = watching[key]
            facts = PostFacts(post.author_address.lower(), item.starts_topic, _addressed(post))
            chosen = []
            for candidate in topics[key]:
                if candidate.subscription is None and candidate.member_id in gained:
                    candidate = replace(candidate, subscription=SubscriptionKind.WATCH.value)
                rule = decide(candidate, facts)
                if rule is not None and rule.sends:
                    chosen.append(candidate.member_id)
            written += _enqueue(session, post, chosen, now)
        if watches:
            session.execute(_watch_insert(session.get_bind().dialect.name), watches)
        return written
