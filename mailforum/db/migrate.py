"""Apply the Alembic migrations that ship in the package (``mailforum init``).

Every other command only checks that the schema is current (``require_current``); it
does so without Alembic, whose import and script scan cost more than the rest of a
command's start: the head is read from the version files' ``revision`` lines and the
current revision from the ``alembic_version`` table (tests/integration/test_schema.py
checks both against Alembic's own answers). Alembic is imported for upgrades only.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import TYPE_CHECKING

from sqlalchemy import inspect, text

from mailforum.db.session import Database
from mailforum.errors import DatabaseError

if TYPE_CHECKING:
    from alembic.config import Config as AlembicConfig

MIGRATIONS = Path(__file__).parent / "migrations"
VERSION_TABLE = "alembic_version"  # Alembic's default, which migrations/env.py keeps

# `revision: str = "0011"` and `down_revision: ... = "0010"` (or None, or a tuple for a merge).
_REVISION_LINE = re.compile(r"^(revision|down_revision)\b[^=\n]*=(.*)$", re.MULTILINE)
_QUOTED = re.compile(r"""["']([^"']+)["']""")


def _alembic_config(db: Database) -> AlembicConfig:
    from alembic.config import Config as AlembicConfig

    cfg = AlembicConfig()
    cfg.set_main_option("script_location", str(MIGRATIONS))
    cfg.set_main_option("sqlalchemy.url", db.url.replace("%", "%%"))
    return cfg


def head_revision() -> str:
    """The newest revision shipped: the one no other revision names as its parent."""
    revisions: set[str] = set()
    parents: set[str] = set()
    for path in (MIGRATIONS / "versions").glob("*.py"):
        for key, value in _REVISION_LINE.findall(path.read_text(encoding="utf-8")):
            (revisions if key == "revision" else parents).update(_QUOTED.findall(value))
    heads = revisions - parents
    if len(heads) != 1:
        raise DatabaseError(f"the migrations in {MIGRATIONS} have {len(heads)} heads, not one")
    return heads.pop()


def current_revision(db: Database) -> str | None:
    """The revision the database is at; None when it has no mailforum schema."""
    with db.reader.connect() as conn:
        if not inspect(conn).has_table(VERSION_TABLE):
            return None
        found = [row[0] for row in conn.execute(text(f"SELECT version_num FROM {VERSION_TABLE}"))]
    if len(found) > 1:
        raise DatabaseError(f"the database {db.safe_url} is at {len(found)} schema revisions at once")
    return found[0] if found else None


def upgrade(db: Database) -> tuple[str | None, str]:
    """Bring the schema to the newest revision; a no-op when it is already there."""
    from alembic import command

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
