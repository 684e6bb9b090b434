"""The import path: a parser process beside the writer, the fast path and its careful fallback."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from collections.abc import Callable
from typing import Any

from sqlalchemy import func, select
from sqlalchemy.orm import undefer

from mailforum.core import archive, lists, routing
from mailforum.db.models import OutboxEntry, Post, PostingPolicy, SpoolEntry, SpoolState, Topic, utcnow
from mailforum.mail.addresses import list_address
from mailforum.mail.parse import parse
from tests.helpers import message
from tests.unit.test_footers import copy_text


def _archive(count: int) -> list[bytes]:
    raws = []
    for n in range(count):
        thread, position = divmod(n, 10)
        extra = f"In-Reply-To: <t{thread}-{position - 1}@x>" if position else ""
        subject = f"Topic number {thread}" if not position else f"Re: Topic number {thread}"
        raws.append(message(subject, f"<t{thread}-{position}@x>", extra=extra, body=f"message {n}\n"))
    return raws


def test_parallel_import_of_many_batches(site):
    site.create_list("dev", policy=PostingPolicy.OPEN)
    with site.db.read_session() as session:
        mlist = lists.get_list(session, "dev")
    raws = _archive(1200)
    report = archive.import_messages(site.db, site.config, mlist, raws, batch=500, parallel=True)
    assert (report.posts, report.duplicates, report.failed) == (1200, 0, 0)
    posts = site.posts_by_id()
    assert len({p["topic_id"] for p in posts.values()}) == 120
    assert posts["<t7-9@x>"]["parent_message_id"] == "<t7-8@x>"
    again = archive.import_messages(site.db, site.config, mlist, raws, batch=500, parallel=True)
    assert (again.posts, again.duplicates) == (0, 1200)


def fail_on(monkeypatch, message_id: str, error: str) -> Callable[..., Any]:
    """Storing raises RuntimeError(error) for one message, on the import's path
    (``archive.store_imported``) and on the live path a retry takes (``routing.process``);
    returns a function that undoes both."""
    real_store, real_process = archive.store_imported, routing.process

    def store(session, config, mlist, parsed, *args, **kwargs):  # type: ignore[no-untyped-def]
        if parsed.message_id == message_id:
            raise RuntimeError(error)
        return real_store(session, config, mlist, parsed, *args, **kwargs)

    def process(session, config, parsed, *args, **kwargs):  # type: ignore[no-untyped-def]
        if parsed.message_id == message_id:
            raise RuntimeError(error)
        return real_process(session, config, parsed, *args, **kwargs)

    monkeypatch.setattr(archive, "store_imported", store)
    monkeypatch.setattr(routing, "process", process)

    def undo() -> None:
        monkeypatch.setattr(archive, "store_imported", real_store)
        monkeypatch.setattr(routing, "process", real_process)

    return undo


def test_a_failing_message_is_parked_and_its_batch_stored_carefully(site, monkeypatch):
    site.create_list("dev", policy=PostingPolicy.OPEN)
    with site.db.read_session() as session:
        mlist = lists.get_list(session, "dev")
    fail_on(monkeypatch, "<t1-3@x>", "poison message")
    report = archive.import_messages(site.db, site.config, mlist, _archive(30), parallel=False)
    assert (report.posts, report.failed) == (29, 1)
    assert report.errors == ["RuntimeError: poison message"]
    posts = site.posts_by_id()
    assert "<t1-3@x>" not in posts and len(posts) == 29
    # Its reply waits for it under a placeholder.
    assert posts["<t1-4@x>"]["parent_message_id"] == "<t1-3@x>"
    with site.db.read_session() as session:
        [parked] = session.scalars(select(SpoolEntry).where(SpoolEntry.state == SpoolState.FAILED.value))
        assert "poison message" in (parked.error or "")


def test_a_retried_import_message_is_stored_as_an_import(site, monkeypatch):
    # The sender is no member: live mail would be held for a moderator; imported, it is posted.
    site.create_list("dev")
    site.add_members("dev", "bob@example.com", "carol@example.com")
    with site.db.read_session() as session:
        mlist = lists.get_list(session, "dev")
    fixed = fail_on(monkeypatch, "<t0-1@x>", "a bug, fixed since")
    report = archive.import_messages(site.db, site.config, mlist, _archive(3), parallel=False)
    assert (report.posts, report.failed) == (2, 1)
    fixed()
    retried = site.cli("spool", "retry", "--all", "--now")
    assert retried.returncode == 0, retried.stderr
    post = site.posts_by_id()["<t0-1@x>"]
    assert post["status"] == "published"
    assert post["parent_message_id"] == "<t0-0@x>"
    assert post["received_at"].startswith("2026-11-26T10:00:00")  # its Date, not the retry's time
    with site.db.read_session() as session:
        assert session.scalar(select(func.count()).select_from(OutboxEntry)) == 0  # nobody notified
        entry = session.scalars(select(SpoolEntry)).one()
        assert entry.state == SpoolState.DONE.value


def _subject_archive() -> list[bytes]:
    """Threads that only the subject rules join: header-less replies quoting their
    original whole, or from a participant of a fresh topic; an Outlook reply; a reply
    whose parent never arrives; one that arrives before its parent (a placeholder)."""
    raws = []
    for n in range(12):
        words = f"number {n} needs a look at the scheduler before the next release"
        first = f"The build of module {n} fails on arm64 since yesterday.\nIt was fine last week, {words}.\n"
        raws.append(message(f"Build failure {n}", f"<o{n}@x>", body=first))
        quoted = "".join(f"> {line}\n" for line in first.splitlines())
        raws.append(
            message(
                f"Re: Build failure {n}", f"<q{n}@y>", "Bob <bob@example.net>", body=f"{quoted}\nSame here.\n"
            )
        )
        raws.append(message(f"RE: Build failure {n}", f"<p{n}@z>", body="Fixed by the patch, thanks.\n"))
        raws.append(message(f"Re: Lost {n}", f"<r{n}@x>", extra=f"In-Reply-To: <never{n}@x>", body="Hm.\n"))
        raws.append(message(f"Re: Early {n}", f"<e{n}@x>", extra=f"In-Reply-To: <late{n}@x>", body="Yes.\n"))
        raws.append(message(f"Early {n}", f"<late{n}@x>", body="The parent, after its reply.\n"))
    return raws


def _shape(site, list_name: str) -> dict[str, tuple[frozenset[str], str | None]]:
    """Each message's topic (as the set of its messages) and parent."""
    posts = site.export(list_name)
    topics: dict[int, set[str]] = {}
    for post in posts:
        topics.setdefault(post["topic_id"], set()).add(post["message_id"])
    return {p["message_id"]: (frozenset(topics[p["topic_id"]]), p["parent_message_id"]) for p in posts}


