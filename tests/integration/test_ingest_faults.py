"""Faults around the commit: busy, full and failing storage, our own bugs (RELIABILITY I2, F10–F12, F17).

Faults are injected for real where we can (a second connection holding the write
lock, SQLite's max_page_count for a full database) and by replacing the one call
that fails where we cannot (an EIO from the disk).
"""

from __future__ import annotations

import smtplib
import sqlite3
import threading
from dataclasses import replace

import pytest
from sqlalchemy import Engine, event, select, text

from mailforum.db.models import SpoolEntry, SpoolState
from tests.helpers import DOMAIN, RawClient, ServerThread, message, send, wait_for

LIST = f"dev@{DOMAIN}"


def fast_busy(site):
    return replace(site.config, database=replace(site.config.database, busy_timeout=0.5))


def test_database_lock_gives_451_then_recovers(site, backend):
    site.create_list("dev")
    site.add_members("dev", "ann@example.com")
    config = fast_busy(site)
    running = ServerThread(config, process=False)
    running.start()
    hold = hold_write_lock(site, backend)
    try:
        with pytest.raises(smtplib.SMTPDataError) as refused:
            send(config, message(message_id="<busy@example.com>"))
        assert refused.value.smtp_code == 451
        assert refused.value.smtp_error.startswith(b"4.3.0")
    finally:
        hold.rollback()
        hold.close()
    send(config, message(message_id="<busy@example.com>"))  # the client's retry succeeds
    with site.db.read_session() as session:
        assert session.scalar(select(text("count(*)")).select_from(SpoolEntry)) == 1
    running.stop()


def hold_write_lock(site, backend):
    """A second connection that holds the spool's write lock until it is rolled back (H4)."""
    hold = site.db.engine.connect()
    if backend == "sqlite":
        hold.exec_driver_sql("SELECT 1")  # our begin hook opens with BEGIN IMMEDIATE: the write lock
    else:
        hold.execute(text("LOCK TABLE spool IN EXCLUSIVE MODE"))
    return hold


def test_database_error_over_lmtp_answers_451_per_recipient(site, backend):
    # LMTP owes one reply per accepted recipient, for a failure too (B18, RFC 2033 §4.2).
    site.create_list("dev")
    site.create_list("other")
    config = fast_busy(site)
    running = ServerThread(config, process=False)
    running.start()
    hold = hold_write_lock(site, backend)
    try:
        client = RawClient(config.smtp.lmtp_port)
        client.cmd("LHLO x")
        client.cmd("MAIL FROM:<ann@example.com>")
        assert client.cmd(f"RCPT TO:<{LIST}>").startswith("250")
        assert client.cmd(f"RCPT TO:<nosuch@{DOMAIN}>").startswith("550 5.1.1")
        assert client.cmd(f"RCPT TO:<other@{DOMAIN}>").startswith("250")
        assert client.cmd("DATA").startswith("354")
        client.send(message(message_id="<lmtp-busy@example.com>") + b".\r\n")
        assert [client.reply()[:9], client.reply()[:9]] == ["451 4.3.0"] * 2
        assert client.cmd("NOOP").startswith("250")  # still in step: no third reply was owed
    finally:
        hold.rollback()
        hold.close()
        running.stop()


def test_full_disk_gives_452_and_recovers_without_restart(site, backend):
    if backend != "sqlite":
        pytest.skip("max_page_count is SQLite's; PostgreSQL disk-full is not simulated here")
    site.create_list("dev")
    site.add_members("dev", "ann@example.com")
    limit = {"pages": 0}

    def cap(dbapi_connection, _record):
        if limit["pages"]:
            dbapi_connection.execute(f"PRAGMA max_page_count={limit['pages']}")

    event.listen(Engine, "connect", cap)
    running = ServerThread(site.config, process=False)
    try:
        running.start()
        send(site.config, message(message_id="<before@example.com>"))
        with site.db.engine.connect() as conn:
            used = conn.exec_driver_sql("PRAGMA page_count").scalar()
        limit["pages"] = used + 2
        running.db.engine.dispose()  # new connections get the cap
        big = message(message_id="<big@example.com>", body="x" * 60_000 + "\n")
        with pytest.raises(smtplib.SMTPDataError) as refused:
            send(site.config, big)
        assert refused.value.smtp_code == 452
        assert refused.value.smtp_error.startswith(b"4.3.1")
        # Space is freed: the same server takes the message.
        limit["pages"] = 0
        running.db.engine.dispose()
        send(site.config, big)
    finally:
        event.remove(Engine, "connect", cap)
        running.stop()


