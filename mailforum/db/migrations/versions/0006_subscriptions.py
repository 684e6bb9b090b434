"""Subscriptions by email: pending confirmations, and an index for the answer cap.

New table ``confirmations`` (double opt-in, single-use); a plain index on the outbox
for "automatic answers to this address in the last day". No table is recreated.

Revision ID: 0006
Revises: 0004
Create Date: 2026-11-26 06:45:00

"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0006"
down_revision: str | Sequence[str] | None = "0004"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

ID = sa.BigInteger().with_variant(sa.Integer(), "sqlite")


def upgrade() -> None:
    op.create_table(
        "confirmations",
        sa.Column("id", ID, nullable=False),
        sa.Column("list_id", ID, nullable=False),
        sa.Column("address", sa.String(length=320), nullable=False),
        sa.Column("display_name", sa.Text(), nullable=False),
        sa.Column("action", sa.String(length=16), nullable=False),
        sa.Column("topic_id", ID, nullable=True),
        sa.Column("source", sa.String(length=16), nullable=False),
        sa.Column("mailed", sa.Boolean(), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("expires_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("used_at", sa.DateTime(timezone=True), nullable=True),
        sa.ForeignKeyConstraint(
            ["list_id"], ["lists.id"], name=op.f("fk_confirmations_list_id_lists"), ondelete="CASCADE"
        ),
        sa.ForeignKeyConstraint(
            ["topic_id"], ["topics.id"], name=op.f("fk_confirmations_topic_id_topics"), ondelete="CASCADE"
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_confirmations")),
    )
    op.create_index(
        op.f("ix_confirmations_list_id_address_expires_at"),
        "confirmations",
        ["list_id", "address", "expires_at"],
    )
    op.create_index(op.f("ix_confirmations_address_created_at"), "confirmations", ["address", "created_at"])
    op.create_index(
        op.f("ix_outbox_kind_recipient_created_at"), "outbox", ["kind", "recipient", "created_at"]
    )


def downgrade() -> None:
    op.drop_index(op.f("ix_outbox_kind_recipient_created_at"), table_name="outbox")
    op.drop_index(op.f("ix_confirmations_address_created_at"), table_name="confirmations")
    op.drop_index(op.f("ix_confirmations_list_id_address_expires_at"), table_name="confirmations")
    op.drop_table("confirmations")
