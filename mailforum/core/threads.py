"""Threading: which topic a message belongs in, and under which post.

Order of evidence (DESIGN.md), strongest first — the first that names something we
hold decides, and the weaker ones are not consulted:

1. a verified reply token (the caller passes the post it names);
2. ``In-Reply-To``, then ``References`` last to first (the root of a truncated list is
   kept too); every id is looked up **in this list only**, so a reply pointing into
   another or a private list is never attached there (RELIABILITY B28, S21);
3. Outlook's ``Thread-Index``: its first 22 bytes name the conversation, and each
   reply appends 5 bytes, so the parent carries our index minus the last block;
4. the normalised subject (``mail.headers.subject_info``), only for messages that look
   like replies and name no ids at all, only within this list and ``window``, and
   only with corroboration (``_by_subject``): a quote of a whole post, or a
   participant in common and a quote or a fresh topic, or a reply addressed (To/Cc)
   to someone who wrote in a topic active within a day, or (specific subjects) the
   only such topic, active within 2 hours — within a day for a reply quoting nothing.
   ``Thread-Topic`` and "(was: Old)" give more keys.

An import batch prefetches the ids, Outlook conversations and subject keys it names
(``prefetch``), so most messages need no look-up of their own, and its posts reach the
database together (``attach(flush=False)``): new topics, placeholders and imported
posts have their ids before their INSERT (``db.ids``), so linking them needs no flush.

A reply that arrives before its parent leaves placeholders for the ids it names
(chained in References order); when the parent arrives it takes its placeholder's
place. A reply naming only absent messages starts a topic of its own, unless it quotes
within its quote the whole of a post of a same-subject topic (its absent parent quoted
that post): then the placeholders hang under that post. A message whose ids lie in
two topics merges them: the older topic survives and the absorbed one keeps
``merged_into_id`` so old links work (public-inbox does the same). An original that
arrives after header-less replies to it (an import out of order) adopts the topic
they started.

The same message delivered twice is stored once (same id, same fingerprint); the
same id with other content is kept under a derived id, so a squatter can never
swallow a genuine post (RELIABILITY S20).
"""

from __future__ import annotations

import contextlib
import datetime as dt
import functools
import re
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import TYPE_CHECKING, TypeVar, TypeVarTuple

from sqlalchemy import Row, Select, bindparam, delete, func, inspect, select, text, update
from sqlalchemy.orm import Session

from mailforum.batching import chunks
from mailforum.db import ids
from mailforum.db.models import MailingList, Post, PostStatus, Topic, TopicSubscription, TopicTag
from mailforum.db.txcache import TxCache
from mailforum.mail.headers import (
    THREAD_INDEX_CHILD,
    SubjectInfo,
    ThreadIndex,
    ancestry,
    is_generic,
    subject_info,
    subject_key,
    thread_index,
)

if TYPE_CHECKING:  # the parser (lxml, inscriptis: ~20 ms) is not loaded by the topic commands
    from mailforum.mail.parse import ParsedMessage

__all__ = [
    "Placement",
    "attach",
    "hold_list_locks",
    "link_parent",
    "live_topic",
    "merge_topics",
    "new_topic",
    "place",
    "prefetch",
    "subject_key",
    "subject_keys",
]

MAX_ANCESTRY_WALK = 10_000  # cycle checks follow at most this many parents
SUBJECT_CANDIDATES = 20  # topics considered by the subject fallback
SUBJECT_RECENT = dt.timedelta(days=7)  # a header-less reply quotes a post at most this old
SUBJECT_FRESH = dt.timedelta(hours=3)  # ... or a participant in common, in a topic this fresh
SUBJECT_ADDRESSED = dt.timedelta(hours=24)  # ... or a reply addressed to one who wrote there, this fresh
SUBJECT_HOT = dt.timedelta(hours=2)  # ... or, for the only topic with a specific subject, this fresh
SUBJECT_UNQUOTED = dt.timedelta(hours=24)  # ... this fresh, for a reply that quotes nothing
CLOCK_SKEW = dt.timedelta(hours=2)  # ... and not written (by its Date) before it, beyond this
ADVISORY_LOCK_SPACE = 0x6D66_0000  # "mf": per-list threading lock on PostgreSQL


@dataclass(frozen=True, slots=True)
class Placement:
    """Where a message goes. ``existing`` is a placeholder to fill; ``duplicate`` means: store nothing.

    ``evidence`` names what decided (``token``, ``headers``, ``thread-index``, ``subject:RULE``
    naming the subject rule, ``original`` or ``new``; the spool's outcome shows it); ``title``
    is the new title the post gives its topic, if any; ``adopt`` are posts that turn out to be
    replies to this one.
    """

    topic: Topic
    parent: Post | None
    message_id: str
    existing: Post | None = None
    duplicate: bool = False
    evidence: str = "new"
    title: str | None = None
    thread: ThreadIndex | None = None
    adopt: tuple[Post, ...] = ()


_FIND_POSTS = select(Post).where(
    Post.list_id == bindparam("list_id"), Post.message_id.in_(bindparam("ids", expanding=True))
)


