"""Import an mbox, threaded as live mail is; export posts as JSON lines or mbox.

An import stores each message as the live path stores an imported one
(``routing.process`` with ``imported=True``: ``posting.store_post`` accepting it), by
``store_imported``, which does the same without the rest of the live path: the import
command then loads no route, no command, no template or outbox module (about 60 ms of
start-up), and a message costs no routing. ``mailforum spool retry`` of a parked imported
message goes through the live path; tests/integration/test_threading_import.py checks
that both store the same rows.
"""

from __future__ import annotations

import datetime as dt
import json
import mmap
import multiprocessing
import os
import re
import threading
import traceback
from collections.abc import Iterable, Iterator, Sequence
from concurrent.futures import Future, ProcessPoolExecutor
from concurrent.futures.process import BrokenProcessPool
from dataclasses import dataclass, field, replace
from itertools import islice
from typing import Any, TypeVar

from sqlalchemy import select
from sqlalchemy.orm import Session, aliased

from mailforum import crash
from mailforum.config import Config
from mailforum.core import lists, post_content, threads, topics
from mailforum.core.archive_parse import Dated as _Dated
from mailforum.core.archive_parse import archive_date, parse_entries, split_envelope, watch_parent
from mailforum.db import ids, spool
from mailforum.db.models import MailingList, Post, PostStatus, SpoolEntry, SpoolState, utcnow
from mailforum.db.session import Database
from mailforum.mail.addresses import list_address
from mailforum.mail.headers import ancestry, thread_index
from mailforum.mail.parse import ParsedMessage

T = TypeVar("T")


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
    parallel: bool = True,
) -> ImportReport:
    """Store each raw message as live mail would be, in batches of one commit each.

    Imported mail is the list's own archive: the posting policy (membership,
    moderation) is not applied, threading and de-duplication are, so a second run
    stores nothing new. An entry may start with its mbox From_ line; a message
    without a Date is dated by ``archive_dates``, never by the import (B51). A
    message that cannot be processed is parked in the spool as ``failed`` with its
    error, where ``mailforum spool list`` shows it.

    With ``parallel`` (and more than one batch, on a machine with more than one CPU),
    a second process parses the next batch while this one stores the current one. The
    first batches are smaller (``FIRST_BATCH``, doubling up to ``batch``), so storing
    starts after a short parse instead of a whole batch's.
    """
    report = ImportReport()
    rcpt = (list_address(mlist.name, config.site.domain),)
    last: dt.datetime | None = None
    first = min(FIRST_BATCH, batch)  # a first batch this long may have others after it
    with _Parser(parallel) as parser:
        pending: tuple[_Chunk, Future[list[_Dated]] | list[_Dated]] | None = None
        for entries in ramped(raws, batch, first):
            chunk = _Chunk(entries, [split_envelope(entry)[1] for entry in entries])
            parsed = parser.submit(entries, more=pending is not None or len(entries) >= first)
            if pending is not None:
                last = _import_chunk(db, config, rcpt, *pending, last, report, on_progress)
            pending = (chunk, parsed)
        if pending is not None:
            _import_chunk(db, config, rcpt, *pending, last, report, on_progress)
    return report


FIRST_BATCH = 64  # the size of an import's first batch; each next one is twice as big, up to ``batch``


def ramped(items: Iterable[T], size: int, first: int = FIRST_BATCH) -> Iterator[list[T]]:
    """``items`` in lists of ``first``, twice that, and so on up to ``size`` (the last one shorter).

    The writer waits for the parser only for the first list: the parser reads a list
    while the writer stores the one before, and parsing is faster than storing.
    """
    rest = iter(items)
    step = max(1, min(first, size))
    while chunk := list(islice(rest, step)):
        yield chunk
        step = min(step * 2, size)


@dataclass(frozen=True, slots=True)
class _Chunk:
    entries: list[bytes]  # the messages as the archive holds them, perhaps with their From_ lines
    raws: list[bytes]  # the messages, without their From_ lines


