"""The audit log: every change an owner, moderator, admin or API token makes.

A row is added in the caller's transaction, so the change and its record commit or
roll back together. Text from outside (a target address, a reason) is kept to one
line and capped: the log is shown on pages and in the CLI, and must not be a way to
forge lines there.

A member's own changes on the web (joining, watching or muting a topic, leaving, their
delivery settings) are written too, as theirs: the web marks such a request with
``member_on_web`` (runners/web.py, around the members' endpoints) and the core functions
that make those changes call ``member_action``, which writes only inside such a request.
The same functions called by mail commands or the CLI write nothing, as before.
"""

from __future__ import annotations

import datetime as dt
import re
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from contextvars import ContextVar

from sqlalchemy import or_, select
from sqlalchemy.orm import Session

from mailforum.db.models import AuditEntry, MailingList, utcnow
from mailforum.errors import InvalidInput

_CONTROLS = re.compile(r"[\x00-\x1f\x7f]+")
_CAPS = {"actor": 320, "origin": 64, "action": 64, "target": 512}


def _one_line(text: str, cap: int) -> str:
    return _CONTROLS.sub(" ", text).strip()[:cap]


def _clean(value: object) -> object:
    if isinstance(value, str):
        return _one_line(value, 2000)
    if isinstance(value, Mapping):
        return {str(k): _clean(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_clean(v) for v in value]
    if value is None or isinstance(value, bool | int | float):
        return value
    return _one_line(str(value), 2000)


def record(
    session: Session,
    *,
    actor: str,
    origin: str,
    action: str,
    mailing_list: MailingList | None = None,
    target: str = "",
    detail: Mapping[str, object] | None = None,
    list_id: int | None = None,
) -> AuditEntry:
    """Add one entry for a change made in this transaction (of ``mailing_list``, or of the
    list ``list_id`` when the caller has only its id)."""
    extra = dict(_clean(dict(detail or {})))  # type: ignore[call-overload]
    if mailing_list is not None:
        extra.setdefault("list", mailing_list.name)
    entry = AuditEntry(
        at=utcnow(),
        actor=_one_line(actor, _CAPS["actor"]),
        origin=_one_line(origin, _CAPS["origin"]),
        action=_one_line(action, _CAPS["action"]),
        list_id=mailing_list.id if mailing_list is not None else list_id,
        target=_one_line(target, _CAPS["target"]),
        detail=extra,
    )
    session.add(entry)
    return entry


def by_cli(
    session: Session,
    action: str,
    mailing_list: MailingList | None = None,
    target: str = "",
    detail: Mapping[str, object] | None = None,
) -> AuditEntry:
    """An entry for a change made with the ``mailforum`` command (actor and origin ``cli``)."""
    return record(
        session,
        actor="cli",
        origin="cli",
        action=action,
        mailing_list=mailing_list,
        target=target,
        detail=detail,
    )


def parse_since(text: str) -> dt.datetime:
    """An ISO 8601 date or time (``2026-12-05``, ``2026-12-05T08:00:00+01:00``) as an aware
    UTC time (a time without an offset is UTC); ``InvalidInput`` naming the text otherwise."""
    try:
        when = dt.datetime.fromisoformat(text.strip())
    except ValueError:
        raise InvalidInput(
            f"not an ISO 8601 date or time: {text.strip()[:64]!r} (like 2026-12-05 or 2026-12-05T08:00:00Z)"
        ) from None
    if when.tzinfo is None:
        when = when.replace(tzinfo=dt.UTC)
    return when.astimezone(dt.UTC)


def entries(
    session: Session,
    *,
    mailing_list: MailingList | None = None,
    before_id: int | None = None,
    limit: int = 50,
    actor: str | None = None,
    action: str | None = None,
    since: dt.datetime | None = None,
) -> list[AuditEntry]:
    """The newest entries first (of one list when given), older than ``before_id`` for paging.

    ``actor`` is matched exactly (``cli``, ``api:NAME``, an address, compared lower-cased
    for addresses); ``action`` exactly (``members.add``) or as its group (``members``
    matches every ``members.…``); ``since`` keeps entries at or after that time.
    """
    query = select(AuditEntry).order_by(AuditEntry.id.desc()).limit(limit)
    if mailing_list is not None:
        query = query.where(AuditEntry.list_id == mailing_list.id)
    if before_id is not None:
        query = query.where(AuditEntry.id < before_id)
    if actor:
        actor = actor.strip()
        wanted = {actor, actor.lower()}
        query = query.where(AuditEntry.actor.in_(wanted))
    if action:
        action = action.strip()
        query = query.where(
            or_(AuditEntry.action == action, AuditEntry.action.startswith(action + ".", autoescape=True))
        )
    if since is not None:
        query = query.where(AuditEntry.at >= since)
    return list(session.scalars(query))


_MEMBER_ON_WEB: ContextVar[str | None] = ContextVar("mailforum_member_on_web", default=None)


@contextmanager
def member_on_web(origin: str) -> Iterator[None]:
    """Within: changes a member makes to their own membership are audited, from ``origin``."""
    token = _MEMBER_ON_WEB.set(origin or "web")
    try:
        yield
    finally:
        _MEMBER_ON_WEB.reset(token)


def member_action(
    session: Session,
    *,
    actor: str,
    action: str,
    list_id: int,
    target: str = "",
    detail: Mapping[str, object] | None = None,
) -> None:
    """One entry for a member's own change, when it is made on the web (``member_on_web``)."""
    origin = _MEMBER_ON_WEB.get()
    if origin is not None:
        record(
            session, actor=actor, origin=origin, action=action, target=target, detail=detail, list_id=list_id
        )
