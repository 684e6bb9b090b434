"""The outbound queue as a table: enqueue, claim with a lease, mark sent, retry or fail.

Rows are inserted in the transaction that stores the post, so a post and its
notifications exist together or not at all (DESIGN invariant 2). A worker claims
due rows with a lease in one statement — ``UPDATE … WHERE id IN (SELECT … FOR UPDATE
SKIP LOCKED) RETURNING …`` — so on PostgreSQL concurrent workers skip each other's
rows, and on SQLite the writer lock taken at ``BEGIN IMMEDIATE`` makes the claim a
single-writer step. A row is marked ``sent`` only after the relay's 250; a crash in
between leaves it claimed until the lease runs out, then it is sent again (the
relay hand-off window, RELIABILITY I3/F4).

Retries follow Postfix: 60 s, doubling to a 4000 s cap, for 5 days (RELIABILITY I5).
"""

from __future__ import annotations

import datetime as dt
import functools
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Any

from sqlalchemy import (
    Insert,
    Integer,
    Select,
    String,
    Table,
    bindparam,
    delete,
    func,
    insert,
    literal,
    or_,
    select,
    update,
)
from sqlalchemy.orm import Session, aliased

from mailforum import metrics
from mailforum.batching import chunks
from mailforum.db.base import Id, Json, UTCDateTime
from mailforum.db.models import Member, OutboxEntry, OutboxKind, OutboxState, Post, PostStatus
from mailforum.db.payloads import Payload

__all__ = ["Backoff", "ClaimedCopy", "NewCopy", "OutboxEntry", "Result"]

INSERT_BATCH = 1000


@dataclass(frozen=True, slots=True)
class NewCopy:
    """One row to enqueue: who gets which message."""

    list_id: int | None  # None only for mail about no list (kind "signin")
    recipient: str
    message_id: str
    post_id: int | None = None
    member_id: int | None = None
    kind: OutboxKind = OutboxKind.POST
    dedupe_key: str | None = None
    payload: Payload | None = None  # for the kinds without a post (db.payloads)


# What a copy is and where it goes, in ClaimedCopy's order: a fan-out writes them, a claim reads them.
_COPY_COLUMNS = (
    OutboxEntry.kind,
    OutboxEntry.list_id,
    OutboxEntry.post_id,
    OutboxEntry.member_id,
    OutboxEntry.recipient,
    OutboxEntry.message_id,
    OutboxEntry.payload,
)


@dataclass(frozen=True, slots=True)
class ClaimedCopy:
    """A leased row, with what the worker needs to render and send it."""

    id: int
    kind: str
    list_id: int | None  # None only for kind "signin"
    post_id: int | None
    member_id: int | None
    recipient: str
    message_id: str
    payload: dict[str, Any]  # as stored: read it through db.payloads
    attempts: int
    created_at: dt.datetime


@dataclass(frozen=True, slots=True)
class Result:
    """What the relay said about one claimed row.

    ``ok`` → sent; ``permanent`` (5xx) → failed; otherwise (4xx, connection error,
    no reply) → retried with backoff.
    """

    id: int
    ok: bool
    reply: str
    permanent: bool = False


@dataclass(frozen=True, slots=True)
class Backoff:
    """Retry schedule: ``base`` seconds, doubling per attempt up to ``cap``; give up after ``lifetime``."""

    base: float = 60.0
    cap: float = 4000.0
    lifetime: dt.timedelta = dt.timedelta(days=5)

    def delay(self, attempts: int) -> dt.timedelta:
        exponent = min(max(attempts - 1, 0), 32)
        return dt.timedelta(seconds=min(self.cap, self.base * 2**exponent))


