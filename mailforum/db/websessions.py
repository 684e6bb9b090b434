"""Sign-in links and signed-in sessions as tables (core/signin.py, web/auth.py).

A link row is spent with one conditional UPDATE (``used_at IS NULL``), so of two
presses of the same button exactly one signs in. Sessions are found by the SHA-256
of the cookie's key; deleting a row signs that browser out at once, on every node.
"""

from __future__ import annotations

import datetime as dt

from sqlalchemy import bindparam, delete, select, update
from sqlalchemy.orm import Session

from mailforum.db.models import SignInLink, WebSession

SEEN_EVERY = dt.timedelta(minutes=5)  # how stale ``seen_at`` may get before a request updates it


def add_link(
    session: Session, address: str, browser: str, now: dt.datetime, expires: dt.datetime, next_path: str = ""
) -> SignInLink:
    row = SignInLink(
        address=address, browser=browser, next_path=next_path, created_at=now, expires_at=expires
    )
    session.add(row)
    session.flush()
    return row


def link(session: Session, link_id: int) -> SignInLink | None:
    return session.get(SignInLink, link_id)


def spend_link(session: Session, link_id: int, now: dt.datetime) -> bool:
    """Mark the link used; False when it was used (or expired) already."""
    result = session.execute(
        update(SignInLink)
        .where(SignInLink.id == link_id, SignInLink.used_at.is_(None), SignInLink.expires_at > now)
        .values(used_at=now)
    )
    return bool(getattr(result, "rowcount", 0) == 1)


def forget_links(session: Session, until: dt.datetime) -> int:
    """Delete links that expired at or before ``until``."""
    result = session.execute(delete(SignInLink).where(SignInLink.expires_at <= until))
    return int(getattr(result, "rowcount", 0) or 0)


def add_session(
    session: Session, key_hash: str, address: str, now: dt.datetime, expires: dt.datetime, user_agent: str
) -> WebSession:
    row = WebSession(
        key_hash=key_hash,
        address=address,
        created_at=now,
        seen_at=now,
        expires_at=expires,
        user_agent=user_agent[:200],
    )
    session.add(row)
    session.flush()
    return row


# Built once: this runs on every signed-in request, and building a statement costs more than running it.
_LIVE = select(WebSession.id, WebSession.address, WebSession.seen_at).where(
    WebSession.key_hash == bindparam("key"), WebSession.expires_at > bindparam("now")
)


def live_session(session: Session, key_hash: str, now: dt.datetime) -> tuple[int, str, dt.datetime] | None:
    """The id, address and last use of the unexpired session with this key hash, if any
    (columns through the connection, not ORM objects: it runs on every signed-in request)."""
    row = session.connection().execute(_LIVE, {"key": key_hash, "now": now}).first()
    return (row[0], row[1], row[2]) if row is not None else None


def touch_session(session: Session, session_id: int, now: dt.datetime) -> None:
    session.execute(update(WebSession).where(WebSession.id == session_id).values(seen_at=now))


def sessions_of(session: Session, address: str, now: dt.datetime) -> list[WebSession]:
    """The address's unexpired sessions, the most recently used first."""
    return list(
        session.scalars(
            select(WebSession)
            .where(WebSession.address == address, WebSession.expires_at > now)
            .order_by(WebSession.seen_at.desc(), WebSession.id.desc())
        ).all()
    )


def end_session(session: Session, address: str, session_id: int) -> bool:
    """Delete one of the address's sessions; False when it has no such session."""
    result = session.execute(
        delete(WebSession).where(WebSession.id == session_id, WebSession.address == address)
    )
    return bool(getattr(result, "rowcount", 0))


def end_session_by_key(session: Session, key_hash: str) -> None:
    session.execute(delete(WebSession).where(WebSession.key_hash == key_hash))


def end_sessions(session: Session, address: str) -> int:
    """Sign the address out everywhere; how many sessions ended."""
    result = session.execute(delete(WebSession).where(WebSession.address == address))
    return int(getattr(result, "rowcount", 0) or 0)


def forget_sessions(session: Session, until: dt.datetime) -> int:
    result = session.execute(delete(WebSession).where(WebSession.expires_at <= until))
    return int(getattr(result, "rowcount", 0) or 0)
