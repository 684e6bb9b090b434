"""Topics: a list's tag vocabulary, tagged topics, and moderators' tools.

Tags. A list has a vocabulary (``lists tags``); a topic's first post names tags as
``[tag]`` in its subject or ``#tag`` on its first body line, and only words of the
vocabulary count (anything else stays text). ``tag_topic`` files a topic by hand.
``topic_tags`` copies each topic's ``last_post_at`` and ``post_count`` (kept by
``threads.sync_tags``), so a tag's page walks one index.

Moderators' tools, each audited (core/audit.py): lock and unlock (a reply to a locked
topic is held with the rule ``topic-locked``, core/posting.py), pin and unpin, split
at a post (the post and its replies become a topic of their own), merge, move to
another list, retitle, and remove a post (status ``removed``: a tombstone in its
thread; the copies already sent stay sent).

A split, a merge and a retitle are also written to ``topic_decisions``, named by
message ids, which outlive topic ids: ``rethread`` replays the raw mail, then these
decisions in order (``rethread.replay_decisions``), so a manual decision survives
it. A topic made by a split is ``manual``: the live threader never merges it back into
the topic of its ancestors (core/threads.py).
"""

from __future__ import annotations

import datetime as dt
import re
from collections import defaultdict
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass

from sqlalchemy import delete, func, insert, inspect, or_, select, update
from sqlalchemy.orm import Session

from mailforum.core import audit as audit_log
from mailforum.core import threads
from mailforum.db import queries
from mailforum.db.models import (
    MailingList,
    Member,
    OutboxEntry,
    OutboxState,
    Post,
    PostStatus,
    SubscriptionKind,
    Tag,
    TagSubscription,
    Topic,
    TopicDecision,
    TopicDecisionKind,
    TopicSubscription,
    TopicTag,
)
from mailforum.db.txcache import TxCache
from mailforum.errors import InvalidInput, NotFound
from mailforum.mail.headers import subject_key

TAG_NAME = re.compile(r"^[a-z0-9][a-z0-9_-]{0,63}$")
_SUBJECT_TAG = re.compile(r"\[([^\[\]\s]{1,64})\]")
_HASH_TAG = re.compile(r"(?<![\w&#/])#([A-Za-z0-9][\w-]{0,63})")
MAX_TITLE = 300


# --- the vocabulary ----------------------------------------------------------------------


def tag_name(text: str) -> str:
    """``text`` as a tag name (``#Agile`` → ``agile``), or InvalidInput naming what is wrong."""
    name = text.strip().lstrip("#").lower()
    if not TAG_NAME.match(name):
        raise InvalidInput(
            f"not a tag name: {text.strip()[:64]!r} (letters, digits, '-' and '_', at most 64, "
            "starting with a letter or digit)"
        )
    return name


def vocabulary(session: Session, mlist: MailingList) -> list[Tag]:
    return list(session.scalars(select(Tag).where(Tag.list_id == mlist.id).order_by(Tag.name)))


def add_tags(session: Session, mlist: MailingList, names: Iterable[str], now: dt.datetime) -> list[str]:
    """Add words to the vocabulary; returns those that were not in it."""
    known = {t.name for t in vocabulary(session, mlist)}
    added = []
    for name in dict.fromkeys(tag_name(n) for n in names):
        if name not in known:
            session.add(Tag(list_id=mlist.id, name=name, created_at=now))
            added.append(name)
    session.flush()
    return added


def remove_tags(session: Session, mlist: MailingList, names: Iterable[str]) -> list[str]:
    """Remove words from the vocabulary (their topics are no longer filed under them)."""
    wanted = [tag_name(n) for n in names]
    found = list(session.scalars(select(Tag).where(Tag.list_id == mlist.id, Tag.name.in_(wanted))))
    for tag in found:
        session.execute(delete(TopicTag).where(TopicTag.tag_id == tag.id))
        session.execute(delete(TagSubscription).where(TagSubscription.tag_id == tag.id))
        session.delete(tag)
    session.flush()
    return sorted(t.name for t in found)


def tag_named(session: Session, mlist: MailingList, name: str) -> Tag | None:
    try:
        name = tag_name(name)
    except InvalidInput:
        return None
    return session.scalar(select(Tag).where(Tag.list_id == mlist.id, Tag.name == name))


def _first_line(text: str) -> str:
    for line in text.splitlines()[:50]:
        if line.strip():
            return line
    return ""


