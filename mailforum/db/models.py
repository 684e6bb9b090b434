"""The tables of mailforum, as typed ORM classes (``Mapped[...]`` only).

Raw mail is the source of truth: ``SpoolEntry.raw`` holds every accepted message
byte for byte, and ``Post.raw`` the message a post was made from, so topics can
be rebuilt from it (``rethread``).
"""

from __future__ import annotations

import datetime as dt
from typing import Any

from sqlalchemy import ForeignKey, Index, String, UniqueConstraint, false, true
from sqlalchemy.orm import Mapped, mapped_column, relationship

from mailforum.db.base import Base, Id

# The enums live in db/enums.py, which needs no SQLAlchemy (the CLI's choices); re-exported here.
from mailforum.db.enums import (
    ConfirmAction,  # noqa: F401
    DeliveryMode,
    DigestFormat,
    OutboxKind,
    OutboxState,
    PostingPolicy,
    PostStatus,
    SpoolState,
    SubscriptionKind,  # noqa: F401
    TopicDecisionKind,  # noqa: F401
    Visibility,
)


def utcnow() -> dt.datetime:
    return dt.datetime.now(dt.UTC)


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
    # A member's first post is held for a moderator (`lists set --moderate-first-post`).
    moderate_first_post: Mapped[bool] = mapped_column(default=False, server_default=false())
    # A post "from" a member that fails authentication: "hold" it, or "confirm" by asking the member.
    unverified_action: Mapped[str] = mapped_column(String(16), default="hold", server_default="hold")
    # Digest schedule overrides ([digest] hour / timezone when None).
    digest_hour: Mapped[int | None] = mapped_column(default=None)
    digest_timezone: Mapped[str | None] = mapped_column(String(64), default=None)
    # "standard" or "mime" (DigestFormat); the server default keeps lists made before 0009 standard.
    digest_format: Mapped[str] = mapped_column(
        String(16), default=DigestFormat.STANDARD.value, server_default=DigestFormat.STANDARD.value
    )
    # The last scheduled period (list-local day "2026-11-26"; the week "2026-W48 2026-11-26"
    # with the day its run started) and that run's end mark (the highest post id it covers):
    # a repeated hour, a second scheduler or a restart after a crash finishes the same
    # period with the same end mark instead of starting another (RELIABILITY F14, F15).
    digest_last_day: Mapped[str | None] = mapped_column(String(16), default=None)
    digest_last_week: Mapped[str | None] = mapped_column(String(32), default=None)
    digest_run_mark: Mapped[int | None] = mapped_column(default=None)
    # Bumped by each change to the list's stored mail templates (ListTemplate), so renderers
    # know their compiled copies are stale without reading the templates (render.py).
    templates_version: Mapped[int] = mapped_column(default=0, server_default="0")
    # Minutes after a post arrives during which its signed-in author may delete it on the
    # web (`lists set --author-delete-minutes`; 0: never). Migration 0019.
    author_delete_minutes: Mapped[int] = mapped_column(default=60, server_default="60")

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
    # Mailman's "avoid duplicate copies": no list copy of a post whose To/Cc names the member.
    avoid_duplicates: Mapped[bool] = mapped_column(default=True, server_default=true())
    digest_frequency: Mapped[str | None] = mapped_column(String(16), default=None)
    # High-water mark: the last post id included in this member's digest.
    digest_mark: Mapped[int] = mapped_column(default=0)
    # The member's own digest hour and time zone (the preferences page); None: the list's.
    digest_hour: Mapped[int | None] = mapped_column(default=None)
    digest_timezone: Mapped[str | None] = mapped_column(String(64), default=None)
    # The periods the member's own digest runs claimed (as MailingList.digest_last_day/_week).
    digest_last_day: Mapped[str | None] = mapped_column(String(16), default=None)
    digest_last_week: Mapped[str | None] = mapped_column(String(32), default=None)
    created_at: Mapped[dt.datetime] = mapped_column(default=utcnow)
    # Bounce processing (core/bounces.py): the score, when it last grew, when a soft bounce
    # last counted, and — once over the threshold — since when delivery is disabled and
    # how many warnings went out.
    bounce_score: Mapped[float] = mapped_column(default=0.0, server_default="0")
    bounce_last_at: Mapped[dt.datetime | None] = mapped_column(default=None)
    bounce_soft_at: Mapped[dt.datetime | None] = mapped_column(default=None)
    delivery_disabled_at: Mapped[dt.datetime | None] = mapped_column(default=None, index=True)
    bounce_warnings: Mapped[int] = mapped_column(default=0, server_default="0")
    bounce_warned_at: Mapped[dt.datetime | None] = mapped_column(default=None)

    mailing_list: Mapped[MailingList] = relationship()


