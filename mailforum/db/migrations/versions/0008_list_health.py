"""List health: bounce scores on members, moderators, allowed senders, list moderation settings.

Plain ``ALTER TABLE … ADD COLUMN`` on members and lists, never a batch copy: with
foreign keys on, SQLite's DROP TABLE of the old copy would cascade into their children.

Revision ID: 0008
Revises: 0006
Create Date: 2026-11-26 06:50:00

"""

from collections.abc import Sequence
from typing import Any

import sqlalchemy as sa
from alembic import op

revision: str = "0008"
down_revision: str | Sequence[str] | None = "0007"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

ID = sa.BigInteger().with_variant(sa.Integer(), "sqlite")
MEMBER_COLUMNS: tuple[sa.Column[Any], ...] = (
    sa.Column("bounce_score", sa.Double(), nullable=False, server_default="0"),
    sa.Column("bounce_last_at", sa.DateTime(timezone=True), nullable=True),
    sa.Column("bounce_soft_at", sa.DateTime(timezone=True), nullable=True),
    sa.Column("delivery_disabled_at", sa.DateTime(timezone=True), nullable=True),
    sa.Column("bounce_warnings", sa.Integer(), nullable=False, server_default="0"),
    sa.Column("bounce_warned_at", sa.DateTime(timezone=True), nullable=True),
)
LIST_COLUMNS: tuple[sa.Column[Any], ...] = (
    sa.Column("moderate_first_post", sa.Boolean(), nullable=False, server_default=sa.false()),
    sa.Column("unverified_action", sa.String(length=16), nullable=False, server_default="hold"),
)


def _address_table(name: str) -> None:
    op.create_table(
        name,
        sa.Column("id", ID, nullable=False),
        sa.Column("list_id", ID, nullable=False),
        sa.Column("address", sa.String(length=320), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(
            ["list_id"], ["lists.id"], name=op.f(f"fk_{name}_list_id_lists"), ondelete="CASCADE"
        ),
        sa.PrimaryKeyConstraint("id", name=op.f(f"pk_{name}")),
        sa.UniqueConstraint("list_id", "address", name=op.f(f"uq_{name}_list_id_address")),
    )


def upgrade() -> None:
    for column in MEMBER_COLUMNS:
        op.add_column("members", column)
    op.create_index(op.f("ix_members_delivery_disabled_at"), "members", ["delivery_disabled_at"])
    for column in LIST_COLUMNS:
        op.add_column("lists", column)
    _address_table("moderators")
    _address_table("allowed_senders")


def downgrade() -> None:
    op.drop_table("allowed_senders")
    op.drop_table("moderators")
    op.drop_index(op.f("ix_members_delivery_disabled_at"), table_name="members")
    # ALTER TABLE … DROP COLUMN (SQLite 3.35+), not a batch copy: see the module docstring.
    for column in LIST_COLUMNS:
        op.execute(f"ALTER TABLE lists DROP COLUMN {column.name}")
    for column in MEMBER_COLUMNS:
        op.execute(f"ALTER TABLE members DROP COLUMN {column.name}")
