"""The delivery worker against a misbehaving relay (RELIABILITY I5, F6–F9), and concurrent workers.

Posts go through the real processing path (policy, threading, fan-out); the worker
is the real one, run like ``mailforum deliver --once``; the relay is tests/relay.py.
"""

from __future__ import annotations

import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from dataclasses import replace
from typing import Any

import pytest

from mailforum.db.models import OutboxState
from tests.helpers import message, wait_for
from tests.integration.outbound_helpers import deliver, rows, settled, store
from tests.relay import FakeRelay, Step, fake_relay

MEMBERS = [f"m{i}@example.com" for i in range(6)]


@pytest.fixture(params=[True, False], ids=["pipelined", "one-by-one"])
def relay(site, request) -> Iterator[FakeRelay]:
    """The fake relay, with and without PIPELINING: the relay client's two paths must read
    every reply the same way."""
    with fake_relay(site.config.relay.port, start=False, pipelining=request.param) as fake:
        yield fake


@pytest.fixture
def posted(site) -> list[str]:
    """A list with members and one published post: one outbox row per member."""
    site.create_list("dev")
    site.add_members("dev", "ann@example.com", *MEMBERS)
    store(site, message("Hello", "<t1@example.com>"))
    assert len(rows(site)) == len(MEMBERS)
    return MEMBERS


def drain(site, fake, **kw) -> None:
    """Deliver until nothing is pending (retries come due within the test config's backoff)."""

    def step() -> bool:
        deliver(site.config, site.db, **kw)
        return settled(site)

    wait_for(step, timeout=30, interval=0.2)


def test_relay_down_in_phases_then_up_every_copy_exactly_once(site, relay, posted):
    """F6: refused, blackhole, 421 on connect, 451 to RCPT, then recovery."""
    fast = {"relay": {"timeout": 0.5}}
    stats = deliver(site.config, site.db, **fast)  # nothing listens: ECONNREFUSED
    assert stats.sent == 0 and stats.deferred == len(posted)
    relay.start()
    relay.silent = True  # accepts, never greets
    time.sleep(0.35)
    assert deliver(site.config, site.db, **fast).sent == 0
    relay.silent = False
    relay.greeting = "421 4.3.2 Service not available"
    time.sleep(0.7)
    assert deliver(site.config, site.db, **fast).sent == 0
    relay.greeting = ""
    relay.rcpt.update({m: "451 4.3.0 Try again later" for m in posted})
    time.sleep(1.0)
    assert deliver(site.config, site.db, **fast).sent == 0
    assert all(r.state == OutboxState.PENDING.value and r.attempts >= 2 for r in rows(site))
    assert not any(r.state == OutboxState.FAILED.value for r in rows(site))  # not before 5 days
    relay.rcpt.clear()
    drain(site, relay, **fast)
    assert relay.copies() == {m: 1 for m in posted}
    assert {r.state for r in rows(site)} == {OutboxState.SENT.value}


def test_mixed_rcpt_results_each_recipient_gets_its_own_fate(site, relay, posted):
    """F7: 250 recipients are sent and never resent; 450 retried; 550 failed with the reply kept."""
    relay.start()
    soft, hard = posted[1], posted[2]
    relay.rcpt[soft] = "450 4.2.1 Mailbox busy"
    relay.rcpt[hard] = "550 5.1.1 No such user here"
    stats = deliver(site.config, site.db)
    assert stats.sent == len(posted) - 2 and stats.failed == 1 and stats.deferred == 1
    by_address = {r.recipient: r for r in rows(site)}
    assert by_address[hard].state == OutboxState.FAILED.value
    assert by_address[hard].last_reply.startswith("550 5.1.1")
    assert by_address[soft].state == OutboxState.PENDING.value
    del relay.rcpt[soft]
    drain(site, relay)
    assert relay.copies() == {m: 1 for m in posted if m != hard}
    deliver(site.config, site.db)
    assert hard not in relay.copies()


def test_data_451_retries_554_fails_and_a_dropped_connection_is_retried(site, relay, posted):
    """F8, with one connection so the script meets the copies in order."""
    relay.start()
    first, second, third = posted[:3]
    relay.script["DATA"] = ["451 4.3.0 Queue full", "554 5.6.0 Content rejected", Step(action="drop")]
    stats = deliver(site.config, site.db, relay={"max_connections": 1})
    assert stats.failed == 1 and stats.deferred == 2
    drain(site, relay)
    by_address = {r.recipient: r for r in rows(site)}
    assert by_address[second].state == OutboxState.FAILED.value
    assert by_address[second].last_reply.startswith("554")
    copies = relay.copies()
    assert copies[first] == 1 and second not in copies
    assert 1 <= copies[third] <= 2  # the relay may have kept the dropped one: a logged duplicate
    assert all(copies[m] == 1 for m in posted[3:])


