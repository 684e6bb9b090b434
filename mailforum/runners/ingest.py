"""The SMTP and LMTP ingest server (aiosmtpd): accept, spool durably, answer.

The handler translates; it decides nothing that needs a parse. RCPT checks the
address against the route table and the known lists; DATA checks what a cheap
header scan can tell (header size, hop count), then hands the raw bytes and the
envelope to the ``SpoolWriter``, which commits concurrent sessions' messages
together (group commit) in its own thread, and answers 250 only after the commit.

The protocol classes harden aiosmtpd: enhanced status codes on every refusal
(RFC 3463), a per-session hard error limit, connection limits per IP and in total,
an overall DATA deadline (aiosmtpd only times out between commands), and 421 to
new sessions while shutting down.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import queue
import re
import socket
import threading
import time
from collections import defaultdict, deque
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from aiosmtpd.lmtp import LMTP
from aiosmtpd.smtp import SMTP, Envelope, Session

from mailforum import crash, logsafe, metrics
from mailforum.config import Config
from mailforum.core import routing
from mailforum.core.lists import list_names
from mailforum.db import spool
from mailforum.db.models import utcnow
from mailforum.db.session import Database
from mailforum.errors import RecipientRefused, TemporaryFailure
from mailforum.mail.addresses import NO_SUCH, parse_recipient
from mailforum.mail.parse import scan_headers

log = logging.getLogger(__name__)

STORED = "250 2.0.0 Message accepted for delivery"
INTERNAL = "451 4.3.0 Internal error, please try again later"
OUT_OF_SYNC = "554 5.5.0 Error: SMTP protocol synchronization"
BAD_COMMAND_CHARACTERS = "501 5.5.2 NUL or CR in a command"
_FORBIDDEN_IN_COMMANDS = re.compile(r"[\x00\r]")


# ---------------------------------------------------------------------------
# Durable group commit


@dataclass(slots=True)
class _Pending:
    message: spool.NewMessage
    loop: asyncio.AbstractEventLoop
    future: asyncio.Future[int]


def _settle(outcomes: list[tuple[asyncio.Future[int], int | BaseException]]) -> None:
    """On the event loop: hand each waiting session its row id, or its failure."""
    for future, outcome in outcomes:
        if future.done():  # the session went away meanwhile
            continue
        if isinstance(outcome, BaseException):
            future.set_exception(outcome)
        else:
            future.set_result(outcome)


@dataclass(frozen=True, slots=True)
class StorageFailure:
    reply: str
    fatal: bool  # stop taking mail until restarted (RELIABILITY F12: no fsync retry on the same handle)
    whole_database: bool  # the database, not one message, is the problem: don't retry one by one


def classify_storage_error(exc: BaseException) -> StorageFailure:
    """What a failed spool commit means for the SMTP client."""
    orig = getattr(exc, "orig", None) or exc
    text = str(orig).lower()
    if "disk is full" in text or "no space" in text or "diskfull" in type(orig).__name__.lower():
        return StorageFailure("452 4.3.1 Insufficient system storage, please try again later", False, True)
    if "disk i/o error" in text or "input/output error" in text:
        return StorageFailure("451 4.3.0 Storage I/O error, please try again later", True, True)
    if any(word in text for word in ("locked", "timeout", "busy", "connection", "server closed")):
        return StorageFailure("451 4.3.0 Storage busy, please try again later", False, True)
    return StorageFailure("451 4.3.0 Temporary storage failure, please try again later", False, False)


class SpoolWriter:
    """Commits spool rows from many sessions in one transaction, off the event loop.

    ``write`` resolves with the row id only after COMMIT returned, so the caller may
    answer 250. A failed batch is retried one message at a time, so one bad row
    cannot make its neighbours fail. The sessions of a batch are woken with one
    call into the event loop, not one each.

    ``on_commit`` (wake the processors: a NOTIFY round trip on PostgreSQL, a datagram to
    each listener on SQLite) runs in a thread of its own, with the ids of every commit
    since its last call: the writer goes straight on to the next batch, whose sessions
    are waiting for their 250 (bench/ingest.py). A wake-up only shortens a wait, so
    late or merged ones lose nothing (runners/wakeup.py).
    """

    def __init__(self, db: Database, on_commit: Callable[[list[int]], None], max_batch: int = 256) -> None:
        self._db = db
        self._on_commit = on_commit
        self._max_batch = max_batch
        self._queue: queue.SimpleQueue[_Pending | None] = queue.SimpleQueue()
        self._thread = threading.Thread(target=self._run, name="spool-writer", daemon=True)
        self._committed: list[int] = []  # ids not yet handed to on_commit
        self._announce = threading.Condition()
        self._stopping = False
        self._announcer = threading.Thread(target=self._announce_commits, name="spool-announcer", daemon=True)
        self.fatal: str | None = None  # set after an I/O error: refuse new mail until restarted
        self.batches = 0
        self.messages = 0

    def start(self) -> None:
        self._thread.start()
        self._announcer.start()

    def stop(self) -> None:
        self._queue.put(None)
        self._thread.join(timeout=30)
        with self._announce:
            self._stopping = True
            self._announce.notify()
        self._announcer.join(timeout=30)
        log.info("spool writer: %s messages in %s commits", self.messages, self.batches)

    async def write(self, message: spool.NewMessage) -> int:
        if self.fatal:
            raise TemporaryFailure(smtp_reply="451 4.3.0 Storage unavailable, please try again later")
        loop = asyncio.get_running_loop()
        pending = _Pending(message, loop, loop.create_future())
        self._queue.put(pending)
        return await pending.future

    def _run(self) -> None:
        while True:
            first = self._queue.get()
            if first is None:
                return
            batch = [first]
            while len(batch) < self._max_batch:
                try:
                    item = self._queue.get_nowait()
                except queue.Empty:
                    break
                if item is None:
                    self._commit(batch)
                    return
                batch.append(item)
            self._commit(batch)

    def _commit(self, batch: list[_Pending]) -> None:
        try:
            ids = self._insert([p.message for p in batch])
        except Exception as exc:
            failure = classify_storage_error(exc)
            if len(batch) > 1 and not failure.whole_database:
                for pending in batch:  # maybe one message is the problem: spare the others
                    self._commit([pending])
                return
            log.error("spool commit failed: %s", str(exc).splitlines()[0] if str(exc) else type(exc).__name__)
            if failure.fatal:
                self.fatal = failure.reply
            self._wake(batch, [TemporaryFailure(smtp_reply=failure.reply)] * len(batch))
            return
        crash.point("after_raw_commit")
        self.batches += 1
        self.messages += len(ids)
        self._wake(batch, ids)
        with self._announce:
            self._committed.extend(ids)
            self._announce.notify()

    def _announce_commits(self) -> None:
        while True:
            with self._announce:
                while not self._committed and not self._stopping:
                    self._announce.wait()
                ids, self._committed = self._committed, []
                stopping = self._stopping
            if ids:
                try:
                    self._on_commit(ids)
                except Exception:  # a wake-up lost costs latency, never a message
                    log.exception("announcing committed spool rows failed")
            if stopping:
                return

    @staticmethod
    def _wake(batch: list[_Pending], outcomes: list[int] | list[TemporaryFailure]) -> None:
        by_loop: dict[asyncio.AbstractEventLoop, list[tuple[asyncio.Future[int], Any]]] = {}
        for pending, outcome in zip(batch, outcomes, strict=True):
            by_loop.setdefault(pending.loop, []).append((pending.future, outcome))
        for loop, outcomes_here in by_loop.items():
            with contextlib.suppress(RuntimeError):  # the loop closed: nobody is waiting any more
                loop.call_soon_threadsafe(_settle, outcomes_here)

    def _insert(self, messages: list[spool.NewMessage]) -> list[int]:
        # A Core connection, not a Session: a quarter less CPU per commit (bench/ingest.py).
        with self._db.engine.begin() as connection:
            return spool.insert_batch(connection, messages, utcnow())


# ---------------------------------------------------------------------------
# Which lists exist


class ListDirectory:
    """The set of list names, re-read from the database at most every ``ttl`` seconds.

    Lists are created by the CLI in another process, so the set cannot be fixed at
    start-up; an unknown name triggers a re-read only when the cache is stale, so a
    flood of random recipients costs no queries (RELIABILITY S3c).
    """

    def __init__(self, db: Database, ttl: float = 2.0) -> None:
        self._db = db
        self._ttl = ttl
        self._names: frozenset[str] = frozenset()
        self._loaded = 0.0
        self._lock = asyncio.Lock()

    async def exists(self, name: str) -> bool:
        if name in self._names:
            return True
        async with self._lock:
            if time.monotonic() - self._loaded > self._ttl:
                self._names = frozenset(await asyncio.to_thread(self._load))
                self._loaded = time.monotonic()
        return name in self._names

    def _load(self) -> list[str]:
        with self._db.read_session() as session:
            return list_names(session)


# ---------------------------------------------------------------------------
# Connection limits


class ConnectionGate:
    """Concurrent connections per IP and in total, and new connections per IP per minute."""

    def __init__(self, total: int, per_ip: int, rate_per_minute: int, pending_bytes: int = 0) -> None:
        self.total, self.per_ip, self.rate = total, per_ip, rate_per_minute
        # Bytes announced with MAIL … SIZE= by transactions not yet answered: bounds the memory
        # that concurrent large messages can take (RELIABILITY L7). 0: no bound.
        self.pending_budget = pending_bytes
        self.pending = 0
        self.open: dict[str, int] = defaultdict(int)
        self.recent: dict[str, deque[float]] = defaultdict(deque)
        self.count = 0
        self.in_data = 0  # sessions between DATA and its reply: what shutdown waits for
        self.sessions: set[Any] = set()
        self.closing = False

    def admit(self, ip: str) -> str | None:
        """None to admit, or the 421 reply to send before closing."""
        if self.closing:
            return "421 4.3.2 Service shutting down, please try again later"
        now = time.monotonic()
        recent = self.recent[ip]
        while recent and now - recent[0] > 60:
            recent.popleft()
        if self.count >= self.total:
            return "421 4.7.0 Too many connections, please try again later"
        if self.open[ip] >= self.per_ip:
            return "421 4.7.0 Too many connections from your address, please try again later"
        if len(recent) >= self.rate:
            return "421 4.7.0 Too many connections per minute from your address, please slow down"
        recent.append(now)
        self.open[ip] += 1
        self.count += 1
        return None

    def release(self, ip: str) -> None:
        self.count -= 1
        self.open[ip] -= 1
        if self.open[ip] <= 0:
            del self.open[ip]
            if not self.recent.get(ip):
                self.recent.pop(ip, None)


# ---------------------------------------------------------------------------
# The aiosmtpd handler


def _lines(reply: str, count: int, lmtp: bool) -> str:
    """LMTP answers DATA once per recipient (RFC 2033 §4.2); SMTP once."""
    return "\r\n".join([reply] * count) if lmtp else reply


class IngestHandler:
    """aiosmtpd hooks: check cheaply, spool durably, then answer."""

    def __init__(
        self,
        config: Config,
        directory: ListDirectory,
        writer: SpoolWriter,
        gate: ConnectionGate,
        free_space: Callable[[], int | None] | None = None,
    ) -> None:
        self.config = config
        self.directory = directory
        self.writer = writer
        self.gate = gate
        self._free_space = free_space or (lambda: None)

    async def handle_EHLO(
        self, server: SMTP, session: Session, envelope: Envelope, hostname: str, responses: list[str]
    ) -> list[str]:
        """Offer PIPELINING (RFC 2920); LMTP requires it (RFC 2033 §4.1). _Hardened polices it."""
        session.host_name = hostname  # aiosmtpd leaves this to an EHLO hook
        return [*responses[:-1], "250-PIPELINING", responses[-1]]

    async def handle_MAIL(
        self, server: SMTP, session: Session, envelope: Envelope, address: str, mail_options: list[str]
    ) -> str:
        if self.gate.closing:
            return "421 4.3.2 Service shutting down, please try again later"
        if self.writer.fatal:
            return "421 4.3.0 Storage unavailable, please try again later"
        if any(c.isspace() for c in address):
            return "501 5.1.7 Bad sender address syntax"
        free = self._free_space()
        if (
            free is not None
            and free < self.config.smtp.max_message_size * self.config.smtp.min_free_space_factor
        ):
            return "452 4.3.1 Insufficient system storage, please try again later"
        if not _reserve(server, _declared_size(mail_options)):
            return "452 4.3.1 Too much mail in progress, please try again later"
        envelope.mail_from = address
        envelope.mail_options.extend(mail_options)
        return "250 2.1.0 Sender OK"

    async def handle_RSET(self, server: SMTP, session: Session, envelope: Envelope) -> str:
        _release(server)
        return "250 2.0.0 OK"

    async def handle_RCPT(
        self, server: SMTP, session: Session, envelope: Envelope, address: str, rcpt_options: list[str]
    ) -> str:
        if len(envelope.rcpt_tos) >= self.config.smtp.max_recipients:
            return "452 4.5.3 Too many recipients"
        try:
            recipient = parse_recipient(address, self.config.site.domain)
        except RecipientRefused as refused:
            return refused.smtp_reply
        accepted = routing.accepts(recipient, self.config)  # the kind has a route; a reply key is signed
        if not accepted or not await self.directory.exists(recipient.list_name):
            return NO_SUCH
        envelope.rcpt_tos.append(address)
        envelope.rcpt_options.extend(rcpt_options)
        return "250 2.1.5 Recipient OK"

    async def handle_DATA(self, server: SMTP, session: Session, envelope: Envelope) -> str:
        lmtp = isinstance(server, LMTP)
        count = len(envelope.rcpt_tos)
        raw = envelope.original_content or b""
        refusal = self._check_headers(raw)
        if refusal:
            return _lines(refusal, count, lmtp)
        message = spool.NewMessage(
            raw=raw,
            mail_from="" if envelope.mail_from in (None, "<>") else envelope.mail_from,  # <>: a bounce
            rcpt_tos=tuple(envelope.rcpt_tos),
            protocol="lmtp" if lmtp else "smtp",
            peer=_peer_ip(session),
        )
        started = time.monotonic()
        try:
            await self.writer.write(message)
        except TemporaryFailure as failure:
            return _lines(failure.smtp_reply, count, lmtp)
        metrics.INGEST_SECONDS.observe(time.monotonic() - started)
        crash.point("before_250_write")
        return _lines(STORED, count, lmtp)

    def _check_headers(self, raw: bytes) -> str | None:
        """Refusals a header scan can make for certain, before anything is stored."""
        size, found = scan_headers(raw)
        if size > self.config.smtp.max_header_size:
            return "552 5.3.4 Message header too large"
        if len(found.get("received", ())) > self.config.smtp.max_hops:
            return "554 5.4.6 Too many hops, probably a mail loop"
        return None

    async def handle_exception(self, error: Exception) -> str:
        # Never aiosmtpd's "500 Error: (Class) text": a 5xx for our bug bounces good mail (I2).
        log.error("SMTP session error: %s", type(error).__name__, exc_info=error)
        return INTERNAL


def _declared_size(mail_options: list[str]) -> int:
    for option in mail_options:
        name, _, value = option.partition("=")
        if name.upper() == "SIZE" and value.isdigit():
            return int(value)
    return 0


def _reserve(server: SMTP, size: int) -> bool:
    reserve = getattr(server, "reserve", None)
    return reserve(size) if reserve else True


def _release(server: SMTP) -> None:
    release = getattr(server, "release", None)
    if release:
        release()


def _peer_ip(session: Session) -> str:
    peer = session.peer
    if isinstance(peer, tuple) and peer:
        return str(peer[0])
    return str(peer or "")


# ---------------------------------------------------------------------------
# Hardened protocol classes

# Enhanced status codes (RFC 3463) for aiosmtpd's stock refusals, by reply code.
_ENHANCED = {
    "421": "4.7.0",
    "451": "4.3.0",
    "452": "4.3.1",
    "500": "5.5.2",
    "501": "5.5.4",
    "502": "5.5.1",
    "503": "5.5.1",
    "504": "5.5.4",
    "530": "5.7.0",
    "535": "5.7.8",
    "538": "5.7.11",
    "550": "5.7.1",
    "552": "5.3.4",
    "553": "5.1.3",
    "554": "5.7.0",
    "555": "5.5.4",
}
_HAS_ENHANCED = re.compile(r"^\d{3}[ -]\d\.\d{1,3}\.\d{1,3}\b")
_TOO_BIG = "552 5.3.4 Message too big for this list"

# Commands whose reply the client must wait for: RFC 2920 §3.1 (EHLO, DATA, VRFY, EXPN,
# TURN, QUIT, NOOP), plus what changes the session the same way: HELO, LMTP's LHLO,
# STARTTLS (RFC 3207 §4.2) and AUTH (a challenge may follow). RSET, MAIL and RCPT may be
# followed by more of a group. A client not offered PIPELINING (HELO) may pipeline nothing.
_GROUP_ENDERS = frozenset(
    {"EHLO", "HELO", "LHLO", "DATA", "VRFY", "EXPN", "TURN", "QUIT", "NOOP", "STARTTLS", "AUTH"}
)


def enhance(line: str) -> str:
    """Give a 4xx/5xx reply line an enhanced status code and drop aiosmtpd's "Error: " prefix."""
    if len(line) < 4 or line[0] not in "45" or _HAS_ENHANCED.match(line) or line[3] != " ":
        return line
    code, text = line[:3], line[4:]
    if code == "552":
        return _TOO_BIG
    text = text.removeprefix("Error: ")
    return f"{code} {_ENHANCED.get(code, code[0] + '.0.0')} {text}"


