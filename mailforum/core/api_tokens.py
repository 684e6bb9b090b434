"""Bearer tokens of the JSON API: created in the CLI, stored hashed, scoped, revocable.

A token is ``mf_<lookup>_<secret>``: ``lookup`` (16 hex digits) finds the row, and only
an HMAC-SHA256 of ``secret`` (32 random bytes) is stored, compared in constant time
(``hmac.compare_digest``). The token is printed once, by ``api-tokens create``; it
cannot be shown again. Scopes nest: ``read`` < ``write`` < ``admin``. A token made
with ``--list`` sees that one list only; any other list is "not found" to it.
"""

from __future__ import annotations

import hashlib
import hmac
import re
import secrets
from dataclasses import dataclass

from sqlalchemy import delete, select
from sqlalchemy.orm import Session

from mailforum.db.models import ApiToken, MailingList, utcnow
from mailforum.errors import InvalidInput

SCOPES = ("read", "write", "admin")
_RANK = {name: rank for rank, name in enumerate(SCOPES)}
_KEY = b"mailforum api token v1"  # domain separation; the secret itself carries the entropy
_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,63}\Z")
_TOKEN = re.compile(r"mf_([0-9a-f]{16})_([A-Za-z0-9_-]{20,100})\Z")


@dataclass(frozen=True, slots=True)
class Principal:
    """Who an API request acts as: the token's name, scope and list (None: every list)."""

    name: str
    scope: str
    list_id: int | None

    @property
    def actor(self) -> str:
        return f"api:{self.name}"

    def allows(self, scope: str) -> bool:
        return _RANK[self.scope] >= _RANK[scope]

    def sees(self, mlist: MailingList) -> bool:
        return self.list_id is None or self.list_id == mlist.id


def _digest(secret: str) -> str:
    return hmac.new(_KEY, secret.encode(), hashlib.sha256).hexdigest()


def create(session: Session, name: str, scope: str, mlist: MailingList | None = None) -> str:
    """Store a new token; returns the token text (shown once, never stored)."""
    if not _NAME.match(name):
        raise InvalidInput(
            f"bad token name {name!r}: letters, digits, '.', '_' and '-', at most 64, starting with a "
            "letter or digit"
        )
    if scope not in _RANK:
        raise InvalidInput(f"bad scope {scope!r}: one of {', '.join(SCOPES)}")
    if session.scalar(select(ApiToken.id).where(ApiToken.name == name)) is not None:
        raise InvalidInput(
            f"a token named {name!r} exists (revoke it first: `mailforum api-tokens revoke {name}`)"
        )
    lookup, secret = secrets.token_hex(8), secrets.token_urlsafe(32)
    session.add(
        ApiToken(
            name=name,
            lookup=lookup,
            secret_hash=_digest(secret),
            scope=scope,
            list_id=mlist.id if mlist is not None else None,
            created_at=utcnow(),
        )
    )
    session.flush()
    return f"mf_{lookup}_{secret}"


def tokens(session: Session) -> list[tuple[ApiToken, str | None]]:
    """Every token with the name of its list (None: all lists), by name."""
    rows = session.execute(
        select(ApiToken, MailingList.name)
        .outerjoin(MailingList, MailingList.id == ApiToken.list_id)
        .order_by(ApiToken.name)
    )
    return [(token, list_name) for token, list_name in rows]


def revoke(session: Session, name: str) -> bool:
    """Remove the token ``name``; False when there is none. Takes effect on the next request."""
    result = session.execute(delete(ApiToken).where(ApiToken.name == name))
    return bool(getattr(result, "rowcount", 0))


def authenticate(session: Session, text: str) -> Principal | None:
    """The principal of a presented token, or None (unknown, malformed, revoked)."""
    match = _TOKEN.match(text.strip())
    if match is None:
        return None
    lookup, secret = match.groups()
    row = session.scalars(select(ApiToken).where(ApiToken.lookup == lookup)).first()
    # Compare even when there is no row, so a miss costs what a hit does.
    stored = row.secret_hash if row is not None else "0" * 64
    if not hmac.compare_digest(stored.encode(), _digest(secret).encode()) or row is None:
        return None
    return Principal(row.name, row.scope, row.list_id)
