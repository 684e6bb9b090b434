"""Engines and sessions for SQLite (WAL, synchronous=FULL) and PostgreSQL (psycopg 3).

SQLite needs two things pysqlite does not do by itself: transactions that take the
write lock at BEGIN (``BEGIN IMMEDIATE``), so a writer waits in ``busy_timeout``
instead of failing with SQLITE_BUSY_SNAPSHOT halfway through, and working
SAVEPOINTs, which need SQLAlchemy to emit BEGIN itself. Readers (export, web) use
``Database.reader``, whose transactions begin deferred and never block writers.
"""

from __future__ import annotations

import logging
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import sqlalchemy.exc
from sqlalchemy import Engine, create_engine, event, text
from sqlalchemy.engine import make_url
from sqlalchemy.orm import Session, sessionmaker

from mailforum.errors import DatabaseError

log = logging.getLogger(__name__)

READONLY = "mailforum_readonly"


def normalise_url(url: str) -> str:
    """``postgresql://`` means psycopg 3 here (SQLAlchemy's default would be psycopg2)."""
    if url.startswith("postgresql://") or url.startswith("postgres://"):
        return "postgresql+psycopg://" + url.split("://", 1)[1]
    return url


def _sqlite_engine(url: str, busy_timeout: float, **kwargs: Any) -> Engine:
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
        else:
            conn.exec_driver_sql("BEGIN IMMEDIATE")

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
        if self.dialect == "sqlite":
            if parsed.database in (None, "", ":memory:"):
                raise DatabaseError("[database] url must name a SQLite file, not memory")
            if not create:
                _require_file(parsed.database)
            self.engine = _sqlite_engine(self.url, busy_timeout)
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
