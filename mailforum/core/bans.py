"""Banned senders: by address, by domain, or by pattern; per list or site-wide.

A pattern is one of

    ann@example.com      that address (compared lower-cased)
    @example.com         every address at example.com or one of its subdomains
    ^.*@spam\\.example$   a regular expression, matched against the whole lower-cased address

(the ``^`` prefix for a regular expression is Mailman's convention). A ban with no list
(``mailforum bans '*' add …``) holds on every list. Posts from a banned sender are
discarded by the policy rule ``banned`` (kept in the spool with the reason, never
answered: RELIABILITY I8), and their requests to join are refused without a word.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Sequence
from functools import lru_cache

from sqlalchemy import delete, or_, select
from sqlalchemy.orm import Session

from mailforum.db.models import Ban, MailingList
from mailforum.db.txcache import TxCache
from mailforum.errors import InvalidInput

MAX_PATTERN = 320
_DOMAIN = re.compile(r"@[a-z0-9](?:[a-z0-9.-]{0,251}[a-z0-9])?\Z")


def normalise(text: str) -> str:
    """The stored form of a pattern; ``InvalidInput`` naming what is wrong with it."""
    pattern = text.strip()
    if not pattern or len(pattern) > MAX_PATTERN or any(c in pattern for c in "\r\n\0"):
        raise InvalidInput(f"bad ban pattern {text!r}: give an address, @domain or ^regex")
    if pattern.startswith("^"):
        try:
            re.compile(pattern)
        except re.error as exc:
            raise InvalidInput(f"bad ban pattern {pattern!r}: not a regular expression ({exc})") from None
        return pattern
    pattern = pattern.lower()
    if pattern.startswith("*@"):
        pattern = pattern[1:]
    if pattern.startswith("@"):
        if not _DOMAIN.match(pattern):
            raise InvalidInput(f"bad ban pattern {text!r}: not a domain after '@'")
        return pattern
    local, at, domain = pattern.rpartition("@")
    if not at or not local or not domain or " " in pattern:
        raise InvalidInput(f"bad ban pattern {text!r}: give an address, @domain or ^regex")
    return pattern


@lru_cache(maxsize=512)
def _regex(pattern: str) -> re.Pattern[str] | None:
    try:
        return re.compile(pattern, re.IGNORECASE)
    except re.error:
        return None


def matches(pattern: str, address: str) -> bool:
    address = address.strip().lower()
    if not address:
        return False
    if pattern.startswith("^"):
        regex = _regex(pattern)
        return regex is not None and regex.fullmatch(address) is not None
    if pattern.startswith("@"):
        domain = address.rpartition("@")[2]
        return domain == pattern[1:] or domain.endswith("." + pattern[1:])
    return address == pattern


def patterns(session: Session, mlist: MailingList | None) -> list[str]:
    """The list's own bans (``mlist`` None: the site-wide ones), in the order they were added."""
    where = Ban.list_id.is_(None) if mlist is None else Ban.list_id == mlist.id
    return list(session.scalars(select(Ban.pattern).where(where).order_by(Ban.id)))


# The patterns that hold on a list (its own and the site-wide ones), read once per
# transaction: a processing batch asks for every message. ``add`` and ``remove`` forget them.
_IN_FORCE: TxCache[dict[int, list[str]]] = TxCache("bans.in_force", dict)


def banned(session: Session, mlist: MailingList, *addresses: str) -> str | None:
    """The first pattern (the list's or a site-wide one) that bans one of ``addresses``, else None."""
    wanted = [a for a in addresses if a]
    if not wanted:
        return None
    in_force = _IN_FORCE.setdefault(session)
    rows = in_force.get(mlist.id)
    if rows is None:
        where = or_(Ban.list_id == mlist.id, Ban.list_id.is_(None))
        rows = in_force[mlist.id] = list(session.scalars(select(Ban.pattern).where(where).order_by(Ban.id)))
    return next((p for p in rows if any(matches(p, a) for a in wanted)), None)


def banned_among(session: Session, mlist: MailingList, addresses: Iterable[str]) -> dict[str, str]:
    """For many addresses at once (a bulk add): address -> the pattern that bans it."""
    rows = list(
        session.scalars(select(Ban.pattern).where(or_(Ban.list_id == mlist.id, Ban.list_id.is_(None))))
    )
    if not rows:
        return {}
    found: dict[str, str] = {}
    for address in addresses:
        hit = next((p for p in rows if matches(p, address)), None)
        if hit is not None:
            found[address] = hit
    return found


def add(session: Session, mlist: MailingList | None, texts: Sequence[str]) -> list[str]:
    """Ban each pattern (checked first, all or nothing); returns those that were new."""
    wanted = list(dict.fromkeys(normalise(t) for t in texts))
    have = set(patterns(session, mlist))
    new = [p for p in wanted if p not in have]
    for pattern in new:
        session.add(Ban(list_id=mlist.id if mlist is not None else None, pattern=pattern))
    session.flush()
    _IN_FORCE.clear(session)
    return new


def remove(session: Session, mlist: MailingList | None, texts: Sequence[str]) -> list[str]:
    """Lift each ban; returns those that were there."""
    wanted = [normalise(t) for t in texts]
    where = Ban.list_id.is_(None) if mlist is None else Ban.list_id == mlist.id
    present = set(session.scalars(select(Ban.pattern).where(where, Ban.pattern.in_(wanted))))
    if present:
        session.execute(delete(Ban).where(where, Ban.pattern.in_(present)))
        _IN_FORCE.clear(session)
    return [p for p in wanted if p in present]


def site_bans(session: Session, after_id: int, limit: int) -> list[Ban]:
    """Site-wide bans in the order they were added, ids above ``after_id`` (a cursor page)."""
    query = select(Ban).where(Ban.list_id.is_(None), Ban.id > after_id).order_by(Ban.id).limit(limit)
    return list(session.scalars(query))


def site_ban(session: Session, ban_id: int) -> Ban | None:
    """The site-wide ban ``ban_id`` (None for a list's ban: those are lifted by pattern)."""
    ban = session.get(Ban, ban_id)
    return ban if ban is not None and ban.list_id is None else None
