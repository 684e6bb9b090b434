"""The delivery worker: claim outbox rows, render, send through the relay, record the answer.

One dispatcher claims due rows (with a lease; ``claim_batch`` for every connection
waiting for work, in one statement) and hands them in chunks to ``[relay]
max_connections`` senders; each keeps one relay connection open for up to
``messages_per_connection`` messages (``relay_client``: smtplib, about twice as fast as
aiosmtplib for digests in ``bench/digest.py``) and sends a whole chunk from one of the
worker's own threads, so no copy costs a trip through the event loop. A copy's bytes are
made when it is sent, so memory holds the shared parts, not a chunk of finished copies.
Every copy is its own transaction with one recipient, because its envelope sender (VERP)
and its ``Reply-To`` are personal. One committer thread records the results in batches:
what came in while it committed the last one, topped up briefly unless a sender waits.

What the relay says decides the row's fate (Mailman's outgoing runner; RELIABILITY
I5, F6–F9): ``250`` → sent; ``5xx`` → failed, with the reply kept; ``4xx``, a
timeout, a dropped connection or no reply at all → retried after the backoff (60 s
doubling to 4000 s) until the 5-day lifetime ends. A connection-level failure pauses
the dispatcher for one base delay, so a dead relay costs no CPU. A pooled connection the
relay closed (its idle timeout, a reload, a restart) is no such failure (RELIABILITY
F19): an idle one is watched and closed when the relay hangs up, QUIT after ``[relay]
idle_timeout``, and a copy that finds its reused connection dead before the final dot
is sent again at once on a fresh one, counting no attempt. A row is marked sent
only after the 250 and the committer's commit; a crash in between (crash point
``after_relay_250_before_mark_sent``) sends that copy again after the lease — the
unavoidable relay hand-off window (qmail INTERNALS; RELIABILITY I3, F4).
"""

from __future__ import annotations

import asyncio
import contextlib
import datetime as dt
import logging
import os
import queue
import smtplib
import socket
import threading
import time
from collections import deque
from collections.abc import Callable, Iterable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import TypeVar

from mailforum import crash
from mailforum.config import Config
from mailforum.core import bounces
from mailforum.core.copies import Composer, OutgoingCopy
from mailforum.db import outbox
from mailforum.db.models import utcnow
from mailforum.db.session import Database
from mailforum.render import Renderer
from mailforum.runners.relay_client import RelayConnection

log = logging.getLogger(__name__)

Clock = Callable[[], dt.datetime]
_T = TypeVar("_T")

# Results recorded in one transaction at most; below COMMIT_SOON the committer waits up to
# COMMIT_GATHER seconds for more, unless a sender waits for a commit.
COMMIT_BATCH = 500
COMMIT_SOON = 64
COMMIT_GATHER = 0.02


# ---------------------------------------------------------------------------
# Sending


@dataclass
class Stats:
    sent: int = 0
    deferred: int = 0
    failed: int = 0
    connections: int = 0


def classify(exc: BaseException) -> tuple[str, bool]:
    """(reply text, permanent?) for a relay error; 5xx is permanent, all else is retried."""
    if isinstance(exc, smtplib.SMTPRecipientsRefused) and exc.recipients:
        code, text = next(iter(exc.recipients.values()))
        return _reply(code, text), 500 <= code < 600
    if isinstance(exc, smtplib.SMTPResponseException) and exc.smtp_code > 0:
        return _reply(exc.smtp_code, exc.smtp_error), 500 <= exc.smtp_code < 600
    return f"{type(exc).__name__}: {exc}"[:500], False


def _reply(code: int, text: bytes | str) -> str:
    """A relay reply as one line of text: multi-line replies joined, at most 500 characters."""
    if isinstance(text, bytes):
        text = text.decode("utf-8", "replace")
    return f"{code} {' '.join(text.split())}".strip()[:500]


@dataclass(frozen=True, slots=True)
class _Outcome:
    """What became of one copy: ``broken`` → drop the connection; ``stale`` → it broke before
    the relay could have taken the copy (resend at once if the connection was reused)."""

    ok: bool
    reply: str
    permanent: bool = False
    broken: bool = False
    stale: bool = False


# Put in the results queue by a sender that has to wait for a commit.
_HURRY = outbox.Result(-1, False, "")


@dataclass
class _Chunk:
    copies: list[OutgoingCopy]
    refused: list[tuple[outbox.ClaimedCopy, str]] = field(default_factory=list)  # can never be sent
    deferred: list[tuple[outbox.ClaimedCopy, str]] = field(default_factory=list)  # try again later


