"""What each kind of outbox row sends: shared copies rendered once, personalised per row.

The delivery worker claims rows and asks ``Composer.compose`` for the bytes of each.
A kind is one entry in ``Composer``'s tables: a loader that renders what all rows of
a kind share (a post's notification: its text and HTML, rendered once and cached by
post) and a builder that adds the per-recipient parts (the signed ``Reply-To``, the
VERP envelope sender, ``List-Unsubscribe`` with the signed one-click link). Automatic
answers (kind ``notice``, core.answers) carry their rendered text in the row's payload;
digests add their own pair: what each member's digest holds is
``core.digest_content.member_contents``, rendered once per list, period and muted set
by ``core.digest_render``.
"""

from __future__ import annotations

import datetime as dt
import logging
from collections.abc import Callable, Collection, Sequence
from dataclasses import dataclass
from functools import partial

from sqlalchemy import select
from sqlalchemy.orm import Session, undefer

from mailforum.config import Config
from mailforum.core import tokens
from mailforum.core.digest_content import DigestTopic, load_topics, member_contents
from mailforum.core.digest_render import member_digest, mime_digest, render_digest
from mailforum.core.lists import identity
from mailforum.core.topics import tags_of
from mailforum.db import outbox, payloads
from mailforum.db.ancestry import ancestors
from mailforum.db.models import DigestFormat, MailingList, Member, OutboxKind, Post, PostStatus
from mailforum.mail import digest as digest_mail
from mailforum.mail.addresses import Kind, list_address
from mailforum.mail.compose import (
    ListIdentity,
    NoticeView,
    PostView,
    SharedCopy,
    mailto,
    notice,
    notification,
    site_notice,
)
from mailforum.mail.dkim_sign import Signer
from mailforum.mail.headers import reply_subject
from mailforum.mail.parse import Addressees, addressees
from mailforum.render import Renderer

log = logging.getLogger(__name__)


@dataclass(frozen=True, slots=True)
class Prepared:
    """A post's shared copy and what personalising it needs."""

    list_name: str
    post_id: int
    copy: SharedCopy
    unsubscribe: tuple[str, ...]  # after the per-recipient one-click link
    ident: ListIdentity


def prepare_post(session: Session, config: Config, renderer: Renderer, post_id: int) -> Prepared | None:
    """Render a post's notification once (text and HTML); None if the post is gone or removed."""
    return prepare_posts(session, config, renderer, [post_id])[post_id]


def prepare_posts(
    session: Session, config: Config, renderer: Renderer, post_ids: Collection[int]
) -> dict[int, Prepared | None]:
    """``prepare_post`` for several posts, read together: one query for the posts, one for
    their topics' tags and one per level of their threads, not all of that per post (a
    claimed chunk holds the copies of many posts; bench/posts.py)."""
    # With the raw message, which the copies' To and Cc come from (a query per post else).
    # A removed post's copy held by a worker when it was removed, then given back, goes no
    # more (RELIABILITY F26).
    found = (
        select(Post)
        .where(Post.id.in_(sorted(post_ids)), Post.status != PostStatus.REMOVED.value)
        .options(undefer(Post.raw))
    )
    posts = {post.id: post for post in session.scalars(found)}
    lineage = ancestors(session, {p.id: (p.message_id, p.parent_id) for p in posts.values()})
    tags = tags_of(session, sorted({p.topic_id for p in posts.values()}))
    prepared: dict[int, Prepared | None] = dict.fromkeys(post_ids)
    for post in posts.values():
        mlist = session.get(MailingList, post.list_id)
        assert mlist is not None
        prepared[post.id] = _prepare(
            config, renderer, mlist, post, lineage[post.id], tags.get(post.topic_id, ())
        )
    return prepared


