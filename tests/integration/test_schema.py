from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext

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
