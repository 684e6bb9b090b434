"""Web archive: list visibility and address display, topic sort indexes, full-text search.

SQLite: an external-content FTS5 table over posts (subject, author name, text), kept
in step by triggers. PostgreSQL: a GIN index over the same text as a tsvector. Both
use language-neutral tokenising ('simple' / unicode61), so one query finds the same
posts on either database.

Note for later SQLite migrations: a batch_alter_table that *recreates* ``posts``
drops the three posts_fts_* triggers; recreate them with ``create_sqlite_search``.

Revision ID: 0004
Revises: 0001
Create Date: 2026-11-26 05:50:00

"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

# revision identifiers, used by Alembic.
revision: str = "0004"
down_revision: str | Sequence[str] | None = "0002"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

SQLITE_SEARCH = (
    "CREATE VIRTUAL TABLE IF NOT EXISTS posts_fts USING fts5("
    "subject, author_name, text_body, content='posts', content_rowid='id', "
    "tokenize='unicode61 remove_diacritics 2')",
    "CREATE TRIGGER IF NOT EXISTS posts_fts_ai AFTER INSERT ON posts BEGIN "
    "INSERT INTO posts_fts(rowid, subject, author_name, text_body) "
    "VALUES (new.id, new.subject, new.author_name, new.text_body); END",
    "CREATE TRIGGER IF NOT EXISTS posts_fts_ad AFTER DELETE ON posts BEGIN "
    "INSERT INTO posts_fts(posts_fts, rowid, subject, author_name, text_body) "
    "VALUES ('delete', old.id, old.subject, old.author_name, old.text_body); END",
    "CREATE TRIGGER IF NOT EXISTS posts_fts_au AFTER UPDATE OF subject, author_name, text_body ON posts BEGIN "
    "INSERT INTO posts_fts(posts_fts, rowid, subject, author_name, text_body) "
    "VALUES ('delete', old.id, old.subject, old.author_name, old.text_body); "
    "INSERT INTO posts_fts(rowid, subject, author_name, text_body) "
    "VALUES (new.id, new.subject, new.author_name, new.text_body); END",
    "INSERT INTO posts_fts(posts_fts) VALUES ('rebuild')",
)
POSTGRES_SEARCH = (
    "CREATE INDEX ix_posts_search ON posts USING gin "
    "(to_tsvector('simple'::regconfig, subject || ' ' || author_name || ' ' || text_body))"
)


def create_sqlite_search() -> None:
    for statement in SQLITE_SEARCH:
        op.execute(statement)


def upgrade() -> None:
    # Plain ALTER TABLE, never a batch "move and copy" of lists: with foreign keys on, SQLite's
    # DROP TABLE of the old copy would cascade into members, topics and posts.
    op.add_column(
        "lists", sa.Column("visibility", sa.String(length=16), nullable=False, server_default="public")
    )
    op.add_column(
        "lists", sa.Column("show_addresses", sa.Boolean(), nullable=False, server_default=sa.false())
    )
    # The topic list's three sorts, each an index that also covers the "has posts" filter, so a
    # deep page (OFFSET 30,000) reads only the index. The id makes the order total (stable paging).
    with op.batch_alter_table("topics", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_topics_list_id_last_post_at"))
        batch_op.create_index(
            batch_op.f("ix_topics_list_id_last_post_at_id_post_count"),
            ["list_id", "last_post_at", "id", "post_count"],
            unique=False,
        )
        batch_op.create_index(
            batch_op.f("ix_topics_list_id_created_at_id_post_count"),
            ["list_id", "created_at", "id", "post_count"],
            unique=False,
        )
        batch_op.create_index(
            batch_op.f("ix_topics_list_id_post_count"), ["list_id", "post_count"], unique=False
        )
    if op.get_bind().dialect.name == "sqlite":
        create_sqlite_search()
    else:
        op.execute(POSTGRES_SEARCH)


def downgrade() -> None:
    if op.get_bind().dialect.name == "sqlite":
        for name in ("posts_fts_au", "posts_fts_ad", "posts_fts_ai"):
            op.execute(f"DROP TRIGGER IF EXISTS {name}")
        op.execute("DROP TABLE IF EXISTS posts_fts")
    else:
        op.execute("DROP INDEX IF EXISTS ix_posts_search")
    with op.batch_alter_table("topics", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_topics_list_id_post_count"))
        batch_op.drop_index(batch_op.f("ix_topics_list_id_created_at_id_post_count"))
        batch_op.drop_index(batch_op.f("ix_topics_list_id_last_post_at_id_post_count"))
        batch_op.create_index(
            batch_op.f("ix_topics_list_id_last_post_at"), ["list_id", "last_post_at"], unique=False
        )
    # ALTER TABLE … DROP COLUMN (SQLite 3.35+), not a batch copy: see upgrade().
    op.execute("ALTER TABLE lists DROP COLUMN show_addresses")
    op.execute("ALTER TABLE lists DROP COLUMN visibility")
