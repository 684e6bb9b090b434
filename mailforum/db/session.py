"""Engines and sessions for SQLite (WAL, synchronous=FULL) and PostgreSQL (psycopg 3).

SQLite needs two things pysqlite does not do by itself: transactions that take the
write lock at BEGIN (``BEGIN IMMEDIATE``), so a writer waits in ``busy_timeout``
instead of failing with SQLITE_BUSY_SNAPSHOT halfway through, and working
SAVEPOINTs, which need SQLAlchemy to emit BEGIN itself. Readers (export, web) use
``Database.reader``, whose transactions begin deferred and never block writers.

Every SQLite write transaction is timed from the moment BEGIN IMMEDIATE got the
lock until its connection is handed back after COMMIT (``LockStats``): a hold
longer than ``SLOW_HOLD`` is logged as a warning with its thread and first
statement, since a writer that waits past ``busy_timeout`` turns into a 451 at
the SMTP door (RELIABILITY F20); ``dispose`` logs the longest hold and wait.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import sqlalchemy.exc
from sqlalchemy import Engine, create_engine, event, text
from sqlalchemy.engine import make_url
from sqlalchemy.orm import Session, sessionmaker

from mailforum.errors import DatabaseError

log = logging.getLogger(__name__)

READONLY = "mailforum_readonly"
SLOW_HOLD = 1.0  # seconds: a write-lock hold this long is logged as a warning


@dataclass
class LockStats:
    """SQLite write-lock holds (BEGIN IMMEDIATE acquired → connection returned after COMMIT)
    and waits (how long BEGIN IMMEDIATE blocked), for the log and for benchmarks."""

    transactions: int = 0
    longest_hold: float = 0.0
    longest_holder: str = ""  # thread name and first statement of the longest hold
    longest_wait: float = 0.0
    slow: int = 0  # holds longer than SLOW_HOLD
    waiting: int = 0  # threads of this process in BEGIN IMMEDIATE right now
    waiting_patient: int = 0  # of which marked patient (``Database.mark_patient``)
    patient: threading.local = field(default_factory=threading.local, repr=False)  # .marked per thread
    _lock: threading.Lock = field(default_factory=threading.Lock, repr=False)

    def asking(self) -> None:
        with self._lock:
            self.waiting += 1
            self.waiting_patient += getattr(self.patient, "marked", False)

    def waited(self, seconds: float) -> None:
        with self._lock:
            self.waiting -= 1
            self.waiting_patient -= getattr(self.patient, "marked", False)
            self.longest_wait = max(self.longest_wait, seconds)

    def held(self, seconds: float, holder: str) -> None:
        with self._lock:
            self.transactions += 1
            if seconds > self.longest_hold:
                self.longest_hold, self.longest_holder = seconds, holder
            if seconds > SLOW_HOLD:
                self.slow += 1
        if seconds > SLOW_HOLD:
            log.warning("SQLite write lock held %.2f s by %s", seconds, holder)

    def summary(self) -> str:
        return (
            f"{self.transactions} write transactions, longest hold {self.longest_hold:.3f} s"
            f" ({self.longest_holder or '-'}), longest wait {self.longest_wait:.3f} s,"
            f" {self.slow} over {SLOW_HOLD:.0f} s"
        )


def normalise_url(url: str) -> str:
    """``postgresql://`` means psycopg 3 here (SQLAlchemy's default would be psycopg2)."""
    if url.startswith("postgresql://") or url.startswith("postgres://"):
        return "postgresql+psycopg://" + url.split("://", 1)[1]
    return url


def _sqlite_engine(url: str, busy_timeout: float, stats: LockStats, **kwargs: Any) -> Engine:
    engine = create_engine(url, connect_args={"timeout": busy_timeout}, **kwargs)

    @event.listens_for(engine, "connect")
    def _connect(dbapi_connection: Any, _record: Any) -> None:
        dbapi_connection.isolation_level = None  # we emit BEGIN ourselves (see module doc)
        cursor = dbapi_connection.cursor()
        cursor.execute("PRAGMA journal_mode=WAL")
        cursor.execute("PRAGMA synchronous=FULL")
        cursor.execute(f"PRAGMA busy_timeout={int(busy_timeout * 1000)}")
        cursor.execute("PRAGMA foreign_keys=ON")
        cursor.close()

    @event.listens_for(engine, "begin")
    def _begin(conn: Any) -> None:
        if conn.get_execution_options().get(READONLY):
            conn.exec_driver_sql("BEGIN")
            return
        asked = time.monotonic()
        stats.asking()
        try:
            conn.exec_driver_sql("BEGIN IMMEDIATE")
        finally:
            stats.waited(time.monotonic() - asked)
        conn.info["lock_acquired"] = time.monotonic()
        conn.info["lock_holder"] = threading.current_thread().name

    @event.listens_for(engine, "before_cursor_execute")
    def _first_statement(conn: Any, _cursor: Any, statement: str, *_args: Any) -> None:
        info = conn.info
        if "lock_acquired" in info and "lock_sql" not in info and not statement.startswith("BEGIN"):
            info["lock_sql"] = " ".join(statement.split())[:80]

    @event.listens_for(engine, "checkin")
    def _returned(_dbapi_connection: Any, record: Any) -> None:
        acquired = record.info.pop("lock_acquired", None)
        if acquired is not None:
            holder = f"{record.info.pop('lock_holder', '?')}: {record.info.pop('lock_sql', '')}"
            stats.held(time.monotonic() - acquired, holder)

    return engine


