"""Batched writes (issue 16): rows linked before their INSERT, and batches without savepoints."""

from __future__ import annotations

from typing import Any

from sqlalchemy import select

from mailforum.core import archive, lists, routing
from mailforum.db import spool
from mailforum.db.models import PostingPolicy, SpoolEntry, SpoolState, utcnow
from mailforum.runners.worker import SpoolProcessor
from tests.helpers import message


def test_a_placeholder_that_gets_a_newer_parent_is_stored_on_the_fast_path(site, monkeypatch):
    """<c> names <b>, then <b> arrives naming <a>: placeholder <b> was added before the
    placeholder <a> it now hangs under, yet the batch goes in without a fallback."""
    site.create_list("dev", policy=PostingPolicy.OPEN)
    with site.db.read_session() as session:
        mlist = lists.get_list(session, "dev")
    careful: list[bool] = []
    real = archive._store_chunk

    def store_chunk(*args: Any, **kwargs: Any) -> Any:
        careful.append(kwargs["careful"])
        return real(*args, **kwargs)

    monkeypatch.setattr(archive, "_store_chunk", store_chunk)
    raws = [
        message("Re: Stairs", "<c@x>", extra="References: <b@x>", body="third\n"),
        message("Re: Stairs", "<b@x>", extra="In-Reply-To: <a@x>", body="second\n"),
        message("Stairs", "<a@x>", body="first\n"),
    ]
    report = archive.import_messages(site.db, site.config, mlist, raws, parallel=False)
    assert (report.posts, report.failed, report.errors) == (3, 0, [])
    assert careful == [False]  # one batch, stored at once
    posts = site.posts_by_id()
    assert posts["<c@x>"]["parent_message_id"] == "<b@x>"
    assert posts["<b@x>"]["parent_message_id"] == "<a@x>"
    assert posts["<a@x>"]["parent_message_id"] is None
    assert len({p["topic_id"] for p in posts.values()}) == 1


def test_a_failure_in_a_processing_batch_is_recorded_alone(site, monkeypatch):
    """The batch is stored without a savepoint per message; when one fails, the same
    messages are stored again one savepoint each: the others are posted in the same run."""
    site.create_list("dev", policy=PostingPolicy.OPEN)
    real = routing.process

    def process(session, config, parsed, *args, **kwargs):  # type: ignore[no-untyped-def]
        if parsed.message_id == "<poison@x>":
            raise RuntimeError("poison message")
        return real(session, config, parsed, *args, **kwargs)

    monkeypatch.setattr(routing, "process", process)
    address = f"dev@{site.config.site.domain}"
    raws = [
        message("One", "<one@x>"),
        message("Poison", "<poison@x>"),
        message("Re: One", "<two@x>", extra="In-Reply-To: <one@x>"),
    ]
    with site.db.session() as session:
        spool.insert_batch(
            session, [spool.NewMessage(r, "ann@example.com", (address,)) for r in raws], utcnow()
        )
    assert SpoolProcessor(site.db, site.config).run_once() == 3
    posts = site.posts_by_id()
    assert set(posts) == {"<one@x>", "<two@x>"}
    assert posts["<two@x>"]["parent_message_id"] == "<one@x>"
    with site.db.read_session() as session:
        entries = {e.id: e for e in session.scalars(select(SpoolEntry))}
    states = sorted((e.state, e.attempts) for e in entries.values())
    assert states == [(SpoolState.DONE.value, 1), (SpoolState.DONE.value, 1), (SpoolState.NEW.value, 1)]
    [failed] = [e for e in entries.values() if e.state == SpoolState.NEW.value]
    assert "poison message" in (failed.error or "")
