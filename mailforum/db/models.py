"""The tables of mailforum, as typed ORM classes (``Mapped[...]`` only).

Raw mail is the source of truth: ``SpoolEntry.raw`` holds every accepted message
byte for byte, and ``Post.raw`` the message a post was made from, so topics can
be rebuilt from it (``rethread``).
"""

from __future__ import annotations

import datetime as dt
import enum
from typing import Any

from sqlalchemy import ForeignKey, Index, String, UniqueConstraint, false
from sqlalchemy.orm import Mapped, mapped_column, relationship

from mailforum.db.base import Base, Id


def utcnow() -> dt.datetime:
    return dt.datetime.now(dt.UTC)


class PostingPolicy(enum.StrEnum):
    OPEN = "open"  # anyone may post
    MEMBERS = "members"  # members post; others are held for a moderator
    MODERATED = "moderated"  # every post is held for a moderator


class DeliveryMode(enum.StrEnum):
    ALL = "all"
    NEW_TOPICS = "new-topics"
    DIGEST = "digest"
    NONE = "none"


class PostStatus(enum.StrEnum):
    PUBLISHED = "published"
    HELD = "held"
    PLACEHOLDER = "placeholder"  # a parent referenced by a reply but not (yet) seen


class SpoolState(enum.StrEnum):
    NEW = "new"  # accepted, waiting to be processed
    DONE = "done"  # processed: stored, held, or handled as a command
    DISCARDED = "discarded"  # processed and deliberately not posted (loop, auto-reply); reason kept
    FAILED = "failed"  # processing failed max_attempts times: parked for an operator


class OutboxState(enum.StrEnum):
    PENDING = "pending"  # to be sent (or being sent, while claimed_until is in the future)
    SENT = "sent"  # the relay answered 250
    FAILED = "failed"  # a 5xx, or the lifetime ran out; last_reply says why


class OutboxKind(enum.StrEnum):
    """What an outbox row sends; each kind has its renderer in the delivery worker."""

    POST = "post"  # one post to one member


class Visibility(enum.StrEnum):
    PUBLIC = "public"  # the web archive shows it to everyone
    PRIVATE = "private"  # every web surface answers 404 (RELIABILITY S15)


class SubscriptionKind(enum.StrEnum):
    WATCH = "watch"
    MUTE = "mute"


class MailingList(Base):
    __tablename__ = "lists"

    id: Mapped[int] = mapped_column(Id, primary_key=True)
    name: Mapped[str] = mapped_column(String(64), unique=True)
    title: Mapped[str] = mapped_column(default="")
    description: Mapped[str] = mapped_column(default="")
    posting_policy: Mapped[str] = mapped_column(String(16), default=PostingPolicy.MEMBERS.value)
    # Subject tag added to outgoing copies; None means "[name]", "" means none.
    subject_tag: Mapped[str | None] = mapped_column(default=None)
    created_at: Mapped[dt.datetime] = mapped_column(default=utcnow)
    visibility: Mapped[str] = mapped_column(
        String(16), default=Visibility.PUBLIC.value, server_default=Visibility.PUBLIC.value
    )
    # The web archive shows authors' addresses (still obfuscated) only when this is set.
    show_addresses: Mapped[bool] = mapped_column(default=False, server_default=false())

    @property
    def display_title(self) -> str:
        return self.title or self.name


class Member(Base):
    __tablename__ = "members"
    __table_args__ = (UniqueConstraint("list_id", "address"),)

    id: Mapped[int] = mapped_column(Id, primary_key=True)
    list_id: Mapped[int] = mapped_column(ForeignKey("lists.id", ondelete="CASCADE"))
    # Stored as given in the domain's canonical (lower) case; compared lower-cased.
    address: Mapped[str] = mapped_column(String(320))
    display_name: Mapped[str] = mapped_column(default="")
    delivery_mode: Mapped[str] = mapped_column(String(16), default=DeliveryMode.ALL.value)
    watch_own: Mapped[bool] = mapped_column(default=True)  # watch topics I start or reply to
    receive_own: Mapped[bool] = mapped_column(default=False)  # get my own posts back
    digest_frequency: Mapped[str | None] = mapped_column(String(16), default=None)
    # High-water mark: the last post id included in this member's digest.
    digest_mark: Mapped[int] = mapped_column(default=0)
    created_at: Mapped[dt.datetime] = mapped_column(default=utcnow)

    mailing_list: Mapped[MailingList] = relationship()


