"""Periodic care in ``serve``: bounce warnings and removals, expiry of held posts, retention,
and forgetting expired sign-in links and web sessions.

Every ``[bounces] housekeeping_interval`` seconds, in a worker thread, one
transaction each (retention: one per batch, core/retention.py); ``mailforum
housekeeping`` runs one round by hand. Safe on several nodes at once: the members due a warning are
claimed with ``FOR UPDATE SKIP LOCKED`` (PostgreSQL), the rest are idempotent.
"""

from __future__ import annotations

import asyncio
import contextlib
import datetime as dt
import logging
from collections.abc import Callable

from mailforum.config import Config
from mailforum.core import bounces, moderation, retention
from mailforum.db import websessions
from mailforum.db.models import utcnow
from mailforum.db.session import Database

log = logging.getLogger(__name__)

# Sign-in links are kept this long after they expire, so a late click still hears "expired".
LINKS_KEPT = dt.timedelta(days=1)

# Held posts expired per round, in one transaction: 1,000 held the SQLite write lock for
# 2.8 s, near the spool writer's busy_timeout (RELIABILITY F20); a flood of held posts
# then takes a few rounds to expire, with one summary per list each round.
EXPIRE_BATCH = 200


class Housekeeper:
    def __init__(self, db: Database, config: Config, clock: Callable[[], dt.datetime] = utcnow) -> None:
        self.db = db
        self.config = config
        self.clock = clock
        self._stop = asyncio.Event()

    def once(self) -> dict[str, int]:
        """One round: how many of each thing it did, by name."""
        now = self.clock()
        with self.db.session() as session:
            warned, removed = bounces.housekeeping(session, self.config, now)
        with self.db.session() as session:
            expired = moderation.expire(session, self.config, now, EXPIRE_BATCH)
        if warned or removed or expired:
            log.info("housekeeping: %d warned, %d removed, %d held posts expired", warned, removed, expired)
        with self.db.session() as session:
            links = websessions.forget_links(session, now - LINKS_KEPT)
            sessions = websessions.forget_sessions(session, now)
        done = {
            "bounce warnings sent": warned,
            "members removed": removed,
            "held posts expired": expired,
            "sign-in links forgotten": links,
            "web sessions expired": sessions,
        }
        return done | retention.purge(self.db, self.config, now)

    async def run(self) -> None:
        while not self._stop.is_set():
            try:
                await asyncio.to_thread(self.once)
            except Exception as exc:  # a database hiccup: try again next round
                log.error(
                    "housekeeping failed: %s", str(exc).splitlines()[0] if str(exc) else type(exc).__name__
                )
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._stop.wait(), self.config.bounces.housekeeping_interval)

    def stop(self) -> None:
        self._stop.set()
