"""Processing one accepted message: route each recipient, decide, thread, store.

``process`` runs inside the caller's transaction (a savepoint per message), so the
post, its placeholders and the spool entry's new state are committed together, or
not at all. The same path serves live mail and ``import-mbox``.
"""

from __future__ import annotations

import datetime as dt
import logging
from collections.abc import Callable
from dataclasses import dataclass

from sqlalchemy import case, func, select
from sqlalchemy.orm import Session

from mailforum import crash
from mailforum.config import Config
from mailforum.core import fanout, threads, tokens
from mailforum.core.lists import find_member
from mailforum.core.policy import Action, Decision, PolicyContext, decide
from mailforum.db.models import MailingList, Member, Post, PostStatus
from mailforum.errors import MailforumError
from mailforum.mail.addresses import Kind, Recipient, parse_recipient
from mailforum.mail.parse import ParsedMessage

log = logging.getLogger(__name__)


@dataclass(frozen=True, slots=True)
class Delivery:
    """One message for one of our recipients, with everything a route handler needs."""

    session: Session
    config: Config
    mlist: MailingList
    recipient: Recipient
    parsed: ParsedMessage
    raw: bytes
    mail_from: str
    spool_id: int | None
    received_at: dt.datetime
    now: dt.datetime
    trusted: bool = False  # an operator's import: the posting policy does not apply


@dataclass(frozen=True, slots=True)
class Outcome:
    """What processing did with one recipient's copy; ``posted`` when a post was stored."""

    summary: str
    discarded: bool = False
    post: Post | None = None


RouteHandler = Callable[[Delivery], Outcome]


def store_post(delivery: Delivery, decision: Decision, reply_to: Post | None = None) -> Outcome:
    """Thread and store the message as a post (published or held).

    A published post's notifications are written to the outbox in the same
    transaction (core.fanout); held posts and imports notify no one.
    """
    session, parsed, mlist = delivery.session, delivery.parsed, delivery.mlist
    window = dt.timedelta(days=delivery.config.processing.subject_window_days)
    placement = threads.place(session, mlist, parsed, delivery.received_at, window, reply_to)
    if placement.duplicate:
        assert placement.existing is not None
        log.info("duplicate of post %s (%s) in %s", placement.existing.id, parsed.message_id, mlist.name)
        return Outcome(f"{mlist.name}: duplicate of post {placement.existing.id}")
    post = placement.existing or Post(list_id=mlist.id, message_id=placement.message_id)
    held = decision.action is Action.HOLD
    post.topic_id = placement.topic.id
    if placement.parent is not None and placement.parent.id != post.id:
        post.parent_id = placement.parent.id
    post.status = PostStatus.HELD.value if held else PostStatus.PUBLISHED.value
    post.hold_reason = f"{decision.rule}: {decision.reason}" if held else None
    post.author_address = parsed.from_address
    post.author_name = parsed.from_name
    post.subject = parsed.subject
    post.date = parsed.date
    post.received_at = delivery.received_at
    post.text_body = parsed.text_body
    post.html_body = parsed.html_body
    post.attachments = [
        {"filename": a.filename, "type": a.content_type, "size": a.size} for a in parsed.attachments
    ]
    post.raw = delivery.raw
    post.fingerprint = parsed.fingerprint
    post.spool_id = delivery.spool_id
    if placement.existing is None:
        session.add(post)
    session.flush()
    crash.point("after_post_insert")
    topic = placement.topic
    if not topic.subject:
        topic.subject = parsed.subject
        topic.subject_key = threads.subject_key(parsed.subject)
    if not held:
        topic.post_count += 1
        topic.last_post_at = max(topic.last_post_at, delivery.received_at)
        if not delivery.trusted:  # an operator's archive import notifies no one
            fanout.watch_own(session, post, delivery.now)
            fanout.enqueue_post(session, post, topic.post_count == 1, delivery.now)
    state = f"held ({decision.rule})" if held else "published"
    return Outcome(f"{mlist.name}: post {post.id} {state} in topic {topic.id}", post=post)


def recent_posts(delivery: Delivery) -> tuple[int, int]:
    """Posts from this From address in this list in the last minute and the last day."""
    author = delivery.parsed.from_address
    if not author:
        return (0, 0)
    minute_ago = delivery.received_at - dt.timedelta(minutes=1)
    day_ago = delivery.received_at - dt.timedelta(days=1)
    minute, day = delivery.session.execute(
        select(
            func.count(case((Post.received_at >= minute_ago, 1))),
            func.count(),
        ).where(
            Post.list_id == delivery.mlist.id,
            Post.author_address == author,
            Post.received_at >= day_ago,
            Post.status != PostStatus.PLACEHOLDER.value,
        )
    ).one()
    return int(minute), int(day)