def test_io_error_answers_451_and_stops_taking_mail(site):
    site.create_list("dev")
    running = ServerThread(site.config, process=False)
    running.start()
    writer = running.part("ingest").server.writer

    def failing_insert(messages):
        raise sqlite3.OperationalError("disk I/O error")

    writer._insert = failing_insert
    try:
        with pytest.raises(smtplib.SMTPDataError) as refused:
            send(site.config, message())
        assert refused.value.smtp_code == 451
        # No retry on the same handle (fsyncgate): new transactions are refused until restart.
        client = RawClient(site.config.smtp.port)
        client.cmd("EHLO x")
        assert client.cmd("MAIL FROM:<ann@example.com>").startswith("421 4.3.0")
        client.close()
    finally:
        running.stop()


def test_our_own_bug_answers_451_never_5xx(site):
    site.create_list("dev")
    running = ServerThread(site.config, process=False)
    running.start()
    directory = running.part("ingest").server.handler.directory

    def broken(name: str) -> bool:
        raise RuntimeError("a bug with internals in its message")

    directory.exists = broken
    try:
        client = RawClient(site.config.smtp.port)
        client.cmd("EHLO x")
        client.cmd("MAIL FROM:<ann@example.com>")
        reply = client.cmd(f"RCPT TO:<{LIST}>")
        assert reply.startswith("451 4.3.0")
        assert "RuntimeError" not in reply and "internals" not in reply
        assert client.cmd("NOOP").startswith("250")
        client.close()
    finally:
        running.stop()


def test_poison_message_is_parked_after_three_attempts_and_others_flow(site, monkeypatch):
    from mailforum.core import posting, routing

    site.create_list("dev")
    site.add_members("dev", "ann@example.com")
    config = replace(site.config, processing=replace(site.config.processing, retry_delay=0.01))
    original = posting.handle_post

    def explode_on_marker(delivery):
        if delivery.parsed.subject == "poison":
            raise ValueError("processing bug")
        return original(delivery)

    monkeypatch.setitem(routing.ROUTES, routing.Kind.POST, explode_on_marker)
    running = ServerThread(config)
    running.start()
    try:
        send(config, message("poison", "<poison@example.com>"))
        send(config, message("fine", "<fine@example.com>"))
        wait_for(lambda: "<fine@example.com>" in site.posts_by_id())

        def parked():
            with site.db.read_session() as session:
                entry = session.scalars(
                    select(SpoolEntry).where(SpoolEntry.state == SpoolState.FAILED.value)
                ).first()
                return entry

        entry = wait_for(parked, timeout=20)
        assert entry.attempts == 3
        assert "processing bug" in entry.error
        send(config, message("after", "<after@example.com>"))
        wait_for(lambda: "<after@example.com>" in site.posts_by_id())
    finally:
        running.stop()
    # The operator fixes the bug, then retries from the CLI.
    monkeypatch.setitem(routing.ROUTES, routing.Kind.POST, original)
    listed = site.cli("spool", "list")
    assert listed.returncode == 0 and "processing bug" in listed.stdout
    retried = site.cli("spool", "retry", "--all", "--now")
    assert retried.returncode == 0, retried.stderr
    assert "<poison@example.com>" in site.posts_by_id()


def test_unprocessable_mime_is_parked_at_once(site, server):
    site.create_list("dev", policy=__import__("mailforum.db.models", fromlist=["x"]).PostingPolicy.OPEN)
    # The nesting must be real MIME (the top-level Content-Type in the header): the
    # structure scan (mail.parse.check_structure) reads boundaries, not body text.
    nested = ""
    for depth in range(1, 150):
        nested += f"--b{depth - 1}\r\nContent-Type: multipart/mixed; boundary=b{depth}\r\n\r\n"
    extra = "MIME-Version: 1.0\r\nContent-Type: multipart/mixed; boundary=b0"
    send(site.config, message("deep", "<deep@example.com>", extra=extra, body=nested))

    def parked():
        with site.db.read_session() as session:
            return session.scalars(
                select(SpoolEntry).where(SpoolEntry.state == SpoolState.FAILED.value)
            ).first()

    entry = wait_for(parked)
    assert entry.attempts == 1
    assert "unprocessable" in entry.error


