"""Signing in on the web: sign-in links, stored sessions, and outbox rows about no list.

Two new tables (``signin_links``, ``web_sessions``), and ``outbox.list_id`` may be NULL:
a sign-in mail belongs to no list (kind ``signin``). Existing rows are untouched.

Revision ID: 0013
Revises: 0012
Create Date: 2026-12-04 17:00:00

"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0013"
down_revision: str | Sequence[str] | None = "0012"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

ID = sa.BigInteger().with_variant(sa.Integer(), "sqlite")


def upgrade() -> None:
    op.create_table(
        "signin_links",
        sa.Column("id", ID, nullable=False),
        sa.Column("address", sa.String(length=320), nullable=False),
        sa.Column("browser", sa.String(length=64), nullable=False),
        sa.Column("next_path", sa.String(length=500), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("expires_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("used_at", sa.DateTime(timezone=True), nullable=True),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_signin_links")),
    )
    op.create_index(op.f("ix_signin_links_expires_at"), "signin_links", ["expires_at"])
    op.create_table(
        "web_sessions",
        sa.Column("id", ID, nullable=False),
        sa.Column("key_hash", sa.String(length=64), nullable=False),
        sa.Column("address", sa.String(length=320), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("seen_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("expires_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("user_agent", sa.String(length=200), nullable=False),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_web_sessions")),
        sa.UniqueConstraint("key_hash", name=op.f("uq_web_sessions_key_hash")),
    )
    op.create_index(op.f("ix_web_sessions_address"), "web_sessions", ["address"])
    op.create_index(op.f("ix_web_sessions_expires_at"), "web_sessions", ["expires_at"])
    with op.batch_alter_table("outbox", schema=None) as batch_op:
        batch_op.alter_column("list_id", existing_type=ID, nullable=True)


def downgrade() -> None:
    op.execute("DELETE FROM outbox WHERE list_id IS NULL")
    with op.batch_alter_table("outbox", schema=None) as batch_op:
        batch_op.alter_column("list_id", existing_type=ID, nullable=False)
    op.drop_index(op.f("ix_web_sessions_expires_at"), table_name="web_sessions")
    op.drop_index(op.f("ix_web_sessions_address"), table_name="web_sessions")
    op.drop_table("web_sessions")
    op.drop_index(op.f("ix_signin_links_expires_at"), table_name="signin_links")
    op.drop_table("signin_links")
