"""Members: ``avoid_duplicates`` (Mailman's "avoid duplicate copies"), on for everyone.

A member named in a post's To or Cc gets the sender's copy, so the list's copy is
skipped unless they turn this off (RELIABILITY B52). A plain ``add_column`` with a
server default: existing members get the default without a data migration.

Revision ID: 0011
Revises: 0010
Create Date: 2026-12-03 20:00:00

"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

# revision identifiers, used by Alembic.
revision: str = "0011"
down_revision: str | Sequence[str] | None = "0010"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.add_column(
        "members", sa.Column("avoid_duplicates", sa.Boolean(), nullable=False, server_default=sa.true())
    )


def downgrade() -> None:
    op.drop_column("members", "avoid_duplicates")