def test_concurrent_sessions_are_committed_together(site, server):
    site.create_list("dev")
    site.add_members("dev", *(f"s{i}@example.com" for i in range(8)))
    errors: list[BaseException] = []

    def burst(i: int) -> None:
        try:
            with smtplib.SMTP("127.0.0.1", site.config.smtp.port, timeout=30) as client:
                for n in range(15):
                    client.sendmail(
                        f"s{i}@example.com", [LIST], message(f"m {i} {n}", f"<c{i}-{n}@example.com>")
                    )
        except BaseException as exc:  # pragma: no cover - reported below
            errors.append(exc)

    threads = [threading.Thread(target=burst, args=(i,)) for i in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert not errors
    writer = server.part("ingest").server.writer
    assert writer.messages == 120
    assert writer.batches < 120  # some commits carried several sessions' messages
    wait_for(lambda: len(site.export()) == 120)


def test_postgresql_backend_killed_between_messages_is_survived(site, server, backend):
    if backend != "postgresql":
        pytest.skip("pg_terminate_backend is PostgreSQL's")
    site.create_list("dev")
    site.add_members("dev", "ann@example.com")
    send(site.config, message(message_id="<one@example.com>"))
    with site.db.engine.connect() as conn:
        conn.execute(
            text(
                "SELECT pg_terminate_backend(pid) FROM pg_stat_activity"
                " WHERE datname = current_database() AND pid <> pg_backend_pid()"
            )
        )
        conn.commit()
    send(site.config, message(message_id="<two@example.com>"))  # the pool reconnects: no 4xx needed
    wait_for(lambda: {"<one@example.com>", "<two@example.com>"} <= set(site.posts_by_id()))


def test_durability_is_checked_before_serving(db, backend):
    from mailforum.errors import DatabaseError

    db.check_durability()
    if backend == "postgresql":
        with db.engine.connect() as conn:
            conn.execute(text("SELECT set_config('synchronous_commit', 'off', false)"))
            name = conn.execute(text("SELECT current_database()")).scalar()
            conn.execute(text(f'ALTER DATABASE "{name}" SET synchronous_commit = off'))
            conn.commit()
        db.engine.dispose()
        with pytest.raises(DatabaseError, match="synchronous_commit"):
            db.check_durability()


def test_two_nodes_sharing_a_database_process_each_message_once(site):
    from mailforum.db import spool
    from mailforum.db.models import Post, utcnow
    from mailforum.runners.worker import SpoolProcessor

    site.create_list("dev")
    site.add_members("dev", "ann@example.com")
    with site.db.session() as session:
        spool.insert_batch(
            session,
            [
                spool.NewMessage(message(f"m{i}", f"<n{i}@example.com>"), "ann@example.com", (LIST,))
                for i in range(200)
            ],
            utcnow(),
        )
    nodes = [
        SpoolProcessor(
            site.db,
            replace(site.config, processing=replace(site.config.processing, node_name=name, batch_size=7)),
        )
        for name in ("node-a", "node-b")
    ]
    threads = [threading.Thread(target=node.drain) for node in nodes]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert sum(node.processed for node in nodes) >= 200
    with site.db.read_session() as session:
        ids = list(session.scalars(select(Post.message_id)))
        states = set(session.scalars(select(SpoolEntry.state)))
    assert len(ids) == len(set(ids)) == 200
    assert states == {"done"}


def test_a_failing_wake_up_does_not_stop_the_spool_writer(site):
    # on_commit runs in the writer's announcer thread, after the 250s: its failure loses a
    # wake-up (the processors poll), never a message, and the next commit is announced.
    import asyncio

    from mailforum.db import spool
    from mailforum.runners.ingest import SpoolWriter

    announced: list[int] = []

    def on_commit(ids: list[int]) -> None:
        announced.extend(ids)
        if len(announced) == len(ids):
            raise RuntimeError("the wake-up channel is down")

    writer = SpoolWriter(site.db, on_commit)
    writer.start()

    async def write(n: int) -> list[int]:
        batch = [spool.NewMessage(message(message_id=f"<w{n}.{i}@x>"), "a@x", (LIST,)) for i in range(3)]
        return list(await asyncio.gather(*(writer.write(m) for m in batch)))

    try:
        first = asyncio.run(write(1))
        wait_for(lambda: len(announced) == 3, timeout=10)
        second = asyncio.run(write(2))
        wait_for(lambda: len(announced) == 6, timeout=10)
    finally:
        writer.stop()
    assert sorted(announced) == sorted(first + second)
    with site.db.read_session() as session:
        assert len(session.scalars(select(SpoolEntry.id)).all()) == 6
