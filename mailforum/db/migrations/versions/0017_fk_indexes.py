"""Indexes under two foreign keys that had none, and the cross-post check's index.

``topics.merged_into_id`` and ``confirmations.topic_id`` point at ``topics``. Without
an index the database checks each deleted topic by scanning the whole table (a
``CASCADE`` or ``NO ACTION`` check per row), so deleting a list of 20,000 topics took
53 s on SQLite and ran past PostgreSQL's statement timeout; with them it takes under
3 s. Rethread and merges delete topics too.

``outbox.message_id`` becomes ``(message_id, kind)``: a post's fan-out leaves out the
members who got the same Message-ID from another list, and with only ``message_id``
indexed both planners chose the ``(kind, recipient, created_at)`` index instead and
walked every earlier copy, so processing a post grew with the archive (SQLite 7 ms
per message at 600 posts after, 26 ms before).

Revision ID: 0017
Revises: 0016
Create Date: 2026-12-05 07:10:00

"""

from collections.abc import Sequence

from alembic import op

revision: str = "0017"
down_revision: str | Sequence[str] | None = "0016"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_index(op.f("ix_topics_merged_into_id"), "topics", ["merged_into_id"])
    op.create_index(op.f("ix_confirmations_topic_id"), "confirmations", ["topic_id"])
    op.create_index(op.f("ix_outbox_message_id_kind"), "outbox", ["message_id", "kind"])
    op.drop_index(op.f("ix_outbox_message_id"), table_name="outbox")


def downgrade() -> None:
    op.create_index(op.f("ix_outbox_message_id"), "outbox", ["message_id"])
    op.drop_index(op.f("ix_outbox_message_id_kind"), table_name="outbox")
    op.drop_index(op.f("ix_confirmations_topic_id"), table_name="confirmations")
    op.drop_index(op.f("ix_topics_merged_into_id"), table_name="topics")
