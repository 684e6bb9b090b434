"""Join a list, watch or mute a topic: by a confirmation mail, or at once when signed in.

Signed in (web/auth.py), the sign-in proved the address: ``POST /lists/NAME/join``
joins at once (with the welcome mail), and ``.../topics/ID/watch`` and ``.../mute`` act
at once and send nothing (a field ``undo`` removes the watch or mute); the forms carry
the session's CSRF token. A signed-in visitor who is no member may watch (joining with
delivery mode "none", as a confirmed ``watch`` by mail does) but not mute.

Without a session, the join and watch forms take an address:

GET shows the form with a CSRF token bound to a per-browser cookie and the form's
path; POST checks origin and token, rate-limits per client and per address, and hands
the address to the injected ``RequestConfirmation`` (the subscriptions feature sends
the confirmation mail). The answer is the same neutral page whatever happened, so it
never tells whether an address is a member (RELIABILITY S4, S16).
"""

from __future__ import annotations

import hashlib
import hmac
import logging
import re
import secrets

from starlette.concurrency import run_in_threadpool
from starlette.requests import Request
from starlette.responses import RedirectResponse, Response

from mailforum.core import audit, subscriptions
from mailforum.core.lists import Address, add_members, find_member
from mailforum.db.models import DeliveryMode, MailingList, SubscriptionKind, Topic, utcnow
from mailforum.web import body
from mailforum.web.auth import SignInRequired, Viewer
from mailforum.web.context import WebContext
from mailforum.web.forms import (
    ConfirmationRequest,
    CsrfTokens,
    RequestConfirmation,
    checked_address,
    read_form,
)

log = logging.getLogger(__name__)

CSRF_COOKIE = "mf_csrf"


class SubscribeForms:
    """The join and watch forms; each endpoint is named in ``runners/web.ROUTES``."""

    def __init__(self, ctx: WebContext, request_confirmation: RequestConfirmation | None = None) -> None:
        self.ctx = ctx
        self.csrf = CsrfTokens(
            hmac.new(ctx.secret, b"mailforum web csrf", hashlib.sha256).digest(), ctx.web.csrf_max_age
        )
        self.client_limit = ctx.rate_limiter("client", ctx.web.form_limit)
        self.address_limit = ctx.rate_limiter("address", ctx.web.form_limit)
        self.request_confirmation = request_confirmation

    async def join(self, request: Request) -> Response:
        viewer = await self.ctx.auth.load(request)
        if viewer is not None:
            return await self._signed_in(request, viewer, "join")
        return await self._form(request)

    async def watch(self, request: Request) -> Response:
        viewer = await self.ctx.auth.load(request)
        if viewer is not None:
            return await self._signed_in(request, viewer, "watch")
        return await self._form(request)

    async def mute(self, request: Request) -> Response:
        viewer = await self.ctx.auth.load(request)
        if viewer is None:
            await run_in_threadpool(self._form_target, request)  # 404 first, where 404 is due
            raise SignInRequired()
        return await self._signed_in(request, viewer, "mute")

    # --- signed in: at once ----------------------------------------------------------------

    async def _signed_in(self, request: Request, viewer: Viewer, kind: str) -> Response:
        if request.method == "GET":
            mlist, topic = await run_in_threadpool(self._form_target, request)
            return await run_in_threadpool(self._button_page, request, mlist, topic, kind)
        viewer, form = await self.ctx.auth.posted(request, self.ctx.same_origin)
        return await run_in_threadpool(self._act, request, viewer, kind, bool(form.get("undo")))

    def _button_page(self, request: Request, mlist: MailingList, topic: Topic | None, kind: str) -> Response:
        title = body.subject_tags(topic.subject, mlist.name, mlist.subject_tag)[1] if topic else ""
        return self.ctx.page(
            request,
            "web/form.html",
            cache=False,
            mlist=mlist,
            topic=topic,
            topic_title=title,
            kind=kind,
            action=request.url.path,
            token="",
            error="",
            address="",
        )

    def _act(self, request: Request, viewer: Viewer, kind: str, undo: bool) -> Response:
        ctx = self.ctx
        now = utcnow()
        with ctx.db.session() as session:
            mlist = ctx.public_list(session, request)
            topic = ctx.topic_of(session, mlist, request) if "topic" in request.path_params else None
            who = Address(viewer.address)
            if kind == "join":
                outcome = subscriptions.subscribe(session, ctx.config, mlist, who, now)
                log.info("web join of %s by a signed-in visitor: %s", mlist.name, outcome.status.value)
                return RedirectResponse(ctx.url("lists", mlist.name), 303)
            assert topic is not None
            if kind == "mute" or undo:  # only a member has a mute, or a watch to undo
                member = ctx.auth.require_member(request, session, mlist)[1]
            else:  # watching joins a visitor with delivery mode "none", as a confirmed watch does
                found = find_member(session, mlist.id, viewer.address)
                if found is None:
                    add_members(session, mlist, [who], DeliveryMode.NONE, now)
                    found = find_member(session, mlist.id, viewer.address)
                    assert found is not None
                    audit.member_action(
                        session,
                        actor=who.address,
                        action="member.join",
                        list_id=mlist.id,
                        target=who.address,
                        detail={"mode": DeliveryMode.NONE.value, "to watch": topic.id},
                    )
                member = found
            setting = SubscriptionKind.WATCH if kind == "watch" else SubscriptionKind.MUTE
            subscriptions.set_topic(session, member, topic, None if undo else setting, now)
            log.info("web %s%s of a topic of %s", "un" if undo else "", kind, mlist.name)
            return RedirectResponse(ctx.url("lists", mlist.name, "topics", topic.id), 303)

    def _form_target(self, request: Request) -> tuple[MailingList, Topic | None]:
        with self.ctx.db.read_session() as session:
            mlist = self.ctx.public_list(session, request)
            topic = self.ctx.topic_of(session, mlist, request) if "topic" in request.path_params else None
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
        response = self.ctx.page(
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
                max_age=int(self.ctx.web.csrf_max_age),
                path="/",
                httponly=True,
                samesite="strict",
                secure=self.ctx.secure_cookie,
            )
        return response

    async def _form(self, request: Request) -> Response:
        ctx = self.ctx
        mlist, topic = await run_in_threadpool(self._form_target, request)
        if request.method == "GET":
            return self._form_page(request, mlist, topic)
        client = request.client.host if request.client else "unknown"
        wait = await run_in_threadpool(self.client_limit.hit, client)
        if wait:
            response = ctx.page(request, "web/message.html", 429, cache=False, mlist=mlist, kind="limited")
            response.headers["retry-after"] = str(int(wait) + 1)
            return response
        form = await read_form(request)
        token, text = form.get("csrf", ""), form.get("address", "")
        if not ctx.same_origin(request) or not self.csrf.check(
            request.cookies.get(CSRF_COOKIE, ""), request.url.path, token
        ):
            return ctx.page(request, "web/message.html", 403, cache=False, mlist=mlist, kind="expired")
        address = checked_address(text, ctx.config.site.allow_local_domains)
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
        return ctx.page(request, "web/message.html", cache=False, mlist=mlist, kind="sent", address=address)

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
