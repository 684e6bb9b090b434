"""Who is signed in: stored sessions, the signed-in viewer of a request, CSRF for their forms.

The API the other endpoint groups use (one ``Auth`` per app, ``WebContext.auth``):

- ``current_address(request) -> str | None``: the signed-in address, looked up once per
  request (cached in ``request.state``); None without a valid session cookie.
- ``auth.viewer(request) -> Viewer | None`` (the same, with the session), and
  ``await auth.load(request)`` to look it up from an async endpoint without blocking.
- ``auth.require(request) -> Viewer``: raises ``SignInRequired`` (GET: a 303 to
  ``/signin?next=PATH``; other methods: a 403 page that offers to sign in).
- ``auth.require_member(request, session, mlist) -> (Viewer, Member)``: the same, and
  raises ``NotAMember`` (a 403 page offering to join) when the viewer is no member.
  Find the list with ``ctx.public_list`` first: a private list is 404 to non-members.
- ``await auth.posted(request) -> (Viewer, form)``: a signed-in POST with its fields,
  after checking the Origin and the form's CSRF token (field ``csrf``, bound to the
  session and to the path posted to); 403 otherwise.
- ``auth.csrf_for(viewer, path)``: the token a form posting to ``path`` carries.
- Templates get ``viewer`` (a ``Viewer`` or None) and ``csrf(path)`` from
  ``WebContext.page``: ``<input type="hidden" name="csrf" value="{{ csrf(action) }}">``.

Sessions: the cookie ``mf_session`` holds 32 random bytes; the ``web_sessions`` row holds
only their SHA-256, the address, and when it expires ([web] session_days). Signing in
always makes a new session (a session id planted before sign-in is never adopted);
signing out deletes the row, so a copied cookie stops working at once, on every node.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import hmac
import re
import secrets
from collections.abc import Callable
from dataclasses import dataclass
from urllib.parse import urlparse

from sqlalchemy.orm import Session
from starlette.concurrency import run_in_threadpool
from starlette.requests import Request
from starlette.responses import Response

from mailforum.config import Config
from mailforum.core.lists import find_member
from mailforum.db import websessions
from mailforum.db.models import MailingList, Member, utcnow
from mailforum.db.session import Database
from mailforum.web.forms import CsrfTokens, read_form

SESSION_COOKIE = "mf_session"
SIGNIN_COOKIE = "mf_signin"  # the random value a sign-in link is bound to (core/signin.py)
_KEY = re.compile(r"[A-Za-z0-9_-]{43}\Z")
_NONCE = re.compile(r"[0-9a-f]{32}\Z")
_STATE = "mailforum_viewer"


@dataclass(frozen=True, slots=True)
class Viewer:
    """A signed-in browser: its address and the session (``nonce`` binds its CSRF tokens)."""

    address: str
    session_id: int
    nonce: str


class SignInRequired(Exception):
    """Raised by ``Auth.require``; ``runners/web.py`` answers it (303 to /signin, or 403)."""


@dataclass(frozen=True, slots=True)
class ListName:
    """What an error page names of a list (read while its session was open)."""

    name: str
    display_title: str


class NotAMember(Exception):
    """Raised by ``Auth.require_member``; ``runners/web.py`` answers a 403 page offering to join."""

    def __init__(self, mlist: MailingList) -> None:
        super().__init__(mlist.name)
        self.mlist = ListName(mlist.name, mlist.display_title)


class CsrfFailed(Exception):
    """A signed-in POST without a valid CSRF token or from another origin: a 403 page."""


def key_hash(key: str) -> str:
    return hashlib.sha256(key.encode()).hexdigest()


_UNSAFE_NEXT = re.compile(r"[\x00-\x20\\\x7f]")


def local_path(text: str, prefix: str = "") -> str:
    """``text`` if it is a path on this site (under ``prefix``) to go to after signing in, else "".
    No scheme, no host, no ``//`` or backslash (browsers read both as another host), no
    control characters or spaces: a ``next`` parameter cannot send anyone elsewhere."""
    if not text or len(text) > 500 or _UNSAFE_NEXT.search(text):
        return ""
    rest = text.removeprefix(prefix)
    if not text.startswith(prefix) or not rest.startswith("/") or rest.startswith("//"):
        return ""
    return text


def current_address(request: Request) -> str | None:
    """The signed-in address of this request, or None (cached per request; blocking)."""
    auth: Auth = request.app.state.auth
    viewer = auth.viewer(request)
    return viewer.address if viewer is not None else None


class Auth:
    """Sessions and the signed-in viewer; one per app."""

    def __init__(
        self, db: Database, config: Config, secret: bytes, clock: Callable[[], dt.datetime] = utcnow
    ) -> None:
        self.db = db
        self.config = config
        self.clock = clock
        self.secure = config.site.base_url.startswith("https:")
        self.prefix = _path_prefix(config.site.base_url)
        self.cookie_path = self.prefix or "/"
        self.csrf = CsrfTokens(
            hmac.new(secret, b"mailforum session csrf", hashlib.sha256).digest(), config.web.csrf_max_age
        )

    # --- who is this ------------------------------------------------------------------

    def has_cookie(self, request: Request) -> bool:
        """Whether the request carries a session cookie at all (its pages are then private)."""
        return SESSION_COOKIE in request.cookies

    def viewer(self, request: Request, session: Session | None = None) -> Viewer | None:
        """The signed-in viewer, looked up once per request (blocking: a database read, in
        ``session`` when the caller has one open)."""
        state = request.scope.setdefault("state", {})
        if _STATE in state:
            found: Viewer | None = state[_STATE]
            return found
        found = self._lookup(request.cookies.get(SESSION_COOKIE, ""), session)
        state[_STATE] = found
        return found

    async def load(self, request: Request) -> Viewer | None:
        """``viewer`` for async endpoints: the lookup runs in the thread pool."""
        state = request.scope.setdefault("state", {})
        if _STATE in state or not self.has_cookie(request):
            return self.viewer(request)
        return await run_in_threadpool(self.viewer, request)

    def _lookup(self, key: str, session: Session | None) -> Viewer | None:
        if not _KEY.match(key):
            return None
        digest = key_hash(key)
        now = self.clock()
        if session is not None:
            row = websessions.live_session(session, digest, now)
        else:
            with self.db.read_session() as own:
                row = websessions.live_session(own, digest, now)
        if row is None:
            return None
        session_id, address, seen = row
        viewer = Viewer(address, session_id, digest)
        if now - seen > websessions.SEEN_EVERY:
            with self.db.session() as session:
                websessions.touch_session(session, viewer.session_id, now)
        return viewer

    def require(self, request: Request) -> Viewer:
        viewer = self.viewer(request)
        if viewer is None:
            raise SignInRequired()
        return viewer

    def require_member(self, request: Request, session: Session, mlist: MailingList) -> tuple[Viewer, Member]:
        """The signed-in viewer and their membership of ``mlist`` (blocking)."""
        viewer = self.viewer(request, session)
        if viewer is None:
            raise SignInRequired()
        member = find_member(session, mlist.id, viewer.address)
        if member is None:
            raise NotAMember(mlist)
        return viewer, member

    # --- CSRF for signed-in forms -----------------------------------------------------

    def _action(self, path: str) -> str:
        """A path without [site] base_url's prefix, so tokens match behind a stripping proxy too."""
        return path.removeprefix(self.prefix) or "/"

    def csrf_for(self, viewer: Viewer, path: str) -> str:
        return self.csrf.issue(viewer.nonce, self._action(path))

    def csrf_function(self, viewer: Viewer | None) -> Callable[[str], str]:
        """What templates call as ``csrf(path)``."""
        if viewer is None:
            return lambda path: ""
        return lambda path: self.csrf_for(viewer, path)

    def csrf_ok(self, request: Request, viewer: Viewer, token: str) -> bool:
        return self.csrf.check(viewer.nonce, self._action(request.url.path), token)

    async def posted(
        self, request: Request, same_origin: Callable[[Request], bool]
    ) -> tuple[Viewer, dict[str, str]]:
        """A signed-in POST's fields, its origin and CSRF token checked."""
        viewer = await self.load(request)
        if viewer is None:
            raise SignInRequired()
        form = await read_form(request, length_required=False)
        if not same_origin(request) or not self.csrf_ok(request, viewer, form.get("csrf", "")):
            raise CsrfFailed()
        return viewer, form

    # --- signing in and out -------------------------------------------------------------

    def start_session(self, request: Request, response: Response, address: str) -> None:
        """A new session for ``address`` on ``response`` (blocking). The browser's old session,
        if it had one, ends: a session id never survives a sign-in (fixation)."""
        key = secrets.token_urlsafe(32)
        now = self.clock()
        old = request.cookies.get(SESSION_COOKIE, "")
        days = self.config.web.session_days
        with self.db.session() as session:
            if _KEY.match(old):
                websessions.end_session_by_key(session, key_hash(old))
            websessions.add_session(
                session,
                key_hash(key),
                address,
                now,
                now + dt.timedelta(days=days),
                request.headers.get("user-agent", "")[:200],
            )
        response.set_cookie(
            SESSION_COOKIE,
            key,
            max_age=int(days * 86400),
            path=self.cookie_path,
            httponly=True,
            samesite="lax",
            secure=self.secure,
        )
        request.scope.setdefault("state", {}).pop(_STATE, None)

    def end_cookie(self, response: Response) -> None:
        response.delete_cookie(
            SESSION_COOKIE, path=self.cookie_path, httponly=True, samesite="lax", secure=self.secure
        )

    def signin_nonce(self, request: Request) -> tuple[str, bool]:
        """This browser's sign-in cookie value (a sign-in link is bound to it), and whether it is new."""
        nonce = request.cookies.get(SIGNIN_COOKIE, "")
        if _NONCE.match(nonce):
            return nonce, False
        return secrets.token_hex(16), True

    def set_signin_cookie(self, response: Response, nonce: str) -> None:
        # Lax, not Strict: the link is opened from a mail client, a cross-site navigation.
        response.set_cookie(
            SIGNIN_COOKIE,
            nonce,
            max_age=int(self.config.web.signin_minutes * 60) + 3600,
            path=self.cookie_path,
            httponly=True,
            samesite="lax",
            secure=self.secure,
        )


def _path_prefix(base_url: str) -> str:
    return urlparse(base_url).path.rstrip("/")