class Mbox:
    """An mbox file's messages, each with its From_ line, as ``mailbox.mbox`` splits them.

    A message starts at every line that starts with "From "; the empty line before the
    next one (or before the end of the file) is not part of it. The file is mapped, not
    read: one scan finds every message (``mailbox.mbox`` reads it a line at a time, and
    again for each message), and a message is copied only when asked for.
    """

    _START = re.compile(rb"^From ", re.MULTILINE)

    def __init__(self, path: str) -> None:
        with open(path, "rb") as file:
            size = os.fstat(file.fileno()).st_size
            self._data: mmap.mmap | bytes = (
                mmap.mmap(file.fileno(), 0, access=mmap.ACCESS_READ) if size else b""
            )
        data = self._data
        starts = [match.start() for match in self._START.finditer(data)]
        ends = [*starts[1:], size] if starts else []
        self._spans = [(start, self._stop(data, end)) for start, end in zip(starts, ends, strict=True)]

    @staticmethod
    def _stop(data: mmap.mmap | bytes, end: int) -> int:
        """Where a message followed by ``end`` (the next From_ line, or the file's end) stops:
        before the empty line that separates them, if there is one."""
        ends_empty_line = data[end - 1 : end] == b"\n" and (end == 1 or data[end - 2 : end - 1] == b"\n")
        return end - 1 if ends_empty_line else end

    def __len__(self) -> int:
        return len(self._spans)

    def __getitem__(self, key: int) -> bytes:
        start, stop = self._spans[key]
        return self._data[start:stop]

    def __enter__(self) -> Mbox:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def close(self) -> None:
        if isinstance(self._data, mmap.mmap):
            self._data.close()


def archive_dates(entries: Sequence[bytes], before: dt.datetime | None = None) -> list[dt.datetime | None]:
    """``archive_date`` of each entry; one that has none takes its neighbour's: the one
    before it (``before`` for the first), else the first dated one after it."""
    return neighbour_dates([archive_date(entry) for entry in entries], before)


def neighbour_dates(
    own: Sequence[dt.datetime | None], before: dt.datetime | None = None
) -> list[dt.datetime | None]:
    """``own`` (``archive_date``s), each None replaced as ``archive_dates`` says."""
    following: list[dt.datetime | None] = [None] * len(own)
    later: dt.datetime | None = None
    for position in range(len(own) - 1, -1, -1):
        following[position] = later = own[position] or later
    dates: list[dt.datetime | None] = []
    for position, when in enumerate(own):
        before = when or before or following[position]
        dates.append(before)
    return dates


def written_order(keys: Sequence[T], raws: Iterable[bytes]) -> list[T]:
    """``keys`` sorted by when their messages were written (``archive_date``); undated ones
    keep the date before them, ties keep the file order."""
    dated: list[tuple[float, int, T]] = []
    last = float("-inf")
    for position, (key, raw) in enumerate(zip(keys, raws, strict=True)):
        when = archive_date(raw)
        last = when.timestamp() if when is not None else last
        dated.append((last, position, key))
    dated.sort(key=lambda item: (item[0], item[1]))
    return [key for _, _, key in dated]


class _Parser:
    """Parses batches in a child process when that can run beside us, else here.

    The child is forked when this process runs no other thread (``fork`` copies only the
    calling thread: a lock another one held would stay locked in the child): it starts
    in milliseconds, with the parser loaded. Otherwise it is spawned, a new interpreter
    that imports only ``archive_parse`` (about 0.15 s of CPU before its first message).
    Either ends when this process does, even by kill -9 (``archive_parse.watch_parent``).
    """

    def __init__(self, parallel: bool) -> None:
        self.parallel = parallel and (os.cpu_count() or 1) > 1
        self.pool: ProcessPoolExecutor | None = None

    def __enter__(self) -> _Parser:
        return self

    def __exit__(self, *exc: object) -> None:
        if self.pool is not None:
            self.pool.shutdown(wait=True, cancel_futures=True)

    def submit(self, entries: list[bytes], more: bool) -> Future[list[_Dated]] | list[_Dated]:
        if not (self.parallel and more):
            return parse_entries(entries)
        if self.pool is None:
            self.pool = ProcessPoolExecutor(
                1,
                mp_context=multiprocessing.get_context(_start_method()),
                initializer=watch_parent,
                initargs=(os.getpid(),),
            )
        try:
            return self.pool.submit(parse_entries, entries)
        except (BrokenProcessPool, RuntimeError):
            self.parallel = False
            return parse_entries(entries)


