"""kill -9 of `mailforum serve` in the middle of a fan-out, then a restart (RELIABILITY F3, F4, H3, H5).

Nothing may be missing afterwards, and a copy may be duplicated only when the kill
fell between the relay's 250 and the commit that marks it sent (the hand-off window).
"""

from __future__ import annotations

import signal
from collections.abc import Iterator
from dataclasses import replace

import pytest

from mailforum.db.enums import OutboxState
from tests.helpers import Site, make_config, message, send, wait_for
from tests.integration.outbound_helpers import LIST, rows, settled
from tests.relay import FakeRelay, fake_relay

pytestmark = pytest.mark.slow
MEMBERS = [f"m{i:02d}@example.com" for i in range(20)]


@pytest.fixture
def crash_site(db_url, tmp_path) -> Iterator[Site]:
    config = make_config(db_url)
    # Leases end quickly, so rows claimed by the killed process come due soon after the restart.
    config = replace(
        config,
        # One connection, and no second copy before the first one's 250 is recorded: then a
        # kill can repeat only the copy in the hand-off window ([outbound] unrecorded = 1).
        outbound=replace(config.outbound, lease=2.0, unrecorded=1),
        relay=replace(config.relay, max_connections=1),
        processing=replace(config.processing, lease=2.0),
    )
    installation = Site(config, tmp_path)
    installation.create_list("dev")
    installation.add_members("dev", "ann@example.com", *MEMBERS)
    yield installation
    installation.db.dispose()


@pytest.fixture
def relay(crash_site) -> Iterator[FakeRelay]:
    with fake_relay(crash_site.config.relay.port) as fake:
        yield fake


@pytest.fixture
def batched_site(db_url, tmp_path) -> Iterator[Site]:
    """Three connections, each with up to four 250s not yet recorded: the committer records
    the results of all three in shared batches."""
    config = make_config(db_url)
    config = replace(
        config,
        outbound=replace(config.outbound, lease=2.0, unrecorded=4, claim_batch=5),
        relay=replace(config.relay, max_connections=3),
        processing=replace(config.processing, lease=2.0),
    )
    installation = Site(config, tmp_path)
    installation.create_list("dev")
    installation.add_members("dev", "ann@example.com", *MEMBERS)
    yield installation
    installation.db.dispose()


def _killed_then_restarted(site: Site, crash_at: str) -> None:
    proc = site.popen_server(env={"MAILFORUM_CRASH_AT": crash_at})
    try:
        send(site.config, message("Hello all", "<t1@example.com>"), [LIST])
        assert proc.wait(timeout=30) == -signal.SIGKILL
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    again = site.popen_server()
    try:
        wait_for(lambda: len(rows(site)) == len(MEMBERS) and settled(site), timeout=60, interval=0.2)
    finally:
        again.terminate()
        again.wait(30)


def test_kill_between_relay_250_and_mark_sent_loses_nothing(crash_site, relay):
    """F4: the copy the relay took just before the kill may come twice; everyone else exactly once."""
    _killed_then_restarted(crash_site, "after_relay_250_before_mark_sent:5")
    copies = relay.copies()
    assert set(copies) == set(MEMBERS)  # loss = 0
    assert all(1 <= n <= 2 for n in copies.values())  # at most 1 + kills
    assert {r.state for r in rows(crash_site)} == {"sent"}
    assert sum(copies.values()) - len(MEMBERS) <= 1  # duplicates ≤ kills


def test_kill_mid_fanout_then_restart_notifies_everyone_once(crash_site, relay):
    """F3: the post and its outbox rows commit together, so a kill halfway writes none of them."""
    _killed_then_restarted(crash_site, "mid_outbox_fanout:1")
    assert relay.copies() == {m: 1 for m in MEMBERS}
    assert len(crash_site.posts_by_id()) == 1


def test_repeated_random_kills_lose_nothing_and_duplicate_at_most_once_per_kill(crash_site, relay):
    """F4 / H5, a few randomised kills in a row (the soak in RELIABILITY L10 does 100s)."""
    import random

    rng = random.Random(7)
    send_first = crash_site.popen_server()
    try:
        send(crash_site.config, message("Hello all", "<t1@example.com>"), [LIST])
        wait_for(lambda: len(rows(crash_site)) == len(MEMBERS), timeout=30)
    finally:
        send_first.kill()
        send_first.wait()
    kills = 1
    while not settled(crash_site) and kills < 5:
        # The crash comes at the Nth relay 250 of this run: never more than the copies still
        # waiting, or a run that sends them all never crashes (the first server may already
        # have sent most of them before its kill).
        waiting = sum(1 for row in rows(crash_site) if row.state == OutboxState.PENDING.value)
        crash_at = min(rng.randint(1, 4), max(waiting, 1))
        proc = crash_site.popen_server(
            env={"MAILFORUM_CRASH_AT": f"after_relay_250_before_mark_sent:{crash_at}"}
        )
        try:
            code = proc.wait(timeout=30)
        finally:
            if proc.poll() is None:
                proc.kill()
                proc.wait()
        kills += code == -signal.SIGKILL
    final = crash_site.popen_server()
    try:
        wait_for(lambda: settled(crash_site), timeout=60, interval=0.2)
    finally:
        final.terminate()
        final.wait(30)
    copies = relay.copies()
    assert set(copies) == set(MEMBERS)
    assert sum(copies.values()) - len(MEMBERS) <= kills


def test_kill_before_the_committer_records_a_batch_loses_nothing(batched_site):
    """F23: kill -9 while the committer holds a batch of 250s from several connections: every
    copy is sent after the restart, and only copies of the relay window come twice: per
    connection, at most ``unrecorded`` with a 250 not yet recorded and the one in hand."""
    with fake_relay(batched_site.config.relay.port) as relay:
        _killed_then_restarted(batched_site, "before_delivery_commit:2")
        copies = relay.copies()
    assert set(copies) == set(MEMBERS)  # loss = 0
    assert {r.state for r in rows(batched_site)} == {"sent"}
    window = batched_site.config.outbound.unrecorded + 1
    assert sum(copies.values()) - len(MEMBERS) <= window * batched_site.config.relay.max_connections
