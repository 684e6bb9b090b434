"""Routing one accepted message: which use case each of its recipients goes to.

``ROUTES`` maps a recipient kind to its handler (``core.posting``, ``core.commands``);
``accepts`` is what the ingest server asks at RCPT; ``process`` routes every recipient
of one spool entry inside the caller's transaction (a savepoint per message), so the
post, its placeholders and the spool entry's new state are committed together, or not
at all. The same path serves live mail and ``import-mbox``.
"""

from __future__ import annotations

import datetime as dt
from collections import defaultdict
from collections.abc import Callable, Iterable

from sqlalchemy.orm import Session

from mailforum.config import Config
from mailforum.core import commands, threads, tokens
from mailforum.core.fanout import Deferred
from mailforum.core.inbound import Arrival, Outcome, RouteHandler
from mailforum.core.lists import forget_members, list_by_name, remember_members
from mailforum.core.posting import (
    handle_bounce,
    handle_enable,
    handle_moderate,
    handle_post,
    handle_reply,
    remember_recent,
)
from mailforum.db.models import utcnow
from mailforum.errors import MailforumError
from mailforum.mail.addresses import Kind, Recipient, parse_recipient
from mailforum.mail.headers import ancestry
from mailforum.mail.parse import ParsedMessage

# Recipient kind → use case. The ingest server accepts at RCPT only the kinds listed
# here; later features (commands, replies by token, bounces) add their entries.
ROUTES: dict[Kind, RouteHandler] = {
    Kind.POST: handle_post,
    Kind.REPLY: handle_reply,
    Kind.BOUNCES: handle_bounce,
    Kind.ENABLE: handle_enable,
    Kind.MODERATE: handle_moderate,
    **commands.SHORTCUTS,  # -request, +subscribe, +unsubscribe, +watch-T, +mute-T, +confirm-TOKEN
}


def reply_token_is_ours(recipient: Recipient, config: Config) -> bool:
    """A signature check without the database: forged reply keys are refused at RCPT (S3c).

    Expired but genuine keys are accepted; the message then becomes an ordinary post.
    """
    try:
        tokens.verify(tokens.derive_key(config.site.secret_key), tokens.REPLY, recipient.arg, utcnow(), 2)
    except tokens.ExpiredToken:
        return True
    except MailforumError:
        return False
    return True


# The handlers whose fan-out may wait for the end of a batch (core.fanout.Deferred).
POSTS: frozenset[RouteHandler] = frozenset({handle_post, handle_reply})


# Recipient kind → a cheap check of the address itself, made at RCPT before anything is stored.
RCPT_CHECKS: dict[Kind, Callable[[Recipient, Config], bool]] = {
    Kind.REPLY: reply_token_is_ours,
}


def accepts(recipient: Recipient, config: Config) -> bool:
    """Whether the ingest server should take mail for this recipient (its list is checked apart)."""
    check = RCPT_CHECKS.get(recipient.kind)
    return recipient.kind in ROUTES and (check is None or check(recipient, config))


def prefetch(
    session: Session,
    config: Config,
    messages: Iterable[tuple[ParsedMessage, tuple[str, ...], dt.datetime]],
) -> None:
    """What a batch of posts (parsed, recipients, when received) will look up, read at once
    per list: the posts their headers name (``threads.prefetch``), their senders'
    memberships (``lists.remember_members``) and recent posts (``posting.remember_recent``),
    one query each instead of one per message. ``process`` forgets the memberships before
    any message that is not a post, which may change them."""
    named: dict[str, list[str]] = defaultdict(list)
    senders: dict[str, set[str]] = defaultdict(set)
    since: dt.datetime | None = None
    for parsed, rcpt_tos, received_at in messages:
        day_ago = received_at - dt.timedelta(days=1)
        since = day_ago if since is None or day_ago < since else since
        for rcpt in rcpt_tos:
            try:
                recipient = parse_recipient(rcpt, config.site.domain)
            except MailforumError:
                continue
            if ROUTES.get(recipient.kind) in POSTS:
                named[recipient.list_name].append(parsed.message_id)
                named[recipient.list_name] += ancestry(
                    parsed.message_id, parsed.in_reply_to, parsed.references
                )
                senders[recipient.list_name].add(parsed.from_address)
    for name, message_ids in named.items():
        mlist = list_by_name(session, name)
        if mlist is not None:
            threads.prefetch(session, mlist.id, message_ids)
            remember_members(session, mlist.id, senders[name])
            assert since is not None
            remember_recent(session, config, mlist.id, senders[name], since)


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
    imported: bool = False,
    web: bool = False,
    deferred: Deferred | None = None,
) -> list[Outcome]:
    """Route the message to each of its recipients; one Outcome per recipient.

    With ``deferred``, posts' fan-out waits for the end of the caller's batch; anything
    but a post writes what waits first, so it comes between the same posts as before."""
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
        if handler not in POSTS:  # it may change what a batch remembers (``prefetch``)
            if deferred is not None:
                deferred.flush(session, now)
            forget_members(session)
        arrival = Arrival(
            session,
            config,
            mlist,
            recipient,
            parsed,
            raw,
            mail_from,
            spool_id,
            received_at,
            now,
            imported,
            web,
            deferred,
        )
        outcomes.append(handler(arrival))
    return outcomes
