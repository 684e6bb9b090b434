"""Topics: tags, members following or muting tags, moderators' marks and decisions.

New tables ``tags``, ``topic_tags``, ``tag_subscriptions`` and ``topic_decisions``;
``topics`` gets ``locked_at``, ``pinned_at`` and ``manual`` (a server default keeps
existing topics unmarked). Post status ``removed`` needs no schema change.

Revision ID: 0016
Revises: 0015
Create Date: 2026-12-04 17:00:00

"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0016"
down_revision: str | Sequence[str] | None = "0015"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

ID = sa.BigInteger().with_variant(sa.Integer(), "sqlite")
WHEN = sa.DateTime(timezone=True)


def upgrade() -> None:
    op.add_column("topics", sa.Column("locked_at", WHEN, nullable=True))
    op.add_column("topics", sa.Column("pinned_at", WHEN, nullable=True))
    op.add_column("topics", sa.Column("manual", sa.Boolean(), nullable=False, server_default=sa.false()))
    op.add_column("topics", sa.Column("tagged", sa.Boolean(), nullable=False, server_default=sa.false()))
    op.create_index(op.f("ix_topics_list_id_pinned_at"), "topics", ["list_id", "pinned_at"])
    op.create_table(
        "tags",
        sa.Column("id", ID, nullable=False),
        sa.Column("list_id", ID, nullable=False),
        sa.Column("name", sa.String(length=64), nullable=False),
        sa.Column("created_at", WHEN, nullable=False),
        sa.ForeignKeyConstraint(
            ["list_id"], ["lists.id"], name=op.f("fk_tags_list_id_lists"), ondelete="CASCADE"
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_tags")),
        sa.UniqueConstraint("list_id", "name", name=op.f("uq_tags_list_id_name")),
    )
    op.create_table(
        "topic_tags",
        sa.Column("id", ID, nullable=False),
        sa.Column("topic_id", ID, nullable=False),
        sa.Column("tag_id", ID, nullable=False),
        sa.Column("last_post_at", WHEN, nullable=False),
        sa.Column("post_count", sa.Integer(), nullable=False, server_default="0"),
        sa.ForeignKeyConstraint(
            ["topic_id"], ["topics.id"], name=op.f("fk_topic_tags_topic_id_topics"), ondelete="CASCADE"
        ),
        sa.ForeignKeyConstraint(
            ["tag_id"], ["tags.id"], name=op.f("fk_topic_tags_tag_id_tags"), ondelete="CASCADE"
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_topic_tags")),
        sa.UniqueConstraint("topic_id", "tag_id", name=op.f("uq_topic_tags_topic_id_tag_id")),
    )
    op.create_index(
        op.f("ix_topic_tags_tag_id_last_post_at_topic_id_post_count"),
        "topic_tags",
        ["tag_id", "last_post_at", "topic_id", "post_count"],
    )
    op.create_table(
        "tag_subscriptions",
        sa.Column("id", ID, nullable=False),
        sa.Column("member_id", ID, nullable=False),
        sa.Column("tag_id", ID, nullable=False),
        sa.Column("kind", sa.String(length=8), nullable=False),
        sa.Column("created_at", WHEN, nullable=False),
        sa.ForeignKeyConstraint(
            ["member_id"],
            ["members.id"],
            name=op.f("fk_tag_subscriptions_member_id_members"),
            ondelete="CASCADE",
        ),
        sa.ForeignKeyConstraint(
            ["tag_id"], ["tags.id"], name=op.f("fk_tag_subscriptions_tag_id_tags"), ondelete="CASCADE"
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_tag_subscriptions")),
        sa.UniqueConstraint("member_id", "tag_id", name=op.f("uq_tag_subscriptions_member_id_tag_id")),
    )
    op.create_index(op.f("ix_tag_subscriptions_tag_id"), "tag_subscriptions", ["tag_id"])
    op.create_table(
        "topic_decisions",
        sa.Column("id", ID, nullable=False),
        sa.Column("list_id", ID, nullable=False),
        sa.Column("kind", sa.String(length=16), nullable=False),
        sa.Column("message_id", sa.String(length=998), nullable=False),
        sa.Column("into_message_id", sa.String(length=998), nullable=True),
        sa.Column("title", sa.Text(), nullable=True),
        sa.Column("created_at", WHEN, nullable=False),
        sa.ForeignKeyConstraint(
            ["list_id"], ["lists.id"], name=op.f("fk_topic_decisions_list_id_lists"), ondelete="CASCADE"
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_topic_decisions")),
    )
    op.create_index(op.f("ix_topic_decisions_list_id_id"), "topic_decisions", ["list_id", "id"])


def downgrade() -> None:
    op.drop_index(op.f("ix_topic_decisions_list_id_id"), table_name="topic_decisions")
    op.drop_table("topic_decisions")
    op.drop_index(op.f("ix_tag_subscriptions_tag_id"), table_name="tag_subscriptions")
    op.drop_table("tag_subscriptions")
    op.drop_index(op.f("ix_topic_tags_tag_id_last_post_at_topic_id_post_count"), table_name="topic_tags")
    op.drop_table("topic_tags")
    op.drop_table("tags")
    op.drop_index(op.f("ix_topics_list_id_pinned_at"), table_name="topics")
    # Plain DROP COLUMN (SQLite 3.35+): a batch copy of topics would drop a table posts refer to.
    op.drop_column("topics", "tagged")
    op.drop_column("topics", "manual")
    op.drop_column("topics", "pinned_at")
    op.drop_column("topics", "locked_at")
