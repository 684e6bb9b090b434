"""The web archive: one Starlette app served by uvicorn on [web] host:port.

``ROUTES`` is the route table (path, endpoint, methods), like ``core.routing.ROUTES``
for mail; the subscriptions feature adds its confirm and unsubscribe pages to it.
Pages are read-only and cacheable (ETag from the body, Last-Modified from the
activity they show); the two forms (join a list, watch a topic) carry a CSRF token,
are rate-limited per client, and hand the address to the injected
``RequestConfirmation`` (see ``web.forms``). Every response carries a strict
Content-Security-Policy; a private list answers 404 on every route (RELIABILITY S15).

Database work is synchronous (SQLAlchemy sessions), so page endpoints are plain
functions, which Starlette runs in its thread pool, off the event loop.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import hmac
import logging
import re
import secrets
import socket
from collections.abc import Callable, Iterator
from email.utils import format_datetime, parsedate_to_datetime
from typing import Any
from urllib.parse import quote, urlencode, urlparse

import sqlalchemy.exc
import uvicorn
from starlette.applications import Starlette
from starlette.concurrency import run_in_threadpool
from starlette.datastructures import MutableHeaders
from starlette.exceptions import HTTPException
from starlette.middleware import Middleware
from starlette.requests import Request
from starlette.responses import RedirectResponse, Response, StreamingResponse
from starlette.routing import Route
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from mailforum.config import Config
from mailforum.core import bounces, moderation, subscriptions
from mailforum.core.lists import find_member
from mailforum.core.subscriptions import Status
from mailforum.db import queries
from mailforum.db.models import MailingList, Topic, Visibility, utcnow
from mailforum.db.session import Database
from mailforum.errors import ConfigError
from mailforum.mail.addresses import list_address
from mailforum.mail.attachments import attachment
from mailforum.mail.parse import Unprocessable
from mailforum.render import BUILTIN, WebTemplates
from mailforum.web import body, formats
from mailforum.web.forms import (
    ConfirmationRequest,
    CsrfTokens,
    RateLimiter,
    RequestConfirmation,
    checked_address,
)

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
MAX_INDENT = 6  # deeper replies are drawn at this depth (style.css has depth-0 … depth-6)
CSRF_COOKIE = "mf_csrf"
MAX_FORM_BYTES = 8192
BAD_TOKENS = 20
_TOKEN = re.compile(r"[0-9A-Za-z-]{1,200}\Z")
STATE_CODES = {"ask": 200, "done": 200, "already": 200, "expired": 410, "invalid": 404, "limited": 429}
ARCHIVE_CACHE = "public, max-age=0, must-revalidate"

# Path, endpoint name (a method of Archive), methods. Path parameters a test can fill
# in for every route: list, topic, post, index, filename, year, month (tests S15).
ROUTES: tuple[tuple[str, str, tuple[str, ...]], ...] = (
    ("/", "index", ("GET",)),
    ("/static/style.css", "stylesheet", ("GET",)),
    ("/lists/{list}", "topics", ("GET",)),
    ("/lists/{list}/search", "search", ("GET",)),
    ("/lists/{list}/archive", "archive", ("GET",)),
    ("/lists/{list}/feed.atom", "list_feed", ("GET",)),
    ("/lists/{list}/mbox/{year:int}-{month:int}.mbox", "month_mbox", ("GET",)),
    ("/lists/{list}/join", "join", ("GET", "POST")),
    ("/lists/{list}/topics/{topic:int}", "topic", ("GET",)),
    ("/lists/{list}/topics/{topic:int}/feed.atom", "topic_feed", ("GET",)),
    ("/lists/{list}/topics/{topic:int}/topic.mbox", "topic_mbox", ("GET",)),
    ("/lists/{list}/topics/{topic:int}/watch", "watch", ("GET", "POST")),
    ("/lists/{list}/posts/{post:int}", "permalink", ("GET",)),
    # The last segment is a generated name (textsafe.url_filename) and is not read: links
    # sent before it, with a path-like name in it, still work.
    ("/lists/{list}/posts/{post:int}/attachments/{index:int}/{filename:path}", "download", ("GET",)),
    # Signed links in bounce warnings and moderator notices: GET shows a page with buttons, POST acts.
    ("/lists/{list}/enable/{token}", "enable_delivery", ("GET", "POST")),
    ("/lists/{list}/held/{token}", "moderate", ("GET", "POST")),
    # Links from our mails. Outside /lists/NAME/: the signed token names the list, and they
    # must work for private lists too. GET shows a button and changes nothing; POST acts.
    ("/confirm/{token}", "confirm", ("GET", "POST")),
    ("/unsubscribe/{token}", "unsubscribe", ("GET", "POST")),  # RFC 8058 one-click POST
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


def _int(value: str | None, default: int = 1) -> int:
    if value is None or not value.isdigit() or len(value) > 9:
        return default
    return int(value)


_PLAIN_SEGMENT = re.compile(r"[A-Za-z0-9._~-]*\Z")


def _segment(part: object) -> str:
    text = str(part)
    return text if _PLAIN_SEGMENT.match(text) else quote(text, safe="")


class Archive:
    """The endpoints; each is named in ``ROUTES``."""

    def __init__(
        self,
        db: Database,
        config: Config,
        request_confirmation: RequestConfirmation | None = None,
    ) -> None:
        self.db = db
        self.config = config
        self.web = config.web
        self.templates = WebTemplates(formats.FILTERS, formats.no_bidi)
        self.prefix = urlparse(config.site.base_url).path.rstrip("/")
        self.base_url = config.site.base_url.rstrip("/")
        parsed = urlparse(config.site.base_url)
        self.origin = f"{parsed.scheme}://{parsed.netloc}"
        key = config.site.secret_key.encode() or secrets.token_bytes(32)
        self.csrf = CsrfTokens(
            hmac.new(key, b"mailforum web csrf", hashlib.sha256).digest(), config.web.csrf_max_age
        )
        # Stored in the database: the limits hold across every node of one database.
        limits = hmac.new(key, b"mailforum web limits", hashlib.sha256).digest()
        window = config.web.form_window
        self.client_limit = RateLimiter(db, "client", config.web.form_limit, window, limits)
        self.address_limit = RateLimiter(db, "address", config.web.form_limit, window, limits)
        # Invalid link tokens per client: guessing gets 429 after this many (RELIABILITY S6, S7).
        self.token_limit = RateLimiter(db, "token", BAD_TOKENS, window, limits)
        self.request_confirmation = request_confirmation
        self.secure_cookie = config.site.base_url.startswith("https:")
        self.stylesheet_css = (BUILTIN / "web" / "style.css").read_bytes()

    # --- helpers ------------------------------------------------------------------------

    def url(self, *parts: object, **query: object) -> str:
        """A root-relative link under [site] base_url's path; each part is one quoted segment."""
        path = self.prefix + "/" + "/".join(_segment(p) for p in parts)
        args = {k: v for k, v in query.items() if v not in (None, "", 1)}
        return path + ("?" + urlencode(args) if args else "")

    def render(self, template: str, **values: Any) -> str:
        return self.templates.render(
            template, {"url": self.url, "prefix": self.prefix, "domain": self.config.site.domain, **values}
        )

    def page(
        self,
        request: Request,
        template: str,
        status: int = 200,
        last_modified: Any = None,
        cache: bool = True,
        media_type: str = "text/html; charset=utf-8",
        **values: Any,
    ) -> Response:
        content = self.render(template, **values).encode("utf-8")
        if not cache:
            return Response(content, status, {"cache-control": "no-store"}, media_type)
        return self.cached(request, content, media_type, last_modified, status)

    def cached(
        self, request: Request, content: bytes, media_type: str, last_modified: Any = None, status: int = 200
    ) -> Response:
        """A response with ETag/Last-Modified that answers 304 to a matching conditional GET."""
        etag = f'W/"{hashlib.sha256(content).hexdigest()[:24]}"'
        headers = {"etag": etag, "cache-control": ARCHIVE_CACHE}
        if last_modified is not None:
            headers["last-modified"] = format_datetime(last_modified.replace(microsecond=0), usegmt=True)
        if status == 200 and self._not_modified(request, etag, last_modified):
            return Response(status_code=304, headers=headers)
        return Response(content, status, headers, media_type)

    @staticmethod
    def _not_modified(request: Request, etag: str, last_modified: Any) -> bool:
        match = request.headers.get("if-none-match")
        if match is not None:
            tags = {t.strip().removeprefix("W/") for t in match.split(",")}
            return "*" in tags or etag.removeprefix("W/") in tags
        since = request.headers.get("if-modified-since")
        if since and last_modified is not None:
            with contextlib.suppress(TypeError, ValueError, IndexError):
                return last_modified.replace(microsecond=0) <= parsedate_to_datetime(since)
        return False

    def public_list(self, session: Any, request: Request) -> MailingList:
        mlist = queries.list_named(session, request.path_params["list"].lower(), public=True)
        if mlist is None:
            raise HTTPException(404)
        return mlist

    def topic_of(self, session: Any, mlist: MailingList, request: Request) -> Topic:
        topic = queries.resolve_topic(session, mlist, request.path_params["topic"])
        if topic is None or topic.post_count == 0:
            raise HTTPException(404)
        return topic

    def author(self, mlist: MailingList, name: str, address: str) -> str:
        return body.author_label(name, address, mlist.show_addresses)

    # --- pages --------------------------------------------------------------------------

    def index(self, request: Request) -> Response:
        with self.db.read_session() as session:
            summaries = queries.list_index(session)
        # No Last-Modified here or on topic lists: member counts and page numbers change with
        # no post time to show for it. The ETag (a hash of the page) is always right.
        return self.page(request, "web/index.html", lists=summaries)

    def stylesheet(self, request: Request) -> Response:
        return self.cached(request, self.stylesheet_css, "text/css; charset=utf-8")

    def topics(self, request: Request) -> Response:
        sort = request.query_params.get("sort", "latest")
        sort = sort if sort in queries.SORTS else "latest"
        with self.db.read_session() as session:
            mlist = self.public_list(session, request)
            listing = queries.topic_page(
                session, mlist, sort, _int(request.query_params.get("page")), self.web.topics_per_page
            )
        rows = []
        for row in listing.rows:
            tags, title = body.subject_tags(row.subject, mlist.name, mlist.subject_tag)
            rows.append((row, tags, title, self.author(mlist, row.starter_name, row.starter_address)))
        return self.page(
            request,
            "web/topics.html",
            mlist=mlist,
            listing=listing,
            rows=rows,
            sorts=(("latest", "Latest activity"), ("newest", "Newest"), ("replies", "Most replies")),
            page_link=lambda n: self.url(
                "lists", mlist.name, sort=None if sort == "latest" else sort, page=n
            ),
            post_address=list_address(mlist.name, self.config.site.domain),
        )

    def topic(self, request: Request) -> Response:
        page = _int(request.query_params.get("page"))
        with self.db.read_session() as session:
            mlist = self.public_list(session, request)
            topic = self.topic_of(session, mlist, request)
            if topic.id != request.path_params["topic"]:  # merged: old links follow (301)
                return RedirectResponse(self.url("lists", mlist.name, "topics", topic.id), 301)
            thread = queries.thread_page(session, topic, page, self.web.posts_per_page)
        address = list_address(mlist.name, self.config.site.domain)
        tags, title = body.subject_tags(topic.subject, mlist.name, mlist.subject_tag)
        posts = []
        for post in thread.posts:
            html = (
                post.html_body if post.html_body and body.html_only(post.text_body, post.html_body) else None
            )
            blocks = () if html else body.split_body(body.hide_addresses(post.text_body), post.parent_author)
            posts.append(
                {
                    "view": post,
                    "depth": min(post.depth, MAX_INDENT),
                    "author": self.author(mlist, post.author_name, post.author_address),
                    "blocks": blocks,
                    "html": html,
                    "mailto": body.mailto(address, post.subject or topic.subject, post.message_id),
                }
            )
        return self.page(
            request,
            "web/topic.html",
            last_modified=topic.last_post_at,
            mlist=mlist,
            topic=topic,
            tags=tags,
            title=title,
            thread=thread,
            posts=posts,
            reply_all=body.mailto(address, topic.subject, thread.last_message_id),
            page_link=lambda n: self.url("lists", mlist.name, "topics", topic.id, page=n),
            post_address=address,
        )

    def permalink(self, request: Request) -> Response:
        with self.db.read_session() as session:
            mlist = self.public_list(session, request)
            position = queries.post_position(session, mlist, request.path_params["post"])
        if position is None:
            raise HTTPException(404)
        topic_id, index = position
        page = index // self.web.posts_per_page + 1
        target = self.url("lists", mlist.name, "topics", topic_id, page=page)
        return RedirectResponse(f"{target}#p{request.path_params['post']}", 302)

    def download(self, request: Request) -> Response:
        with self.db.read_session() as session:
            mlist = self.public_list(session, request)
            post = queries.published_post(session, mlist, request.path_params["post"], with_raw=True)
            raw = post.raw if post is not None else None
        if not raw:
            raise HTTPException(404)
        try:
            found = attachment(raw, request.path_params["index"])
        except Unprocessable:
            found = None
        if found is None:
            raise HTTPException(404)
        fallback = f"attachment-{request.path_params['post']}-{request.path_params['index']}"
        # Revalidated like the pages (ETag, max-age=0): a cache answers from its copy only
        # after asking us, so a list made private stops serving its files at once.
        response = self.cached(request, found.data, found.safe_type)
        response.headers["content-disposition"] = formats.content_disposition(found.filename, fallback)
        response.headers["x-content-type-options"] = "nosniff"
        response.headers["content-security-policy"] = "default-src 'none'; sandbox"
        return response

    def search(self, request: Request) -> Response:
        query = request.query_params.get("q", "")[:200]
        page = _int(request.query_params.get("page"))
        terms = queries.search_terms(query)
        with self.db.read_session() as session:
            mlist = self.public_list(session, request)
            hits, more = queries.search(session, mlist, query, page, self.web.topics_per_page)
        results = [
            (hit, self.author(mlist, hit.author_name, hit.author_address), body.snippet(hit.text_body, terms))
            for hit in hits
        ]
        return self.page(
            request, "web/search.html", mlist=mlist, query=query, page=page, more=more, results=results
        )

    def archive(self, request: Request) -> Response:
        with self.db.read_session() as session:
            mlist = self.public_list(session, request)
            months = queries.months(session, mlist)
        return self.page(request, "web/archive.html", mlist=mlist, months=months)

    # --- feeds and downloads -----------------------------------------------------------------

    def _feed(
        self, request: Request, mlist: MailingList, topic: Topic | None, entries: list[Any]
    ) -> Response:
        own = (
            self.url("lists", mlist.name, "topics", topic.id, "feed.atom")
            if topic
            else self.url("lists", mlist.name, "feed.atom")
        )
        alternate = (
            self.url("lists", mlist.name, "topics", topic.id) if topic else self.url("lists", mlist.name)
        )
        items = [(e, self.author(mlist, e.author_name, e.author_address)) for e in entries]
        updated = max((e.received_at for e in entries), default=mlist.created_at)
        content = formats.xml_chars(
            self.render(
                "web/feed.atom",
                mlist=mlist,
                topic=topic,
                items=items,
                updated=updated,
                base=self.origin,
                own=own,
                alternate=alternate,
            )
        ).encode("utf-8")
        return self.cached(request, content, "application/atom+xml; charset=utf-8", updated)

    def list_feed(self, request: Request) -> Response:
        with self.db.read_session() as session:
            mlist = self.public_list(session, request)
            entries = queries.list_feed(session, mlist)
        return self._feed(request, mlist, None, entries)

    def topic_feed(self, request: Request) -> Response:
        with self.db.read_session() as session:
            mlist = self.public_list(session, request)
            topic = self.topic_of(session, mlist, request)
            entries = queries.topic_feed(session, topic)
        return self._feed(request, mlist, topic, entries)

    def _mbox(self, filename: str, posts: Callable[[Any], Iterator[Any]]) -> Response:
        db = self.db

        def stream() -> Iterator[bytes]:
            with db.read_session() as session:
                yield from formats.mbox(posts(session))

        headers = {"content-disposition": formats.content_disposition(filename, "archive.mbox")}
        return StreamingResponse(stream(), media_type="application/mbox", headers=headers)

    def topic_mbox(self, request: Request) -> Response:
        with self.db.read_session() as session:
            mlist = self.public_list(session, request)
            topic = self.topic_of(session, mlist, request)
        return self._mbox(f"{mlist.name}-topic-{topic.id}.mbox", lambda s: queries.topic_raw_posts(s, topic))

    def month_mbox(self, request: Request) -> Response:
        year, month = request.path_params["year"], request.path_params["month"]
        if not (1 <= month <= 12 and 1970 <= year <= 9999):
            raise HTTPException(404)
        with self.db.read_session() as session:
            mlist = self.public_list(session, request)
        return self._mbox(
            f"{mlist.name}-{year:04d}-{month:02d}.mbox",
            lambda s: queries.month_raw_posts(s, mlist, year, month),
        )

    # --- forms ----------------------------------------------------------------------------

    def _form_target(self, request: Request) -> tuple[MailingList, Topic | None]:
        with self.db.read_session() as session:
            mlist = self.public_list(session, request)
            topic = self.topic_of(session, mlist, request) if "topic" in request.path_params else None
        return mlist, topic

    def _form_page(
        self,
        request: Request,
        mlist: MailingList,
        topic: Topic | None,
        status: int = 200,
        error: str = "",
        address: str = "",
    ) -> Response:
        nonce = request.cookies.get(CSRF_COOKIE, "")
        fresh = not re.fullmatch(r"[0-9a-f]{32}", nonce)
        if fresh:
            nonce = secrets.token_hex(16)
        kind = "watch" if topic is not None else "join"
        title = body.subject_tags(topic.subject, mlist.name, mlist.subject_tag)[1] if topic else ""
        response = self.page(
            request,
            "web/form.html",
            status=status,
            cache=False,
            mlist=mlist,
            topic=topic,
            topic_title=title,
            kind=kind,
            action=request.url.path,
            token=self.csrf.issue(nonce, request.url.path),
            error=error,
            address=address,
        )
        if fresh:
            response.set_cookie(
                CSRF_COOKIE,
                nonce,
                max_age=int(self.web.csrf_max_age),
                path="/",
                httponly=True,
                samesite="strict",
                secure=self.secure_cookie,
            )
        return response

    async def join(self, request: Request) -> Response:
        return await self._form(request)

    async def watch(self, request: Request) -> Response:
        return await self._form(request)

    async def _form(self, request: Request) -> Response:
        mlist, topic = await run_in_threadpool(self._form_target, request)
        if request.method == "GET":
            return self._form_page(request, mlist, topic)
        client = request.client.host if request.client else "unknown"
        wait = await run_in_threadpool(self.client_limit.hit, client)
        if wait:
            response = self.page(request, "web/message.html", 429, cache=False, mlist=mlist, kind="limited")
            response.headers["retry-after"] = str(int(wait) + 1)
            return response
        length = request.headers.get("content-length", "")
        if not length.isdigit() or int(length) > MAX_FORM_BYTES:
            raise HTTPException(400)
        try:
            form = await request.form(max_files=0, max_fields=10, max_part_size=4096)
        except HTTPException:
            raise HTTPException(400) from None
        try:
            token, text = str(form.get("csrf", "")), str(form.get("address", ""))
        finally:
            await form.close()
        if not self._same_origin(request) or not self.csrf.check(
            request.cookies.get(CSRF_COOKIE, ""), request.url.path, token
        ):
            return self.page(request, "web/message.html", 403, cache=False, mlist=mlist, kind="expired")
        address = checked_address(text, self.config.site.allow_local_domains)
        if address is None:
            error = "That is not an email address we can write to. Please check it and try again."
            return self._form_page(request, mlist, topic, 400, error, text[:320])
        if await run_in_threadpool(self.address_limit.hit, address) == 0.0:
            await self._hand_off(
                ConfirmationRequest(
                    "watch" if topic else "join", mlist.name, address, topic.id if topic else None, client
                )
            )
        # The same page whatever happened: it never tells whether the address is a member.
        return self.page(request, "web/message.html", cache=False, mlist=mlist, kind="sent", address=address)

    async def _hand_off(self, confirmation: ConfirmationRequest) -> None:
        if self.request_confirmation is None:
            log.info(
                "web %s request for %s: no confirmation sender configured",
                confirmation.kind,
                confirmation.list_name,
            )
            return
        try:
            await run_in_threadpool(self.request_confirmation, confirmation)
        except Exception:
            log.exception("web %s request for %s failed", confirmation.kind, confirmation.list_name)

    def _same_origin(self, request: Request) -> bool:
        """A browser's Origin (or Referer) must be ours: this site's base URL or the Host asked for."""
        origin = request.headers.get("origin") or request.headers.get("referer")
        if not origin or origin == "null":
            return origin is None
        netloc = urlparse(origin).netloc
        return netloc in {urlparse(self.base_url).netloc, request.headers.get("host", "")}

    # --- signed links from mail: re-enable delivery, moderate a held post ---------------------

    async def _posted_form(self, request: Request) -> dict[str, str]:
        length = request.headers.get("content-length", "0")
        if not length.isdigit() or int(length) > MAX_FORM_BYTES:
            raise HTTPException(400)
        try:
            form = await request.form(max_files=0, max_fields=10, max_part_size=4096)
        except HTTPException:
            raise HTTPException(400) from None
        try:
            return {k: str(v)[:400] for k, v in form.items()}
        finally:
            await form.close()

    def _any_list(self, session: Any, request: Request) -> MailingList:
        """The list a signed link names, private or not: the token is the permission."""
        mlist = queries.list_named(session, request.path_params["list"])
        if mlist is None:
            raise HTTPException(404)
        return mlist

    @staticmethod
    def _link_status(mlist: MailingList, valid: bool) -> int:
        """A stale link on a public list gets a friendly page; on a private list, 404 (S15)."""
        return 200 if valid or mlist.visibility == Visibility.PUBLIC.value else 404

    async def enable_delivery(self, request: Request) -> Response:
        form = await self._posted_form(request) if request.method == "POST" else None
        if form is not None and not self._same_origin(request):
            raise HTTPException(400)
        return await run_in_threadpool(self._enable_delivery, request, form is not None)

    def _enable_delivery(self, request: Request, act: bool) -> Response:
        token = request.path_params["token"]
        now = utcnow()
        with self.db.session() as session:
            mlist = self._any_list(session, request)
            member = bounces.member_for_enable_token(session, self.config, mlist, token, now)
            done = ""
            if member is not None and act:
                bounces.enable(member)
                log.info("delivery re-enabled for member %s of %s (web)", member.id, mlist.name)
                done = f"List mail goes to {member.address} again."
            return self.page(
                request,
                "web/action.html",
                self._link_status(mlist, member is not None),
                cache=False,
                mlist=mlist,
                heading="List mail paused",
                member=member,
                post=None,
                done=done,
                action=self.url("lists", mlist.name, "enable", token),
            )

    async def moderate(self, request: Request) -> Response:
        form = await self._posted_form(request) if request.method == "POST" else None
        if form is not None and not self._same_origin(request):
            raise HTTPException(400)
        return await run_in_threadpool(self._moderate, request, form)

    def _moderate(self, request: Request, form: dict[str, str] | None) -> Response:
        token = request.path_params["token"]
        now = utcnow()
        with self.db.session() as session:
            mlist = self._any_list(session, request)
            found = moderation.read_token(self.config, token, now)
            post = moderation.held_post(session, found[0]) if found and found[1] == moderation.ANY else None
            if post is not None and post.list_id != mlist.id:
                post = None
            done = ""
            member = None
            if post is not None:
                member = find_member(session, mlist.id, post.author_address)
                action = moderation.ACTIONS.get((form or {}).get("action", ""))
                if form is not None and action in (moderation.APPROVE, moderation.REJECT, moderation.DISCARD):
                    summary = moderation.act(
                        session,
                        self.config,
                        mlist,
                        post,
                        action,
                        now,
                        reason=form.get("reason", "").strip(),
                        allow_sender=form.get("allow") == "1",
                    )
                    log.info("moderation of %s on the web: %s", mlist.name, summary)
                    done = f"Done: {moderation.NAMES[action]}d."
            excerpt = post.text_body[: moderation.EXCERPT] if post is not None and not done else ""
            return self.page(
                request,
                "web/action.html",
                self._link_status(mlist, post is not None),
                cache=False,
                mlist=mlist,
                heading="Held post",
                member=member,
                post=post,
                excerpt=excerpt,
                done=done,
                action=self.url("lists", mlist.name, "held", token),
            )

    # --- links from our mails: confirm and unsubscribe -------------------------------------

    async def confirm(self, request: Request) -> Response:
        """GET: what the confirmation is for, and a button. POST: confirm it (single use)."""
        token = request.path_params["token"]
        if request.method == "GET":
            found = await run_in_threadpool(self._read, subscriptions.preview, token)
            state = "ask" if found.status is Status.DONE else found.status.value
            return await self._link_page(request, "confirm", state, found)
        done = await run_in_threadpool(self._write, subscriptions.confirm, token)
        return await self._link_page(request, "confirm", done.status.value, done)

    async def unsubscribe(self, request: Request) -> Response:
        """RFC 8058: a POST with ``List-Unsubscribe=One-Click`` unsubscribes and answers 200 at
        once, no redirect, no cookie and no script needed; GET only shows a button (S7)."""
        token = request.path_params["token"]
        if request.method == "GET":
            found = await run_in_threadpool(self._read, subscriptions.unsubscribe_preview, token)
            state = "ask" if found.status is Status.DONE else found.status.value
            return await self._link_page(request, "unsubscribe", state, found)
        if not await self._one_click(request):
            raise HTTPException(400)
        done = await run_in_threadpool(self._write, subscriptions.unsubscribe_by_link, token)
        return await self._link_page(request, "unsubscribe", done.status.value, done)

    @staticmethod
    async def _one_click(request: Request) -> bool:
        """The body says ``List-Unsubscribe=One-Click``: urlencoded, or multipart/form-data
        (RFC 8058 §3.1 allows both; providers send the first)."""
        body = await request.body()
        if len(body) > MAX_FORM_BYTES:
            return False
        if b"List-Unsubscribe=One-Click" in body:
            return True
        if not request.headers.get("content-type", "").startswith("multipart/form-data"):
            return False
        try:
            form = await request.form(max_files=0, max_fields=10, max_part_size=4096)
        except HTTPException:
            return False
        try:
            return str(form.get("List-Unsubscribe", "")) == "One-Click"
        finally:
            await form.close()

    def _read(self, look: Callable[..., Any], token: str) -> Any:
        if not _TOKEN.match(token):
            return subscriptions.Preview(Status.INVALID)
        with self.db.read_session() as session:
            return look(session, self.config, token, utcnow())

    def _write(self, act: Callable[..., Any], token: str) -> Any:
        if not _TOKEN.match(token):
            return subscriptions.Outcome(Status.INVALID)
        with self.db.session() as session:
            return act(session, self.config, token, utcnow())

    async def _link_page(self, request: Request, page: str, state: str, found: Any) -> Response:
        if state == Status.INVALID.value:
            client = request.client.host if request.client else "unknown"
            if await run_in_threadpool(self.token_limit.hit, client):
                state = "limited"
        return self.page(
            request,
            "web/link.html",
            STATE_CODES.get(state, 200),
            cache=False,
            page=page,
            state=state,
            what=found.action,
            address=found.address,
            topic_id=found.topic_id,
            list_title=found.list_title,
            detail=getattr(found, "detail", ""),
            action=request.url.path,
        )

    # --- errors ---------------------------------------------------------------------------

    def unavailable(self, request: Request, exc: Exception) -> Response:
        """The database is down or saturated: a polite 503, never a stack trace."""
        log.warning("web archive: database unavailable: %s", str(exc).strip().splitlines()[0][:200])
        response = self.page(request, "web/message.html", 503, cache=False, mlist=None, kind="503")
        response.headers["retry-after"] = "30"
        return response

    def not_found(self, request: Request, exc: Exception) -> Response:
        status = getattr(exc, "status_code", 404)
        status = status if status in (400, 404, 405) else 404
        return self.page(request, "web/message.html", status, cache=False, mlist=None, kind=str(status))


def create_app(
    db: Database, config: Config, request_confirmation: RequestConfirmation | None = None
) -> Starlette:
    """The archive as an ASGI app. ``request_confirmation`` is the subscriptions feature's hook."""
    archive = Archive(db, config, request_confirmation)
    routes = [
        Route(path, getattr(archive, name), methods=list(methods), name=name)
        for path, name, methods in ROUTES
    ]
    app = Starlette(
        routes=routes,
        middleware=[Middleware(SecurityHeaders)],
        exception_handlers={
            400: archive.not_found,
            404: archive.not_found,
            405: archive.not_found,
            sqlalchemy.exc.OperationalError: archive.unavailable,
            sqlalchemy.exc.TimeoutError: archive.unavailable,
        },
    )
    app.state.archive = archive
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
