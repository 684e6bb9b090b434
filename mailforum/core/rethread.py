"""Rebuild a list's topics from its stored raw messages with the current threader.

Raw mail is the source of truth (public-inbox's lesson): after an upgrade of the
threading rules, ``rethread`` replays every stored message, in the order it arrived,
through the same ``routing.process`` → ``threads.place`` path into a scratch SQLite
database, then writes the differences back in one transaction:

- each new topic keeps the id of the old topic that held most of its posts, so
  links stay valid; an old topic left empty points at the topic that took most of its
  posts (``merged_into_id``), as a merge does;
- placeholders are rebuilt; a post stored by a verified reply token keeps its parent
  (the token is not in the raw message, and is the strongest evidence).

It is safe on a live archive: the replay reads without locks, and the write takes
the list's threading lock (PostgreSQL) or the writer lock (SQLite). Posts that
arrive during the replay are left where the live threader put them (followed into
the surviving topic when theirs is emptied).

``scratch_import`` is also what ``import-mbox --dry-run`` uses to show the topics an
archive would create, without touching the real database.
"""

from __future__ import annotations

import datetime as dt
import tempfile
from collections import Counter, defaultdict
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field, replace
from pathlib import Path

from sqlalchemy import delete, func, insert, literal, select, update
from sqlalchemy.orm import Session, aliased, load_only

from mailforum.batching import chunks
from mailforum.config import Config, DatabaseConfig
from mailforum.core import archive, lists, posting, routing, threads, topics
from mailforum.core.policy import Action, Decision
from mailforum.db import migrate
from mailforum.db.models import (
    MailingList,
    Post,
    PostStatus,
    SpoolEntry,
    Topic,
    TopicDecision,
    TopicDecisionKind,
    TopicSubscription,
    TopicTag,
    utcnow,
)
from mailforum.db.session import Database
from mailforum.mail.addresses import Kind, list_address, parse_recipient
from mailforum.mail.headers import ancestry, subject_key
from mailforum.mail.parse import Unprocessable, parse

BATCH = 500


@contextmanager
def scratch_database(config: Config, name: str) -> Iterator[tuple[Database, Config]]:
    """A migrated, empty SQLite database in a temporary directory, holding the list ``name``."""
    with tempfile.TemporaryDirectory(prefix="mailforum-scratch-") as tmp:
        db = Database(f"sqlite:///{Path(tmp) / 'scratch.db'}")
        try:
            migrate.upgrade(db)
            with db.session() as session:
                lists.create_list(session, name)
            yield db, replace(config, database=DatabaseConfig(url=db.url))
        finally:
            db.dispose()


# --- reading the result of a replay -------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Node:
    """Where the threader put one message: its topic (a key within one database) and parent."""

    topic: int
    parent: str | None
    title: str | None = None
    conversation: str | None = None
    thread_index: str | None = None
    placeholder: bool = False


@dataclass
class Threading:
    nodes: dict[str, Node] = field(default_factory=dict)  # message id → node
    subjects: dict[int, str] = field(default_factory=dict)  # topic → subject
    manual: set[int] = field(default_factory=set)  # topics a moderator's split made


@dataclass(frozen=True, slots=True)
class ManualDecision:
    """A moderator's split, merge or retitle, by message ids (``topic_decisions``)."""

    kind: str
    message_id: str
    into_message_id: str | None
    title: str | None


def read_decisions(session: Session, mlist: MailingList) -> list[ManualDecision]:
    return [
        ManualDecision(d.kind, d.message_id, d.into_message_id, d.title)
        for d in session.scalars(
            select(TopicDecision).where(TopicDecision.list_id == mlist.id).order_by(TopicDecision.id)
        )
    ]


