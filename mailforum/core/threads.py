"""Threading: which topic a message belongs in, and under which post.

Order of evidence (DESIGN.md): a verified reply token (the caller passes the post),
then In-Reply-To, then References last to first, then — only for messages that look
like replies and have no header evidence at all — a normalised subject within the
same list and a recent window, so strangers' "Question" threads stay apart.

A reply that arrives before its parent leaves placeholders for the ids it names;
when the parent arrives it takes its placeholder's place. A message whose ids lie in
two topics merges them (public-inbox does the same: link_refs / merge_threads).
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass

from sqlalchemy import func, select, update
from sqlalchemy.orm import Session

from mailforum.db.models import MailingList, Post, PostStatus, Topic, TopicSubscription
from mailforum.mail.headers import MAX_REFERENCES, looks_like_reply, msgid_list, subject_key
from mailforum.mail.parse import ParsedMessage


@dataclass(frozen=True, slots=True)
class Placement:
    """Where a message goes. ``existing`` is a placeholder to fill; ``duplicate`` means: store nothing."""

    topic: Topic
    parent: Post | None
    message_id: str
    existing: Post | None = None
    duplicate: bool = False


def find_posts(session: Session, list_id: int, message_ids: list[str]) -> dict[str, Post]:
    if not message_ids:
        return {}
    found = session.scalars(select(Post).where(Post.list_id == list_id, Post.message_id.in_(message_ids)))
    return {p.message_id: p for p in found}


def _new_topic(session: Session, mlist: MailingList, subject: str, now: dt.datetime) -> Topic:
    topic = Topic(
        list_id=mlist.id,
        subject=subject,
        subject_key=subject_key(subject),
        created_at=now,
        last_post_at=now,
        post_count=0,
    )
    session.add(topic)
    session.flush()
    return topic


def live_topic(session: Session, topic_id: int) -> Topic:
    """The topic, following merges to the one that absorbed it."""
    topic = session.get(Topic, topic_id)
    assert topic is not None
    while topic.merged_into_id is not None:
        topic = session.get(Topic, topic.merged_into_id)
        assert topic is not None
    return topic


def merge_topics(session: Session, survivor: Topic, absorbed: Topic) -> None:
    """Move every post of ``absorbed`` into ``survivor``; old links follow ``merged_into_id``."""
    if survivor.id == absorbed.id:
        return
    session.execute(update(Post).where(Post.topic_id == absorbed.id).values(topic_id=survivor.id))
    watched = set(
        session.scalars(select(TopicSubscription.member_id).where(TopicSubscription.topic_id == survivor.id))
    )
    session.execute(
        update(TopicSubscription)
        .where(TopicSubscription.topic_id == absorbed.id, TopicSubscription.member_id.not_in(watched))
        .values(topic_id=survivor.id)
    )
    absorbed.merged_into_id = survivor.id
    absorbed.post_count = 0
    refresh_counts(session, survivor)
    if not survivor.subject and absorbed.subject:
        survivor.subject, survivor.subject_key = absorbed.subject, absorbed.subject_key


def refresh_counts(session: Session, topic: Topic) -> None:
    count, last = session.execute(
        select(func.count(), func.max(Post.received_at)).where(
            Post.topic_id == topic.id, Post.status == PostStatus.PUBLISHED.value
        )
    ).one()
    topic.post_count = count
    if last is not None:
        topic.last_post_at = last


def _ancestry(parsed: ParsedMessage) -> list[str]:
    """The ids this message names, oldest first, the direct parent last."""
    chain = msgid_list(parsed.references)[-MAX_REFERENCES:]
    parent = msgid_list(parsed.in_reply_to)[:1]
    if parent:
        if parent[0] in chain:
            chain.remove(parent[0])
        chain.append(parent[0])
    return [mid for mid in chain if mid != parsed.message_id]


def _by_subject(
    session: Session, mlist: MailingList, parsed: ParsedMessage, now: dt.datetime, window: dt.timedelta
) -> Topic | None:
    key = subject_key(parsed.subject)
    if not key or not looks_like_reply(parsed.subject):
        return None
    return session.scalars(
        select(Topic)
        .where(
            Topic.list_id == mlist.id,
            Topic.subject_key == key,
            Topic.merged_into_id.is_(None),
            Topic.last_post_at >= now - window,
        )
        .order_by(Topic.last_post_at.desc())
        .limit(1)
    ).first()


def _topic_root(session: Session, topic: Topic) -> Post | None:
    return session.scalars(
        select(Post)
        .where(Post.topic_id == topic.id, Post.status != PostStatus.PLACEHOLDER.value)
        .order_by(Post.received_at, Post.id)
        .limit(1)
    ).first()


def place(
    session: Session,
    mlist: MailingList,
    parsed: ParsedMessage,
    now: dt.datetime,
    window: dt.timedelta,
    reply_to: Post | None = None,
) -> Placement:
    """Decide topic and parent for ``parsed`` in ``mlist``, creating placeholders as needed."""
    message_id = parsed.message_id
    existing = find_posts(session, mlist.id, [message_id]).get(message_id)
    if existing is not None and existing.status != PostStatus.PLACEHOLDER.value:
        if existing.fingerprint == parsed.fingerprint:
            return Placement(
                live_topic(session, existing.topic_id), None, message_id, existing, duplicate=True
            )
        # Same Message-ID, different content: keep both under a derived id, so a squatter
        # cannot swallow a later genuine post (RELIABILITY S20).
        message_id = f"<{parsed.fingerprint[:16]}.{message_id[1:]}"
        again = find_posts(session, mlist.id, [message_id]).get(message_id)
        if again is not None:
            return Placement(live_topic(session, again.topic_id), None, message_id, again, duplicate=True)
        existing = None

    if reply_to is not None:
        topic = live_topic(session, reply_to.topic_id)
        if existing is not None:
            merge_topics(session, topic, live_topic(session, existing.topic_id))
        return Placement(topic, reply_to, message_id, existing)

    chain = _ancestry(parsed)
    known = find_posts(session, mlist.id, chain)
    topics = {live_topic(session, p.topic_id).id: live_topic(session, p.topic_id) for p in known.values()}
    if existing is not None:
        own = live_topic(session, existing.topic_id)
        topics.setdefault(own.id, own)

    if topics:
        survivor = min(topics.values(), key=lambda t: t.id)  # the oldest topic absorbs the others
        for topic in topics.values():
            merge_topics(session, survivor, topic)
    elif chain:
        survivor = _new_topic(session, mlist, parsed.subject, now)
    else:
        found = _by_subject(session, mlist, parsed, now, window)
        if found is not None:
            return Placement(found, _topic_root(session, found), message_id, existing)
        return Placement(_new_topic(session, mlist, parsed.subject, now), None, message_id, existing)

    parent: Post | None = None
    for mid in chain:  # oldest first: each unseen id becomes a placeholder under the previous one
        node = known.get(mid)
        if node is None:
            node = Post(
                list_id=mlist.id,
                topic_id=survivor.id,
                parent_id=parent.id if parent else None,
                message_id=mid,
                status=PostStatus.PLACEHOLDER.value,
                received_at=now,
                attachments=[],
            )
            session.add(node)
            session.flush()
        parent = node
    return Placement(survivor, parent, message_id, existing)
