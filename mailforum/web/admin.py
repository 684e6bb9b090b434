"""The owner pages under ``/admin``: a list's settings, members, held posts, bans, delivery
problems, activity charts and audit log, for its owners and the site admins.

Every route answers 404 to anyone without the role (not signed in, a member, a
moderator, the owner of another list), the same answer as for a list that does not
exist, so the pages do not tell which lists exist. Every change is a POST with the
session's CSRF token (web/auth.py) from this site's origin, and is written to the
audit log (core/audit.py) with the owner's address and the client's IP, in the
change's own transaction. The bulk add takes pasted addresses, one per line, and adds
nothing unless every line is good; the page then reports line by line.
"""

from __future__ import annotations

import datetime as dt
import logging
from collections import Counter
from dataclasses import dataclass
from typing import Any

from sqlalchemy.orm import Session
from starlette.concurrency import run_in_threadpool
from starlette.exceptions import HTTPException
from starlette.requests import Request
from starlette.responses import RedirectResponse, Response

from mailforum.core import (
    audit,
    bans,
    bounces,
    commands,
    digest_schedule,
    list_templates,
    lists,
    moderation,
    roles,
)
from mailforum.db import admin_queries, outbox, queries, spool
from mailforum.db.enums import DeliveryMode, DigestFormat, PostingPolicy, Visibility
from mailforum.db.models import MailingList, utcnow
from mailforum.errors import InvalidInput
from mailforum.render import MAX_SOURCE, mail_templates
from mailforum.web import charts
from mailforum.web.auth import CsrfFailed, Viewer
from mailforum.web.context import WebContext, int_param

log = logging.getLogger(__name__)

PAGE = 50
MAX_PASTE = 512 * 1024  # bytes of a pasted bulk add
MAX_LINES = 5000
CHART_DAYS = 30


@dataclass(frozen=True, slots=True)
class Line:
    """One line of a pasted bulk add and what became of it."""

    number: int
    text: str
    error: str = ""