def test_an_import_batch_threads_as_one_message_per_batch_does_with_few_statements(site):
    """A batch's subject look-ups read its unflushed posts from memory (threads._unflushed):
    the same topics and parents as batches of one message, each committed before the next,
    and its rows reach the database in many-row INSERTs, not one per row."""
    from sqlalchemy import event

    site.create_list("dev", policy=PostingPolicy.OPEN)
    site.create_list("one", policy=PostingPolicy.OPEN)
    with site.db.read_session() as session:
        dev, one = lists.get_list(session, "dev"), lists.get_list(session, "one")
    raws = _subject_archive()
    statements: list[str] = []

    def count(conn: Any, cursor: Any, statement: str, *args: Any) -> None:
        statements.append(statement.split(None, 1)[0])

    event.listen(site.db.engine, "before_cursor_execute", count)
    try:
        report = archive.import_messages(site.db, site.config, dev, raws, batch=500, parallel=False)
    finally:
        event.remove(site.db.engine, "before_cursor_execute", count)
    assert (report.posts, report.failed) == (len(raws), 0)
    assert statements.count("INSERT") <= 6  # topics, then posts and placeholders, in a few statements
    archive.import_messages(site.db, site.config, one, raws, batch=1, parallel=False)
    batched, alone = _shape(site, "dev"), _shape(site, "one")
    assert batched == alone
    assert batched["<q3@y>"][1] == "<o3@x>"  # joined by its quote of the original, in the same batch
    assert batched["<late3@x>"][0] == frozenset({"<late3@x>", "<e3@x>"})
    again = archive.import_messages(site.db, site.config, dev, raws, batch=500, parallel=False)
    assert (again.posts, again.duplicates) == (0, len(raws))


