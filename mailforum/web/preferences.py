"""A member's preferences page per list: delivery, digests and their hour, topics, leaving.

``/lists/NAME/preferences``: GET shows the signed-in member's settings; POST (fields
``mode`` all|new-topics|digest|none, ``digest`` off|daily|weekly, ``digest_hour``
0–23 or empty for the list's, ``timezone`` an IANA name or empty for the list's, and
``tag:NAME`` follow|mute|neither per tag of the list's vocabulary, as ``watch #TAG``,
``mute #TAG`` and ``unwatch #TAG`` by mail) changes them as the mail commands would
(``core.preferences``) and answers 303 back to the page. The watched and muted topics
are listed, each with a button that ends the setting; the page then offers a one-click
undo. ``/lists/NAME/preferences/leave``
unsubscribes (with the goodbye mail, as the unsubscribe command does).

Every mail we send links here; the link opens the page after sign-in and never signs
in by itself. Not signed in: ``Auth.require`` (the sign-in page). Not a member: 404
for a private list (its existence must not leak; ``public_list``), else a page with
the join link.
"""

from __future__ import annotations

import logging

from starlette.concurrency import run_in_threadpool
from starlette.exceptions import HTTPException
from starlette.requests import Request
from starlette.responses import RedirectResponse, Response

from mailforum.core import preferences, subscriptions
from mailforum.core.lists import find_member
from mailforum.db.models import utcnow
from mailforum.errors import InvalidInput
from mailforum.web.auth import Viewer
from mailforum.web.context import WebContext

log = logging.getLogger(__name__)

TOPIC_ACTIONS = ("watch", "mute", "clear")


class PreferencePages:
    """The preferences page and its forms; endpoints named in ``runners/web.ROUTES``."""

    def __init__(self, ctx: WebContext) -> None:
        self.ctx = ctx

    async def preferences(self, request: Request) -> Response:
        await run_in_threadpool(self._viewer, request)
        if request.method == "GET":
            saved = request.query_params.get("saved") == "1"
            return await run_in_threadpool(self._page, request, "", 200, saved)
        _, form = await self.ctx.auth.posted(request, self.ctx.same_origin)
        return await run_in_threadpool(self._save, request, form)

    async def topic(self, request: Request) -> Response:
        await run_in_threadpool(self._viewer, request)
        _, form = await self.ctx.auth.posted(request, self.ctx.same_origin)
        return await run_in_threadpool(self._topic, request, form)

    async def leave(self, request: Request) -> Response:
        await run_in_threadpool(self._viewer, request)
        await self.ctx.auth.posted(request, self.ctx.same_origin)
        return await run_in_threadpool(self._leave, request)

    def _viewer(self, request: Request) -> Viewer:
        """A private list answers 404 before anything else (its existence must not leak); then
        ``Auth.require`` (SignInRequired: the sign-in page, or a 403 page for a POST)."""
        with self.ctx.db.read_session() as session:
            self.ctx.public_list(session, request)
        return self.ctx.auth.require(request)

    # --- the work ------------------------------------------------------------------------

    def _page(
        self,
        request: Request,
        error: str,
        status: int,
        saved: bool = False,
        undo: dict[str, object] | None = None,
    ) -> Response:
        ctx = self.ctx
        viewer = ctx.auth.require(request)
        with ctx.db.read_session() as session:
            mlist = ctx.public_list(session, request)
            member = find_member(session, mlist.id, viewer.address)
            if member is None:
                return ctx.page(request, "web/preferences.html", 403, cache=False, mlist=mlist, member=None)
            settings = preferences.current(member)
            topics = preferences.topics(session, member)
            tags = preferences.tag_settings(session, mlist, member)
            hour, zone = preferences.list_schedule(ctx.config, mlist)
        return ctx.page(
            request,
            "web/preferences.html",
            status,
            cache=False,
            mlist=mlist,
            member=member,
            settings=settings,
            modes=preferences.MODES,
            digests=preferences.DIGESTS,
            zones=preferences.time_zones(),
            list_hour=hour,
            list_zone=zone,
            watched=[t for t in topics if t.kind == "watch"],
            muted=[t for t in topics if t.kind == "mute"],
            tags=tags,
            tag_choices=tuple(preferences.TAG_CHOICES),
            tag_field=preferences.TAG_FIELD,
            action=ctx.url("lists", mlist.name, "preferences"),
            error=error,
            saved=saved,
            undo=undo,
        )

    def _save(self, request: Request, form: dict[str, str]) -> Response:
        ctx = self.ctx
        viewer = ctx.auth.require(request)
        try:
            wanted = preferences.parse(
                form.get("mode", ""),
                form.get("digest", ""),
                form.get("digest_hour", ""),
                form.get("timezone", ""),
            )
            tags = preferences.parse_tags(form)
        except InvalidInput as exc:
            return self._page(request, f"{exc}.", 422)
        with ctx.db.session() as session:
            mlist = ctx.public_list(session, request)
            member = find_member(session, mlist.id, viewer.address)
            if member is None:
                return ctx.page(request, "web/preferences.html", 403, cache=False, mlist=mlist, member=None)
            try:
                preferences.apply_tags(session, mlist, member, tags, utcnow())
            except InvalidInput as exc:
                session.rollback()
                return self._page(request, f"{exc}.", 422)
            preferences.apply(session, member, wanted)
            name = mlist.name
        log.info("preferences of a member of %s changed on the web", name)
        return RedirectResponse(ctx.url("lists", name, "preferences", saved="1"), 303)

    def _topic(self, request: Request, form: dict[str, str]) -> Response:
        ctx = self.ctx
        viewer = ctx.auth.require(request)
        action = form.get("action", "")
        if action not in TOPIC_ACTIONS:
            raise HTTPException(400)
        topic_id = request.path_params["topic"]
        with ctx.db.session() as session:
            mlist = ctx.public_list(session, request)
            member = find_member(session, mlist.id, viewer.address)
            if member is None:
                return ctx.page(request, "web/preferences.html", 403, cache=False, mlist=mlist, member=None)
            before = {t.topic_id: t for t in preferences.topics(session, member)}.get(topic_id)
            if not preferences.set_topic_kind(
                session, member, mlist, topic_id, None if action == "clear" else action, utcnow()
            ):
                raise HTTPException(404)
        undo = None
        if action == "clear" and before is not None:  # one click undoes it
            undo = {"topic_id": before.topic_id, "subject": before.subject, "kind": before.kind}
        return self._page(request, "", 200, undo=undo)

    def _leave(self, request: Request) -> Response:
        ctx = self.ctx
        viewer = ctx.auth.require(request)
        with ctx.db.session() as session:
            mlist = ctx.public_list(session, request)
            outcome = subscriptions.unsubscribe(session, ctx.config, mlist, viewer.address, utcnow())
            left = outcome.status is subscriptions.Status.DONE
        return ctx.page(
            request, "web/preferences.html", 200, cache=False, mlist=mlist, member=None, left=left
        )


__all__ = ["PreferencePages"]
