"""The values stored in the string columns of ``models.py`` (states, modes, policies).

They live apart from the tables and import nothing but ``enum``, so the command line
can offer them as choices in ``--help`` without loading SQLAlchemy; ``models`` re-exports them.
"""

from __future__ import annotations

import enum


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
    REMOVED = "removed"  # removed by a moderator (`posts remove`): a tombstone in its thread


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
    DIGEST = "digest"  # one member's digest: the posts between two marks (payload)
    NOTICE = "notice"  # an automatic answer to one person (core.answers): payload holds the text
    SIGNIN = "signin"  # a sign-in link (core.signin): no list; payload holds the text


class DigestFormat(enum.StrEnum):
    """How a list's digests are built (mail/digest.py)."""

    STANDARD = "standard"  # multipart/alternative: text and HTML, posts trimmed, a reply address each
    MIME = "mime"  # RFC 1153 / RFC 2046: contents, then every post whole as a message/rfc822 part


class Visibility(enum.StrEnum):
    PUBLIC = "public"  # the web archive shows it to everyone
    PRIVATE = "private"  # every web surface answers 404 (RELIABILITY S15)


class SubscriptionKind(enum.StrEnum):
    WATCH = "watch"
    MUTE = "mute"


class ConfirmAction(enum.StrEnum):
    """What a pending confirmation does once its owner confirms it."""

    SUBSCRIBE = "subscribe"
    UNSUBSCRIBE = "unsubscribe"
    WATCH = "watch"  # join the list if needed, then watch topic_id


class TopicDecisionKind(enum.StrEnum):
    """A moderator's manual threading decision, replayed after ``rethread`` (core/topics.py)."""

    SPLIT = "split"  # the post and its replies became a topic of their own
    MERGE = "merge"  # the topic of one post went into the topic of another
    RETITLE = "retitle"  # the topic of the post was given a title by hand
