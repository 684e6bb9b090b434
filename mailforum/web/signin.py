"""Signing in by mail, signing out, and the account page (the sessions of the signed-in address).

- ``GET /signin``: a form (field ``address``, CSRF bound to a per-browser cookie).
- ``POST /signin``: caps per client (429) and per address (silently), then a link is
  mailed (core/signin.py) bound to this browser's ``mf_signin`` cookie. The answer is
  the same page for every valid address, known or not, and the work is the same.
- ``GET /signin/TOKEN``: a page with a button; changes nothing (mail scanners follow
  links). Opened in another browser it says so and offers to mail a link for this one.
- ``POST /signin/TOKEN``: spends the link and starts a new session: 303 to ``/account``.
- ``POST /signout``: ends this session, one of the address's sessions (field
  ``session``), or all of them (field ``everywhere``).
- ``GET /account``: who is signed in, and where (each session with its sign-out button).
"""

from __future__ import annotations

import hashlib
import hmac
import logging
import re
import secrets
from typing import Any

from starlette.concurrency import run_in_threadpool
from starlette.exceptions import HTTPException
from starlette.requests import Request
from starlette.responses import RedirectResponse, Response

from mailforum.core import signin as links
from mailforum.core.signin import LinkState
from mailforum.db import queries, websessions
from mailforum.db.models import utcnow
from mailforum.web.auth import SIGNIN_COOKIE, CsrfFailed, Viewer, local_path
from mailforum.web.context import WebContext
from mailforum.web.forms import CsrfTokens, checked_address, read_form
from mailforum.web.links import BAD_TOKENS
from mailforum.web.subscribe import CSRF_COOKIE

log = logging.getLogger(__name__)

_TOKEN = re.compile(r"[0-9a-z-]{1,200}\Z")
STATUS = {
    LinkState.OK: 200,
    LinkState.OTHER_BROWSER: 200,
    LinkState.USED: 410,
    LinkState.EXPIRED: 410,
    LinkState.INVALID: 404,
}


