"""Digests: per-list schedule overrides and the last scheduled period with its end mark.

Plain ``add_column`` only: ``lists`` is referenced with ON DELETE CASCADE, so on
SQLite it must never be batch-recreated (the copy would wipe members and posts).

Revision ID: 0007
Revises: 0006
Create Date: 2026-11-26 06:50:00

"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

# revision identifiers, used by Alembic.
revision: str = "0007"
down_revision: str | Sequence[str] | None = "0006"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.add_column("lists", sa.Column("digest_hour", sa.Integer(), nullable=True))
    op.add_column("lists", sa.Column("digest_timezone", sa.String(64), nullable=True))
    op.add_column("lists", sa.Column("digest_last_day", sa.String(16), nullable=True))
    op.add_column("lists", sa.Column("digest_last_week", sa.String(32), nullable=True))
    op.add_column("lists", sa.Column("digest_run_mark", sa.Integer(), nullable=True))


def downgrade() -> None:
    for column in (
        "digest_run_mark",
        "digest_last_week",
        "digest_last_day",
        "digest_timezone",
        "digest_hour",
    ):
        op.drop_column("lists", column)
