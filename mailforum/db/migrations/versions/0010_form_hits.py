"""Web form rate limits stored in the database, so they hold across nodes.

A new table only; nothing existing is touched.

Revision ID: 0010
Revises: 0009
Create Date: 2026-12-03 20:20:00

"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0010"
down_revision: str | Sequence[str] | None = "0009"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

ID = sa.BigInteger().with_variant(sa.Integer(), "sqlite")


def upgrade() -> None:
    op.create_table(
        "form_hits",
        sa.Column("id", ID, nullable=False),
        sa.Column("scope", sa.String(length=16), nullable=False),
        sa.Column("key", sa.String(length=64), nullable=False),
        sa.Column("at", sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_form_hits")),
    )
    op.create_index(op.f("ix_form_hits_scope_key_at"), "form_hits", ["scope", "key", "at"])
    op.create_index(op.f("ix_form_hits_at"), "form_hits", ["at"])


def downgrade() -> None:
    op.drop_index(op.f("ix_form_hits_at"), table_name="form_hits")
    op.drop_index(op.f("ix_form_hits_scope_key_at"), table_name="form_hits")
    op.drop_table("form_hits")
