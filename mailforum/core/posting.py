"""The use cases of mail to a list's addresses: decide, thread, store (routing is ``core.routing``).

Each handler runs inside the caller's transaction, so the post, its placeholders and
the spool entry's new state are committed together, or not at all.
"""

from __future__ import annotations

import datetime as dt
import logging
from typing import Any

from sqlalchemy import case, func, select

from mailforum import crash
from mailforum.core import answers, bounces, commands, digests, fanout, moderation, threads, tokens
from mailforum.core.authentication import strip_forged
from mailforum.core.inbound import Delivery, Outcome
from mailforum.core.lists import find_member
from mailforum.core.policy import MESSAGE_ID_REUSED, Action, Decision, PolicyContext, decide
from mailforum.db.models import Member, Post, PostStatus
from mailforum.errors import MailforumError
from mailforum.mail.footers import strip_footers

log = logging.getLogger(__name__)


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
    if (
        placement.message_id != parsed.message_id
        and decision.action is Action.ACCEPT
        and not delivery.trusted
    ):
        decision = decide(_context(delivery, None, message_id_taken=True), (MESSAGE_ID_REUSED,))
    held = decision.action is Action.HOLD
    post.topic_id = placement.topic.id
    if placement.parent is not None and placement.parent is not post:
        if placement.parent.id is None:  # stored earlier in this batch, not flushed yet
            session.flush()
        post.parent_id = placement.parent.id
    post.status = PostStatus.HELD.value if held else PostStatus.PUBLISHED.value
    post.hold_reason = f"{decision.rule}: {decision.reason}" if held else None
    post.author_address = parsed.from_address
    post.author_name = parsed.from_name
    post.subject = parsed.subject
    post.date = parsed.date
    post.received_at = delivery.received_at
    # Our own footers, quoted by the replies that answer our copies, are not the author's text.
    post.text_body = strip_footers(parsed.text_body, delivery.config.site.domain)
    post.html_body = parsed.html_body
    post.attachments = [
        {"filename": a.filename, "type": a.content_type, "size": a.size} for a in parsed.attachments
    ]
    # Forged Authentication-Results claiming our MTA's id never reach the archive (RFC 8601 §5);
    # the spool keeps the bytes as received.
    post.raw = strip_forged(delivery.raw, delivery.config.security.authserv_id)
    post.fingerprint = parsed.fingerprint
    post.spool_id = delivery.spool_id
    if placement.existing is None:
        session.add(post)
    # Live mail is flushed here (the post has its id from now on); an import's posts
    # reach the database in groups, which is what makes it fast.
    threads.attach(session, placement, post, flush=not delivery.trusted)
    crash.point("after_post_insert")
    topic = placement.topic
    threads.name_topic(topic, parsed.subject)
    if not held:
        threads.count_post(topic, delivery.received_at)
        if not delivery.trusted:  # an operator's archive import notifies no one
            fanout.watch_own(session, post, delivery.now)
            fanout.enqueue_post(session, post, topic.post_count == 1, delivery.now)
    if held and not delivery.trusted:
        moderation.held(session, delivery.config, mlist, post, decision.rule, delivery.now)
    state = f"held ({decision.rule})" if held else "published"
    number = f"post {post.id}" if post.id is not None else "post"
    return Outcome(f"{mlist.name}: {number} {state} in topic {topic.id}", post=post)


def recent_posts(delivery: Delivery) -> tuple[int, int]:
    """Posts from this From address in this list in the last minute and the last day.

    Counted over at most ``post_rate_per_day + 1`` rows of the (list, author, time)
    index, so a sender's thousandth post costs what their first did. Placeholders
    carry no author, so they never match.
    """
    author = delivery.parsed.from_address
    if not author:
        return (0, 0)
    minute_ago = delivery.received_at - dt.timedelta(minutes=1)
    day_ago = delivery.received_at - dt.timedelta(days=1)
    recent = (
        select(Post.received_at)
        .where(
            Post.list_id == delivery.mlist.id,
            Post.author_address == author,
            Post.received_at >= day_ago,
        )
        .order_by(Post.received_at.desc())
        .limit(delivery.config.security.post_rate_per_day + 1)
        .subquery()
    )
    minute, day = delivery.session.execute(
        select(func.count(case((recent.c.received_at >= minute_ago, 1))), func.count()).select_from(recent)
    ).one()
    return int(minute), int(day)


def handle_post(delivery: Delivery) -> Outcome:
    """Mail to the list address: policy first, then thread and store."""
    if delivery.trusted:
        return store_post(delivery, Decision(Action.ACCEPT))
    if digests.is_digest_reply(delivery.parsed, delivery.config.site.domain):
        return handle_digest_reply(delivery)
    decision = _policy(
        delivery, find_member(delivery.session, delivery.mlist.id, delivery.parsed.from_address)
    )
    if decision.action is Action.DISCARD:
        return _discarded(delivery, decision)
    if decision.rule == "administrivia":
        commands.explain_administrivia(delivery)
    return store_post(delivery, decision)


