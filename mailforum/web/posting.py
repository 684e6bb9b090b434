"""Posting from the browser: a new topic, a reply, and what became of the post.

- ``/lists/NAME/new`` (fields ``subject``, ``body``, optional ``attachment`` files, and
  ``tags``, once per ticked word of the list's vocabulary: the topic's tags) and
  ``/lists/NAME/posts/ID/reply`` (field ``body``; ``?quote=1`` fills in the post quoted):
  GET shows the form to a signed-in member, POST writes the message to the spool
  (``core.webpost``: the path mail takes), wakes the spool processors and waits briefly
  for the post: published, a 303 to it in its topic; held or not there yet, a 303 to
  ``/lists/NAME/sent/SPOOL/KEY``, which says the post awaits a moderator or is on its way.
- Not signed in: ``Auth.require`` answers (a GET goes to the sign-in page; a POST gets a
  403 page offering to sign in). Signed in but not a member: a 403 page saying so, with
  the join form's link; nothing is stored. Every POST checks the Origin and the session's
  CSRF token (``Auth``) before anything else is read.
"""

from __future__ import annotations

import logging
import re
import time
from collections.abc import Callable
from dataclasses import dataclass

from sqlalchemy.orm import Session
from starlette.concurrency import run_in_threadpool
from starlette.datastructures import UploadFile
from starlette.exceptions import HTTPException
from starlette.requests import Request
from starlette.responses import RedirectResponse, Response

from mailforum.core import topics, webpost
from mailforum.core.lists import find_member
from mailforum.db import queries, webposts
from mailforum.db.models import MailingList, Post, utcnow
from mailforum.errors import InvalidInput
from mailforum.web import body
from mailforum.web.auth import CsrfFailed, Viewer
from mailforum.web.context import WebContext

log = logging.getLogger(__name__)

WAIT = 5.0  # seconds a POST waits for the processor to store the post before answering
_KEY = re.compile(r"web\.[0-9a-f]{24}\Z")

Spooled = Callable[[], None]  # wakes the spool processors (runners/wakeup.SPOOL)


@dataclass(frozen=True, slots=True)
class Posted:
    """A form as sent: its fields and the files attached."""

    fields: dict[str, str]
    uploads: tuple[webpost.Upload, ...]
    tags: tuple[str, ...] = ()  # the new-topic form's ticked tags (field ``tags``, repeated)