def test_refused_mail_from_and_a_closing_relay_mid_envelope(site, relay, posted):
    """MAIL 550 fails that copy and the connection goes on (RSET); MAIL 451 is retried later;
    RCPT 421 (the relay closing a reused connection) sends that copy again at once on a new
    connection (F19) — in both the pipelined and the one-command-a-trip dialogue."""
    relay.start()
    first = posted[0]
    relay.script["MAIL"] = ["550 5.7.1 Sender not allowed", "451 4.3.0 Try later", "250 2.1.0 OK"]
    relay.script["RCPT"] = ["250 2.1.5 OK", "250 2.1.5 OK", "421 4.3.2 Shutting down"]
    stats = deliver(site.config, site.db, relay={"max_connections": 1})
    assert (stats.failed, stats.deferred, stats.sent) == (1, 1, len(posted) - 2)
    assert stats.connections == 2  # a new one after the 421 only
    drain(site, relay)
    by_address = {r.recipient: r for r in rows(site)}
    assert by_address[first].state == OutboxState.FAILED.value
    assert by_address[first].last_reply.startswith("550 5.7.1")
    assert relay.copies() == {m: 1 for m in posted if m != first}


def test_a_tarpit_delays_one_copy_not_the_others(site, relay, posted):
    """F9: the DATA reply comes after the client's timeout; the other connection keeps delivering."""
    relay.start()
    relay.script["DATA"] = [Step(delay=1.5)]
    stats = deliver(site.config, site.db, relay={"timeout": 0.5, "max_connections": 2})
    assert stats.sent == len(posted) - 1 and stats.deferred == 1
    drain(site, relay, relay={"timeout": 0.5})
    copies = relay.copies()
    assert set(copies) == set(posted) and all(1 <= n <= 2 for n in copies.values())
    assert sum(copies.values()) <= len(posted) + 1


def test_many_messages_per_connection(site, relay, posted):
    relay.start()
    deliver(site.config, site.db, relay={"max_connections": 1, "messages_per_connection": 4})
    assert relay.copies() == {m: 1 for m in posted}
    assert relay.connections == 2  # 6 copies, 4 per connection