def posted_before(delivery: Delivery, address: str) -> bool:
    found = delivery.session.scalar(
        select(Post.id)
        .where(
            Post.list_id == delivery.mlist.id,
            Post.author_address == address,
            Post.status == PostStatus.PUBLISHED.value,
        )
        .limit(1)
    )
    return found is not None


def handle_digest_reply(delivery: Delivery) -> Outcome:
    """A reply to a digest itself, not to one post's reply address (RELIABILITY S3d).

    Never a new "Re: … digest" topic: when the quoted text names one post (its reply
    address or its web link), the reply is threaded under it; otherwise the sender is
    told, politely and once, how to reply to one post (Discourse's ReplyToDigestError).
    """
    sender = find_member(delivery.session, delivery.mlist.id, delivery.parsed.from_address)
    decision = _policy(delivery, sender)
    if decision.action is Action.DISCARD:
        return _discarded(delivery, decision)
    target = digests.quoted_post(
        delivery.session, delivery.config, delivery.mlist, delivery.parsed.text_body, delivery.now
    )
    if target is not None:
        return store_post(delivery, decision, reply_to=target)
    answered = digests.answer_digest_reply(
        delivery.session, delivery.config, delivery.mlist, delivery.parsed, delivery.mail_from, delivery.now
    )
    what = "answered how to reply to one post" if answered else "not answered"
    log.info("reply to a digest of %s names no single post; %s", delivery.mlist.name, what)
    return Outcome(f"{delivery.mlist.name}: reply to a digest, not posted ({what})", discarded=True)


def _context(delivery: Delivery, sender: Member | None, **facts: Any) -> PolicyContext:
    return PolicyContext(
        mlist=delivery.mlist,
        parsed=delivery.parsed,
        raw=delivery.raw,
        mail_from=delivery.mail_from,
        sender=sender,
        config=delivery.config,
        **facts,
    )


def _policy(
    delivery: Delivery, sender: Member | None, token_verified: bool = False, token_for_another: bool = False
) -> Decision:
    address = delivery.parsed.from_address
    return decide(
        _context(
            delivery,
            sender,
            recent_posts=recent_posts(delivery),
            token_verified=token_verified,
            token_for_another=token_for_another,
            allowed=sender is None
            and bool(address)
            and moderation.is_allowed(delivery.session, delivery.mlist.id, address),
            posted_before=(
                not delivery.mlist.moderate_first_post or sender is None or posted_before(delivery, address)
            ),
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
        sender = find_member(delivery.session, delivery.mlist.id, delivery.parsed.from_address)
        decision = _policy(delivery, sender, token_for_another=True)
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


def handle_bounce(delivery: Delivery) -> Outcome:
    """Mail to NAME-bounces[+VERP]@: a bounce scores a member only on evidence (core.bounces)."""
    result = bounces.receive(
        delivery.session,
        delivery.config,
        delivery.mlist,
        delivery.recipient.arg,
        delivery.raw,
        delivery.mail_from,
        delivery.now,
    )
    return Outcome(result.summary, discarded=result.ignored)


def handle_enable(delivery: Delivery) -> Outcome:
    """Mail to NAME+enable-TOKEN@ (the address in a bounce warning): deliver to the member again."""
    result = bounces.enable_by_token(
        delivery.session, delivery.config, delivery.mlist, delivery.recipient.arg, delivery.now
    )
    return Outcome(result.summary, discarded=result.ignored)


def handle_moderate(delivery: Delivery) -> Outcome:
    """Mail to NAME+mod-TOKEN@: a moderator's decision, or the real author's "yes, I sent it".

    An auto-reply (a moderator's vacation notice) never decides anything (RFC 3834), nor
    does a From: that is not exactly one honest mailbox (parse._sender).
    """
    if delivery.parsed.from_problem:
        return Outcome(
            f"{delivery.mlist.name}: moderation mail ignored ({delivery.parsed.from_problem})", True
        )
    automatic = answers.should_answer(delivery.parsed, delivery.mail_from, delivery.config)
    if automatic:
        return Outcome(
            f"{delivery.mlist.name}: automatic mail to a moderation address ({automatic}); ignored", True
        )
    summary, ignored = moderation.by_mail(
        delivery.session,
        delivery.config,
        delivery.mlist,
        delivery.recipient.arg,
        delivery.parsed.from_address,
        delivery.parsed.text_body,
        delivery.now,
    )
    return Outcome(summary, discarded=ignored)
