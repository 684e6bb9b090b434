"""Signed links from our mails: confirm, unsubscribe, re-enable delivery, moderate a held post.

GET shows what the link is for and a button, and changes nothing (mail scanners
follow links); POST acts. The signed token is the permission, so these work for
private lists too; a stale link on a private list answers 404 like everything else
there (RELIABILITY S15). Invalid tokens are counted per client, and guessing gets 429
after ``BAD_TOKENS`` of them (RELIABILITY S6, S7). Unsubscribe also takes RFC 8058's
one-click POST.
"""

from __future__ import annotations

import logging
import re
from collections.abc import Callable
from typing import Any

from starlette.concurrency import run_in_threadpool
from starlette.exceptions import HTTPException
from starlette.requests import Request
from starlette.responses import Response

from mailforum.core import bounces, moderation, subscriptions
from mailforum.core.lists import find_member
from mailforum.core.subscriptions import Status
from mailforum.db.models import MailingList, Visibility, utcnow
from mailforum.web.context import WebContext
from mailforum.web.forms import MAX_FORM_BYTES, read_form

log = logging.getLogger(__name__)

BAD_TOKENS = 20
_TOKEN = re.compile(r"[0-9A-Za-z-]{1,200}\Z")
STATE_CODES = {"ask": 200, "done": 200, "already": 200, "expired": 410, "invalid": 404, "limited": 429}


def _link_status(mlist: MailingList, valid: bool) -> int:
    """A stale link on a public list gets a friendly page; on a private list, 404 (S15)."""
    return 200 if valid or mlist.visibility == Visibility.PUBLIC.value else 404


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


class SignedLinks:
    """The endpoints behind signed links; each is named in ``runners/web.ROUTES``."""

    def __init__(self, ctx: WebContext) -> None:
        self.ctx = ctx
        self.token_limit = ctx.rate_limiter("token", BAD_TOKENS)

    async def _posted(self, request: Request) -> dict[str, str] | None:
        """A POST's fields (None for GET); 400 for a POST from another site."""
        if request.method != "POST":
            return None
        form = {k: v[:400] for k, v in (await read_form(request, length_required=False)).items()}
        if not self.ctx.same_origin(request):
            raise HTTPException(400)
        return form

    # --- re-enable delivery, moderate a held post (links in bounce warnings and notices) ------

    def _action_page(
        self,
        request: Request,
        mlist: MailingList,
        valid: bool,
        heading: str,
        path: tuple[str, str],
        **values: Any,
    ) -> Response:
        """A link's page with its button (posting back to ``lists/NAME/<path>``); never cached."""
        return self.ctx.page(
            request,
            "web/action.html",
            _link_status(mlist, valid),
            cache=False,
            mlist=mlist,
            heading=heading,
            action=self.ctx.url("lists", mlist.name, *path),
            **values,
        )

    async def enable_delivery(self, request: Request) -> Response:
        form = await self._posted(request)
        return await run_in_threadpool(self._enable_delivery, request, form is not None)

    def _enable_delivery(self, request: Request, act: bool) -> Response:
        ctx = self.ctx
        token = request.path_params["token"]
        now = utcnow()
        with ctx.db.session() as session:
            mlist = ctx.any_list(session, request)
            member = bounces.member_for_enable_token(session, ctx.config, mlist, token, now)
            done = ""
            if member is not None and act:
                bounces.enable(member)
                log.info("delivery re-enabled for member %s of %s (web)", member.id, mlist.name)
                done = f"List mail goes to {member.address} again."
            return self._action_page(
                request,
                mlist,
                member is not None,
                "List mail paused",
                ("enable", token),
                member=member,
                post=None,
                done=done,
            )

    async def moderate(self, request: Request) -> Response:
        form = await self._posted(request)
        return await run_in_threadpool(self._moderate, request, form)

    def _moderate(self, request: Request, form: dict[str, str] | None) -> Response:
        ctx = self.ctx
        token = request.path_params["token"]
        now = utcnow()
        with ctx.db.session() as session:
            mlist = ctx.any_list(session, request)
            found = moderation.read_token(ctx.config, token, now)
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
                        ctx.config,
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
            return self._action_page(
                request,
                mlist,
                post is not None,
                "Held post",
                ("held", token),
                member=member,
                post=post,
                excerpt=excerpt,
                done=done,
            )

    # --- confirm and unsubscribe (outside /lists/NAME/: the token names the list) -------------

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
        if not await _one_click(request):
            raise HTTPException(400)
        done = await run_in_threadpool(self._write, subscriptions.unsubscribe_by_link, token)
        return await self._link_page(request, "unsubscribe", done.status.value, done)

    def _read(self, look: Callable[..., Any], token: str) -> Any:
        if not _TOKEN.match(token):
            return subscriptions.Preview(Status.INVALID)
        with self.ctx.db.read_session() as session:
            return look(session, self.ctx.config, token, utcnow())

    def _write(self, act: Callable[..., Any], token: str) -> Any:
        if not _TOKEN.match(token):
            return subscriptions.Outcome(Status.INVALID)
        with self.ctx.db.session() as session:
            return act(session, self.ctx.config, token, utcnow())

    async def _link_page(self, request: Request, page: str, state: str, found: Any) -> Response:
        if state == Status.INVALID.value:
            client = request.client.host if request.client else "unknown"
            if await run_in_threadpool(self.token_limit.hit, client):
                state = "limited"
        return self.ctx.page(
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