class OwnerPages:
    """The /admin endpoints; each is named in ``runners/web.ROUTES``."""

    def __init__(self, ctx: WebContext) -> None:
        self.ctx = ctx
        self.db = ctx.db
        self.config = ctx.config

    # --- who may see what -------------------------------------------------------------------

    def _viewer(self, request: Request) -> Viewer:
        viewer = self.ctx.auth.viewer(request)
        if viewer is None:
            raise HTTPException(404)
        return viewer

    def _list(self, session: Session, request: Request, viewer: Viewer) -> MailingList:
        mlist = queries.list_named(session, request.path_params["list"].lower())
        if mlist is None or not roles.is_owner(session, mlist, viewer.address):
            raise HTTPException(404)
        return mlist

    def _may(self, request: Request, viewer: Viewer) -> None:
        """404 unless the viewer owns the list in the path (or, without one, is a site admin)."""
        with self.db.read_session() as session:
            if "list" in request.path_params:
                self._list(session, request, viewer)
            elif not roles.is_admin(session, viewer.address):
                raise HTTPException(404)

    async def _form(self, request: Request, big: bool = False) -> tuple[Viewer, dict[str, str]]:
        """A POST's fields: 404 without the role (before anything else is read; the change
        itself checks again in its own transaction), 403 without this session's CSRF token
        or from another origin."""
        viewer = await self.ctx.auth.load(request)
        if viewer is None:
            raise HTTPException(404)
        await run_in_threadpool(self._may, request, viewer)
        if big:
            form = await _read_paste(request)
        else:
            from mailforum.web.forms import read_form

            form = await read_form(request, length_required=False)
        if not self.ctx.same_origin(request) or not self.ctx.auth.csrf_ok(
            request, viewer, form.get("csrf", "")
        ):
            raise CsrfFailed()
        return viewer, form

    def _audit(
        self,
        session: Session,
        request: Request,
        viewer: Viewer,
        action: str,
        mlist: MailingList | None,
        target: str = "",
        detail: dict[str, object] | None = None,
    ) -> None:
        client = request.client.host if request.client else "web"
        audit.record(
            session,
            actor=viewer.address,
            origin=client,
            action=action,
            mailing_list=mlist,
            target=target,
            detail=detail,
        )

    def _page(self, request: Request, template: str, status: int = 200, **values: Any) -> Response:
        response = self.ctx.page(request, template, status, cache=False, **values)
        response.headers["x-robots-tag"] = "noindex"
        return response

    def _back(self, request: Request, *parts: object, **query: object) -> Response:
        return RedirectResponse(self.ctx.url("admin", "lists", *parts, **query), 303)

    # --- the index and a new list ---------------------------------------------------------------

    def admin_index(self, request: Request) -> Response:
        viewer = self._viewer(request)
        with self.db.read_session() as session:
            owned = roles.owned_lists(session, viewer.address)
            admin = roles.is_admin(session, viewer.address)
        if not owned and not admin:
            raise HTTPException(404)
        return self._page(request, "web/admin_index.html", mlist=None, owned=owned, admin=admin)

    async def admin_create(self, request: Request) -> Response:
        if request.method == "GET":
            return await run_in_threadpool(self._create_page, request)
        viewer, form = await self._form(request)
        return await run_in_threadpool(self._create, request, viewer, form)

    def _create_page(self, request: Request, status: int = 200, error: str = "", **values: Any) -> Response:
        viewer = self._viewer(request)
        with self.db.read_session() as session:
            if not roles.is_admin(session, viewer.address):
                raise HTTPException(404)
        return self._page(
            request,
            "web/admin_create.html",
            status,
            mlist=None,
            error=error,
            policies=[p.value for p in PostingPolicy],
            visibilities=[v.value for v in Visibility],
            values=values,
        )

    def _create(self, request: Request, viewer: Viewer, form: dict[str, str]) -> Response:
        name = form.get("name", "").strip().lower()
        try:
            policy = PostingPolicy(form.get("policy", "members"))
            visibility = Visibility(form.get("visibility", "public"))
        except ValueError:
            return self._create_page(request, 400, "unknown policy or visibility", **form)
        with self.db.session() as session:
            if not roles.is_admin(session, viewer.address):
                raise HTTPException(404)
            try:
                mlist = lists.create_list(
                    session, name, form.get("title", "").strip()[:200], "", policy, visibility
                )
            except InvalidInput as exc:
                session.rollback()
                return self._create_page(request, 422, str(exc), **form)
            roles.add_owners(session, mlist, [viewer.address])
            self._audit(session, request, viewer, "list.create", mlist, mlist.name, {"policy": policy.value})
        return self._back(request, name)

    # --- settings ------------------------------------------------------------------------------

    async def admin_list(self, request: Request) -> Response:
        if request.method == "GET":
            return await run_in_threadpool(self._settings_page, request)
        viewer, form = await self._form(request)
        return await run_in_threadpool(self._settings, request, viewer, form)

    def _settings_page(
        self, request: Request, status: int = 200, error: str = "", form: dict[str, str] | None = None
    ) -> Response:
        viewer = self._viewer(request)
        with self.db.read_session() as session:
            if request.path_params["list"].lower() == "new" and queries.list_named(session, "new") is None:
                # The create page's old address: a site admin is sent to its new one; anyone
                # else gets the 404 they get for every list they do not run.
                if roles.is_admin(session, viewer.address):
                    return RedirectResponse(self.ctx.url("admin", "new-list"), 303)
                raise HTTPException(404)
            mlist = self._list(session, request, viewer)
            stats = lists.list_stats(session, mlist)
            owners = roles.owners(session, mlist)
        return self._page(
            request,
            "web/admin_list.html",
            status,
            mlist=mlist,
            stats=stats,
            owners=owners,
            error=error,
            saved=request.query_params.get("saved") == "yes",
            policies=[p.value for p in PostingPolicy],
            visibilities=[v.value for v in Visibility],
            formats=[f.value for f in DigestFormat],
            site_digest=self.config.digest,
            form=form or {},
        )

    def _settings(self, request: Request, viewer: Viewer, form: dict[str, str]) -> Response:
        try:
            changes: dict[str, object] = {
                "title": form.get("title", "").strip()[:200],
                "posting_policy": PostingPolicy(form.get("policy", "")).value,
                "visibility": Visibility(form.get("visibility", "")).value,
                "moderate_first_post": form.get("moderate_first_post") == "on",
                "show_addresses": form.get("show_addresses") == "on",
                "unverified_action": {"hold": "hold", "confirm": "confirm"}[
                    form.get("unverified_action", "")
                ],
            }
        except (ValueError, KeyError):
            return self._settings_page(request, 400, "a setting has a value this page does not offer")
        if any(c in str(changes["title"]) for c in "\r\n\0"):
            return self._settings_page(request, 400, "the title must be one line")
        with self.db.session() as session:
            mlist = self._list(session, request, viewer)
            changed = {k: v for k, v in changes.items() if getattr(mlist, k) != v}
            for key, value in changed.items():
                setattr(mlist, key, value)
            try:  # the digest's hour, zone and format: the rule `digest schedule` and `digest format` use
                changed |= digest_schedule.set_list_digest(
                    mlist,
                    hour=form.get("digest_hour"),
                    timezone=form.get("digest_timezone"),
                    digest_format=form.get("digest_format"),
                )
            except InvalidInput as exc:
                session.rollback()
                return self._settings_page(request, 422, str(exc), form)
            if changed:
                self._audit(session, request, viewer, "list.settings", mlist, mlist.name, changed)
        return self._back(request, mlist.name, saved="yes")

    # --- members ------------------------------------------------------------------------------

    async def admin_members(self, request: Request) -> Response:
        if request.method == "GET":
            return await run_in_threadpool(self._members_page, request)
        viewer, form = await self._form(request, big=True)
        return await run_in_threadpool(self._members_post, request, viewer, form)

    def _members_page(
        self, request: Request, status: int = 200, report: list[Line] | None = None, **values: Any
    ) -> Response:
        viewer = self._viewer(request)
        text = request.query_params.get("q", "").strip()[:200]
        after = int_param(request.query_params.get("after"), 0)
        with self.db.read_session() as session:
            mlist = self._list(session, request, viewer)
            page = admin_queries.members_search(session, mlist, text, after, PAGE)
            total = admin_queries.member_count(session, mlist)
        return self._page(
            request,
            "web/admin_members.html",
            status,
            mlist=mlist,
            members=page.items,
            next=page.next,
            query=text,
            total=total,
            modes=[m.value for m in DeliveryMode],
            report=report,
            pasted=values.get("pasted", ""),
            mode=values.get("mode", DeliveryMode.ALL.value),
            added=request.query_params.get("added"),
            existing=request.query_params.get("existing"),
        )

    def _members_post(self, request: Request, viewer: Viewer, form: dict[str, str]) -> Response:
        action = form.get("action", "")
        if action == "add":
            return self._bulk_add(request, viewer, form)
        address = form.get("address", "").strip().lower()
        with self.db.session() as session:
            mlist = self._list(session, request, viewer)
            member = lists.find_member(session, mlist.id, address)
            if member is None:
                raise HTTPException(404)
            if action == "remove":
                lists.remove_members(session, mlist, [lists.Address(member.address)])
                self._audit(session, request, viewer, "members.remove", mlist, member.address)
            elif action == "mode" and form.get("mode") in {m.value for m in DeliveryMode}:
                commands.set_mode(session, member, DeliveryMode(form["mode"]))
                self._audit(
                    session, request, viewer, "members.change", mlist, member.address, {"mode": form["mode"]}
                )
            elif action == "enable":
                bounces.enable(member)
                self._audit(session, request, viewer, "members.enable", mlist, member.address)
            else:
                raise HTTPException(400)
        return self._back(request, mlist.name, "members", q=form.get("q", ""))

    def _bulk_add(self, request: Request, viewer: Viewer, form: dict[str, str]) -> Response:
        pasted = form.get("addresses", "")
        mode_text = form.get("mode", DeliveryMode.ALL.value)
        if mode_text not in {m.value for m in DeliveryMode}:
            raise HTTPException(400)
        local = self.config.site.allow_local_domains
        report: list[Line] = []
        checked: list[tuple[int, lists.Address]] = []
        for number, raw in enumerate(pasted.splitlines()[:MAX_LINES], 1):
            text = raw.strip()
            if not text or text.startswith("#"):
                continue
            try:
                who = lists.check_address(text, local_domains=local)
            except InvalidInput as exc:
                report.append(Line(number, text, str(exc)))
                continue
            checked.append((number, who))
            report.append(Line(number, text))
        if len(pasted.splitlines()) > MAX_LINES:
            report.append(Line(MAX_LINES + 1, "…", f"at most {MAX_LINES} lines at a time"))
        with self.db.session() as session:
            mlist = self._list(session, request, viewer)
            banned = bans.banned_among(session, mlist, [a.address for _, a in checked])
            if banned:
                by_line = {number: a.address for number, a in checked}
                report = [
                    Line(line.number, line.text, f"banned ({banned[by_line[line.number]]})")
                    if by_line.get(line.number) in banned
                    else line
                    for line in report
                ]
            bad = [line for line in report if line.error]
            if bad or not checked:
                session.rollback()
                status = 422 if bad else 400
                return self._members_page(request, status, report, pasted=pasted, mode=mode_text)
            added, existing = lists.add_members(
                session, mlist, [a for _, a in checked], DeliveryMode(mode_text), utcnow()
            )
            detail: dict[str, object] = {
                "added": added,
                "existing": existing,
                "mode": mode_text,
                "addresses": [a.address for _, a in checked][:1000],
            }
            self._audit(session, request, viewer, "members.add", mlist, f"{len(checked)} addresses", detail)
        return self._back(request, mlist.name, "members", added=added, existing=existing)

    # --- held posts -----------------------------------------------------------------------------

    async def admin_held(self, request: Request) -> Response:
        if request.method == "GET":
            return await run_in_threadpool(self._held_page, request)
        viewer, form = await self._form(request)
        return await run_in_threadpool(self._held_post, request, viewer, form)

    def _held_page(self, request: Request, status: int = 200, error: str = "") -> Response:
        viewer = self._viewer(request)
        with self.db.read_session() as session:
            mlist = self._list(session, request, viewer)
            page = admin_queries.held_page(session, mlist, 0, 200)
        return self._page(request, "web/admin_held.html", status, mlist=mlist, held=page.items, error=error)

    def _held_post(self, request: Request, viewer: Viewer, form: dict[str, str]) -> Response:
        action = form.get("action", "")
        post_id = int_param(form.get("post"), 0)
        with self.db.session() as session:
            mlist = self._list(session, request, viewer)
            post = moderation.held_post(session, post_id)
            if post is None or post.list_id != mlist.id:
                raise HTTPException(404)
            author, reason = post.author_address, form.get("reason", "").strip()[:2000]
            if action == "ban":
                try:  # checked before anything is done: a sender we cannot ban is told, not a 500
                    bans.normalise(author or "")
                except InvalidInput:
                    session.rollback()
                    return self._held_page(
                        request,
                        422,
                        f"the sender {repr(author) if author else '(no address)'} of post {post_id} "
                        "cannot be banned (not an address); discard the post instead, or ban a "
                        "pattern on the bans page",
                    )
            now = utcnow()
            if action in ("approve", "allow"):
                moderation.act(
                    session, self.config, mlist, post, moderation.APPROVE, now, allow_sender=action == "allow"
                )
            elif action == "reject":
                moderation.act(session, self.config, mlist, post, moderation.REJECT, now, reason=reason)
            elif action in ("discard", "ban"):
                moderation.act(session, self.config, mlist, post, moderation.DISCARD, now)
                if action == "ban":
                    for pattern in bans.add(session, mlist, [author or ""]):
                        self._audit(session, request, viewer, "bans.add", mlist, pattern)
            else:
                raise HTTPException(400)
            detail = {"post": post_id, "author": author, "reason": reason}
            self._audit(session, request, viewer, f"held.{action}", mlist, str(post_id), detail)
        return self._back(request, mlist.name, "held")

    # --- bans -----------------------------------------------------------------------------------

    async def admin_bans(self, request: Request) -> Response:
        if request.method == "GET":
            return await run_in_threadpool(self._bans_page, request)
        viewer, form = await self._form(request)
        return await run_in_threadpool(self._bans_post, request, viewer, form)

    def _bans_page(self, request: Request, status: int = 200, error: str = "", pattern: str = "") -> Response:
        viewer = self._viewer(request)
        with self.db.read_session() as session:
            mlist = self._list(session, request, viewer)
            found = bans.patterns(session, mlist)
            site = bans.patterns(session, None)
        return self._page(
            request,
            "web/admin_bans.html",
            status,
            mlist=mlist,
            bans=found,
            site=site,
            error=error,
            pattern=pattern,
        )

    def _bans_post(self, request: Request, viewer: Viewer, form: dict[str, str]) -> Response:
        action, pattern = form.get("action", ""), form.get("pattern", "")
        if action not in ("add", "remove"):
            raise HTTPException(400)
        with self.db.session() as session:
            mlist = self._list(session, request, viewer)
            try:
                changed = (bans.add if action == "add" else bans.remove)(session, mlist, [pattern])
            except InvalidInput as exc:
                session.rollback()
                return self._bans_page(request, 422, str(exc), pattern)
            for done in changed:
                self._audit(session, request, viewer, f"bans.{action}", mlist, done)
        return self._back(request, mlist.name, "bans")

    # --- site-wide bans (site admins) -----------------------------------------------------------

    async def admin_site_bans(self, request: Request) -> Response:
        if request.method == "GET":
            return await run_in_threadpool(self._site_bans_page, request)
        viewer, form = await self._form(request)
        return await run_in_threadpool(self._site_bans_post, request, viewer, form)

    def _site_bans_page(
        self, request: Request, status: int = 200, error: str = "", pattern: str = ""
    ) -> Response:
        viewer = self._viewer(request)
        with self.db.read_session() as session:
            if not roles.is_admin(session, viewer.address):
                raise HTTPException(404)
            found = bans.patterns(session, None)
        return self._page(
            request, "web/admin_site_bans.html", status, mlist=None, bans=found, error=error, pattern=pattern
        )

    def _site_bans_post(self, request: Request, viewer: Viewer, form: dict[str, str]) -> Response:
        action, pattern = form.get("action", ""), form.get("pattern", "")
        if action not in ("add", "remove"):
            raise HTTPException(400)
        with self.db.session() as session:
            if not roles.is_admin(session, viewer.address):
                raise HTTPException(404)
            try:  # the rule `mailforum bans '*' add|remove` uses
                changed = (bans.add if action == "add" else bans.remove)(session, None, [pattern])
            except InvalidInput as exc:
                session.rollback()
                return self._site_bans_page(request, 422, str(exc), pattern)
            for done in changed:
                self._audit(session, request, viewer, f"bans.{action}", None, done, {"site": True})
        return RedirectResponse(self.ctx.url("admin", "bans"), 303)

    # --- the list's own mail templates ------------------------------------------------------

    def admin_templates(self, request: Request) -> Response:
        viewer = self._viewer(request)
        with self.db.read_session() as session:
            mlist = self._list(session, request, viewer)
            found = list_templates.templates(session, mlist)
        return self._page(request, "web/admin_templates.html", mlist=mlist, templates=found)

    async def admin_template(self, request: Request) -> Response:
        if request.method == "GET":
            return await run_in_threadpool(self._template_page, request)
        viewer, form = await self._form(request, big=True)
        return await run_in_threadpool(self._template_post, request, viewer, form)

    def _template_name(self, request: Request) -> str:
        name = str(request.path_params["template"])
        if name not in mail_templates():
            raise HTTPException(404)
        return name

    def _template_page(
        self,
        request: Request,
        status: int = 200,
        error: str = "",
        source: str | None = None,
        shown: str | None = None,
    ) -> Response:
        viewer = self._viewer(request)
        with self.db.read_session() as session:
            mlist = self._list(session, request, viewer)
            name = self._template_name(request)
            own = list_templates.stored(session, mlist, name)
        return self._page(
            request,
            "web/admin_template.html",
            status,
            mlist=mlist,
            name=name,
            own=own is not None,
            source=source
            if source is not None
            else own
            if own is not None
            else list_templates.builtin_source(name),
            error=error,
            saved=request.query_params.get("saved", ""),
            max_bytes=MAX_SOURCE,
            preview=shown,
        )

    def _template_post(self, request: Request, viewer: Viewer, form: dict[str, str]) -> Response:
        action, source = form.get("action", ""), form.get("source", "")
        with self.db.session() as session:
            mlist = self._list(session, request, viewer)
            name = self._template_name(request)
            if action == "preview":  # nothing is kept
                try:
                    shown = list_templates.preview_source(self.config, mlist, name, source)
                except InvalidInput as exc:
                    return self._template_page(request, 422, str(exc), source)
                return self._template_page(request, 200, "", source, shown)
            if action == "save":
                try:
                    changed = list_templates.set_template(session, mlist, name, source, viewer.address)
                except InvalidInput as exc:
                    session.rollback()
                    return self._template_page(request, 422, str(exc), source)
                if changed:
                    detail: dict[str, object] = {"bytes": len(source.encode("utf-8", "replace"))}
                    self._audit(session, request, viewer, "templates.set", mlist, name, detail)
            elif action == "reset":
                changed = list_templates.reset_template(session, mlist, name)
                if changed:
                    self._audit(session, request, viewer, "templates.reset", mlist, name)
            else:
                raise HTTPException(400)
        return self._back(request, mlist.name, "templates", *name.split("/"), saved=action)

    # --- delivery problems ----------------------------------------------------------------------

    async def admin_problems(self, request: Request) -> Response:
        if request.method == "GET":
            return await run_in_threadpool(self._problems_page, request)
        viewer, form = await self._form(request)
        return await run_in_threadpool(self._problems_post, request, viewer, form)

    def _problems_page(self, request: Request) -> Response:
        viewer = self._viewer(request)
        with self.db.read_session() as session:
            mlist = self._list(session, request, viewer)
            failed = admin_queries.failed_copies(session, mlist)
            admin = roles.is_admin(session, viewer.address)
            parked = admin_queries.parked_entries(session) if admin else []
        return self._page(
            request, "web/admin_problems.html", mlist=mlist, failed=failed, parked=parked, admin=admin
        )

    def _problems_post(self, request: Request, viewer: Viewer, form: dict[str, str]) -> Response:
        what, item = form.get("retry", ""), int_param(form.get("id"), 0)
        now = utcnow()
        with self.db.session() as session:
            mlist = self._list(session, request, viewer)
            if what == "copy":  # one copy of this list, or all of them: one UPDATE either way
                count = outbox.retry(session, [item] if item else None, now, list_id=mlist.id)
                self._audit(
                    session, request, viewer, "outbox.retry", mlist, str(item or "all"), {"copies": count}
                )
            elif what == "spool" and roles.is_admin(session, viewer.address):
                count = spool.retry(session, [item] if item else None, now)
                self._audit(
                    session, request, viewer, "spool.retry", None, str(item or "all"), {"entries": count}
                )
            else:
                raise HTTPException(404)
        return self._back(request, mlist.name, "problems")

    # --- activity and the audit log -----------------------------------------------------------

    def admin_activity(self, request: Request) -> Response:
        viewer = self._viewer(request)
        today = utcnow().date()
        first = today - dt.timedelta(days=CHART_DAYS - 1)
        since = dt.datetime.combine(first, dt.time(), dt.UTC)
        with self.db.read_session() as session:
            mlist = self._list(session, request, viewer)
            data = admin_queries.activity(session, mlist, since)
        span = charts.days(first, today)
        labels = [d.isoformat() for d in span]
        posts = Counter(at.date() for at, _ in data.posts)
        authors: dict[dt.date, set[str]] = {}
        for at, author in data.posts:
            authors.setdefault(at.date(), set()).add(author)
        joined = Counter(at.date() for at in data.joined)
        bounced = Counter(at.date() for at in data.bounced)
        delays: dict[dt.date, list[float]] = {}
        for at, seconds in data.delivery:
            delays.setdefault(at.date(), []).append(seconds)
        members, running = [], data.members_before
        for day in span:
            running += joined[day]
            members.append(running)
        median = [sorted(delays[d])[len(delays[d]) // 2] if d in delays else 0.0 for d in span]
        shown = {
            "posts": charts.bars("Posts per day", labels, [posts[d] for d in span]),
            "active": charts.bars(
                "Members who posted, per day", labels, [len(authors.get(d, ())) for d in span]
            ),
            "members": charts.line("Members", labels, members),
            "bounces": charts.bars("Members with a bounce, per day", labels, [bounced[d] for d in span]),
            "latency": charts.bars("Median delivery time per day", labels, median, " s"),
        }
        totals = {"posts": len(data.posts), "members": members[-1] if members else 0}
        return self._page(
            request, "web/admin_activity.html", mlist=mlist, charts=shown, totals=totals, days=CHART_DAYS
        )

    def admin_audit(self, request: Request) -> Response:
        viewer = self._viewer(request)
        before = int_param(request.query_params.get("before"), 0) or None
        with self.db.read_session() as session:
            mlist = self._list(session, request, viewer)
            found = audit.entries(session, mailing_list=mlist, before_id=before, limit=PAGE + 1)
        more = len(found) > PAGE
        entries = found[:PAGE]
        return self._page(
            request,
            "web/admin_audit.html",
            mlist=mlist,
            entries=entries,
            older=entries[-1].id if more and entries else None,
        )


async def _read_paste(request: Request) -> dict[str, str]:
    """A form with a pasted list of addresses: larger than the small forms allow, still capped."""
    length = request.headers.get("content-length", "0")
    if not length.isdigit() or int(length) > MAX_PASTE:
        raise HTTPException(413 if length.isdigit() else 400)
    try:
        form = await request.form(max_files=0, max_fields=10, max_part_size=MAX_PASTE)
    except HTTPException:
        raise HTTPException(400) from None
    try:
        return {k: str(v) for k, v in form.items()}
    finally:
        await form.close()
