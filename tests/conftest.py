"""Fixtures: real databases (SQLite and PostgreSQL), a real server on loopback, a real sink.

Which databases the storage tests run on comes from ``MAILFORUM_TEST_DB``: a comma
list of ``sqlite`` and ``postgresql`` (default: both, PostgreSQL skipped with a
reason when it cannot be reached). CI sets it explicitly, so an unreachable
PostgreSQL fails there instead of being skipped. ``MAILFORUM_TEST_PG`` is the
server URL (default ``postgresql+psycopg://postgres@127.0.0.1:5432/postgres``).

Each test gets a fresh, migrated database: SQLite copies a template file, and
PostgreSQL clones a template database (``CREATE DATABASE … TEMPLATE``), both
migrated once per session.
"""

from __future__ import annotations

import os
import shutil
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

from mailforum.db import migrate
from mailforum.db.session import Database
from tests.helpers import (
    RecordingSink,
    ServerThread,
    Site,
    make_config,
)
from tests.relay import FakeRelay, fake_relay

PG_SERVER = os.environ.get("MAILFORUM_TEST_PG", "postgresql+psycopg://postgres@127.0.0.1:5432/postgres")
_REQUESTED = [
    b.strip() for b in os.environ.get("MAILFORUM_TEST_DB", "sqlite,postgresql").split(",") if b.strip()
]
_EXPLICIT = "MAILFORUM_TEST_DB" in os.environ


def _pg_admin():  # type: ignore[no-untyped-def]
    import psycopg

    url = PG_SERVER.replace("postgresql+psycopg://", "postgresql://")
    return psycopg.connect(url, autocommit=True, connect_timeout=3)


def _pg_available() -> str | None:
    try:
        with _pg_admin() as conn:
            conn.execute("SELECT 1")
    except Exception as exc:
        return str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
    return None


@pytest.fixture(scope="session")
def _templates(tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, str]]:
    """One migrated template per backend."""
    made: dict[str, str] = {}
    if "sqlite" in _REQUESTED:
        path = tmp_path_factory.mktemp("template") / "template.db"
        db = Database(f"sqlite:///{path}")
        migrate.upgrade(db)
        db.dispose()
        made["sqlite"] = str(path)
    pg_template = None
    if "postgresql" in _REQUESTED:
        problem = _pg_available()
        if problem is None:
            pg_template = f"mftest_tpl_{uuid.uuid4().hex[:10]}"
            with _pg_admin() as conn:
                conn.execute(f'CREATE DATABASE "{pg_template}"')
            db = Database(_pg_url(pg_template))
            migrate.upgrade(db)
            db.dispose()
            made["postgresql"] = pg_template
        else:
            made["postgresql-error"] = problem
    yield made
    if pg_template:
        with _pg_admin() as conn:
            conn.execute(f'DROP DATABASE IF EXISTS "{pg_template}" WITH (FORCE)')


def _pg_url(name: str) -> str:
    return PG_SERVER.rsplit("/", 1)[0] + "/" + name


def pytest_generate_tests(metafunc: pytest.Metafunc) -> None:
    if "backend" in metafunc.fixturenames:
        metafunc.parametrize("backend", _REQUESTED, scope="session")


@pytest.fixture
def db_url(backend: str, _templates: dict[str, str], tmp_path: Path) -> Iterator[str]:
    """A fresh migrated database of the backend under test."""
    if backend == "sqlite":
        target = tmp_path / "mailforum.db"
        shutil.copyfile(_templates["sqlite"], target)
        yield f"sqlite:///{target}"
        return
    if backend != "postgresql":
        raise pytest.UsageError(f"MAILFORUM_TEST_DB: unknown backend {backend!r}")
    if "postgresql" not in _templates:
        problem = _templates.get("postgresql-error", "not requested")
        if _EXPLICIT:
            pytest.fail(f"PostgreSQL requested by MAILFORUM_TEST_DB but unreachable: {problem}")
        pytest.skip(f"PostgreSQL unreachable ({problem}); set MAILFORUM_TEST_DB=sqlite to silence")
    name = f"mftest_{uuid.uuid4().hex[:12]}"
    with _pg_admin() as conn:
        conn.execute(f'CREATE DATABASE "{name}" TEMPLATE "{_templates["postgresql"]}"')
    try:
        yield _pg_url(name)
    finally:
        with _pg_admin() as conn:
            conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


@pytest.fixture
def db(db_url: str) -> Iterator[Database]:
    database = Database(db_url)
    yield database
    database.dispose()


@pytest.fixture
def sink() -> Iterator[RecordingSink]:
    """A real SMTP server standing in for the relay, recording what it accepts."""
    recording = RecordingSink()
    recording.start()
    yield recording
    recording.stop()


@pytest.fixture
def relay(site: Site) -> Iterator[FakeRelay]:
    """The scriptable fake relay (tests/relay.py) on the site's relay port."""
    with fake_relay(site.config.relay.port) as fake:
        yield fake


@pytest.fixture
def site(db_url: str, tmp_path: Path) -> Iterator[Site]:
    """A configured installation (config file, lists, members) on the database under test."""
    installation = Site(make_config(db_url), tmp_path)
    yield installation
    installation.db.dispose()


@pytest.fixture
def server(site: Site) -> Iterator[ServerThread]:
    """The real ingest server and spool processor, in this process, on free loopback ports."""
    running = ServerThread(site.config)
    running.start()
    yield running
    running.stop()
