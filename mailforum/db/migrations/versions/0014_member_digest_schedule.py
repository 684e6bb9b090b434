"""Members: their own digest hour and time zone, set on their preferences page.

``digest_hour`` and ``digest_timezone`` are None for "the list's" (which may itself be
the site's ``[digest]``). A member with their own schedule gets their digest at their
local hour: ``digest_last_day`` and ``digest_last_week`` are the periods their own runs
claimed, as the list's columns of the same names are for the list's run (F14, F15).
Plain ``add_column``s of nullable columns: existing members keep the list's schedule.

Revision ID: 0014
Revises: 0013
Create Date: 2026-12-04 17:00:00

"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

# revision identifiers, used by Alembic.
revision: str = "0014"
down_revision: str | Sequence[str] | None = "0013"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    with op.batch_alter_table("members") as batch:
        batch.add_column(sa.Column("digest_hour", sa.Integer(), nullable=True))
        batch.add_column(sa.Column("digest_timezone", sa.String(length=64), nullable=True))
        batch.add_column(sa.Column("digest_last_day", sa.String(length=16), nullable=True))
        batch.add_column(sa.Column("digest_last_week", sa.String(length=32), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("members") as batch:
        batch.drop_column("digest_last_week")
        batch.drop_column("digest_last_day")
        batch.drop_column("digest_timezone")
        batch.drop_column("digest_hour")
