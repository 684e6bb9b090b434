"""The import path: a parser process beside the writer, the fast path and its careful fallback."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from sqlalchemy import func, select

from mailforum.core import archive, lists, routing
from mailforum.db.models import OutboxEntry, PostingPolicy, SpoolEntry, SpoolState
from tests.helpers import message


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
    """Processing raises RuntimeError(error) for one message; the real ``routing.process``."""
    real = routing.process

    def process(session, config, parsed, *args, **kwargs):  # type: ignore[no-untyped-def]
        if parsed.message_id == message_id:
            raise RuntimeError(error)
        return real(session, config, parsed, *args, **kwargs)

    monkeypatch.setattr(routing, "process", process)
    return real


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
    real = fail_on(monkeypatch, "<t0-1@x>", "a bug, fixed since")
    report = archive.import_messages(site.db, site.config, mlist, _archive(3), parallel=False)
    assert (report.posts, report.failed) == (2, 1)
    monkeypatch.setattr(routing, "process", real)
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