def _rows(site, list_name: str) -> dict[str, tuple[Any, ...]]:
    """Every stored row of a list, keyed by Message-ID: its columns but the ids, its topic's
    columns but the ids (the topic named by its messages), and its parent's Message-ID."""
    with site.db.read_session() as session:
        mlist = lists.get_list(session, list_name)
        posts = list(session.scalars(select(Post).where(Post.list_id == mlist.id).options(undefer(Post.raw))))
        topics = {t.id: t for t in session.scalars(select(Topic).where(Topic.list_id == mlist.id))}
    by_id = {p.id: p for p in posts}
    members: dict[int, set[str]] = {}
    for post in posts:
        members.setdefault(post.topic_id, set()).add(post.message_id)
    skip = {"id", "list_id", "topic_id", "parent_id", "spool_id", "merged_into_id"}

    def columns(row: Any) -> tuple[Any, ...]:
        return tuple(getattr(row, c.key) for c in row.__table__.columns if c.key not in skip)

    return {
        p.message_id: (
            columns(p),
            columns(topics[p.topic_id]),
            frozenset(members[p.topic_id]),
            by_id[p.parent_id].message_id if p.parent_id is not None else None,
        )
        for p in posts
    }


def test_the_import_stores_the_rows_the_live_path_stores_for_an_imported_message(site):
    """``archive.store_imported`` (the import command, a batch at a time) stores what
    ``routing.process(imported=True)`` (``spool retry`` of a parked import, one message a
    transaction) stores: the same posts, placeholders, topics and parents, column by column."""
    site.create_list("dev", policy=PostingPolicy.MODERATED)
    site.create_list("one", policy=PostingPolicy.MODERATED)
    with site.db.read_session() as session:
        dev = lists.get_list(session, "dev")
    quoted_copy = "".join(f"> {line}\n" for line in copy_text().splitlines())  # our footer in it
    raws = [
        *_subject_archive(),
        message("Re: Build failure 1", "<f1@x>", extra="In-Reply-To: <o1@x>", body=f"{quoted_copy}\nOK.\n"),
        message("Build failure 1", "<o1@x>", body="The same id, other words: kept under a derived id.\n"),
        message("No date", "<nodate@x>", body="Dated by the archive.\n").replace(
            b"Date: Thu, 26 Nov 2026 10:00:00 +0000\r\n", b""
        ),
    ]
    report = archive.import_messages(site.db, site.config, dev, raws, batch=500, parallel=False)
    assert (report.posts, report.failed) == (len(raws), 0)
    now = utcnow()
    address = list_address("one", site.config.site.domain)
    for raw in raws:  # as the spool worker runs a retried import: one transaction each
        parsed = parse(raw)
        with site.db.session() as session:
            received = archive.imported_arrival(parsed, now)
            args = (session, site.config, parsed, raw, parsed.from_address, (address,), None, received, now)
            [outcome] = routing.process(*args, imported=True)
            assert outcome.post is not None
    imported, live = _rows(site, "dev"), _rows(site, "one")
    assert set(imported) == set(live)
    for message_id, row in imported.items():
        if message_id == "<nodate@x>":  # dated by the import (archive_dates), by now on the live path
            continue
        assert row == live[message_id], message_id