def replay_decisions(threading: Threading, decisions: Iterable[ManualDecision]) -> None:
    """Make the moderators' decisions again, in order, on a replay's result (so rethread keeps them).

    A decision naming a message the replay does not hold is skipped.
    """
    nodes = threading.nodes
    fresh = max([n.topic for n in nodes.values()] + list(threading.subjects) + [0]) + 1
    for decision in decisions:
        node = nodes.get(decision.message_id)
        if node is None or node.placeholder:
            continue
        if decision.kind == TopicDecisionKind.SPLIT.value:
            children: dict[str, list[str]] = defaultdict(list)
            for mid, other in nodes.items():
                if other.parent is not None and other.topic == node.topic:
                    children[other.parent].append(mid)
            todo, seen = [decision.message_id], set()
            while todo:
                mid = todo.pop()
                if mid in seen:
                    continue
                seen.add(mid)
                nodes[mid] = replace(nodes[mid], topic=fresh)
                todo.extend(children.get(mid, []))
            nodes[decision.message_id] = replace(nodes[decision.message_id], parent=None)
            threading.subjects[fresh] = decision.title or ""
            threading.manual.add(fresh)
            fresh += 1
        elif decision.kind == TopicDecisionKind.MERGE.value:
            into = nodes.get(decision.into_message_id or "")
            if into is None or into.topic == node.topic:
                continue
            absorbed = node.topic
            for mid, other in list(nodes.items()):
                if other.topic == absorbed:
                    nodes[mid] = replace(other, topic=into.topic)
            threading.subjects.pop(absorbed, None)
            if absorbed in threading.manual:
                threading.manual.add(into.topic)
        elif decision.kind == TopicDecisionKind.RETITLE.value and decision.title:
            threading.subjects[node.topic] = decision.title


def read_threading(session: Session, mlist: MailingList) -> Threading:
    parent = aliased(Post)
    live = _live_topics(session, mlist)
    result = Threading()
    rows = session.execute(
        select(
            Post.message_id,
            Post.topic_id,
            parent.message_id,
            Post.title,
            Post.conversation,
            Post.thread_index,
            Post.status,
        )
        .outerjoin(parent, Post.parent_id == parent.id)
        .where(Post.list_id == mlist.id)
    )
    for mid, topic, parent_mid, title, conversation, index, status in rows:
        result.nodes[mid] = Node(
            live.get(topic, topic),
            parent_mid,
            title,
            conversation,
            index,
            status == PostStatus.PLACEHOLDER.value,
        )
    for topic_id, subject in session.execute(
        select(Topic.id, Topic.subject).where(Topic.list_id == mlist.id, Topic.merged_into_id.is_(None))
    ):
        result.subjects[topic_id] = subject
    return result


def _live_topics(session: Session, mlist: MailingList) -> dict[int, int]:
    merged = dict(
        session.execute(select(Topic.id, Topic.merged_into_id).where(Topic.list_id == mlist.id)).all()
    )

    def live(tid: int) -> int:
        for _ in range(10_000):
            nxt = merged.get(tid)
            if nxt is None:
                break
            tid = nxt
        return tid

    return {tid: live(tid) for tid in merged}


# --- replaying messages into a scratch database ------------------------------------------


@dataclass(frozen=True, slots=True)
class Replay:
    raw: bytes
    received_at: dt.datetime
    token_parent: str | None = None  # the parent named by a verified reply token


@dataclass
class ScratchReport:
    messages: int = 0
    duplicates: int = 0
    failed: int = 0
    errors: list[str] = field(default_factory=list)


