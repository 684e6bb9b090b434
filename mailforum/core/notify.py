"""What each kind of outbox row sends: shared copies rendered once, personalised per row.

The delivery worker claims rows and asks ``Composer.envelope`` for the bytes of each.
A kind is one entry in ``Composer``'s tables: a loader that renders what all rows of
a kind share (a post's notification: its text and HTML, rendered once and cached by
post) and a builder that adds the per-recipient parts (the signed ``Reply-To``, the
VERP envelope sender, ``List-Unsubscribe``). Digests and command replies (issues 5
and 6) add their own pair.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Callable
from dataclasses import dataclass

from sqlalchemy import select
from sqlalchemy.orm import Session

from mailforum.config import Config
from mailforum.core import tokens
from mailforum.db import outbox
from mailforum.db.models import MailingList, OutboxKind, Post
from mailforum.mail.addresses import Kind, list_address
from mailforum.mail.compose import ListIdentity, PostView, SharedCopy, mailto, notification
from mailforum.render import Renderer

MAX_ANCESTORS = 200


def identity(config: Config, mlist: MailingList) -> ListIdentity:
    tag = f"[{mlist.name}]" if mlist.subject_tag is None else mlist.subject_tag
    return ListIdentity(mlist.name, mlist.display_title, config.site.domain, config.site.base_url, tag)


def ancestors(session: Session, post: Post) -> tuple[str, ...]:
    """Message-IDs from the topic root down to the post's parent, from the stored thread."""
    chain: list[str] = []
    seen = {post.id}
    parent_id = post.parent_id
    while parent_id is not None and parent_id not in seen and len(chain) < MAX_ANCESTORS:
        seen.add(parent_id)
        row = session.execute(select(Post.message_id, Post.parent_id).where(Post.id == parent_id)).first()
        if row is None:
            break
        chain.append(row[0])
        parent_id = row[1]
    return tuple(reversed(chain))


@dataclass(frozen=True, slots=True)
class Prepared:
    """A post's shared copy and what personalising it needs."""

    list_name: str
    post_id: int
    copy: SharedCopy
    unsubscribe: tuple[str, ...]


def prepare_post(session: Session, config: Config, renderer: Renderer, post_id: int) -> Prepared | None:
    """Render a post's notification once (text and HTML); None if the post is gone."""
    post = session.get(Post, post_id)
    if post is None:
        return None
    mlist = session.get(MailingList, post.list_id)
    assert mlist is not None
    ident = identity(config, mlist)
    subject = post.subject or "(no subject)"
    context = {
        "list": {"name": mlist.name, "title": ident.title, "address": ident.address},
        "post": {
            "subject": subject,
            "text": post.text_body,
            "author_name": post.author_name,
            "author_address": post.author_address,
            "attachments": list(post.attachments or []),
            "date": post.date or post.received_at,
        },
        "links": {
            "topic": ident.topic_url(post.topic_id),
            "archive": ident.archive_url,
            "watch": ident.topic_action("watch", post.topic_id),
            "mute": ident.topic_action("mute", post.topic_id),
            "mode": mailto(ident.request_address, "help"),
            "unsubscribe": ident.unsubscribe_mailto,
            "reply_private": mailto(post.author_address, "Re: " + subject) if post.author_address else "",
        },
    }
    text = renderer.render(mlist.name, "notification/post.txt.j2", context)
    html = renderer.render(mlist.name, "notification/post.html.j2", context)
    view = PostView(
        message_id=post.message_id,
        subject=subject,
        author_name=post.author_name,
        author_address=post.author_address,
        date=post.date or post.received_at,
        topic_id=post.topic_id,
        ancestors=ancestors(session, post),
    )
    # Issue 5: put the per-recipient https one-click URL first (see Envelope below).
    return Prepared(mlist.name, post.id, notification(ident, view, text, html), (ident.unsubscribe_mailto,))


@dataclass(frozen=True, slots=True)
class Envelope:
    """One copy, ready for the relay."""

    row: outbox.Claimed
    sender: str
    data: bytes


class Composer:
    """Turns claimed rows into envelopes: shared copies cached per post, personalised per row."""

    def __init__(self, config: Config, renderer: Renderer, cache_size: int = 256) -> None:
        self.config = config
        self.renderer = renderer
        self.key = tokens.derive_key(config.site.secret_key)
        self._posts: dict[int, Prepared | None] = {}
        self._cache_size = cache_size
        self._loaders: dict[str, Callable[[Session, list[outbox.Claimed]], None]] = {
            OutboxKind.POST.value: self._load_posts,
        }
        self._builders: dict[str, Callable[[outbox.Claimed, dt.datetime], Envelope | str]] = {
            OutboxKind.POST.value: self._post_envelope,
        }

    def load(self, session: Session, rows: list[outbox.Claimed]) -> None:
        """Render (in the caller's thread) what the rows share and is not cached yet."""
        for kind in {r.kind for r in rows}:
            loader = self._loaders.get(kind)
            if loader is not None:
                loader(session, [r for r in rows if r.kind == kind])

    def envelope(self, row: outbox.Claimed, now: dt.datetime) -> Envelope | str:
        """The envelope for one row, or why it can never be sent (a permanent failure)."""
        build = self._builders.get(row.kind)
        if build is None:
            return f"no renderer for outbox kind {row.kind!r}"
        return build(row, now)

    # -- kind "post": one post to one member --------------------------------

    def _load_posts(self, session: Session, rows: list[outbox.Claimed]) -> None:
        for post_id in {r.post_id for r in rows if r.post_id is not None}:
            if post_id not in self._posts:
                if len(self._posts) >= self._cache_size:
                    self._posts.pop(next(iter(self._posts)))
                self._posts[post_id] = prepare_post(session, self.config, self.renderer, post_id)

    def _post_envelope(self, row: outbox.Claimed, now: dt.datetime) -> Envelope | str:
        prepared = self._posts.get(row.post_id) if row.post_id is not None else None
        if prepared is None:
            return "the post no longer exists"
        if row.member_id is None:
            return "no longer a member"
        out = self.config.outbound
        domain = self.config.site.domain
        reply = tokens.sign(
            self.key,
            tokens.REPLY,
            (row.member_id, prepared.post_id),
            now + dt.timedelta(days=out.reply_token_days),
        )
        data = prepared.copy.personalise(
            list_address(prepared.list_name, domain, Kind.REPLY, reply), prepared.unsubscribe
        )
        return Envelope(row, self.verp(prepared.list_name, row, now), data)

    def verp(self, list_name: str, row: outbox.Claimed, now: dt.datetime) -> str:
        """The envelope sender NAME-bounces+TOKEN@domain; the token names the outbox row."""
        days = self.config.outbound.verp_token_days
        token = tokens.sign(self.key, tokens.VERP, (row.id,), now + dt.timedelta(days=days))
        return list_address(list_name, self.config.site.domain, Kind.BOUNCES, token)
