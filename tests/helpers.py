"""Test helpers: configs on free ports, a server in a thread, a raw SMTP client, a recording sink.

``RawClient`` is RELIABILITY's H1: it writes exact bytes (no smtplib normalisation),
can pipeline, trickle, half-close and reset. ``RecordingSink`` is the relay stand-in:
a real aiosmtpd server that records every transaction and can be told to answer
with scripted replies.
"""

from __future__ import annotations

import asyncio
import json
import os
import smtplib
import socket
import struct
import subprocess
import sys
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any, TypeVar

from mailforum.config import Config, DatabaseConfig, SiteConfig, SmtpConfig, WebConfig
from mailforum.core import archive, lists
from mailforum.db import spool
from mailforum.db.models import DeliveryMode, PostingPolicy, utcnow
from mailforum.db.session import Database

DOMAIN = "lists.example.org"
T = TypeVar("T")


def free_ports(n: int) -> list[int]:
    socks = []
    try:
        for _ in range(n):
            s = socket.socket()
            s.bind(("127.0.0.1", 0))
            socks.append(s)
        return [s.getsockname()[1] for s in socks]
    finally:
        for s in socks:
            s.close()


def make_config(db_url: str, **smtp: Any) -> Config:
    smtp_port, lmtp_port, web_port, relay_port = free_ports(4)
    from mailforum.config import OutboundConfig, RelayConfig

    return Config(
        database=DatabaseConfig(url=db_url),
        smtp=replace(SmtpConfig(host="127.0.0.1", port=smtp_port, lmtp_port=lmtp_port), **smtp),
        relay=RelayConfig(host="127.0.0.1", port=relay_port, timeout=5.0),
        # Delivery in tests: look at the outbox often, retry within a second, short leases.
        outbound=OutboundConfig(poll_interval=0.05, retry_base=0.3, retry_max=1.0, lease=5.0),
        site=SiteConfig(
            domain=DOMAIN, base_url=f"http://127.0.0.1:{web_port}", secret_key="test-secret-0123456789"
        ),
        web=WebConfig(host="127.0.0.1", port=web_port),
        source="(test)",
    )


def config_toml(config: Config) -> str:
    """The config as a TOML file, for subprocesses."""
    import dataclasses

    lines = []
    for section in dataclasses.fields(config):
        if section.name == "source":
            continue
        lines.append(f"[{section.name}]")
        for key, value in dataclasses.asdict(getattr(config, section.name)).items():
            lines.append(f"{key} = {json.dumps(value)}")
        lines.append("")
    return "\n".join(lines)


def wait_for(predicate: Callable[[], T], timeout: float = 20.0, interval: float = 0.05) -> T:
    """Poll until ``predicate()`` is truthy; returns it, or fails the test after ``timeout``."""
    deadline = time.monotonic() + timeout
    while True:
        value = predicate()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"condition not met within {timeout} s (last value {value!r})")
        time.sleep(interval)


def message(
    subject: str = "Hello",
    message_id: str | None = "<m1@example.com>",
    sender: str = "Ann Author <ann@example.com>",
    to: str = f"dev@{DOMAIN}",
    body: str = "Hello everyone.\n",
    extra: str = "",
) -> bytes:
    """A small RFC 5322 message with CRLF line ends; ``extra`` is more header lines."""
    head = f"From: {sender}\r\nTo: {to}\r\nSubject: {subject}\r\n"
    if message_id:
        head += f"Message-ID: {message_id}\r\n"
    head += "Date: Thu, 26 Nov 2026 10:00:00 +0000\r\n"
    for line in extra.splitlines():
        if line.strip():
            head += line.rstrip("\r") + "\r\n"
    return (head + "\r\n" + body.replace("\r\n", "\n").replace("\n", "\r\n")).encode("utf-8")


