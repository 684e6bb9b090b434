"""The use cases of mail to a list's addresses: decide, thread, store (routing is ``core.routing``).

Each handler runs inside the caller's transaction, so the post, its placeholders and
the spool entry's new state are committed together, or not at all.
"""

from __future__ import annotations

import datetime as dt
import functools
import logging
from collections.abc import Iterable
from typing import Any

from sqlalchemy import Integer, Select, String, bindparam, case, func, select
from sqlalchemy.orm import Session

from mailforum import crash
from mailforum.batching import chunks
from mailforum.config import Config
from mailforum.core import (
    answers,
    bans,
    bounces,
    commands,
    digest_replies,
    fanout,
    moderation,
    post_content,
    threads,
    tokens,
    topics,
)
from mailforum.core.inbound import Arrival, Outcome
from mailforum.core.lists import find_member
from mailforum.core.policy import MESSAGE_ID_REUSED, Action, Decision, PolicyContext, decide
from mailforum.db import ids
from mailforum.db.base import Id, UTCDateTime
from mailforum.db.models import Member, Post, PostStatus, Topic
from mailforum.db.txcache import TxCache
from mailforum.errors import MailforumError

log = logging.getLogger(__name__)

TOPIC_LOCKED = "topic-locked"  # the hold rule of a reply to a locked topic (core/topics.py)


def store_post(
    arrival: Arrival,
    decision: Decision,
    reply_to: Post | None = None,
    author: Member | fanout.Unknown | None = fanout.UNKNOWN,
) -> Outcome:
    """Thread and store the message as a post (published or held).

    A published post's notifications are written to the outbox in the same
    transaction (core.fanout); held posts and imports notify no one. ``author`` is the
    sender's membership, when the posting policy looked it up.
    """
    session, parsed, mlist = arrival.session, arrival.parsed, arrival.mlist
    # An import's posts, and a processing batch's, reach the database together (below).
    batched = arrival.imported or arrival.deferred is not None
    window = dt.timedelta(days=arrival.config.processing.subject_window_days)
    placement = threads.place(session, mlist, parsed, arrival.received_at, window, reply_to)
    if placement.duplicate:
        assert placement.existing is not None
        log.info("duplicate of post %s (%s) in %s", placement.existing.id, parsed.message_id, mlist.name)
        return Outcome(f"{mlist.name}: duplicate of post {placement.existing.id}")
    post = placement.existing or Post(
        # A batch's posts reach the database together: with its id now, a reply later in
        # the batch links to it without a flush (db.ids). Mail alone is flushed in attach().
        id=ids.reserve(session, Post) if batched else None,
        list_id=mlist.id,
        message_id=placement.message_id,
    )
    if (
        placement.message_id != parsed.message_id
        and decision.action is Action.ACCEPT
        and not arrival.imported
    ):
        decision = decide(_context(arrival, None, message_id_taken=True), (MESSAGE_ID_REUSED,))
    if decision.action is Action.ACCEPT and not arrival.imported and topics.is_locked(placement.topic):
        decision = Decision(Action.HOLD, TOPIC_LOCKED, f"topic {placement.topic.id} is locked")
    held = decision.action is Action.HOLD
    post.topic_id = placement.topic.id
    if placement.parent is not None and placement.parent is not post:
        threads.link_parent(session, post, placement.parent)
    post.status = PostStatus.HELD.value if held else PostStatus.PUBLISHED.value
    post.hold_reason = f"{decision.rule}: {decision.reason}" if held else None
    post_content.fill(post, arrival.config, parsed, arrival.raw, arrival.received_at)
    post.spool_id = arrival.spool_id
    if placement.existing is None:
        session.add(post)
    # A message processed alone is flushed here (the post has its id from now on); an
    # import's posts and a processing batch's reach the database in groups, at the next
    # query that needs them, which is what makes those fast.
    threads.attach(session, placement, post, flush=not batched)
    _remember_stored(session, post)
    crash.point("after_post_insert")
    topic = placement.topic
    threads.name_topic(topic, parsed.subject)
    with session.no_autoflush:  # a batch's posts stay unflushed (attach(flush=False))
        topics.tag_new_post(session, mlist, topic, post)
        if arrival.web:  # the tags ticked on the web's form; the header in mail counts for nothing (S42)
            topics.tag_web_post(session, mlist, topic, post, arrival.raw)
    if not held:
        threads.count_post(session, topic, arrival.received_at)
        if arrival.imported:  # an operator's archive import notifies no one
            pass
        elif arrival.deferred is not None:  # at the end of the processing batch, the same way
            arrival.deferred.add(post, topic.post_count == 1, author)
        else:
            fanout.watch_own(session, post, arrival.now, author)
            fanout.enqueue_post(session, post, topic.post_count == 1, arrival.now)
    if held and not arrival.imported:
        moderation.held(session, arrival.config, mlist, post, decision.rule, arrival.now)
        if decision.rule == TOPIC_LOCKED:
            _tell_locked(arrival, topic, post)
    state = f"held ({decision.rule})" if held else "published"
    number = f"post {post.id}" if post.id is not None else "post"
    # What placed it (``threads.Placement.evidence``: headers, a subject rule …) stays in the spool's outcome.
    return Outcome(f"{mlist.name}: {number} {state} in topic {topic.id} ({placement.evidence})", post=post)


