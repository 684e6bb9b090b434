"""The archive for programs: Atom feeds, mbox downloads of a topic or a month, attachments.

Feeds and attachments are revalidated like the pages (ETag, max-age=0); an mbox is
streamed from one read session, a post at a time, so a month of a busy list never
sits in memory.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator

from sqlalchemy.orm import Session
from starlette.exceptions import HTTPException
from starlette.requests import Request
from starlette.responses import Response, StreamingResponse

from mailforum.db import queries
from mailforum.db.models import MailingList, Post, Topic
from mailforum.mail.attachments import attachment
from mailforum.mail.parse import Unprocessable
from mailforum.web import formats
from mailforum.web.context import WebContext


class Feeds:
    """Atom, mbox and attachment downloads; each endpoint is named in ``runners/web.ROUTES``."""

    def __init__(self, ctx: WebContext) -> None:
        self.ctx = ctx

    def _feed(
        self,
        request: Request,
        mlist: MailingList,
        topic: Topic | None,
        entries: list[queries.PostEntry],
        tag: str | None = None,
    ) -> Response:
        ctx = self.ctx
        if topic is not None:
            own = ctx.url("lists", mlist.name, "topics", topic.id, "feed.atom")
            alternate = ctx.url("lists", mlist.name, "topics", topic.id)
        elif tag is not None:
            own = ctx.url("lists", mlist.name, "tags", tag, "feed.atom")
            alternate = ctx.url("lists", mlist.name, "tags", tag)
        else:
            own, alternate = ctx.url("lists", mlist.name, "feed.atom"), ctx.url("lists", mlist.name)
        items = [(e, ctx.author(mlist, e.author_name, e.author_address)) for e in entries]
        updated = max((e.received_at for e in entries), default=mlist.created_at)
        content = formats.xml_chars(
            ctx.render(
                "web/feed.atom",
                mlist=mlist,
                topic=topic,
                tag=tag,
                items=items,
                updated=updated,
                base=ctx.origin,
                own=own,
                alternate=alternate,
            )
        ).encode("utf-8")
        return ctx.cached(request, content, "application/atom+xml; charset=utf-8", updated)

    def list_feed(self, request: Request) -> Response:
        with self.ctx.db.read_session() as session:
            mlist = self.ctx.public_list(session, request)
            entries = queries.list_feed(session, mlist)
        return self._feed(request, mlist, None, entries)

    def tag_feed(self, request: Request) -> Response:
        """The newest posts of the topics filed under one tag (404 for a word not in the vocabulary)."""
        with self.ctx.db.read_session() as session:
            mlist = self.ctx.public_list(session, request)
            tag = queries.list_tag(session, mlist, request.path_params["tag"])
            if tag is None:
                raise HTTPException(404)
            entries = queries.tag_feed(session, tag)
        return self._feed(request, mlist, None, entries, tag.name)

    def topic_feed(self, request: Request) -> Response:
        with self.ctx.db.read_session() as session:
            mlist = self.ctx.public_list(session, request)
            topic = self.ctx.topic_of(session, mlist, request)
            entries = queries.topic_feed(session, topic)
        return self._feed(request, mlist, topic, entries)

    def _mbox(self, filename: str, posts: Callable[[Session], Iterator[Post]]) -> Response:
        db = self.ctx.db

        def stream() -> Iterator[bytes]:
            with db.read_session() as session:
                yield from formats.mbox(posts(session))

        headers = {"content-disposition": formats.content_disposition(filename, "archive.mbox")}
        return StreamingResponse(stream(), media_type="application/mbox", headers=headers)

    def topic_mbox(self, request: Request) -> Response:
        with self.ctx.db.read_session() as session:
            mlist = self.ctx.public_list(session, request)
            topic = self.ctx.topic_of(session, mlist, request)
        return self._mbox(f"{mlist.name}-topic-{topic.id}.mbox", lambda s: queries.topic_raw_posts(s, topic))

    def month_mbox(self, request: Request) -> Response:
        year, month = request.path_params["year"], request.path_params["month"]
        if not (1 <= month <= 12 and 1970 <= year <= 9999):
            raise HTTPException(404)
        with self.ctx.db.read_session() as session:
            mlist = self.ctx.public_list(session, request)
        return self._mbox(
            f"{mlist.name}-{year:04d}-{month:02d}.mbox",
            lambda s: queries.month_raw_posts(s, mlist, year, month),
        )

    def download(self, request: Request) -> Response:
        """One attachment of a published post, cut from its raw message."""
        with self.ctx.db.read_session() as session:
            mlist = self.ctx.public_list(session, request)
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
        response = self.ctx.cached(request, found.data, found.safe_type)
        response.headers["content-disposition"] = formats.content_disposition(found.filename, fallback)
        response.headers["x-content-type-options"] = "nosniff"
        response.headers["content-security-policy"] = "default-src 'none'; sandbox"
        return response