def named_tags(subject: str, text_body: str, vocabulary_names: Iterable[str]) -> list[str]:
    """The vocabulary's words named as ``[tag]`` in the subject or ``#tag`` on the first body line."""
    vocab = set(vocabulary_names)
    found = [m.lower() for m in _SUBJECT_TAG.findall(subject)]
    found += [m.lower() for m in _HASH_TAG.findall(_first_line(text_body))]
    return [name for name in dict.fromkeys(found) if name in vocab]


def tag_topic(session: Session, topic: Topic, tags: Iterable[Tag]) -> list[str]:
    """File ``topic`` under ``tags``; returns the names it was not filed under yet."""
    tags = list(tags)
    if tags and inspect(topic).pending:
        # Processing writes a new topic at the batch's flush (its id reserved before it,
        # db/ids.py); the rows below point at it, so it goes in first.
        session.flush()
    have = set(session.scalars(select(TopicTag.tag_id).where(TopicTag.topic_id == topic.id)))
    added = []
    for tag in tags:
        if tag.id not in have:
            session.execute(
                insert(TopicTag).values(
                    topic_id=topic.id,
                    tag_id=tag.id,
                    last_post_at=topic.last_post_at,
                    post_count=topic.post_count,
                )
            )
            have.add(tag.id)
            added.append(tag.name)
    if added:
        topic.tagged = True
    return added


def untag_topic(session: Session, topic: Topic, tags: Iterable[Tag]) -> None:
    ids = [t.id for t in tags]
    if ids:
        session.execute(delete(TopicTag).where(TopicTag.topic_id == topic.id, TopicTag.tag_id.in_(ids)))


# A list's vocabulary for the rest of the transaction (an import batch tags many topics).
_VOCABULARY: TxCache[dict[int, frozenset[str]]] = TxCache("mailforum.topics.vocabulary", dict)


def tag_new_post(session: Session, mlist: MailingList, topic: Topic, post: Post) -> list[str]:
    """A topic's first post files it under the tags it names (once: a topic keeps its tags).

    A post naming no word of the vocabulary costs no query (the vocabulary's names are
    remembered for the transaction).
    """
    if post.parent_id is not None:
        return []
    if not _SUBJECT_TAG.search(post.subject) and not _HASH_TAG.search(_first_line(post.text_body)):
        return []
    known = _VOCABULARY.setdefault(session)
    if mlist.id not in known:
        known[mlist.id] = frozenset(session.scalars(select(Tag.name).where(Tag.list_id == mlist.id)))
    names = named_tags(post.subject, post.text_body, known[mlist.id])
    if not names or topic.tagged:
        return []
    vocab = {t.name: t for t in vocabulary(session, mlist)}
    return tag_topic(session, topic, [vocab[n] for n in names if n in vocab])


def touch(session: Session, topic: Topic) -> None:
    """The topic's counters changed: its tag rows follow (threads.sync_tags)."""
    threads.sync_tags(session, topic)


def tags_of(session: Session, topic_ids: Sequence[int]) -> dict[int, list[str]]:
    """Topic id → its tag names, sorted."""
    out: dict[int, list[str]] = defaultdict(list)
    if not topic_ids:
        return out
    for topic_id, name in session.execute(
        select(TopicTag.topic_id, Tag.name)
        .join(Tag, Tag.id == TopicTag.tag_id)
        .where(TopicTag.topic_id.in_(list(topic_ids)))
        .order_by(Tag.name)
    ):
        out[topic_id].append(name)
    return out


# --- members following or muting tags --------------------------------------------------


def set_tag(
    session: Session, member: Member, tag: Tag, kind: SubscriptionKind | None, now: dt.datetime
) -> None:
    """Follow (``watch``) or mute a tag, or (None) go back to the delivery mode."""
    session.execute(
        delete(TagSubscription).where(
            TagSubscription.member_id == member.id, TagSubscription.tag_id == tag.id
        )
    )
    if kind is not None:
        session.execute(
            insert(TagSubscription).values(
                member_id=member.id, tag_id=tag.id, kind=kind.value, created_at=now
            )
        )


def topic_settings(session: Session, member: Member) -> dict[str, list[int]]:
    """The topics a member watches and muted, by number."""
    found: dict[str, list[int]] = {SubscriptionKind.WATCH.value: [], SubscriptionKind.MUTE.value: []}
    for kind, topic_id in session.execute(
        select(TopicSubscription.kind, TopicSubscription.topic_id)
        .where(TopicSubscription.member_id == member.id)
        .order_by(TopicSubscription.topic_id)
    ):
        found.setdefault(kind, []).append(topic_id)
    return found