def send(
    config: Config,
    raw: bytes,
    rcpts: list[str] | None = None,
    mail_from: str = "ann@example.com",
    lmtp: bool = False,
) -> dict[str, Any]:
    """Send over real SMTP (or LMTP); returns smtplib's refused-recipients dict."""
    cls = smtplib.LMTP if lmtp else smtplib.SMTP
    port = config.smtp.lmtp_port if lmtp else config.smtp.port
    with cls("127.0.0.1", port, timeout=30) as client:
        return client.sendmail(mail_from, rcpts or [f"dev@{DOMAIN}"], raw)


class Site:
    """A configured installation: direct access to the database and the CLI."""

    def __init__(self, config: Config, tmp_path: Path) -> None:
        self.config = config
        self.dir = tmp_path
        self.config_file = tmp_path / "mailforum.toml"
        self.config_file.write_text(config_toml(config))
        self.db = Database(config.database.url)

    def create_list(
        self, name: str = "dev", policy: PostingPolicy = PostingPolicy.MEMBERS, **kw: str
    ) -> None:
        with self.db.session() as session:
            lists.create_list(session, name, policy=policy, **kw)

    def add_members(self, list_name: str, *addresses: str, mode: DeliveryMode = DeliveryMode.ALL) -> None:
        with self.db.session() as session:
            mlist = lists.get_list(session, list_name)
            checked = [lists.check_address(a) for a in addresses]
            lists.add_members(session, mlist, checked, mode, utcnow())

    def export(self, list_name: str = "dev") -> list[dict[str, Any]]:
        with self.db.read_session() as session:
            mlist = lists.get_list(session, list_name)
        return [json.loads(line) for line in archive.export_jsonl(self.db, mlist)]

    def posts_by_id(self, list_name: str = "dev") -> dict[str, dict[str, Any]]:
        return {p["message_id"]: p for p in self.export(list_name)}

    def outcome_of(self, message_id: str) -> tuple[str, str]:
        """The state and outcome of the processed spool entry whose Message-ID is ``message_id``."""
        header = f"Message-ID: {message_id}\r\n".encode()

        def find() -> tuple[str, str] | None:
            with self.db.read_session() as session:
                for entry in spool.newest(session, None, 1000):
                    if entry.state != "new" and header in bytes(entry.raw or b""):
                        return entry.state, entry.outcome or ""
            return None

        return wait_for(find)

    def cli(
        self, *args: str, input: bytes | None = None, timeout: float = 120
    ) -> subprocess.CompletedProcess[str]:
        env = dict(os.environ, MAILFORUM_CONFIG=str(self.config_file))
        return subprocess.run(
            [sys.executable, "-m", "mailforum", *args],
            env=env,
            cwd=self.dir,
            capture_output=True,
            text=True,
            timeout=timeout,
            input=input.decode() if input else None,
        )

    def popen_server(
        self, *args: str, env: dict[str, str] | None = None, single: bool = True
    ) -> subprocess.Popen[bytes]:
        """``mailforum serve`` as a real process (for kill -9 and SIGTERM tests); ``single``: in
        one process, so a crash point (MAILFORUM_CRASH_AT) ends ``serve`` itself."""
        full = dict(os.environ, MAILFORUM_CONFIG=str(self.config_file), **(env or {}))
        mode = ["--single-process"] if single else []
        with open(self.dir / "serve.log", "ab") as log:  # the child keeps its own descriptor
            proc = subprocess.Popen(
                [sys.executable, "-m", "mailforum", "serve", *mode, *args],
                env=full,
                cwd=self.dir,
                stdout=log,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )
        wait_for(lambda: _port_open(self.config.smtp.port) or proc.poll() is not None, 30)
        if proc.poll() is not None:
            raise AssertionError("serve exited: " + (self.dir / "serve.log").read_text()[-2000:])
        return proc


def _port_open(port: int) -> bool:
    try:
        with socket.create_connection(("127.0.0.1", port), 0.2):
            return True
    except OSError:
        return False