def replay(db: Database, config: Config, name: str, messages: Iterable[Replay]) -> ScratchReport:
    """Thread ``messages`` in order into the list ``name`` of the (scratch) database ``db``."""
    report = ScratchReport()
    rcpt = (list_address(name, config.site.domain),)
    chunk: list[Replay] = []

    def flush() -> None:
        with db.session() as session:
            mlist = lists.list_by_name(session, name)
            assert mlist is not None
            parsed_chunk = []
            for item in chunk:
                try:
                    parsed_chunk.append((item, parse(item.raw)))
                except Unprocessable as exc:
                    report.failed += 1
                    report.errors.append(f"unprocessable: {exc}")
            wanted = [
                m
                for _, p in parsed_chunk
                for m in [p.message_id, *ancestry(p.message_id, p.in_reply_to, p.references)]
            ]
            threads.prefetch(session, mlist.id, wanted)
            for item, parsed in parsed_chunk:
                report.messages += 1
                reply_to = None
                if item.token_parent:
                    reply_to = threads.find_posts(session, mlist.id, [item.token_parent]).get(
                        item.token_parent
                    )
                if reply_to is not None:
                    arrival = posting.Arrival(
                        session,
                        config,
                        mlist,
                        parse_recipient(rcpt[0], config.site.domain),
                        parsed,
                        item.raw,
                        parsed.from_address,
                        None,
                        item.received_at,
                        item.received_at,
                        True,
                    )
                    outcome = posting.store_post(arrival, Decision(Action.ACCEPT), reply_to)
                    outcomes = [outcome]
                else:
                    outcomes = routing.process(
                        session,
                        config,
                        parsed,
                        item.raw,
                        parsed.from_address,
                        rcpt,
                        None,
                        item.received_at,
                        item.received_at,
                        imported=True,
                    )
                report.duplicates += sum(1 for o in outcomes if o.post is None)
        chunk.clear()

    for message in messages:
        chunk.append(message)
        if len(chunk) >= BATCH:
            flush()
    if chunk:
        flush()
    return report


# --- import-mbox --dry-run -------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class PlannedTopic:
    subject: str
    posts: int
    joins: int | None  # the existing topic of the real list this one would join, if any


@dataclass
class DryRun:
    topics: list[PlannedTopic]
    report: archive.ImportReport


def dry_run_import(db: Database, config: Config, mlist: MailingList, raws: Iterable[bytes]) -> DryRun:
    """The topics an import would create, threaded in a scratch database; ``db`` is only read."""
    with scratch_database(config, mlist.name) as (scratch, scratch_config):
        with scratch.read_session() as session:
            target = lists.get_list(session, mlist.name)
        report = archive.import_messages(scratch, scratch_config, target, raws, parallel=True)
        with scratch.read_session() as session:
            threading = read_threading(session, lists.get_list(session, mlist.name))
    members: dict[int, list[str]] = defaultdict(list)
    counts: Counter[int] = Counter()
    for mid, node in threading.nodes.items():
        members[node.topic].append(mid)
        if not node.placeholder:
            counts[node.topic] += 1
    joins: dict[int, int] = {}
    with db.read_session() as session:
        live = _live_topics(session, mlist)
        for topic, mids in members.items():
            for chunk in chunks(mids, BATCH):
                found = threads.find_posts(session, mlist.id, chunk)
                if found:
                    post = min(found.values(), key=lambda p: p.id)
                    joins[topic] = live.get(post.topic_id, post.topic_id)
                    break
    planned = [
        PlannedTopic(threading.subjects.get(topic, ""), counts[topic], joins.get(topic))
        for topic in sorted(members, key=lambda t: min(members[t]))
        if counts[topic]
    ]
    return DryRun(planned, report)


# --- rethread --------------------------------------------------------------------------------


@dataclass
class RethreadReport:
    posts: int = 0
    moved: list[tuple[str, int, int]] = field(default_factory=list)  # (message id, old topic, new topic)
    reparented: int = 0
    topics_before: int = 0
    topics_after: int = 0
    new_topics: int = 0
    emptied_topics: int = 0
    arrived_during: int = 0
    failed: int = 0