def tag_settings(session: Session, member: Member) -> dict[str, list[str]]:
    out: dict[str, list[str]] = {SubscriptionKind.WATCH.value: [], SubscriptionKind.MUTE.value: []}
    for kind, name in session.execute(
        select(TagSubscription.kind, Tag.name)
        .join(Tag, Tag.id == TagSubscription.tag_id)
        .where(TagSubscription.member_id == member.id)
        .order_by(Tag.name)
    ):
        out.setdefault(kind, []).append(name)
    return out


# --- moderators' tools -------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Actor:
    """Who acts (an address, ``cli`` or ``api:NAME``) and from where (client IP, ``cli``, ``mail``,
    ``api``); ``client`` the API caller's address, kept in the entry's detail."""

    name: str = "cli"
    origin: str = "cli"
    client: str = ""


def audit(
    session: Session,
    actor: Actor,
    action: str,
    mlist: MailingList | None,
    target: str,
    detail: Mapping[str, object] | None = None,
) -> None:
    audit_log.record(
        session,
        actor=actor.name,
        origin=actor.origin,
        action=action,
        mailing_list=mlist,
        target=target,
        detail={**(detail or {}), "client": actor.client} if actor.client else detail,
    )


def get_topic(session: Session, mlist: MailingList, topic_id: int) -> Topic:
    """The live topic ``topic_id`` of ``mlist`` (following merges), or NotFound."""
    from mailforum.db.queries import resolve_topic

    topic = resolve_topic(session, mlist, topic_id)
    if topic is None or topic.post_count == 0:
        raise NotFound(f"no topic {topic_id} in {mlist.name}")
    return topic


def get_post(session: Session, mlist: MailingList, post_id: int) -> Post:
    post = session.get(Post, post_id)
    if post is None or post.list_id != mlist.id or post.status == PostStatus.PLACEHOLDER.value:
        raise NotFound(f"no post {post_id} in {mlist.name}")
    return post


def set_tags_by_hand(
    session: Session,
    mlist: MailingList,
    topic_id: int,
    names: Sequence[str],
    actor: Actor,
    remove: bool = False,
) -> tuple[Topic, list[str]]:
    topic = get_topic(session, mlist, topic_id)
    vocab = {t.name: t for t in vocabulary(session, mlist)}
    wanted = [tag_name(n) for n in names]
    unknown = [n for n in wanted if n not in vocab]
    if unknown:
        raise InvalidInput(
            f"not in {mlist.name}'s tags: {', '.join(unknown)} (add them with `mailforum lists tags "
            f"{mlist.name} add`)"
        )
    if remove:
        untag_topic(session, topic, [vocab[n] for n in wanted])
        changed = wanted
    else:
        changed = tag_topic(session, topic, [vocab[n] for n in wanted])
    audit(session, actor, "topic.untag" if remove else "topic.tag", mlist, str(topic.id), {"tags": wanted})
    return topic, changed


def mark(
    session: Session, mlist: MailingList, topic_id: int, what: str, actor: Actor, now: dt.datetime
) -> Topic:
    """``lock``, ``unlock``, ``pin`` or ``unpin`` a topic."""
    topic = get_topic(session, mlist, topic_id)
    if what == "lock":
        topic.locked_at = topic.locked_at or now
    elif what == "unlock":
        topic.locked_at = None
    elif what == "pin":
        topic.pinned_at = topic.pinned_at or now
    elif what == "unpin":
        topic.pinned_at = None
    else:
        raise InvalidInput(f"not a topic mark: {what}")
    audit(session, actor, f"topic.{what}", mlist, str(topic.id))
    return topic


def recount(session: Session, topic: Topic) -> None:
    """A topic's counters from its published posts (after posts left or came)."""
    count, first, last = session.execute(
        select(func.count(), func.min(Post.received_at), func.max(Post.received_at)).where(
            Post.topic_id == topic.id, Post.status == PostStatus.PUBLISHED.value
        )
    ).one()
    topic.post_count = count
    if first is not None:
        topic.created_at, topic.last_post_at = min(topic.created_at, first), last
    touch(session, topic)


