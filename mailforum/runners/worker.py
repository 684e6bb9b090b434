"""The spool processor: claim accepted messages, process them, park what fails.

Mailman's runner semantics, with a table for a queue: never drop, and move a
message aside (state ``failed``, with its error) after ``max_attempts``. A claim
counts the attempt in its own commit, so a message that kills the process is still
parked after three tries. Parsing happens before the write transaction opens, so
on SQLite the writer lock is held only for the inserts, not for parsing.

Fresh messages are claimed in batches and stored in transactions of at most
``MAX_HOLD`` seconds (ended sooner when another thread waits for the SQLite write lock),
first without a savepoint per message; if one of them fails, the transaction is rolled
back and the same messages are stored again with a savepoint each, so the failure is
recorded alone. A message that was tried before is retried alone, so a poison message
cannot take the rest of a batch down with it.

Ingest comes first. The processor shares the GIL with the SMTP event loop and, on
SQLite, the write lock with the spool writer; running flat out during a burst it
cut the acceptance rate to a quarter (bench/ingest.py). So while mail is arriving
(a spool commit within ``BUSY_WINDOW``) it works in small batches and rests between
them, taking at most ``BUSY_SHARE`` of the time; the backlog it leaves is drained at
full speed as soon as the burst ends. Nothing waits on processing to be acknowledged.
"""

from __future__ import annotations

import datetime as dt
import logging
import socket
import threading
import time
import traceback
from collections.abc import Callable

from sqlalchemy.orm import Session

from mailforum import metrics
from mailforum.config import Config
from mailforum.core import archive, fanout, routing, threads
from mailforum.db import spool
from mailforum.db.models import SpoolEntry, SpoolState, utcnow
from mailforum.db.session import Database
from mailforum.mail.parse import ParsedMessage, Unprocessable, parse

log = logging.getLogger(__name__)

Clock = Callable[[], dt.datetime]

BUSY_WINDOW = 0.25  # seconds since the last spool commit during which ingest counts as busy
BUSY_BATCH = 10  # messages per batch while ingest is busy
BUSY_SHARE = 0.2  # at most this fraction of wall time spent processing while ingest is busy
# Seconds of processing per write transaction. On SQLite the transaction holds the one write
# lock, which the spool writer needs for every 250 (RELIABILITY F20): 100 held posts took
# 3.4 s in one transaction (bench/burst.py). A writer of this process waiting for the lock
# ends the transaction sooner, after the message in hand.
MAX_HOLD = 0.2
YIELD_WAIT = 0.5  # at most this long, after such a commit, for the waiting writer to get the lock