# What an import batch (``prefetch``) remembers for the rest of its transaction.
_CACHE = "mailforum.threads.posts"
_POSTS: TxCache[dict[tuple[int, str], Post | None]] = TxCache(_CACHE, dict)  # None: known absent
_TOPICS: TxCache[list[Topic]] = TxCache(_CACHE + ".topics", list)  # the prefetched posts' topics
_HELD: TxCache[set[Topic]] = TxCache(_CACHE + ".held", set)  # see _hold
_NEW_TOPICS: TxCache[dict[int, Topic]] = TxCache(_CACHE + ".new", dict)  # see _topic
_CONVERSATIONS: TxCache[dict[tuple[int, str], list[Post]]] = TxCache(_CACHE + ".conv", dict)
_SUBJECT_KEYS: TxCache[dict[tuple[int, str], list[Topic]]] = TxCache(_CACHE + ".keys", dict)
_LOCKED: TxCache[set[int]] = TxCache(_CACHE + ".locked", set)  # lists whose advisory lock is held
_PREFETCH_BATCH = 500  # keys a prefetch looks up per statement
# A message's subject is read several times as it is threaded (its keys, its topic's, the
# import batch's prefetch): the answer, immutable, is kept for the subjects seen last.
_subject_info = functools.lru_cache(maxsize=4096)(subject_info)
T = TypeVar("T")
Columns = TypeVarTuple("Columns")


def prefetch(
    session: Session,
    list_id: int,
    message_ids: list[str],
    conversations: Iterable[str] = (),
    subject_keys: Iterable[str] = (),
) -> None:
    """Look up many ids (and Outlook conversations) at once, for this transaction (an import batch).

    From then on ``find_posts`` answers from memory for the ids it knows, and the
    conversation look-up for the conversations named; every post this module stores
    is remembered too. Call ``forget`` after a rollback.
    """
    _group(
        _SUBJECT_KEYS.setdefault(session),
        list_id,
        [k for k in subject_keys if k],
        lambda chunk: session.scalars(
            select(Topic).where(
                Topic.list_id == list_id, Topic.subject_key.in_(chunk), Topic.merged_into_id.is_(None)
            )
        ),
        lambda topic: topic.subject_key,
    )
    _group(
        _CONVERSATIONS.setdefault(session),
        list_id,
        conversations,
        lambda chunk: session.scalars(
            select(Post).where(
                Post.list_id == list_id,
                Post.conversation.in_(chunk),
                Post.status != PostStatus.PLACEHOLDER.value,
            )
        ),
        lambda post: post.conversation or "",
    )
    cache = _POSTS.setdefault(session)
    for chunk in chunks(dict.fromkeys(m for m in message_ids if (list_id, m) not in cache), _PREFETCH_BATCH):
        found = {p.message_id: p for p in session.scalars(_FIND_POSTS, {"list_id": list_id, "ids": chunk})}
        for mid in chunk:
            cache[(list_id, mid)] = found.get(mid)
        topic_ids = {p.topic_id for p in found.values()}
        if topic_ids:  # and their topics, held here so live_topic finds them in the identity map
            _TOPICS.setdefault(session).extend(session.scalars(select(Topic).where(Topic.id.in_(topic_ids))))


def _group(
    into: dict[tuple[int, str], list[T]],
    list_id: int,
    keys: Iterable[str],
    rows: Callable[[list[str]], Iterable[T]],
    key_of: Callable[[T], str],
) -> None:
    """Remember the rows of each key not known yet (an empty list for none), in batches."""
    for chunk in chunks(dict.fromkeys(k for k in keys if (list_id, k) not in into), _PREFETCH_BATCH):
        for key in chunk:
            into[(list_id, key)] = []
        for row in rows(chunk):
            into[(list_id, key_of(row))].append(row)


def forget(session: Session) -> None:
    for cache in (_POSTS, _TOPICS, _HELD, _NEW_TOPICS, _CONVERSATIONS, _SUBJECT_KEYS, _LOCKED):
        cache.clear(session)


def _keyed(session: Session, topic: Topic) -> None:
    """Remember a topic under its subject key, when the batch's cache knows that key."""
    by_key = _SUBJECT_KEYS.get(session)
    if by_key is not None:
        known = by_key.get((topic.list_id, topic.subject_key))
        if known is not None and topic not in known:
            known.append(topic)


def _topics_by_key(session: Session, list_id: int, keys: list[str]) -> list[Topic] | None:
    """The live topics with these subject keys, from the batch's cache; None when it does not know."""
    by_key = _SUBJECT_KEYS.get(session)
    if by_key is None or any((list_id, k) not in by_key for k in keys):
        return None
    return [t for k in keys for t in by_key[(list_id, k)] if t.merged_into_id is None and t.subject_key == k]


def remember(session: Session, post: Post) -> None:
    cache = _POSTS.get(session)
    if cache is not None:
        cache[(post.list_id, post.message_id)] = post
    by_conversation = _CONVERSATIONS.get(session)
    if by_conversation is not None and post.conversation and post.status != PostStatus.PLACEHOLDER.value:
        known = by_conversation.get((post.list_id, post.conversation))
        if known is not None and post not in known:
            known.append(post)


