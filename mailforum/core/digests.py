"""Digests: which members are due, and what each digest holds, from high-water marks.

A member's digest holds exactly the published posts with ``digest_mark < id <= end``,
where ``end`` is the highest post id when the run started: the period is a post-id
range, never "since yesterday 07:00", so a stepped clock, a crash or a second
scheduler cannot make a post fall between two digests or land in two (RELIABILITY
F14, F15). Posts arriving during a run go into the next digest.

**Where the mark moves.** In the transaction that enqueues the digest's outbox row,
by compare-and-set (``UPDATE members SET digest_mark = end WHERE digest_mark = start``
… ``RETURNING id``). The row is durable with the mark and delivery retries it until
the relay takes it (the outbox's I5 rules), so nothing is missed; only the member
whose mark this transaction moved gets a row, so nothing repeats — a second scheduler
or a double fire finds the mark already moved (on PostgreSQL it waits on the row lock,
then sees the new mark). Moving it at "sent" instead would let a second run, started
before the first digest left, enqueue the same posts again. The outbox row also has a
unique ``dedupe_key`` per (member, start mark, end mark) as a second guard.

Runs commit every ``BATCH`` members: a run killed half-way is finished by the next
one, which finds only the remaining members behind the end mark (F14). A scheduled run
records its period and end mark on the list first, so a restart, a repeated hour or a
second scheduler finishes that period with the same end mark; a new period is never
started twice (F15). A clock that steps back (an hour, or the day it had jumped ahead)
finds its period already run and sends nothing; one that ran days ahead and was then
corrected (``MAX_CLOCK_LEAD``) starts new periods again at once, with a warning, instead
of leaving the list without digests until the calendar catches up.

Members get digests when their mode is ``digest`` (daily unless they chose weekly), or
when they asked for one in another mode (``digest_frequency``). Muted topics are left
out; a member with nothing left after that gets no mail, and the mark still moves.

**Members whose delivery is paused by bounces** (``delivery_disabled_at``) miss the
digests issued while they are paused, as in Mailman, where a disabled member simply
misses the mail sent meanwhile: the run moves their mark with everyone else's, by
the same compare-and-set, and queues nothing for them. When delivery is turned back
on, their next digest holds what arrived since the last digest they missed — not one
giant digest of every week they were away. Whether a member is paused is read in the
batch's own transaction (``RETURNING``), so a member re-enabled or paused during a
run is judged by their state when their mark moves.
"""

from __future__ import annotations

import bisect
import datetime as dt
import logging
import re
from collections import defaultdict
from collections.abc import Sequence
from contextlib import AbstractContextManager
from dataclasses import dataclass
from typing import Protocol
from zoneinfo import ZoneInfo

from sqlalchemy import func, or_, select, update
from sqlalchemy.orm import Session

from mailforum import crash
from mailforum.batching import chunks
from mailforum.config import WEEKDAYS, Config
from mailforum.db import outbox
from mailforum.db.ancestry import ancestors
from mailforum.db.models import (
    DeliveryMode,
    MailingList,
    Member,
    OutboxKind,
    Post,
    PostStatus,
    SubscriptionKind,
    Topic,
    TopicSubscription,
)
from mailforum.db.queries import list_named
from mailforum.errors import MailforumError
from mailforum.mail.parse import Attachment
from mailforum.mail.quotes import ATTRIBUTION, ORIGINAL_MESSAGE
from mailforum.textsafe import safe_filename

log = logging.getLogger(__name__)

BATCH = 200  # members per transaction
DAILY = "daily"
WEEKLY = "weekly"
FREQUENCIES = (DAILY, WEEKLY)


class Sessions(Protocol):
    """What a run needs of ``db.session.Database``: a fresh transaction per batch."""

    def session(self) -> AbstractContextManager[Session]: ...


# ---------------------------------------------------------------------------
# Periods and schedules


def list_zone(config: Config, mlist: MailingList) -> ZoneInfo:
    return ZoneInfo(mlist.digest_timezone or config.digest.timezone)


def list_hour(config: Config, mlist: MailingList) -> int:
    return config.digest.hour if mlist.digest_hour is None else mlist.digest_hour


def day_key(local: dt.datetime) -> str:
    return local.strftime("%Y-%m-%d")


def week_key(local: dt.datetime) -> str:
    year, week, _ = local.isocalendar()
    return f"{year}-W{week:02d}"


