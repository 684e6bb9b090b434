"""Wake-ups between processes (runners/wakeup.py): over Unix sockets for SQLite, NOTIFY for PostgreSQL."""

from __future__ import annotations

import socket
import threading

import pytest

from mailforum.runners import wakeup


def _roundtrip(channel: wakeup.Channel, other: wakeup.Channel) -> None:
    spool, outbox = threading.Event(), threading.Event()
    channel.listen(wakeup.SPOOL, spool.set)
    channel.listen(wakeup.OUTBOX, outbox.set)
    try:
        other.send(wakeup.SPOOL)
        assert spool.wait(10)
        spool.clear()
        other.send(wakeup.OUTBOX)
        assert outbox.wait(10)
    finally:
        channel.close()
        other.close()


def test_sqlite_wakes_listeners_of_the_same_database_file(tmp_path) -> None:
    url = f"sqlite:///{tmp_path / 'a.db'}"
    _roundtrip(wakeup.open_channel(url), wakeup.open_channel(url))


def test_sqlite_does_not_wake_listeners_of_another_database(tmp_path) -> None:
    mine = wakeup.open_channel(f"sqlite:///{tmp_path / 'a.db'}")
    woken = threading.Event()
    mine.listen(wakeup.SPOOL, woken.set)
    try:
        wakeup.open_channel(f"sqlite:///{tmp_path / 'b.db'}").send(wakeup.SPOOL)
        assert not woken.wait(0.3)
    finally:
        mine.close()


def test_sqlite_sender_forgets_listeners_that_are_gone(tmp_path) -> None:
    folder = wakeup.socket_folder(tmp_path / "a.db")
    folder.mkdir(mode=0o700)
    path = folder / "spool.99999.0"
    with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM) as sock:
        sock.bind(str(path))  # then closed: as if its process died without cleaning up
    assert path.exists()
    wakeup.open_channel(f"sqlite:///{tmp_path / 'a.db'}").send(wakeup.SPOOL)
    assert not path.exists()


def test_unknown_topic_is_refused(tmp_path) -> None:
    with pytest.raises(ValueError):
        wakeup.open_channel(f"sqlite:///{tmp_path / 'a.db'}").send("nonsense")


def test_memory_database_has_nothing_to_wake() -> None:
    assert isinstance(wakeup.open_channel("sqlite://"), wakeup.NoChannel)


def test_postgresql_notify_reaches_listen(db_url) -> None:
    if not db_url.startswith("postgresql"):
        pytest.skip("NOTIFY is PostgreSQL's")
    _roundtrip(wakeup.open_channel(db_url), wakeup.open_channel(db_url))


def test_sqlite_sender_finds_a_listener_that_started_after_its_last_scan(tmp_path, monkeypatch) -> None:
    # A sender scans the folder at most every RESCAN seconds (a scan per spool commit cost
    # ingest CPU); a listener that starts later is found at the next scan.
    url = f"sqlite:///{tmp_path / 'a.db'}"
    sender, late = wakeup.open_channel(url), wakeup.open_channel(url)
    assert isinstance(sender, wakeup.SocketChannel)
    woken = threading.Event()
    try:
        sender.send(wakeup.SPOOL)  # nobody listens yet: the empty scan is remembered
        late.listen(wakeup.SPOOL, woken.set)
        assert sender._listeners(wakeup.SPOOL) == []
        monkeypatch.setattr(wakeup, "RESCAN", 0.0)
        sender.send(wakeup.SPOOL)
        assert woken.wait(10)
    finally:
        late.close()
        sender.close()
