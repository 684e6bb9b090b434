"""The inbound spool as a table: insert in batches, claim with a lease, park, retry.

A row is written, with the raw bytes and the envelope, before the SMTP server says
250; processing (parse, policy, thread, store) claims rows later and may fail and
retry. Claims increment ``attempts`` in their own commit, so a message that kills
the process still counts its attempts and is parked after ``max_attempts``.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from sqlalchemy import Connection, Table, func, insert, or_, select, update
from sqlalchemy.orm import Session, undefer

from mailforum.batching import chunks
from mailforum.db.models import SpoolEntry, SpoolState

__all__ = ["IMPORTED", "WEB", "ClaimedEntry", "NewMessage", "SpoolEntry"]

# The protocol of an entry ``import-mbox`` parked: retried, it is processed as an import.
IMPORTED = "import"
# The protocol of a post a signed-in member wrote in the browser (core.webpost): its From is
# the member, proved by the session. Only the web writes it; ingest writes "smtp" and "lmtp".
WEB = "web"


@dataclass(frozen=True, slots=True)
class NewMessage:
    """What the ingest server hands to the spool: the envelope and the raw bytes."""

    raw: bytes
    mail_from: str
    rcpt_tos: tuple[str, ...]
    protocol: str = "smtp"
    peer: str = ""


@dataclass(frozen=True, slots=True)
class ClaimedEntry:
    """A claimed spool row: the message as stored, for one processing attempt."""

    id: int
    raw: bytes
    mail_from: str
    rcpt_tos: tuple[str, ...]
    attempts: int
    received_at: dt.datetime
    protocol: str = "smtp"


def insert_batch(
    session: Session | Connection, messages: Sequence[NewMessage], now: dt.datetime
) -> list[int]:
    """Insert many spool rows in one statement; returns their ids in order.

    A Core insert on the table, not the ORM bulk path: it runs on every acknowledged
    message, and the ORM path costs twice the CPU for the same statement. The spool
    writer passes a Core ``Connection`` (``engine.begin()``), which skips the
    Session's bookkeeping too.
    """
    rows: list[dict[str, Any]] = [
        {
            "received_at": now,
            "mail_from": m.mail_from,
            "rcpt_tos": list(m.rcpt_tos),
            "protocol": m.protocol,
            "peer": m.peer,
            "raw": m.raw,
            "size": len(m.raw),
            "state": SpoolState.NEW.value,
            "attempts": 0,
            "next_attempt_at": now,
        }
        for m in messages
    ]
    table = SpoolEntry.__table__
    assert isinstance(table, Table)  # declared as a FromClause
    result = session.execute(insert(table).returning(table.c.id, sort_by_parameter_order=True), rows)
    return [row[0] for row in result]


def claim(
    session: Session,
    now: dt.datetime,
    limit: int,
    lease: dt.timedelta,
    retries: bool = False,
    node: str = "",
) -> list[ClaimedEntry]:
    """Take up to ``limit`` due rows for processing: count the attempt and lease them.

    ``retries`` picks rows that were tried before instead of fresh ones. On PostgreSQL
    concurrent processes skip each other's rows (FOR UPDATE SKIP LOCKED); on SQLite
    the writer lock taken at BEGIN IMMEDIATE does the same.
    """
    due = (
        select(SpoolEntry.id)
        .where(
            SpoolEntry.state == SpoolState.NEW.value,
            SpoolEntry.attempts > 0 if retries else SpoolEntry.attempts == 0,
            or_(SpoolEntry.next_attempt_at.is_(None), SpoolEntry.next_attempt_at <= now),
            or_(SpoolEntry.claimed_until.is_(None), SpoolEntry.claimed_until <= now),
        )
        .order_by(SpoolEntry.id)
        .limit(limit)
        .with_for_update(skip_locked=True)
    )
    ids = list(session.scalars(due))
    if not ids:
        return []
    session.execute(
        update(SpoolEntry)
        .where(SpoolEntry.id.in_(ids))
        .values(attempts=SpoolEntry.attempts + 1, claimed_until=now + lease, claimed_by=node or None)
    )
    rows = session.execute(
        select(
            SpoolEntry.id,
            SpoolEntry.raw,
            SpoolEntry.mail_from,
            SpoolEntry.rcpt_tos,
            SpoolEntry.attempts,
            SpoolEntry.received_at,
            SpoolEntry.protocol,
        )
        .where(SpoolEntry.id.in_(ids))
        .order_by(SpoolEntry.id)
    )
    return [
        ClaimedEntry(
            r.id, bytes(r.raw), r.mail_from, tuple(r.rcpt_tos), r.attempts, r.received_at, r.protocol
        )
        for r in rows
    ]


def release_leases(session: Session, node: str) -> int:
    """Give back the leases a previous run of this node held when it died (kill -9, power loss)."""
    result = session.execute(
        update(SpoolEntry)
        .where(SpoolEntry.state == SpoolState.NEW.value, SpoolEntry.claimed_by == node)
        .values(claimed_until=None, claimed_by=None)
    )
    return int(result.rowcount or 0)  # type: ignore[attr-defined]


def lock_new(session: Session, entry_ids: Sequence[int]) -> set[int]:
    """Lock ``entry_ids`` for this transaction, in one statement; the ids nobody processed meanwhile.

    Only the ids and states are read: the processor has the rest from its claim, so the
    raw bytes are not fetched twice.
    """
    new: set[int] = set()
    for chunk in chunks(sorted(entry_ids), 500):
        rows = session.execute(
            select(SpoolEntry.id, SpoolEntry.state).where(SpoolEntry.id.in_(chunk)).with_for_update()
        )
        new.update(entry_id for entry_id, state in rows if state == SpoolState.NEW.value)
    return new


@dataclass(frozen=True, slots=True)
class Finished:
    """A processed entry's end state, written with the others of its transaction by ``finish_all``."""

    id: int
    state: SpoolState
    outcome: str