class _Hardened(SMTP):
    """Overrides shared by the SMTP and LMTP servers (mixed in before aiosmtpd's LMTP, so
    ``super()`` is LMTP there and SMTP in ``IngestSMTP``)."""

    # DATA lines longer than RFC 5322's 998 exist in real mail; accept up to 64 KiB.
    line_length_limit = 65536
    _smtp_methods: dict[str, Any]  # aiosmtpd's command table, wrapped by _synchronised

    def __init__(
        self, *args: Any, gate: ConnectionGate, data_timeout: float, hard_error_limit: int, **kwargs: Any
    ) -> None:
        super().__init__(*args, **kwargs)
        self._gate = gate
        self._data_timeout = data_timeout
        self._hard_error_limit = hard_error_limit
        self._errors = 0
        self._reserved = 0
        self._peek: socket.socket | None = None  # a duplicate of the connection's socket, for MSG_PEEK
        self._sync_check = True  # the greeting too: a client must wait for it (RFC 5321 §4.3.1)
        self._smtp_methods = {name: self._synchronised(name, m) for name, m in self._smtp_methods.items()}

    def _synchronised(self, command: str, method: Callable[[str], Any]) -> Callable[[str], Any]:
        """``method``, marked so that its first reply first checks that nothing was pipelined after it."""

        async def run(arg: str) -> None:
            extended = self.session is not None and self.session.extended_smtp
            self._sync_check = command in _GROUP_ENDERS or not extended
            self._sync_command = command
            if arg and _FORBIDDEN_IN_COMMANDS.search(arg):
                await self.push(BAD_COMMAND_CHARACTERS)  # NUL or a stray CR in any command (B9, S17)
                return
            await method(arg)

        return run

    def _unread_input(self) -> int:
        """Bytes the client sent that we have not read yet (our buffer, then the socket's)."""
        buffered = len(self._reader._buffer)  # type: ignore[attr-defined]
        if buffered or self.transport is None:
            return buffered
        if self._peek is None:
            # uvloop's transport hands out a socket without recv: peek through a duplicate,
            # made once per connection (not once per reply) and closed with it.
            sock = self.transport.get_extra_info("socket")
            if sock is None:
                return 0
            self._peek = socket.socket(fileno=os.dup(sock.fileno()))
        try:
            return len(self._peek.recv(1, socket.MSG_PEEK | socket.MSG_DONTWAIT))
        except OSError:  # nothing there (EAGAIN), or the connection is gone
            return 0

    def connection_lost(self, error: Exception | None) -> None:
        if self._peek is not None:
            self._peek.close()
            self._peek = None
        super().connection_lost(error)

    async def _refuse_out_of_sync(self) -> None:
        """Postfix's smtpd_forbid_unauth_pipelining: 554, close, and run nothing the client sent."""
        command = getattr(self, "_sync_command", "the greeting")
        assert self.session is not None and self.transport is not None  # set by connection_made
        log.info("%s: SMTP protocol synchronization error: input after %s", _peer_ip(self.session), command)
        self._writer.write(OUT_OF_SYNC.encode() + b"\r\n")
        self.transport.close()
        if self._handler_coroutine is not None:
            self._handler_coroutine.cancel()
        await asyncio.sleep(0)  # the cancellation lands here: no buffered command or body is read

    def reserve(self, size: int) -> bool:
        """Count ``size`` announced bytes against the gate's budget; False when it is spent."""
        self.release()
        gate = self._gate
        if size and gate.pending_budget and gate.pending + size > gate.pending_budget:
            return False
        gate.pending += size
        self._reserved = size
        return True

    def release(self) -> None:
        self._gate.pending -= self._reserved
        self._reserved = 0

    async def _handle_client(self) -> None:
        assert self.session is not None and self.transport is not None  # set by connection_made
        ip = _peer_ip(self.session)
        refusal = self._gate.admit(ip)
        if refusal:
            self._writer.write(refusal.encode() + b"\r\n")
            self.transport.close()
            return
        self._gate.sessions.add(self)
        try:
            await super()._handle_client()
        finally:
            self.release()
            self._gate.sessions.discard(self)
            self._gate.release(ip)

    async def push(self, status: str | bytes) -> None:
        if self._sync_check:
            self._sync_check = False
            if self.transport is not None and self._unread_input():
                await self._refuse_out_of_sync()
        text = status.decode("utf-8", "replace") if isinstance(status, bytes) else status
        lines = [enhance(line) for line in text.split("\r\n")]
        if isinstance(self, LMTP) and lines[0] == _TOO_BIG:
            # aiosmtpd answers an oversized LMTP DATA once; LMTP owes one reply per recipient.
            lines = lines * max(1, len(self.envelope.rcpt_tos) if self.envelope is not None else 0)
        self._errors += sum(1 for line in lines if line[:1] == "5")
        await super().push("\r\n".join(lines))
        if self._errors >= self._hard_error_limit and self.transport is not None:
            await super().push("421 4.7.0 Too many errors, closing connection")
            self.transport.close()

    async def smtp_DATA(self, arg: str) -> None:
        # One deadline for the whole DATA phase (RELIABILITY §3.8): aiosmtpd resets its
        # idle timer only between commands, so a trickling sender would otherwise be
        # bounded by the idle timeout alone.
        self._reset_timeout(self._data_timeout)
        self._gate.in_data += 1
        try:
            await super().smtp_DATA(arg)
        finally:
            self._gate.in_data -= 1
            self.release()

    def close_for_shutdown(self) -> None:
        if isinstance(self.transport, asyncio.WriteTransport):
            self.transport.write(b"421 4.3.2 Service shutting down, please try again later\r\n")
            self.transport.close()

    def _timeout_cb(self) -> None:
        if isinstance(self.transport, asyncio.WriteTransport):
            self.transport.write(b"421 4.4.2 Timeout, closing connection\r\n")
        super()._timeout_cb()