def handle_post(delivery: Delivery) -> Outcome:
    """Mail to the list address: policy first, then thread and store."""
    if delivery.trusted:
        return store_post(delivery, Decision(Action.ACCEPT))
    decision = _policy(
        delivery, find_member(delivery.session, delivery.mlist.id, delivery.parsed.from_address)
    )
    if decision.action is Action.DISCARD:
        return _discarded(delivery, decision)
    return store_post(delivery, decision)


def _policy(delivery: Delivery, sender: Member | None, token_verified: bool = False) -> Decision:
    return decide(
        PolicyContext(
            mlist=delivery.mlist,
            parsed=delivery.parsed,
            raw=delivery.raw,
            mail_from=delivery.mail_from,
            sender=sender,
            config=delivery.config,
            recent_posts=recent_posts(delivery),
            token_verified=token_verified,
        )
    )


def reply_target(delivery: Delivery) -> tuple[Post | None, Member | None]:
    """The post and member a reply token names, if it is valid for this list; (None, None) otherwise."""
    try:
        key = tokens.derive_key(delivery.config.site.secret_key)
        member_id, post_id = tokens.verify(key, tokens.REPLY, delivery.recipient.arg, delivery.now, fields=2)
    except MailforumError:
        return None, None
    post = delivery.session.get(Post, post_id)
    member = delivery.session.get(Member, member_id)
    if post is None or member is None or post.list_id != delivery.mlist.id or member.list_id != post.list_id:
        return None, None
    return post, member


def handle_reply(delivery: Delivery) -> Outcome:
    """Mail to a per-recipient reply address (NAME+r-TOKEN@): a reply to that very post.

    The token is the strongest threading evidence, and it names the member it was
    given to. A reply from anyone else (a forwarded copy, a forged From) is held for
    a moderator instead (RELIABILITY S3a/b); an invalid or expired token makes the
    message an ordinary post to the list, threaded by its headers.
    """
    post, member = reply_target(delivery)
    if post is None or member is None:
        log.info("reply token for %s not valid; treating as a post", delivery.mlist.name)
        return handle_post(delivery)
    if delivery.parsed.from_address != member.address.lower():
        decision = _policy(
            delivery, find_member(delivery.session, delivery.mlist.id, delivery.parsed.from_address)
        )
        if decision.action is Action.ACCEPT:
            decision = Decision(Action.HOLD, "reply-token", "the reply address was issued to another member")
        if decision.action is Action.DISCARD:
            return _discarded(delivery, decision)
        return store_post(delivery, decision)
    # The signed address was issued to this member and the From matches it: that is the
    # evidence of authenticity the sender check asks for.
    decision = _policy(delivery, member, token_verified=True)
    if decision.action is Action.DISCARD:
        return _discarded(delivery, decision)
    return store_post(delivery, decision, reply_to=post)


def _discarded(delivery: Delivery, decision: Decision) -> Outcome:
    log.info("discarded %s for %s: %s", delivery.parsed.message_id, delivery.mlist.name, decision.reason)
    return Outcome(f"{delivery.mlist.name}: discarded ({decision.rule}: {decision.reason})", discarded=True)


# Recipient kind → use case. The ingest server accepts at RCPT only the kinds listed
# here; later features (commands, replies by token, bounces) add their entries.
ROUTES: dict[Kind, RouteHandler] = {
    Kind.POST: handle_post,
    Kind.REPLY: handle_reply,
}


def list_by_name(session: Session, name: str) -> MailingList | None:
    return session.scalars(select(MailingList).where(MailingList.name == name)).first()


def process(
    session: Session,
    config: Config,
    parsed: ParsedMessage,
    raw: bytes,
    mail_from: str,
    rcpt_tos: tuple[str, ...],
    spool_id: int | None,
    received_at: dt.datetime,
    now: dt.datetime,
    trusted: bool = False,
) -> list[Outcome]:
    """Route the message to each of its recipients; one Outcome per recipient."""
    outcomes = []
    seen: set[Recipient] = set()
    for rcpt in rcpt_tos:
        recipient = parse_recipient(rcpt, config.site.domain)
        if recipient in seen:  # the same address twice in one envelope
            continue
        seen.add(recipient)
        mlist = list_by_name(session, recipient.list_name)
        handler = ROUTES.get(recipient.kind)
        if mlist is None or handler is None:
            # The list was deleted (or the route removed) between RCPT and now: keep, don't guess.
            outcomes.append(Outcome(f"{rcpt}: no such list any more; kept in the spool", discarded=True))
            continue
        delivery = Delivery(
            session, config, mlist, recipient, parsed, raw, mail_from, spool_id, received_at, now, trusted
        )
        outcomes.append(handler(delivery))
    return outcomes
