"""Wake-ups across processes and nodes: "the spool (or the outbox) has new work".

Processes coordinate only through the database (docs/architecture.md); a wake-up only
shortens the wait of an idle worker, which otherwise looks again after its poll
interval. So a lost or extra wake-up costs latency, never a message, and every error
here is logged and survived.

- PostgreSQL: ``NOTIFY`` on a channel per topic after the commit, ``LISTEN`` on a
  connection of its own in a daemon thread; it reaches every process of every node
  sharing the database.
- SQLite (one machine): each listener binds a Unix datagram socket in a folder named
  after the database file; a sender writes one byte to every socket there (and
  removes those whose process is gone). A full socket buffer means a wake-up is
  already pending, so it is dropped.
"""

from __future__ import annotations

import contextlib
import hashlib
import itertools
import logging
import os
import socket
import tempfile
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Protocol

from sqlalchemy.engine import make_url

log = logging.getLogger(__name__)

SPOOL = "spool"  # ingest committed messages: processors look
OUTBOX = "outbox"  # processing wrote copies: delivery looks
TOPICS = (SPOOL, OUTBOX)


class Channel(Protocol):
    def send(self, topic: str) -> None: ...

    def listen(self, topic: str, callback: Callable[[], None]) -> None: ...

    def close(self) -> None: ...


class NoChannel:
    """For databases only one process can see (SQLite in memory): nothing to wake."""

    def send(self, topic: str) -> None:
        pass

    def listen(self, topic: str, callback: Callable[[], None]) -> None:
        pass

    def close(self) -> None:
        pass


def open_channel(database_url: str) -> Channel:
    url = make_url(database_url)
    backend = url.get_backend_name()
    if backend == "postgresql":
        dsn = url.set(drivername="postgresql").render_as_string(hide_password=False)
        return PostgresChannel(dsn)
    if backend == "sqlite" and url.database and url.database != ":memory:":
        return SocketChannel(socket_folder(Path(url.database)))
    return NoChannel()


def _check(topic: str) -> str:
    if topic not in TOPICS:
        raise ValueError(f"unknown wake-up topic {topic!r}")
    return f"mailforum_{topic}"


class PostgresChannel:
    def __init__(self, dsn: str) -> None:
        self._dsn = dsn
        self._lock = threading.Lock()
        self._sender: object | None = None  # a psycopg connection, opened on first send
        self._closed = threading.Event()
        self._threads: list[threading.Thread] = []

    def send(self, topic: str) -> None:
        import psycopg

        channel = _check(topic)
        with self._lock:
            for _ in range(2):  # a connection the server dropped is replaced once
                try:
                    if self._sender is None:
                        self._sender = psycopg.connect(self._dsn, autocommit=True, connect_timeout=5)
                    self._sender.execute(f"NOTIFY {channel}")  # type: ignore[attr-defined]
                    return
                except psycopg.Error as exc:
                    log.debug("wake-up %s not sent: %s", topic, exc)
                    self._drop_sender()

    def _drop_sender(self) -> None:
        with contextlib.suppress(Exception):
            self._sender.close()  # type: ignore[union-attr]
        self._sender = None

    def listen(self, topic: str, callback: Callable[[], None]) -> None:
        thread = threading.Thread(
            target=self._listen, args=(_check(topic), callback), name=f"wake-{topic}", daemon=True
        )
        self._threads.append(thread)
        thread.start()

    def _listen(self, channel: str, callback: Callable[[], None]) -> None:
        import psycopg

        failures = 0
        while not self._closed.is_set():
            try:
                with psycopg.connect(self._dsn, autocommit=True, connect_timeout=5) as conn:
                    conn.execute(f"LISTEN {channel}")
                    callback()  # anything committed while no one listened
                    failures = 0
                    while not self._closed.is_set():
                        for _ in conn.notifies(timeout=1.0):
                            callback()
            except Exception as exc:
                failures += 1
                log.warning("wake-ups on %s lost (%s); polling until the listener is back", channel, exc)
                self._closed.wait(min(30.0, 0.5 * 2**failures))

    def close(self) -> None:
        self._closed.set()
        with self._lock:
            self._drop_sender()
        for thread in self._threads:
            thread.join(timeout=3)


def socket_folder(database: Path) -> Path:
    """A short folder per database file (Unix socket paths are limited to 107 bytes)."""
    key = hashlib.sha256(str(database.resolve()).encode()).hexdigest()[:16]
    return Path(tempfile.gettempdir()) / f"mailforum-{os.getuid()}-{key}"


# Seconds a sender trusts its last scan of the folder: a send per spool commit scanned it
# each time (bench/ingest.py). A listener that starts meanwhile misses at most this long of
# wake-ups, which its poll covers; a listener that is gone is dropped at the first send.
RESCAN = 1.0


class SocketChannel:
    _serial = itertools.count()

    def __init__(self, folder: Path) -> None:
        self.folder = folder
        self._send_lock = threading.Lock()
        self._known: dict[str, tuple[float, list[str]]] = {}  # topic -> (scanned at, socket paths)
        self._sockets: list[tuple[socket.socket, Path]] = []
        self._threads: list[threading.Thread] = []
        self._closed = threading.Event()

    def send(self, topic: str) -> None:
        _check(topic)
        with self._send_lock:
            paths = self._listeners(topic)
        if not paths:
            return
        with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM) as sock:
            sock.setblocking(False)
            for path in paths:
                try:
                    sock.sendto(b"!", path)
                except BlockingIOError:
                    pass  # its buffer is full of wake-ups it has not read yet
                except (ConnectionRefusedError, FileNotFoundError):
                    with contextlib.suppress(OSError):
                        os.unlink(path)  # its process is gone
                    with self._send_lock:
                        self._known.pop(topic, None)
                except OSError as exc:
                    log.debug("wake-up %s to %s not sent: %s", topic, path, exc)

    def _listeners(self, topic: str) -> list[str]:
        """The sockets listening for ``topic``, from a scan of the folder at most ``RESCAN`` s old."""
        now = time.monotonic()
        known = self._known.get(topic)
        if known is not None and now - known[0] < RESCAN:
            return known[1]
        try:
            paths = [str(path) for path in self.folder.glob(f"{topic}.*")]
        except OSError:
            return []
        self._known[topic] = (now, paths)
        return paths

    def listen(self, topic: str, callback: Callable[[], None]) -> None:
        _check(topic)
        self.folder.mkdir(mode=0o700, exist_ok=True)
        path = self.folder / f"{topic}.{os.getpid()}.{next(self._serial)}"
        with contextlib.suppress(FileNotFoundError):
            path.unlink()
        sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
        sock.bind(str(path))
        sock.settimeout(1.0)
        self._sockets.append((sock, path))
        thread = threading.Thread(
            target=self._listen, args=(sock, callback), name=f"wake-{topic}", daemon=True
        )
        self._threads.append(thread)
        thread.start()

    def _listen(self, sock: socket.socket, callback: Callable[[], None]) -> None:
        while not self._closed.is_set():
            try:
                sock.recv(64)
            except TimeoutError:
                continue
            except OSError:
                return  # closed
            callback()

    def close(self) -> None:
        self._closed.set()
        for thread in self._threads:
            thread.join(timeout=3)
        for sock, path in self._sockets:
            sock.close()
            with contextlib.suppress(OSError):
                path.unlink()
