"""The archive's pages: the lists, a list's topics, a topic, permalinks, search, months.

Read-only and cacheable (``WebContext.page``: ETag from the body, Last-Modified from
the activity shown). Each page costs a fixed number of queries (``db/queries.py``).
"""

from __future__ import annotations

from starlette.exceptions import HTTPException
from starlette.requests import Request
from starlette.responses import RedirectResponse, Response

from mailforum.db import queries
from mailforum.mail.addresses import list_address
from mailforum.render import BUILTIN
from mailforum.web import body
from mailforum.web.context import WebContext, int_param

MAX_INDENT = 6  # deeper replies are drawn at this depth (style.css has depth-0 … depth-6)
SORT_LABELS = (("latest", "Latest activity"), ("newest", "Newest"), ("replies", "Most replies"))


class ArchivePages:
    """The pages anonymous readers browse; each endpoint is named in ``runners/web.ROUTES``."""

    def __init__(self, ctx: WebContext) -> None:
        self.ctx = ctx
        self.stylesheet_css = (BUILTIN / "web" / "style.css").read_bytes()

    def index(self, request: Request) -> Response:
        with self.ctx.db.read_session() as session:
            summaries = queries.list_index(session)
        # No Last-Modified here or on topic lists: member counts and page numbers change with
        # no post time to show for it. The ETag (a hash of the page) is always right.
        return self.ctx.page(request, "web/index.html", lists=summaries)

    def stylesheet(self, request: Request) -> Response:
        return self.ctx.cached(request, self.stylesheet_css, "text/css; charset=utf-8")

    def topics(self, request: Request) -> Response:
        """A list's topics; ``?tag=NAME`` shows those filed under one tag (404 for a word not
        in the list's vocabulary), as /lists/NAME/tags/TAG does."""
        return self._topics(request, request.query_params.get("tag"))

    def tag_topics(self, request: Request) -> Response:
        return self._topics(request, request.path_params["tag"])

    def _topics(self, request: Request, tag_name: str | None) -> Response:
        ctx = self.ctx
        sort = request.query_params.get("sort", "latest")
        sort = sort if sort in queries.SORTS else "latest"
        page = int_param(request.query_params.get("page"))
        with ctx.db.read_session() as session:
            mlist = ctx.public_list(session, request)
            tag = None
            if tag_name is not None:
                tag = queries.list_tag(session, mlist, tag_name)
                if tag is None:
                    raise HTTPException(404)
            listing = queries.topic_page(session, mlist, sort, page, ctx.web.topics_per_page, tag)
            pinned = (
                queries.pinned_topics(session, mlist)
                if tag is None and sort == "latest" and page <= 1
                else ()
            )
            vocabulary = queries.list_tags(session, mlist)

        def shown(row: queries.TopicRow) -> tuple[queries.TopicRow, tuple[str, ...], str, str]:
            tags, title = body.subject_tags(row.subject, mlist.name, mlist.subject_tag)
            return (row, tags, title, ctx.author(mlist, row.starter_name, row.starter_address))

        name = tag.name if tag is not None else None

        def page_link(n: int) -> str:
            if name is not None:
                return ctx.url(
                    "lists", mlist.name, "tags", name, sort=None if sort == "latest" else sort, page=n
                )
            return ctx.url("lists", mlist.name, sort=None if sort == "latest" else sort, page=n)

        return ctx.page(
            request,
            "web/topics.html",
            mlist=mlist,
            listing=listing,
            rows=[shown(row) for row in listing.rows],
            pinned=[shown(row) for row in pinned],
            tag=name,
            feed=ctx.url("lists", mlist.name, "tags", name, "feed.atom")
            if name is not None
            else ctx.url("lists", mlist.name, "feed.atom"),
            vocabulary=vocabulary,
            sorts=SORT_LABELS,
            page_link=page_link,
            post_address=list_address(mlist.name, ctx.config.site.domain),
        )

    def topic(self, request: Request) -> Response:
        ctx = self.ctx
        page = int_param(request.query_params.get("page"))
        with ctx.db.read_session() as session:
            mlist = ctx.public_list(session, request)
            topic = ctx.topic_of(session, mlist, request)
            if topic.id != request.path_params["topic"]:  # merged: old links follow (301)
                return RedirectResponse(ctx.url("lists", mlist.name, "topics", topic.id), 301)
            thread = queries.thread_page(session, topic, page, ctx.web.posts_per_page)
            topic_tags = queries.topic_tag_names(session, [topic.id]).get(topic.id, [])
        address = list_address(mlist.name, ctx.config.site.domain)
        tags, title = body.subject_tags(topic.subject, mlist.name, mlist.subject_tag)
        posts = []
        for post in thread.posts:
            html = (
                post.html_body if post.html_body and body.html_only(post.text_body, post.html_body) else None
            )
            blocks = () if html else body.split_body(body.hide_addresses(post.text_body), post.parent_author)
            posts.append(
                {
                    "view": post,
                    "depth": min(post.depth, MAX_INDENT),
                    "author": ctx.author(mlist, post.author_name, post.author_address),
                    "blocks": blocks,
                    "html": html,
                    "mailto": body.mailto(address, post.subject or topic.subject, post.message_id),
                }
            )
        return ctx.page(
            request,
            "web/topic.html",
            last_modified=topic.last_post_at,
            mlist=mlist,
            topic=topic,
            tags=tags,
            topic_tags=topic_tags,
            title=title,
            thread=thread,
            posts=posts,
            reply_all=body.mailto(address, topic.subject, thread.last_message_id),
            page_link=lambda n: ctx.url("lists", mlist.name, "topics", topic.id, page=n),
            post_address=address,
        )

    def permalink(self, request: Request) -> Response:
        ctx = self.ctx
        with ctx.db.read_session() as session:
            mlist = ctx.public_list(session, request)
            position = queries.post_position(session, mlist, request.path_params["post"])
        if position is None:
            raise HTTPException(404)
        topic_id, index = position
        page = index // ctx.web.posts_per_page + 1
        target = ctx.url("lists", mlist.name, "topics", topic_id, page=page)
        return RedirectResponse(f"{target}#p{request.path_params['post']}", 302)

    def search(self, request: Request) -> Response:
        ctx = self.ctx
        query = request.query_params.get("q", "")[:200]
        page = int_param(request.query_params.get("page"))
        terms = queries.search_terms(query)
        with ctx.db.read_session() as session:
            mlist = ctx.public_list(session, request)
            hits, more = queries.search(session, mlist, query, page, ctx.web.topics_per_page)
        results = [
            (hit, ctx.author(mlist, hit.author_name, hit.author_address), body.snippet(hit.text_body, terms))
            for hit in hits
        ]
        return ctx.page(
            request, "web/search.html", mlist=mlist, query=query, page=page, more=more, results=results
        )

    def archive(self, request: Request) -> Response:
        """The months a list has posts in, each with its mbox download."""
        with self.ctx.db.read_session() as session:
            mlist = self.ctx.public_list(session, request)
            months = queries.months(session, mlist)
        return self.ctx.page(request, "web/archive.html", mlist=mlist, months=months)
