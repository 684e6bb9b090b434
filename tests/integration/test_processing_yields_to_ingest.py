"""The spool processor steps back while mail is arriving, and still processes everything."""

from __future__ import annotations

import threading

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
