"""The spool processor steps back while mail is arriving, and still processes everything."""

from __future__ import annotations

import threading

import pytest

from mailforum.db import spool
from mailforum.db.models import PostingPolicy, utcnow
from mailforum.runners import worker
from mailforum.runners.worker import SpoolProcessor
from tests.helpers import DOMAIN, message, send, wait_for


def test_processor_takes_small_batches_while_ingest_is_busy(site):
    site.create_list("dev", PostingPolicy.OPEN)
    raws = [message(message_id=f"<m{i}@example.com>") for i in range(worker.BUSY_BATCH + 5)]
    with site.db.session() as session:
        spool.insert_batch(
            session, [spool.NewMessage(r, "ann@example.com", (f"dev@{DOMAIN}",)) for r in raws], utcnow()
        )
    processor = SpoolProcessor(site.db, site.config)
    assert not processor.ingest_busy()
    processor.notify([1])
    assert processor.ingest_busy()
    assert processor.run_once(worker.BUSY_BATCH) == worker.BUSY_BATCH
    assert processor.run_once() == 5
    assert len(site.posts_by_id()) == worker.BUSY_BATCH + 5


def test_a_burst_from_many_sessions_is_all_processed(site, server):
    site.create_list("dev", PostingPolicy.OPEN)

    def sender(k: int) -> None:
        for i in range(10):
            send(site.config, message(f"Burst {k}.{i}", f"<b{k}.{i}@example.com>"))

    threads = [threading.Thread(target=sender, args=(k,)) for k in range(6)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    wait_for(lambda: len(site.posts_by_id()) == 60, timeout=60)


def spooled(site, total: int, prefix: str) -> tuple[str, ...]:
    """The list dev (open), ``total`` messages in its spool; returns their recipients."""
    site.create_list("dev", PostingPolicy.OPEN)
    rcpt = (f"dev@{DOMAIN}",)
    with site.db.session() as session:
        raws = [message(message_id=f"<{prefix}{i}@example.com>") for i in range(total)]
        spool.insert_batch(
            session, [spool.NewMessage(raw, "ann@example.com", rcpt) for raw in raws], utcnow()
        )
    return rcpt


def test_a_writer_waiting_for_the_sqlite_lock_gets_it_before_the_batch_ends(site, monkeypatch):
    # RELIABILITY F20: one processing transaction per batch held the SQLite write lock for
    # seconds (bench/burst.py), past the spool writer's busy_timeout: 451 Storage busy.
    from mailforum.core import routing

    if not site.db.is_sqlite:
        pytest.skip("PostgreSQL has row locks: the spool writer never waits for the processor")

    total = 40
    rcpt = spooled(site, total, "w")
    seen: list[int] = []  # processed entries the writer's transaction saw committed

    def ingest_commit() -> None:  # what the spool writer does for a 250
        with site.db.session() as session:
            spool.insert_batch(session, [spool.NewMessage(message(), "ann@example.com", rcpt)], utcnow())
            seen.append(sum(n for state, n in spool.counts(session).items() if state == "done"))

    writer = threading.Thread(target=ingest_commit)
    real = routing.process
    calls = 0

    def process(*args, **kwargs):  # type: ignore[no-untyped-def]
        nonlocal calls
        calls += 1
        if calls == 5:  # mail arrives in the middle of the batch
            writer.start()
            wait_for(site.db.writers_waiting)
        return real(*args, **kwargs)

    monkeypatch.setattr(routing, "process", process)
    processor = SpoolProcessor(site.db, site.config)
    assert processor.run_once(total) == total
    writer.join()
    assert seen and seen[0] < total  # the writer had its commit while the batch was still going
    assert len(site.posts_by_id()) == total


def test_a_rest_for_ingest_ends_when_ingest_goes_quiet(site):
    """The rest after a busy batch is cut short once no spool commit came for BUSY_WINDOW:
    a burst that ended meanwhile leaves its backlog to be drained now, not after the rest."""
    processor = SpoolProcessor(site.db, site.config)
    commits = threading.Event()

    def ingest() -> None:  # spool commits every 50 ms for 0.5 s, then none
        for _ in range(10):
            processor.notify([1])
            commits.set()
            threading.Event().wait(0.05)

    arriving = threading.Thread(target=ingest)
    arriving.start()
    commits.wait(5)
    rested = threading.Thread(target=processor._rest, args=(worker.time.monotonic() + 120,))
    rested.start()
    arriving.join()
    rested.join(timeout=30)  # a rest to its end would take 120 s
    assert not rested.is_alive()
    assert not processor.ingest_busy()


def test_a_patient_writer_waits_for_the_batch_to_end(site, monkeypatch):
    """Delivery's threads are marked patient (Database.mark_patient): their claims and records
    wait for the processor's batch (at most MAX_HOLD) instead of cutting it into a
    transaction per message, as a 250 waiting would."""
    from mailforum.core import routing

    if not site.db.is_sqlite:
        pytest.skip("PostgreSQL has row locks: nobody waits for the processor")

    total = 20
    spooled(site, total, "p")
    seen: list[int] = []

    def delivery_commit() -> None:  # what delivery's committer does with its results
        site.db.mark_patient()
        with site.db.session() as session:
            seen.append(sum(n for state, n in spool.counts(session).items() if state == "done"))

    writer = threading.Thread(target=delivery_commit)
    real = routing.process
    calls = 0

    def process(*args, **kwargs):  # type: ignore[no-untyped-def]
        nonlocal calls
        calls += 1
        if calls == 5:
            writer.start()
            wait_for(lambda: site.db.lock_stats.waiting_patient > 0)
            assert not site.db.writers_waiting()
        return real(*args, **kwargs)

    monkeypatch.setattr(routing, "process", process)
    monkeypatch.setattr(worker, "MAX_HOLD", 60.0)  # no timing in the test: only the writer could cut it
    assert SpoolProcessor(site.db, site.config).run_once(total) == total
    writer.join()
    assert seen == [total]  # it had the lock once the whole batch was committed
