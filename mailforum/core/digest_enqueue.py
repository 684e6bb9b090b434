"""Queuing digests: which members are behind the end mark, moving their marks, one row each.

A member's digest holds exactly the published posts with ``digest_mark < id <= end``,
where ``end`` is the highest post id when the run started: the period is a post-id
range, never "since yesterday 07:00", so a stepped clock, a crash or a second
scheduler cannot make a post fall between two digests or land in two (RELIABILITY
F14, F15). Posts arriving during a run go into the next digest. What the range holds
for each member is ``core.digest_content.member_contents``; when a run happens is
``core.digest_schedule``.

**Where the mark moves.** In the transaction that enqueues the digest's outbox row,
by compare-and-set (``UPDATE members SET digest_mark = end WHERE digest_mark = start``
… ``RETURNING id``). The row is durable with the mark and delivery retries it until
the relay takes it (the outbox's I5 rules), so nothing is missed; only the member
whose mark this transaction moved gets a row, so nothing repeats — a second scheduler
or a double fire finds the mark already moved (on PostgreSQL it waits on the row lock,
then sees the new mark). Moving it at "sent" instead would let a second run, started
before the first digest left, enqueue the same posts again. The outbox row also has a
unique ``dedupe_key`` per (member, start mark, end mark) as a second guard.

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
from collections import defaultdict
from collections.abc import Sequence
from dataclasses import dataclass
from functools import partial

from sqlalchemy import func, or_, select, update
from sqlalchemy.orm import Session

from mailforum import crash
from mailforum.config import Config
from mailforum.core.digest_content import DAILY, FREQUENCIES, member_contents, range_topics
from mailforum.db import outbox
from mailforum.db.models import DeliveryMode, MailingList, Member, OutboxKind, Post, PostStatus


@dataclass(frozen=True, slots=True)
class DueMember:
    id: int
    address: str
    mark: int
    created_at: dt.datetime
    frequency: str
    hour: int | None = None  # the member's own digest hour and time zone; None: the list's
    timezone: str | None = None


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
        .add_columns(Member.digest_frequency, Member.digest_hour, Member.digest_timezone)
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
    for mid, addr, mark, created, mode, chosen, hour, zone in session.execute(stmt):
        freq = frequency_of(mode, chosen)
        if freq is not None and freq in frequencies:
            out.append(DueMember(mid, addr, int(mark), created, freq, hour, zone))
    return out


def claim_periods(session: Session, members: Sequence[DueMember], day: str, week: str | None) -> set[int]:
    """For members with their own digest schedule: claim this period for each, by compare-and-set
    (``digest_last_day`` earlier than ``day``; weekly members ``digest_last_week`` earlier than
    ``week``, only when the week is due). Returns the members this transaction claimed: the
    only ones the run may send to, so a repeated fire or a second scheduler sends nothing
    twice (F15). Called in the transaction that enqueues their digests (F14)."""
    daily = [m.id for m in members if m.frequency == DAILY]
    weekly = [m.id for m in members if m.frequency != DAILY]
    claimed: set[int] = set()
    if daily:
        rows = session.execute(
            update(Member)
            .where(Member.id.in_(daily), or_(Member.digest_last_day.is_(None), Member.digest_last_day < day))
            .values(digest_last_day=day)
            .returning(Member.id)
            .execution_options(synchronize_session=False)
        )
        claimed.update(r[0] for r in rows)
    if weekly and week is not None:
        rows = session.execute(
            update(Member)
            .where(
                Member.id.in_(weekly), or_(Member.digest_last_week.is_(None), Member.digest_last_week < week)
            )
            .values(digest_last_week=week)
            .returning(Member.id)
            .execution_options(synchronize_session=False)
        )
        claimed.update(r[0] for r in rows)
    return claimed


def starts(session: Session, list_id: int, members: Sequence[DueMember]) -> dict[int, int]:
    """Where each member's next digest begins: after their mark; for a member who never
    had a digest (mark 0), after the last post before they joined, not at the list's first.
    """
    fresh = [m for m in members if m.mark == 0]
    out = {m.id: m.mark for m in members}
    if not fresh:
        return out
    rows = session.execute(
        select(Post.id, Post.received_at).where(Post.list_id == list_id).order_by(Post.received_at, Post.id)
    ).all()
    times = [r[1] for r in rows]
    best: list[int] = []
    top = 0
    for r in rows:
        top = max(top, r[0])
        best.append(top)
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


def enqueue_batch(
    session: Session,
    config: Config,
    mlist: MailingList,
    batch: list[DueMember],
    end: int,
    day_label: str,
    now: dt.datetime,
    begins: dict[int, int],
) -> tuple[int, int, int]:
    """One transaction's worth of members: move marks, enqueue digests; (queued, skipped, paused).

    ``begins``: where each member's digest begins (``starts``, computed once per run).
    Members whose delivery is paused by bounces have their marks moved and get nothing.
    """
    by_mark: dict[int, list[DueMember]] = defaultdict(list)
    for m in batch:
        by_mark[m.mark].append(m)
    paused = 0
    moved: list[DueMember] = []
    for old, members in by_mark.items():
        advanced = _advance(session, [m.id for m in members], old, end)
        paused += sum(advanced.values())
        moved += [m for m in members if m.id in advanced and not advanced[m.id]]
    load = partial(range_topics, session, mlist.id)
    held = member_contents(session, [(m.id, begins[m.id]) for m in moved], end, load)
    copies = [
        outbox.NewCopy(
            list_id=mlist.id,
            recipient=m.address,
            message_id=message_id(mlist.name, m.id, c.start, end, config.site.domain),
            member_id=m.id,
            kind=OutboxKind.DIGEST,
            dedupe_key=f"digest:{m.id}:{c.start}:{end}",
            payload={"from": c.start, "to": end, "frequency": m.frequency, "label": day_label},
        )
        for m, c in zip(moved, held, strict=True)
        if c.topics
    ]
    for _ in copies:
        crash.point("mid_digest_recipient_loop")
    queued = outbox.enqueue(session, copies, now)
    return queued, len(moved) - len(copies), paused
