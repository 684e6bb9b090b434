"""`mailforum status`: what an operator checks first in the morning.

Each report is a small function from (session, config, now) to lines; the table
``REPORTS`` orders them. Later parts (outbox, bounces) add their own report.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Callable
from typing import Any

from sqlalchemy import func, select
from sqlalchemy.orm import Session

from mailforum.config import Config
from mailforum.db.models import MailingList, Member, Moderator, Post, PostStatus, SpoolEntry, SpoolState

Report = Callable[[Session, Config, dt.datetime], list[str]]


def _per_list(session: Session, list_id: Any, *where: Any) -> dict[int, int]:
    """Rows counted per list (by the ``list_id`` column given), those matching ``where``."""
    return dict(session.execute(select(list_id, func.count()).where(*where).group_by(list_id)).all())


def lists_report(session: Session, config: Config, now: dt.datetime) -> list[str]:
    members = _per_list(session, Member.list_id)
    posts = _per_list(session, Post.list_id, Post.status == PostStatus.PUBLISHED.value)
    held = _per_list(session, Post.list_id, Post.status == PostStatus.HELD.value)
    lines = []
    for mlist in session.scalars(select(MailingList).order_by(MailingList.name)):
        lines.append(
            f"{mlist.name}: {members.get(mlist.id, 0)} members, {posts.get(mlist.id, 0)} posts, "
            f"{held.get(mlist.id, 0)} held, policy {mlist.posting_policy}"
        )
    return lines or ["no lists yet (mailforum lists create NAME)"]


def spool_report(session: Session, config: Config, now: dt.datetime) -> list[str]:
    counts = dict(session.execute(select(SpoolEntry.state, func.count()).group_by(SpoolEntry.state)).all())
    oldest = session.scalar(
        select(func.min(SpoolEntry.received_at)).where(SpoolEntry.state == SpoolState.NEW.value)
    )
    line = ", ".join(f"{counts.get(s.value, 0)} {s.value}" for s in SpoolState)
    lines = [line]
    if oldest is not None:
        lines.append(f"oldest unprocessed message waiting {int((now - oldest).total_seconds())} s")
    if counts.get(SpoolState.FAILED.value):
        lines.append("failed messages are parked: mailforum spool list; mailforum spool retry ID")
    return lines


def trust_report(session: Session, config: Config, now: dt.datetime) -> list[str]:
    if config.security.authserv_id:
        return [f"senders are checked against Authentication-Results from {config.security.authserv_id}"]
    return ["no [security] authserv_id: the From header is trusted as it comes (anyone can post as a member)"]


def health_report(session: Session, config: Config, now: dt.datetime) -> list[str]:
    """Members whose delivery bounces disabled, and held posts with no moderator to see them."""
    disabled = _per_list(session, Member.list_id, Member.delivery_disabled_at.is_not(None))
    moderated = set(session.scalars(select(Moderator.list_id).distinct()))
    held = _per_list(session, Post.list_id, Post.status == PostStatus.HELD.value)
    lines = []
    for mlist in session.scalars(select(MailingList).order_by(MailingList.name)):
        if disabled.get(mlist.id):
            lines.append(
                f"{mlist.name}: {disabled[mlist.id]} member(s) with delivery disabled by bounces "
                f"(mailforum members bounces {mlist.name})"
            )
        if held.get(mlist.id) and mlist.id not in moderated:
            lines.append(
                f"{mlist.name}: {held[mlist.id]} held post(s) and no moderators "
                f"(mailforum lists moderators {mlist.name} add ADDR; mailforum held list)"
            )
    return lines or ["no bounce-disabled members; every list with held posts has moderators"]


REPORTS: tuple[tuple[str, Report], ...] = (
    ("lists", lists_report),
    ("spool", spool_report),
    ("bounces and moderation", health_report),
    ("sender checks", trust_report),
)


def gather(session: Session, config: Config, now: dt.datetime) -> list[tuple[str, list[str]]]:
    return [(title, report(session, config, now)) for title, report in REPORTS]
