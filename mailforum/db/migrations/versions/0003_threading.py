"""Threading: a post's new title, and Outlook's Thread-Index (conversation, index) with an index.

Revision ID: 0003
Revises: 0004
Create Date: 2026-11-26 06:10:00

"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0003"
down_revision: str | Sequence[str] | None = "0004"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    with op.batch_alter_table("posts", schema=None) as batch_op:
        batch_op.add_column(sa.Column("title", sa.Text(), nullable=True))
        batch_op.add_column(sa.Column("conversation", sa.String(length=44), nullable=True))
        batch_op.add_column(sa.Column("thread_index", sa.String(length=2100), nullable=True))
        batch_op.create_index(
            batch_op.f("ix_posts_list_id_conversation"), ["list_id", "conversation"], unique=False
        )


def downgrade() -> None:
    with op.batch_alter_table("posts", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_posts_list_id_conversation"))
        batch_op.drop_column("thread_index")
        batch_op.drop_column("conversation")
        batch_op.drop_column("title")
