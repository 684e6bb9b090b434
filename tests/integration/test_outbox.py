"""The outbox table on both databases: one row per (post, member, kind), leases, backoff, lifetime.

A controllable clock (plain datetimes passed in) drives the retry schedule, so five
days of a dead relay take milliseconds (RELIABILITY F6, I3, I5).
"""

from __future__ import annotations

import datetime as dt
import threading

import pytest
import sqlalchemy.exc
from sqlalchemy import event, func, select

from mailforum.core import topics
from mailforum.core.copies import Composer
from mailforum.core.lists import get_list
from mailforum.db import outbox
from mailforum.db.models import OutboxEntry, OutboxKind, OutboxState, utcnow
from mailforum.render import Renderer
from tests.helpers import message
from tests.integration.outbound_helpers import rows, store

LEASE = dt.timedelta(seconds=60)


@pytest.fixture
def queued(site) -> list[OutboxEntry]:
    site.create_list("dev")
    site.add_members("dev", "ann@example.com", "bob@example.com", "carol@example.com")
    store(site, message("Hello", "<t1@example.com>"))
    return rows(site)


def test_one_row_per_post_member_and_kind_even_when_the_message_comes_twice(site, queued):
    """I3: a redelivered message is a duplicate post, so it writes no second notification."""
    store(site, message("Hello", "<t1@example.com>"))
    assert len(rows(site)) == 2
    with pytest.raises(sqlalchemy.exc.IntegrityError), site.db.session() as session:
        row = queued[0]
        outbox.enqueue(
            session,
            [outbox.NewCopy(row.list_id, row.recipient, row.message_id, row.post_id, row.member_id)],
            utcnow(),
        )
    assert {r.message_id for r in queued} == {"<t1@example.com>"}  # every copy: the post's own id
    assert {r.kind for r in queued} == {OutboxKind.POST.value}


def test_a_claim_is_a_lease(site, queued):
    now = utcnow()
    with site.db.session() as session:
        first = outbox.claim(session, now, 10, LEASE, "w1")
    with site.db.session() as session:
        assert outbox.claim(session, now + dt.timedelta(seconds=59), 10, LEASE, "w2") == []
    with site.db.session() as session:  # the first worker died: its rows come back after the lease
        again = outbox.claim(session, now + dt.timedelta(seconds=61), 10, LEASE, "w2")
    assert [c.id for c in again] == [c.id for c in first] and all(c.attempts == 2 for c in again)


def test_a_claimed_row_is_due_again_at_the_lease_end_and_a_released_one_at_once(site, queued):
    """The claim moves ``next_attempt_at`` to the lease's end (what ``outbox list`` shows, and
    the next claim's index range skips the row); ``release`` makes it due at once, the
    attempt not counted."""
    now = utcnow()
    with site.db.session() as session:
        claimed = outbox.claim(session, now, 2, LEASE, "w1")
    by_id = {r.id: r for r in rows(site)}
    assert len(claimed) == 2
    assert all(by_id[c.id].next_attempt_at == now + LEASE for c in claimed)
    assert all(by_id[c.id].claimed_until == now + LEASE for c in claimed)
    later = now + dt.timedelta(seconds=5)
    with site.db.session() as session:
        outbox.release(session, [c.id for c in claimed], later)
    by_id = {r.id: r for r in rows(site)}
    assert all(by_id[c.id].next_attempt_at == later and by_id[c.id].claimed_until is None for c in claimed)
    assert all(by_id[c.id].attempts == 0 for c in claimed)
    with site.db.session() as session:
        again = outbox.claim(session, later, 10, LEASE, "w2")
    assert {c.id for c in again} == {r.id for r in queued}