def find_posts(session: Session, list_id: int, message_ids: list[str]) -> dict[str, Post]:
    if not message_ids:
        return {}
    cache = _POSTS.get(session)
    result: dict[str, Post] = {}
    missing = message_ids
    if cache is not None:
        missing = []
        for mid in message_ids:
            key = (list_id, mid)
            if key not in cache:
                missing.append(mid)
            elif (post := cache[key]) is not None:
                result[mid] = post
        if not missing:
            return result
    for post in session.scalars(_FIND_POSTS, {"list_id": list_id, "ids": missing}):
        result[post.message_id] = post
    if cache is not None:
        for mid in missing:
            cache[(list_id, mid)] = result.get(mid)
    return result


def new_topic(session: Session, mlist: MailingList, subject: str, now: dt.datetime) -> Topic:
    """A new, empty topic of ``mlist`` with this subject; it has its id (db.ids), and reaches
    the database at the next flush."""
    topic = Topic(
        id=ids.reserve(session, Topic),
        list_id=mlist.id,
        subject=subject,
        subject_key=_subject_info(subject).key,
        created_at=now,
        last_post_at=now,
        post_count=0,
        # Their defaults, given: a column with a server default left unset makes the unit of
        # work insert each topic alone, with RETURNING, instead of a batch's in one statement.
        manual=False,
        tagged=False,
    )
    session.add(topic)
    _hold(session, topic)
    _NEW_TOPICS.setdefault(session)[topic.id] = topic
    _keyed(session, topic)
    return topic


def _hold(session: Session, topic: Topic) -> None:
    """Keep a strong reference for the transaction: the identity map is weak, and a topic
    looked up again after garbage collection would cost a query (and an autoflush)."""
    _HELD.setdefault(session).add(topic)


def _topic(session: Session, topic_id: int) -> Topic | None:
    """The topic with this id. One made by this transaction and not flushed yet is not in the
    identity map: ``session.get`` would query for it, flushing the whole batch first."""
    made = _NEW_TOPICS.get(session)
    topic = made.get(topic_id) if made is not None else None
    if topic is not None and inspect(topic).pending:
        return topic
    return session.get(Topic, topic_id)


def live_topic(session: Session, topic_id: int) -> Topic:
    """The topic, following merges to the one that absorbed it."""
    topic = _topic(session, topic_id)
    assert topic is not None
    for _ in range(MAX_ANCESTRY_WALK):
        if topic.merged_into_id is None:
            break
        nxt = _topic(session, topic.merged_into_id)
        assert nxt is not None
        topic = nxt
    _hold(session, topic)
    return topic


def merge_topics(session: Session, survivor: Topic, absorbed: Topic) -> None:
    """Move every post of ``absorbed`` into ``survivor``; old links follow ``merged_into_id``."""
    if survivor.id == absorbed.id:
        return
    session.execute(
        update(Post)
        .where(Post.topic_id == absorbed.id)
        .values(topic_id=survivor.id)
        .execution_options(synchronize_session="fetch")
    )
    watched = set(
        session.scalars(select(TopicSubscription.member_id).where(TopicSubscription.topic_id == survivor.id))
    )
    session.execute(
        update(TopicSubscription)
        .where(TopicSubscription.topic_id == absorbed.id, TopicSubscription.member_id.not_in(watched))
        .values(topic_id=survivor.id)
        .execution_options(synchronize_session="fetch")
    )
    if absorbed.tagged:  # the survivor is filed under the absorbed topic's tags too (core/topics.py)
        tagged = set(session.scalars(select(TopicTag.tag_id).where(TopicTag.topic_id == survivor.id)))
        session.execute(
            update(TopicTag)
            .where(TopicTag.topic_id == absorbed.id, TopicTag.tag_id.not_in(tagged))
            .values(topic_id=survivor.id)
            .execution_options(synchronize_session=False)
        )
        session.execute(delete(TopicTag).where(TopicTag.topic_id == absorbed.id))
        survivor.tagged = True
    absorbed.merged_into_id = survivor.id
    absorbed.post_count = 0
    survivor.created_at = min(survivor.created_at, absorbed.created_at)
    refresh_counts(session, survivor)
    if not survivor.subject and absorbed.subject:
        survivor.subject, survivor.subject_key = absorbed.subject, absorbed.subject_key


def count_post(session: Session, topic: Topic, received_at: dt.datetime) -> None:
    """A post of the topic was published: its counters follow (the threading module keeps them)."""
    topic.post_count += 1
    topic.last_post_at = max(topic.last_post_at, received_at)
    sync_tags(session, topic)


def sync_tags(session: Session, topic: Topic) -> None:
    """The topic's counters changed: its tag rows copy them (one indexed UPDATE, no autoflush:
    an import batch's unflushed posts stay unflushed). Nothing for a topic never tagged."""
    if not topic.tagged:
        return
    with session.no_autoflush:
        session.execute(
            update(TopicTag)
            .where(TopicTag.topic_id == topic.id)
            .values(last_post_at=topic.last_post_at, post_count=topic.post_count)
            .execution_options(synchronize_session=False)
        )


def name_topic(topic: Topic, subject: str) -> None:
    """A topic without a subject (a placeholder's) takes that of its first stored post."""
    if not topic.subject:
        topic.subject = subject
        topic.subject_key = _subject_info(subject).key