def recent_posts(arrival: Arrival) -> tuple[int, int]:
    """Posts from this From address in this list in the last minute and the last day.

    Counted over at most ``post_rate_per_day + 1`` rows of the (list, author, time)
    index, so a sender's thousandth post costs what their first did. Placeholders
    carry no author, so they never match.
    """
    author = arrival.parsed.from_address
    if not author:
        return (0, 0)
    minute_ago, day_ago = (
        arrival.received_at - dt.timedelta(minutes=1),
        arrival.received_at - dt.timedelta(days=1),
    )
    known = _RECENT.get(arrival.session)
    if known is not None and (arrival.mlist.id, author) in known:
        most = arrival.config.security.post_rate_per_day + 1
        latest = sorted((t for t in known[(arrival.mlist.id, author)] if t >= day_ago), reverse=True)[:most]
        return sum(t >= minute_ago for t in latest), len(latest)
    minute, day = arrival.session.execute(
        _recent_posts(),
        {
            "list_id": arrival.mlist.id,
            "author": author,
            "minute_ago": minute_ago,
            "day_ago": day_ago,
            "most": arrival.config.security.post_rate_per_day + 1,
        },
    ).one()
    return int(minute), int(day)


# A batch's senders' posts of the last day (``remember_recent``): (list id, author) → when each came.
_RECENT: TxCache[dict[tuple[int, str], list[dt.datetime]]] = TxCache("mailforum.posting.recent", dict)


def remember_recent(
    session: Session, config: Config, list_id: int, authors: Iterable[str], since: dt.datetime
) -> None:
    """Read when these authors posted to the list since ``since`` (at most the rate limit and
    one each), for ``recent_posts`` to count from for the rest of the transaction: one query
    for a processing batch's senders, not one per message. The posts the batch stores are
    added as they are stored (``store_post``)."""
    wanted = {a for a in authors if a}
    if not wanted:
        return
    known = _RECENT.setdefault(session)
    most = config.security.post_rate_per_day + 1
    for chunk in chunks(sorted(wanted), 500):
        ranked = (
            select(
                Post.author_address.label("author"),
                Post.received_at.label("at"),
                func.row_number()
                .over(partition_by=Post.author_address, order_by=Post.received_at.desc())
                .label("rank"),
            )
            .where(Post.list_id == list_id, Post.author_address.in_(chunk), Post.received_at >= since)
            .subquery()
        )
        for author in chunk:
            known[(list_id, author)] = []
        for author, at in session.execute(select(ranked.c.author, ranked.c.at).where(ranked.c.rank <= most)):
            known[(list_id, author)].append(at)


def _remember_stored(session: Session, post: Post) -> None:
    known = _RECENT.get(session)
    if known is not None and post.author_address and (post.list_id, post.author_address) in known:
        known[(post.list_id, post.author_address)].append(post.received_at)


@functools.cache
def _recent_posts() -> Select[int, int]:
    """``recent_posts``' statement, built once: every live message runs it."""
    recent = (
        select(Post.received_at)
        .where(
            Post.list_id == bindparam("list_id", type_=Id),
            Post.author_address == bindparam("author", type_=String()),
            Post.received_at >= bindparam("day_ago", type_=UTCDateTime()),
        )
        .order_by(Post.received_at.desc())
        .limit(bindparam("most", type_=Integer()))
        .subquery()
    )
    minute_ago = bindparam("minute_ago", type_=UTCDateTime())
    return select(func.count(case((recent.c.received_at >= minute_ago, 1))), func.count()).select_from(recent)