def test_backoff_doubles_from_60s_to_4000s_and_gives_up_after_5_days(site, queued):
    """F6 and I5 on a fake clock: retries at 60, 120, 240 … 4000 s; failed only at 5 days."""
    backoff = outbox.Backoff()
    created = queued[0].created_at
    now = created
    waits = []
    while True:
        with site.db.session() as session:
            claimed = {c.id: c for c in outbox.claim(session, now, 10, LEASE, "w")}
            if not claimed:
                break
            results = [outbox.Result(i, False, "451 4.3.0 try later") for i in claimed]
            outbox.record(session, results, claimed, now, backoff)
        with site.db.read_session() as session:
            row = session.get(OutboxEntry, queued[0].id)
            assert row is not None
            if row.state == OutboxState.FAILED.value:
                assert now - created >= dt.timedelta(days=5)
                assert row.last_reply.startswith("gave up after 5 days") and "451" in row.last_reply
                break
            assert row.state == OutboxState.PENDING.value
            waits.append((row.next_attempt_at - now).total_seconds())
            with site.db.session() as s2:  # nothing is due a moment before the retry
                assert outbox.claim(s2, row.next_attempt_at - dt.timedelta(seconds=1), 10, LEASE, "x") == []
            now = row.next_attempt_at
    assert waits[:7] == [60, 120, 240, 480, 960, 1920, 3840]
    assert set(waits[7:-1]) == {4000}
    assert now - created == dt.timedelta(days=5)


def test_5xx_is_final_and_never_claimed_again(site, queued):
    now = utcnow()
    with site.db.session() as session:
        claimed = {c.id: c for c in outbox.claim(session, now, 10, LEASE, "w")}
        results = [outbox.Result(i, i != queued[0].id, "550 5.1.1 no", permanent=True) for i in claimed]
        outbox.record(session, results, claimed, now, outbox.Backoff())
    with site.db.session() as session:
        assert outbox.claim(session, now + dt.timedelta(days=1), 10, LEASE, "w") == []
        status = outbox.status(session, now)
    assert status.counts == {"failed": 1, "sent": 1}


def test_a_copy_held_when_its_post_is_removed_goes_no_further_than_the_try_in_hand(site):
    """RELIABILITY F26: a removal drops the copies not sent yet but leaves those a worker
    holds; one of those that the relay does not take is then dropped, not retried."""
    site.create_list("dev")
    site.add_members("dev", "ann@example.com", "bob@example.com", "carol@example.com", "dan@example.com")
    store(site, message("Hello", "<t1@example.com>"))
    now = utcnow()
    with site.db.session() as session:
        claimed = {c.id: c for c in outbox.claim(session, now, 10, LEASE, "w")}
    sent, deferred, refused = sorted(claimed)
    with site.db.session() as session:
        post_id = claimed[sent].post_id
        assert post_id is not None
        topics.remove_post(session, get_list(session, "dev"), post_id, "spam", topics.Actor(), now)
    assert {r.id for r in rows(site)} == set(claimed)  # held: not the removal's to drop
    with site.db.session() as session:
        results = [
            outbox.Result(sent, True, "250 2.0.0 OK"),
            outbox.Result(deferred, False, "451 4.3.0 Try again later"),
            outbox.Result(refused, False, "550 5.1.1 No such user", permanent=True),
        ]
        outbox.record(session, results, claimed, now, outbox.Backoff())
    assert [(r.id, r.state) for r in rows(site)] == [(sent, OutboxState.SENT.value)]


def test_a_held_copy_given_back_after_its_post_was_removed_is_never_composed(site, queued):
    """RELIABILITY F26: given back unsent (a worker stopping), the copy is claimed again by a
    worker that has not rendered the post: the composer refuses a removed post, and the
    refusal drops the row."""
    now = utcnow()
    with site.db.session() as session:
        claimed = outbox.claim(session, now, 10, LEASE, "w1")
        post_id = claimed[0].post_id
        assert post_id is not None
        topics.remove_post(session, get_list(session, "dev"), post_id, "spam", topics.Actor(), now)
        outbox.release(session, [c.id for c in claimed], now)
    with site.db.session() as session:
        again = {c.id: c for c in outbox.claim(session, now, 10, LEASE, "w2")}
    assert set(again) == {c.id for c in claimed}
    composer = Composer(site.config, Renderer())
    with site.db.read_session() as session:
        composer.load(session, list(again.values()))
    built = [composer.compose(row, now) for row in again.values()]
    assert built == ["the post was removed or no longer exists"] * len(again)
    with site.db.session() as session:
        results = [outbox.Result(i, False, str(b), permanent=True) for i, b in zip(again, built, strict=True)]
        outbox.record(session, results, again, now, outbox.Backoff())
    assert rows(site) == []