def _prepare(
    config: Config,
    renderer: Renderer,
    mlist: MailingList,
    post: Post,
    lineage: tuple[str, ...],
    tags: Sequence[str],
) -> Prepared:
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
            "preferences": ident.preferences_url,
            "unsubscribe": ident.unsubscribe_mailto,
            "reply_private": (
                mailto(post.author_address, reply_subject(subject)) if post.author_address else ""
            ),
        },
    }
    text = renderer.render(mlist, "notification/post.txt.j2", context)
    html = renderer.render(mlist, "notification/post.html.j2", context)
    sent_to = addressees(post.raw) if post.raw else Addressees((), ())
    view = PostView(
        message_id=post.message_id,
        subject=subject,
        author_name=post.author_name,
        author_address=post.author_address,
        date=post.date or post.received_at,
        topic_id=post.topic_id,
        ancestors=lineage,
        to=sent_to.to,
        cc=sent_to.cc,
        tags=tuple(tags),
    )
    # The per-recipient https one-click URL goes in front of this in _post_copy.
    return Prepared(
        mlist.name, post.id, notification(ident, view, text, html), (ident.unsubscribe_mailto,), ident
    )


# (list, start mark, end mark, frequency, label, muted topics, format)
DigestKey = tuple[int, int, int, str, str, frozenset[int], str]


@dataclass(frozen=True, slots=True)
class OutgoingCopy:
    """One copy, ready for the relay. ``build`` makes its bytes when it is sent (in the
    sender's thread): a claimed chunk holds a closure over the shared parts per copy, not a
    finished copy each — 100 digests of 500 posts would be 86 MB (RELIABILITY L6)."""

    row: outbox.ClaimedCopy
    sender: str  # the envelope sender (VERP)
    build: Callable[[], bytes]


# Shared digests kept between chunks: 64 MB is 80 digests of 500 posts (RELIABILITY L6).
DIGEST_CACHE_BYTES = 64 * 1024 * 1024

_LIST_MAIL = frozenset({OutboxKind.POST.value, OutboxKind.DIGEST.value})
# The local part mail about no list comes from (sign-in links); nobody reads it.
SITE_SENDER = "noreply"


def paused_members(session: Session, member_ids: set[int | None]) -> set[int | None]:
    """Which of ``member_ids`` have delivery paused by bounces."""
    ids = [m for m in member_ids if m is not None]
    if not ids:
        return set()
    return set(
        session.scalars(select(Member.id).where(Member.id.in_(ids), Member.delivery_disabled_at.is_not(None)))
    )


def _signed(signer: Signer, build: Callable[[], bytes]) -> Callable[[], bytes]:
    """``build``, DKIM-signed when it runs."""
    return lambda: signer.sign(build())