def handle_post(arrival: Arrival) -> Outcome:
    """Mail to the list address: policy first, then thread and store."""
    if arrival.imported:
        return store_post(arrival, Decision(Action.ACCEPT))
    if not arrival.web and digest_replies.is_digest_reply(arrival.parsed, arrival.config.site.domain):
        return handle_digest_reply(arrival)
    # A web post's From is the signed-in member (core.webpost): the session is the evidence
    # of authenticity the sender check asks for, as a passed DMARC check is for mail.
    sender = find_member(arrival.session, arrival.mlist.id, arrival.parsed.from_address)
    decision = _policy(arrival, sender, token_verified=arrival.web)
    if decision.action is Action.DISCARD:
        return _discarded(arrival, decision)
    if decision.rule == "administrivia":
        commands.explain_administrivia(arrival)
    return store_post(arrival, decision, author=sender)


def posted_before(arrival: Arrival, address: str) -> bool:
    found = arrival.session.scalar(
        select(Post.id)
        .where(
            Post.list_id == arrival.mlist.id,
            Post.author_address == address,
            Post.status == PostStatus.PUBLISHED.value,
        )
        .limit(1)
    )
    return found is not None


def handle_digest_reply(arrival: Arrival) -> Outcome:
    """A reply to a digest itself, not to one post's reply address (RELIABILITY S3d).

    Never a new "Re: … digest" topic: when the quoted text names one post (its reply
    address or its web link), the reply is threaded under it; otherwise the sender is
    told, politely and once, how to reply to one post (Discourse's ReplyToDigestError).
    """
    sender = find_member(arrival.session, arrival.mlist.id, arrival.parsed.from_address)
    decision = _policy(arrival, sender)
    if decision.action is Action.DISCARD:
        return _discarded(arrival, decision)
    target = digest_replies.quoted_post(
        arrival.session, arrival.config, arrival.mlist, arrival.parsed.text_body, arrival.now
    )
    if target is not None:
        return store_post(arrival, decision, reply_to=target, author=sender)
    answered = digest_replies.answer_digest_reply(
        arrival.session, arrival.config, arrival.mlist, arrival.parsed, arrival.mail_from, arrival.now
    )
    what = "answered how to reply to one post" if answered else "not answered"
    log.info("reply to a digest of %s names no single post; %s", arrival.mlist.name, what)
    return Outcome(f"{arrival.mlist.name}: reply to a digest, not posted ({what})", discarded=True)


def _context(arrival: Arrival, sender: Member | None, **facts: Any) -> PolicyContext:
    return PolicyContext(
        mlist=arrival.mlist,
        parsed=arrival.parsed,
        raw=arrival.raw,
        mail_from=arrival.mail_from,
        sender=sender,
        config=arrival.config,
        **facts,
    )


def _policy(
    arrival: Arrival, sender: Member | None, token_verified: bool = False, token_for_another: bool = False
) -> Decision:
    address = arrival.parsed.from_address
    return decide(
        _context(
            arrival,
            sender,
            recent_posts=recent_posts(arrival),
            token_verified=token_verified,
            token_for_another=token_for_another,
            allowed=sender is None
            and bool(address)
            and moderation.is_allowed(arrival.session, arrival.mlist.id, address),
            posted_before=(
                not arrival.mlist.moderate_first_post or sender is None or posted_before(arrival, address)
            ),
            ban=bans.banned(arrival.session, arrival.mlist, address, arrival.mail_from) or "",
        )
    )


def reply_target(arrival: Arrival) -> tuple[Post | None, Member | None]:
    """The post and member a reply token names, if it is valid for this list; (None, None) otherwise."""
    try:
        key = tokens.derive_key(arrival.config.site.secret_key)
        member_id, post_id = tokens.verify(key, tokens.REPLY, arrival.recipient.arg, arrival.now, fields=2)
    except MailforumError:
        return None, None
    post = arrival.session.get(Post, post_id)
    member = arrival.session.get(Member, member_id)
    if post is None or member is None or post.list_id != arrival.mlist.id or member.list_id != post.list_id:
        return None, None
    return post, member