def refresh_counts(session: Session, topic: Topic) -> None:
    count, last = session.execute(
        select(func.count(), func.max(Post.received_at)).where(
            Post.topic_id == topic.id, Post.status == PostStatus.PUBLISHED.value
        )
    ).one()
    topic.post_count = count
    if last is not None:
        topic.last_post_at = max(topic.last_post_at, last)
    sync_tags(session, topic)


def lock_list(session: Session, mlist: MailingList) -> None:
    """Serialise threading per list across processes (PostgreSQL; SQLite has one writer anyway).

    Two nodes threading replies to the same unseen parent would otherwise both create
    its placeholder, or merge the same topics in opposite directions.
    """
    if session.get_bind().dialect.name != "postgresql":
        return
    # An import batch (no savepoints, see ``prefetch``) and the processor's fast path
    # (``hold_list_locks``) take the lock once; elsewhere a savepoint rolled back would
    # release it, so each message takes it again.
    batch = _POSTS.get(session) is not None or _LOCKED.get(session) is not None
    if batch and mlist.id in _LOCKED.setdefault(session):
        return
    session.execute(text("SELECT pg_advisory_xact_lock(:key)"), {"key": ADVISORY_LOCK_SPACE + mlist.id})
    if batch:
        _LOCKED.setdefault(session).add(mlist.id)


def hold_list_locks(session: Session) -> None:
    """This transaction stores several messages without a savepoint each: a list's
    threading lock (``lock_list``), once taken, is kept until the transaction ends."""
    _LOCKED.setdefault(session)


def _is_ancestor(session: Session, candidate: Post, node: Post) -> bool:
    """True when ``node`` is ``candidate`` or one of its ancestors (so linking would make a cycle)."""
    current: Post | None = candidate
    for _ in range(MAX_ANCESTRY_WALK):
        if current is None:
            return False
        if current.id == node.id:
            return True
        current = session.get(Post, current.parent_id) if current.parent_id is not None else None
    return True


def _topic_root(session: Session, topic: Topic) -> Post | None:
    stmt = (
        select(Post)
        .where(Post.topic_id == topic.id, Post.status != PostStatus.PLACEHOLDER.value)
        .order_by(Post.received_at, Post.id)
        .limit(1)
    )
    rows, changed = _beside_unflushed(session, stmt, [topic.id])
    stored: Post | None = rows[0][0] if rows else None
    if changed is None:
        return stored
    # An import batch: the database's first and this transaction's posts.
    posts = [*changed, stored] if stored is not None else changed
    return min(posts, key=lambda p: (p.received_at, p.id), default=None)


def _conversation(session: Session, mlist: MailingList, thread: ThreadIndex) -> list[Post]:
    """The posts of this list in the Outlook conversation (one indexed query, or the batch's cache)."""
    by_conversation = _CONVERSATIONS.get(session)
    if by_conversation is not None:
        known = by_conversation.get((mlist.id, thread.conversation))
        if known is not None:
            return list(known)
    return list(
        session.scalars(
            _BY_CONVERSATION,
            {
                "list_id": mlist.id,
                "conversation": thread.conversation,
                "placeholder": PostStatus.PLACEHOLDER.value,
            },
        )
    )


_BY_CONVERSATION = select(Post).where(
    Post.list_id == bindparam("list_id"),
    Post.conversation == bindparam("conversation"),
    Post.status != bindparam("placeholder"),
)


def _by_conversation(
    session: Session, thread: ThreadIndex, posts: list[Post]
) -> tuple[Topic, Post | None] | None:
    """The topic holding this Outlook conversation, and the most specific ancestor we hold."""
    if not posts:
        return None
    ancestors = [
        p
        for p in posts
        if p.thread_index
        and len(p.thread_index) < len(thread.index)
        and thread.index.startswith(p.thread_index)
    ]
    if ancestors:
        parent = max(ancestors, key=lambda p: len(p.thread_index or ""))
    else:
        parent = min(posts, key=lambda p: (len(p.thread_index or ""), p.received_at, p.id))
    return live_topic(session, parent.topic_id), parent


def _replies_by_index(thread: ThreadIndex, posts: list[Post]) -> tuple[Post, ...]:
    """Posts whose Thread-Index names this message as their direct parent."""
    width = len(thread.index) + 2 * THREAD_INDEX_CHILD
    return tuple(
        p
        for p in posts
        if len(p.thread_index or "") == width and (p.thread_index or "").startswith(thread.index)
    )


def _participants(session: Session, topic_ids: list[int]) -> dict[int, set[str]]:
    stmt = (
        select(Post.topic_id, Post.author_address)
        .where(Post.topic_id.in_(topic_ids), Post.status != PostStatus.PLACEHOLDER.value)
        .distinct()
    )
    found, changed = _beside_unflushed(session, stmt, topic_ids)
    rows = [(a, b) for a, b in found] + [(p.topic_id, p.author_address) for p in changed or ()]
    people: dict[int, set[str]] = {}
    for topic_id, address in rows:
        people.setdefault(topic_id, set()).add(address)
    return people


def subject_keys(parsed: ParsedMessage) -> list[str]:
    """The topic subjects a message may name: its own, "(was: …)" and Thread-Topic."""
    return _subject_keys(parsed, _subject_info(parsed.subject))


