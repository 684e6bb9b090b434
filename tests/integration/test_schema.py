from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext

from mailforum.db import migrate
from mailforum.db.base import Base


def test_migrations_build_exactly_the_models(db):
    with db.engine.connect() as conn:
        assert compare_metadata(MigrationContext.configure(conn), Base.metadata) == []
    assert migrate.current_revision(db) == migrate.head_revision()


def test_upgrade_is_a_no_op_when_current(db):
    before, after = migrate.upgrade(db)
    assert before == after == migrate.head_revision()
