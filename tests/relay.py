"""A scriptable fake relay (RELIABILITY H2), modelled on Postfix's ``smtp-sink`` fault flags.

A real aiosmtpd server on loopback. What it answers is scripted per command, through
aiosmtpd's handler hooks (STYLE 14: inject errors in hooks, not by overriding the
protocol):

    relay.script["DATA"] = ["451 4.3.0 later", "250 2.0.0 OK"]   # used in order, then default
    relay.script["DATA"] = [Step(delay=3)]                      # smtp-sink -w: tarpit
    relay.script["DATA"] = [Step(action="drop")]                # read the message, close, no reply
    relay.script["DATA"] = [Step(action="hangup")]              # 250, then 421 and close (a reload)
    relay.rcpt["bob@example.com"] = "550 5.1.1 No such user"    # per-recipient, until changed
    relay.greeting = "421 4.3.2 Busy"                          # smtp-sink -Q-ish: refuse on connect
    relay.silent = True                                        # accept, never greet (a blackhole)
    FakeRelay(port, pipelining=False)                          # no PIPELINING: one command a trip
    relay.stop(); relay.start()                                # connection refused, then back
    relay.restart()                                            # open sessions closed, back at once
    FakeRelay(port, idle_timeout=2)                            # Postfix smtpd_timeout: 421 4.4.2, close

It counts connections and records every accepted transaction (``transactions``),
so tests can count copies per recipient, and keeps the delivered messages'
``original_content`` byte for byte.
"""

from __future__ import annotations

import asyncio
import collections
import contextlib
import threading
import weakref
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

from aiosmtpd.controller import Controller
from aiosmtpd.smtp import SMTP

OK = "250 2.0.0 OK"


@dataclass(frozen=True)
class Step:
    """One scripted answer: wait ``delay`` seconds, then reply (or ``action`` "drop": close, no reply)."""

    reply: str = OK
    delay: float = 0.0
    action: str = ""  # "drop": close without a reply; "hangup": reply, then 421 and close


IDLE_TIMEOUT = "421 4.4.2 relay.example Error: timeout exceeded"  # what Postfix says


@dataclass
class Transaction:
    mail_from: str
    rcpt_tos: list[str]
    data: bytes
    connection: int


class _CountingSMTP(SMTP):
    relay: FakeRelay

    def _timeout_cb(self) -> None:
        """Idle for ``idle_timeout``: say so, as Postfix does at ``smtpd_timeout``, and close."""
        if self.transport is not None and not self.transport.is_closing():
            self.transport.write(IDLE_TIMEOUT.encode() + b"\r\n")
        super()._timeout_cb()

    def connection_lost(self, error: Exception | None) -> None:
        self.relay.sessions.discard(self)
        super().connection_lost(error)

    def hang_up(self) -> None:
        """What a reloading relay does to a session between transactions: 421, then close."""
        if self.transport is not None and not self.transport.is_closing():
            self.transport.write(b"421 4.3.2 relay.example Service shutting down\r\n")
            self.transport.close()

    async def _handle_client(self) -> None:
        relay = self.relay
        with relay.lock:
            relay.connections += 1
            self.connection_number = relay.connections
            relay.sessions.add(self)
        if relay.greeting:
            self._writer.write(relay.greeting.encode() + b"\r\n")
            await self._writer.drain()
            self.transport.close()
            return
        if relay.silent:
            transport = self.transport
            try:
                while not transport.is_closing() and relay.silent:
                    await asyncio.sleep(0.05)
            finally:  # also when aiosmtpd cancels us on the client's EOF
                transport.close()
            return
        await super()._handle_client()


class _Controller(Controller):
    def __init__(self, relay: FakeRelay, **kwargs: Any) -> None:
        super().__init__(relay, **kwargs)
        self.relay = relay

    def factory(self) -> SMTP:
        kwargs = dict(self.SMTP_kwargs)
        if self.relay.idle_timeout:
            kwargs["timeout"] = self.relay.idle_timeout
        server = _CountingSMTP(self.handler, **kwargs)
        server.relay = self.relay
        return server