def _subject_keys(parsed: ParsedMessage, info: SubjectInfo) -> list[str]:
    keys = [info.key, info.was_key, _subject_info(parsed.header("thread-topic")).key]
    return list(dict.fromkeys(k for k in keys if k))


def _subject_candidates(
    session: Session, mlist: MailingList, keys: list[str], at: dt.datetime, window: dt.timedelta
) -> list[Topic]:
    """The live topics of this list with these subject keys active within ``window``, latest first."""
    if not keys:
        return []
    cached = _topics_by_key(session, mlist.id, keys)
    if cached is not None:
        recent = [t for t in cached if t.last_post_at >= at - window and t.created_at <= at + window]
        return sorted(recent, key=lambda t: (t.last_post_at, t.id), reverse=True)[:SUBJECT_CANDIDATES]
    return list(
        session.scalars(
            select(Topic)
            .where(
                Topic.list_id == mlist.id,
                Topic.subject_key.in_(keys),
                Topic.merged_into_id.is_(None),
                Topic.last_post_at >= at - window,
                Topic.created_at <= at + window,
            )
            .order_by(Topic.last_post_at.desc(), Topic.id.desc())
            .limit(SUBJECT_CANDIDATES)
        )
    )


def _by_nested_quote(
    session: Session,
    mlist: MailingList,
    parsed: ParsedMessage,
    info: SubjectInfo,
    at: dt.datetime,
    window: dt.timedelta,
) -> Post | None:
    """For a reply naming only absent messages: the post of a same-subject topic it quotes
    whole inside its quote ("> >"), that is, the post its absent parent quoted.

    Its parent never arrived, but the parent's own quote says where it answered. A
    post quoted at the first level is not enough: the absent parent may be another
    copy or thread of it (SpamAssassin's easy ham, measured).
    """
    if _NESTED.search(parsed.text_body) is None:
        return None  # no quote within a quote: nothing to look up
    candidates = _subject_candidates(session, mlist, _subject_keys(parsed, info), at, window)
    if not candidates:
        return None
    return _quoted_post(session, parsed, candidates, at, nested=True)


def _by_subject(
    session: Session,
    mlist: MailingList,
    parsed: ParsedMessage,
    info: SubjectInfo,
    at: dt.datetime,
    window: dt.timedelta,
) -> tuple[Topic, Post | None, str] | None:
    """A recent topic of this list with the subject this reply names, the post it quotes, and the rule.

    The subject alone never decides (strangers share subjects, and real list archives
    show replies by subject are wrong more often than not). It needs corroboration:
    a quote of a whole post (its first long lines, up to three, written at most
    ``SUBJECT_RECENT`` before the reply: Outlook's and webmail's reply buttons; a post
    of one or two long lines only within ``SUBJECT_FRESH``); or a participant in common
    (the reply's author or recipients wrote in the topic) and either a quote of part of
    a post or a topic active in the last ``SUBJECT_FRESH``; or a reply addressed (To/Cc,
    not only its author) to someone who wrote in a topic active in the last
    ``SUBJECT_ADDRESSED`` (a web form's reply to the post's author). A reply
    whose author alone wrote there, a day later, is not enough: list regulars write in
    many topics (SpamAssassin's easy ham, measured). Alone, a specific subject joins
    the only topic with it, active within ``SUBJECT_HOT``, or ``SUBJECT_UNQUOTED`` for a
    reply that quotes nothing (a web form's): a reply quoting words we do not hold
    answers a post we lack, maybe of another thread, and waits for better evidence.
    """
    keys = _subject_keys(parsed, info)
    candidates = _subject_candidates(session, mlist, keys, at, window)
    if not candidates:
        return None
    quoted = _quoted_post(session, parsed, candidates, at)
    if quoted is not None:  # it quotes a whole post (webmail, Outlook): that post is the parent
        return live_topic(session, quoted.topic_id), quoted, "quoted-reply"
    people = set(parsed.recipients) | {parsed.from_address}
    people.discard("")
    by_topic = _participants(session, [t.id for t in candidates])
    shared = [t for t in candidates if by_topic.get(t.id, set()) & people]
    fresh = [t for t in candidates if -CLOCK_SKEW <= at - t.last_post_at <= SUBJECT_FRESH]
    # A quote of part of a post is not evidence enough, even with a participant in common:
    # one quoted line can be anybody's, and in real list archives (SpamAssassin's ham set)
    # notmuch keeps such replies apart. Such a reply still joins a fresh topic by its
    # participant below.
    both = [t for t in shared if t in fresh]  # a participant in common, in a fresh topic
    if both:
        return both[0], None, "participant"  # the most recent first
    # or addressed (To/Cc) to someone who wrote in the topic, within a day of its last post
    addressed = set(parsed.recipients) - {parsed.from_address, ""}
    within_day = [t for t in candidates if -CLOCK_SKEW <= at - t.last_post_at <= SUBJECT_ADDRESSED]
    both = [t for t in within_day if by_topic.get(t.id, set()) & addressed]
    if both:
        return both[0], None, "addressed-reply"
    # Alone, a specific subject needs a single candidate, active within ``SUBJECT_HOT``
    # (``SUBJECT_UNQUOTED`` for a reply that quotes nothing: it answers no post we lack).
    limit = SUBJECT_UNQUOTED if not _quotes(parsed.text_body) else SUBJECT_HOT
    hot = [t for t in candidates if -CLOCK_SKEW <= at - t.last_post_at <= limit]
    specific = not all(is_generic(k) for k in keys)
    if specific and len(hot) == 1 and len(candidates) == 1:
        return hot[0], None, "unquoted-reply" if limit == SUBJECT_UNQUOTED else "only-topic"
    return None


