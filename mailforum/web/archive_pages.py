"""The archive's pages: the lists, a list's topics, a topic, permalinks, search, months.

Read-only and cacheable (``WebContext.page``: ETag from the body, Last-Modified from
the activity shown). Each page costs a fixed number of queries (``db/queries.py``).
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterable
from typing import Any

from sqlalchemy.orm import Session
from starlette.exceptions import HTTPException
from starlette.requests import Request
from starlette.responses import RedirectResponse, Response

from mailforum.core import roles
from mailforum.db import queries
from mailforum.db.models import MailingList, utcnow
from mailforum.mail.addresses import list_address
from mailforum.render import BUILTIN
from mailforum.web import body, moderation, reading
from mailforum.web.context import WebContext, int_param

MAX_INDENT = 3  # deeper replies share this indent (style.css has depth-0 … depth-3)
FOLD_AT = 4  # a side branch of at least this many replies is folded as "N replies by NAME…"
SORT_LABELS = (("latest", "Latest activity"), ("newest", "Newest"), ("replies", "Most replies"))


class Standings:
    """Authors' standings (``queries.standings``), remembered for ``ttl`` seconds per process.

    Counting a prolific author's posts reads thousands of index entries, and the same
    people write most posts of a list: a topic page asks only for the authors it has not
    seen lately. A standing is a summary ("member since", "N posts"); a few minutes late
    is fine for it.
    """

    def __init__(
        self, ttl: float = 300.0, size: int = 20_000, clock: Callable[[], float] = time.monotonic
    ) -> None:
        self.ttl, self.size, self.clock = ttl, size, clock
        self._known: dict[tuple[int, str], tuple[float, queries.Standing | None]] = {}

    def get(
        self, session: Session, mlist: MailingList, addresses: Iterable[str]
    ) -> dict[str, queries.Standing]:
        now = self.clock()
        found: dict[str, queries.Standing] = {}
        missing: list[str] = []
        for address in {a for a in addresses if a}:
            remembered = self._known.get((mlist.id, address))
            if remembered is None or remembered[0] <= now:
                missing.append(address)
            elif remembered[1] is not None:
                found[address] = remembered[1]
        if missing:
            fresh = queries.standings(session, mlist, missing)
            if len(self._known) + len(missing) > self.size:
                self._known.clear()
            for address in missing:
                self._known[(mlist.id, address)] = (now + self.ttl, fresh.get(address))
            found.update(fresh)
        return found


class ArchivePages:
    """The pages anonymous readers browse; each endpoint is named in ``runners/web.ROUTES``."""

    def __init__(self, ctx: WebContext) -> None:
        self.ctx = ctx
        self.stylesheet_css = (BUILTIN / "web" / "style.css").read_bytes()
        self.standings = Standings()

    def index(self, request: Request) -> Response:
        ctx = self.ctx
        with ctx.db.read_session() as session:
            viewer = ctx.auth.viewer(request, session) if ctx.auth.has_cookie(request) else None
            summaries = queries.list_index(session, viewer.address if viewer else None)
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
            if ctx.auth.has_cookie(request):
                ctx.auth.viewer(request, session)  # the page names who is signed in
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
            viewer = ctx.auth.viewer(request, session) if ctx.auth.has_cookie(request) else None
            member, setting = (
                queries.topic_setting(session, mlist, viewer.address, topic.id) if viewer else (False, None)
            )
            standing = self.standings.get(session, mlist, [p.author_address for p in thread.posts])
            newer, older, activity = queries.neighbour_topics(session, topic)
            topic_tags = queries.topic_tag_names(session, [topic.id]).get(topic.id, [])
            moderator = viewer is not None and roles.is_moderator(session, mlist, viewer.address)
            own = moderation.deletable(mlist, thread.posts, viewer.address if viewer else None, utcnow())
        address = list_address(mlist.name, ctx.config.site.domain)
        tags, title = body.subject_tags(topic.subject, mlist.name, mlist.subject_tag)
        posts = []
        for post in thread.posts:
            html = (
                post.html_body if post.html_body and body.html_only(post.text_body, post.html_body) else None
            )
            blocks = (
                () if html else reading.read_body(body.hide_addresses(post.text_body), post.parent_author)
            )
            posts.append(
                {
                    "view": post,
                    "depth": min(post.depth, MAX_INDENT),
                    "author": ctx.author(mlist, post.author_name, post.author_address),
                    "standing": standing.get(post.author_address),
                    "subject": _own_subject(post.subject, mlist, tags, title),
                    "blocks": blocks,
                    "html": html,
                    "mailto": body.mailto(address, post.subject or topic.subject, post.message_id),
                }
            )
        neighbours = [
            (rel, label, neighbour.id, body.subject_tags(neighbour.subject, mlist.name, mlist.subject_tag)[1])
            for rel, label, neighbour in (("prev", "Newer topic", newer), ("next", "Older topic", older))
            if neighbour is not None
        ]
        return ctx.page(
            request,
            "web/topic.html",
            last_modified=activity,
            mlist=mlist,
            topic=topic,
            tags=tags,
            topic_tags=topic_tags,
            title=title,
            thread=thread,
            items=fold_subthreads(posts),
            neighbours=neighbours,
            reply_all=body.mailto(address, topic.subject, thread.last_message_id),
            page_link=lambda n: ctx.url("lists", mlist.name, "topics", topic.id, page=n),
            post_address=address,
            member=member,
            setting=setting,
            moderator=moderator,
            deletable=own,
        )

    def author(self, request: Request) -> Response:
        """A member's shown posts in one list, newest first; keyed by their first post's id."""
        ctx = self.ctx
        page = int_param(request.query_params.get("page"))
        with ctx.db.read_session() as session:
            mlist = ctx.public_list(session, request)
            found = queries.author_of(session, mlist, request.path_params["author"])
            if found is None:
                raise HTTPException(404)
            address, name, key = found
            if key != request.path_params["author"]:  # any post of theirs leads to the one page
                return RedirectResponse(ctx.url("lists", mlist.name, "authors", key), 301)
            entries, paged = queries.author_posts(session, mlist, address, page, ctx.web.topics_per_page)
            standing = queries.standings(session, mlist, [address]).get(address)
        rows = [
            (
                entry,
                body.subject_tags(entry.subject, mlist.name, mlist.subject_tag)[1],
                body.snippet(entry.text_body, []),
            )
            for entry in entries
        ]
        return ctx.page(
            request,
            "web/author.html",
            mlist=mlist,
            author=ctx.author(mlist, name, address),
            standing=standing,
            rows=rows,
            paged=paged,
            page_link=lambda n: ctx.url("lists", mlist.name, "authors", key, page=n),
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


def _own_subject(subject: str, mlist: MailingList, tags: tuple[str, ...], title: str) -> str:
    """A post's subject when it says something its topic's does not ("[PATCH 2/7] …" in a
    series), without "Re:" and the list's tag, its other tags kept; else ""."""
    if not subject.strip():
        return ""
    own_tags, rest = body.subject_tags(subject, mlist.name, mlist.subject_tag)
    if own_tags == tags and " ".join(rest.lower().split()) == " ".join(title.lower().split()):
        return ""
    return " ".join([*(f"[{tag}]" for tag in own_tags), rest])


def fold_subthreads(posts: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """The page's posts, with each long side branch's replies folded into one group.

    A reply (depth 1 or more) whose sub-thread has at least ``FOLD_AT`` posts, and after
    which another reply to the same parent follows, has its sub-thread's posts on this
    page folded as "N replies by NAME, NAME…" (a ``<details>``: no script). The main
    line of a conversation, a chain of answers to answers, is never folded, and folds
    do not nest.
    """
    items: list[dict[str, Any]] = []
    at = 0
    while at < len(posts):
        item = posts[at]
        items.append({"post": item})
        view = item["view"]
        at += 1
        if view.depth >= 1 and view.sibling_follows and view.descendants >= FOLD_AT:
            inside = posts[at : at + view.descendants]
            names: list[str] = []
            for reply in inside:
                if reply["author"] not in names:
                    names.append(reply["author"])
            items.append(
                {"group": inside, "count": view.descendants, "names": names[:3], "more": len(names) > 3}
            )
            at += len(inside)
    return items