def enqueue(session: Session, copies: Iterable[NewCopy], now: dt.datetime) -> int:
    """Insert rows in batches of ``INSERT_BATCH``; returns how many."""
    total = 0
    batch: list[dict[str, Any]] = []
    for copy in copies:
        batch.append(
            {
                "kind": copy.kind.value,
                "list_id": copy.list_id,
                "post_id": copy.post_id,
                "member_id": copy.member_id,
                "dedupe_key": copy.dedupe_key,
                "recipient": copy.recipient,
                "message_id": copy.message_id,
                "payload": copy.payload or {},
                "state": OutboxState.PENDING.value,
                "attempts": 0,
                "created_at": now,
                "next_attempt_at": now,
            }
        )
        if len(batch) >= INSERT_BATCH:
            session.execute(insert(OutboxEntry), batch)
            total += len(batch)
            batch = []
    if batch:
        session.execute(insert(OutboxEntry), batch)
        total += len(batch)
    return total


def enqueue_members(
    session: Session,
    *,
    list_id: int,
    post_id: int,
    message_id: str,
    member_ids: Sequence[int],
    now: dt.datetime,
    kind: OutboxKind = OutboxKind.POST,
    once_per_message: bool = False,
) -> int:
    """One row per member for a post, copied from the members table by the database.

    ``INSERT … SELECT``: the addresses never travel through Python, and the constant
    columns are bound once per batch, so 10,000 rows cost one statement per batch
    rather than 10,000 parameter sets (bench/fanout.py). With ``once_per_message`` a
    member whose address has a row of this kind and Message-ID for another list (a
    cross-post) is left out, in the same statement. Returns how many rows were written.
    """
    statement = _members_insert(once_per_message)
    total = 0
    for chunk in chunks(member_ids, INSERT_BATCH * 5):
        params = {
            "kind": kind.value,
            "list_id": list_id,
            "post_id": post_id,
            "message_id": message_id,
            "now": now,
            "members": list(chunk),
        }
        result = session.execute(statement, params)
        total += result.rowcount  # type: ignore[attr-defined]
    return total


@functools.cache
def _members_insert(once_per_message: bool) -> Insert:
    """``enqueue_members``' statement, built once: every post's fan-out runs it, and building
    and keying a statement of this size cost more of our CPU than the database spent on it."""
    columns = [
        *_COPY_COLUMNS,
        OutboxEntry.state,
        OutboxEntry.attempts,
        OutboxEntry.created_at,
        OutboxEntry.next_attempt_at,
    ]
    rows = select(
        bindparam("kind", type_=String()),
        bindparam("list_id", type_=Id),
        bindparam("post_id", type_=Id),
        Member.id,
        Member.address,
        bindparam("message_id", type_=String()),
        literal({}, Json),
        literal(OutboxState.PENDING.value, String()),
        literal(0, Integer()),
        bindparam("now", type_=UTCDateTime()),
        bindparam("now", type_=UTCDateTime()),
    ).where(Member.id.in_(bindparam("members", expanding=True)))
    if once_per_message:
        # An uncorrelated NOT IN: the addresses that already have this Message-ID from
        # another list, read once through the (message_id, kind) index. (A correlated NOT
        # EXISTS let the planners walk every earlier copy to each member instead, so the
        # cost of a post grew with the archive.)
        elsewhere = aliased(OutboxEntry)
        rows = rows.where(
            Member.address.not_in(
                select(elsewhere.recipient).where(
                    elsewhere.message_id == bindparam("message_id"),
                    elsewhere.kind == bindparam("kind"),
                    elsewhere.list_id != bindparam("list_id"),
                )
            )
        )
    # On the table, not the entity: the ORM would take the parameters for a bulk insert.
    table: Table = OutboxEntry.__table__  # type: ignore[assignment]
    return insert(table).from_select([column.key for column in columns], rows)


def _due(now: dt.datetime) -> Any:
    return (
        OutboxEntry.state == OutboxState.PENDING.value,
        OutboxEntry.next_attempt_at <= now,
        or_(OutboxEntry.claimed_until.is_(None), OutboxEntry.claimed_until <= now),
    )