class IngestSMTP(_Hardened, SMTP):
    pass


class IngestLMTP(_Hardened, LMTP):
    pass


# Commands a client may repeat only so often in one session (aiosmtpd's call limit).
CALL_LIMITS = {
    "NOOP": 20,
    "RSET": 1000,
    "HELP": 10,
    "VRFY": 10,
    "EXPN": 10,
    "HELO": 10,
    "EHLO": 10,
    "LHLO": 10,
    "*": 1_000_000,
}


def protocol_factory(
    config: Config, handler: IngestHandler, gate: ConnectionGate, lmtp: bool
) -> Callable[[], SMTP]:
    cls = IngestLMTP if lmtp else IngestSMTP
    hostname = config.smtp.hostname or config.site.domain

    def build() -> SMTP:
        return cls(
            handler,
            gate=gate,
            data_timeout=config.smtp.data_timeout,
            hard_error_limit=config.smtp.hard_error_limit,
            data_size_limit=config.smtp.max_message_size,
            hostname=hostname,
            ident="mailforum ESMTP",
            timeout=config.smtp.idle_timeout,
            enable_SMTPUTF8=False,
            decode_data=False,
            command_call_limit=CALL_LIMITS,
        )

    return build


def free_space_probe(db: Database) -> Callable[[], int | None]:
    """Free bytes where the SQLite file lives, checked at most once a second; None for PostgreSQL."""
    if not db.is_sqlite:
        return lambda: None
    path = os.path.dirname(os.path.abspath(db.engine.url.database or ".")) or "."
    cache: list[float] = [0.0, 0.0]

    def probe() -> int | None:
        if time.monotonic() - cache[0] > 1.0:
            st = os.statvfs(path)
            cache[:] = [time.monotonic(), float(st.f_bavail * st.f_frsize)]
        return int(cache[1])

    return probe