def handle_reply(arrival: Arrival) -> Outcome:
    """Mail to a per-recipient reply address (NAME+r-TOKEN@): a reply to that very post.

    The token is the strongest threading evidence, and it names the member it was
    given to. A reply from anyone else (a forwarded copy, a forged From) is held for
    a moderator instead (RELIABILITY S3a/b); an invalid or expired token makes the
    message an ordinary post to the list, threaded by its headers.
    """
    post, member = reply_target(arrival)
    if post is None or member is None:
        log.info("reply token for %s not valid; treating as a post", arrival.mlist.name)
        return handle_post(arrival)
    if arrival.parsed.from_address != member.address.lower():
        sender = find_member(arrival.session, arrival.mlist.id, arrival.parsed.from_address)
        decision = _policy(arrival, sender, token_for_another=True)
        if decision.action is Action.DISCARD:
            return _discarded(arrival, decision)
        return store_post(arrival, decision, author=sender)
    # The signed address was issued to this member and the From matches it: that is the
    # evidence of authenticity the sender check asks for.
    decision = _policy(arrival, member, token_verified=True)
    if decision.action is Action.DISCARD:
        return _discarded(arrival, decision)
    return store_post(arrival, decision, reply_to=post, author=member)


def _discarded(arrival: Arrival, decision: Decision) -> Outcome:
    log.info("discarded %s for %s: %s", arrival.parsed.message_id, arrival.mlist.name, decision.reason)
    return Outcome(f"{arrival.mlist.name}: discarded ({decision.rule}: {decision.reason})", discarded=True)


def handle_bounce(arrival: Arrival) -> Outcome:
    """Mail to NAME-bounces[+VERP]@: a bounce scores a member only on evidence (core.bounces)."""
    result = bounces.receive(
        arrival.session,
        arrival.config,
        arrival.mlist,
        arrival.recipient.arg,
        arrival.raw,
        arrival.mail_from,
        arrival.now,
    )
    return Outcome(result.summary, discarded=result.ignored)


def handle_enable(arrival: Arrival) -> Outcome:
    """Mail to NAME+enable-TOKEN@ (the address in a bounce warning): deliver to the member again."""
    result = bounces.enable_by_token(
        arrival.session, arrival.config, arrival.mlist, arrival.recipient.arg, arrival.now
    )
    return Outcome(result.summary, discarded=result.ignored)


def handle_moderate(arrival: Arrival) -> Outcome:
    """Mail to NAME+mod-TOKEN@: a moderator's decision, or the real author's "yes, I sent it".

    An auto-reply (a moderator's vacation notice) never decides anything (RFC 3834), nor
    does a From: that is not exactly one honest mailbox (parse._sender).
    """
    if arrival.parsed.from_problem:
        return Outcome(f"{arrival.mlist.name}: moderation mail ignored ({arrival.parsed.from_problem})", True)
    automatic = answers.should_answer(arrival.parsed, arrival.mail_from, arrival.config)
    if automatic:
        return Outcome(
            f"{arrival.mlist.name}: automatic mail to a moderation address ({automatic}); ignored", True
        )
    summary, ignored = moderation.by_mail(
        arrival.session,
        arrival.config,
        arrival.mlist,
        arrival.recipient.arg,
        arrival.parsed.from_address,
        arrival.parsed.text_body,
        arrival.now,
    )
    return Outcome(summary, discarded=ignored)


def _tell_locked(arrival: Arrival, topic: Topic, post: Post) -> bool:
    """Tell the author of a reply to a locked topic, politely and once per topic.

    Only a member of the list whose mail is not automatic hears of it (never a stranger:
    a forged From would make it backscatter, RELIABILITY S9), at most once per topic,
    and within the daily cap of automatic answers (core.answers).
    """
    who = arrival.parsed.from_address
    if not who or find_member(arrival.session, arrival.mlist.id, who) is None:
        return False
    if answers.should_answer(arrival.parsed, arrival.mail_from, arrival.config) is not None:
        return False
    told = arrival.session.scalar(
        select(Post.id)
        .where(
            Post.topic_id == topic.id,
            Post.author_address == who,
            Post.hold_reason.like(f"{TOPIC_LOCKED}:%"),
            Post.id != post.id,
        )
        .limit(1)
    )
    if told is not None:
        return False
    context = {"topic_id": topic.id, "topic_title": commands.topic_name(topic), "locked": True}
    return answers.answer(
        arrival.session,
        arrival.config,
        arrival.mlist,
        who,
        "command/locked",
        context,
        arrival.now,
        in_reply_to=arrival.parsed.message_id,
    )
