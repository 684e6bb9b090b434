"""A digest rendered: text and HTML once per list and period, or a MIME digest of whole posts.

What a digest holds is decided by ``core.digest_content``; this turns it into the
shared bytes of ``mail.digest`` (reply addresses left as markers, personalised per
member at sending by ``core.copies.Composer``), and shows what ``digest send
--dry-run`` would queue (``preview_digests``).
"""

from __future__ import annotations

import datetime as dt
import email
import email.policy
import logging
from collections.abc import Sequence
from dataclasses import dataclass
from functools import partial
from typing import Any
from urllib.parse import quote

from sqlalchemy.orm import Session

from mailforum.config import Config
from mailforum.core import tokens
from mailforum.core.digest_content import (
    DAILY,
    WEEKLY,
    DigestTopic,
    OriginalPost,
    load_originals,
    load_topics,
    member_contents,
)
from mailforum.core.digest_enqueue import DueMember, due_members, end_mark, message_id, starts
from mailforum.core.digest_schedule import label, list_zone, weekly_due
from mailforum.core.lists import identity
from mailforum.db.models import DigestFormat, MailingList
from mailforum.mail import digest as digest_mail
from mailforum.mail.compose import ListIdentity, PostView, canonical_body, clean, mailto
from mailforum.mail.headers import reply_subject
from mailforum.render import Renderer
from mailforum.textsafe import safe_filename

log = logging.getLogger(__name__)


@dataclass(frozen=True, slots=True)
class RenderedDigest:
    """A digest as text and HTML (with reply-address markers), and its subject."""

    subject: str
    text: str
    html: str
    post_ids: tuple[int, ...]


def digest_subject(ident: ListIdentity, frequency: str, day: str, posts: int, topics: int) -> str:
    """``[dev] Daily digest, 26 Nov 2026: 12 new posts in 4 topics``."""
    kind = "Weekly digest, week to" if frequency == WEEKLY else "Daily digest,"
    posts_text = f"{posts} new post{'s' if posts != 1 else ''}"
    return ident.tagged(f"{kind} {day}: {posts_text} in {topics} topic{'s' if topics != 1 else ''}")


def _digest_context(
    config: Config,
    mlist: MailingList,
    ident: ListIdentity,
    topics: tuple[DigestTopic, ...],
    frequency: str,
    day: str,
) -> tuple[str, dict[str, Any]]:
    """The subject and the template context both digest formats render from."""
    zone = list_zone(config, mlist)
    time_format = "%a %d %b %H:%M" if frequency == WEEKLY else "%H:%M"
    count = sum(len(t.posts) for t in topics)
    subject = digest_subject(ident, frequency, day, count, len(topics))
    context = {
        "list": {
            "name": mlist.name,
            "title": ident.title,
            "address": ident.address,
            "request": ident.request_address,
        },
        "digest": {
            "frequency": frequency,
            "label": day,
            "posts": count,
            "topics": len(topics),
            "subject": subject,
        },
        "topics": [
            {
                "id": t.id,
                "subject": clean(t.subject) or "(no subject)",
                "new": t.new,
                "tag": t.tags[0] if t.tags else "",
                "tags": list(t.tags),
                "count": len(t.posts),
                "url": ident.topic_url(t.id),
                "watch": ident.topic_action("watch", t.id),
                "mute": ident.topic_action("mute", t.id),
                "posts": [
                    {
                        "id": p.id,
                        "author": clean(p.author),
                        "subject": clean(p.subject) or clean(t.subject) or "(no subject)",
                        "time": p.when.astimezone(zone).strftime(time_format),
                        "text": canonical_body(p.text),  # no ESC: reply markers cannot be forged
                        "cut": p.cut,
                        "url": ident.post_url(p.id),
                        "reply": digest_mail.marker(p.id),
                        "reply_subject": quote(reply_subject(clean(p.subject) or clean(t.subject)), safe=""),
                    }
                    for p in t.posts
                ],
            }
            for t in topics
        ],
        "links": {
            "archive": ident.archive_url,
            "mode": mailto(ident.request_address, "help"),
            "preferences": ident.preferences_url,
            "unsubscribe": ident.unsubscribe_mailto,
        },
    }
    return subject, context


def render_digest(
    config: Config,
    renderer: Renderer,
    mlist: MailingList,
    topics: tuple[DigestTopic, ...],
    frequency: str,
    day: str,
) -> RenderedDigest:
    """Render one list's digest for one period once; reply addresses are markers (mail/digest.py)."""
    subject, context = _digest_context(config, mlist, identity(config, mlist), topics, frequency, day)
    name = "weekly" if frequency == WEEKLY else "daily"
    text = renderer.render(mlist, f"digest/{name}.txt.j2", context)
    html = renderer.render(mlist, f"digest/{name}.html.j2", context)
    ids = tuple(p.id for t in topics for p in t.posts)
    return RenderedDigest(subject, text, html, ids)


def member_digest(
    shared: digest_mail.SharedDigest,
    signer: tokens.DigestSigner,
    list_name: str,
    domain: str,
    member_id: int,
    message_id: str,
    unsubscribe: Sequence[str],
    wire: bool,
) -> bytes:
    """One member's digest: a signed reply address per post (``NAME+r-TOKEN@domain``, as
    ``mail.addresses.list_address`` spells it), spliced into the shared bytes; with
    ``wire``, in SMTP DATA form (``mail.wire.WireData``)."""
    prefix, suffix = f"{list_name}+r-", f"@{domain}"
    addresses = [prefix + token + suffix for token in signer.sign(member_id, shared.post_ids)]
    return shared.join(message_id, addresses, unsubscribe, wire)


