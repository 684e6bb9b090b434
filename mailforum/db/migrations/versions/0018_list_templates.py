"""Mail templates stored per list, edited by owners in the browser.

``list_templates`` holds an owner's version of a mail template (notification, digest,
command reply, notice) by name; ``lists.templates_version`` is bumped by each change so
renderers drop their compiled copies of that list's templates.

Revision ID: 0018
Revises: 0017
Create Date: 2026-12-05 08:00:00

"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0018"
down_revision: str | Sequence[str] | None = "0017"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

ID = sa.BigInteger().with_variant(sa.Integer(), "sqlite")


def upgrade() -> None:
    op.add_column("lists", sa.Column("templates_version", sa.Integer(), nullable=False, server_default="0"))
    op.create_table(
        "list_templates",
        sa.Column("id", ID, nullable=False),
        sa.Column("list_id", ID, nullable=False),
        sa.Column("name", sa.String(length=200), nullable=False),
        sa.Column("source", sa.Text(), nullable=False),
        sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("updated_by", sa.String(length=320), nullable=False),
        sa.ForeignKeyConstraint(
            ["list_id"], ["lists.id"], name=op.f("fk_list_templates_list_id_lists"), ondelete="CASCADE"
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_list_templates")),
        sa.UniqueConstraint("list_id", "name", name=op.f("uq_list_templates_list_id_name")),
    )


def downgrade() -> None:
    op.drop_table("list_templates")
    op.drop_column("lists", "templates_version")
