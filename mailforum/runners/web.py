"""The web: one Starlette app served by uvicorn on [web] host:port.

This module holds what is HTTP plumbing rather than pages: the route table
(``ROUTES``), the security headers every response carries (``SecurityHeaders``: a
strict Content-Security-Policy and friends), the error pages (``ErrorPages``: 400,
404, 405, and a polite 503 when the database is down), and the server (``WebServer``).
Pages, feeds and the stylesheet are gzipped for clients that accept it (``Compression``).
The endpoints live in ``web/``, one class per group, all sharing one ``WebContext``:

    web/archive_pages.py  ArchivePages   the lists, topics, a topic, permalinks, search, months
    web/feeds.py          Feeds          Atom feeds, mbox downloads, attachments
    web/subscribe.py      SubscribeForms the join and watch forms (CSRF, rate limits)
    web/links.py          SignedLinks    confirm, unsubscribe, enable delivery, moderate
    web/signin.py         SignInPages    sign in by mail, sign out, the account page
    web/posting.py        PostingForms   a new topic and a reply from the browser (the spool's path)
    web/preferences.py    PreferencePages a member's settings: delivery, digest hour, topics, leave
    web/ops.py            Ops            /metrics, /healthz, /readyz
    web/admin.py          OwnerPages     /admin: a list's settings, members, held posts, bans, …
    web/moderation.py     ModerationPages a topic's moderators' tools, authors deleting posts, tags

The JSON API under /api/v1 (web/api.py) has its own table of operations, from which
both its routes and its OpenAPI document are made; its errors are RFC 9457 problem
details rather than pages.

Who is signed in: ``web/auth.py`` (``current_address(request)``, ``ctx.auth``).

To add a group of routes: write a class in ``web/`` whose ``__init__`` takes the
``WebContext`` (and whatever it needs besides), build it in ``create_app`` under a
short name in ``groups``, and add its rows to ``ROUTES`` under that name.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import inspect
import logging
import socket
from collections.abc import Callable, Iterator
from typing import Any

import sqlalchemy.exc
import uvicorn
from starlette.applications import Starlette
from starlette.convertors import Convertor, register_url_convertor
from starlette.datastructures import MutableHeaders
from starlette.middleware import Middleware
from starlette.middleware.gzip import GZipMiddleware
from starlette.requests import Request
from starlette.responses import RedirectResponse, Response
from starlette.routing import Route
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from mailforum.config import Config
from mailforum.core import audit
from mailforum.db.session import Database
from mailforum.errors import ConfigError
from mailforum.web import api
from mailforum.web.admin import OwnerPages
from mailforum.web.archive_pages import ArchivePages
from mailforum.web.auth import CsrfFailed, NotAMember, SignInRequired
from mailforum.web.context import WebContext
from mailforum.web.feeds import Feeds
from mailforum.web.forms import RequestConfirmation
from mailforum.web.links import SignedLinks
from mailforum.web.moderation import ModerationPages
from mailforum.web.ops import Ops, RequestMetrics
from mailforum.web.posting import PostingForms, Spooled
from mailforum.web.preferences import PreferencePages
from mailforum.web.signin import SignInPages
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

GET, POST, GET_POST = ("GET",), ("POST",), ("GET", "POST")


class RowIdConvertor(Convertor[int]):
    """A path segment naming a row: 1 to 18 digits, so every match fits a BIGINT.

    Starlette's ``int`` matches any number of digits, and a 30-digit topic number became a
    database error (a 500) instead of the 404 any unknown number gets.
    """

    regex = "[0-9]{1,18}"

    def convert(self, value: str) -> int:
        return int(value)

    def to_string(self, value: int) -> str:
        number = int(value)
        if not 0 <= number < 10**18:
            raise ValueError(f"not a row id: {value!r}")
        return str(number)


register_url_convertor("id", RowIdConvertor())

# Path, endpoint group (a name in create_app's ``groups``), endpoint (a method of that
# group, and the route's name), methods. Path parameters a test can fill in for every
# route: list, topic, post, author, index, filename, year, month, tag (tests S15).
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
    ("/lists/{list}/topics/{topic:id}", "pages", "topic", GET),
    ("/lists/{list}/topics/{topic:id}/feed.atom", "feeds", "topic_feed", GET),
    ("/lists/{list}/topics/{topic:id}/topic.mbox", "feeds", "topic_mbox", GET),
    ("/lists/{list}/topics/{topic:id}/watch", "forms", "watch", GET_POST),
    ("/lists/{list}/topics/{topic:id}/mute", "forms", "mute", ("POST",)),
    ("/lists/{list}/posts/{post:id}", "pages", "permalink", GET),
    # Members on the web (signed in): post a new topic or a reply, see what became of it, settings.
    ("/lists/{list}/new", "posting", "new_topic", GET_POST),
    ("/lists/{list}/posts/{post:id}/reply", "posting", "reply", GET_POST),
    ("/lists/{list}/sent/{spool:id}/{key}", "posting", "sent", GET),
    ("/lists/{list}/preferences", "prefs", "preferences", GET_POST),
    ("/lists/{list}/preferences/topics/{topic:id}", "prefs", "topic", POST),
    ("/lists/{list}/preferences/leave", "prefs", "leave", POST),
    ("/lists/{list}/authors/{author:id}", "pages", "author", GET),
    # Moderators' tools on a topic, an author deleting their own post (404 without the role).
    ("/lists/{list}/topics/{topic:id}/moderate", "moderation", "moderate", GET_POST),
    ("/lists/{list}/posts/{post:id}/delete", "moderation", "delete_post", GET_POST),
    # The last segment is a generated name (textsafe.url_filename) and is not read: links
    # sent before it, with a path-like name in it, still work.
    ("/lists/{list}/posts/{post:id}/attachments/{index:id}/{filename:path}", "feeds", "download", GET),
    # Signed links in bounce warnings and moderator notices: GET shows a page with buttons, POST acts.
    ("/lists/{list}/enable/{token}", "links", "enable_delivery", GET_POST),
    ("/lists/{list}/held/{token}", "links", "moderate", GET_POST),
    # Links from our mails. Outside /lists/NAME/: the signed token names the list, and they
    # must work for private lists too. GET shows a button and changes nothing; POST acts.
    ("/confirm/{token}", "links", "confirm", GET_POST),
    ("/unsubscribe/{token}", "links", "unsubscribe", GET_POST),  # RFC 8058 one-click POST
    # The owner pages: 404 to anyone without the role (owner of the list, or site admin).
    ("/admin", "admin", "admin_index", GET),
    ("/admin/new-list", "admin", "admin_create", GET_POST),
    ("/admin/bans", "admin", "admin_site_bans", GET_POST),
    ("/admin/lists/{list}", "admin", "admin_list", GET_POST),
    ("/admin/lists/{list}/members", "admin", "admin_members", GET_POST),
    ("/admin/lists/{list}/held", "admin", "admin_held", GET_POST),
    ("/admin/lists/{list}/bans", "admin", "admin_bans", GET_POST),
    ("/admin/lists/{list}/templates", "admin", "admin_templates", GET),
    ("/admin/lists/{list}/templates/{template:path}", "admin", "admin_template", GET_POST),
    ("/admin/lists/{list}/problems", "admin", "admin_problems", GET_POST),
    ("/admin/lists/{list}/activity", "admin", "admin_activity", GET),
    ("/admin/lists/{list}/audit", "admin", "admin_audit", GET),
    ("/admin/lists/{list}/tags", "moderation", "tags", GET_POST),
    # Monitoring: /metrics for trusted addresses or an API token, the health probes for all.
    ("/metrics", "ops", "metrics", GET),
    ("/healthz", "ops", "healthz", GET),
    ("/readyz", "ops", "readyz", GET),
    # Signing in by mail: the mailed link's GET shows a button, its POST signs in.
    ("/signin", "signin", "signin", GET_POST),
    ("/signin/{token}", "signin", "link", GET_POST),
    ("/signout", "signin", "signout", ("POST",)),
    ("/account", "signin", "account", GET),
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


class Compression:
    """ASGI middleware: gzip for pages, feeds, the stylesheet and mbox downloads when the
    client accepts it (Starlette's GZipMiddleware, which adds ``Vary: Accept-Encoding``).

    Attachments go out as stored (most are compressed already, and a download's bytes
    should be the file's). ETags stay right: they are weak (``W/``), computed from the
    page before compression, so one tag names both encodings and a conditional GET
    answers 304 either way; a 304 carries the ``Vary`` its 200 had.
    """

    MINIMUM = 512  # smaller bodies are not worth a gzip header

    def __init__(self, app: ASGIApp) -> None:
        self.app = app
        self.gzip = GZipMiddleware(app, minimum_size=self.MINIMUM, compresslevel=6)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or "/attachments/" in scope["path"]:
            await self.app(scope, receive, send)
            return

        async def send_varied(message: Message) -> None:
            if message["type"] == "http.response.start" and message["status"] == 304:
                MutableHeaders(scope=message).add_vary_header("Accept-Encoding")
            await send(message)

        await self.gzip(scope, receive, send_varied)


class ErrorPages:
    """What a reader sees instead of a stack trace."""

    def __init__(self, ctx: WebContext) -> None:
        self.ctx = ctx

    def unavailable(self, request: Request, exc: Exception) -> Response:
        """The database is down or saturated: a polite 503, never a stack trace."""
        log.warning("web archive: database unavailable: %s", str(exc).strip().splitlines()[0][:200])
        # viewer=None: looking up who is signed in needs the database that just failed.
        response = self.ctx.page(
            request, "web/message.html", 503, cache=False, mlist=None, kind="503", viewer=None
        )
        response.headers["retry-after"] = "30"
        return response

    def not_found(self, request: Request, exc: Exception) -> Response:
        status = getattr(exc, "status_code", 404)
        status = status if status in (400, 404, 405) else 404
        return self.ctx.page(request, "web/message.html", status, cache=False, mlist=None, kind=str(status))

    def sign_in_first(self, request: Request, exc: Exception) -> Response:
        """A page for signed-in members only: a GET goes to the sign-in form; a POST is refused."""
        if request.method in ("GET", "HEAD"):
            here = request.url.path + (f"?{request.url.query}" if request.url.query else "")
            return RedirectResponse(self.ctx.url("signin", next=here), 303)
        return self.ctx.page(request, "web/message.html", 403, cache=False, mlist=None, kind="signin")

    def not_a_member(self, request: Request, exc: Exception) -> Response:
        mlist = exc.mlist if isinstance(exc, NotAMember) else None
        return self.ctx.page(request, "web/message.html", 403, cache=False, mlist=mlist, kind="member")

    def csrf_failed(self, request: Request, exc: Exception) -> Response:
        return self.ctx.page(request, "web/message.html", 403, cache=False, mlist=None, kind="expired")


# Endpoints where members change their own membership (join, watch, mute, leave, their
# settings; by a signed-in form or a mailed link): such a change is written to the audit
# log as theirs (core/audit.py). By group, and the mailed links by name.
MEMBER_GROUPS = frozenset({"forms", "prefs"})
MEMBER_LINKS = frozenset({"confirm", "unsubscribe"})


def _as_member(endpoint: Callable[[Request], Any]) -> Callable[[Request], Any]:
    """``endpoint`` inside ``audit.member_on_web`` with the client's address."""

    def origin(request: Request) -> str:
        return request.client.host if request.client else "web"

    if inspect.iscoroutinefunction(endpoint):

        @functools.wraps(endpoint)
        async def run_async(request: Request) -> Any:
            with audit.member_on_web(origin(request)):
                return await endpoint(request)

        return run_async

    @functools.wraps(endpoint)
    def run(request: Request) -> Any:
        with audit.member_on_web(origin(request)):
            return endpoint(request)

    return run


def create_app(
    db: Database,
    config: Config,
    request_confirmation: RequestConfirmation | None = None,
    spooled: Spooled | None = None,
) -> Starlette:
    """The web as an ASGI app. ``request_confirmation`` is the subscriptions feature's hook;
    ``spooled`` wakes the spool processors after a web post is written to the spool."""
    ctx = WebContext(db, config)
    groups: dict[str, object] = {
        "pages": ArchivePages(ctx),
        "feeds": Feeds(ctx),
        "forms": SubscribeForms(ctx, request_confirmation),
        "links": SignedLinks(ctx),
        "ops": Ops(db, config),
        "admin": OwnerPages(ctx),
        "signin": SignInPages(ctx),
        "posting": PostingForms(ctx, spooled),
        "prefs": PreferencePages(ctx),
        "moderation": ModerationPages(ctx),
    }
    routes = [
        Route(
            path,
            _as_member(getattr(groups[group], name))
            if group in MEMBER_GROUPS or (group == "links" and name in MEMBER_LINKS)
            else getattr(groups[group], name),
            methods=list(methods),
            name=name,
        )
        for path, group, name, methods in ROUTES
    ]
    limiter = ctx.rate_limiter("api", config.api.rate_limit, config.api.rate_window)
    api_routes = api.ApiRoutes(api.Api(db, config, limiter), config.site.base_url)
    routes += api_routes.routes()
    routes.append(Route(api.PREFIX + "/{rest:path}", api.not_found, methods=list(api.ALL_METHODS)))
    errors = ErrorPages(ctx)
    app = Starlette(
        routes=routes,
        middleware=[Middleware(RequestMetrics), Middleware(SecurityHeaders), Middleware(Compression)],
        exception_handlers={
            400: errors.not_found,
            404: errors.not_found,
            405: errors.not_found,
            sqlalchemy.exc.OperationalError: errors.unavailable,
            sqlalchemy.exc.TimeoutError: errors.unavailable,
            SignInRequired: errors.sign_in_first,
            CsrfFailed: errors.csrf_failed,
            NotAMember: errors.not_a_member,
        },
    )
    app.state.auth = ctx.auth
    return app


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