def test_an_import_killed_mid_batch_resumes_where_its_last_commit_ended(site, tmp_path):
    """kill -9 inside the second batch (64 messages, then 128): the first batch is stored
    whole, nothing of the second; run again, the import skips the first and stores the rest,
    replies of the lost batch threaded under parents of the kept one."""
    site.create_list("dev", policy=PostingPolicy.OPEN)
    box = tmp_path / "archive.mbox"
    with open(box, "wb") as out:
        for raw in _archive(300):
            out.write(
                b"From archive@example.org Thu Nov 26 10:00:00 2026\n" + raw.replace(b"\r\n", b"\n") + b"\n"
            )
    env = dict(os.environ, MAILFORUM_CONFIG=str(site.config_file), MAILFORUM_CRASH_AT="after_post_insert:100")
    killed = subprocess.run(
        [sys.executable, "-m", "mailforum", "import-mbox", str(box), "--list", "dev"],
        env=env,
        capture_output=True,
        timeout=120,
    )
    assert killed.returncode == -signal.SIGKILL
    assert len(site.posts_by_id()) == archive.FIRST_BATCH  # the first commit, and nothing half-written
    again = site.cli("import-mbox", str(box), "--list", "dev")
    assert again.returncode == 0, again.stderr
    assert (
        f"imported {300 - archive.FIRST_BATCH} post(s); {archive.FIRST_BATCH} already stored" in again.stdout
    )
    posts = site.posts_by_id()
    assert len(posts) == 300 and len({p["topic_id"] for p in posts.values()}) == 30
    assert posts["<t6-5@x>"]["parent_message_id"] == "<t6-4@x>"  # across the two runs' batches


def test_the_same_message_id_twice_in_one_batch_is_stored_once_or_kept_apart(site):
    """Inside one unflushed batch: the same message twice is a duplicate; the same id
    with other content is kept under a derived id (S20), as across batches."""
    site.create_list("dev", policy=PostingPolicy.OPEN)
    with site.db.read_session() as session:
        mlist = lists.get_list(session, "dev")
    raws = [
        message("Plans", "<p@x>", body="The plan.\n"),
        message("Re: Plans", "<r@x>", extra="In-Reply-To: <p@x>", body="Agreed.\n"),
        message("Plans", "<p@x>", body="The plan.\n"),  # delivered twice
        message("Plans", "<p@x>", body="Another text under the same id.\n"),
    ]
    report = archive.import_messages(site.db, site.config, mlist, raws, batch=500, parallel=False)
    assert (report.posts, report.duplicates, report.failed) == (3, 1, 0)
    posts = site.posts_by_id()
    assert len(posts) == 3 and posts["<r@x>"]["parent_message_id"] == "<p@x>"
    [squatter] = [m for m in posts if m not in ("<p@x>", "<r@x>")]
    assert squatter.endswith(".p@x>") and posts[squatter]["text"].startswith("Another text")


def test_an_undated_first_message_of_a_batch_takes_the_date_of_the_batch_before(site):
    """Dates are read in the parser process, batch by batch: an undated message opening a
    batch is dated as the last message of the batch before (archive_dates), not by now."""
    site.create_list("dev", policy=PostingPolicy.OPEN)
    with site.db.read_session() as session:
        mlist = lists.get_list(session, "dev")
    dated = message("Dated", "<dated@x>").replace(b"10:00:00", b"08:30:00")
    undated = message("Undated", "<undated@x>").replace(b"Date: Thu, 26 Nov 2026 10:00:00 +0000\r\n", b"")
    later = message("Later", "<later@x>")
    report = archive.import_messages(site.db, site.config, mlist, [dated, undated, later], batch=1)
    assert (report.posts, report.failed) == (3, 0)
    posts = site.posts_by_id()
    assert posts["<undated@x>"]["received_at"].startswith("2026-11-26T08:30:00")
    assert posts["<later@x>"]["received_at"].startswith("2026-11-26T10:00:00")
