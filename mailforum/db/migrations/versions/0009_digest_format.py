"""Digest format per list: "standard" (text and HTML) or "mime" (RFC 1153, message/rfc822 parts).

A plain ``add_column`` with a server default, so every existing list keeps the
standard digest without a data migration; never a batch copy of ``lists`` (its
children reference it with ON DELETE CASCADE, see 0007).

Revision ID: 0009
Revises: 0008
Create Date: 2026-11-26 09:00:00

"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

# revision identifiers, used by Alembic.
revision: str = "0009"
down_revision: str | Sequence[str] | None = "0008"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.add_column(
        "lists", sa.Column("digest_format", sa.String(16), nullable=False, server_default="standard")
    )


def downgrade() -> None:
    op.drop_column("lists", "digest_format")