class Topic(Base):
    __tablename__ = "topics"
    __table_args__ = (
        Index(None, "list_id", "subject_key", "last_post_at"),
        # The web archive's sorts (latest, newest, most replies), covering its "has posts" filter.
        Index(None, "list_id", "last_post_at", "id", "post_count"),
        Index(None, "list_id", "created_at", "id", "post_count"),
        Index(None, "list_id", "post_count"),
        # The pinned topics first on a list's page: a few rows of this index, not a scan.
        Index(None, "list_id", "pinned_at"),
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
    merged_into_id: Mapped[int | None] = mapped_column(ForeignKey("topics.id"), default=None, index=True)
    # Moderators' marks (core/topics.py): a locked topic takes no replies; pinned ones list first.
    locked_at: Mapped[dt.datetime | None] = mapped_column(default=None)
    pinned_at: Mapped[dt.datetime | None] = mapped_column(default=None)
    # Made by a moderator's split: the threader never merges it back into its ancestors' topic.
    manual: Mapped[bool] = mapped_column(default=False, server_default=false())
    # Filed under a tag once: only then do its counters go to topic_tags (threads.sync_tags).
    tagged: Mapped[bool] = mapped_column(default=False, server_default=false())


class Post(Base):
    __tablename__ = "posts"
    __table_args__ = (
        UniqueConstraint("list_id", "message_id"),
        Index(None, "topic_id", "received_at"),
        Index(None, "list_id", "received_at"),
        Index(None, "list_id", "author_address", "received_at"),
        Index(None, "list_id", "conversation"),
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
    # A new title this post gives its topic ("New subject (was: Old)"), when it differs.
    title: Mapped[str | None] = mapped_column(default=None)
    # Outlook's Thread-Index: hex of its first 22 bytes (the conversation) and of the whole value.
    conversation: Mapped[str | None] = mapped_column(String(44), default=None)
    thread_index: Mapped[str | None] = mapped_column(String(2100), default=None)

    # Never read: it tells the unit of work that topics are inserted before posts, so a
    # topic made with its id reserved (db.ids) and a post in it can reach the database in
    # one flush, in that order. Code sets topic_id.
    topic: Mapped[Topic] = relationship(lazy="raise")


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
    # What processing did, one line per recipient ("dev: post 12 published in topic 3 (headers)").
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
        # Automatic answers per recipient in the last day (core.answers' cap, RELIABILITY I6).
        Index(None, "kind", "recipient", "created_at"),
        # A message cross-posted to two lists reaches a member of both once (F13b): the
        # addresses that have this Message-ID of this kind already. Both columns, so no
        # planner (SQLite's, or PostgreSQL's on stale statistics) prefers the index above.
        Index(None, "message_id", "kind"),
    )

    id: Mapped[int] = mapped_column(Id, primary_key=True)
    kind: Mapped[str] = mapped_column(String(16), default=OutboxKind.POST.value)
    # None only for mail about no list: a sign-in link (kind "signin", core/signin.py).
    list_id: Mapped[int | None] = mapped_column(ForeignKey("lists.id", ondelete="CASCADE"), index=True)
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


class Moderator(Base):
    """An address that moderates a list: gets held-post notices and may approve by reply."""

    __tablename__ = "moderators"
    __table_args__ = (UniqueConstraint("list_id", "address"),)

    id: Mapped[int] = mapped_column(Id, primary_key=True)
    list_id: Mapped[int] = mapped_column(ForeignKey("lists.id", ondelete="CASCADE"))
    address: Mapped[str] = mapped_column(String(320))  # lower case
    created_at: Mapped[dt.datetime] = mapped_column(default=utcnow)


class AllowedSender(Base):
    """A non-member a moderator allowed to post to a members-only list."""

    __tablename__ = "allowed_senders"
    __table_args__ = (UniqueConstraint("list_id", "address"),)

    id: Mapped[int] = mapped_column(Id, primary_key=True)
    list_id: Mapped[int] = mapped_column(ForeignKey("lists.id", ondelete="CASCADE"))
    address: Mapped[str] = mapped_column(String(320))  # lower case
    created_at: Mapped[dt.datetime] = mapped_column(default=utcnow)


class Confirmation(Base):
    """A request that waits for its address's owner to confirm (double opt-in, RELIABILITY S4–S6).

    The token mailed out is HMAC-signed over (id, list id) and an expiry; the row makes
    it single-use (``used_at``). Rows are kept after use and expiry: they count the
    confirmation mails an address got in the last day (S5) and answer a second confirm
    with "already confirmed".
    """

    __tablename__ = "confirmations"
    __table_args__ = (
        Index(None, "list_id", "address", "expires_at"),
        Index(None, "address", "created_at"),
    )

    id: Mapped[int] = mapped_column(Id, primary_key=True)
    list_id: Mapped[int] = mapped_column(ForeignKey("lists.id", ondelete="CASCADE"))
    address: Mapped[str] = mapped_column(String(320))  # lower-cased, checked by email-validator
    display_name: Mapped[str] = mapped_column(default="")
    action: Mapped[str] = mapped_column(String(16))
    topic_id: Mapped[int | None] = mapped_column(
        ForeignKey("topics.id", ondelete="CASCADE"), default=None, index=True
    )
    # Where the request came from: "mail", "web", "invite" (an operator).
    source: Mapped[str] = mapped_column(String(16), default="mail")
    mailed: Mapped[bool] = mapped_column(default=True)  # False: suppressed by the daily cap (S5)
    created_at: Mapped[dt.datetime] = mapped_column(default=utcnow)
    expires_at: Mapped[dt.datetime] = mapped_column(default=utcnow)
    used_at: Mapped[dt.datetime | None] = mapped_column(default=None)


class FormHit(Base):
    """One counted use of a rate-limited web form or link: a row per hit, so the
    limits hold across every ``serve`` node of one database, as the confirmation caps do
    by counting ``Confirmation`` rows. ``key`` is an HMAC of the client IP or address,
    never the value itself; rows older than the window are removed as hits come in."""

    __tablename__ = "form_hits"
    __table_args__ = (Index(None, "scope", "key", "at"), Index(None, "at"))

    id: Mapped[int] = mapped_column(Id, primary_key=True)
    scope: Mapped[str] = mapped_column(String(16))  # "client", "address", "token"
    key: Mapped[str] = mapped_column(String(64))
    at: Mapped[dt.datetime] = mapped_column(default=utcnow)


class Tag(Base):
    """A word of a list's tag vocabulary (``lists tags``)."""

    __tablename__ = "tags"
    __table_args__ = (UniqueConstraint("list_id", "name"),)

    id: Mapped[int] = mapped_column(Id, primary_key=True)
    list_id: Mapped[int] = mapped_column(ForeignKey("lists.id", ondelete="CASCADE"))
    name: Mapped[str] = mapped_column(String(64))  # lower case: letters, digits, "-", "_"
    created_at: Mapped[dt.datetime] = mapped_column(default=utcnow)


class TopicTag(Base):
    """A topic filed under a tag. ``last_post_at`` and ``post_count`` copy the topic's
    (threads.sync_tags), so a tag's page reads its newest shown topics, and counts them,
    from the (tag, last_post_at, topic, post_count) index alone, as the list page does."""

    __tablename__ = "topic_tags"
    __table_args__ = (
        UniqueConstraint("topic_id", "tag_id"),
        Index(None, "tag_id", "last_post_at", "topic_id", "post_count"),
    )

    id: Mapped[int] = mapped_column(Id, primary_key=True)
    topic_id: Mapped[int] = mapped_column(ForeignKey("topics.id", ondelete="CASCADE"))
    tag_id: Mapped[int] = mapped_column(ForeignKey("tags.id", ondelete="CASCADE"))
    last_post_at: Mapped[dt.datetime] = mapped_column(default=utcnow)
    post_count: Mapped[int] = mapped_column(default=0, server_default="0")


class TagSubscription(Base):
    """A member follows (``watch``) or mutes a tag: it decides over their delivery mode."""

    __tablename__ = "tag_subscriptions"
    __table_args__ = (UniqueConstraint("member_id", "tag_id"),)

    id: Mapped[int] = mapped_column(Id, primary_key=True)
    member_id: Mapped[int] = mapped_column(ForeignKey("members.id", ondelete="CASCADE"))
    tag_id: Mapped[int] = mapped_column(ForeignKey("tags.id", ondelete="CASCADE"), index=True)
    kind: Mapped[str] = mapped_column(String(8))
    created_at: Mapped[dt.datetime] = mapped_column(default=utcnow)


class TopicDecision(Base):
    """A moderator's split, merge or retitle, named by message ids (which outlive topic ids):
    ``rethread`` replays the raw mail, then these decisions in order, so they survive it."""

    __tablename__ = "topic_decisions"
    __table_args__ = (Index(None, "list_id", "id"),)

    id: Mapped[int] = mapped_column(Id, primary_key=True)
    list_id: Mapped[int] = mapped_column(ForeignKey("lists.id", ondelete="CASCADE"))
    kind: Mapped[str] = mapped_column(String(16))
    message_id: Mapped[str] = mapped_column(
        String(998)
    )  # the split post; the merged or retitled topic's post
    into_message_id: Mapped[str | None] = mapped_column(
        String(998), default=None
    )  # merge: a post of the survivor
    title: Mapped[str | None] = mapped_column(default=None)
    created_at: Mapped[dt.datetime] = mapped_column(default=utcnow)


class SiteAdmin(Base):
    """An address that may run every list: owner pages and owner API routes of all lists."""

    __tablename__ = "site_admins"

    id: Mapped[int] = mapped_column(Id, primary_key=True)
    address: Mapped[str] = mapped_column(String(320), unique=True)  # lower case
    created_at: Mapped[dt.datetime] = mapped_column(default=utcnow)


class ListOwner(Base):
    """An address that runs one list: its settings, members, held posts and bans."""

    __tablename__ = "list_owners"
    __table_args__ = (UniqueConstraint("list_id", "address"),)

    id: Mapped[int] = mapped_column(Id, primary_key=True)
    list_id: Mapped[int] = mapped_column(ForeignKey("lists.id", ondelete="CASCADE"))
    address: Mapped[str] = mapped_column(String(320), index=True)  # lower case
    created_at: Mapped[dt.datetime] = mapped_column(default=utcnow)


class AuditEntry(Base):
    """One change made by a person or a token: who, from where, what, to what, when.

    ``actor`` is an address (a signed-in owner, a moderator by mail), ``cli``, or
    ``api:TOKEN-NAME``; ``origin`` the client IP, ``cli``, ``mail`` or ``api``. ``action``
    is dotted (``members.add``, ``held.approve``, ``topic.lock``), ``target`` what it acted
    on (an address, a topic id), ``detail`` a JSON object of the rest. The list stays
    named in ``detail`` when the list itself is deleted (``list_id`` becomes NULL).
    """

    __tablename__ = "audit_log"
    __table_args__ = (Index(None, "list_id", "id"),)

    id: Mapped[int] = mapped_column(Id, primary_key=True)
    at: Mapped[dt.datetime] = mapped_column(default=utcnow, index=True)
    actor: Mapped[str] = mapped_column(String(320))
    origin: Mapped[str] = mapped_column(String(64))
    list_id: Mapped[int | None] = mapped_column(ForeignKey("lists.id", ondelete="SET NULL"), default=None)
    action: Mapped[str] = mapped_column(String(64))
    target: Mapped[str] = mapped_column(String(512), default="")
    detail: Mapped[dict[str, Any]] = mapped_column(default=dict)


class SignInLink(Base):
    """A sign-in link mailed to ``address`` (core/signin.py): single use, valid for minutes,
    and bound to the browser that asked for it (``browser`` is the SHA-256 of that
    browser's random sign-in cookie). The token in the link is signed and names the row."""

    __tablename__ = "signin_links"

    id: Mapped[int] = mapped_column(Id, primary_key=True)
    address: Mapped[str] = mapped_column(String(320))
    browser: Mapped[str] = mapped_column(String(64))
    # Where the browser goes once signed in: a path on this site ("" for the account page).
    next_path: Mapped[str] = mapped_column(String(500), default="")
    created_at: Mapped[dt.datetime] = mapped_column(default=utcnow)
    expires_at: Mapped[dt.datetime] = mapped_column(index=True)
    used_at: Mapped[dt.datetime | None] = mapped_column(default=None)


class WebSession(Base):
    """A signed-in browser (web/auth.py). The cookie holds a random key; only its SHA-256
    is stored, so a copy of the database signs nobody in. Deleting the row signs out."""

    __tablename__ = "web_sessions"

    id: Mapped[int] = mapped_column(Id, primary_key=True)
    key_hash: Mapped[str] = mapped_column(String(64), unique=True)
    address: Mapped[str] = mapped_column(String(320), index=True)
    created_at: Mapped[dt.datetime] = mapped_column(default=utcnow)
    seen_at: Mapped[dt.datetime] = mapped_column(default=utcnow)
    expires_at: Mapped[dt.datetime] = mapped_column(index=True)
    user_agent: Mapped[str] = mapped_column(String(200), default="")


class ApiToken(Base):
    """A bearer token of the JSON API (``mailforum api-tokens create``).

    The token handed out is ``mf_<lookup>_<secret>``; only ``lookup`` (to find the row)
    and an HMAC-SHA256 of the secret are stored, compared with ``hmac.compare_digest``.
    ``scope`` is read, write or admin; ``list_id`` limits the token to one list.
    """

    __tablename__ = "api_tokens"

    id: Mapped[int] = mapped_column(Id, primary_key=True)
    name: Mapped[str] = mapped_column(String(64), unique=True)
    lookup: Mapped[str] = mapped_column(String(32), unique=True)
    secret_hash: Mapped[str] = mapped_column(String(64))
    scope: Mapped[str] = mapped_column(String(8))
    list_id: Mapped[int | None] = mapped_column(ForeignKey("lists.id", ondelete="CASCADE"), default=None)
    created_at: Mapped[dt.datetime] = mapped_column(default=utcnow)


class Ban(Base):
    """A banned sender: an address, a ``@domain`` (and its subdomains) or a ``^regex``.

    ``list_id`` None is a site-wide ban. Posts from a banned sender are discarded and
    their joins refused (core/bans.py, the policy rule ``banned``).
    """

    __tablename__ = "bans"
    __table_args__ = (UniqueConstraint("list_id", "pattern"),)

    id: Mapped[int] = mapped_column(Id, primary_key=True)
    list_id: Mapped[int | None] = mapped_column(
        ForeignKey("lists.id", ondelete="CASCADE"), default=None, index=True
    )
    pattern: Mapped[str] = mapped_column(String(320))
    created_at: Mapped[dt.datetime] = mapped_column(default=utcnow)


class ListTemplate(Base):
    """A list owner's version of one mail template, edited on the owner pages or with
    ``lists templates``; rendered in Jinja2's sandbox (render.py, core/list_templates.py)."""

    __tablename__ = "list_templates"
    __table_args__ = (UniqueConstraint("list_id", "name"),)

    id: Mapped[int] = mapped_column(Id, primary_key=True)
    list_id: Mapped[int] = mapped_column(ForeignKey("lists.id", ondelete="CASCADE"))
    name: Mapped[str] = mapped_column(String(200))
    source: Mapped[str] = mapped_column()
    updated_at: Mapped[dt.datetime] = mapped_column(default=utcnow)
    updated_by: Mapped[str] = mapped_column(String(320), default="")