def claim(
    session: Session, now: dt.datetime, limit: int, lease: dt.timedelta, worker: str
) -> list[ClaimedCopy]:
    """Lease up to ``limit`` due rows to ``worker``, oldest due first; counts the attempt
    (``record`` takes it back when the copy is sent, ``release`` when it was not tried).

    ``next_attempt_at`` moves to the lease's end too: that is when the row is due again if
    no answer is recorded, ``outbox list`` shows it, and the claimed rows leave the range
    of the (state, next_attempt_at) index the next claim reads (else a fan-out of 10,000
    copies has each claim step over all the rows claimed before it)."""
    due = (
        select(OutboxEntry.id)
        .where(*_due(now))
        .order_by(OutboxEntry.next_attempt_at, OutboxEntry.id)
        .limit(limit)
        .with_for_update(skip_locked=True)
        .scalar_subquery()
    )
    stmt = (
        update(OutboxEntry)
        .where(OutboxEntry.id.in_(due))
        .values(
            claimed_until=now + lease,
            next_attempt_at=now + lease,
            claimed_by=worker[:64],
            attempts=OutboxEntry.attempts + 1,
        )
        .returning(
            OutboxEntry.id,
            *_COPY_COLUMNS,
            OutboxEntry.attempts,
            OutboxEntry.created_at,
        )
        .execution_options(synchronize_session=False)
    )
    rows = session.execute(stmt).all()
    claimed = [ClaimedCopy(*row) for row in rows]
    claimed.sort(key=lambda c: c.id)
    return claimed


def record(
    session: Session,
    results: Sequence[Result],
    claimed: dict[int, ClaimedCopy],
    now: dt.datetime,
    backoff: Backoff,
) -> None:
    """Store the relay's answers: sent, failed, or due again after the backoff.

    ``attempts`` ends up counting the tries that did not succeed: the claim counted the try
    in hand, and a sent copy takes it back, together with the reply of an earlier failure
    (``outbox list`` shows no stale error on a sent row).
    """
    sent = [r for r in results if r.ok]
    metrics.COPIES_SENT.inc(len(sent))
    for result in sent:
        metrics.DELIVERY_SECONDS.observe(max((now - claimed[result.id].created_at).total_seconds(), 0.0))
    for chunk in chunks([r.id for r in sent], INSERT_BATCH):
        session.execute(
            update(OutboxEntry)
            .where(OutboxEntry.id.in_(chunk))
            .values(
                state=OutboxState.SENT.value,
                sent_at=now,
                claimed_until=None,
                attempts=OutboxEntry.attempts - 1,
                last_reply=None,
            )
            .execution_options(synchronize_session=False)
        )
    for result in results:
        if result.ok:
            continue
        item = claimed[result.id]
        values: dict[str, Any] = {"claimed_until": None, "last_reply": result.reply[:2000]}
        expires = item.created_at + backoff.lifetime
        if result.permanent:
            values["state"] = OutboxState.FAILED.value
            metrics.COPIES_FAILED.inc()
        elif now >= expires:
            values["state"] = OutboxState.FAILED.value
            metrics.COPIES_FAILED.inc()
            values["last_reply"] = f"gave up after {backoff.lifetime}: {result.reply}"[:2000]
        else:
            values["next_attempt_at"] = min(now + backoff.delay(item.attempts), expires)
        session.execute(
            update(OutboxEntry)
            .where(OutboxEntry.id == result.id, OutboxEntry.state == OutboxState.PENDING.value)
            .values(**values)
            .execution_options(synchronize_session=False)
        )
    _drop_removed(session, [r.id for r in results if not r.ok and claimed[r.id].post_id is not None])


def _drop_removed(session: Session, ids: Sequence[int]) -> None:
    """Delete those of the copies just tried and not sent whose post was removed while they
    were out: a moderator's removal drops the copies not sent yet, but not one a worker held
    then (core.topics.drop_unsent_copies); that one goes no further than the try in hand
    (RELIABILITY F26)."""
    removed = select(Post.id).where(Post.status == PostStatus.REMOVED.value)
    for chunk in chunks(ids, INSERT_BATCH):
        session.execute(
            delete(OutboxEntry)
            .where(
                OutboxEntry.id.in_(chunk),
                OutboxEntry.state != OutboxState.SENT.value,
                OutboxEntry.post_id.in_(removed),
            )
            .execution_options(synchronize_session=False)
        )