def _start_method() -> str:
    """``fork`` when it is offered and safe (this thread is the only one), else ``spawn``."""
    if "fork" in multiprocessing.get_all_start_methods() and threading.active_count() == 1:
        return "fork"
    return "spawn"


@dataclass(frozen=True, slots=True)
class _Item:
    raw: bytes
    parsed: ParsedMessage | None
    error: str | None


def _import_chunk(
    db: Database,
    config: Config,
    rcpt: tuple[str, ...],
    chunk: _Chunk,
    parsed: Future[list[_Dated]] | list[_Dated],
    last: dt.datetime | None,
    report: ImportReport,
    on_progress: Any,
) -> dt.datetime | None:
    """Store one parsed batch in one commit; the date of its last message (``archive_dates``),
    which an undated first message of the next batch takes.

    The fast path stores without a savepoint per message; if any message fails, the
    batch is rolled back and stored again with a savepoint each, parking the failures.
    """
    if isinstance(parsed, Future):
        try:
            results = parsed.result()
        except BrokenProcessPool:  # the parser process died: parse here
            results = parse_entries(chunk.entries)
    else:
        results = parsed
    dates = neighbour_dates([own for _, _, own in results], last)
    items = [
        _Item(raw, _dated(message, when), error)
        for raw, when, (message, error, _) in zip(chunk.raws, dates, results, strict=True)
    ]
    now = utcnow()
    try:
        with db.session() as session:
            stored = _store_chunk(session, config, rcpt, items, now, careful=False)
    except Exception:
        with db.session() as session:
            stored = _store_chunk(session, config, rcpt, items, now, careful=True)
    report.posts += stored.posts
    report.duplicates += stored.duplicates
    report.failed += stored.failed
    report.errors.extend(stored.errors)
    if on_progress:
        on_progress(len(chunk.raws))
    return dates[-1] if dates else last


def _dated(parsed: ParsedMessage | None, when: dt.datetime | None) -> ParsedMessage | None:
    """The message with the date the archive gives it when its own Date is missing or garbage."""
    if parsed is None or parsed.date is not None or when is None:
        return parsed
    return replace(parsed, date=when)


def _store_chunk(
    session: Session,
    config: Config,
    rcpt: tuple[str, ...],
    items: list[_Item],
    now: dt.datetime,
    careful: bool,
) -> ImportReport:
    report = ImportReport()
    mlist = lists.list_by_name(session, rcpt_list_name(rcpt))
    if not careful and mlist is not None:  # one query for every id the batch names, not one per message
        wanted, conversations, keys = [], [], []
        for item in items:
            if (parsed := item.parsed) is not None:
                wanted.append(parsed.message_id)
                wanted.extend(ancestry(parsed.message_id, parsed.in_reply_to, parsed.references))
                if (index := thread_index(parsed.header("thread-index"))) is not None:
                    conversations.append(index.conversation)
                keys.extend(threads.subject_keys(parsed))
        threads.prefetch(session, mlist.id, wanted, conversations, keys)
    for item in items:
        error = item.error
        stored: Post | None = None
        if item.parsed is not None and mlist is not None:
            if not careful:
                stored = store_imported(session, config, mlist, item.parsed, item.raw, now)
            else:
                try:
                    with session.begin_nested():
                        stored = store_imported(session, config, mlist, item.parsed, item.raw, now)
                except Exception:
                    error = traceback.format_exc(limit=8)
        if error is not None:
            report.failed += 1
            report.errors.append(error.strip().splitlines()[-1])
            _park(session, item.raw, rcpt, error, now)
        elif stored is not None:
            report.posts += 1
        else:  # already stored (or the list is gone: nothing to store it in)
            report.duplicates += 1
    return report