def test_two_workers_on_one_database_send_each_copy_once(site, relay):
    """Several `deliver` processes (or serve nodes) share the outbox without duplicates."""
    site.create_list("dev")
    members = [f"u{i}@example.com" for i in range(300)]
    site.add_members("dev", "ann@example.com", *members)
    store(site, message("Busy", "<b1@example.com>"))
    relay.start()
    env = {"MAILFORUM_CONFIG": str(site.config_file)}
    import os

    procs = [
        subprocess.Popen(
            [sys.executable, "-m", "mailforum", "deliver", "--once"],
            env=dict(os.environ, **env),
            cwd=site.dir,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        for _ in range(2)
    ]
    outputs = [p.communicate(timeout=120) for p in procs]
    assert all(p.returncode == 0 for p in procs), outputs
    sent = [int(out.split()[1].rstrip(",")) for out, _ in outputs]
    assert sum(sent) == len(members)
    assert relay.copies() == {m: 1 for m in members}


def test_outbox_status_and_retry_from_the_command_line(site, relay, posted):
    relay.start()
    relay.rcpt[posted[0]] = "550 5.1.1 No such user here"
    relay.rcpt[posted[1]] = "450 4.2.1 Mailbox busy"
    deliver(site.config, site.db)
    status = site.cli("outbox", "status")
    assert status.returncode == 0, status.stderr
    lines = dict(line.split(":", 1) for line in status.stdout.splitlines())
    assert int(lines["pending"]) == 1 and int(lines["failed"]) == 1 and int(lines["sent"]) == len(posted) - 2
    assert lines["oldest pending"].strip().endswith("UTC)")
    failed = site.cli("outbox", "list", "--state", "failed").stdout
    assert posted[0] in failed and "550 5.1.1" in failed
    relay.rcpt.clear()
    assert "1 copy queued" in site.cli("outbox", "retry", "--all").stdout
    drain(site, relay)
    assert relay.copies() == {m: 1 for m in posted}
    assert "oldest pending: none" in site.cli("outbox", "status").stdout


def test_stopping_mid_delivery_gives_claimed_copies_back(site, relay):
    """F16: the worker stops after the copy in hand; the rest are due at once, not after the lease."""
    from tests.helpers import ServerThread

    site.create_list("dev")
    members = [f"s{i:02d}@example.com" for i in range(30)]
    site.add_members("dev", "ann@example.com", *members)
    relay.script["DATA"] = [Step(delay=0.05) for _ in members]
    relay.start()
    config = replace(site.config, relay=replace(site.config.relay, max_connections=1))
    running = ServerThread(config, ingest=False, process=False)
    running.start()
    try:
        store(site, message("Hello", "<t1@example.com>"))
        wait_for(lambda: relay.received(3))
    finally:
        running.stop()
    pending = [r for r in rows(site) if r.state == OutboxState.PENDING.value]
    assert pending and all(r.claimed_until is None for r in pending)
    relay.script.clear()
    drain(site, relay)
    assert relay.copies() == {m: 1 for m in members}


def test_a_broken_template_defers_copies_instead_of_dropping_them(site, relay, posted, tmp_path):
    """I4: a rendering bug is retried with backoff and shows in the outbox; nothing is lost."""
    (tmp_path / "tpl" / "notification").mkdir(parents=True)
    (tmp_path / "tpl" / "notification" / "post.txt.j2").write_text("{{ no_such_variable }}")
    relay.start()
    stats = deliver(site.config, site.db, templates=str(tmp_path / "tpl"))
    assert stats.sent == 0 and stats.deferred == len(posted)
    assert all(r.state == "pending" and "could not render" in r.last_reply for r in rows(site))
    drain(site, relay)
    assert relay.copies() == {m: 1 for m in posted}


@pytest.mark.parametrize("offered", [False, True])
def test_an_internationalised_address_needs_a_relay_with_smtputf8(site, offered) -> None:
    """RFC 6531: a member's non-ASCII address goes out with SMTPUTF8 when the relay offers it;
    otherwise that copy fails at once with the reason kept, and the others are sent."""
    site.create_list("dev")
    site.add_members("dev", "ann@example.com", "bob@example.com", "zoë@example.com")
    store(site, message("Hello", "<utf8@example.com>"))  # from ann: bob and zoë get copies
    with fake_relay(site.config.relay.port, smtputf8=offered) as fake:
        stats = deliver(site.config, site.db)
    by_address = {r.recipient: r for r in rows(site)}
    assert by_address["bob@example.com"].state == OutboxState.SENT.value
    if offered:
        assert stats.sent == 2 and fake.copies()["zoë@example.com"] == 1
        assert by_address["zoë@example.com"].state == OutboxState.SENT.value
    else:
        assert stats.sent == 1 and stats.failed == 1 and "zoë@example.com" not in fake.copies()
        assert by_address["zoë@example.com"].state == OutboxState.FAILED.value
        assert "SMTPUTF8" in by_address["zoë@example.com"].last_reply


def test_a_stalled_relay_connection_does_not_hold_up_the_others(site, relay, posted):
    """F24: each connection is sent on from its own thread, so one whose relay stops answering
    holds up only the copy in hand: the other connections deliver every other copy before it
    times out, and that copy is retried later, not lost."""
    relay.script["MAIL"] = [Step(delay=6)]  # the first envelope on any connection: no answer for 6 s
    relay.start()
    outcome: list[Any] = []
    worker = threading.Thread(
        target=lambda: outcome.append(
            deliver(site.config, site.db, relay={"timeout": 4.0, "max_connections": 3}, claim_batch=1)
        )
    )
    started = time.monotonic()
    worker.start()
    try:
        wait_for(lambda: relay.received(len(posted) - 1), timeout=15)
        others_done = time.monotonic() - started
    finally:
        worker.join(30)
    assert others_done < 4.0  # before the stalled connection's timeout
    [stats] = outcome
    assert (stats.sent, stats.deferred) == (len(posted) - 1, 1)
    [stalled] = [r for r in rows(site) if r.state == OutboxState.PENDING.value]
    assert stalled.attempts == 1 and stalled.claimed_until is None
    drain(site, relay)
    assert relay.copies() == {m: 1 for m in posted}
