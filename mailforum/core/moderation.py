"""Held posts and the people who decide on them.

A post the policy holds (core/policy.py) stays in ``posts`` with status ``held``
and notifies no one but the list's moderators: each gets a notice with the post,
a signed link to a page (GET shows buttons, POST acts — link scanners click
everything) and signed reply addresses ``NAME+mod-TOKEN@domain``, one per action.
A token carries (post id, action), so a reply needs no parsing beyond its address.

    action     who may use it                         what it does
    approve    a moderator (web, reply, CLI)          publish and fan out; may allow the sender
    reject     a moderator                            remove; tell the author why, only if authenticated
    discard    a moderator                            remove silently
    confirm    the real member named in From (S1)     publish: "yes, I sent this"

Rejection notices go only to authors whose mail was authenticated by our MTA's
Authentication-Results (RELIABILITY S9: no backscatter to forged senders). Held
posts nobody decided on expire after ``[moderation] held_expire_days``; the
moderators get a summary. The raw message stays in the spool either way.

Sending (``notices``) and fan-out (``fanout``, ``threads``) are imported by the functions
that act: with them come the mail parser, Jinja2 and the outbox, some 60 ms that
``held list`` and ``lists moderators`` would otherwise pay on every start.
"""

from __future__ import annotations

import datetime as dt
import logging
from collections.abc import Sequence
from dataclasses import dataclass

from sqlalchemy import select, update
from sqlalchemy.orm import Session

from mailforum.config import Config
from mailforum.core import tokens
from mailforum.core.authentication import verdict
from mailforum.core.lists import find_member
from mailforum.db.models import AllowedSender, MailingList, Member, Moderator, Post, PostStatus, Topic
from mailforum.errors import MailforumError
from mailforum.mail.addresses import Kind, list_address

log = logging.getLogger(__name__)

ANY = 0  # a web link: the page offers every action
APPROVE = 1
REJECT = 2
DISCARD = 3
CONFIRM = 4
ACTIONS = {"approve": APPROVE, "reject": REJECT, "discard": DISCARD, "confirm": CONFIRM}
NAMES = {v: k for k, v in ACTIONS.items()}
EXCERPT = 2000


@dataclass(frozen=True, slots=True)
class HeldPost:
    id: int
    list_name: str
    author: str
    subject: str
    reason: str
    received_at: dt.datetime


# -- moderators and allowed senders ------------------------------------------------


def moderators(session: Session, list_id: int) -> list[str]:
    return list(
        session.scalars(select(Moderator.address).where(Moderator.list_id == list_id).order_by(Moderator.id))
    )


def is_moderator(session: Session, list_id: int, address: str) -> bool:
    found = session.scalar(
        select(Moderator.id).where(Moderator.list_id == list_id, Moderator.address == address.lower())
    )
    return found is not None


def add_moderator(session: Session, mlist: MailingList, address: str) -> bool:
    if is_moderator(session, mlist.id, address):
        return False
    session.add(Moderator(list_id=mlist.id, address=address.lower()))
    return True


def remove_moderator(session: Session, mlist: MailingList, address: str) -> bool:
    row = session.scalars(
        select(Moderator).where(Moderator.list_id == mlist.id, Moderator.address == address.lower())
    ).first()
    if row is None:
        return False
    session.delete(row)
    return True


def is_allowed(session: Session, list_id: int, address: str) -> bool:
    found = session.scalar(
        select(AllowedSender.id).where(
            AllowedSender.list_id == list_id, AllowedSender.address == address.lower()
        )
    )
    return found is not None


def allow(session: Session, list_id: int, address: str) -> None:
    if address and not is_allowed(session, list_id, address):
        session.add(AllowedSender(list_id=list_id, address=address.lower()))


# -- tokens ------------------------------------------------------------------------


def token(config: Config, post_id: int, action: int, now: dt.datetime) -> str:
    expires = now + dt.timedelta(days=config.moderation.token_days)
    return tokens.sign_short(
        tokens.derive_key(config.site.secret_key), tokens.MODERATE, (post_id, action), expires
    )


def read_token(config: Config, text: str, now: dt.datetime) -> tuple[int, int] | None:
    try:
        post_id, action = tokens.verify(
            tokens.derive_key(config.site.secret_key), tokens.MODERATE, text, now, fields=2
        )
    except MailforumError:
        return None
    return (post_id, action) if action in (ANY, *NAMES) else None


def page_url(config: Config, mlist: MailingList, post_id: int, now: dt.datetime) -> str:
    return f"{config.site.base_url.rstrip('/')}/lists/{mlist.name}/held/{token(config, post_id, ANY, now)}"


def reply_address(config: Config, mlist: MailingList, post_id: int, action: int, now: dt.datetime) -> str:
    return list_address(mlist.name, config.site.domain, Kind.MODERATE, token(config, post_id, action, now))


# -- notices -----------------------------------------------------------------------


