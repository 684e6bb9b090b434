"""Signing in by mail: a link that works once, for minutes, in the browser that asked.

``request_link`` stores a ``SignInLink`` row (the address and a hash of the asking
browser's random cookie) and queues one mail (outbox kind ``signin``, about no list)
holding ``{base_url}/signin/TOKEN``. The token is signed (core/tokens.py, purpose
``signin``: the row id and the expiry, HMAC compared in constant time). The work is
the same for every valid address, known or not, so neither the answer page nor its
timing tells whether an address is a member (RELIABILITY S4, S16).

``check_link`` reads a token without changing anything (a GET: mail scanners open
links); ``spend_link`` is the button's POST: one conditional UPDATE, so a link signs in
once, and only in the browser whose cookie hash matches.

Tokens are never logged.
"""

from __future__ import annotations

import datetime as dt
import enum
import hashlib
import hmac
import logging
from dataclasses import dataclass
from email.utils import make_msgid

from sqlalchemy.orm import Session

from mailforum.config import Config
from mailforum.core import answers, tokens
from mailforum.db import outbox, websessions
from mailforum.db.models import OutboxKind
from mailforum.db.payloads import NoticePayload

log = logging.getLogger(__name__)

PURPOSE = tokens.SIGNIN
TEMPLATE = "signin/link"


class LinkState(enum.StrEnum):
    OK = "ok"  # valid, unused, and this is the browser that asked
    OTHER_BROWSER = "other-browser"  # valid and unused, but asked for by another browser
    USED = "used"  # spent already
    EXPIRED = "expired"  # genuine, too old
    INVALID = "invalid"  # malformed or forged


@dataclass(frozen=True, slots=True)
class LinkCheck:
    state: LinkState
    link_id: int = 0
    address: str = ""
    next_path: str = ""  # where to go once signed in (checked by the web when it was asked)


def browser_hash(cookie: str) -> str:
    """What is stored of a browser's sign-in cookie: its SHA-256 (hex)."""
    return hashlib.sha256(cookie.encode()).hexdigest()


def _key(config: Config) -> bytes:
    return tokens.derive_key(config.site.secret_key)


def request_link(
    session: Session, config: Config, address: str, browser: str, now: dt.datetime, next_path: str = ""
) -> str:
    """Store a link for ``address`` bound to ``browser`` (a cookie value) and queue its mail,
    in the caller's transaction; ``next_path`` is where the browser goes once signed in (a
    path on this site, checked by the caller). Returns the URL (for tests; never log it)."""
    expires = now + dt.timedelta(minutes=config.web.signin_minutes)
    row = websessions.add_link(session, address, browser_hash(browser), now, expires, next_path[:500])
    # The token's expiry is to the minute: round up, so the row's expiry decides.
    token = tokens.sign(_key(config), PURPOSE, (row.id,), expires + dt.timedelta(minutes=1))
    base = config.site.base_url.rstrip("/")
    link = f"{base}/signin/{token}"
    env = answers.renderer(config).environment("_site")
    values = {
        "site": {"domain": config.site.domain, "base_url": base},
        "address": address,
        "link": link,
        "minutes": int(config.web.signin_minutes),
    }
    payload: NoticePayload = {
        "template": TEMPLATE,
        "subject": f"Sign in to {config.site.domain}",
        "text": env.get_template(f"{TEMPLATE}.txt.j2").render(values),
        "html": env.get_template(f"{TEMPLATE}.html.j2").render(values),
        "in_reply_to": None,
        "sender": "request",
        "reply_to": None,
    }
    outbox.enqueue(
        session,
        [
            outbox.NewCopy(
                list_id=None,
                recipient=address,
                message_id=make_msgid("signin", domain=config.site.domain),
                kind=OutboxKind.SIGNIN,
                payload=payload,
            )
        ],
        now,
    )
    return link


def check_link(session: Session, config: Config, token: str, browser: str, now: dt.datetime) -> LinkCheck:
    """What the token in ``/signin/TOKEN`` is, for the browser with sign-in cookie ``browser``."""
    try:
        (link_id,) = tokens.verify(_key(config), PURPOSE, token, now, fields=1)
    except tokens.ExpiredToken:
        return LinkCheck(LinkState.EXPIRED)
    except tokens.InvalidToken:
        return LinkCheck(LinkState.INVALID)
    row = websessions.link(session, link_id)
    if row is None:  # purged long after it expired
        return LinkCheck(LinkState.EXPIRED)
    if row.used_at is not None:
        return LinkCheck(LinkState.USED, row.id, row.address)
    if row.expires_at <= now:
        return LinkCheck(LinkState.EXPIRED, row.id, row.address)
    if not browser or not hmac.compare_digest(row.browser, browser_hash(browser)):
        return LinkCheck(LinkState.OTHER_BROWSER, row.id, row.address, row.next_path)
    return LinkCheck(LinkState.OK, row.id, row.address, row.next_path)


def spend_link(session: Session, config: Config, token: str, browser: str, now: dt.datetime) -> LinkCheck:
    """The button's POST: ``OK`` (and the link is spent) only for an unused, unexpired link
    pressed in the browser that asked; of two simultaneous presses, one wins."""
    found = check_link(session, config, token, browser, now)
    if found.state is LinkState.OK and not websessions.spend_link(session, found.link_id, now):
        return LinkCheck(LinkState.USED, found.link_id, found.address)
    return found