def finish_all(session: Session, done: Sequence[Finished], now: dt.datetime) -> None:
    """Mark processed entries done (or discarded) in one executemany, before the commit."""
    if not done:
        return
    session.execute(
        update(SpoolEntry),
        [
            {
                "id": f.id,
                "state": f.state.value,
                "outcome": f.outcome,
                "error": None,
                "processed_at": now,
                "claimed_until": None,
                "claimed_by": None,
            }
            for f in done
        ],
    )


def record_failure(
    entry: SpoolEntry,
    error: str,
    now: dt.datetime,
    max_attempts: int,
    retry_delay: dt.timedelta,
    permanent: bool = False,
) -> bool:
    """Note a failed attempt; park the entry when it is out of attempts. True if parked."""
    entry.error = error[:4000]
    entry.claimed_until = None
    entry.claimed_by = None
    if permanent or entry.attempts >= max_attempts:
        entry.state = SpoolState.FAILED.value
        entry.processed_at = now
        return True
    # Back off: 1, 2, 4 … times the delay.
    entry.next_attempt_at = now + retry_delay * (2 ** max(0, entry.attempts - 1))
    return False


def retry(session: Session, ids: Sequence[int] | None, now: dt.datetime) -> int:
    """Send parked entries through processing again (all of them when ``ids`` is None)."""
    stmt = update(SpoolEntry).where(SpoolEntry.state == SpoolState.FAILED.value)
    if ids is not None:
        stmt = stmt.where(SpoolEntry.id.in_(list(ids)))
    result = session.execute(
        stmt.values(state=SpoolState.NEW.value, attempts=0, next_attempt_at=now, claimed_until=None)
    )
    return int(result.rowcount or 0)  # type: ignore[attr-defined]


def newest(session: Session, state: str | None, limit: int) -> list[SpoolEntry]:
    """The ``limit`` newest entries, in ``state`` or (None) in any (``mailforum spool list``)."""
    stmt = select(SpoolEntry).order_by(SpoolEntry.id.desc()).limit(limit)
    if state is not None:
        stmt = stmt.where(SpoolEntry.state == state)
    return list(session.scalars(stmt))


def entry_with_raw(session: Session, entry_id: int) -> SpoolEntry | None:
    """One entry with its raw bytes loaded (``mailforum spool show``)."""
    return session.get(SpoolEntry, entry_id, options=[undefer(SpoolEntry.raw)])


def counts(session: Session) -> dict[str, int]:
    rows = session.execute(select(SpoolEntry.state, func.count()).group_by(SpoolEntry.state))
    return {state: n for state, n in rows}
