"""Moderators' tools on the web, authors deleting their own posts, and the tag vocabulary page.

- ``/lists/NAME/topics/ID/moderate``: for a signed-in moderator, owner of the list or
  site admin (``core.roles.is_moderator``). GET shows the topic's tools; POST (field
  ``action``) runs one: ``lock``, ``unlock``, ``pin``, ``unpin``, ``retitle`` (``title``),
  ``merge`` (``into``: the topic number it goes into), ``move`` (``to``: another list the
  actor moderates too), ``split`` (``post``: the post that starts the new topic),
  ``remove`` (``post``, ``reason``). Each is the CLI's own function in ``core/topics.py``,
  so the decision is audited (actor: the address, origin: the client's IP) and split,
  merge and retitle are kept for ``rethread``. Anyone else, signed in or not, gets 404
  for the page and its POST, before any form is read: the answer for a topic that does
  not exist (RELIABILITY S41).
- ``/lists/NAME/posts/ID/delete``: the signed-in author of a published post, while the
  list's window (``lists set --author-delete-minutes``) is open: GET asks, POST deletes
  (``core.topics.delete_own_post``: a tombstone saying the author deleted it, the text
  and raw copy gone; copies already sent stay sent). Another's post, or one not shown:
  404; the window closed: a polite 403 page (RELIABILITY S43).
- ``/admin/lists/NAME/tags``: the list's tag vocabulary for its owners and the site
  admins (404 to anyone else): list, add (``tags``: words separated by spaces or commas),
  remove (``tag``), with the validation of ``lists tags``; audited.

Every POST needs the session's CSRF token for its path, from this site's origin (403).
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import Any

from sqlalchemy.orm import Session
from starlette.concurrency import run_in_threadpool
from starlette.exceptions import HTTPException
from starlette.requests import Request
from starlette.responses import RedirectResponse, Response

from mailforum.core import roles, topics
from mailforum.db import queries
from mailforum.db.models import MailingList, Post, Topic, utcnow
from mailforum.errors import InvalidInput, NotFound
from mailforum.web import body
from mailforum.web.auth import CsrfFailed, Viewer
from mailforum.web.context import WebContext, int_param
from mailforum.web.forms import read_form

log = logging.getLogger(__name__)

ACTIONS = ("lock", "unlock", "pin", "unpin", "retitle", "merge", "move", "split", "remove")
MAX_POSTS_SHOWN = 500  # posts of one topic listed on its tools page (split and remove)

# The list in the path if the viewer has the role, else HTTPException(404).
RoleCheck = Callable[[Session, Request, Viewer | None], MailingList]


@dataclass(frozen=True, slots=True)
class PostLine:
    """A post as the tools page lists it: enough to know which one to split at or remove."""

    id: int
    author: str
    received_at: Any
    first_line: str
    is_root: bool


def deletable(mlist: MailingList, posts: Iterable[Any], address: str | None, now: Any) -> frozenset[int]:
    """The ids of ``posts`` (views with ``id``, ``author_address``, ``received_at``, ``removed``)
    that ``address`` wrote and may still delete (the topic page's "Delete" buttons)."""
    if not address or mlist.author_delete_minutes <= 0:
        return frozenset()
    mine = address.lower()
    return frozenset(
        p.id
        for p in posts
        if not p.removed
        and (p.author_address or "").lower() == mine
        and topics.may_still_delete(mlist, p.received_at, now)
    )


def _actor(request: Request, viewer: Viewer) -> topics.Actor:
    return topics.Actor(viewer.address, request.client.host if request.client else "web")


class ModerationPages:
    """The endpoints named in ``runners/web.ROUTES`` under the group ``moderation``."""

    def __init__(self, ctx: WebContext) -> None:
        self.ctx = ctx
        self.db = ctx.db

    # --- who may ------------------------------------------------------------------------

    def _moderated(self, session: Session, request: Request, viewer: Viewer | None) -> MailingList:
        """The list in the path if the viewer moderates it (or owns it, or is a site admin); else 404."""
        mlist = queries.list_named(session, request.path_params["list"].lower())
        if viewer is None or mlist is None or not roles.is_moderator(session, mlist, viewer.address):
            raise HTTPException(404)
        return mlist

    def _owned(self, session: Session, request: Request, viewer: Viewer | None) -> MailingList:
        mlist = queries.list_named(session, request.path_params["list"].lower())
        if viewer is None or mlist is None or not roles.is_owner(session, mlist, viewer.address):
            raise HTTPException(404)
        return mlist

    async def _posted(self, request: Request, check: RoleCheck) -> tuple[Viewer, dict[str, str]]:
        """A POST's fields: 404 without the role (``check``: ``_moderated`` or ``_owned``) before
        the form is read, 403 without the session's CSRF token or from another origin."""
        viewer = await self.ctx.auth.load(request)

        def may() -> None:
            with self.db.read_session() as session:
                check(session, request, viewer)

        await run_in_threadpool(may)
        assert viewer is not None  # the check raised 404 otherwise
        form = await read_form(request, length_required=False)
        if not self.ctx.same_origin(request) or not self.ctx.auth.csrf_ok(
            request, viewer, form.get("csrf", "")
        ):
            raise CsrfFailed()
        return viewer, form

    def _page(self, request: Request, template: str, status: int = 200, **values: Any) -> Response:
        response = self.ctx.page(request, template, status, cache=False, **values)
        response.headers["x-robots-tag"] = "noindex"
        return response

    # --- a topic's tools ------------------------------------------------------------------

    async def moderate(self, request: Request) -> Response:
        if request.method == "GET":
            return await run_in_threadpool(self._tools_page, request)
        viewer, form = await self._posted(request, self._moderated)
        return await run_in_threadpool(self._act, request, viewer, form)

    def _topic(self, session: Session, mlist: MailingList, request: Request) -> Topic:
        topic = queries.resolve_topic(session, mlist, request.path_params["topic"])
        if topic is None or topic.post_count == 0:
            raise HTTPException(404)
        return topic

    def _tools_page(
        self, request: Request, status: int = 200, error: str = "", values: dict[str, str] | None = None
    ) -> Response:
        ctx = self.ctx
        viewer = ctx.auth.viewer(request)
        with self.db.read_session() as session:
            mlist = self._moderated(session, request, viewer)
            topic = self._topic(session, mlist, request)
            if topic.id != request.path_params["topic"] and request.method == "GET":
                return RedirectResponse(ctx.url("lists", mlist.name, "topics", topic.id, "moderate"), 301)
            assert viewer is not None
            shown, more = topics.shown_posts(session, topic, MAX_POSTS_SHOWN)
            posts = [self._post_line(mlist, post) for post in shown]
            others = [m.name for m in roles.moderated_lists(session, viewer.address) if m.id != mlist.id]
            title = body.subject_tags(topic.subject, mlist.name, mlist.subject_tag)[1]
        return self._page(
            request,
            "web/moderate_topic.html",
            status,
            mlist=mlist,
            topic=topic,
            title=title,
            posts=posts,
            more=more,
            others=others,
            action=ctx.url("lists", mlist.name, "topics", topic.id, "moderate"),
            error=error,
            values=values or {},
        )

    def _post_line(self, mlist: MailingList, post: Post) -> PostLine:
        text = next((line.strip() for line in post.text_body.splitlines() if line.strip()), "")
        author = self.ctx.author(mlist, post.author_name, post.author_address)
        return PostLine(post.id, author, post.received_at, text[:120], post.parent_id is None)

    def _act(self, request: Request, viewer: Viewer, form: dict[str, str]) -> Response:
        action = form.get("action", "")
        if action not in ACTIONS:
            raise HTTPException(400)
        actor, now = _actor(request, viewer), utcnow()
        topic_id = request.path_params["topic"]
        with self.db.session() as session:
            mlist = self._moderated(session, request, viewer)
            topic = self._topic(session, mlist, request)
            try:
                target = self._run(session, mlist, topic, action, form, actor, now)
            except (InvalidInput, NotFound) as exc:
                session.rollback()
                error = str(exc)
            else:
                log.info("moderator's %s on topic %s of %s from the web", action, topic_id, mlist.name)
                return RedirectResponse(target, 303)
        return self._tools_page(request, 422, error, form)

    def _run(
        self,
        session: Session,
        mlist: MailingList,
        topic: Topic,
        action: str,
        form: dict[str, str],
        actor: topics.Actor,
        now: Any,
    ) -> str:
        """Run one tool; the address to go to afterwards."""
        url = self.ctx.url
        if action in ("lock", "unlock", "pin", "unpin"):
            topics.mark(session, mlist, topic.id, action, actor, now)
            return url("lists", mlist.name, "topics", topic.id)
        if action == "retitle":
            topics.retitle(session, mlist, topic.id, form.get("title", ""), actor, now)
            return url("lists", mlist.name, "topics", topic.id)
        if action == "merge":
            into = int_param(form.get("into", "").strip().lstrip("#"), 0)
            if not into:
                raise InvalidInput("give the number of the topic to merge into")
            survivor = topics.merge(session, mlist, topic.id, into, actor, now)
            return url("lists", mlist.name, "topics", survivor.id)
        if action == "move":
            other = queries.list_named(session, form.get("to", "").strip().lower())
            if other is None or not roles.is_moderator(session, other, actor.name):
                # The same words for a list that does not exist: the answer tells nothing.
                raise InvalidInput(f"you do not moderate a list called {form.get('to', '')[:64]!r}")
            moved = topics.move(session, mlist, topic.id, other, actor, now)
            return url("lists", other.name, "topics", moved.id)
        post_id = int_param(form.get("post"), 0)
        post = topics.get_post(session, mlist, post_id)
        if post.topic_id != topic.id:
            raise NotFound(f"no post {post_id} in topic {topic.id}")
        if action == "split":
            new = topics.split(session, mlist, post.id, actor, now)
            return url("lists", mlist.name, "topics", new.id)
        topics.remove_post(session, mlist, post.id, form.get("reason", ""), actor, now)
        left = queries.resolve_topic(session, mlist, topic.id)
        if left is None or left.post_count == 0:
            return url("lists", mlist.name)
        return url("lists", mlist.name, "topics", left.id)

    # --- an author deleting their own post --------------------------------------------------

    async def delete_post(self, request: Request) -> Response:
        if request.method == "GET":
            return await run_in_threadpool(self._delete_page, request)
        await run_in_threadpool(self._may_delete, request)
        viewer, _ = await self.ctx.auth.posted(request, self.ctx.same_origin)
        return await run_in_threadpool(self._delete, request, viewer)

    def _readable(self, request: Request) -> None:
        """A private list answers 404 to those who may not read it, before anything else."""
        with self.db.read_session() as session:
            self.ctx.public_list(session, request)

    def _may_delete(self, request: Request) -> None:
        """Before a POST's form is read: 404 for a private list's outsiders, sign-in first, then
        404 unless the post is the viewer's own and shown (the same answer as no such post)."""
        self._readable(request)
        viewer = self.ctx.auth.require(request)
        with self.db.read_session() as session:
            self._own_post(session, request, viewer)

    def _own_post(self, session: Session, request: Request, viewer: Viewer) -> tuple[MailingList, Post]:
        mlist = self.ctx.public_list(session, request)
        post = queries.published_post(session, mlist, request.path_params["post"])
        if post is None or not topics.is_own(post, viewer.address):
            raise HTTPException(404)
        return mlist, post

    def _delete_page(self, request: Request) -> Response:
        self._readable(request)
        viewer = self.ctx.auth.require(request)
        with self.db.read_session() as session:
            mlist, post = self._own_post(session, request, viewer)
            open_ = topics.may_still_delete(mlist, post.received_at, utcnow())
            deadline = topics.delete_deadline(mlist, post.received_at)
            view = {
                "id": post.id,
                "topic_id": post.topic_id,
                "subject": body.subject_tags(post.subject, mlist.name, mlist.subject_tag)[1],
                "received_at": post.received_at,
                "text": post.text_body[:2000],
            }
        return self._page(
            request,
            "web/delete_post.html",
            200 if open_ else 403,
            mlist=mlist,
            post=view,
            too_late=not open_,
            minutes=mlist.author_delete_minutes,
            deadline=deadline,
            action=self.ctx.url("lists", mlist.name, "posts", view["id"], "delete"),
        )

    def _delete(self, request: Request, viewer: Viewer) -> Response:
        ctx = self.ctx
        with self.db.session() as session:
            mlist, post = self._own_post(session, request, viewer)
            topic_id, name = post.topic_id, mlist.name
            try:  # TooLate is raised before anything changes
                topics.delete_own_post(session, mlist, post.id, _actor(request, viewer), utcnow())
            except topics.TooLate:
                too_late = True
            else:
                too_late = False
                left = queries.resolve_topic(session, mlist, topic_id)
                target = (
                    ctx.url("lists", name, "topics", left.id)
                    if left is not None and left.post_count
                    else ctx.url("lists", name)
                )
        if too_late:
            return self._page(
                request,
                "web/delete_post.html",
                403,
                mlist=mlist,
                post=None,
                too_late=True,
                minutes=mlist.author_delete_minutes,
                deadline=None,
                action="",
            )
        log.info("a post of %s was deleted by its author on the web", name)
        return RedirectResponse(target, 303)

    # --- the tag vocabulary (owners) -----------------------------------------------------------

    async def tags(self, request: Request) -> Response:
        if request.method == "GET":
            return await run_in_threadpool(self._tags_page, request)
        viewer, form = await self._posted(request, self._owned)
        return await run_in_threadpool(self._tags_post, request, viewer, form)

    def _tags_page(self, request: Request, status: int = 200, error: str = "", typed: str = "") -> Response:
        viewer = self.ctx.auth.viewer(request)
        with self.db.read_session() as session:
            mlist = self._owned(session, request, viewer)
            vocabulary = [t.name for t in topics.vocabulary(session, mlist)]
        return self._page(
            request,
            "web/moderate_tags.html",
            status,
            mlist=mlist,
            tags=vocabulary,
            error=error,
            typed=typed,
            added=request.query_params.get("added", "")[:200],
            action=self.ctx.url("admin", "lists", mlist.name, "tags"),
        )

    def _tags_post(self, request: Request, viewer: Viewer, form: dict[str, str]) -> Response:
        action = form.get("action", "")
        if action not in ("add", "remove"):
            raise HTTPException(400)
        typed = form.get("tags", "") if action == "add" else form.get("tag", "")
        words = typed.replace(",", " ").split()
        if not words:
            return self._tags_page(request, 422, "give a tag (letters, digits, '-' and '_')", typed)
        actor = _actor(request, viewer)
        with self.db.session() as session:
            mlist = self._owned(session, request, viewer)
            try:
                names = [topics.tag_name(w) for w in words[:100]]
            except InvalidInput as exc:
                session.rollback()
                return self._tags_page(request, 422, str(exc), typed)
            if action == "add":
                changed = topics.add_tags(session, mlist, names, utcnow())
            else:
                changed = topics.remove_tags(session, mlist, names)
            if changed:
                topics.audit(
                    session, actor, f"tags.{action}", mlist, ",".join(changed)[:200], {"tags": changed}
                )
            name = mlist.name
        return RedirectResponse(self.ctx.url("admin", "lists", name, "tags"), 303)


__all__ = ["ModerationPages", "deletable"]