def embedded_post(
    renderer: Renderer, mlist: MailingList, ident: ListIdentity, post: OriginalPost
) -> digest_mail.Embedded | None:
    """One post, whole, as a MIME digest's message/rfc822 part; None if it cannot be built.

    A post that cannot be built (a value the header checks refuse) is left out and
    logged: one bad post never blocks the digest (RELIABILITY I4, F14).
    """
    context = {
        "list": {"name": mlist.name, "title": ident.title, "address": ident.address},
        "post": {
            "text": canonical_body(post.text).strip("\n"),
            "url": ident.post_url(post.id),
            "attachments": [
                {
                    "filename": safe_filename(a.filename) or "(unnamed)",
                    "type": clean(a.content_type),
                    "size": a.size,
                    "url": ident.attachment_url(post.id, index, a.filename),
                }
                for index, a in enumerate(post.attachments)
            ],
        },
    }
    view = PostView(
        message_id=post.message_id,
        subject=post.subject or "(no subject)",
        author_name=post.author_name,
        author_address=post.author_address,
        date=post.date,
        topic_id=post.topic_id,
        ancestors=post.ancestors,
    )
    text = renderer.render(mlist, "digest/mime_post.txt.j2", context)
    try:
        return digest_mail.embed(ident, digest_mail.EmbeddedPost(post.id, view, text))
    except (ValueError, TypeError, LookupError) as exc:
        log.warning("post %s left out of a MIME digest of %s: %s", post.id, mlist.name, exc)
        return None


def mime_digest(
    session: Session,
    config: Config,
    renderer: Renderer,
    mlist: MailingList,
    topics: tuple[DigestTopic, ...],
    frequency: str,
    day: str,
    now: dt.datetime,
    parts: dict[int, digest_mail.Embedded | None],
) -> digest_mail.SharedDigest | None:
    """One list's MIME digest for one period and muted set, shared by its members.

    ``parts`` caches the embedded posts (by post id) across the muted sets of one
    period: each post is read, rendered and encoded once. None when no post is left.
    """
    ident = identity(config, mlist)
    missing = [p.id for t in topics for p in t.posts if p.id not in parts]
    if missing:
        originals = load_originals(session, missing)
        for post_id in missing:
            original = originals.get(post_id)
            parts[post_id] = None if original is None else embedded_post(renderer, mlist, ident, original)
    kept = []
    for t in topics:
        posts = tuple(p for p in t.posts if parts.get(p.id) is not None)
        if posts:
            kept.append(DigestTopic(t.id, t.subject, t.new, posts, t.tags))
    if not kept:
        return None
    subject, context = _digest_context(config, mlist, ident, tuple(kept), frequency, day)
    contents = renderer.render(mlist, "digest/mime_contents.txt.j2", context)
    footer = renderer.render(mlist, "digest/mime_footer.txt.j2", context)
    embedded = [parts[p.id] for t in kept for p in t.posts]
    return digest_mail.build_mime(ident, subject, contents, footer, [e for e in embedded if e], now)


@dataclass(frozen=True, slots=True)
class DigestPreview:
    """What ``digest send --dry-run`` prints for one member."""

    address: str
    subject: str
    text: str
    format: str = DigestFormat.STANDARD.value


def preview_digests(
    session: Session,
    config: Config,
    renderer: Renderer,
    mlist: MailingList,
    now: dt.datetime,
    address: str | None = None,
) -> list[DigestPreview]:
    """The digests a ``digest send`` would queue now, rendered; nothing is changed.

    A standard digest shows its text part; a MIME digest is built as it would be sent
    and shown part by part (``mail.digest.outline``), the embedded messages' headers
    included. Reply addresses are placeholders: they are signed per member at sending.
    """
    end = end_mark(session, mlist.id)
    local = now.astimezone(list_zone(config, mlist))
    frequencies = [DAILY]
    if weekly_due(config, mlist, local):
        frequencies.append(WEEKLY)
    members = due_members(session, mlist.id, end, frequencies, address)
    begins = starts(session, mlist.id, members)
    load = partial(load_topics, session, config, mlist.id)
    held = member_contents(session, [(m.id, begins[m.id]) for m in members], end, load)
    hidden = f"{mlist.name}+r-(a signed address for each member and post)@{config.site.domain}"
    out = []
    for member, contents in zip(members, held, strict=True):
        if not contents.topics:
            continue
        if mlist.digest_format == DigestFormat.MIME.value:
            preview = _preview_mime(
                session, config, renderer, mlist, contents.topics, member, contents.start, end, local, now
            )
            if preview is not None:
                out.append(preview)
            continue
        rendered = render_digest(config, renderer, mlist, contents.topics, member.frequency, label(local))
        text = digest_mail.unmark(rendered.text, hidden)
        out.append(DigestPreview(member.address, rendered.subject, text))
    return out


def _preview_mime(
    session: Session,
    config: Config,
    renderer: Renderer,
    mlist: MailingList,
    topics: tuple[DigestTopic, ...],
    member: DueMember,
    start: int,
    end: int,
    local: dt.datetime,
    now: dt.datetime,
) -> DigestPreview | None:
    day = label(local)
    shared = mime_digest(session, config, renderer, mlist, topics, member.frequency, day, now, {})
    if shared is None:
        return None
    domain = config.site.domain
    hidden = f"{mlist.name}+r-SIGNED-FOR-EACH-MEMBER-AND-POST@{domain}"  # a plain addr-spec
    digest_id = message_id(mlist.name, member.id, start, end, domain)
    data = shared.personalise(
        digest_id, lambda post_id: hidden, (f"mailto:{mlist.name}+unsubscribe@{domain}",)
    )
    subject = str(email.message_from_bytes(data, policy=email.policy.default)["Subject"])
    return DigestPreview(member.address, subject, digest_mail.outline(data), DigestFormat.MIME.value)
