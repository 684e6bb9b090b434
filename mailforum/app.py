"""The composition root: builds the parts of ``mailforum serve`` from the config and runs them.

Each part has ``start`` and ``stop``; they start in order and stop in reverse, so
ingest stops taking mail before the processor that empties its spool stops.
"""

from __future__ import annotations

import asyncio
import logging
import signal
from dataclasses import dataclass
from typing import Protocol

from mailforum.config import Config
from mailforum.core import lists, subscriptions
from mailforum.db import migrate
from mailforum.db.models import ConfirmAction, utcnow
from mailforum.db.session import Database
from mailforum.errors import InvalidInput
from mailforum.runners import supervisor, wakeup
from mailforum.runners.delivery import DeliveryWorker
from mailforum.runners.housekeeping import Housekeeper
from mailforum.runners.ingest import IngestServer
from mailforum.runners.scheduler import DigestScheduler
from mailforum.runners.web import WebServer, create_app
from mailforum.runners.worker import SpoolProcessor
from mailforum.web.forms import ConfirmationRequest, RequestConfirmation

log = logging.getLogger(__name__)


class Part(Protocol):
    name: str

    async def start(self) -> None: ...

    async def stop(self) -> None: ...


@dataclass
class WakeupPart:
    """The wake-up channel (runners/wakeup.py): started first, closed after every user."""

    channel: wakeup.Channel
    name: str = "wake-ups"

    async def start(self) -> None:
        pass

    async def stop(self) -> None:
        await asyncio.to_thread(self.channel.close)


@dataclass
class ProcessorPart:
    processor: SpoolProcessor
    channel: wakeup.Channel
    name: str = "processor"

    async def start(self) -> None:
        self.processor.after_batch = lambda: self.channel.send(wakeup.OUTBOX)
        self.channel.listen(wakeup.SPOOL, self.processor.wake.set)
        self.processor.start()
        self.processor.wake.set()  # messages accepted before a crash are processed at once

    async def stop(self) -> None:
        await asyncio.to_thread(self.processor.stop)


@dataclass
class IngestPart:
    server: IngestServer
    grace: float
    name: str = "ingest"

    async def start(self) -> None:
        await self.server.start()

    async def stop(self) -> None:
        await self.server.stop(self.grace)


@dataclass
class DeliveryPart:
    """The outbox worker (runners/delivery.py) as a task on the serve loop."""

    worker: DeliveryWorker
    channel: wakeup.Channel
    name: str = "delivery"
    task: asyncio.Task[object] | None = None

    async def start(self) -> None:
        loop = asyncio.get_running_loop()

        def woken() -> None:
            loop.call_soon_threadsafe(self.worker.wake.set)

        self.channel.listen(wakeup.OUTBOX, woken)
        self.task = asyncio.create_task(self.worker.run())

    async def stop(self) -> None:
        self.worker.stop()
        if self.task is not None:
            await self.task


@dataclass
class HousekeepingPart:
    """Bounce warnings and removals, held-post expiry (runners/housekeeping.py)."""

    keeper: Housekeeper
    name: str = "housekeeping"
    task: asyncio.Task[None] | None = None

    async def start(self) -> None:
        self.task = asyncio.create_task(self.keeper.run())

    async def stop(self) -> None:
        self.keeper.stop()
        if self.task is not None:
            await self.task


@dataclass
class WebPart:
    server: WebServer
    db: Database  # the web's own engine and pool, so a crowd of readers cannot starve ingest
    name: str = "web"

    async def start(self) -> None:
        await self.server.start()

    async def stop(self) -> None:
        try:
            await self.server.stop()
        finally:
            self.db.dispose()


@dataclass
class SchedulerPart:
    """The digest scheduler (runners/scheduler.py): queues digests at each list's hour."""

    scheduler: DigestScheduler
    name: str = "scheduler"

    async def start(self) -> None:
        await self.scheduler.start()

    async def stop(self) -> None:
        await self.scheduler.stop()


@dataclass(frozen=True, slots=True)
class Switches:
    """Which parts of ``serve`` run; each can be switched off on the command line."""

    ingest: bool = True
    process: bool = True
    delivery: bool = True
    web: bool = True
    scheduler: bool = True
    reuse_port: bool = False  # several ingest processes share the SMTP and LMTP ports


def web_confirmations(db: Database, config: Config) -> RequestConfirmation:
    """The web forms' hook: "join this list" and "watch this topic" send the same confirmation
    mail as ``subscribe`` and ``watch T`` by mail (core.subscriptions, with its caps)."""

    def request(asked: ConfirmationRequest) -> None:
        action = ConfirmAction.WATCH if asked.kind == "watch" else ConfirmAction.SUBSCRIBE
        try:
            who = lists.check_address(
                asked.address,
                check_dns=config.subscriptions.check_dns,
                local_domains=config.site.allow_local_domains,
            )
        except InvalidInput:
            log.info("web %s request for %s: address refused by validation", asked.kind, asked.list_name)
            return
        with db.session() as session:
            mlist = lists.get_list(session, asked.list_name)
            subscriptions.request(
                session, config, mlist, who, action, utcnow(), topic_id=asked.topic_id, source="web"
            )

    return request


def build_parts(
    config: Config,
    db: Database,
    switches: Switches,
    request_confirmation: RequestConfirmation | None = None,
) -> list[Part]:
    """The parts of ``serve``. ``request_confirmation`` is what the web's join/watch forms call;
    by default the subscriptions feature's double opt-in (``web_confirmations``)."""
    processor = SpoolProcessor(db, config)
    channel = wakeup.open_channel(config.database.url)
    parts: list[Part] = [WakeupPart(channel)]
    if switches.delivery:
        parts.append(DeliveryPart(DeliveryWorker(db, config), channel))
    if switches.process:
        parts.append(ProcessorPart(processor, channel))
        parts.append(HousekeepingPart(Housekeeper(db, config)))
    if switches.ingest:

        def committed(ids: list[int]) -> None:
            if switches.process:
                processor.notify(ids)  # this process's own processor, without a round trip
            channel.send(wakeup.SPOOL)  # the processors of other processes and nodes

        ingest = IngestServer(config, db, committed, reuse_port=switches.reuse_port)
        parts.append(IngestPart(ingest, config.smtp.shutdown_grace))
    if switches.scheduler:
        parts.append(SchedulerPart(DigestScheduler(db, config)))
    if switches.web:
        web_db = Database(config.database.url, config.database.busy_timeout)
        hook = request_confirmation or web_confirmations(web_db, config)

        def spooled() -> None:  # a web post is in the spool: wake the processors, here and elsewhere
            if switches.process:
                processor.wake.set()
            channel.send(wakeup.SPOOL)

        app = create_app(web_db, config, hook, spooled)
        server = WebServer(app, config.web.host, config.web.port, config.web.trusted_proxies)
        parts.append(WebPart(server, web_db))
    return parts


async def serve(config: Config, switches: Switches) -> None:
    """Run until SIGTERM or SIGINT; then shut down without losing a message."""
    db = Database(config.database.url, config.database.busy_timeout, create=False)
    migrate.require_current(db)
    db.check_durability()
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    parts = build_parts(config, db, switches)
    started: list[Part] = []
    try:
        for part in parts:
            await part.start()
            started.append(part)
        log.info("mailforum serving (%s) on %s", ", ".join(p.name for p in parts), db.safe_url)
        supervisor.report_ready()
        await stop.wait()
        log.info("shutting down")
    finally:
        for part in reversed(started):
            try:
                await part.stop()
            except Exception:
                log.exception("stopping %s failed", part.name)
        db.dispose()