def release(session: Session, ids: Sequence[int], now: dt.datetime) -> None:
    """Give claimed rows back unsent (shutdown): due at once, the attempt not counted."""
    for chunk in chunks(ids, INSERT_BATCH):
        session.execute(
            update(OutboxEntry)
            .where(OutboxEntry.id.in_(chunk), OutboxEntry.state == OutboxState.PENDING.value)
            .values(claimed_until=None, next_attempt_at=now, attempts=OutboxEntry.attempts - 1)
            .execution_options(synchronize_session=False)
        )


def retry(session: Session, ids: Sequence[int] | None, now: dt.datetime, list_id: int | None = None) -> int:
    """Queue failed rows again (all of them when ``ids`` is None; only the list's with
    ``list_id``), with a fresh lifetime, in one UPDATE."""
    stmt = update(OutboxEntry).where(OutboxEntry.state == OutboxState.FAILED.value)
    if ids is not None:
        stmt = stmt.where(OutboxEntry.id.in_(list(ids)))
    if list_id is not None:
        stmt = stmt.where(OutboxEntry.list_id == list_id)
    result = session.execute(
        stmt.values(
            state=OutboxState.PENDING.value,
            attempts=0,
            created_at=now,
            next_attempt_at=now,
            claimed_until=None,
        ).execution_options(synchronize_session=False)
    )
    return int(result.rowcount or 0)  # type: ignore[attr-defined]


def newest(session: Session, state: str | None, limit: int) -> list[OutboxEntry]:
    """The ``limit`` newest rows, in ``state`` or (None) in any (``mailforum outbox list``)."""
    stmt = select(OutboxEntry).order_by(OutboxEntry.id.desc()).limit(limit)
    if state is not None:
        stmt = stmt.where(OutboxEntry.state == state)
    return list(session.scalars(stmt))


@dataclass(frozen=True, slots=True)
class OutboxStatus:
    """What ``mailforum outbox status`` shows: rows by state, rows claimed, the oldest pending."""

    counts: dict[str, int]
    in_flight: int
    oldest_pending: dt.datetime | None


def purge(session: Session, before: dt.datetime, batch: int = 10_000) -> int:
    """Delete copies that were sent before ``before``: keeps the table bounded (RELIABILITY L11).

    Failed and pending rows stay for the operator; bounces and answer caps look back
    days, not months, so a purge horizon of a few weeks loses nothing they need.
    """
    total = 0
    while True:
        ids = list(session.scalars(sent_before(before).limit(batch)))
        if not ids:
            return total
        session.execute(delete(OutboxEntry).where(OutboxEntry.id.in_(ids)))
        total += len(ids)


def sent_before(before: dt.datetime) -> Select[Any]:
    """The ids of copies sent before ``before`` (what ``purge`` and housekeeping delete)."""
    return select(OutboxEntry.id).where(
        OutboxEntry.state == OutboxState.SENT.value, OutboxEntry.sent_at < before
    )


def status(session: Session, now: dt.datetime) -> OutboxStatus:
    """Counts by state, rows currently claimed, and when the oldest pending row was queued."""
    counts = {
        s: n for s, n in session.execute(select(OutboxEntry.state, func.count()).group_by(OutboxEntry.state))
    }
    in_flight = session.scalar(
        select(func.count()).where(
            OutboxEntry.state == OutboxState.PENDING.value, OutboxEntry.claimed_until > now
        )
    )
    oldest = session.scalar(
        select(func.min(OutboxEntry.created_at)).where(OutboxEntry.state == OutboxState.PENDING.value)
    )
    return OutboxStatus(counts, int(in_flight or 0), oldest)