class Topic(Base):
    __tablename__ = "topics"
    __table_args__ = (
        Index(None, "list_id", "subject_key", "last_post_at"),
        # The web archive's sorts (latest, newest, most replies), covering its "has posts" filter.
        Index(None, "list_id", "last_post_at", "id", "post_count"),
        Index(None, "list_id", "created_at", "id", "post_count"),
        Index(None, "list_id", "post_count"),
    )

    id: Mapped[int] = mapped_column(Id, primary_key=True)
    list_id: Mapped[int] = mapped_column(ForeignKey("lists.id", ondelete="CASCADE"))
    subject: Mapped[str] = mapped_column(default="")
    # Normalised subject (no Re:/Fwd:/[tag]), for the subject fallback of the threader.
    subject_key: Mapped[str] = mapped_column(String(255), default="")
    created_at: Mapped[dt.datetime] = mapped_column(default=utcnow)
    last_post_at: Mapped[dt.datetime] = mapped_column(default=utcnow)
    post_count: Mapped[int] = mapped_column(default=0)
    # When two topics are merged, the absorbed one points at the survivor (old links keep working).
    merged_into_id: Mapped[int | None] = mapped_column(ForeignKey("topics.id"), default=None)


class Post(Base):
    __tablename__ = "posts"
    __table_args__ = (
        UniqueConstraint("list_id", "message_id"),
        Index(None, "topic_id", "received_at"),
        Index(None, "list_id", "received_at"),
        Index(None, "list_id", "author_address", "received_at"),
    )

    id: Mapped[int] = mapped_column(Id, primary_key=True)
    list_id: Mapped[int] = mapped_column(ForeignKey("lists.id", ondelete="CASCADE"))
    topic_id: Mapped[int] = mapped_column(ForeignKey("topics.id"))
    parent_id: Mapped[int | None] = mapped_column(ForeignKey("posts.id"), default=None, index=True)
    # Canonical "<id@host>". Unique per list; a squatter's copy gets a distinct derived id.
    message_id: Mapped[str] = mapped_column(String(998))
    status: Mapped[str] = mapped_column(String(16), default=PostStatus.PUBLISHED.value)
    hold_reason: Mapped[str | None] = mapped_column(default=None)
    author_address: Mapped[str] = mapped_column(String(320), default="")
    author_name: Mapped[str] = mapped_column(default="")
    subject: Mapped[str] = mapped_column(default="")
    date: Mapped[dt.datetime | None] = mapped_column(default=None)  # the Date: header, when sane
    received_at: Mapped[dt.datetime] = mapped_column(default=utcnow)
    text_body: Mapped[str] = mapped_column(default="")
    html_body: Mapped[str | None] = mapped_column(default=None)
    attachments: Mapped[list[Any]] = mapped_column(default=list)
    raw: Mapped[bytes | None] = mapped_column(default=None, deferred=True)
    # SHA-256 over the identifying headers and the body: the same message delivered twice.
    fingerprint: Mapped[str | None] = mapped_column(String(64), default=None)
    spool_id: Mapped[int | None] = mapped_column(ForeignKey("spool.id"), default=None)