@dataclass
class FakeRelay:
    port: int
    default: str = OK
    script: dict[str, list[str | Step]] = field(default_factory=dict)
    rcpt: dict[str, str] = field(default_factory=dict)
    greeting: str = ""
    silent: bool = False
    smtputf8: bool = False  # offer SMTPUTF8 (RFC 6531)
    pipelining: bool = True  # offer PIPELINING (RFC 2920), as Postfix does
    idle_timeout: float = 0.0  # close a session idle this long with Postfix's 421 4.4.2 (0: 300 s)
    transactions: list[Transaction] = field(default_factory=list)
    connections: int = 0
    lock: threading.Lock = field(default_factory=threading.Lock)
    sessions: weakref.WeakSet[_CountingSMTP] = field(default_factory=weakref.WeakSet)

    def start(self) -> FakeRelay:
        self._controller = _Controller(
            self, hostname="127.0.0.1", port=self.port, enable_SMTPUTF8=self.smtputf8, decode_data=False
        )
        self._controller.start()
        with self.lock:
            self.connections = 0  # the controller's own readiness probe does not count
        return self

    def stop(self) -> None:
        """Stop listening and close every open session, as a stopped MTA does."""
        self.silent = False
        asyncio.run_coroutine_threadsafe(self._close_sessions(), self._controller.loop).result(5)
        self._controller.stop()

    def restart(self) -> None:
        """``postfix reload``/restart between two copies: open sessions get 421 and are closed."""
        self.stop()
        connections = self.connections
        self.start()
        self.connections = connections

    async def _close_sessions(self) -> None:
        with self.lock:
            sessions = list(self.sessions)
        for server in sessions:
            server.hang_up()
        await asyncio.sleep(0.05)  # let the transports flush their last words

    # -- what tests read ----------------------------------------------------

    def copies(self) -> collections.Counter[str]:
        """How many copies each recipient got."""
        with self.lock:
            return collections.Counter(r.lower() for t in self.transactions for r in t.rcpt_tos)

    def open_sessions(self) -> int:
        """Client connections the relay holds open now."""
        with self.lock:
            return len(self.sessions)

    def received(self, n: int) -> bool:
        return sum(self.copies().values()) >= n

    def messages_for(self, address: str) -> list[Transaction]:
        with self.lock:
            return [t for t in self.transactions if address.lower() in (r.lower() for r in t.rcpt_tos)]

    # -- aiosmtpd hooks -----------------------------------------------------

    async def _scripted(self, server: SMTP, command: str, fallback: str) -> str | None:
        queue = self.script.get(command)
        step: str | Step = queue.pop(0) if queue else fallback
        if isinstance(step, str):
            return step
        if step.delay:
            await asyncio.sleep(step.delay)
        if step.action == "drop":
            server.transport.close()
            return None
        if step.action == "hangup":  # the reply, then at once the 421 and the close
            server.transport.write(step.reply.encode() + b"\r\n")
            server.hang_up()  # type: ignore[attr-defined]
            return None
        return step.reply

    async def handle_EHLO(
        self, server: SMTP, session: Any, envelope: Any, hostname: str, responses: list[str]
    ) -> list[str]:
        session.host_name = hostname
        if self.pipelining:  # aiosmtpd reads pipelined commands in order; it just does not say so
            responses.insert(len(responses) - 1, "250-PIPELINING")
        return responses

    async def handle_MAIL(
        self, server: SMTP, session: Any, envelope: Any, address: str, options: list[str]
    ) -> str:
        reply = await self._scripted(server, "MAIL", "250 2.1.0 OK")
        if reply is None:
            return "421 4.3.0 closing"
        if reply.startswith("2"):
            envelope.mail_from = address
            envelope.mail_options.extend(options)
        return reply

    async def handle_RCPT(
        self, server: SMTP, session: Any, envelope: Any, address: str, options: list[str]
    ) -> str:
        reply = self.rcpt.get(address.lower()) or await self._scripted(server, "RCPT", "250 2.1.5 OK")
        if reply is None:
            return "421 4.3.0 closing"
        if reply.startswith("2"):
            envelope.rcpt_tos.append(address)
        return reply

    async def handle_DATA(self, server: SMTP, session: Any, envelope: Any) -> str:
        step_queue = self.script.get("DATA")
        step = step_queue[0] if step_queue else None
        closing = isinstance(step, Step) and (
            step.action == "drop" or (step.action == "hangup" and step.reply.startswith("2"))
        )
        reply = await self._scripted(server, "DATA", self.default)
        if closing or (reply or "").startswith("2"):
            # A drop after the final dot: the relay may well have queued it (the hand-off window).
            with self.lock:
                self.transactions.append(
                    Transaction(
                        envelope.mail_from,
                        list(envelope.rcpt_tos),
                        envelope.original_content,
                        getattr(server, "connection_number", 0),
                    )
                )
        return reply if reply is not None else "421 4.3.0 closing"


@contextlib.contextmanager
def fake_relay(port: int, start: bool = True, **options: Any) -> Iterator[FakeRelay]:
    """A FakeRelay on ``port`` (started unless ``start`` is False), stopped at the end if it ever ran."""
    fake = FakeRelay(port, **options)
    if start:
        fake.start()
    try:
        yield fake
    finally:
        if getattr(fake, "_controller", None) is not None:
            fake.stop()
