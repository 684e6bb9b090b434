"""What every group of web endpoints shares: settings, links, templates, caching, look-ups.

One ``WebContext`` is built per app (``runners/web.create_app``) and handed to each
endpoint group (``ArchivePages``, ``Feeds``, ``SubscribeForms``, ``SignedLinks``).
It turns a template into a response (``page``), answers conditional GETs (``cached``:
ETag from the body, Last-Modified from the activity shown), builds links under
[site] base_url's path (``url``), and finds the list and topic a path names, raising
404 for anything an anonymous reader may not see (a private list answers 404 on every
route, RELIABILITY S15).

Database work is synchronous (SQLAlchemy sessions), so the look-ups here are called
from plain endpoint functions, which Starlette runs in its thread pool.
"""

from __future__ import annotations

import contextlib
import hashlib
import hmac
import re
import secrets
from email.utils import format_datetime, parsedate_to_datetime
from typing import Any
from urllib.parse import quote, urlencode, urlparse

from sqlalchemy.orm import Session
from starlette.exceptions import HTTPException
from starlette.requests import Request
from starlette.responses import Response

from mailforum.config import Config
from mailforum.core.lists import find_member
from mailforum.db import queries
from mailforum.db.models import MailingList, Topic, Visibility
from mailforum.db.session import Database
from mailforum.render import WebTemplates
from mailforum.web import body, formats
from mailforum.web.auth import Auth
from mailforum.web.forms import RateLimiter

ARCHIVE_CACHE = "public, max-age=0, must-revalidate"
# A request with a session cookie: the page may show who is signed in, or a private list.
PERSONAL_CACHE = "private, max-age=0, must-revalidate"
_PLAIN_SEGMENT = re.compile(r"[A-Za-z0-9._~-]*\Z")


def int_param(value: str | None, default: int = 1) -> int:
    """A small positive number from a query parameter (``?page=``), else ``default``."""
    if value is None or not value.isdigit() or len(value) > 9:
        return default
    return int(value)


def _segment(part: object) -> str:
    text = str(part)
    return text if _PLAIN_SEGMENT.match(text) else quote(text, safe="")


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


class WebContext:
    """The database, the settings and the templates, with the helpers every endpoint uses."""

    def __init__(self, db: Database, config: Config) -> None:
        self.db = db
        self.config = config
        self.web = config.web
        self.templates = WebTemplates(formats.FILTERS, formats.no_bidi)
        self.prefix = urlparse(config.site.base_url).path.rstrip("/")
        self.base_url = config.site.base_url.rstrip("/")
        parsed = urlparse(config.site.base_url)
        self.origin = f"{parsed.scheme}://{parsed.netloc}"
        self.secure_cookie = config.site.base_url.startswith("https:")
        # Signs CSRF tokens and keys the rate limits; a random one when [site] secret_key is unset.
        self.secret = config.site.secret_key.encode() or secrets.token_bytes(32)
        self._limits_key = hmac.new(self.secret, b"mailforum web limits", hashlib.sha256).digest()
        self.auth = Auth(db, config, self.secret)

    def rate_limiter(self, scope: str, limit: int, window: float | None = None) -> RateLimiter:
        """At most ``limit`` hits per key in ``window`` seconds ([web] form_window by default),
        counted in the database, so the limits hold across every node of one database."""
        return RateLimiter(self.db, scope, limit, window or self.web.form_window, self._limits_key)

    # --- links and responses -------------------------------------------------------------

    def url(self, *parts: object, **query: object) -> str:
        """A root-relative link under [site] base_url's path; each part is one quoted segment."""
        path = self.prefix + "/" + "/".join(_segment(p) for p in parts)
        args = {k: v for k, v in query.items() if v not in (None, "", 1)}
        return path + ("?" + urlencode(args) if args else "")

    def render(self, template: str, **values: Any) -> str:
        values.setdefault("viewer", None)
        values.setdefault("csrf", self.auth.csrf_function(values["viewer"]))
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
        if "viewer" not in values:  # a caller may know better (no database: the 503 page)
            values["viewer"] = self.auth.viewer(request)
        content = self.render(template, **values).encode("utf-8")
        if not cache:
            return Response(content, status, {"cache-control": "no-store", "vary": "Cookie"}, media_type)
        return self.cached(request, content, media_type, last_modified, status)

    def cached(
        self, request: Request, content: bytes, media_type: str, last_modified: Any = None, status: int = 200
    ) -> Response:
        """A response with ETag/Last-Modified that answers 304 to a matching conditional GET.
        Shared caches may keep it unless the request carries a session cookie (then it may
        name the viewer or show a private list: ``private``); either way it varies by Cookie."""
        etag = f'W/"{hashlib.sha256(content).hexdigest()[:24]}"'
        personal = self.auth.has_cookie(request)
        headers = {
            "etag": etag,
            "cache-control": PERSONAL_CACHE if personal else ARCHIVE_CACHE,
            "vary": "Cookie",
        }
        if last_modified is not None:
            headers["last-modified"] = format_datetime(last_modified.replace(microsecond=0), usegmt=True)
        if status == 200 and _not_modified(request, etag, last_modified):
            return Response(status_code=304, headers=headers)
        return Response(content, status, headers, media_type)

    def same_origin(self, request: Request) -> bool:
        """A browser's Origin (or Referer) must be ours: this site's base URL or the Host asked for."""
        origin = request.headers.get("origin") or request.headers.get("referer")
        if not origin or origin == "null":
            return origin is None
        netloc = urlparse(origin).netloc
        return netloc in {urlparse(self.base_url).netloc, request.headers.get("host", "")}

    # --- what a path names -----------------------------------------------------------------

    def public_list(self, session: Session, request: Request) -> MailingList:
        """The list in the path, if this viewer may read it; else 404. Public lists for
        everyone; a private list for its signed-in members only (RELIABILITY S15)."""
        mlist = queries.list_named(session, request.path_params["list"].lower())
        if mlist is None or not self.may_read(session, request, mlist):
            raise HTTPException(404)
        return mlist

    def may_read(self, session: Session, request: Request, mlist: MailingList) -> bool:
        """Whether the viewer may read ``mlist``: anyone a public one, members a private one."""
        if mlist.visibility == Visibility.PUBLIC.value:
            return True
        viewer = self.auth.viewer(request, session) if self.auth.has_cookie(request) else None
        return viewer is not None and find_member(session, mlist.id, viewer.address) is not None

    def any_list(self, session: Session, request: Request) -> MailingList:
        """The list a signed link names, private or not: the token is the permission."""
        mlist = queries.list_named(session, request.path_params["list"])
        if mlist is None:
            raise HTTPException(404)
        return mlist

    def topic_of(self, session: Session, mlist: MailingList, request: Request) -> Topic:
        """The topic in the path (or the one it was merged into), if it shows a post; else 404."""
        topic = queries.resolve_topic(session, mlist, request.path_params["topic"])
        if topic is None or topic.post_count == 0:
            raise HTTPException(404)
        return topic

    def author(self, mlist: MailingList, name: str, address: str) -> str:
        return body.author_label(name, address, mlist.show_addresses)