def notify_held(session: Session, config: Config, mlist: MailingList, post: Post, now: dt.datetime) -> int:
    """Tell the moderators about a held post (never the sender: S9). Returns how many were told."""
    from mailforum.core import notices  # see the module docstring

    addresses = moderators(session, mlist.id)
    if not addresses:
        log.info("post %s held in %s; the list has no moderators", post.id, mlist.name)
        return 0
    excerpt = post.text_body[:EXCERPT] + ("\n[…]" if len(post.text_body) > EXCERPT else "")
    text = (
        f"A post to {mlist.display_title} is waiting for a moderator.\n\n"
        f"From:    {post.author_name} <{post.author_address}>\n"
        f"Subject: {post.subject}\n"
        f"Held:    {post.hold_reason}\n\n"
        f"To decide, open {page_url(config, mlist, post.id, now)}\n\n"
        f"or reply by mail: replying to this notice approves the post; to reject it\n"
        f"(the author is told why, if their mail was authenticated) write to\n"
        f"  {reply_address(config, mlist, post.id, REJECT, now)}\n"
        f"and to discard it silently write to\n"
        f"  {reply_address(config, mlist, post.id, DISCARD, now)}\n\n"
        f"Held posts nobody decides on are discarded after {config.moderation.held_expire_days:g} days.\n\n"
        f"---- the post ----\n{excerpt}\n"
    )
    for address in addresses:
        notice = notices.Notice(
            address,
            f"Held for moderation: {post.subject or '(no subject)'}",
            text,
            role="owner",
            reply_to=reply_address(config, mlist, post.id, APPROVE, now),
        )
        notices.send(session, config, mlist, notice, now, capped=False)
    return len(addresses)


def ask_author(
    session: Session, config: Config, mlist: MailingList, post: Post, member: Member, now: dt.datetime
) -> bool:
    """A post "from" a member we could not authenticate: ask the real member (RELIABILITY S1)."""
    from mailforum.core import notices  # see the module docstring

    text = (
        f"We received a post to {mlist.display_title} that says it is from you, but we could not\n"
        "confirm that it was. It is held, and nobody else has seen it.\n\n"
        f"Subject: {post.subject}\n\n"
        "If you sent it, reply to this message (or write to the address below) and it will\n"
        "be published. If you did not, ignore this message; the post will expire.\n\n"
        f"  {reply_address(config, mlist, post.id, CONFIRM, now)}\n"
    )
    notice = notices.Notice(
        member.address,
        f"Did you send this to {mlist.display_title}? {post.subject}",
        text,
        reply_to=reply_address(config, mlist, post.id, CONFIRM, now),
    )
    return notices.send(session, config, mlist, notice, now)


def held(
    session: Session, config: Config, mlist: MailingList, post: Post, rule: str, now: dt.datetime
) -> None:
    """Called when the policy held a post: the confirm-by-reply mail (where chosen) or the moderators."""
    if rule == "unverified-sender" and mlist.unverified_action == "confirm":
        member = find_member(session, mlist.id, post.author_address)
        if member is not None and ask_author(session, config, mlist, post, member, now):
            return
    notify_held(session, config, mlist, post, now)


# -- decisions ---------------------------------------------------------------------


def held_posts(session: Session, mlist: MailingList | None = None) -> list[HeldPost]:
    query = (
        select(
            Post.id, MailingList.name, Post.author_address, Post.subject, Post.hold_reason, Post.received_at
        )
        .join(MailingList, MailingList.id == Post.list_id)
        .where(Post.status == PostStatus.HELD.value)
        .order_by(Post.id)
    )
    if mlist is not None:
        query = query.where(Post.list_id == mlist.id)
    return [HeldPost(r[0], r[1], r[2], r[3], r[4] or "", r[5]) for r in session.execute(query)]


def held_post(session: Session, post_id: int) -> Post | None:
    post = session.get(Post, post_id, with_for_update=True)
    return post if post is not None and post.status == PostStatus.HELD.value else None


def approve(session: Session, post: Post, now: dt.datetime, allow_sender: bool = False) -> int:
    """Publish a held post and write its fan-out; returns how many copies were queued."""
    from mailforum.core import fanout, threads  # see the module docstring

    topic = session.get(Topic, post.topic_id)
    assert topic is not None
    post.status = PostStatus.PUBLISHED.value
    post.hold_reason = None
    threads.count_post(session, topic, post.received_at)
    if allow_sender and find_member(session, post.list_id, post.author_address) is None:
        allow(session, post.list_id, post.author_address)
    session.flush()
    fanout.watch_own(session, post, now)
    count = fanout.enqueue_post(session, post, topic.post_count == 1, now)
    log.info("held post %s approved: %d copies", post.id, count)
    return count


def _remove(session: Session, post: Post) -> None:
    session.execute(
        update(Post)
        .where(Post.parent_id == post.id)
        .values(parent_id=post.parent_id)
        .execution_options(synchronize_session=False)
    )
    session.delete(post)


