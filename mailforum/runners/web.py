"""The web: one Starlette app served by uvicorn on [web] host:port.

This module holds what is HTTP plumbing rather than pages: the route table
(``ROUTES``), the security headers every response carries (``SecurityHeaders``: a
strict Content-Security-Policy and friends), the error pages (``ErrorPages``: 400,
404, 405, and a polite 503 when the database is down), and the server (``WebServer``).
The endpoints live in ``web/``, one class per group, all sharing one ``WebContext``:

    web/archive_pages.py  ArchivePages   the lists, topics, a topic, permalinks, search, months
    web/feeds.py          Feeds          Atom feeds, mbox downloads, attachments
    web/subscribe.py      SubscribeForms the join and watch forms (CSRF, rate limits)
    web/links.py          SignedLinks    confirm, unsubscribe, enable delivery, moderate

To add a group of routes: write a class in ``web/`` whose ``__init__`` takes the
``WebContext`` (and whatever it needs besides), build it in ``create_app`` under a
short name in ``groups``, and add its rows to ``ROUTES`` under that name.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import socket
from collections.abc import Iterator

import sqlalchemy.exc
import uvicorn
from starlette.applications import Starlette
from starlette.datastructures import MutableHeaders
from starlette.middleware import Middleware
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from mailforum.config import Config
from mailforum.db.session import Database
from mailforum.errors import ConfigError
from mailforum.web.archive_pages import ArchivePages
from mailforum.web.context import WebContext
from mailforum.web.feeds import Feeds
from mailforum.web.forms import RequestConfirmation
from mailforum.web.links import SignedLinks
from mailforum.web.subscribe import SubscribeForms

log = logging.getLogger(__name__)

# Nothing but our own stylesheet and forms: no script, no inline style, no frames, no
# remote images, no <base>. Attachments add "sandbox", in case a browser renders one.
CSP = (
    "default-src 'none'; style-src 'self'; img-src 'self'; form-action 'self'; "
    "base-uri 'none'; frame-ancestors 'none'"
)
SECURITY_HEADERS = (
    ("content-security-policy", CSP),
    ("x-content-type-options", "nosniff"),
    ("referrer-policy", "same-origin"),
    ("x-frame-options", "DENY"),
    ("cross-origin-opener-policy", "same-origin"),
    ("permissions-policy", "interest-cohort=()"),
)

GET, GET_POST = ("GET",), ("GET", "POST")

# Path, endpoint group (a name in create_app's ``groups``), endpoint (a method of that
# group, and the route's name), methods. Path parameters a test can fill in for every
# route: list, topic, post, index, filename, year, month, tag (tests S15).
ROUTES: tuple[tuple[str, str, str, tuple[str, ...]], ...] = (
    ("/", "pages", "index", GET),
    ("/static/style.css", "pages", "stylesheet", GET),
    ("/lists/{list}", "pages", "topics", GET),
    ("/lists/{list}/search", "pages", "search", GET),
    ("/lists/{list}/archive", "pages", "archive", GET),
    ("/lists/{list}/feed.atom", "feeds", "list_feed", GET),
    ("/lists/{list}/tags/{tag}", "pages", "tag_topics", GET),
    ("/lists/{list}/tags/{tag}/feed.atom", "feeds", "tag_feed", GET),
    ("/lists/{list}/mbox/{year:int}-{month:int}.mbox", "feeds", "month_mbox", GET),
    ("/lists/{list}/join", "forms", "join", GET_POST),
    ("/lists/{list}/topics/{topic:int}", "pages", "topic", GET),
    ("/lists/{list}/topics/{topic:int}/feed.atom", "feeds", "topic_feed", GET),
    ("/lists/{list}/topics/{topic:int}/topic.mbox", "feeds", "topic_mbox", GET),
    ("/lists/{list}/topics/{topic:int}/watch", "forms", "watch", GET_POST),
    ("/lists/{list}/posts/{post:int}", "pages", "permalink", GET),
    # The last segment is a generated name (textsafe.url_filename) and is not read: links
    # sent before it, with a path-like name in it, still work.
    ("/lists/{list}/posts/{post:int}/attachments/{index:int}/{filename:path}", "feeds", "download", GET),
    # Signed links in bounce warnings and moderator notices: GET shows a page with buttons, POST acts.
    ("/lists/{list}/enable/{token}", "links", "enable_delivery", GET_POST),
    ("/lists/{list}/held/{token}", "links", "moderate", GET_POST),
    # Links from our mails. Outside /lists/NAME/: the signed token names the list, and they
    # must work for private lists too. GET shows a button and changes nothing; POST acts.
    ("/confirm/{token}", "links", "confirm", GET_POST),
    ("/unsubscribe/{token}", "links", "unsubscribe", GET_POST),  # RFC 8058 one-click POST
)


class SecurityHeaders:
    """ASGI middleware: the security headers on every response that did not set its own."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return

        async def send_secured(message: Message) -> None:
            if message["type"] == "http.response.start":
                headers = MutableHeaders(scope=message)
                for name, value in SECURITY_HEADERS:
                    headers.setdefault(name, value)
            await send(message)

        await self.app(scope, receive, send_secured)


