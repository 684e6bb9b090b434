"""The digest scheduler: an APScheduler 3.x ``AsyncIOScheduler`` inside ``serve``.

One cron job per list at its digest hour in its time zone (``[digest] hour`` and
``timezone``, or the list's own), and one per list and schedule its members chose on
their preferences page (``run_member_slot``: a member's digest goes out at their local
hour), with ``coalesce=True`` (missed fires run once),
``max_instances=1`` and a generous ``misfire_grace_time``. A job only enqueues
(``core.digest_schedule.run_list``, in a worker thread): the delivery worker renders and
sends. On start, every list runs its most recent period once, which catches up a
period the scheduler slept through and finishes one a crash interrupted; a period
already done adds nothing (RELIABILITY F14, F15). Once an hour the jobs are
matched to the lists again (new lists, changed hours).

APScheduler is used here and nowhere else (STYLE: one library, one place).
"""

from __future__ import annotations

import asyncio
import datetime as dt
import logging
from collections.abc import Callable
from zoneinfo import ZoneInfo

from apscheduler.schedulers.asyncio import AsyncIOScheduler
from apscheduler.triggers.cron import CronTrigger
from apscheduler.triggers.interval import IntervalTrigger

from mailforum import metrics
from mailforum.config import Config
from mailforum.core import digest_schedule
from mailforum.db import queries
from mailforum.db.models import utcnow
from mailforum.db.session import Database

log = logging.getLogger(__name__)

Clock = Callable[[], dt.datetime]
# A job: the list's own run (None) or its members' run at their (hour, time zone).
Job = tuple[str, tuple[int, str] | None]


class DigestScheduler:
    """Queues each list's digests at its hour; ``start`` also catches up missed periods."""

    def __init__(self, db: Database, config: Config, clock: Clock = utcnow, catch_up: bool = True) -> None:
        self.db = db
        self.config = config
        self.clock = clock
        self.catch_up = catch_up
        self.scheduler = AsyncIOScheduler(timezone=dt.UTC)
        self._schedules: dict[Job, tuple[int, str]] = {}
        self._catching_up: asyncio.Task[None] | None = None
        self.runs: list[digest_schedule.RunResult] = []  # what this scheduler queued (for tests and logs)

    def _lists(self) -> dict[Job, tuple[int, str]]:
        cfg = self.config.digest
        with self.db.read_session() as session:
            rows = queries.digest_hours(session)
            slots = queries.member_digest_slots(session)
        jobs: dict[Job, tuple[int, str]] = {
            (name, None): (cfg.hour if hour is None else hour, tz or cfg.timezone) for name, hour, tz in rows
        }
        for name, hour, tz in slots:
            own = jobs.get((name, None))
            if own is not None:
                slot = digest_schedule.member_schedule(own, hour, tz)
                if slot != own:
                    jobs[(name, slot)] = slot
        return jobs

    @staticmethod
    def _job_id(job: Job) -> str:
        name, slot = job
        return f"digest:{name}" if slot is None else f"digest:{name}@{slot[0]}:{slot[1]}"

    def _sync_jobs(self, lists: dict[Job, tuple[int, str]]) -> None:
        for job in set(self._schedules) - set(lists):
            self.scheduler.remove_job(self._job_id(job))
            del self._schedules[job]
        for job, (hour, tz) in lists.items():
            if self._schedules.get(job) == (hour, tz):
                continue
            self.scheduler.add_job(
                self._run,
                CronTrigger(hour=hour, minute=0, timezone=ZoneInfo(tz)),
                args=[job],
                id=self._job_id(job),
                replace_existing=True,
                coalesce=True,
                max_instances=1,
                misfire_grace_time=int(self.config.digest.misfire_grace),
            )
            self._schedules[job] = (hour, tz)

    async def _refresh(self) -> None:
        try:
            self._sync_jobs(await asyncio.to_thread(self._lists))
        except Exception:
            log.exception("digest scheduler: reading the lists failed; keeping the old schedule")

    async def _run(self, job: Job) -> None:
        name, slot = job
        try:
            if slot is None:
                result = await asyncio.to_thread(
                    digest_schedule.run_list, self.db, self.config, name, self.clock(), scheduled=True
                )
            else:
                result = await asyncio.to_thread(
                    digest_schedule.run_member_slot, self.db, self.config, name, *slot, self.clock()
                )
            self.runs.append(result)
            metrics.DIGEST_RUNS.inc()
        except Exception:  # the next fire (or the next start) finishes the period
            log.exception("digest run for %s failed", self._job_id(job))

    async def _catch_up(self, jobs: list[Job]) -> None:
        for job in jobs:
            await self._run(job)

    async def start(self) -> None:
        lists = await asyncio.to_thread(self._lists)
        self._sync_jobs(lists)
        self.scheduler.add_job(
            self._refresh, IntervalTrigger(hours=1), id="digest:refresh", coalesce=True, max_instances=1
        )
        self.scheduler.start()
        if self.catch_up:
            self._catching_up = asyncio.create_task(self._catch_up(sorted(lists, key=self._job_id)))

    async def wait_caught_up(self) -> None:
        if self._catching_up is not None:
            await self._catching_up

    async def stop(self) -> None:
        if self._catching_up is not None:
            await self._catching_up
        self.scheduler.shutdown(wait=False)
