"""Helpers for the web archive tests: the app on a loopback port, seeding through the real processing path."""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Iterable
from typing import Any

import httpx

from mailforum.config import Config
from mailforum.core import archive, lists
from mailforum.db.session import Database
from mailforum.runners.web import WebServer, create_app
from mailforum.web.forms import ConfirmationRequest
from tests.helpers import DOMAIN, message


class WebThread:
    """The web archive (create_app + WebServer, as ``serve`` runs it) in a background event loop."""

    def __init__(self, config: Config, db: Database, request_confirmation: Any = None) -> None:
        self.config = config
        self.app = create_app(db, config, request_confirmation)
        self.server = WebServer(self.app, config.web.host, config.web.port)
        self.loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self.loop.run_forever, daemon=True)
        self.base = f"http://127.0.0.1:{config.web.port}"

    def start(self) -> None:
        self._thread.start()
        asyncio.run_coroutine_threadsafe(self.server.start(), self.loop).result(30)

    def stop(self) -> None:
        asyncio.run_coroutine_threadsafe(self.server.stop(), self.loop).result(30)
        self.loop.call_soon_threadsafe(self.loop.stop)
        self._thread.join(10)
        self.loop.close()

    def client(self, **kw: Any) -> httpx.Client:
        return httpx.Client(base_url=self.base, timeout=10, **kw)


class Recorder:
    """A stand-in for the subscriptions feature's hook that records what it was asked."""

    def __init__(self) -> None:
        self.calls: list[ConfirmationRequest] = []

    def __call__(self, request: ConfirmationRequest) -> None:
        self.calls.append(request)


def seed(config: Config, db: Database, raws: Iterable[bytes], list_name: str = "dev") -> None:
    """Store messages through the same processing as live mail (import path)."""
    with db.read_session() as session:
        mlist = lists.get_list(session, list_name)
    report = archive.import_messages(db, config, mlist, raws)
    assert report.failed == 0, report.errors


def thread_messages(count: int, prefix: str = "t", subject: str = "A long topic") -> list[bytes]:
    """A root and ``count - 1`` replies, each answering the previous one."""
    raws = [message(subject, f"<{prefix}0@example.com>", body="The root post.\n")]
    for i in range(1, count):
        raws.append(
            message(
                f"Re: {subject}",
                f"<{prefix}{i}@example.com>",
                sender=f"Person {i % 7} <p{i % 7}@example.com>",
                body=f"Reply number {i}.\n",
                extra=f"In-Reply-To: <{prefix}{i - 1}@example.com>",
            )
        )
    return raws


__all__ = ["DOMAIN", "Recorder", "WebThread", "seed", "thread_messages"]