class ErrorPages:
    """What a reader sees instead of a stack trace."""

    def __init__(self, ctx: WebContext) -> None:
        self.ctx = ctx

    def unavailable(self, request: Request, exc: Exception) -> Response:
        """The database is down or saturated: a polite 503, never a stack trace."""
        log.warning("web archive: database unavailable: %s", str(exc).strip().splitlines()[0][:200])
        response = self.ctx.page(request, "web/message.html", 503, cache=False, mlist=None, kind="503")
        response.headers["retry-after"] = "30"
        return response

    def not_found(self, request: Request, exc: Exception) -> Response:
        status = getattr(exc, "status_code", 404)
        status = status if status in (400, 404, 405) else 404
        return self.ctx.page(request, "web/message.html", status, cache=False, mlist=None, kind=str(status))


def create_app(
    db: Database, config: Config, request_confirmation: RequestConfirmation | None = None
) -> Starlette:
    """The web as an ASGI app. ``request_confirmation`` is the subscriptions feature's hook."""
    ctx = WebContext(db, config)
    groups: dict[str, object] = {
        "pages": ArchivePages(ctx),
        "feeds": Feeds(ctx),
        "forms": SubscribeForms(ctx, request_confirmation),
        "links": SignedLinks(ctx),
    }
    routes = [
        Route(path, getattr(groups[group], name), methods=list(methods), name=name)
        for path, group, name, methods in ROUTES
    ]
    errors = ErrorPages(ctx)
    return Starlette(
        routes=routes,
        middleware=[Middleware(SecurityHeaders)],
        exception_handlers={
            400: errors.not_found,
            404: errors.not_found,
            405: errors.not_found,
            sqlalchemy.exc.OperationalError: errors.unavailable,
            sqlalchemy.exc.TimeoutError: errors.unavailable,
        },
    )


class _Server(uvicorn.Server):
    """uvicorn without its own signal handling: ``mailforum serve`` owns SIGTERM/SIGINT."""

    @contextlib.contextmanager
    def capture_signals(self) -> Iterator[None]:
        yield


class WebServer:
    """The archive on [web] host:port; ``start`` returns once the socket listens."""

    def __init__(self, app: ASGIApp, host: str, port: int, trusted_proxies: str = "127.0.0.1,::1") -> None:
        self.host, self.port = host, port
        proxies = [p.strip() for p in trusted_proxies.split(",") if p.strip()]
        self._config = uvicorn.Config(
            app,
            host=host,
            port=port,
            lifespan="off",
            access_log=False,
            log_config=None,
            server_header=False,
            proxy_headers=bool(proxies),
            forwarded_allow_ips=proxies or None,
        )
        self._server = _Server(self._config)
        self._task: asyncio.Task[None] | None = None

    async def start(self) -> None:
        # Bind here, so a taken port is one clear error instead of uvicorn's sys.exit.
        # proto=IPPROTO_TCP: asyncio turns Nagle off (TCP_NODELAY) only on sockets that say TCP;
        # with proto 0 every keep-alive response waits 40 ms for a delayed ACK.
        family = socket.AF_INET6 if ":" in self.host else socket.AF_INET
        sock = socket.socket(family, socket.SOCK_STREAM, socket.IPPROTO_TCP)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            sock.bind((self.host, self.port))
        except OSError as exc:
            sock.close()
            raise ConfigError(f"[web] cannot listen on {self.host}:{self.port}: {exc.strerror}") from None
        sock.set_inheritable(True)
        self._task = asyncio.create_task(self._server.serve(sockets=[sock]))
        while not self._server.started:
            if self._task.done():
                self._task.result()
                raise ConfigError(f"[web] server on {self.host}:{self.port} did not start")
            await asyncio.sleep(0.01)
        log.info("web archive on http://%s:%s", self.host, self.port)

    async def stop(self) -> None:
        if self._task is None:
            return
        self._server.should_exit = True
        with contextlib.suppress(asyncio.CancelledError):
            await self._task