def authenticated_author(config: Config, post: Post) -> bool:
    """Whether our MTA vouched for the author (the only case a rejection is sent: S9)."""
    if not config.security.authserv_id or not post.raw or not post.author_address:
        return False
    return verdict(post.raw, config.security.authserv_id, post.author_address).authenticated


def reject(
    session: Session, config: Config, mlist: MailingList, post: Post, now: dt.datetime, reason: str = ""
) -> bool:
    """Remove a held post; tell an authenticated author why. Returns True when the author was told."""
    from mailforum.core import notices  # see the module docstring

    told = False
    if authenticated_author(config, post):
        text = (
            f"Your post to {mlist.display_title} was not accepted by the moderators.\n\n"
            f"Subject: {post.subject}\n" + (f"Reason:  {reason}\n" if reason else "")
        )
        notice = notices.Notice(
            post.author_address,
            f"Not accepted: {post.subject}",
            text,
            role="owner",
            in_reply_to=post.message_id,
        )
        told = notices.send(session, config, mlist, notice, now)
    log.info("held post %s rejected (author told: %s)", post.id, told)
    _remove(session, post)
    return told


def discard(session: Session, post: Post) -> None:
    log.info("held post %s discarded", post.id)
    _remove(session, post)


def act(
    session: Session,
    config: Config,
    mlist: MailingList,
    post: Post,
    action: int,
    now: dt.datetime,
    *,
    reason: str = "",
    allow_sender: bool = False,
) -> str:
    """Carry out one decision on a held post; returns a one-line summary."""
    if action in (APPROVE, CONFIRM):
        count = approve(session, post, now, allow_sender)
        return f"post {post.id} approved ({count} copies)"
    if action == REJECT:
        told = reject(session, config, mlist, post, now, reason)
        return f"post {post.id} rejected" + (" (author told)" if told else "")
    discard(session, post)
    return f"post {post.id} discarded"


def by_mail(
    session: Session, config: Config, mlist: MailingList, text: str, sender: str, body: str, now: dt.datetime
) -> tuple[str, bool]:
    """Mail to NAME+mod-TOKEN@: (summary, ignored). A moderator decides; the real author confirms."""
    found = read_token(config, text, now)
    if found is None or found[1] == ANY:
        return f"{mlist.name}: moderation token not valid; ignored", True
    post_id, action = found
    post = held_post(session, post_id)
    if post is None or post.list_id != mlist.id:
        return f"{mlist.name}: post {post_id} is no longer held; ignored", True
    sender = sender.lower()
    if not sender:
        return f"{mlist.name}: moderation mail without a usable From; ignored", True
    if action == CONFIRM:
        if sender != post.author_address.lower():
            return f"{mlist.name}: confirmation for post {post_id} from someone else; ignored", True
    elif not is_moderator(session, mlist.id, sender):
        return f"{mlist.name}: moderation of post {post_id} by a non-moderator; ignored", True
    reason = first_line(body) if action == REJECT else ""
    return f"{mlist.name}: " + act(session, config, mlist, post, action, now, reason=reason), False


def first_line(body: str) -> str:
    """The first line a person wrote (not quoted), as a rejection reason."""
    for line in body.splitlines():
        line = line.strip()
        if line and not line.startswith(">"):
            return line[:200]
    return ""


def expire(session: Session, config: Config, now: dt.datetime, limit: int = 1000) -> int:
    """Discard up to ``limit`` held posts older than ``held_expire_days``; summarise them to
    each list's moderators."""
    cutoff = now - dt.timedelta(days=config.moderation.held_expire_days)
    posts = session.scalars(
        select(Post)
        .where(Post.status == PostStatus.HELD.value, Post.received_at < cutoff)
        .order_by(Post.list_id, Post.id)
        .limit(limit)
    ).all()
    by_list: dict[int, list[str]] = {}
    for post in posts:
        by_list.setdefault(post.list_id, []).append(
            f"- {post.author_address}: {post.subject} ({post.hold_reason})"
        )
        _remove(session, post)
    for list_id, lines in by_list.items():
        mlist = session.get(MailingList, list_id)
        assert mlist is not None
        summary(session, config, mlist, lines, now)
    return len(posts)


def summary(
    session: Session, config: Config, mlist: MailingList, lines: Sequence[str], now: dt.datetime
) -> None:
    from mailforum.core import notices  # see the module docstring

    text = (
        f"These posts to {mlist.display_title} were held for {config.moderation.held_expire_days:g} days "
        "without a decision and have been discarded:\n\n" + "\n".join(lines) + "\n"
    )
    for address in moderators(session, mlist.id):
        notice = notices.Notice(address, f"Expired held posts on {mlist.display_title}", text, role="owner")
        notices.send(session, config, mlist, notice, now, capped=False)