class SpoolEntry(Base):
    """One accepted message and its envelope, committed before the 250."""

    __tablename__ = "spool"
    __table_args__ = (Index(None, "state", "next_attempt_at"),)

    id: Mapped[int] = mapped_column(Id, primary_key=True)
    received_at: Mapped[dt.datetime] = mapped_column(default=utcnow)
    mail_from: Mapped[str] = mapped_column(default="")
    rcpt_tos: Mapped[list[Any]] = mapped_column(default=list)
    protocol: Mapped[str] = mapped_column(String(8), default="smtp")
    peer: Mapped[str] = mapped_column(default="")
    raw: Mapped[bytes] = mapped_column(deferred=True)
    size: Mapped[int] = mapped_column(default=0)
    state: Mapped[str] = mapped_column(String(16), default=SpoolState.NEW.value)
    attempts: Mapped[int] = mapped_column(default=0)
    error: Mapped[str | None] = mapped_column(default=None)
    # What processing did, one line per recipient ("dev: post 12 in topic 3").
    outcome: Mapped[str | None] = mapped_column(default=None)
    next_attempt_at: Mapped[dt.datetime | None] = mapped_column(default=None)
    claimed_until: Mapped[dt.datetime | None] = mapped_column(default=None)
    # The node holding the lease; a restarted node takes back its own leases at once.
    claimed_by: Mapped[str | None] = mapped_column(String(255), default=None)
    processed_at: Mapped[dt.datetime | None] = mapped_column(default=None)


class TopicSubscription(Base):
    """A member's per-topic override of their delivery mode: watch or mute."""

    __tablename__ = "topic_subscriptions"
    __table_args__ = (UniqueConstraint("member_id", "topic_id"),)

    id: Mapped[int] = mapped_column(Id, primary_key=True)
    member_id: Mapped[int] = mapped_column(ForeignKey("members.id", ondelete="CASCADE"))
    topic_id: Mapped[int] = mapped_column(ForeignKey("topics.id", ondelete="CASCADE"), index=True)
    kind: Mapped[str] = mapped_column(String(8))
    created_at: Mapped[dt.datetime] = mapped_column(default=utcnow)


class OutboxEntry(Base):
    """One message to one recipient, written in the transaction that caused it.

    Rows are claimed with a lease (``claimed_until``), sent, then marked ``sent`` or
    ``failed``; a 4xx moves ``next_attempt_at`` (RELIABILITY I5). ``message_id`` is the
    Message-ID every copy carries: for a post notification, the post's own.
    """

    __tablename__ = "outbox"
    __table_args__ = (
        # One row per (post, member, kind): a reprocessed message cannot notify twice (I3).
        UniqueConstraint("post_id", "member_id", "kind"),
        Index(None, "state", "next_attempt_at"),
    )

    id: Mapped[int] = mapped_column(Id, primary_key=True)
    kind: Mapped[str] = mapped_column(String(16), default=OutboxKind.POST.value)
    list_id: Mapped[int] = mapped_column(ForeignKey("lists.id", ondelete="CASCADE"), index=True)
    post_id: Mapped[int | None] = mapped_column(ForeignKey("posts.id", ondelete="CASCADE"), default=None)
    member_id: Mapped[int | None] = mapped_column(
        ForeignKey("members.id", ondelete="SET NULL"), default=None, index=True
    )
    # Kinds without a post (digests, command replies) name their own idempotency key.
    dedupe_key: Mapped[str | None] = mapped_column(String(255), default=None, unique=True)
    recipient: Mapped[str] = mapped_column(String(320))
    message_id: Mapped[str] = mapped_column(String(998))
    # Template parameters for kinds that need more than post and member.
    payload: Mapped[dict[str, Any]] = mapped_column(default=dict)
    state: Mapped[str] = mapped_column(String(16), default=OutboxState.PENDING.value)
    attempts: Mapped[int] = mapped_column(default=0)
    created_at: Mapped[dt.datetime] = mapped_column(default=utcnow)
    next_attempt_at: Mapped[dt.datetime] = mapped_column(default=utcnow)
    claimed_until: Mapped[dt.datetime | None] = mapped_column(default=None)
    claimed_by: Mapped[str | None] = mapped_column(String(64), default=None)
    sent_at: Mapped[dt.datetime | None] = mapped_column(default=None)
    # The relay's last reply (or connection error) for this row, kept for the operator.
    last_reply: Mapped[str | None] = mapped_column(default=None)