class ServerThread:
    """``mailforum serve``'s parts running in a background thread's event loop."""

    def __init__(self, config: Config, **switches: bool) -> None:
        from mailforum.app import Switches

        self.config = config
        self.switches = Switches(**switches)
        self.loop = asyncio.new_event_loop()
        self.db = Database(config.database.url, config.database.busy_timeout)
        self.parts: list[Any] = []
        self._thread = threading.Thread(target=self.loop.run_forever, daemon=True)

    def start(self) -> None:
        from mailforum.app import build_parts

        self._thread.start()
        self.parts = build_parts(self.config, self.db, self.switches)
        for part in self.parts:
            asyncio.run_coroutine_threadsafe(part.start(), self.loop).result(30)

    def part(self, name: str) -> Any:
        return next(p for p in self.parts if p.name == name)

    def stop(self) -> None:
        for part in reversed(self.parts):
            asyncio.run_coroutine_threadsafe(part.stop(), self.loop).result(60)
        self.loop.call_soon_threadsafe(self.loop.stop)
        self._thread.join(10)
        self.loop.close()
        self.db.dispose()


class RawClient:
    """A byte-exact SMTP/LMTP client (RELIABILITY H1)."""

    def __init__(self, port: int, timeout: float = 10.0) -> None:
        self.sock = socket.create_connection(("127.0.0.1", port), timeout)
        self.buffer = b""
        self.banner = self.reply()

    def send(self, data: bytes) -> None:
        self.sock.sendall(data)

    def trickle(self, data: bytes, delay: float) -> None:
        for i in range(len(data)):
            self.sock.sendall(data[i : i + 1])
            time.sleep(delay)

    def line(self) -> bytes:
        while b"\r\n" not in self.buffer:
            chunk = self.sock.recv(65536)
            if not chunk:
                raise ConnectionError(f"closed by server; buffered {self.buffer!r}")
            self.buffer += chunk
        line, _, self.buffer = self.buffer.partition(b"\r\n")
        return line

    def reply(self) -> str:
        """One whole reply (all lines of a multi-line reply), as text."""
        lines = [self.line()]
        while len(lines[-1]) > 3 and lines[-1][3:4] == b"-":
            lines.append(self.line())
        return "\n".join(x.decode("utf-8", "replace") for x in lines)

    def cmd(self, text: str | bytes) -> str:
        self.send(text if isinstance(text, bytes) else text.encode() + b"\r\n")
        return self.reply()

    def closed(self, timeout: float = 5.0) -> bool:
        """True when the server closes the connection within ``timeout`` (data read is kept)."""
        self.sock.settimeout(timeout)
        try:
            while True:
                chunk = self.sock.recv(65536)
                if not chunk:
                    return True
                self.buffer += chunk
        except TimeoutError:
            return False
        except ConnectionResetError:
            return True

    def reset(self) -> None:
        """Abort with a TCP RST (SO_LINGER 0)."""
        self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
        self.sock.close()

    def close(self) -> None:
        self.sock.close()

    def __del__(self) -> None:  # tests may drop a client mid-session; don't leak the socket
        self.sock.close()


@dataclass
class Transaction:
    mail_from: str
    rcpt_tos: list[str]
    data: bytes


@dataclass
class RecordingSink:
    """A relay stand-in: a real aiosmtpd server that records accepted transactions.

    ``replies`` is a list of scripted DATA replies used in order (then ``default``).
    """

    port: int = 0
    default: str = "250 2.0.0 OK"
    replies: list[str] = field(default_factory=list)
    transactions: list[Transaction] = field(default_factory=list)

    def start(self) -> None:
        from aiosmtpd.controller import Controller

        sink = self

        class Handler:
            async def handle_DATA(self, server: Any, session: Any, envelope: Any) -> str:
                reply = sink.replies.pop(0) if sink.replies else sink.default
                if reply.startswith("2"):
                    sink.transactions.append(
                        Transaction(envelope.mail_from, list(envelope.rcpt_tos), envelope.original_content)
                    )
                return reply

        self.port = self.port or free_ports(1)[0]
        self._controller = Controller(Handler(), hostname="127.0.0.1", port=self.port)
        self._controller.start()

    def stop(self) -> None:
        self._controller.stop()