def rethread(db: Database, config: Config, name: str, dry_run: bool = False) -> RethreadReport:
    """Rebuild the topics of list ``name`` from its raw messages (see the module doc)."""
    with db.read_session() as session:
        mlist = lists.get_list(session, name)
        before = read_threading(session, mlist)
        stored = list(
            session.execute(
                select(Post.id, Post.message_id, Post.received_at, Post.spool_id, Post.parent_id)
                .where(Post.list_id == mlist.id, Post.status != PostStatus.PLACEHOLDER.value)
                .order_by(Post.received_at, Post.id)
            )
        )
        by_id = {row.id: row.message_id for row in stored}
        token_posts = _posts_by_token(session, [row.spool_id for row in stored if row.spool_id], config)
        manual = read_decisions(session, mlist)
    read_ids = {row.id for row in stored}

    def messages() -> Iterator[Replay]:
        """The raw messages in arrival order, read a batch at a time (an archive may not fit in memory)."""
        for rows in chunks(stored, BATCH):
            with db.read_session() as session:
                raws = dict(
                    session.execute(select(Post.id, Post.raw).where(Post.id.in_([r.id for r in rows]))).all()
                )
            for row in rows:
                token_parent = by_id.get(row.parent_id) if row.spool_id in token_posts else None
                yield Replay(raws.get(row.id) or b"", row.received_at, token_parent)

    with scratch_database(config, name) as (scratch, scratch_config):
        result = replay(scratch, scratch_config, name, messages())
        with scratch.read_session() as session:
            after = read_threading(session, lists.get_list(session, name))
    replay_decisions(after, manual)
    report = RethreadReport(posts=len(stored), failed=result.failed)
    report.topics_before = len({n.topic for n in before.nodes.values() if not n.placeholder})
    report.topics_after = len({n.topic for n in after.nodes.values() if not n.placeholder})
    plan = _plan(before, after)
    for mid, node in after.nodes.items():
        old = before.nodes.get(mid)
        if old is None or node.placeholder:
            continue
        if plan.topic_for(node.topic) != old.topic:
            report.moved.append((mid, old.topic, plan.topic_for(node.topic)))
        if node.parent != old.parent:
            report.reparented += 1
    report.new_topics = len(plan.fresh)
    report.emptied_topics = len(plan.emptied)
    if not dry_run:
        report.arrived_during = _apply(db, name, read_ids, after, plan)
    return report


def _posts_by_token(session: Session, spool_ids: list[int], config: Config) -> set[int]:
    """Spool entries that came to a reply-token address (their parent is not in the raw message)."""
    token: set[int] = set()
    for chunk in chunks(spool_ids, BATCH):
        for spool_id, rcpts in session.execute(
            select(SpoolEntry.id, SpoolEntry.rcpt_tos).where(SpoolEntry.id.in_(chunk))
        ):
            for rcpt in rcpts or []:
                try:
                    if parse_recipient(rcpt, config.site.domain).kind is Kind.REPLY:
                        token.add(spool_id)
                except Exception:
                    continue
    return token


@dataclass
class _Plan:
    mapping: dict[int, int]  # scratch topic → real topic id (reused)
    fresh: list[int]  # scratch topics that need a new real topic
    emptied: dict[int, int | None]  # real topic left without posts → scratch topic that took most of them
    created: dict[int, int] = field(default_factory=dict)  # scratch topic → new real id (after apply)

    def topic_for(self, scratch_topic: int) -> int:
        return self.mapping.get(scratch_topic) or self.created.get(scratch_topic) or -scratch_topic


def _plan(before: Threading, after: Threading) -> _Plan:
    overlap: Counter[tuple[int, int]] = Counter()
    for mid, node in after.nodes.items():
        prior = before.nodes.get(mid)
        if prior is not None and not node.placeholder and not prior.placeholder:
            overlap[(node.topic, prior.topic)] += 1
    mapping: dict[int, int] = {}
    used: set[int] = set()
    for (new, old), _ in sorted(overlap.items(), key=lambda kv: (-kv[1], kv[0][1], kv[0][0])):
        if new not in mapping and old not in used:
            mapping[new] = old
            used.add(old)
    fresh = sorted({n.topic for n in after.nodes.values()} - set(mapping))
    best: dict[int, tuple[int, int]] = {}
    for (new, old), count in overlap.items():
        if old not in used and (old not in best or count > best[old][0]):
            best[old] = (count, new)
    old_topics = {n.topic for n in before.nodes.values() if not n.placeholder}
    emptied: dict[int, int | None] = {old: best[old][1] if old in best else None for old in old_topics - used}
    return _Plan(mapping, fresh, emptied)