class SignInPages:
    """The sign-in, sign-out and account endpoints; each is named in ``runners/web.ROUTES``."""

    def __init__(self, ctx: WebContext) -> None:
        self.ctx = ctx
        self.auth = ctx.auth
        # The same key and cookie as the join and watch forms (web/subscribe.py).
        self.csrf = CsrfTokens(
            hmac.new(ctx.secret, b"mailforum web csrf", hashlib.sha256).digest(), ctx.web.csrf_max_age
        )
        self.client_limit = ctx.rate_limiter("signin-client", ctx.web.form_limit)
        self.address_limit = ctx.rate_limiter("signin-address", ctx.web.signin_per_address)
        self.token_limit = ctx.rate_limiter("token", BAD_TOKENS)

    # --- the form -------------------------------------------------------------------------

    def _form_page(
        self, request: Request, status: int = 200, error: str = "", address: str = "", next_path: str = ""
    ) -> Response:
        nonce = request.cookies.get(CSRF_COOKIE, "")
        fresh = not re.fullmatch(r"[0-9a-f]{32}", nonce)
        if fresh:
            nonce = secrets.token_hex(16)
        action = self.ctx.url("signin")
        response = self.ctx.page(
            request,
            "web/signin.html",
            status,
            cache=False,
            mlist=None,
            state="form",
            action=action,
            token=self.csrf.issue(nonce, action),
            error=error,
            address=address,
            next_path=next_path,
        )
        if fresh:
            response.set_cookie(
                CSRF_COOKIE,
                nonce,
                max_age=int(self.ctx.web.csrf_max_age),
                path="/",
                httponly=True,
                samesite="strict",
                secure=self.ctx.secure_cookie,
            )
        return response

    async def signin(self, request: Request) -> Response:
        await self.auth.load(request)
        if request.method == "GET":
            wanted = local_path(request.query_params.get("next", ""), self.ctx.prefix)
            return await run_in_threadpool(self._form_page, request, 200, "", "", wanted)
        if await self._client_limited(request):
            return self._limited(request)
        form = await read_form(request)
        if not self.ctx.same_origin(request) or not self.csrf.check(
            request.cookies.get(CSRF_COOKIE, ""), self.ctx.url("signin"), form.get("csrf", "")
        ):
            return self._page(request, 403, state="expired")
        text = form.get("address", "")
        wanted = local_path(form.get("next", ""), self.ctx.prefix)
        address = checked_address(text, self.ctx.config.site.allow_local_domains)
        if address is None:
            error = "That is not an email address we can write to. Please check it and try again."
            return await run_in_threadpool(self._form_page, request, 400, error, text[:320], wanted)
        return await self._send(request, address, wanted)

    async def _send(self, request: Request, address: str, next_path: str) -> Response:
        """Mail a link for this browser (unless the address had its share), and say so."""
        browser, fresh = self.auth.signin_nonce(request)
        if await run_in_threadpool(self.address_limit.hit, address) == 0.0:
            await run_in_threadpool(self._request_link, address, browser, next_path)
        # The same page whatever happened: it never tells whether the address is known.
        response = self._page(request, 200, state="sent", address=address)
        if fresh:
            self.auth.set_signin_cookie(response, browser)
        return response

    def _request_link(self, address: str, browser: str, next_path: str) -> None:
        with self.ctx.db.session() as session:
            links.request_link(session, self.ctx.config, address, browser, utcnow(), next_path)
        log.info("sign-in link queued")

    async def _client_limited(self, request: Request) -> float:
        client = request.client.host if request.client else "unknown"
        return await run_in_threadpool(self.client_limit.hit, client)

    def _limited(self, request: Request) -> Response:
        response = self._page(request, 429, state="limited")
        response.headers["retry-after"] = "60"
        return response

    def _page(self, request: Request, status: int, **values: Any) -> Response:
        values.setdefault("address", "")
        values.setdefault("action", "")
        return self.ctx.page(request, "web/signin.html", status, cache=False, mlist=None, **values)

    # --- the link ----------------------------------------------------------------------------

    async def link(self, request: Request) -> Response:
        token = request.path_params["token"].lower()
        browser = request.cookies.get(SIGNIN_COOKIE, "")
        await self.auth.load(request)
        if request.method == "GET":
            found = await run_in_threadpool(self._check, token, browser)
            return await self._link_page(request, found)
        form = {k: v[:400] for k, v in (await read_form(request, length_required=False)).items()}
        if not self.ctx.same_origin(request):
            raise HTTPException(400)
        if form.get("resend"):
            found = await run_in_threadpool(self._check, token, browser)
            if found.state in (LinkState.OK, LinkState.OTHER_BROWSER):
                if await self._client_limited(request):
                    return self._limited(request)
                return await self._send(request, found.address, found.next_path)
            return await self._link_page(request, found)
        found = await run_in_threadpool(self._spend, token, browser)
        if found.state is not LinkState.OK:
            return await self._link_page(request, found)
        # Where the browser was going when it was asked to sign in (checked again), else the account.
        target = local_path(found.next_path, self.ctx.prefix) or self.ctx.url("account")
        response = RedirectResponse(target, 303)
        await run_in_threadpool(self.auth.start_session, request, response, found.address)
        response.delete_cookie(SIGNIN_COOKIE, path=self.auth.cookie_path, httponly=True, samesite="lax")
        log.info("signed in on the web")
        return response

    def _check(self, token: str, browser: str) -> links.LinkCheck:
        if not _TOKEN.match(token):
            return links.LinkCheck(LinkState.INVALID)
        with self.ctx.db.read_session() as session:
            return links.check_link(session, self.ctx.config, token, browser, utcnow())

    def _spend(self, token: str, browser: str) -> links.LinkCheck:
        if not _TOKEN.match(token):
            return links.LinkCheck(LinkState.INVALID)
        with self.ctx.db.session() as session:
            return links.spend_link(session, self.ctx.config, token, browser, utcnow())

    async def _link_page(self, request: Request, found: links.LinkCheck) -> Response:
        state = found.state
        if state is LinkState.INVALID:
            client = request.client.host if request.client else "unknown"
            if await run_in_threadpool(self.token_limit.hit, client):
                return self._limited(request)
        return self._page(
            request,
            STATUS[state],
            state=f"link-{state.value}",
            address=found.address if state in (LinkState.OK, LinkState.OTHER_BROWSER) else "",
            action=request.url.path,
        )

    # --- signing out, the account page ------------------------------------------------------

    async def signout(self, request: Request) -> Response:
        try:
            viewer, form = await self.auth.posted(request, self.ctx.same_origin)
        except CsrfFailed:
            return self._page(request, 403, state="expired")
        which = form.get("session", "")
        everywhere = bool(form.get("everywhere"))
        ended_own = await run_in_threadpool(self._signout, viewer, which, everywhere)
        target = self.ctx.url("") if ended_own else self.ctx.url("account")
        response = RedirectResponse(target, 303)
        if ended_own:
            self.auth.end_cookie(response)
        return response

    def _signout(self, viewer: Viewer, which: str, everywhere: bool) -> bool:
        """End sessions; whether the one this request came with is among them."""
        with self.ctx.db.session() as session:
            if everywhere:
                count = websessions.end_sessions(session, viewer.address)
                log.info("signed out everywhere (%d sessions)", count)
                return True
            if which.isdigit() and int(which) != viewer.session_id:
                websessions.end_session(session, viewer.address, int(which))
                return False
            websessions.end_session(session, viewer.address, viewer.session_id)
            return True

    def account(self, request: Request) -> Response:
        viewer = self.auth.require(request)
        with self.ctx.db.read_session() as session:
            sessions = websessions.sessions_of(session, viewer.address, utcnow())
            memberships = queries.lists_of(session, viewer.address)
        return self.ctx.page(
            request,
            "web/account.html",
            cache=False,
            mlist=None,
            sessions=sessions,
            memberships=memberships,
            current=viewer.session_id,
        )