def _descendants(session: Session, root: Post) -> list[int]:
    """The ids of ``root`` and every post below it (its topic's parent links)."""
    edges: dict[int | None, list[int]] = defaultdict(list)
    for post_id, parent_id in session.execute(
        select(Post.id, Post.parent_id).where(Post.topic_id == root.topic_id)
    ):
        edges[parent_id].append(post_id)
    found, todo = [], [root.id]
    seen: set[int] = set()
    while todo:
        current = todo.pop()
        if current in seen:
            continue
        seen.add(current)
        found.append(current)
        todo.extend(edges.get(current, []))
    return found


def _representative(session: Session, topic: Topic) -> str:
    """A message id that names the topic across a rethread: its oldest stored post's."""
    mid = session.scalar(
        select(Post.message_id)
        .where(Post.topic_id == topic.id, Post.status != PostStatus.PLACEHOLDER.value)
        .order_by(Post.received_at, Post.id)
        .limit(1)
    )
    if mid is None:
        raise InvalidInput(f"topic {topic.id} holds no post")
    return mid


def _copy_tags_and_watchers(session: Session, source: Topic, target: Topic) -> None:
    target.tagged = target.tagged or source.tagged
    for (tag_id,) in session.execute(select(TopicTag.tag_id).where(TopicTag.topic_id == source.id)).all():
        if (
            session.scalar(
                select(TopicTag.id).where(TopicTag.topic_id == target.id, TopicTag.tag_id == tag_id)
            )
            is None
        ):
            session.execute(
                insert(TopicTag).values(
                    topic_id=target.id,
                    tag_id=tag_id,
                    last_post_at=target.last_post_at,
                    post_count=target.post_count,
                )
            )
    have = set(
        session.scalars(select(TopicSubscription.member_id).where(TopicSubscription.topic_id == target.id))
    )
    for member_id, kind, created in session.execute(
        select(TopicSubscription.member_id, TopicSubscription.kind, TopicSubscription.created_at).where(
            TopicSubscription.topic_id == source.id
        )
    ).all():
        if member_id not in have:
            session.execute(
                insert(TopicSubscription).values(
                    member_id=member_id, topic_id=target.id, kind=kind, created_at=created
                )
            )


def split(session: Session, mlist: MailingList, post_id: int, actor: Actor, now: dt.datetime) -> Topic:
    """The post and its replies become a new topic (titled by the post's subject)."""
    threads.lock_list(session, mlist)
    post = get_post(session, mlist, post_id)
    old = threads.live_topic(session, post.topic_id)
    if post.parent_id is None:
        raise InvalidInput(f"post {post.id} starts its topic {old.id}: there is nothing to split")
    moving = _descendants(session, post)
    new = threads.new_topic(session, mlist, post.subject, post.received_at)
    new.manual = True
    session.execute(
        update(Post)
        .where(Post.id.in_(moving))
        .values(topic_id=new.id)
        .execution_options(synchronize_session="fetch")
    )
    post.parent_id = None
    session.flush()
    recount(session, new)
    old.last_post_at = old.created_at
    recount(session, old)
    _copy_tags_and_watchers(session, old, new)
    session.add(
        TopicDecision(
            list_id=mlist.id,
            kind=TopicDecisionKind.SPLIT.value,
            message_id=post.message_id,
            title=post.subject,
            created_at=now,
        )
    )
    audit(session, actor, "topic.split", mlist, str(new.id), {"post": post.id, "from_topic": old.id})
    return new


def merge(
    session: Session, mlist: MailingList, topic_id: int, into_id: int, actor: Actor, now: dt.datetime
) -> Topic:
    """Every post of topic ``topic_id`` goes into ``into_id``; old links follow (``merged_into_id``)."""
    threads.lock_list(session, mlist)
    absorbed = get_topic(session, mlist, topic_id)
    survivor = get_topic(session, mlist, into_id)
    if absorbed.id == survivor.id:
        raise InvalidInput(f"topic {topic_id} is topic {into_id}: nothing to merge")
    decision = TopicDecision(
        list_id=mlist.id,
        kind=TopicDecisionKind.MERGE.value,
        message_id=_representative(session, absorbed),
        into_message_id=_representative(session, survivor),
        created_at=now,
    )
    threads.merge_topics(session, survivor, absorbed)  # moves its posts, watchers and tags
    survivor.manual = survivor.manual or absorbed.manual
    touch(session, survivor)
    session.add(decision)
    audit(session, actor, "topic.merge", mlist, str(survivor.id), {"merged": absorbed.id})
    return survivor


