"""Retention: what housekeeping deletes once it has served its purpose (RELIABILITY L11).

Three purges, all with the horizon ``[spool] keep_days``:

- the raw bytes of processed spool entries (``done``, ``discarded``): each post keeps
  its own raw copy, so the archive, exports and rethreading lose nothing; the row (the
  envelope, the outcome, the recipients rethreading reads) stays. Parked entries keep
  theirs for the operator;
- sent outbox copies, but never before ``[outbound] verp_token_days``: a late bounce
  still finds the copy its VERP token names;
- confirmations ``keep_days`` after they expired: by then their token is refused as
  expired without the row, and the daily confirmation cap (24 h) no longer counts them.

Each purge works in batches of its own short transaction, so on SQLite the write lock
is never held long enough to make an SMTP session wait (RELIABILITY F20).
"""

from __future__ import annotations

import datetime as dt
import logging
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from sqlalchemy import Select, delete, func, select, update
from sqlalchemy.orm import Session

from mailforum.config import Config
from mailforum.db import outbox
from mailforum.db.models import Confirmation, OutboxEntry, SpoolEntry, SpoolState
from mailforum.db.session import Database

log = logging.getLogger(__name__)

BATCH = 500  # rows per transaction


@dataclass(frozen=True, slots=True)
class Purge:
    name: str  # what is purged, as the CLI and the log say it
    due: Callable[[Config, dt.datetime], Select[Any]]  # the ids of rows due
    apply: Callable[[Session, list[int]], None]


def _keep(config: Config) -> dt.timedelta:
    return dt.timedelta(days=config.spool.keep_days)


def _spool_due(config: Config, now: dt.datetime) -> Select[Any]:
    return select(SpoolEntry.id).where(
        SpoolEntry.state.in_([SpoolState.DONE.value, SpoolState.DISCARDED.value]),
        SpoolEntry.processed_at < now - _keep(config),
        func.length(SpoolEntry.raw) > 0,  # a length, not the bytes: neither database reads them
    )


def _spool_apply(session: Session, ids: list[int]) -> None:
    session.execute(update(SpoolEntry).where(SpoolEntry.id.in_(ids)).values(raw=b""))


def _outbox_due(config: Config, now: dt.datetime) -> Select[Any]:
    days = max(config.spool.keep_days, config.outbound.verp_token_days)
    return outbox.sent_before(now - dt.timedelta(days=days))


def _outbox_apply(session: Session, ids: list[int]) -> None:
    session.execute(delete(OutboxEntry).where(OutboxEntry.id.in_(ids)))


def _confirmations_due(config: Config, now: dt.datetime) -> Select[Any]:
    return select(Confirmation.id).where(Confirmation.expires_at < now - _keep(config))


def _confirmations_apply(session: Session, ids: list[int]) -> None:
    session.execute(delete(Confirmation).where(Confirmation.id.in_(ids)))


PURGES = (
    Purge("spool raw bytes", _spool_due, _spool_apply),
    Purge("sent outbox copies", _outbox_due, _outbox_apply),
    Purge("expired confirmations", _confirmations_due, _confirmations_apply),
)


def due(db: Database, config: Config, now: dt.datetime) -> dict[str, int]:
    """How many rows each purge would touch now (``housekeeping --dry-run``); changes nothing."""
    with db.read_session() as session:
        return {
            p.name: int(session.scalar(select(func.count()).select_from(p.due(config, now).subquery())) or 0)
            for p in PURGES
        }


def purge(db: Database, config: Config, now: dt.datetime, batch: int = BATCH) -> dict[str, int]:
    """Run every purge to the end, ``batch`` rows per transaction; how many rows each touched."""
    done: dict[str, int] = {}
    for p in PURGES:
        done[p.name] = 0
        while True:
            with db.session() as session:
                ids = list(session.scalars(p.due(config, now).order_by(None).limit(batch)))
                if ids:
                    p.apply(session, ids)
            if not ids:
                break
            done[p.name] += len(ids)
    if any(done.values()):
        log.info("retention: %s", ", ".join(f"{n} {name}" for name, n in done.items()))
    return done