def store_imported(
    session: Session, config: Config, mlist: MailingList, parsed: ParsedMessage, raw: bytes, now: dt.datetime
) -> Post | None:
    """Thread and store one archived message as a published post; None when it is stored already.

    What ``posting.store_post`` does with an imported message (``routing.process`` with
    ``imported=True``): no posting policy, nobody notified, dated by its Date
    (``imported_arrival``); its id is reserved (db.ids), so a reply later in the batch
    links to it without a flush, and the batch's posts reach the database together.
    """
    received = imported_arrival(parsed, now)
    window = dt.timedelta(days=config.processing.subject_window_days)
    placement = threads.place(session, mlist, parsed, received, window)
    if placement.duplicate:
        return None
    post = placement.existing or Post(
        id=ids.reserve(session, Post), list_id=mlist.id, message_id=placement.message_id
    )
    post.topic_id = placement.topic.id
    if placement.parent is not None and placement.parent is not post:
        threads.link_parent(session, post, placement.parent)
    post.status = PostStatus.PUBLISHED.value
    post.hold_reason = None
    post_content.fill(post, config, parsed, raw, received)
    post.spool_id = None
    if placement.existing is None:
        session.add(post)
    threads.attach(session, placement, post, flush=False)
    crash.point("after_post_insert")
    topic = placement.topic
    threads.name_topic(topic, parsed.subject)
    with session.no_autoflush:  # the batch's posts stay unflushed
        topics.tag_new_post(session, mlist, topic, post)
    threads.count_post(session, topic, received)
    return post


def imported_arrival(parsed: ParsedMessage, now: dt.datetime) -> dt.datetime:
    """An archive's messages arrived when they were written: their Date orders them and
    bounds the subject window (a garbage or future Date: now)."""
    return min(parsed.date, now) if parsed.date else now


def rcpt_list_name(rcpt: tuple[str, ...]) -> str:
    return rcpt[0].split("@", 1)[0]


def _park(session: Any, raw: bytes, rcpt: tuple[str, ...], error: str, now: dt.datetime) -> None:
    ids = spool.insert_batch(session, [spool.NewMessage(raw, "", rcpt, protocol=spool.IMPORTED)], now)
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
        while (into := merged.get(tid)) is not None:
            tid = into
        return tid

    return {tid: live(tid) for tid in merged}


def _topic_tags(db: Database, mlist: MailingList) -> dict[int, list[str]]:
    """Topic id → its tag names (sorted), for the list's tagged topics."""
    from mailforum.db.models import Tag, TopicTag

    out: dict[int, list[str]] = {}
    with db.read_session() as session:
        for topic_id, name in session.execute(
            select(TopicTag.topic_id, Tag.name)
            .join(Tag, Tag.id == TopicTag.tag_id)
            .where(Tag.list_id == mlist.id)
            .order_by(Tag.name)
        ):
            out.setdefault(topic_id, []).append(name)
    return out


def export_jsonl(db: Database, mlist: MailingList) -> Iterator[str]:
    """One JSON object per stored post (DESIGN.md: the export format)."""
    topics = _topic_ids(db, mlist)
    tags = _topic_tags(db, mlist)
    for post, parent_id in _exported_posts(db, mlist, with_raw=False):
        topic_id = topics.get(post.topic_id, post.topic_id)
        record = {
            "id": post.id,
            "message_id": post.message_id,
            "topic_id": topic_id,
            "tags": tags.get(topic_id, []),
            "parent_message_id": parent_id,
            "list": mlist.name,
            "author": post.author_address,
            "author_name": post.author_name,
            "subject": post.subject,
            "title": post.title,
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


def mbox_entry(post: Post) -> bytes:
    """One post's raw message as an mboxrd entry (">From " quoting, reversible)."""
    raw = (post.raw or b"").replace(b"\r\n", b"\n")
    sender = post.author_address or "MAILER-DAEMON"
    stamp = post.received_at.astimezone(dt.UTC).strftime("%a %b %d %H:%M:%S %Y")
    body = _FROM_LINE.sub(rb">\1", raw)
    if not body.endswith(b"\n"):
        body += b"\n"
    return f"From {sender} {stamp}\n".encode() + body + b"\n"


def export_mbox(db: Database, mlist: MailingList) -> Iterator[bytes]:
    """The raw messages as an mboxrd file (">From " quoting, reversible)."""
    for post, _ in _exported_posts(db, mlist, with_raw=True):
        yield mbox_entry(post)