def retitle(
    session: Session, mlist: MailingList, topic_id: int, title: str, actor: Actor, now: dt.datetime
) -> Topic:
    title = " ".join(title.split())[:MAX_TITLE]  # no CR/LF, no runs of blanks
    if not title:
        raise InvalidInput("give the topic a title that is not empty")
    topic = get_topic(session, mlist, topic_id)
    before = topic.subject
    topic.subject, topic.subject_key = title, subject_key(title)
    session.add(
        TopicDecision(
            list_id=mlist.id,
            kind=TopicDecisionKind.RETITLE.value,
            message_id=_representative(session, topic),
            title=title,
            created_at=now,
        )
    )
    audit(session, actor, "topic.retitle", mlist, str(topic.id), {"from": before[:200], "to": title})
    return topic


def move(
    session: Session, mlist: MailingList, topic_id: int, other: MailingList, actor: Actor, now: dt.datetime
) -> Topic:
    """The topic and its posts go to list ``other``; its tags go to the same words of ``other``'s
    vocabulary, its watchers' settings (members of this list) go."""
    if other.id == mlist.id:
        raise InvalidInput(f"topic {topic_id} is in {mlist.name} already")
    threads.lock_list(session, mlist)
    threads.lock_list(session, other)
    topic = get_topic(session, mlist, topic_id)
    ids = list(session.scalars(select(Post.message_id).where(Post.topic_id == topic.id)))
    clash = session.scalar(
        select(Post.message_id).where(Post.list_id == other.id, Post.message_id.in_(ids)).limit(1)
    )
    if clash is not None:
        raise InvalidInput(
            f"{other.name} already holds {clash} (a cross-post): merge there instead of moving"
        )
    names = list(
        session.scalars(
            select(Tag.name).join(TopicTag, TopicTag.tag_id == Tag.id).where(TopicTag.topic_id == topic.id)
        )
    )
    session.execute(delete(TopicTag).where(TopicTag.topic_id == topic.id))
    session.execute(delete(TopicSubscription).where(TopicSubscription.topic_id == topic.id))
    session.execute(
        update(Post)
        .where(Post.topic_id == topic.id)
        .values(list_id=other.id)
        .execution_options(synchronize_session="fetch")
    )
    session.execute(
        update(Topic).where(Topic.merged_into_id == topic.id).values(list_id=other.id)
    )  # absorbed topics' old links follow it
    topic.list_id = other.id
    session.flush()
    targets = [t for t in vocabulary(session, other) if t.name in names]
    tag_topic(session, topic, targets)
    audit(session, actor, "topic.move", mlist, str(topic.id), {"to_list": other.name})
    return topic


def remove_post(
    session: Session, mlist: MailingList, post_id: int, reason: str, actor: Actor, now: dt.datetime
) -> Post:
    """The post leaves the archive, a tombstone in its thread; its copies not sent yet are
    dropped (a moderator removing spam wants no more of it out), those sent stay sent."""
    post = get_post(session, mlist, post_id)
    if post.status == PostStatus.REMOVED.value:
        raise InvalidInput(f"post {post.id} is removed already")
    reason = " ".join(reason.split())[:500]
    post.status = PostStatus.REMOVED.value
    post.hold_reason = f"removed by a moderator: {reason}" if reason else "removed by a moderator"
    dropped = drop_unsent_copies(session, post, now)
    session.flush()
    topic = threads.live_topic(session, post.topic_id)
    recount(session, topic)
    detail = {"topic": topic.id, "reason": reason, "unsent_copies_dropped": dropped}
    audit(session, actor, "post.remove", mlist, str(post.id), detail)
    return post


def drop_unsent_copies(session: Session, post: Post, now: dt.datetime) -> int:
    """Delete the post's copies not sent yet (waiting, retrying after a 4xx, or failed); one a
    delivery worker holds right now is the worker's: that try may still go out, as a sent
    copy stays sent, but no retry (db.outbox.record; RELIABILITY F26). How many."""
    unsent = session.execute(
        delete(OutboxEntry).where(
            OutboxEntry.post_id == post.id,
            OutboxEntry.state != OutboxState.SENT.value,
            or_(OutboxEntry.claimed_until.is_(None), OutboxEntry.claimed_until <= now),
        )
    )
    return int(unsent.rowcount or 0)  # type: ignore[attr-defined]


def is_locked(topic: Topic) -> bool:
    return topic.locked_at is not None


# --- tags chosen on the web's new-topic form -----------------------------------------------

WEB_TAGS_HEADER = "X-Mailforum-Web-Tags"  # written by core/webpost.py; read only for spool protocol "web"