class Database:
    """The engines and session factories of one database URL."""

    def __init__(self, url: str, busy_timeout: float = 5.0, pool_size: int = 10, create: bool = True) -> None:
        """``create=False``: a SQLite file that does not exist is an error, not a new empty
        database (every command but ``init``: a wrong path must not start a second forum)."""
        self.url = normalise_url(url)
        try:
            parsed = make_url(self.url)
        except sqlalchemy.exc.ArgumentError:
            raise DatabaseError(f"[database] url {url!r} is not a database URL") from None
        self.dialect = parsed.get_backend_name()
        self.lock_stats = LockStats()
        if self.dialect == "sqlite":
            if parsed.database in (None, "", ":memory:"):
                raise DatabaseError("[database] url must name a SQLite file, not memory")
            if not create:
                _require_file(parsed.database)
            self.engine = _sqlite_engine(self.url, busy_timeout, self.lock_stats)
        elif self.dialect == "postgresql":
            timeout_ms = int(busy_timeout * 1000)
            self.engine = create_engine(
                self.url,
                pool_size=pool_size,
                max_overflow=pool_size,
                pool_pre_ping=True,
                pool_timeout=busy_timeout,
                connect_args={
                    "connect_timeout": max(1, int(busy_timeout)),
                    # A lock wait longer than this is a 451, not a hung SMTP session (F10).
                    "options": f"-c lock_timeout={timeout_ms} -c statement_timeout={timeout_ms * 12}",
                },
            )
        else:
            raise DatabaseError(f"[database] url: unsupported database {self.dialect!r}")
        self.reader = self.engine.execution_options(**{READONLY: True})
        self._sessions = sessionmaker(self.engine, expire_on_commit=False)
        self._readers = sessionmaker(self.reader, expire_on_commit=False)

    @property
    def is_sqlite(self) -> bool:
        return self.dialect == "sqlite"

    def writers_waiting(self) -> bool:
        """True while another thread of this process waits for the SQLite write lock, one
        not marked patient.

        A long writer (the spool processor) commits early and steps aside when this is
        true: SQLite's lock is not fair, and its busy handler only polls.
        """
        return self.lock_stats.waiting > self.lock_stats.waiting_patient

    def mark_patient(self) -> None:
        """The calling thread's writes can wait for a long writer's transaction to end
        (``MAX_HOLD`` in runners/worker): delivery's claims and records, unlike a 250. The
        processor stepping aside for them after every message cut its batches into a
        transaction and an fsync per message while copies went out (bench/posts.py)."""
        self.lock_stats.patient.marked = True

    @contextmanager
    def session(self) -> Iterator[Session]:
        """A write transaction: committed when the block ends, rolled back on error."""
        with self._sessions() as session, session.begin():
            yield session

    @contextmanager
    def read_session(self) -> Iterator[Session]:
        with self._readers() as session, session.begin():
            yield session

    def ping(self) -> None:
        """Connect once, turning driver errors into one clear line."""
        try:
            with self.reader.connect() as conn:
                conn.execute(text("SELECT 1"))
        except sqlalchemy.exc.OperationalError as exc:
            raise DatabaseError(f"cannot reach the database {self.safe_url}: {_first_line(exc)}") from None

    @property
    def safe_url(self) -> str:
        return make_url(self.url).render_as_string(hide_password=True)

    def check_durability(self) -> None:
        """Refuse to accept mail on a database that could lose a committed message (F5)."""
        with self.reader.connect() as conn:
            if self.is_sqlite:
                mode = conn.exec_driver_sql("PRAGMA journal_mode").scalar()
                sync = conn.exec_driver_sql("PRAGMA synchronous").scalar()
                if str(mode).lower() != "wal" or int(sync or 0) < 2:
                    raise DatabaseError(
                        f"SQLite is not durable (journal_mode={mode}, synchronous={sync}); need WAL and FULL"
                    )
            else:
                sync = conn.exec_driver_sql("SHOW synchronous_commit").scalar()
                fsync = conn.exec_driver_sql("SHOW fsync").scalar()
                if sync == "off" or fsync == "off":
                    raise DatabaseError(
                        f"PostgreSQL is not durable (synchronous_commit={sync}, fsync={fsync}); turn both on"
                    )

    def dispose(self) -> None:
        if self.lock_stats.transactions:
            log.info("SQLite write lock: %s", self.lock_stats.summary())
        self.engine.dispose()


def _require_file(database: str) -> None:
    path = Path(database.removeprefix("file:").split("?", 1)[0]).absolute()
    if not path.is_file():
        raise DatabaseError(
            f"no SQLite database at {path}: check [database] url (relative paths start at the "
            "config file's folder), or run `mailforum init` to create a new, empty one there"
        )


def _first_line(exc: BaseException) -> str:
    orig = getattr(exc, "orig", None) or exc
    lines = str(orig).strip().splitlines()
    return lines[0] if lines else type(orig).__name__