class IngestServer:
    """The SMTP and LMTP listeners of one process, sharing one spool writer."""

    def __init__(
        self, config: Config, db: Database, on_commit: Callable[[list[int]], None], reuse_port: bool = False
    ) -> None:
        logsafe.install()  # aiosmtpd logs commands at DEBUG: keep tokens out (RELIABILITY S25)
        self.config = config
        self.gate = ConnectionGate(
            config.smtp.max_connections,
            config.smtp.max_connections_per_ip,
            config.smtp.max_connection_rate_per_ip,
            config.smtp.max_pending_bytes,
        )
        self.writer = SpoolWriter(db, on_commit)
        self.handler = IngestHandler(config, ListDirectory(db), self.writer, self.gate, free_space_probe(db))
        self._servers: list[asyncio.AbstractServer] = []
        self._reuse_port = reuse_port

    async def start(self) -> None:
        self.writer.start()
        loop = asyncio.get_running_loop()
        smtp = self.config.smtp
        for port, lmtp in ((smtp.port, False), (smtp.lmtp_port, True)):
            if port:
                server = await loop.create_server(
                    protocol_factory(self.config, self.handler, self.gate, lmtp),
                    smtp.host,
                    port,
                    reuse_address=True,
                    reuse_port=self._reuse_port or None,
                )
                self._servers.append(server)
                log.info("%s listening on %s:%s", "LMTP" if lmtp else "SMTP", smtp.host, port)

    async def stop(self, grace: float) -> None:
        """Shut down without losing a message (RELIABILITY F16).

        New sessions and new transactions get 421 at once; messages already in DATA
        get ``grace`` seconds to finish and be committed; then every session is closed
        with 421 and the spool writer drains its queue.
        """
        self.gate.closing = True
        deadline = time.monotonic() + grace
        while self.gate.in_data > 0 and time.monotonic() < deadline:
            await asyncio.sleep(0.05)
        for server in self._servers:
            server.close()
        for session in list(self.gate.sessions):
            session.close_for_shutdown()
        await asyncio.sleep(0.05)
        await asyncio.to_thread(self.writer.stop)
