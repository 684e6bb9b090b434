from alembic import command
from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext
from alembic.script import ScriptDirectory
from sqlalchemy import text

from mailforum.db import migrate
from mailforum.db.base import Base


def _ours(name, type_, parent_names):
    """Search structures live outside the ORM: SQLite's FTS5 tables, PostgreSQL's GIN index."""
    return not (type_ == "table" and name.startswith("posts_fts")) and name != "ix_posts_search"


def test_migrations_build_exactly_the_models(db):
    with db.engine.connect() as conn:
        context = MigrationContext.configure(conn, opts={"include_name": _ours})
        assert compare_metadata(context, Base.metadata) == []
    assert migrate.current_revision(db) == migrate.head_revision()


def test_upgrade_is_a_no_op_when_current(db):
    before, after = migrate.upgrade(db)
    assert before == after == migrate.head_revision()


def old_list_at(db, revision: str) -> None:
    """The schema downgraded to ``revision``, with a list 'old' made then."""
    cfg = migrate._alembic_config(db)
    with db.engine.begin() as conn:
        cfg.attributes["connection"] = conn
        command.downgrade(cfg, revision)
    with db.engine.begin() as conn:
        conn.execute(
            text(
                "INSERT INTO lists (name, title, description, posting_policy, created_at) "
                "VALUES ('old', '', '', 'open', CURRENT_TIMESTAMP)"
            )
        )


def test_lists_made_before_0009_keep_the_standard_digest(db):
    """0009 adds lists.digest_format with a server default: existing lists stay "standard"."""
    old_list_at(db, "0008")
    migrate.upgrade(db)
    with db.engine.connect() as conn:
        assert conn.execute(text("SELECT digest_format FROM lists WHERE name = 'old'")).scalar() == "standard"
    assert migrate.current_revision(db) == migrate.head_revision()


def test_members_made_before_0011_avoid_duplicate_copies(db):
    """0011 adds members.avoid_duplicates with a server default: existing members get it on."""
    old_list_at(db, "0010")
    with db.engine.begin() as conn:
        conn.execute(
            text(
                "INSERT INTO members (list_id, address, display_name, delivery_mode, watch_own, receive_own,"
                " digest_mark, created_at) SELECT id, 'ann@example.com', '', 'all', true, false, 0,"
                " CURRENT_TIMESTAMP FROM lists WHERE name = 'old'"
            )
        )
    migrate.upgrade(db)
    with db.engine.connect() as conn:
        assert conn.execute(text("SELECT avoid_duplicates FROM members")).scalar() in (True, 1)
    assert migrate.current_revision(db) == migrate.head_revision()


def test_revisions_read_without_alembic_agree_with_alembic(db):
    """require_current reads the head from the version files and the current revision by SQL
    (no Alembic import on each command's start): both agree with Alembic, also mid-way."""
    assert migrate.head_revision() == ScriptDirectory(str(migrate.MIGRATIONS)).get_current_head()
    cfg = migrate._alembic_config(db)
    for step, target in ((command.downgrade, "0008"), (command.upgrade, "head")):
        with db.engine.begin() as conn:
            cfg.attributes["connection"] = conn
            step(cfg, target)
        with db.engine.connect() as conn:
            assert migrate.current_revision(db) == MigrationContext.configure(conn).get_current_revision()
    with db.engine.begin() as conn:
        conn.execute(text("DROP TABLE alembic_version"))
    assert migrate.current_revision(db) is None