QUOTE_NEEDLE = 60  # characters of a post's line looked for in a reply
QUOTE_MIN = 25  # shorter lines ("Thanks!", "Hi all,") say nothing
QUOTE_POSTS = 300  # posts of the candidate topics searched, most recent first
_QUOTE_MARKS = re.compile(r"^[\s>|]+")
_WORDS_ONLY = re.compile(r"\W+")
_NESTED = re.compile(r"^[ \t]*[>|][ \t]*[>|]", re.M)  # a line quoted within a quote


# A line that starts a quote: ">" or "|" quoting, an attribution ("On … wrote:", "Ann
# schrieb:", "--- Ann wrote ---"), Outlook's "Original Message" line, its rule of
# underscores, or its "From:" line followed by "Sent:".
_QUOTE_LINE = re.compile(
    r"^[ \t]*[>|]|^[ \t]*-+ ?original message ?-+[ \t]*$|^_{20,}[ \t]*$"
    r"|^.{0,200}\b(wrote|writes|schrieb|a écrit|escribió|ha scritto|schreef)\b.{0,80}[:-][ \t]*$"
    r"|^(from|von|de|da|van):[^\n]{0,300}\n[ \t]*(sent|gesendet|envoy\w*|enviado|inviato|verzonden|date):",
    re.I | re.M,
)


def _quotes(text: str) -> bool:
    """The text quotes something (a reply that quotes nothing, a web form's, answers no post we lack)."""
    return _QUOTE_LINE.search(text[:100_000]) is not None


def _normal(text: str) -> str:
    return _WORDS_ONLY.sub(" ", text).strip().casefold()


def _needles(text: str) -> list[str]:
    """Up to three long lines a post wrote itself (not its quotes, not its signature)."""
    found: list[str] = []
    for line in text.splitlines()[:200]:
        if line.startswith(">"):
            continue
        if line.rstrip() == "--":
            break
        normal = _normal(line)
        if len(normal) >= QUOTE_MIN:
            found.append(normal[:QUOTE_NEEDLE])
            if len(found) == 3:
                break
    return found


def _answers_in_time(quoted: dt.datetime, reply: dt.datetime) -> bool:
    """A reply is written after the post it quotes (give or take clock skew), and soon after."""
    return -CLOCK_SKEW <= reply - quoted <= SUBJECT_RECENT


def _quoted_post(
    session: Session,
    parsed: ParsedMessage,
    candidates: list[Topic],
    at: dt.datetime,
    nested: bool = False,
) -> Post | None:
    """The post of these topics whose own words this reply quotes whole (any quoting style).

    Whole means all of the post's first three long lines (a post with only one or two,
    if written within ``SUBJECT_FRESH``). ``nested``: only words quoted within a quote
    ("> >").
    """
    lines = parsed.text_body.splitlines()[:2000]
    if nested:
        lines = [line for line in lines if _NESTED.match(line)]
    haystack = " ".join(_normal(_QUOTE_MARKS.sub("", line)) for line in lines)
    if len(haystack) < QUOTE_MIN:
        return None
    topic_ids = [t.id for t in candidates]
    stmt = select(
        Post.id,
        Post.message_id,
        Post.text_body,
        func.coalesce(Post.date, Post.received_at),
        Post.received_at,
    ).where(Post.topic_id.in_(topic_ids), Post.status != PostStatus.PLACEHOLDER.value)
    stmt = stmt.order_by(Post.received_at.desc(), Post.id.desc()).limit(QUOTE_POSTS)
    stored, changed = _beside_unflushed(session, stmt, topic_ids)
    rows: list[tuple[int, str, str, dt.datetime, dt.datetime]] = [(a, b, c, d, e) for a, b, c, d, e in stored]
    mine = {p.id: p for p in changed or ()}
    if changed is not None:  # an import batch: this transaction's posts too, in the same order
        rows += [
            (p.id, p.message_id, p.text_body, p.date if p.date is not None else p.received_at, p.received_at)
            for p in changed
        ]
        rows = sorted(rows, key=lambda row: (row[4], row[0]), reverse=True)[:QUOTE_POSTS]
    reply = parsed.date or at
    for post_id, message_id, body, written, _ in rows:
        if message_id == parsed.message_id or not _answers_in_time(written, reply):
            continue
        found = [n in haystack for n in _needles(body)]
        short = reply - written <= SUBJECT_FRESH  # a post of one or two lines, quoted whole, soon
        if found and all(found) and (len(found) >= 3 or short):
            if post_id in mine:
                return mine[post_id]
            # In an import batch a row of the database, unchanged here: no flush for it.
            with session.no_autoflush if changed is not None else contextlib.nullcontext():
                return session.get(Post, post_id)
    return None