def test_concurrent_claims_never_share_a_row(site, backend):
    """Two workers claiming at once (SKIP LOCKED on PostgreSQL, the writer lock on SQLite)."""
    site.create_list("dev")
    site.add_members("dev", "ann@example.com", *(f"u{i}@example.com" for i in range(200)))
    store(site, message("Hello", "<t1@example.com>"))
    got: dict[str, list[int]] = {"a": [], "b": []}
    now = utcnow()

    def worker(name: str) -> None:
        while True:
            with site.db.session() as session:
                claimed = outbox.claim(session, now, 7, LEASE, name)
            if not claimed:
                return
            got[name] += [c.id for c in claimed]

    threads = [threading.Thread(target=worker, args=(n,)) for n in got]
    for t in threads:
        t.start()
    for t in threads:
        t.join(60)
    assert not set(got["a"]) & set(got["b"])
    assert len(got["a"]) + len(got["b"]) == 200


def test_the_claim_query_uses_the_state_index(site, backend, queued):
    """L9: with millions of sent rows the claim must not scan the table."""
    if backend != "sqlite":
        pytest.skip("the plan check reads SQLite's EXPLAIN QUERY PLAN")
    with site.db.engine.connect() as conn:
        plan = conn.exec_driver_sql(
            "EXPLAIN QUERY PLAN SELECT id FROM outbox WHERE state = 'pending' AND next_attempt_at <= ? "
            "ORDER BY next_attempt_at, id LIMIT 100",
            ("2030-01-01",),
        ).all()
    assert any("ix_outbox_state_next_attempt_at" in str(row) for row in plan), plan
    with site.db.read_session() as session:
        assert session.scalar(select(func.count()).select_from(OutboxEntry)) == 2


def test_the_fan_out_cross_post_check_uses_the_message_id_index(site, backend, queued):
    """L9: a post's fan-out looks up its own Message-ID, never every earlier copy to each member.

    With a correlated check and only ``message_id`` indexed, the planner walked the
    ``(kind, recipient)`` index, so each post cost more as the archive grew.
    """
    if backend != "sqlite":
        pytest.skip("the plan check reads SQLite's EXPLAIN QUERY PLAN")
    seen: list[tuple[str, object]] = []

    def capture(_conn, _cursor, statement, parameters, _context, _many) -> None:
        seen.append((statement, parameters))

    event.listen(site.db.engine, "before_cursor_execute", capture)
    try:
        with site.db.session() as session:
            written = outbox.enqueue_members(
                session,
                list_id=queued[0].list_id,
                post_id=queued[0].post_id,
                message_id="<other@example.com>",
                member_ids=[row.member_id for row in queued],
                now=utcnow(),
                kind=OutboxKind.DIGEST,
                once_per_message=True,
            )
            assert written == len(queued)
            session.rollback()
    finally:
        event.remove(site.db.engine, "before_cursor_execute", capture)
    statement, parameters = next((s, p) for s, p in seen if s.startswith("INSERT INTO outbox"))
    with site.db.engine.connect() as conn:
        plan = conn.exec_driver_sql("EXPLAIN QUERY PLAN " + statement, parameters).all()
    assert any("ix_outbox_message_id_kind" in str(row) for row in plan), plan
    assert not any("ix_outbox_kind_recipient" in str(row) for row in plan), plan


def test_purge_deletes_only_long_sent_copies(site, queued):
    now = utcnow()
    old, recent = queued[0].id, queued[1].id
    with site.db.session() as session:
        session.get(OutboxEntry, old).state = OutboxState.SENT.value
        session.get(OutboxEntry, old).sent_at = now - dt.timedelta(days=40)
        session.get(OutboxEntry, recent).state = OutboxState.SENT.value
        session.get(OutboxEntry, recent).sent_at = now - dt.timedelta(days=2)
    result = site.cli("outbox", "purge", "--older-than", "30")
    assert result.returncode == 0, result.stderr
    assert "deleted 1 sent copy" in result.stdout
    assert {r.id for r in rows(site)} == {recent}
    assert site.cli("outbox", "purge", "--older-than", "1").returncode == 2  # below the floor
