"""Relay connections that the relay closes: idle timeouts, reloads, restarts (RELIABILITY F19).

Postfix closes an SMTP session idle for ``smtpd_timeout`` (300 s) with ``421 4.4.2 …
timeout exceeded``, and a reload or restart closes them all. The copy in hand must go
out at once on a fresh connection and count no failed attempt; the worker notices the
hang-up while idle, so no socket waits in CLOSE-WAIT. The retry delay here is a minute,
so a copy that needed a retry would miss every wait below.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import replace
from pathlib import Path

import pytest

from mailforum.db.models import OutboxState
from tests.helpers import ServerThread, message, wait_for
from tests.integration.outbound_helpers import deliver, rows, store
from tests.relay import FakeRelay, Step, fake_relay

MEMBERS = [f"m{i}@example.com" for i in range(6)]
CLOSE_WAIT = "08"  # the state column of /proc/net/tcp


def close_wait(port: int) -> int:
    """Sockets connected to ``port`` whose peer has closed and that we have not closed yet."""
    count = 0
    for table in ("/proc/net/tcp", "/proc/net/tcp6"):
        path = Path(table)
        if not path.exists():
            continue
        for line in path.read_text().splitlines()[1:]:
            fields = line.split()
            remote_port = int(fields[2].rsplit(":", 1)[1], 16)
            count += remote_port == port and fields[3] == CLOSE_WAIT
    return count


@pytest.fixture(params=[True, False], ids=["pipelined", "one-by-one"])
def relay(site, request) -> Iterator[FakeRelay]:
    with fake_relay(site.config.relay.port, start=False, pipelining=request.param, idle_timeout=1.0) as fake:
        yield fake


@pytest.fixture
def quiet_list(site) -> None:
    site.create_list("dev")
    site.add_members("dev", "ann@example.com", *MEMBERS)


def running(site, **relay: float) -> ServerThread:
    """The delivery worker as ``serve`` runs it; retries would wait a minute."""
    config = replace(
        site.config,
        relay=replace(site.config.relay, max_connections=3, **relay),
        outbound=replace(site.config.outbound, retry_base=60.0, retry_max=60.0),
    )
    worker = ServerThread(config, ingest=False, process=False, web=False, scheduler=False)
    worker.start()
    return worker


def post_and_wait(site, relay: FakeRelay, number: int) -> None:
    """One post to the quiet list; every member's copy arrives without a retry."""
    store(site, message(f"Post {number}", f"<p{number}@example.com>"))
    wait_for(lambda: relay.received(len(MEMBERS) * number), timeout=10)


def assert_sent_without_failures(site) -> None:
    for row in rows(site):
        assert (row.state, row.attempts, row.last_reply) == (OutboxState.SENT.value, 0, None)


def test_a_relay_closing_idle_connections_costs_no_attempt(site, relay, quiet_list):
    relay.start()
    worker = running(site)
    try:
        for number in (1, 2, 3):
            post_and_wait(site, relay, number)
            # The relay's idle timeout passes: it says 421 and closes; the worker closes too.
            wait_for(lambda: relay.open_sessions() == 0, timeout=10)
            wait_for(lambda: close_wait(relay.port) == 0, timeout=2)
    finally:
        worker.stop()
    assert relay.copies() == {m: 3 for m in MEMBERS}
    assert_sent_without_failures(site)


def test_a_relay_restart_between_posts_costs_no_attempt(site, relay, quiet_list):
    relay.idle_timeout = 0  # Postfix's 300 s: only the restart closes connections
    relay.start()
    worker = running(site)
    try:
        post_and_wait(site, relay, 1)
        assert relay.open_sessions() > 0
        relay.restart()
        wait_for(lambda: close_wait(relay.port) == 0, timeout=2)
        post_and_wait(site, relay, 2)
    finally:
        worker.stop()
    assert relay.copies() == {m: 2 for m in MEMBERS}
    assert_sent_without_failures(site)


def test_the_worker_quits_idle_connections_before_the_relay_would(site, relay, quiet_list):
    relay.idle_timeout = 0
    relay.start()
    worker = running(site, idle_timeout=0.3)
    try:
        post_and_wait(site, relay, 1)
        wait_for(lambda: relay.open_sessions() == 0, timeout=10)  # QUIT, not left to time out
        post_and_wait(site, relay, 2)
    finally:
        worker.stop()
    assert_sent_without_failures(site)


def test_a_relay_hanging_up_between_the_copies_of_one_run(site, relay, quiet_list):
    """A reload while the worker is busy: each copy finds its connection closed (seen before
    use, or as a 421/EOF to MAIL) and goes out on a new one, counting nothing."""
    relay.start()
    store(site, message("Hello", "<t1@example.com>"))
    relay.script["DATA"] = [Step(action="hangup") for _ in MEMBERS]
    stats = deliver(site.config, site.db, relay={"max_connections": 1}, retry_base=60.0)
    assert (stats.sent, stats.deferred, stats.failed) == (len(MEMBERS), 0, 0)
    assert stats.connections == len(MEMBERS)
    assert relay.copies() == {m: 1 for m in MEMBERS}
    assert_sent_without_failures(site)


def test_a_fresh_connection_that_fails_as_well_counts_as_an_attempt(site, relay, quiet_list):
    """Only one immediate resend: a 421 on the new connection too is a real failure."""
    relay.start()
    store(site, message("Hello", "<t1@example.com>"))
    relay.script["RCPT"] = ["250 2.1.5 OK", "421 4.3.2 Busy", "421 4.3.2 Busy"]
    stats = deliver(site.config, site.db, relay={"max_connections": 1}, retry_base=60.0)
    assert (stats.sent, stats.deferred, stats.connections) == (len(MEMBERS) - 1, 1, 3)
    (deferred,) = [r for r in rows(site) if r.state == OutboxState.PENDING.value]
    assert deferred.attempts == 1 and deferred.last_reply.startswith("421 4.3.2")


def test_outbox_list_shows_no_old_error_for_a_copy_sent_later(site, relay, quiet_list):
    relay.start()
    store(site, message("Hello", "<t1@example.com>"))
    relay.rcpt[MEMBERS[0]] = "450 4.2.1 Mailbox busy"
    assert deliver(site.config, site.db).deferred == 1
    assert "450 4.2.1" in site.cli("outbox", "list", "--state", "pending").stdout
    relay.rcpt.clear()
    wait_for(lambda: deliver(site.config, site.db).sent == 1, timeout=10, interval=0.2)
    listing = site.cli("outbox", "list", "--state", "all")
    assert listing.returncode == 0 and "450" not in listing.stdout
    by_address = {r.recipient: r for r in rows(site)}
    assert (by_address[MEMBERS[0]].attempts, by_address[MEMBERS[0]].last_reply) == (1, None)
