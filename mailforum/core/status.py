"""`mailforum status`: what an operator checks first in the morning.

Each report is a small function from (session, config, now) to lines; the table
``REPORTS`` orders them. Later parts (outbox, bounces) add their own report.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Callable

from sqlalchemy import func, select
from sqlalchemy.orm import Session

from mailforum.config import Config
from mailforum.db.models import MailingList, Member, Post, PostStatus, SpoolEntry, SpoolState

Report = Callable[[Session, Config, dt.datetime], list[str]]


def lists_report(session: Session, config: Config, now: dt.datetime) -> list[str]:
    members = dict(session.execute(select(Member.list_id, func.count()).group_by(Member.list_id)).all())
    posts = dict(
        session.execute(
            select(Post.list_id, func.count())
            .where(Post.status == PostStatus.PUBLISHED.value)
            .group_by(Post.list_id)
        ).all()
    )
    held = dict(
        session.execute(
            select(Post.list_id, func.count())
            .where(Post.status == PostStatus.HELD.value)
            .group_by(Post.list_id)
        ).all()
    )
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


REPORTS: tuple[tuple[str, Report], ...] = (
    ("lists", lists_report),
    ("spool", spool_report),
    ("sender checks", trust_report),
)


def gather(session: Session, config: Config, now: dt.datetime) -> list[tuple[str, list[str]]]:
    return [(title, report(session, config, now)) for title, report in REPORTS]
