"""Import an mbox through the live processing path; export posts as JSON lines or mbox."""

from __future__ import annotations

import datetime as dt
import json
import re
import traceback
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import aliased

from mailforum.config import Config
from mailforum.core import posting
from mailforum.db import spool
from mailforum.db.models import MailingList, Post, PostStatus, SpoolEntry, SpoolState, utcnow
from mailforum.db.session import Database
from mailforum.mail.addresses import list_address
from mailforum.mail.parse import Unprocessable, parse


@dataclass
class ImportReport:
    posts: int = 0
    duplicates: int = 0
    failed: int = 0
    errors: list[str] = field(default_factory=list)


def import_messages(
    db: Database,
    config: Config,
    mlist: MailingList,
    raws: Iterable[bytes],
    batch: int = 500,
    on_progress: Any = None,
) -> ImportReport:
    """Store each raw message as live mail would be, in batches of one commit each.

    Imported mail is the list's own archive: the posting policy (membership,
    moderation) is not applied, threading and de-duplication are, so a second run
    stores nothing new. A message that cannot be processed is parked in the spool as
    ``failed`` with its error, where ``mailforum spool list`` shows it.
    """
    report = ImportReport()
    rcpt = (list_address(mlist.name, config.site.domain),)
    chunk: list[bytes] = []
    for raw in raws:
        chunk.append(raw)
        if len(chunk) >= batch:
            _import_chunk(db, config, rcpt, chunk, report)
            if on_progress:
                on_progress(len(chunk))
            chunk = []
    if chunk:
        _import_chunk(db, config, rcpt, chunk, report)
        if on_progress:
            on_progress(len(chunk))
    return report


def _import_chunk(
    db: Database, config: Config, rcpt: tuple[str, ...], raws: list[bytes], report: ImportReport
) -> None:
    now = utcnow()
    with db.session() as session:
        for raw in raws:
            error = None
            try:
                parsed = parse(raw)
                with session.begin_nested():
                    outcomes = posting.process(
                        session, config, parsed, raw, parsed.from_address, rcpt, None, now, now, trusted=True
                    )
            except Unprocessable as exc:
                error = f"unprocessable: {exc}"
            except Exception:
                error = traceback.format_exc(limit=8)
            if error is not None:
                report.failed += 1
                report.errors.append(error.strip().splitlines()[-1])
                _park(session, raw, rcpt, error, now)
                continue
            for outcome in outcomes:
                if outcome.post is not None:
                    report.posts += 1
                else:
                    report.duplicates += 1


def _park(session: Any, raw: bytes, rcpt: tuple[str, ...], error: str, now: dt.datetime) -> None:
    ids = spool.insert_batch(session, [spool.NewMessage(raw, "", rcpt, protocol="import")], now)
    entry = session.get(SpoolEntry, ids[0])
    entry.state = SpoolState.FAILED.value
    entry.error = error[:4000]
    entry.processed_at = now


def _exported_posts(db: Database, mlist: MailingList, with_raw: bool) -> Iterator[tuple[Post, str | None]]:
    parent = aliased(Post)
    stmt = (
        select(Post, parent.message_id)
        .outerjoin(parent, Post.parent_id == parent.id)
        .where(Post.list_id == mlist.id, Post.status != PostStatus.PLACEHOLDER.value)
        .order_by(Post.id)
        .execution_options(yield_per=1000)
    )
    if with_raw:
        from sqlalchemy.orm import undefer

        stmt = stmt.options(undefer(Post.raw))
    with db.read_session() as session:
        yield from session.execute(stmt)


def _topic_ids(db: Database, mlist: MailingList) -> dict[int, int]:
    """Topic id → the live topic it was merged into (identity for live topics)."""
    from mailforum.db.models import Topic

    with db.read_session() as session:
        rows = session.execute(select(Topic.id, Topic.merged_into_id).where(Topic.list_id == mlist.id)).all()
    merged = {tid: into for tid, into in rows}

    def live(tid: int) -> int:
        while merged.get(tid) is not None:
            tid = merged[tid]  # type: ignore[assignment]
        return tid

    return {tid: live(tid) for tid in merged}


def export_jsonl(db: Database, mlist: MailingList) -> Iterator[str]:
    """One JSON object per stored post (DESIGN.md: the export format)."""
    topics = _topic_ids(db, mlist)
    for post, parent_id in _exported_posts(db, mlist, with_raw=False):
        record = {
            "message_id": post.message_id,
            "topic_id": topics.get(post.topic_id, post.topic_id),
            "parent_message_id": parent_id,
            "list": mlist.name,
            "author": post.author_address,
            "author_name": post.author_name,
            "subject": post.subject,
            "date": (post.date or post.received_at).isoformat(),
            "received_at": post.received_at.isoformat(),
            "status": post.status,
            "attachments": post.attachments,
            "text": post.text_body,
        }
        yield json.dumps(record, ensure_ascii=False)


_FROM_LINE = re.compile(rb"^(>*From )", re.MULTILINE)
_QUOTED_FROM_LINE = re.compile(rb"^>(>*From )", re.MULTILINE)


def unquote_mbox(raw: bytes) -> bytes:
    """Undo mbox "From " quoting (mboxrd: one '>' less on every >…From line)."""
    return _QUOTED_FROM_LINE.sub(rb"\1", raw)


def export_mbox(db: Database, mlist: MailingList) -> Iterator[bytes]:
    """The raw messages as an mboxrd file (">From " quoting, reversible)."""
    for post, _ in _exported_posts(db, mlist, with_raw=True):
        raw = (post.raw or b"").replace(b"\r\n", b"\n")
        sender = post.author_address or "MAILER-DAEMON"
        stamp = post.received_at.astimezone(dt.UTC).strftime("%a %b %d %H:%M:%S %Y")
        body = _FROM_LINE.sub(rb">\1", raw)
        if not body.endswith(b"\n"):
            body += b"\n"
        yield f"From {sender} {stamp}\n".encode() + body + b"\n"