def _unflushed(session: Session, topic_ids: list[int]) -> tuple[list[Post], list[int]] | None:
    """In an import batch (``prefetch``): the published or held posts of these topics that
    this transaction added or changed and has not flushed, and the ids of those it changed.

    A query may then leave the database out of date: it skips the changed ids' rows and
    adds these posts, instead of flushing the batch (a flush per header-less reply was
    most of an import's flushes). None elsewhere, and when a post has no id yet: then the
    query flushes first, as every ORM query does.
    """
    if _POSTS.get(session) is None or session.deleted:
        return None
    added = [o for o in session.new if isinstance(o, Post)]
    if any(p.id is None for p in added):
        return None
    changed = [o for o in session.dirty if isinstance(o, Post)]
    wanted = set(topic_ids)
    posts = [
        p for p in (*added, *changed) if p.topic_id in wanted and p.status != PostStatus.PLACEHOLDER.value
    ]
    return posts, [p.id for p in changed]


def _beside_unflushed(
    session: Session, stmt: Select[*Columns], topic_ids: list[int]
) -> tuple[list[Row[*Columns]], list[Post] | None]:
    """``stmt``'s rows (posts of ``topic_ids``) without flushing an import batch: there the
    rows of posts this transaction changed are left out and those posts, with the ones it
    added, are returned for the caller to read beside the rows (None outside a batch,
    where the query runs as any other, flushing first)."""
    unflushed = _unflushed(session, topic_ids)
    if unflushed is None:
        return list(session.execute(stmt)), None
    changed, modified = unflushed
    if modified:
        stmt = stmt.where(Post.id.not_in(modified))
    with session.no_autoflush:
        return list(session.execute(stmt)), changed


def _orphan_topic(
    session: Session,
    mlist: MailingList,
    parsed: ParsedMessage,
    info: SubjectInfo,
    at: dt.datetime,
    window: dt.timedelta,
) -> tuple[Topic, tuple[Post, ...]] | None:
    """A topic started by header-less replies to this very message, which arrived first.

    Only for a message that is not itself a reply, with a specific subject, when the
    topic's replies came no earlier than this message was written.
    """
    if info.is_reply or is_generic(info.key):
        return None
    cached = _topics_by_key(session, mlist.id, [info.key])
    if cached is not None:
        near = [t for t in cached if at - window <= t.created_at <= at + window]
        candidates = sorted(near, key=lambda t: (t.created_at, t.id))[:SUBJECT_CANDIDATES]
    else:
        candidates = list(
            session.scalars(
                select(Topic)
                .where(
                    Topic.list_id == mlist.id,
                    Topic.subject_key == info.key,
                    Topic.merged_into_id.is_(None),
                    Topic.created_at >= at - window,
                    Topic.created_at <= at + window,
                )
                .order_by(Topic.created_at, Topic.id)
                .limit(SUBJECT_CANDIDATES)
            )
        )
    written = parsed.date or at
    for topic in candidates:
        if not _subject_info(topic.subject).is_reply:
            continue  # started by an original: not waiting for one
        posts = list(session.scalars(select(Post).where(Post.topic_id == topic.id)))
        if any(p.status == PostStatus.PLACEHOLDER.value for p in posts):
            continue  # its replies named their parents; the parent would have matched by id
        if any((p.date or p.received_at) < written for p in posts):
            continue
        roots = tuple(p for p in posts if p.parent_id is None)
        return topic, roots
    return None


def place(
    session: Session,
    mlist: MailingList,
    parsed: ParsedMessage,
    now: dt.datetime,
    window: dt.timedelta,
    reply_to: Post | None = None,
) -> Placement:
    """Decide topic and parent for ``parsed`` in ``mlist``, creating placeholders as needed.

    ``now`` is the message's arrival time (for an import, its Date); ``window`` bounds
    the subject fallback. Call ``attach`` once the post is stored.
    """
    return _place(session, mlist, parsed, now, window, reply_to)