def _apply(db: Database, name: str, read_ids: set[int], after: Threading, plan: _Plan) -> int:
    now = utcnow()
    with db.session() as session:
        mlist = lists.get_list(session, name)
        threads.lock_list(session, mlist)
        for scratch_topic in plan.fresh:
            topic = threads.new_topic(session, mlist, after.subjects.get(scratch_topic, ""), now)
            plan.created[scratch_topic] = topic.id
        for scratch_topic in after.manual:
            session.execute(
                update(Topic).where(Topic.id == plan.topic_for(scratch_topic)).values(manual=True)
            )
        for scratch_topic, real in plan.mapping.items():
            title = after.subjects.get(scratch_topic)
            if title is not None:
                session.execute(
                    update(Topic)
                    .where(Topic.id == real)
                    .values(subject=title, subject_key=subject_key(title), merged_into_id=None)
                )
        columns = load_only(
            Post.id, Post.list_id, Post.message_id, Post.topic_id, Post.parent_id, Post.status,
            Post.title, Post.conversation, Post.thread_index,
        )  # fmt: skip
        posts = {
            p.message_id: p
            for p in session.scalars(select(Post).options(columns).where(Post.list_id == mlist.id))
        }
        # Placeholders: keep those the new threading has, drop the others once nothing points at them.
        for mid, node in after.nodes.items():
            if node.placeholder and mid not in posts:
                post = Post(
                    list_id=mlist.id,
                    topic_id=plan.topic_for(node.topic),
                    message_id=mid,
                    status=PostStatus.PLACEHOLDER.value,
                    received_at=now,
                    attachments=[],
                )
                session.add(post)
                posts[mid] = post
        session.flush()
        arrived = 0
        for mid, post in posts.items():
            placed = after.nodes.get(mid)
            if placed is None:
                if post.status != PostStatus.PLACEHOLDER.value and post.id not in read_ids:
                    arrived += 1
                continue
            post.topic_id = plan.topic_for(placed.topic)
            parent = posts.get(placed.parent) if placed.parent else None
            post.parent_id = parent.id if parent is not None else None
            post.title, post.conversation, post.thread_index = (
                placed.title,
                placed.conversation,
                placed.thread_index,
            )
        referenced = {p.parent_id for p in posts.values() if p.parent_id is not None}
        for mid, post in posts.items():
            if (
                mid not in after.nodes
                and post.status == PostStatus.PLACEHOLDER.value
                and post.id not in referenced
            ):
                session.delete(post)
        session.flush()
        for old, taker in plan.emptied.items():
            target = plan.topic_for(taker) if taker is not None else None
            if target is None or target == old:
                continue
            session.execute(
                update(Post)
                .where(Post.topic_id == old)
                .values(topic_id=target)  # posts that arrived meanwhile
            )
            session.execute(
                update(TopicSubscription)
                .where(TopicSubscription.topic_id == old)
                .where(
                    TopicSubscription.member_id.not_in(
                        select(TopicSubscription.member_id).where(TopicSubscription.topic_id == target)
                    )
                )
                .values(topic_id=target)
            )
            session.execute(
                insert(TopicTag).from_select(
                    ["topic_id", "tag_id", "last_post_at", "post_count"],
                    select(
                        literal(target), TopicTag.tag_id, TopicTag.last_post_at, TopicTag.post_count
                    ).where(
                        TopicTag.topic_id == old,
                        TopicTag.tag_id.not_in(select(TopicTag.tag_id).where(TopicTag.topic_id == target)),
                    ),
                )
            )
            session.execute(delete(TopicTag).where(TopicTag.topic_id == old))
            session.execute(
                update(Topic)
                .where(Topic.id == target, Topic.tagged.is_(False))
                .values(tagged=select(TopicTag.id).where(TopicTag.topic_id == target).exists())
            )
            session.execute(update(Topic).where(Topic.id == old).values(merged_into_id=target, post_count=0))
        session.flush()
        for topic in session.scalars(
            select(Topic).where(Topic.list_id == mlist.id, Topic.merged_into_id.is_(None))
        ):
            count, first, last = session.execute(
                select(func.count(), func.min(Post.received_at), func.max(Post.received_at)).where(
                    Post.topic_id == topic.id, Post.status == PostStatus.PUBLISHED.value
                )
            ).one()
            topic.post_count = count
            if first is not None:
                topic.created_at, topic.last_post_at = first, last
            topics.touch(session, topic)
    return arrived