class PostingForms:
    """The new-topic and reply forms and the "sent" page; endpoints named in ``runners/web.ROUTES``."""

    def __init__(self, ctx: WebContext, spooled: Spooled | None = None) -> None:
        self.ctx = ctx
        self.spooled = spooled or (lambda: None)
        self.max_bytes = ctx.config.smtp.max_message_size

    # --- the endpoints ----------------------------------------------------------------

    async def new_topic(self, request: Request) -> Response:
        viewer = await run_in_threadpool(self._viewer, request)
        if request.method == "GET":
            return await run_in_threadpool(self._form, request, viewer, None, "", "", "", 200)
        posted = await self._read(request, viewer)
        return await run_in_threadpool(self._post, request, viewer, None, posted)

    async def reply(self, request: Request) -> Response:
        viewer = await run_in_threadpool(self._viewer, request)
        post_id = request.path_params["post"]
        if request.method == "GET":
            return await run_in_threadpool(self._form, request, viewer, post_id, "", "", "", 200)
        posted = await self._read(request, viewer)
        return await run_in_threadpool(self._post, request, viewer, post_id, posted)

    def sent(self, request: Request) -> Response:
        """What became of a web post: only its author sees this page (404 for anyone else)."""
        ctx = self.ctx
        viewer = self._viewer(request)
        key = request.path_params["key"]
        if not _KEY.match(key):
            raise HTTPException(404)
        message_id = f"<{key}@{ctx.config.site.domain}>"
        with ctx.db.read_session() as session:
            mlist = ctx.public_list(session, request)
            found = webposts.fate(session, mlist.id, request.path_params["spool"], message_id)
            if found is None or found.author.lower() != viewer.address.lower():
                raise HTTPException(404)
            target = (
                self._post_url(session, mlist, found.post_id) if found.fate is webposts.Fate.PUBLISHED else ""
            )
        return ctx.page(
            request, "web/sent.html", cache=False, mlist=mlist, fate=found.fate.value, target=target
        )

    # --- helpers ------------------------------------------------------------------------

    def _viewer(self, request: Request) -> Viewer:
        """The signed-in viewer, once the list is known to be one they may see: a private list
        answers 404 before anything else (its existence must not leak); then ``Auth.require``
        (SignInRequired: the sign-in page, or a 403 page for a POST)."""
        with self.ctx.db.read_session() as session:
            self.ctx.public_list(session, request)
        return self.ctx.auth.require(request)

    async def _read(self, request: Request, viewer: Viewer) -> Posted:
        """The POSTed fields and files, after the Origin and the CSRF token are checked; 400 when
        the form is malformed or bigger than the list's message size limit allows."""
        length = request.headers.get("content-length", "")
        if not length.isdigit():
            raise HTTPException(400)
        if int(length) > self.max_bytes + 64 * 1024:
            raise HTTPException(413)
        try:
            form = await request.form(
                max_files=webpost.MAX_ATTACHMENTS, max_fields=120, max_part_size=self.max_bytes
            )
        except HTTPException:
            raise HTTPException(400) from None
        try:
            fields: dict[str, str] = {}
            uploads: list[webpost.Upload] = []
            tags: list[str] = []
            for name, value in form.multi_items():
                if name == "tags" and isinstance(value, str):
                    tags.append(value)
                elif isinstance(value, UploadFile):
                    data = await value.read()
                    if data or value.filename:
                        content_type = value.content_type or "application/octet-stream"
                        uploads.append(webpost.Upload(value.filename or "attachment", content_type, data))
                elif name not in fields:
                    fields[name] = value
        finally:
            await form.close()
        if not self.ctx.same_origin(request) or not self.ctx.auth.csrf_ok(
            request, viewer, fields.get("csrf", "")
        ):
            raise CsrfFailed()
        return Posted(fields, tuple(u for u in uploads if u.data), tuple(dict.fromkeys(tags)))

    def _parent(self, session: Session, mlist: MailingList, post_id: int | None) -> Post | None:
        if post_id is None:
            return None
        post = queries.published_post(session, mlist, post_id)
        if post is None:
            raise HTTPException(404)
        return post

    def _form(
        self,
        request: Request,
        viewer: Viewer,
        post_id: int | None,
        subject: str,
        text: str,
        error: str,
        status: int,
        chosen: tuple[str, ...] = (),
    ) -> Response:
        ctx = self.ctx
        with ctx.db.read_session() as session:
            mlist = ctx.public_list(session, request)
            parent = self._parent(session, mlist, post_id)
            vocabulary = [t.name for t in topics.vocabulary(session, mlist)] if parent is None else []
            member = find_member(session, mlist.id, viewer.address)
            if member is None:
                return ctx.page(
                    request, "web/compose.html", 403, cache=False, mlist=mlist, parent=None, not_member=True
                )
            author = (
                ctx.author(mlist, parent.author_name, parent.author_address) if parent is not None else ""
            )
            if parent is not None and not text and request.query_params.get("quote") == "1":
                text = webpost.quoted(parent, author)
            parent_view = None
            if parent is not None:
                parent_view = {
                    "id": parent.id,
                    "author": author,
                    "subject": body.subject_tags(parent.subject, mlist.name, mlist.subject_tag)[1],
                    "text": parent.text_body,
                    "topic_id": parent.topic_id,
                }
        action = request.url.path
        return ctx.page(
            request,
            "web/compose.html",
            status,
            cache=False,
            viewer=viewer,
            mlist=mlist,
            parent=parent_view,
            not_member=False,
            action=action,
            subject=subject,
            text=text,
            error=error,
            max_kb=self.max_bytes // 1024,
            vocabulary=vocabulary,
            chosen=chosen,
        )

    def _post(self, request: Request, viewer: Viewer, post_id: int | None, posted: Posted) -> Response:
        ctx = self.ctx
        subject, text = posted.fields.get("subject", ""), posted.fields.get("body", "")
        draft = webpost.Draft(subject, text, posted.uploads, posted.tags if post_id is None else ())
        try:
            with ctx.db.session() as session:
                mlist = ctx.public_list(session, request)
                parent = self._parent(session, mlist, post_id)
                member = find_member(session, mlist.id, viewer.address)
                if member is None:
                    log.info("web post to %s refused: the signed-in address is not a member", mlist.name)
                    return ctx.page(
                        request,
                        "web/compose.html",
                        403,
                        cache=False,
                        mlist=mlist,
                        parent=None,
                        not_member=True,
                    )
                _check_tags(session, mlist, draft.tags)
                spooled = webpost.write(session, ctx.config, mlist, member, draft, parent, utcnow())
                list_id, list_name = mlist.id, mlist.name
        except InvalidInput as exc:
            return self._form(request, viewer, post_id, subject, text, f"{exc}.", 422, posted.tags)
        self.spooled()
        found = self._wait(list_id, spooled)
        if found is not None and found.fate is webposts.Fate.PUBLISHED:
            with ctx.db.read_session() as session:
                mlist = ctx.public_list(session, request)
                return RedirectResponse(self._post_url(session, mlist, found.post_id), 303)
        key = spooled.message_id.strip("<>").partition("@")[0]
        return RedirectResponse(ctx.url("lists", list_name, "sent", spooled.spool_id, key), 303)

    def _wait(self, list_id: int, spooled: webpost.Spooled) -> webposts.WebPostFate | None:
        """Poll until the processor stored the post (or gave up on it), at most ``WAIT`` seconds."""
        deadline = time.monotonic() + WAIT
        pause = 0.01
        while True:
            with self.ctx.db.read_session() as session:
                found = webposts.fate(session, list_id, spooled.spool_id, spooled.message_id)
            if found is None or found.fate is not webposts.Fate.WAITING or time.monotonic() > deadline:
                return found
            time.sleep(pause)
            pause = min(pause * 1.5, 0.2)

    def _post_url(self, session: Session, mlist: MailingList, post_id: int | None) -> str:
        """The post on its topic's page (the page it is on, and its anchor)."""
        ctx = self.ctx
        position = queries.post_position(session, mlist, post_id) if post_id is not None else None
        if position is None:
            return ctx.url("lists", mlist.name)
        topic_id, index = position
        page = index // ctx.web.posts_per_page + 1
        return f"{ctx.url('lists', mlist.name, 'topics', topic_id, page=page)}#p{post_id}"


def _check_tags(session: Session, mlist: MailingList, names: tuple[str, ...]) -> None:
    """InvalidInput unless every ticked tag is a word of the list's vocabulary."""
    if not names:
        return
    known = {t.name for t in topics.vocabulary(session, mlist)}
    unknown = [n[:64] for n in names if n not in known]
    if unknown:
        raise InvalidInput(f"not a tag of {mlist.name}: {', '.join(unknown[:5])}")


__all__ = ["PostingForms", "Spooled"]