class Composer:
    """Turns claimed rows into outgoing copies: shared parts cached per post, personalised per row."""

    def __init__(self, config: Config, renderer: Renderer, cache_size: int = 256) -> None:
        self.config = config
        self.renderer = renderer
        self.key = tokens.derive_key(config.site.secret_key)
        self._posts: dict[int, Prepared | None] = {}
        self._lists: dict[int, ListIdentity | None] = {}
        self._cache_size = cache_size
        dkim = config.dkim
        self.signer = (
            Signer(dkim.key_file, dkim.selector, dkim.domain or config.site.domain) if dkim.key_file else None
        )
        self._ranges: dict[tuple[int, int, int], tuple[DigestTopic, ...]] = {}
        # MIME digests: each (list, range)'s posts embedded once, for every muted set.
        self._embedded: dict[tuple[int, int, int], dict[int, digest_mail.Embedded | None]] = {}
        self._digests: dict[DigestKey, digest_mail.SharedDigest | None] = {}
        self._digest_bytes = 0
        self._digest_rows: dict[int, DigestKey] = {}
        self._list_names: dict[int, str] = {}
        self._signers: dict[tuple[str, dt.datetime], tokens.Signer] = {}
        self._digest_signers: dict[dt.datetime, tokens.DigestSigner] = {}
        self._paused: set[int | None] = set()
        self._loaders: dict[str, Callable[[Session, list[outbox.ClaimedCopy]], None]] = {
            OutboxKind.POST.value: self._load_posts,
            OutboxKind.DIGEST.value: self._load_digests,
            OutboxKind.NOTICE.value: self._load_lists,
        }
        self._builders: dict[str, Callable[[outbox.ClaimedCopy, dt.datetime], OutgoingCopy | str]] = {
            OutboxKind.POST.value: self._post_copy,
            OutboxKind.DIGEST.value: self._digest_copy,
            OutboxKind.NOTICE.value: self._notice_copy,
            OutboxKind.SIGNIN.value: self._signin_copy,
        }

    def load(self, session: Session, rows: list[outbox.ClaimedCopy]) -> None:
        """Render (in the caller's thread) what the rows share and is not cached yet."""
        self._paused = paused_members(session, {r.member_id for r in rows if r.kind in _LIST_MAIL})
        for kind in {r.kind for r in rows}:
            loader = self._loaders.get(kind)
            if loader is not None:
                loader(session, [r for r in rows if r.kind == kind])

    def compose(self, row: outbox.ClaimedCopy, now: dt.datetime) -> OutgoingCopy | str:
        """The copy for one row, or why it can never be sent (a permanent failure)."""
        build = self._builders.get(row.kind)
        if build is None:
            return f"no renderer for outbox kind {row.kind!r}"
        if row.kind in _LIST_MAIL and row.member_id in self._paused:
            # Queued before bounces paused the member: like Mailman, a paused member misses
            # the list's mail meanwhile (answers and bounce warnings are notices and still go).
            return "delivery paused by bounces"
        built = build(row, now)
        if self.signer is not None and isinstance(built, OutgoingCopy):
            built = OutgoingCopy(built.row, built.sender, _signed(self.signer, built.build))
        return built

    # -- kind "post": one post to one member --------------------------------

    def _load_posts(self, session: Session, rows: list[outbox.ClaimedCopy]) -> None:
        missing = {r.post_id for r in rows if r.post_id is not None} - self._posts.keys()
        if not missing:
            return
        # The oldest go first, never one these rows need: a claim may name more posts than
        # the cache holds, and a copy whose post was evicted would fail as "no longer exists".
        wanted = {r.post_id for r in rows}
        for post_id in [p for p in self._posts if p not in wanted][
            : max(0, len(self._posts) + len(missing) - self._cache_size)
        ]:
            del self._posts[post_id]
        self._posts.update(prepare_posts(session, self.config, self.renderer, missing))

    def _post_copy(self, row: outbox.ClaimedCopy, now: dt.datetime) -> OutgoingCopy | str:
        prepared = self._posts.get(row.post_id) if row.post_id is not None else None
        if prepared is None:
            return "the post was removed or no longer exists"
        if row.member_id is None or row.list_id is None:
            return "no longer a member"
        out = self.config.outbound
        domain = self.config.site.domain
        reply = self._signer(tokens.REPLY, now + dt.timedelta(days=out.reply_token_days)).sign(
            (row.member_id, prepared.post_id)
        )
        one_click = self.unsubscribe_url(prepared.ident, row.list_id, row.member_id, now)
        data = partial(
            prepared.copy.personalise,
            list_address(prepared.list_name, domain, Kind.REPLY, reply),
            (one_click, *prepared.unsubscribe),
        )
        return OutgoingCopy(row, self.verp(prepared.list_name, row, now), data)

    # -- kind "digest": one member's digest between two marks ----------------

    def _load_digests(self, session: Session, rows: list[outbox.ClaimedCopy]) -> None:
        """Render each (list, range, frequency, muted topics) once; remember which rows use which."""
        groups: dict[tuple[int, int, int, str, str], list[outbox.ClaimedCopy]] = {}
        for row in rows:
            if row.list_id is None:
                continue
            p = payloads.digest_payload(row.payload)
            group = (row.list_id, p["from"], p["to"], p["frequency"], p["label"])
            groups.setdefault(group, []).append(row)
        current: set[DigestKey] = set()
        for (list_id, start, end, frequency, day), members in groups.items():
            mlist = session.get(MailingList, list_id)
            if mlist is None:
                continue
            self._list_names[list_id] = mlist.name
            self._lists[list_id] = identity(self.config, mlist)
            span = (list_id, start, end)
            load = partial(self._range, session, list_id)
            held = member_contents(session, [(row.member_id, start) for row in members], end, load)
            for row, contents in zip(members, held, strict=True):
                key = (list_id, start, end, frequency, day, contents.muted, mlist.digest_format)
                self._digest_rows[row.id] = key
                current.add(key)
                if key in self._digests:
                    continue
                shared = self._shared_digest(session, mlist, span, contents.topics, frequency, day)
                self._digests[key] = shared
                self._digest_bytes += shared.size if shared is not None else 0
                self._forget_digests(keep=current)

    def _range(self, session: Session, list_id: int, start: int, end: int) -> tuple[DigestTopic, ...]:
        """A range's topics, rendered text and all, kept for the 16 ranges last asked for."""
        span = (list_id, start, end)
        if span not in self._ranges:
            if len(self._ranges) >= 16:
                oldest = next(iter(self._ranges))
                self._ranges.pop(oldest)
                self._embedded.pop(oldest, None)
            self._ranges[span] = load_topics(session, self.config, list_id, start, end)
        return self._ranges[span]

    def _forget_digests(self, keep: set[DigestKey]) -> None:
        """Drop the oldest shared digests beyond ``DIGEST_CACHE_BYTES`` or ``cache_size`` entries,
        except those the rows being loaded need. Copies already handed out hold their own
        reference, so what is dropped is only rendered again if a later chunk needs it."""
        for key in list(self._digests):
            if self._digest_bytes <= DIGEST_CACHE_BYTES and len(self._digests) <= self._cache_size:
                return
            if key not in keep:
                shared = self._digests.pop(key)
                self._digest_bytes -= shared.size if shared is not None else 0

    def _shared_digest(
        self,
        session: Session,
        mlist: MailingList,
        span: tuple[int, int, int],
        topics: tuple[DigestTopic, ...],
        frequency: str,
        day: str,
    ) -> digest_mail.SharedDigest | None:
        """The digest all members with the same muted topics share, in the list's format."""
        if not topics:
            return None
        now = dt.datetime.now(dt.UTC)
        if mlist.digest_format == DigestFormat.MIME.value:
            parts = self._embedded.setdefault(span, {})
            return mime_digest(session, self.config, self.renderer, mlist, topics, frequency, day, now, parts)
        rendered = render_digest(self.config, self.renderer, mlist, topics, frequency, day)
        return digest_mail.build(
            identity(self.config, mlist),
            rendered.subject,
            rendered.text,
            rendered.html,
            now,
            rendered.post_ids,
        )

    def _digest_copy(self, row: outbox.ClaimedCopy, now: dt.datetime) -> OutgoingCopy | str:
        key = self._digest_rows.pop(row.id, None)
        shared = self._digests.get(key) if key is not None else None
        list_name = self._list_names.get(row.list_id) if row.list_id is not None else None
        if key is None or list_name is None or row.list_id is None:
            return "the list no longer exists"
        if shared is None:
            return "nothing left in this digest (its topics are muted or its posts gone)"
        if row.member_id is None:
            return "no longer a member"
        domain = self.config.site.domain
        signer = self._digest_signer(now + dt.timedelta(days=self.config.outbound.reply_token_days))
        member_id = row.member_id
        unsubscribe: tuple[str, ...] = (f"mailto:{list_name}+unsubscribe@{domain}",)
        ident = self._lists.get(row.list_id)
        if ident is not None:
            unsubscribe = (self.unsubscribe_url(ident, row.list_id, member_id, now), *unsubscribe)
        # Already in SMTP DATA form (mail.wire), unless DKIM signs it first.
        data = partial(
            member_digest,
            shared,
            signer,
            list_name,
            domain,
            member_id,
            row.message_id,
            unsubscribe,
            self.signer is None,
        )
        return OutgoingCopy(row, self.verp(list_name, row, now), data)

    def unsubscribe_url(self, ident: ListIdentity, list_id: int, member_id: int, now: dt.datetime) -> str:
        """The RFC 8058 one-click link for one member: signed (member, list), expiring."""
        days = self.config.subscriptions.unsubscribe_link_days
        token = tokens.sign(self.key, tokens.UNSUBSCRIBE, (member_id, list_id), now + dt.timedelta(days=days))
        return ident.unsubscribe_url(token)

    # -- kind "notice": an automatic answer to one person (core.answers) ----

    def _load_lists(self, session: Session, rows: list[outbox.ClaimedCopy]) -> None:
        for list_id in {r.list_id for r in rows if r.list_id is not None}:
            if list_id not in self._lists:
                mlist = session.get(MailingList, list_id)
                self._lists[list_id] = identity(self.config, mlist) if mlist is not None else None

    def _notice_copy(self, row: outbox.ClaimedCopy, now: dt.datetime) -> OutgoingCopy | str:
        ident = self._lists.get(row.list_id) if row.list_id is not None else None
        if ident is None:
            return "the list no longer exists"
        payload = payloads.notice_payload(row.payload)
        view = NoticeView(
            to=row.recipient,
            subject=payload["subject"],
            text=payload["text"],
            html=payload["html"],
            message_id=row.message_id,
            date=row.created_at,
            sender_role=payload["sender"],
            in_reply_to=payload["in_reply_to"],
            reply_to=payload["reply_to"],
        )
        try:
            data = notice(ident, view)
        except (ValueError, TypeError) as exc:
            return f"cannot build the answer: {exc}"[:200]
        return OutgoingCopy(row, self.verp(ident.name, row, now), partial(bytes, data))

    # -- kind "signin": a sign-in link, about no list (core.signin) -----------

    def _signin_copy(self, row: outbox.ClaimedCopy, now: dt.datetime) -> OutgoingCopy | str:
        payload = payloads.notice_payload(row.payload)
        domain = self.config.site.domain
        view = NoticeView(
            to=row.recipient,
            subject=payload["subject"],
            text=payload["text"],
            html=payload["html"],
            message_id=row.message_id,
            date=row.created_at,
        )
        try:
            data = site_notice(domain, f"{SITE_SENDER}@{domain}", view)
        except (ValueError, TypeError) as exc:
            return f"cannot build the sign-in mail: {exc}"[:200]
        # Null envelope sender (RFC 3834 §3.3): a bounce of a sign-in mail goes nowhere.
        return OutgoingCopy(row, "", partial(bytes, data))

    def verp(self, list_name: str, row: outbox.ClaimedCopy, now: dt.datetime) -> str:
        """The envelope sender NAME-bounces+TOKEN@domain; the token names the outbox row."""
        days = self.config.outbound.verp_token_days
        token = self._signer(tokens.VERP, now + dt.timedelta(days=days)).sign((row.id,))
        # list_address(list_name, domain, Kind.BOUNCES, token), spelled out for speed
        return f"{list_name}-bounces+{token}@{self.config.site.domain}"

    def _signer(self, purpose: str, expires: dt.datetime) -> tokens.Signer:
        """A short-token signer for ``purpose`` and ``expires``, kept while the minute lasts: the
        same tokens as ``tokens.sign_short``, without preparing the key for each copy."""
        key = (purpose, expires.replace(second=0, microsecond=0))
        signer = self._signers.get(key)
        if signer is None:
            if len(self._signers) >= 8:
                self._signers.clear()
            signer = self._signers[key] = tokens.Signer(self.key, purpose, expires)
        return signer

    def _digest_signer(self, expires: dt.datetime) -> tokens.DigestSigner:
        """The digests' reply-address signer for ``expires``, kept while the minute lasts."""
        minute = expires.replace(second=0, microsecond=0)
        signer = self._digest_signers.get(minute)
        if signer is None:
            self._digest_signers.clear()
            signer = self._digest_signers[minute] = tokens.DigestSigner(self.key, tokens.REPLY, expires)
        return signer
