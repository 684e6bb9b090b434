"""Core schema: lists, members, topics, posts (with placeholders), the inbound spool, topic subscriptions.

Revision ID: 0001
Revises:
Create Date: 2026-11-26 05:33:44.094480

"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

# revision identifiers, used by Alembic.
revision: str = "0001"
down_revision: str | Sequence[str] | None = None
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    """Upgrade schema."""

    op.create_table(
        "lists",
        sa.Column("id", sa.BigInteger().with_variant(sa.Integer(), "sqlite"), nullable=False),
        sa.Column("name", sa.String(length=64), nullable=False),
        sa.Column("title", sa.Text(), nullable=False),
        sa.Column("description", sa.Text(), nullable=False),
        sa.Column("posting_policy", sa.String(length=16), nullable=False),
        sa.Column("subject_tag", sa.Text(), nullable=True),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_lists")),
        sa.UniqueConstraint("name", name=op.f("uq_lists_name")),
    )
    op.create_table(
        "spool",
        sa.Column("id", sa.BigInteger().with_variant(sa.Integer(), "sqlite"), nullable=False),
        sa.Column("received_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("mail_from", sa.Text(), nullable=False),
        sa.Column(
            "rcpt_tos",
            sa.JSON().with_variant(postgresql.JSONB(astext_type=sa.Text()), "postgresql"),
            nullable=False,
        ),
        sa.Column("protocol", sa.String(length=8), nullable=False),
        sa.Column("peer", sa.Text(), nullable=False),
        sa.Column("raw", sa.LargeBinary().with_variant(postgresql.BYTEA(), "postgresql"), nullable=False),
        sa.Column("size", sa.Integer(), nullable=False),
        sa.Column("state", sa.String(length=16), nullable=False),
        sa.Column("attempts", sa.Integer(), nullable=False),
        sa.Column("error", sa.Text(), nullable=True),
        sa.Column("outcome", sa.Text(), nullable=True),
        sa.Column("next_attempt_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("claimed_until", sa.DateTime(timezone=True), nullable=True),
        sa.Column("claimed_by", sa.String(length=255), nullable=True),
        sa.Column("processed_at", sa.DateTime(timezone=True), nullable=True),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_spool")),
    )
    with op.batch_alter_table("spool", schema=None) as batch_op:
        batch_op.create_index(
            batch_op.f("ix_spool_state_next_attempt_at"), ["state", "next_attempt_at"], unique=False
        )

    op.create_table(
        "members",
        sa.Column("id", sa.BigInteger().with_variant(sa.Integer(), "sqlite"), nullable=False),
        sa.Column("list_id", sa.BigInteger().with_variant(sa.Integer(), "sqlite"), nullable=False),
        sa.Column("address", sa.String(length=320), nullable=False),
        sa.Column("display_name", sa.Text(), nullable=False),
        sa.Column("delivery_mode", sa.String(length=16), nullable=False),
        sa.Column("watch_own", sa.Boolean(), nullable=False),
        sa.Column("receive_own", sa.Boolean(), nullable=False),
        sa.Column("digest_frequency", sa.String(length=16), nullable=True),
        sa.Column("digest_mark", sa.Integer(), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(
            ["list_id"], ["lists.id"], name=op.f("fk_members_list_id_lists"), ondelete="CASCADE"
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_members")),
        sa.UniqueConstraint("list_id", "address", name=op.f("uq_members_list_id_address")),
    )
    op.create_table(
        "topics",
        sa.Column("id", sa.BigInteger().with_variant(sa.Integer(), "sqlite"), nullable=False),
        sa.Column("list_id", sa.BigInteger().with_variant(sa.Integer(), "sqlite"), nullable=False),
        sa.Column("subject", sa.Text(), nullable=False),
        sa.Column("subject_key", sa.String(length=255), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("last_post_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("post_count", sa.Integer(), nullable=False),
        sa.Column("merged_into_id", sa.BigInteger().with_variant(sa.Integer(), "sqlite"), nullable=True),
        sa.ForeignKeyConstraint(
            ["list_id"], ["lists.id"], name=op.f("fk_topics_list_id_lists"), ondelete="CASCADE"
        ),
        sa.ForeignKeyConstraint(
            ["merged_into_id"], ["topics.id"], name=op.f("fk_topics_merged_into_id_topics")
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_topics")),
    )
    with op.batch_alter_table("topics", schema=None) as batch_op:
        batch_op.create_index(
            batch_op.f("ix_topics_list_id_last_post_at"), ["list_id", "last_post_at"], unique=False
        )
        batch_op.create_index(
            batch_op.f("ix_topics_list_id_subject_key_last_post_at"),
            ["list_id", "subject_key", "last_post_at"],
            unique=False,
        )

    op.create_table(
        "posts",
        sa.Column("id", sa.BigInteger().with_variant(sa.Integer(), "sqlite"), nullable=False),
        sa.Column("list_id", sa.BigInteger().with_variant(sa.Integer(), "sqlite"), nullable=False),
        sa.Column("topic_id", sa.BigInteger().with_variant(sa.Integer(), "sqlite"), nullable=False),
        sa.Column("parent_id", sa.BigInteger().with_variant(sa.Integer(), "sqlite"), nullable=True),
        sa.Column("message_id", sa.String(length=998), nullable=False),
        sa.Column("status", sa.String(length=16), nullable=False),
        sa.Column("hold_reason", sa.Text(), nullable=True),
        sa.Column("author_address", sa.String(length=320), nullable=False),
        sa.Column("author_name", sa.Text(), nullable=False),
        sa.Column("subject", sa.Text(), nullable=False),
        sa.Column("date", sa.DateTime(timezone=True), nullable=True),
        sa.Column("received_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("text_body", sa.Text(), nullable=False),
        sa.Column("html_body", sa.Text(), nullable=True),
        sa.Column(
            "attachments",
            sa.JSON().with_variant(postgresql.JSONB(astext_type=sa.Text()), "postgresql"),
            nullable=False,
        ),
        sa.Column("raw", sa.LargeBinary().with_variant(postgresql.BYTEA(), "postgresql"), nullable=True),
        sa.Column("fingerprint", sa.String(length=64), nullable=True),
        sa.Column("spool_id", sa.BigInteger().with_variant(sa.Integer(), "sqlite"), nullable=True),
        sa.ForeignKeyConstraint(
            ["list_id"], ["lists.id"], name=op.f("fk_posts_list_id_lists"), ondelete="CASCADE"
        ),
        sa.ForeignKeyConstraint(["parent_id"], ["posts.id"], name=op.f("fk_posts_parent_id_posts")),
        sa.ForeignKeyConstraint(["spool_id"], ["spool.id"], name=op.f("fk_posts_spool_id_spool")),
        sa.ForeignKeyConstraint(["topic_id"], ["topics.id"], name=op.f("fk_posts_topic_id_topics")),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_posts")),
        sa.UniqueConstraint("list_id", "message_id", name=op.f("uq_posts_list_id_message_id")),
    )
    with op.batch_alter_table("posts", schema=None) as batch_op:
        batch_op.create_index(
            batch_op.f("ix_posts_list_id_received_at"), ["list_id", "received_at"], unique=False
        )
        batch_op.create_index(batch_op.f("ix_posts_parent_id"), ["parent_id"], unique=False)
        batch_op.create_index(
            batch_op.f("ix_posts_list_id_author_address_received_at"),
            ["list_id", "author_address", "received_at"],
            unique=False,
        )
        batch_op.create_index(
            batch_op.f("ix_posts_topic_id_received_at"), ["topic_id", "received_at"], unique=False
        )

    op.create_table(
        "topic_subscriptions",
        sa.Column("id", sa.BigInteger().with_variant(sa.Integer(), "sqlite"), nullable=False),
        sa.Column("member_id", sa.BigInteger().with_variant(sa.Integer(), "sqlite"), nullable=False),
        sa.Column("topic_id", sa.BigInteger().with_variant(sa.Integer(), "sqlite"), nullable=False),
        sa.Column("kind", sa.String(length=8), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(
            ["member_id"],
            ["members.id"],
            name=op.f("fk_topic_subscriptions_member_id_members"),
            ondelete="CASCADE",
        ),
        sa.ForeignKeyConstraint(
            ["topic_id"],
            ["topics.id"],
            name=op.f("fk_topic_subscriptions_topic_id_topics"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_topic_subscriptions")),
        sa.UniqueConstraint("member_id", "topic_id", name=op.f("uq_topic_subscriptions_member_id_topic_id")),
    )
    with op.batch_alter_table("topic_subscriptions", schema=None) as batch_op:
        batch_op.create_index(batch_op.f("ix_topic_subscriptions_topic_id"), ["topic_id"], unique=False)


def downgrade() -> None:
    """Downgrade schema."""

    with op.batch_alter_table("topic_subscriptions", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_topic_subscriptions_topic_id"))

    op.drop_table("topic_subscriptions")
    with op.batch_alter_table("posts", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_posts_topic_id_received_at"))
        batch_op.drop_index(batch_op.f("ix_posts_list_id_author_address_received_at"))
        batch_op.drop_index(batch_op.f("ix_posts_parent_id"))
        batch_op.drop_index(batch_op.f("ix_posts_list_id_received_at"))

    op.drop_table("posts")
    with op.batch_alter_table("topics", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_topics_list_id_subject_key_last_post_at"))
        batch_op.drop_index(batch_op.f("ix_topics_list_id_last_post_at"))

    op.drop_table("topics")
    op.drop_table("members")
    with op.batch_alter_table("spool", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_spool_state_next_attempt_at"))

    op.drop_table("spool")
    op.drop_table("lists")