def _place(
    session: Session,
    mlist: MailingList,
    parsed: ParsedMessage,
    now: dt.datetime,
    window: dt.timedelta,
    reply_to: Post | None,
) -> Placement:
    lock_list(session, mlist)
    info = _subject_info(parsed.subject)
    thread = thread_index(parsed.header("thread-index"))
    message_id = parsed.message_id
    chain = ancestry(message_id, parsed.in_reply_to, parsed.references)
    known = find_posts(session, mlist.id, [*chain, message_id])
    existing = known.pop(message_id, None)
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
    conversation = _conversation(session, mlist, thread) if thread is not None else []

    def placed(topic: Topic, parent: Post | None, evidence: str, adopt: tuple[Post, ...] = ()) -> Placement:
        if existing is not None and parent is not None and _is_ancestor(session, parent, existing):
            parent = None  # the ids it names lie below it: a loop, not a parent
        title = None
        if evidence != "new" and info.title and info.key != topic.subject_key:
            title = info.title
        if thread is not None:
            adopt = adopt + _replies_by_index(thread, conversation)
        return Placement(topic, parent, message_id, existing, False, evidence, title, thread, adopt)

    if reply_to is not None:
        topic = live_topic(session, reply_to.topic_id)
        if existing is not None:
            merge_topics(session, topic, live_topic(session, existing.topic_id))
        return placed(topic, reply_to, "token")

    topics = {}
    for post in known.values():
        topic = live_topic(session, post.topic_id)
        topics[topic.id] = topic
    if existing is not None:
        own = live_topic(session, existing.topic_id)
        topics.setdefault(own.id, own)

    evidence = "headers"
    parent: Post | None = None
    if topics and len(topics) > 1 and any(t.manual for t in topics.values()):
        # A moderator split these apart (core/topics.py): the nearest known ancestor decides, no merge.
        nearest = next((known[m] for m in reversed(chain) if m in known), None)
        survivor = (
            live_topic(session, nearest.topic_id)
            if nearest is not None
            else min(topics.values(), key=lambda t: (t.created_at, t.id))
        )
    elif topics:
        survivor = min(topics.values(), key=lambda t: (t.created_at, t.id))  # the oldest absorbs the others
        for topic in topics.values():
            merge_topics(session, survivor, topic)
    else:
        found = _by_conversation(session, thread, conversation) if thread is not None else None
        if found is not None:
            survivor, parent = found
            evidence = "thread-index"
        elif chain:  # it names only messages we do not hold
            quoted = _by_nested_quote(session, mlist, parsed, info, now, window)
            if quoted is not None:  # its absent parent quoted this post: the placeholders go under it
                survivor, parent = live_topic(session, quoted.topic_id), quoted
                evidence = "subject:absent-parent-quoted"
            else:
                survivor = new_topic(session, mlist, parsed.subject, now)
        else:
            if info.is_reply or (thread is not None and thread.depth > 0):
                by_subject = _by_subject(session, mlist, parsed, info, now, window)
                if by_subject is not None:
                    topic, quoted, rule = by_subject
                    return placed(topic, quoted or _topic_root(session, topic), f"subject:{rule}")
            orphan = _orphan_topic(session, mlist, parsed, info, now, window)
            if orphan is not None:
                return placed(orphan[0], None, "original", orphan[1])
            return placed(new_topic(session, mlist, parsed.subject, now), None, "new")

    if any(post.id is None for post in known.values()):
        session.flush()  # a live post stored earlier in this transaction gets its id before we link to it
    for mid in chain:  # oldest first: each unseen id becomes a placeholder under the previous one
        node = known.get(mid)
        if node is None:
            node = Post(
                id=ids.reserve(session, Post),
                list_id=mlist.id,
                topic_id=survivor.id,
                parent_id=parent.id if parent else None,
                message_id=mid,
                status=PostStatus.PLACEHOLDER.value,
                received_at=now,
                attachments=[],
                # The columns' defaults, given: a placeholder then sets the columns a post
                # sets, and the unit of work inserts runs of both in one many-row statement.
                author_address="",
                author_name="",
                subject="",
                text_body="",
            )
            session.add(node)  # after its parent: the unit of work inserts in that order
            remember(session, node)
            known[mid] = node
        parent = node
    return placed(survivor, parent, evidence)


def link_parent(session: Session, post: Post, parent: Post) -> None:
    """Make ``parent`` the parent of ``post``, either perhaps not in the database yet.

    A flush writes a table's UPDATEs before its INSERTs, and new rows in the order they
    were added; SQLite checks each row's parent as it goes in. So when ``parent`` is not
    in the database yet, and ``post`` is (it would be updated first) or was added before
    it (a placeholder whose message arrived naming an older one), both are flushed
    first and ``post`` is updated after.
    """
    mine, theirs = inspect(post), inspect(parent)
    later = mine.transient or (mine.pending and (mine.insert_order or 0) > (theirs.insert_order or 0))
    if parent.id is None or (theirs.pending and not later):
        session.flush()
    post.parent_id = parent.id


def attach(session: Session, placement: Placement, post: Post, flush: bool = True) -> None:
    """Store the post's threading fields and flush it; then adopt replies that came before it.

    Called by the posting path with the post added to the session (not yet flushed).
    Adopted are header-less replies that started this topic before their original
    arrived, and Outlook replies that name this message only by Thread-Index.

    A bulk import passes ``flush=False``: posts then reach the database together, at
    the next query that needs them or at commit (``find_posts`` knows them meanwhile).
    """
    post.title = placement.title
    thread = placement.thread
    if thread is not None:
        post.conversation, post.thread_index = thread.conversation, thread.index
    topic = placement.topic
    renamed = _subject_info(topic.subject).is_reply and not _subject_info(post.subject).is_reply
    if post.parent_id is None and renamed:
        # The original arrived after replies that started the topic: it names the topic now.
        topic.subject, topic.subject_key = post.subject, _subject_info(post.subject).key
        _keyed(session, topic)
    if flush or placement.adopt:
        session.flush()
    remember(session, post)
    for child in placement.adopt:
        if child.id == post.id or child.topic_id != topic.id:
            continue
        current = session.get(Post, child.parent_id) if child.parent_id is not None else None
        weaker = current is None or (
            current.status != PostStatus.PLACEHOLDER.value
            and thread is not None
            and len(current.thread_index or "") < len(thread.index)
        )
        if weaker and not _is_ancestor(session, post, child):
            child.parent_id = post.id