class DeliveryWorker:
    """Drains the outbox through the relay; ``run`` until stopped, or ``once`` until nothing is due."""

    def __init__(
        self,
        db: Database,
        config: Config,
        renderer: Renderer | None = None,
        clock: Clock = utcnow,
        name: str | None = None,
    ) -> None:
        self.db = db
        self.config = config
        self.clock = clock
        self.name = name or f"{socket.gethostname()}:{os.getpid()}:{id(self) % 100000}"
        self.composer = Composer(config, renderer or Renderer(config.outbound.templates or None))
        out = config.outbound
        self.backoff = outbox.Backoff(out.retry_base, out.retry_max, dt.timedelta(days=out.lifetime_days))
        self.lease = dt.timedelta(seconds=out.lease)
        self.stats = Stats()
        self.wake = asyncio.Event()
        self._stopping = asyncio.Event()
        self._halt = threading.Event()  # ``_stopping`` for the sender threads
        self._results: queue.SimpleQueue[outbox.Result | None] = queue.SimpleQueue()
        self._recorded: set[int] = set()  # ids of sent copies whose 250 is committed
        self._recorded_changed = threading.Condition()
        self._claimed: dict[int, outbox.ClaimedCopy] = {}
        self._paused_until = 0.0
        self._pool: ThreadPoolExecutor | None = None
        self._stats_lock = threading.Lock()

    # -- the database side (each in a worker thread) ------------------------

    def _claim(self, limit: int) -> list[outbox.ClaimedCopy]:
        with self.db.session() as session:
            rows = outbox.claim(session, self.clock(), limit, self.lease, self.name)
        for row in rows:
            self._claimed[row.id] = row
        return rows

    def _compose(self, rows: list[outbox.ClaimedCopy]) -> _Chunk:
        """The claimed rows as copies to send (in a worker thread): what they share is
        rendered here, once per post or digest; what is personal, when each is sent."""
        now = self.clock()
        chunk = _Chunk([])
        try:
            with self.db.read_session() as session:
                self.composer.load(session, rows)
            for row in rows:
                built = self.composer.compose(row, now)
                if isinstance(built, str):
                    chunk.refused.append((row, built))
                else:
                    chunk.copies.append(built)
        except Exception as exc:
            # A broken template or a database hiccup: retry with backoff, never drop (I4).
            log.exception("rendering %d outbox rows failed", len(rows))
            reason = f"could not render: {type(exc).__name__}: {exc}"[:500]
            done = {e.row.id for e in chunk.copies} | {r.id for r, _ in chunk.refused}
            chunk.deferred = [(row, reason) for row in rows if row.id not in done]
        return chunk

    def _record(self, results: list[outbox.Result]) -> None:
        now = self.clock()
        with self.db.session() as session:
            outbox.record(session, results, self._claimed, now, self.backoff)
            # A 5xx from the relay is a hard bounce for that member (core.bounces; RELIABILITY F7).
            refused = [
                (row.list_id, row.member_id, row.kind)
                for r in results
                if r.permanent
                and r.reply[:1] == "5"
                and (row := self._claimed.get(r.id)) is not None
                and row.list_id is not None
            ]
            if refused:
                bounces.relay_refused(session, self.config, refused, now)
        for r in results:
            self._claimed.pop(r.id, None)

    def _release(self, ids: list[int]) -> None:
        with self.db.session() as session:
            outbox.release(session, ids, self.clock())
        for row_id in ids:
            self._claimed.pop(row_id, None)

    # -- the loops ----------------------------------------------------------

    async def run(self, once: bool = False) -> Stats:
        """Deliver until ``stop()`` (or, with ``once``, until no row is due); returns the counts."""
        connections = self.config.relay.max_connections
        queue: asyncio.Queue[_Chunk | None] = asyncio.Queue(maxsize=connections)
        # Our own threads: a sender holds one for a whole chunk, so the loop's default pool
        # (min(32, cores + 4) threads, shared with ingest and processing) would run short.
        # Its writes wait for a spool processor's batch to end (Database.mark_patient).
        self._pool = ThreadPoolExecutor(
            connections + 2, thread_name_prefix="delivery", initializer=self.db.mark_patient
        )
        self._halt.clear()
        committer = threading.Thread(target=self._committer, name="delivery-committer", daemon=True)
        committer.start()
        senders = [asyncio.create_task(self._sender(queue)) for _ in range(connections)]
        try:
            await self._dispatch(queue, once)
        finally:
            # Chunks no sender took yet go back at once instead of waiting out their lease.
            unsent: list[int] = []
            while self._stopping.is_set() and not queue.empty():
                chunk = queue.get_nowait()
                if chunk is not None:
                    unsent += [e.row.id for e in chunk.copies]
            if unsent:
                await self._in_thread(self._release, unsent)
            for _ in senders:
                await queue.put(None)
            await asyncio.gather(*senders, return_exceptions=True)
            self._results.put(None)
            await asyncio.get_running_loop().run_in_executor(None, committer.join)
            self._pool.shutdown(wait=False)
            self._pool = None
            with self._recorded_changed:
                self._recorded.clear()
        return self.stats

    def stop(self) -> None:
        self._stopping.set()
        self._halt.set()
        self.wake.set()

    async def _in_thread(self, func: Callable[..., _T], *args: object) -> _T:
        """``func(*args)`` in one of this worker's threads."""
        return await asyncio.get_running_loop().run_in_executor(self._pool, func, *args)

    async def _dispatch(self, queue: asyncio.Queue[_Chunk | None], once: bool) -> None:
        poll = self.config.outbound.poll_interval
        while not self._stopping.is_set():
            pause = self._paused_until - time.monotonic()
            if pause > 0 and not once:
                await self._sleep(pause)
                continue
            # One claim for every connection waiting for work (``claim_batch`` copies each):
            # a fan-out costs a claim per ``max_connections`` chunks, not one per chunk.
            size = self.config.outbound.claim_batch
            waiting = max(1, queue.maxsize - queue.qsize())
            try:
                rows = await self._in_thread(self._claim, size * waiting)
            except Exception as exc:
                log.error(
                    "outbox claim failed: %s", str(exc).splitlines()[0] if str(exc) else type(exc).__name__
                )
                await self._sleep(poll)
                continue
            if not rows:
                if once:
                    return
                await self._sleep(poll)
                continue
            # Rendered a chunk at a time, so the first connection has its copies after one
            # chunk's posts are rendered, not after all of the claim's (bench/posts.py).
            for start in range(0, len(rows), size):
                if self._stopping.is_set():
                    await self._in_thread(self._release, [row.id for row in rows[start:]])
                    return
                chunk = await self._in_thread(self._compose, rows[start : start + size])
                for row, reason in chunk.refused:
                    self._results.put(outbox.Result(row.id, False, reason, permanent=True))
                for row, reason in chunk.deferred:
                    self._results.put(outbox.Result(row.id, False, reason))
                if chunk.copies:
                    await queue.put(chunk)

    async def _sleep(self, seconds: float) -> None:
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self.wake.wait(), timeout=seconds)
        self.wake.clear()

    async def _sender(self, queue: asyncio.Queue[_Chunk | None]) -> None:
        """One relay connection: each chunk is sent in one of the worker's threads, copy after
        copy (no trip through the event loop per copy); between chunks the loop watches the
        idle connection."""
        client: RelayConnection | None = None
        acked: deque[int] = deque()
        try:
            while True:
                chunk, client = await self._next_chunk(queue, client)
                if chunk is None:
                    break
                try:
                    client = await self._in_thread(self._send_chunk, chunk, client, acked)
                except Exception:
                    # Our bug, not the relay's: this sender goes on with the next chunk (run()
                    # counts on every sender taking its stop marker); the copies it did not
                    # settle stay claimed and go out again when their lease ends.
                    log.exception("sending a chunk of %d copies failed", len(chunk.copies))
                    client = None
        finally:
            if client is not None:
                await self._in_thread(client.quit)

    async def _next_chunk(
        self, queue: asyncio.Queue[_Chunk | None], client: RelayConnection | None
    ) -> tuple[_Chunk | None, RelayConnection | None]:
        """The next chunk; meanwhile an idle connection is QUIT after ``[relay] idle_timeout``,
        and one the relay hangs up on (a ``421`` and EOF) is closed at once, not left in
        CLOSE-WAIT for the next copy to fail on (RELIABILITY F19)."""
        if client is not None and client.connected:
            waited, chunk = await _wait_idle(queue, client, self.config.relay.idle_timeout)
            if waited:
                return chunk, client
            await self._in_thread(self._retire, client)
        return await queue.get(), None

    # -- the sender threads -------------------------------------------------

    def _retire(self, client: RelayConnection) -> None:
        if client.hung_up():
            log.debug("relay %s:%s closed an idle connection", *self._relay)
            client.close()
        else:
            client.quit()

    def _ready(self, client: RelayConnection | None) -> RelayConnection:
        """``client`` if it can take a copy now, else a new connection (raises if none opens)."""
        if client is not None:
            relay = self.config.relay
            if client.hung_up():
                client.close()
            elif client.used >= relay.messages_per_connection or client.idle >= relay.idle_timeout:
                client.quit()
            else:
                return client
        return self._connect()

    def _send_chunk(
        self, chunk: _Chunk, client: RelayConnection | None, acked: deque[int]
    ) -> RelayConnection | None:
        """Send the chunk's copies in order (in a worker thread); returns the connection to go on with."""
        pending = deque(chunk.copies)
        while pending:
            if self._halt.is_set():
                try:
                    self._release([e.row.id for e in pending])
                except Exception:  # they come back when their lease ends
                    log.exception("giving back %d claimed copies failed", len(pending))
                break
            try:
                client = self._ready(client)
            except Exception as exc:
                self._unreachable(exc, pending)
                return None
            copy = pending.popleft()
            reused = client.used > 0
            outcome = self._send(client, copy)
            if outcome.stale and reused:
                # The relay dropped this connection before taking the copy (an idle timeout, a
                # reload): not an attempt. One more try at once on a fresh connection.
                log.info("relay connection went stale (%s); sending again on a new one", outcome.reply)
                client.close()
                client = None
                try:
                    client = self._connect()
                except Exception as exc:
                    pending.appendleft(copy)
                    self._unreachable(exc, pending)
                    return None
                outcome = self._send(client, copy)
            self._settle(copy, outcome, acked)
            if outcome.broken or not client.connected:
                client.close()
                client = None
        return client

    def _unreachable(self, exc: Exception, pending: Iterable[OutgoingCopy]) -> None:
        """No connection opens: these copies are retried later, and the dispatcher pauses."""
        reply, _ = classify(exc)
        log.warning("relay %s:%s unreachable: %s", *self._relay, reply)
        self._paused_until = time.monotonic() + self.config.outbound.retry_base
        for copy in pending:
            self._results.put(outbox.Result(copy.row.id, False, reply))

    def _settle(self, copy: OutgoingCopy, outcome: _Outcome, acked: deque[int]) -> None:
        if outcome.ok:
            crash.point("after_relay_250_before_mark_sent")
        self._results.put(outbox.Result(copy.row.id, outcome.ok, outcome.reply, outcome.permanent))
        if outcome.ok:
            # At most ``unrecorded`` copies per connection have a 250 that is not yet
            # committed; a crash sends only those again (RELIABILITY F4). With 1, the
            # next copy waits for this one's commit; the committer batches every
            # connection's results, so a larger window hides the commit latency.
            acked.append(copy.row.id)
            while len(acked) >= self.config.outbound.unrecorded:
                self._wait_recorded(acked.popleft())

    @property
    def _relay(self) -> tuple[str, int]:
        return self.config.relay.host, self.config.relay.port

    def _connect(self) -> RelayConnection:
        client = RelayConnection(self.config.relay, self.config.smtp.hostname or self.config.site.domain)
        client.open()
        with self._stats_lock:
            self.stats.connections += 1
        return client

    @staticmethod
    def _send(client: RelayConnection, copy: OutgoingCopy) -> _Outcome:
        """What became of one copy; runs in a worker thread."""
        try:
            data = copy.build()
        except Exception as exc:  # our bug: retry with backoff, never drop (I4)
            log.exception("building outbox %s failed", copy.row.id)
            return _Outcome(False, f"could not render: {type(exc).__name__}: {exc}"[:500])
        try:
            client.send(copy.sender, copy.row.recipient, data)
        except smtplib.SMTPServerDisconnected as exc:
            return _Outcome(False, classify(exc)[0], broken=True, stale=not client.handed_over)
        except smtplib.SMTPException as exc:  # a reply from the relay (SMTPException is an OSError)
            reply, permanent = classify(exc)
            closing = reply.startswith("421")
            stale = closing and not client.handed_over
            return _Outcome(False, reply, permanent, closing or not client.connected, stale)
        except TimeoutError as exc:
            # No reply in time: the relay is slow, not gone; retry later (RELIABILITY F9).
            return _Outcome(False, classify(exc)[0], broken=True)
        except OSError as exc:
            # Reset or closed: before the final dot the relay cannot have the copy; after it,
            # unknown whether it took it, so retry with backoff (a duplicate is possible and is
            # the lesser evil — RELIABILITY F8).
            return _Outcome(False, classify(exc)[0], broken=True, stale=not client.handed_over)
        except UnicodeError as exc:  # an address this relay cannot take (no SMTPUTF8)
            return _Outcome(False, f"unsendable address: {exc}", permanent=True)
        except Exception as exc:  # a surprise from below: never lose the copy
            log.exception("sending outbox %s failed unexpectedly", copy.row.id)
            return _Outcome(False, f"{type(exc).__name__}: {exc}"[:500], broken=True)
        return _Outcome(True, "250")

    def _wait_recorded(self, row_id: int) -> None:
        """Block this sender thread until the committer has recorded ``row_id``."""
        with self._recorded_changed:
            if row_id not in self._recorded:
                self._results.put(_HURRY)  # a sender waits: the committer stops gathering
            while row_id not in self._recorded:
                self._recorded_changed.wait()
            self._recorded.discard(row_id)

    def _resolve(self, batch: list[outbox.Result]) -> None:
        """Wake the senders waiting for these copies' commit."""
        with self._recorded_changed:
            self._recorded.update(r.id for r in batch if r.ok)
            self._recorded_changed.notify_all()

    def _committer(self) -> None:
        """The one thread that records results. A batch is what arrived while the last one was
        committed, topped up for at most ``COMMIT_GATHER`` seconds while smaller than
        ``COMMIT_SOON``, unless a sender waits for a commit: fewer write transactions (on
        SQLite each is an fsync and the writer lock that ingest and processing need too) at
        no cost to senders. (Three committers on PostgreSQL measured slower than one that
        gathers: more, smaller commits.)"""
        self.db.mark_patient()
        done = False
        while not done:
            first = self._results.get()
            if first is None:
                return
            batch: list[outbox.Result] = []
            hurry = first is _HURRY
            if not hurry:
                batch.append(first)
            deadline = time.monotonic() + COMMIT_GATHER
            while len(batch) < COMMIT_BATCH:
                try:
                    item = self._results.get_nowait()
                except queue.Empty:
                    left = deadline - time.monotonic()
                    if hurry or not batch or len(batch) >= COMMIT_SOON or left <= 0:
                        break
                    try:
                        item = self._results.get(timeout=left)
                    except queue.Empty:
                        break
                if item is None:
                    done = True
                    break
                if item is _HURRY:
                    hurry = True
                else:
                    batch.append(item)
            if batch:
                self._commit(batch)

    def _commit(self, batch: list[outbox.Result]) -> None:
        delay = 0.1
        crash.point("before_delivery_commit")
        for attempt in range(1_000_000):
            try:
                self._record(batch)
                break
            except Exception as exc:
                # Never send what cannot be recorded (RELIABILITY F11): the claims stay leased,
                # so if we must stop first, those copies go out again after the lease.
                log.error("recording %d delivery results failed, retrying: %s", len(batch), exc)
                if self._halt.is_set() and attempt >= 3:
                    self._resolve(batch)
                    return
                self._paused_until = time.monotonic() + 5
                time.sleep(delay)
                delay = min(delay * 2, 5.0)
        self._resolve(batch)
        with self._stats_lock:
            for r in batch:
                if r.ok:
                    self.stats.sent += 1
                elif r.permanent:
                    self.stats.failed += 1
                    log.warning("outbox %s failed permanently: %s", r.id, r.reply)
                else:
                    self.stats.deferred += 1


def _settle_once(future: asyncio.Future[_Chunk | None]) -> None:
    if not future.done():
        future.set_result(None)


async def _wait_idle(
    queue: asyncio.Queue[_Chunk | None], client: RelayConnection, limit: float
) -> tuple[bool, _Chunk | None]:
    """Wait for the next chunk while ``client`` idles: ``(True, chunk)``, or ``(False, None)``
    once the relay hung up on it (its socket turned readable) or it idled ``limit`` seconds."""
    if not queue.empty():
        return True, queue.get_nowait()
    loop = asyncio.get_running_loop()
    hung_up: asyncio.Future[_Chunk | None] = loop.create_future()
    fd = client.fileno()
    loop.add_reader(fd, _settle_once, hung_up)
    getter = asyncio.ensure_future(queue.get())
    try:
        await asyncio.wait(
            {getter, hung_up}, timeout=max(0.0, limit - client.idle), return_when=asyncio.FIRST_COMPLETED
        )
    finally:
        loop.remove_reader(fd)
        hung_up.cancel()
        if not getter.done():
            getter.cancel()
    if getter.done() and not getter.cancelled():
        return True, getter.result()
    return False, None
