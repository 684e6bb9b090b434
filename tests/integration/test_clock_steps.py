"""RELIABILITY F15 for the outbox: the wall clock stepped back an hour, then forward a day.

The retry schedule is stored as absolute UTC (``next_attempt_at``), and the backoff
grows with the stored attempt count, not with elapsed time. So a clock stepped back
delays a retry by the step but never brings it early (nothing skipped), and a clock
stepped forward makes a waiting copy due once, with the next delay in the doubling
(nothing doubled, no burst of retries). The digest side of F15 is in test_digests.py.
"""

from __future__ import annotations

import datetime as dt

from mailforum.db import outbox
from mailforum.db.models import OutboxEntry, OutboxState
from tests.helpers import message
from tests.integration.outbound_helpers import rows, store

LEASE = dt.timedelta(seconds=60)
HOUR = dt.timedelta(hours=1)


def attempt(site, now: dt.datetime) -> list[int]:
    """One delivery pass at ``now`` against a relay that answers 451; the ids it tried."""
    with site.db.session() as session:
        claimed = {c.id: c for c in outbox.claim(session, now, 10, LEASE, "w")}
        results = [outbox.Result(i, False, "451 4.3.0 try later") for i in claimed]
        outbox.record(session, results, claimed, now, outbox.Backoff())
    return sorted(claimed)


def next_at(site, row_id: int) -> tuple[dt.datetime, int, str]:
    with site.db.read_session() as session:
        row = session.get(OutboxEntry, row_id)
        assert row is not None
        return row.next_attempt_at, row.attempts, row.state


def test_backoff_is_neither_skipped_nor_doubled_when_the_clock_steps(site):
    site.create_list("dev")
    site.add_members("dev", "ann@example.com", "bob@example.com")
    store(site, message("Hello", "<t1@example.com>"))
    (row,) = rows(site)
    t0 = row.created_at
    assert attempt(site, t0) == [row.id]
    due, attempts, _ = next_at(site, row.id)
    assert (due - t0, attempts) == (dt.timedelta(seconds=60), 1)

    # Stepped back an hour: the copy is not due early, however often the worker looks.
    for seconds in (0, 30, 59, 61, 3599):
        assert attempt(site, t0 - HOUR + dt.timedelta(seconds=seconds)) == []
    assert next_at(site, row.id)[:2] == (due, 1)
    # The clock catches up with the stored time: one retry, and the next wait doubles once.
    assert attempt(site, due) == [row.id]
    assert attempt(site, due) == []
    second, attempts, _ = next_at(site, row.id)
    assert (second - due, attempts) == (dt.timedelta(seconds=120), 2)

    # Stepped forward a day: due at once, tried once, and the doubling goes on from where it was.
    ahead = second + dt.timedelta(days=1)
    assert attempt(site, ahead) == [row.id]
    for seconds in (0, 1, 239):
        assert attempt(site, ahead + dt.timedelta(seconds=seconds)) == []
    third, attempts, state = next_at(site, row.id)
    assert (third - ahead, attempts, state) == (dt.timedelta(seconds=240), 3, OutboxState.PENDING.value)
    # The lifetime is counted from the stored creation time: still 5 days, not reset by the step.
    assert attempt(site, t0 + dt.timedelta(days=5)) == [row.id]
    assert next_at(site, row.id)[2] == OutboxState.FAILED.value