def web_tags(raw: bytes) -> list[str]:
    """The tag names a web post's form chose (``WEB_TAGS_HEADER`` of its raw message).

    Only ever called for a spool entry of protocol ``web``, which nothing but
    ``core.webpost`` writes: the same header in mail from outside is never read, so no
    sender can tag a topic by writing it (RELIABILITY S42).
    """
    from email.parser import BytesHeaderParser
    from email.policy import compat32

    value = BytesHeaderParser(policy=compat32).parsebytes(raw).get(WEB_TAGS_HEADER, "")
    names = []
    for word in str(value).replace(",", " ").split()[:50]:
        try:
            names.append(tag_name(word))
        except InvalidInput:
            continue
    return list(dict.fromkeys(names))


def tag_web_post(session: Session, mlist: MailingList, topic: Topic, post: Post, raw: bytes) -> list[str]:
    """A web post that starts a topic files it under the tags its form chose (words of the
    vocabulary only; others are ignored, as a ``[word]`` outside it is)."""
    if post.parent_id is not None:
        return []
    names = web_tags(raw)
    if not names:
        return []
    vocab = {t.name: t for t in vocabulary(session, mlist)}
    return tag_topic(session, topic, [vocab[n] for n in names if n in vocab])


# --- authors deleting their own posts ------------------------------------------------------

AUTHOR_DELETED = queries.AUTHOR_DELETED  # the hold_reason of an author's deletion (a tombstone)


class TooLate(InvalidInput):
    """The list's window for authors to delete a post has closed (or the list has none)."""


def is_own(post: Post, address: str) -> bool:
    return bool(post.author_address) and post.author_address.lower() == address.strip().lower()


def delete_deadline(mlist: MailingList, received_at: dt.datetime) -> dt.datetime | None:
    """Until when the author of a post received at ``received_at`` may delete it (None: the
    list lets no author delete)."""
    if mlist.author_delete_minutes <= 0:
        return None
    if received_at.tzinfo is None:  # SQLite gives naive UTC
        received_at = received_at.replace(tzinfo=dt.UTC)
    return received_at + dt.timedelta(minutes=mlist.author_delete_minutes)


def may_still_delete(mlist: MailingList, received_at: dt.datetime, now: dt.datetime) -> bool:
    """Whether the list's window for authors to delete a post received then is open now."""
    deadline = delete_deadline(mlist, received_at)
    return deadline is not None and now < deadline


def delete_own_post(
    session: Session, mlist: MailingList, post_id: int, actor: Actor, now: dt.datetime
) -> Post:
    """The author (``actor.name``) deletes their own published post while the list's window
    is open: a tombstone saying so, its text, HTML, attachments list and raw copy gone; its
    copies not sent yet are dropped, those sent stay sent. NotFound unless it is theirs and
    shown; TooLate after the window (or when the list has none), before anything changes."""
    post = get_post(session, mlist, post_id)
    if not is_own(post, actor.name) or post.status != PostStatus.PUBLISHED.value:
        raise NotFound(f"no post {post_id} of yours in {mlist.name}")
    if not may_still_delete(mlist, post.received_at, now):
        minutes = mlist.author_delete_minutes
        raise TooLate(
            f"{mlist.name} lets authors delete a post only in the first {minutes} minutes"
            if minutes
            else f"{mlist.name} does not let authors delete their posts"
        )
    post.status = PostStatus.REMOVED.value
    post.hold_reason = AUTHOR_DELETED
    post.text_body, post.html_body, post.attachments, post.raw = "", None, [], None
    dropped = drop_unsent_copies(session, post, now)
    session.flush()
    topic = threads.live_topic(session, post.topic_id)
    recount(session, topic)
    detail = {"topic": topic.id, "by": "author", "unsent_copies_dropped": dropped}
    audit(session, actor, "post.delete", mlist, str(post.id), detail)
    return post


def shown_posts(session: Session, topic: Topic, limit: int) -> tuple[list[Post], int]:
    """The topic's published posts in thread order (at most ``limit``), and how many more there are."""
    ordered, _, _ = queries.thread_order(session, topic)
    ids = [node.id for node, _ in ordered if node.status == PostStatus.PUBLISHED.value]
    found = {p.id: p for p in session.scalars(select(Post).where(Post.id.in_(ids[:limit])))} if ids else {}
    return [found[i] for i in ids[:limit]], max(0, len(ids) - limit)
