"""Apply the Alembic migrations that ship in the package (``mailforum init``)."""

from __future__ import annotations

from pathlib import Path

from alembic import command
from alembic.config import Config as AlembicConfig
from alembic.runtime.migration import MigrationContext
from alembic.script import ScriptDirectory

from mailforum.db.session import Database
from mailforum.errors import DatabaseError

MIGRATIONS = Path(__file__).parent / "migrations"


def _alembic_config(db: Database) -> AlembicConfig:
    cfg = AlembicConfig()
    cfg.set_main_option("script_location", str(MIGRATIONS))
    cfg.set_main_option("sqlalchemy.url", db.url.replace("%", "%%"))
    return cfg


def head_revision() -> str:
    script = ScriptDirectory(str(MIGRATIONS))
    head = script.get_current_head()
    assert head is not None
    return head


def current_revision(db: Database) -> str | None:
    with db.reader.connect() as conn:
        return MigrationContext.configure(conn).get_current_revision()


def upgrade(db: Database) -> tuple[str | None, str]:
    """Bring the schema to the newest revision; a no-op when it is already there."""
    before = current_revision(db)
    cfg = _alembic_config(db)
    with db.engine.begin() as conn:
        cfg.attributes["connection"] = conn
        command.upgrade(cfg, "head")
    return before, head_revision()


def require_current(db: Database) -> None:
    """Fail with one clear line when the schema is missing or older than this code."""
    db.ping()
    current = current_revision(db)
    if current is None:
        raise DatabaseError(f"the database {db.safe_url} has no mailforum schema; run `mailforum init`")
    if current != head_revision():
        raise DatabaseError(
            f"the database schema is at {current}, this mailforum needs {head_revision()}; "
            "run `mailforum init` to upgrade"
        )