class SpoolProcessor:
    def __init__(self, db: Database, config: Config, clock: Clock = utcnow) -> None:
        self.db = db
        self.config = config
        self.clock = clock
        self.lease = dt.timedelta(seconds=config.processing.lease)
        self.node = config.processing.node_name or socket.gethostname()
        self.wake = threading.Event()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._last_commit = -BUSY_WINDOW
        self.processed = 0
        self.after_batch: Callable[[], None] = lambda: None  # e.g. wake delivery: copies were written

    def notify(self, _ids: list[int] | None = None) -> None:
        """Called by the spool writer after each commit."""
        self._last_commit = time.monotonic()
        self.wake.set()

    def ingest_busy(self) -> bool:
        return time.monotonic() - self._last_commit < BUSY_WINDOW

    def _rest(self, until: float) -> None:
        """Rest until ``until``, or sooner once ingest is quiet: a burst that ends during the
        rest leaves a backlog to drain at full speed, not seconds of nothing (bench/posts.py:
        a 1.8 s rest after a slow busy batch, when the last message had long been spooled)."""
        while not self._stop.is_set():
            now = time.monotonic()
            quiet_at = self._last_commit + BUSY_WINDOW
            if now >= until or now >= quiet_at:
                return
            self._stop.wait(min(until, quiet_at) - now)

    def run_once(self, limit: int | None = None) -> int:
        """Process one batch of due messages (at most ``limit``); returns how many were claimed."""
        now = self.clock()
        cfg = self.config.processing
        with self.db.session() as session:
            claimed = spool.claim(
                session, now, limit or cfg.batch_size, self.lease, retries=False, node=self.node
            )
            if not claimed:
                claimed = spool.claim(session, now, 1, self.lease, retries=True, node=self.node)
        if not claimed:
            return 0
        parsed: dict[int, ParsedMessage] = {}
        failures: dict[int, tuple[str, bool]] = {}
        for item in claimed:
            if item.attempts > cfg.max_attempts:
                failures[item.id] = (f"processing did not finish in {cfg.max_attempts} attempts", True)
                continue
            try:
                parsed[item.id] = parse(item.raw)
            except Unprocessable as exc:
                failures[item.id] = (f"unprocessable: {exc}", True)
            except Exception:
                failures[item.id] = (traceback.format_exc(limit=8), False)
        self._store(claimed, parsed, failures, now)
        self.processed += len(claimed)
        return len(claimed)

    def _store(
        self,
        claimed: list[spool.ClaimedEntry],
        parsed: dict[int, ParsedMessage],
        failures: dict[int, tuple[str, bool]],
        now: dt.datetime,
    ) -> None:
        pending = list(reversed(claimed))
        careful = False
        while pending:
            taken: list[spool.ClaimedEntry] = []
            done: list[spool.Finished] = []
            try:
                with self.db.session() as session:
                    if not careful:
                        threads.hold_list_locks(session)
                    # One statement locks the rest of the batch; the entries end in one
                    # executemany before the commit, with the posts they made.
                    fresh = spool.lock_new(session, [item.id for item in pending])
                    # The posts' fan-out is written together before the commit (core.fanout.Deferred);
                    # stored again one by one, each message's is written in its own savepoint.
                    deferred = None if careful else fanout.Deferred()
                    if deferred is not None:
                        routing.prefetch(
                            session,
                            self.config,
                            (
                                (parsed[i.id], i.rcpt_tos, i.received_at)
                                for i in pending
                                if i.id in parsed and i.id in fresh and i.protocol != spool.IMPORTED
                            ),
                        )
                    started = time.monotonic()
                    while pending:
                        taken.append(pending.pop())
                        self._store_one(session, taken[-1], fresh, parsed, failures, now, deferred, done)
                        if time.monotonic() - started > MAX_HOLD or self.db.writers_waiting():
                            break
                    if deferred is not None:
                        deferred.flush(session, now)
                    spool.finish_all(session, done, now)
            except Exception:
                if careful:
                    raise
                # One of them failed and took the transaction with it: store the same
                # messages again, each in a savepoint, so the failure is parked alone.
                log.info("a batch of %s failed; storing it again message by message", len(taken))
                pending.extend(reversed(taken))
                careful = True
                continue
            careful = False
            # Counted once committed, so a batch stored again is not counted twice.
            clock = self.clock()
            for item in taken:
                metrics.PROCESSING_SECONDS.observe(max((clock - item.received_at).total_seconds(), 0.0))
            self._step_aside()

    def _step_aside(self) -> None:
        """Let a writer of this process that waits for the lock have it before we take it again."""
        deadline = time.monotonic() + YIELD_WAIT
        while self.db.writers_waiting() and time.monotonic() < deadline:
            time.sleep(0.002)

    def _store_one(
        self,
        session: Session,
        item: spool.ClaimedEntry,
        fresh: set[int],
        parsed: dict[int, ParsedMessage],
        failures: dict[int, tuple[str, bool]],
        now: dt.datetime,
        deferred: fanout.Deferred | None,
        done: list[spool.Finished],
    ) -> None:
        """Store one message. With ``deferred`` (the batch's fan-out): without a savepoint of its
        own (two statements fewer), so an error rolls back the whole transaction and ``_store``
        tries again carefully, each message in a savepoint with its fan-out written at once."""
        if item.id not in fresh:  # another process finished it after our lease ran out
            return
        if item.id in failures:
            error, permanent = failures[item.id]
            self._failed(session, item.id, error, now, permanent)
            return
        if deferred is not None:
            outcomes = self._process(session, item, parsed[item.id], now, deferred)
        else:
            try:
                with session.begin_nested():
                    outcomes = self._process(session, item, parsed[item.id], now)
            except Exception:
                self._failed(session, item.id, traceback.format_exc(limit=8), now, False)
                return
        discarded = bool(outcomes) and all(o.discarded for o in outcomes)
        state = SpoolState.DISCARDED if discarded else SpoolState.DONE
        done.append(spool.Finished(item.id, state, "\n".join(o.summary for o in outcomes)))

    def _process(
        self,
        session: Session,
        item: spool.ClaimedEntry,
        parsed: ParsedMessage,
        now: dt.datetime,
        deferred: fanout.Deferred | None = None,
    ) -> list[routing.Outcome]:
        """Live mail as it came; an entry ``import-mbox`` parked as the import would have stored it."""
        if item.protocol == spool.IMPORTED:  # no policy, no notifications, dated by its Date
            sender, received = parsed.from_address, archive.imported_arrival(parsed, now)
        else:
            sender, received = item.mail_from, item.received_at
        args = (session, self.config, parsed, item.raw, sender, item.rcpt_tos, item.id, received, now)
        return routing.process(
            *args, imported=item.protocol == spool.IMPORTED, web=item.protocol == spool.WEB, deferred=deferred
        )

    def _failed(self, session: Session, entry_id: int, error: str, now: dt.datetime, permanent: bool) -> None:
        cfg = self.config.processing
        entry = session.get(SpoolEntry, entry_id)
        assert entry is not None  # locked by lock_new in this transaction
        parked = spool.record_failure(
            entry, error, now, cfg.max_attempts, dt.timedelta(seconds=cfg.retry_delay), permanent
        )
        first = error.strip().splitlines()[-1] if error.strip() else "error"
        if parked:
            log.error("spool %s parked after %s attempt(s): %s", entry.id, entry.attempts, first)
        else:
            log.warning("spool %s attempt %s failed, will retry: %s", entry.id, entry.attempts, first)

    def drain(self) -> int:
        """Process until nothing is due (CLI and tests)."""
        total = 0
        while n := self.run_once():
            total += n
        return total

    # -- the thread ----------------------------------------------------------

    def start(self) -> None:
        self._thread = threading.Thread(target=self._run, name="spool-processor", daemon=True)
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        self.wake.set()
        if self._thread is not None:
            self._thread.join(timeout=30)

    def _run(self) -> None:
        with self.db.session() as session:
            released = spool.release_leases(session, self.node)
        if released:
            log.info("took back %s spool claim(s) left by this node's previous run", released)
        failures = 0
        while not self._stop.is_set():
            busy = self.ingest_busy()
            started = time.monotonic()
            try:
                count = self.run_once(BUSY_BATCH if busy else None)
                failures = 0
                if count:
                    self.after_batch()
            except Exception:
                failures += 1
                log.exception("spool processing failed; retrying")
                count = 0
                self._stop.wait(min(30.0, 0.5 * 2**failures))
            if count and busy:
                # Leave the GIL and the write lock to ingest for a while (see the module doc).
                self._rest(time.monotonic() + (time.monotonic() - started) * (1 - BUSY_SHARE) / BUSY_SHARE)
            if count == 0:
                self.wake.wait(timeout=1.0)
                self.wake.clear()
                # Let concurrent sessions' commits gather into one batch.
                time.sleep(0.02)