def label(local: dt.datetime) -> str:
    """The date as the subject shows it: 26 Nov 2026."""
    return f"{local.day} {local.strftime('%b %Y')}"


def weekly_due(config: Config, mlist: MailingList, local: dt.datetime) -> bool:
    """The week's digest is due on or after the weekly day, once per ISO week."""
    if local.weekday() < WEEKDAYS.index(config.digest.weekly_day):
        return False
    return not (mlist.digest_last_week or "").startswith(week_key(local))


# A claimed period this far ahead of the clock means the clock ran days ahead and was then
# corrected: runs start new periods again instead of waiting days for it to catch up. Within
# this, the clock stepping back (an hour, or a day it had jumped forward) sends nothing (F15).
MAX_CLOCK_LEAD = dt.timedelta(days=2)


def _far_ahead(claimed: str | None, fire: dt.datetime) -> bool:
    """The claimed period (a ``day_key``) lies more than ``MAX_CLOCK_LEAD`` after ``fire``'s day."""
    try:
        day = dt.date.fromisoformat(claimed or "")
    except ValueError:
        return False
    return day - fire.date() > MAX_CLOCK_LEAD


def last_fire(config: Config, mlist: MailingList, now: dt.datetime) -> dt.datetime:
    """The most recent time (≤ now) the list's digest hour struck, in the list's zone."""
    local = now.astimezone(list_zone(config, mlist))
    fire = local.replace(hour=list_hour(config, mlist), minute=0, second=0, microsecond=0)
    if fire > local:
        fire -= dt.timedelta(days=1)
    return fire


# ---------------------------------------------------------------------------
# Enqueueing


@dataclass(frozen=True, slots=True)
class RunResult:
    """What one run did for one list."""

    list_name: str
    end_mark: int
    queued: int  # digests enqueued
    skipped: int  # members whose mark moved without mail (nothing new outside muted topics)
    period: str  # "2026-11-26" for a scheduled run, "manual" for `digest send`
    paused: int = 0  # members whose delivery bounces paused: their mark moved, no mail


@dataclass(frozen=True, slots=True)
class DueMember:
    id: int
    address: str
    mark: int
    created_at: dt.datetime
    frequency: str


def frequency_of(mode: str, chosen: str | None) -> str | None:
    """A member's digest frequency, or None for no digest (mode ``none`` means no mail at all)."""
    if mode == DeliveryMode.NONE.value:
        return None
    if chosen in FREQUENCIES:
        return chosen
    return DAILY if mode == DeliveryMode.DIGEST.value else None


def end_mark(session: Session, list_id: int) -> int:
    value = session.scalar(
        select(func.max(Post.id)).where(Post.list_id == list_id, Post.status == PostStatus.PUBLISHED.value)
    )
    return int(value or 0)


def start_mark(session: Session, list_id: int) -> int:
    """Where a member starting digests now begins (for the subscription commands): the newest post."""
    return end_mark(session, list_id)


def due_members(
    session: Session,
    list_id: int,
    end: int,
    frequencies: Sequence[str],
    address: str | None = None,
    *,
    paused: bool = False,
) -> list[DueMember]:
    """Digest members of the list whose mark is behind ``end``, in id order.

    ``paused``: also members whose delivery bounces paused (a run moves their marks
    without mail); without it, only those who would get mail (what a preview shows).
    """
    stmt = (
        select(Member.id, Member.address, Member.digest_mark, Member.created_at, Member.delivery_mode)
        .add_columns(Member.digest_frequency)
        .where(
            Member.list_id == list_id,
            Member.digest_mark < end,
            or_(Member.delivery_mode == DeliveryMode.DIGEST.value, Member.digest_frequency.in_(FREQUENCIES)),
        )
        .order_by(Member.id)
    )
    if not paused:
        stmt = stmt.where(Member.delivery_disabled_at.is_(None))
    if address is not None:
        stmt = stmt.where(func.lower(Member.address) == address.lower())
    out = []
    for mid, addr, mark, created, mode, chosen in session.execute(stmt):
        freq = frequency_of(mode, chosen)
        if freq is not None and freq in frequencies:
            out.append(DueMember(mid, addr, int(mark), created, freq))
    return out


@dataclass(frozen=True, slots=True)
class RangePost:
    id: int
    topic_id: int
    received_at: dt.datetime


