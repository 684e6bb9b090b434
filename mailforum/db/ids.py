"""Primary keys handed out before the INSERT, so a batch links its rows without a flush per row.

Threading links rows by id: a post to its new topic, a reply to a placeholder or to a
post imported earlier in the batch. Without an id until its INSERT, each such row cost a
flush of the unit of work (``import-mbox`` of the 2,403 SpamAssassin ham messages: 2,158
flushes, 1,420 of them for new topics, about half its time). With ``reserve`` the row has
its id at once and reaches the database with the batch's other rows at the next flush,
in many-row INSERTs (``Post.topic`` orders topics before posts; posts go in in the order
they were added, parents first: ``threads.link_parent``).

PostgreSQL: the column's own sequence (``nextval``), in blocks that grow within a
transaction (1, 2, 4 … ``MAX_BLOCK``), so a transaction that makes one topic asks for
one id and an import batch asks seldom. Ids a transaction reserved but did not use are
skipped, as a rolled-back INSERT's are; a block never outlives its transaction, so ids
stay in the order their transactions ran, as the digests' high-water marks expect.

SQLite: one past the largest id in the table or reserved by this transaction. A write
transaction holds the database's one write lock from ``BEGIN IMMEDIATE`` (db.session),
so no other connection inserts meanwhile. Every topic the application makes, and every
placeholder and imported post, takes its id from here; a live post, which takes its id
by autoincrement, is flushed after the rows reserved before it (the unit of work keeps
the order they were added in, and every ORM query flushes first), so it never takes a
reserved id.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from sqlalchemy import event, func, select, text
from sqlalchemy.orm import DeclarativeBase, Session

from mailforum.db.txcache import TxCache

MAX_BLOCK = 64


@dataclass
class _Reserved:
    next: int = 0  # SQLite: the next id to hand out, unless the table has a larger one
    known: bool = False  # SQLite: no row went in by autoincrement since ``next`` was read
    block: int = 1  # the size of the next block (PostgreSQL)
    free: list[int] = field(default_factory=list)  # a PostgreSQL block's ids not handed out yet


_RESERVED: TxCache[dict[str, _Reserved]] = TxCache("mailforum.ids.reserved", dict)
_WATCHED: TxCache[list[bool]] = TxCache("mailforum.ids.watched", list)  # the flush listener is set


def reserve(session: Session, model: type[DeclarativeBase]) -> int:
    """A new id for a row of ``model``'s table that this transaction will insert."""
    table = model.__table__.name  # type: ignore[attr-defined]
    state = _RESERVED.setdefault(session).setdefault(table, _Reserved())
    # On the session's connection, not through the ORM: a query there would flush first.
    connection = session.connection()
    if connection.dialect.name == "postgresql":
        if not state.free:
            rows = connection.execute(
                text("SELECT nextval(pg_get_serial_sequence(:table, 'id')) FROM generate_series(1, :n)"),
                {"table": table, "n": state.block},
            )
            state.free = sorted((int(r[0]) for r in rows), reverse=True)
            state.block = min(state.block * 2, MAX_BLOCK)
        return state.free.pop()
    if not state.known:  # the first time, or a flush may have inserted rows by autoincrement
        column = model.__table__.c.id
        largest = connection.execute(select(func.max(column))).scalar() or 0
        state.next = max(state.next, int(largest) + 1)
        state.known = True
        if not _WATCHED.get(session):
            event.listen(session, "after_flush", _flushed)
            _WATCHED.setdefault(session).append(True)
    state.next += 1
    return state.next - 1


def _flushed(session: Session, _context: object) -> None:
    for state in (_RESERVED.get(session) or {}).values():
        state.known = False
