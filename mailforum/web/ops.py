"""What operators and their monitoring read: ``/metrics``, ``/healthz``, ``/readyz``.

``/metrics`` (Prometheus text, mailforum/metrics.py) answers clients from [metrics]
trusted (default: loopback), or anyone with an API token that is not bound to one
list; everyone else gets 404, as for a page that does not exist. ``/healthz`` answers
200 while the process serves HTTP; ``/readyz`` 200 when the database answers, else 503.
"""

from __future__ import annotations

import ipaddress
import logging
import time

import sqlalchemy.exc
from starlette.concurrency import run_in_threadpool
from starlette.exceptions import HTTPException
from starlette.requests import Request
from starlette.responses import PlainTextResponse, Response
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from mailforum import metrics
from mailforum.config import Config
from mailforum.core import api_tokens
from mailforum.db.session import Database
from mailforum.errors import DatabaseError

log = logging.getLogger(__name__)

NO_STORE = {"cache-control": "no-store"}


def networks(text: str) -> list[ipaddress.IPv4Network | ipaddress.IPv6Network]:
    return [ipaddress.ip_network(p.strip(), strict=False) for p in text.split(",") if p.strip()]


class Ops:
    def __init__(self, db: Database, config: Config) -> None:
        self.db = db
        self.trusted = networks(config.metrics.trusted)

    def _trusted(self, request: Request) -> bool:
        host = request.client.host if request.client else ""
        try:
            address = ipaddress.ip_address(host)
        except ValueError:
            return False
        return any(address in net for net in self.trusted if net.version == address.version)

    def _token_allows(self, request: Request) -> bool:
        scheme, _, token = request.headers.get("authorization", "").partition(" ")
        if scheme.lower() != "bearer" or not token:
            return False
        with self.db.read_session() as session:
            principal = api_tokens.authenticate(session, token)
        return principal is not None and principal.list_id is None

    async def metrics(self, request: Request) -> Response:
        if not self._trusted(request) and not await run_in_threadpool(self._token_allows, request):
            raise HTTPException(404)
        body = await run_in_threadpool(metrics.exposition, self.db)
        return Response(body, 200, NO_STORE, metrics.CONTENT_TYPE)

    async def healthz(self, request: Request) -> Response:
        return PlainTextResponse("ok\n", headers=NO_STORE)

    async def readyz(self, request: Request) -> Response:
        try:
            await run_in_threadpool(self.db.ping)
        except (DatabaseError, sqlalchemy.exc.SQLAlchemyError) as exc:
            log.warning("readyz: %s", str(exc).splitlines()[0][:200])
            return PlainTextResponse("database unreachable\n", 503, NO_STORE)
        return PlainTextResponse("ready\n", headers=NO_STORE)


class RequestMetrics:
    """ASGI middleware: counts every HTTP answer by kind (api, ops, page) and status, and times it."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        path: str = scope.get("path", "")
        kind = "api" if path.startswith("/api/") else "ops" if path in OPS_PATHS else "page"
        status = [500]
        started = time.monotonic()

        async def send_counted(message: Message) -> None:
            if message["type"] == "http.response.start":
                status[0] = message["status"]
            await send(message)

        try:
            await self.app(scope, receive, send_counted)
        finally:
            metrics.WEB_REQUESTS.labels(kind, str(status[0])).inc()
            metrics.WEB_SECONDS.labels(kind).observe(time.monotonic() - started)


OPS_PATHS = ("/metrics", "/healthz", "/readyz")