def range_posts(session: Session, list_id: int, start: int, end: int) -> list[RangePost]:
    rows = session.execute(
        select(Post.id, Post.topic_id, Post.received_at)
        .where(
            Post.list_id == list_id,
            Post.status == PostStatus.PUBLISHED.value,
            Post.id > start,
            Post.id <= end,
        )
        .order_by(Post.id)
    )
    return [RangePost(*r) for r in rows]


def muted_topics(session: Session, member_ids: Sequence[int], topic_ids: set[int]) -> dict[int, set[int]]:
    """Per member, which of ``topic_ids`` they muted."""
    out: dict[int, set[int]] = defaultdict(set)
    if not member_ids or not topic_ids:
        return out
    for chunk in chunks(member_ids, 1000):
        rows = session.execute(
            select(TopicSubscription.member_id, TopicSubscription.topic_id).where(
                TopicSubscription.member_id.in_(chunk),
                TopicSubscription.topic_id.in_(list(topic_ids)),
                TopicSubscription.kind == SubscriptionKind.MUTE.value,
            )
        )
        for member_id, topic_id in rows:
            out[member_id].add(topic_id)
    return out


def first_start(session: Session, list_id: int, members: Sequence[DueMember]) -> dict[int, int]:
    """For members who never had a digest (mark 0): the last post before they joined.

    A new member's first digest starts when they joined, not at the list's first post.
    """
    fresh = [m for m in members if m.mark == 0]
    if not fresh:
        return {}
    rows = session.execute(
        select(Post.id, Post.received_at).where(Post.list_id == list_id).order_by(Post.received_at, Post.id)
    ).all()
    times = [r[1] for r in rows]
    best: list[int] = []
    top = 0
    for r in rows:
        top = max(top, r[0])
        best.append(top)
    out = {}
    for m in fresh:
        at = bisect.bisect_left(times, m.created_at)
        out[m.id] = best[at - 1] if at else 0
    return out


def message_id(list_name: str, member_id: int, start: int, end: int, domain: str) -> str:
    """The digest's Message-ID; ``digest_replies.is_digest_reply`` recognises replies to it."""
    return f"<digest.{list_name}.{member_id}.{start}-{end}@{domain}>"


def _advance(session: Session, member_ids: list[int], old: int, new: int) -> dict[int, bool]:
    """Compare-and-set the marks; returns the members this transaction moved, each with
    whether their delivery is paused by bounces (read under the same row lock)."""
    if not member_ids:
        return {}
    rows = session.execute(
        update(Member)
        .where(Member.id.in_(member_ids), Member.digest_mark == old)
        .values(digest_mark=new)
        .returning(Member.id, Member.delivery_disabled_at)
        .execution_options(synchronize_session=False)
    )
    return {member_id: disabled_at is not None for member_id, disabled_at in rows}


def _enqueue_batch(
    session: Session,
    config: Config,
    mlist: MailingList,
    batch: list[DueMember],
    end: int,
    day_label: str,
    now: dt.datetime,
    starts: dict[int, int],
) -> tuple[int, int, int]:
    """One transaction's worth of members: move marks, enqueue digests; (queued, skipped, paused).

    ``starts``: where members without a mark begin (``first_start``, computed once per run).
    Members whose delivery is paused by bounces have their marks moved and get nothing.
    """
    by_mark: dict[int, list[DueMember]] = defaultdict(list)
    for m in batch:
        by_mark[m.mark].append(m)
    queued = skipped = paused = 0
    copies: list[outbox.NewCopy] = []
    for old, members in by_mark.items():
        moved = _advance(session, [m.id for m in members], old, end)
        paused += sum(moved.values())
        members = [m for m in members if m.id in moved and not moved[m.id]]
        if not members:
            continue
        posts_by_start: dict[int, list[RangePost]] = {}
        topics = set()
        for m in members:
            start = max(old, starts.get(m.id, old))
            if start not in posts_by_start:
                posts_by_start[start] = range_posts(session, mlist.id, start, end)
            topics |= {p.topic_id for p in posts_by_start[start]}
        muted = muted_topics(session, [m.id for m in members], topics)
        for m in members:
            start = max(old, starts.get(m.id, old))
            mute = muted.get(m.id, set())
            if not any(p.topic_id not in mute for p in posts_by_start[start]):
                skipped += 1
                continue
            copies.append(
                outbox.NewCopy(
                    list_id=mlist.id,
                    recipient=m.address,
                    message_id=message_id(mlist.name, m.id, start, end, config.site.domain),
                    member_id=m.id,
                    kind=OutboxKind.DIGEST,
                    dedupe_key=f"digest:{m.id}:{start}:{end}",
                    payload={"from": start, "to": end, "frequency": m.frequency, "label": day_label},
                )
            )
    for _ in copies:
        crash.point("mid_digest_recipient_loop")
    queued = outbox.enqueue(session, copies, now)
    return queued, skipped, paused


