"""Authors may delete their own posts from the web for a while: ``lists.author_delete_minutes``.

The minutes after a post arrives during which its signed-in author may delete it on the
web (0: never). A plain ``add_column`` with a server default, so existing lists get the
default window (60 minutes) without a data migration; never a batch copy of ``lists``
(its children reference it with ON DELETE CASCADE, see 0007).

Revision ID: 0019
Revises: 0018
Create Date: 2026-12-05 07:20:00

"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0019"
down_revision: str | Sequence[str] | None = "0018"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.add_column(
        "lists", sa.Column("author_delete_minutes", sa.Integer(), nullable=False, server_default="60")
    )


def downgrade() -> None:
    op.drop_column("lists", "author_delete_minutes")