def run_list(
    db: Sessions,
    config: Config,
    list_name: str,
    now: dt.datetime,
    *,
    scheduled: bool = False,
    address: str | None = None,
) -> RunResult:
    """Enqueue every due digest of one list, a transaction per ``BATCH`` members.

    ``scheduled``: the run of the list's digest hour. It claims its period (the list-local
    day of the last time the hour struck) on the list with an end mark, or resumes that
    period with the stored end mark if it was claimed already — so a repeated hour, a
    second scheduler or a restart after a crash adds nothing new. Weekly members are in
    the run that claims the week. Unscheduled (``digest send``): the end mark is the
    newest post; weekly members only when their week is due.
    """
    with db.session() as session:
        mlist = list_named(session, list_name, lock=True)
        if mlist is None:
            raise MailforumError(f"no list named {list_name!r}")
        fire = last_fire(config, mlist, now)
        local = now.astimezone(list_zone(config, mlist))
        frequencies = [DAILY]
        if scheduled:
            period = day_key(fire)
            if mlist.digest_last_day == period and mlist.digest_run_mark is not None:
                end = mlist.digest_run_mark  # resume (or repeat) the claimed period
                if (mlist.digest_last_week or "").endswith(" " + period):
                    frequencies.append(WEEKLY)
            elif (mlist.digest_last_day or "") > period and not _far_ahead(mlist.digest_last_day, fire):
                # The clock went back past a period already run: nothing to do (F15).
                return RunResult(mlist.name, mlist.digest_run_mark or 0, 0, 0, period)
            else:
                if (mlist.digest_last_day or "") > period:
                    log.warning(
                        "digests for %s: the last run was for %s, but the clock says %s; the clock "
                        "was wrong by days and has been corrected: starting a new period",
                        mlist.name,
                        mlist.digest_last_day,
                        period,
                    )
                end = end_mark(session, mlist.id)
                mlist.digest_last_day = period
                mlist.digest_run_mark = end
                if weekly_due(config, mlist, fire):
                    mlist.digest_last_week = f"{week_key(fire)} {period}"
                    frequencies.append(WEEKLY)
            day_label = label(fire)
        else:
            period = "manual"
            end = end_mark(session, mlist.id)
            if weekly_due(config, mlist, local):
                mlist.digest_last_week = f"{week_key(local)} manual"
                frequencies.append(WEEKLY)
            day_label = label(local)
        members = due_members(session, mlist.id, end, frequencies, address, paused=True)
        starts = first_start(session, mlist.id, members)
        list_id, name = mlist.id, mlist.name
    queued = skipped = paused = 0
    for batch in chunks(members, BATCH):
        with db.session() as session:
            mlist = session.get(MailingList, list_id)
            assert mlist is not None
            q, s, p = _enqueue_batch(session, config, mlist, batch, end, day_label, now, starts)
            queued += q
            skipped += s
            paused += p
    log.info(
        "digests for %s (%s): %d queued, %d without news, %d paused by bounces (passed over)",
        name,
        period,
        queued,
        skipped,
        paused,
    )
    return RunResult(name, end, queued, skipped, period, paused)


def list_names(db: Sessions) -> list[str]:
    with db.session() as session:
        return list(session.scalars(select(MailingList.name).order_by(MailingList.name)))


# ---------------------------------------------------------------------------
# What a digest holds


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
        .where(
            Post.list_id == list_id,
            Post.status == PostStatus.PUBLISHED.value,
            Post.id > start,
            Post.id <= end,
        )
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
    out = []
    for tid, items in grouped.items():
        topic = topics.get(tid)
        subject = (topic.subject if topic is not None else "") or items[0].subject or "(no subject)"
        out.append(DigestTopic(tid, subject, first_ids.get(tid, 0) > start, tuple(items)))
    out.sort(key=lambda t: (not t.new, -len(t.posts), -t.posts[-1].id))
    return tuple(out)


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
