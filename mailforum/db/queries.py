"""Named read queries for the web archive and the feeds, and the one look-up of a list by name;
also the small statements of the web's rate limits and of the digest scheduler, so no SQL
lives in ``web/`` or ``runners/``.

Each function takes a ``Session`` and returns frozen dataclasses, so the templates
never touch the ORM and never trigger a lazy load. Every page costs a fixed number
of statements, whatever its size (tests/integration/test_web_queries.py counts them):
the topic list is one page query plus one for starters and participants; a topic
is one light query for its tree (ids and parents only) plus one for the posts on
the page. Only published posts are shown; placeholders and held posts take their
place in the tree but are never displayed.
"""

from __future__ import annotations

import datetime as dt
import math
import re
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from typing import Any

from sqlalchemy import (
    ColumnElement,
    Select,
    TextClause,
    delete,
    distinct,
    func,
    literal,
    or_,
    select,
    text,
    tuple_,
)
from sqlalchemy.orm import Session, aliased, undefer

from mailforum.db.models import (
    FormHit,
    MailingList,
    Member,
    Post,
    PostStatus,
    Tag,
    Topic,
    TopicSubscription,
    TopicTag,
    Visibility,
)

PUBLISHED = PostStatus.PUBLISHED.value
REMOVED = PostStatus.REMOVED.value
AUTHOR_DELETED = "deleted by its author"  # a removed post's hold_reason when its author deleted it
ERASED = "removed at the author's request"  # … when `members forget --remove-posts` erased its author
_REMOVED_BY = {AUTHOR_DELETED: "author", ERASED: "erased"}
SHOWN = (PUBLISHED, REMOVED)  # in a thread: posts, and the tombstones of removed ones


@dataclass(frozen=True, slots=True)
class ListSummary:
    name: str
    title: str
    description: str
    members: int
    topics: int
    posts: int
    last_activity: dt.datetime | None


@dataclass(frozen=True, slots=True)
class TopicRow:
    id: int
    subject: str
    created_at: dt.datetime
    last_post_at: dt.datetime
    post_count: int
    starter_name: str
    starter_address: str
    participants: int
    tags: tuple[str, ...] = ()

    @property
    def replies(self) -> int:
        return max(self.post_count - 1, 0)


@dataclass(frozen=True, slots=True)
class Paged:
    page: int
    pages: int
    total: int


@dataclass(frozen=True, slots=True)
class TopicPage:
    rows: tuple[TopicRow, ...]
    paging: Paged
    sort: str


@dataclass(frozen=True, slots=True)
class PostView:
    id: int
    message_id: str
    author_name: str
    author_address: str
    subject: str
    date: dt.datetime | None
    received_at: dt.datetime
    text_body: str
    html_body: str | None
    attachments: tuple[dict[str, Any], ...]
    depth: int
    replies: int
    # Who this post answers: a shown post's id and author, or why the parent is not shown.
    parent_id: int | None
    parent_author: str
    parent_state: str  # "" (no parent), "shown", "missing" (never received), "hidden" (held)
    # Its sub-thread: how many shown posts answer it, directly or not, and whether a later
    # reply to the same parent follows that sub-thread (it is a side branch, web folds it).
    descendants: int = 0
    sibling_follows: bool = False
    removed: bool = False  # a tombstone: "removed by a moderator", no author, no text
    removed_by: str = ""  # a tombstone's: "moderator", "author" (deleted on the web) or "erased" (forget)


@dataclass(frozen=True, slots=True)
class ThreadPage:
    topic: Topic
    posts: tuple[PostView, ...]
    paging: Paged
    last_message_id: str
    latest_post_id: int | None = None  # the newest shown post ("jump to latest")


@dataclass(frozen=True, slots=True)
class PostEntry:
    """A published post as a feed entry and a search hit show it."""

    post_id: int
    topic_id: int
    subject: str
    author_name: str
    author_address: str
    received_at: dt.datetime
    text_body: str


# Topics with published posts. Merged topics have post_count 0 (threads.merge_topics), so this
# leaves them out too. Written "!= 0", not "> 0": a range would tempt SQLite's planner into the
# post_count index and a sort of every topic, instead of walking the sort's own index.
HAS_POSTS = Topic.post_count != 0

# The sort orders of a list's topics: name → ORDER BY. Each has a matching index
# (list_id, column); the id breaks ties, so paging is stable.
SORTS: dict[str, tuple[ColumnElement[Any], ...]] = {
    "latest": (Topic.last_post_at.desc(), Topic.id.desc()),
    "newest": (Topic.created_at.desc(), Topic.id.desc()),
    "replies": (Topic.post_count.desc(), Topic.id.desc()),
}


def paging(total: int, page: int, per_page: int) -> Paged:
    pages = max(1, math.ceil(total / per_page))
    return Paged(min(max(page, 1), pages), pages, total)


def list_named(session: Session, name: str, public: bool = False, lock: bool = False) -> MailingList | None:
    """The list called ``name`` (names are stored lower-case; callers normalise what they read).

    ``public``: only if anonymous readers may see it (S15); ``lock``: FOR UPDATE.
    """
    query = select(MailingList).where(MailingList.name == name)
    if public:
        query = query.where(MailingList.visibility == Visibility.PUBLIC.value)
    if lock:
        query = query.with_for_update()
    return session.scalars(query).first()


def list_by_id(session: Session, list_id: int) -> MailingList:
    """The list a row (a post, a member) belongs to; its foreign key guarantees there is one."""
    mlist = session.get(MailingList, list_id)
    assert mlist is not None, list_id
    return mlist


def list_index(session: Session, member: str | None = None) -> list[ListSummary]:
    """Every public list with its counts and last activity: one statement. With ``member``
    (a signed-in address), also the private lists that address is a member of."""
    members = select(func.count()).where(Member.list_id == MailingList.id).scalar_subquery()
    topics = select(func.count()).where(Topic.list_id == MailingList.id, HAS_POSTS).scalar_subquery()
    posts = select(func.coalesce(func.sum(Topic.post_count), 0)).where(Topic.list_id == MailingList.id)
    last = (
        select(Topic.last_post_at)
        .where(Topic.list_id == MailingList.id, HAS_POSTS)
        .order_by(Topic.last_post_at.desc())
        .limit(1)
    )
    readable = MailingList.visibility == Visibility.PUBLIC.value
    if member:
        mine = select(Member.list_id).where(Member.address == member.lower())
        readable = or_(readable, MailingList.id.in_(mine))
    rows = session.execute(
        select(
            MailingList.name,
            MailingList.title,
            MailingList.description,
            members,
            topics,
            posts.scalar_subquery(),
            last.scalar_subquery(),
        )
        .where(readable)
        .order_by(MailingList.name)
    ).all()
    return [
        ListSummary(name, title or name, description, m or 0, t or 0, p or 0, _utc(last_at))
        for name, title, description, m, t, p, last_at in rows
    ]


def _utc(value: Any) -> dt.datetime | None:
    """Aggregates bypass the column type: SQLite returns text, naive values are UTC."""
    if value is None:
        return None
    if isinstance(value, str):
        value = dt.datetime.fromisoformat(value)
    return value.replace(tzinfo=dt.UTC) if value.tzinfo is None else value.astimezone(dt.UTC)


def topic_page(
    session: Session, mlist: MailingList, sort: str, page: int, per_page: int, tag: Tag | None = None
) -> TopicPage:
    """One page of a list's topics (or of those filed under ``tag``): four statements (count,
    page, starters and participants, tags).

    The page's ids come from the sort's covering index alone (a deep OFFSET reads no
    table rows); then only those rows are read. A tag's latest topics come from the
    (tag, last_post_at, topic, post_count) index of ``topic_tags`` the same way.
    """
    order = SORTS.get(sort, SORTS["latest"])
    offset = (max(page, 1) - 1) * per_page
    if tag is None:
        visible: tuple[ColumnElement[bool], ...] = (Topic.list_id == mlist.id, HAS_POSTS)
        total = session.scalar(select(func.count()).select_from(Topic).where(*visible)) or 0
        paged = paging(total, page, per_page)
        offset = (paged.page - 1) * per_page
        ids = select(Topic.id).where(*visible).order_by(*order).limit(per_page).offset(offset)
    else:
        # topic_tags copies each topic's last_post_at and post_count (threads.sync_tags): count
        # and page come from its (tag, last_post_at, topic, post_count) index alone.
        shown = (TopicTag.tag_id == tag.id, TopicTag.post_count != 0)
        total = session.scalar(select(func.count()).select_from(TopicTag).where(*shown)) or 0
        paged = paging(total, page, per_page)
        offset = (paged.page - 1) * per_page
        if sort not in ("newest", "replies"):
            ids = (
                select(TopicTag.topic_id)
                .where(*shown)
                .order_by(TopicTag.last_post_at.desc(), TopicTag.topic_id.desc())
                .limit(per_page)
                .offset(offset)
            )
        else:  # a tag's few thousand topics, sorted
            tagged = select(TopicTag.topic_id).where(*shown).scalar_subquery()
            ids = select(Topic.id).where(Topic.id.in_(tagged), HAS_POSTS).order_by(*order).limit(per_page)
            ids = ids.offset(offset)
    topics = session.execute(
        select(Topic.id, Topic.subject, Topic.created_at, Topic.last_post_at, Topic.post_count)
        .where(Topic.id.in_(ids.scalar_subquery()))
        .order_by(*order)
    ).all()
    return TopicPage(_topic_rows(session, topics), paged, sort if sort in SORTS else "latest")


def _topic_rows(session: Session, topics: Sequence[Any]) -> tuple[TopicRow, ...]:
    people = _starters_and_participants(session, [t.id for t in topics])
    tags = topic_tag_names(session, [t.id for t in topics])
    return tuple(
        TopicRow(
            t.id,
            t.subject,
            t.created_at,
            t.last_post_at,
            t.post_count,
            *people.get(t.id, ("", "", 0)),
            tuple(tags.get(t.id, ())),
        )
        for t in topics
    )


def pinned_topics(session: Session, mlist: MailingList) -> tuple[TopicRow, ...]:
    """The list's pinned topics, most recently pinned first (the (list, pinned_at) index)."""
    topics = session.execute(
        select(Topic.id, Topic.subject, Topic.created_at, Topic.last_post_at, Topic.post_count)
        .where(Topic.list_id == mlist.id, Topic.pinned_at.is_not(None), HAS_POSTS)
        .order_by(Topic.pinned_at.desc(), Topic.id.desc())
        .limit(50)
    ).all()
    return _topic_rows(session, topics)


def topic_tag_names(session: Session, topic_ids: Sequence[int]) -> dict[int, list[str]]:
    """Topic id → its tag names, sorted."""
    out: dict[int, list[str]] = {}
    if not topic_ids:
        return out
    for topic_id, name in session.execute(
        select(TopicTag.topic_id, Tag.name)
        .join(Tag, Tag.id == TopicTag.tag_id)
        .where(TopicTag.topic_id.in_(list(topic_ids)))
        .order_by(Tag.name)
    ):
        out.setdefault(topic_id, []).append(name)
    return out


def list_tag(session: Session, mlist: MailingList, name: str) -> Tag | None:
    """The word ``name`` of the list's vocabulary (lower-cased), or None."""
    return session.scalar(select(Tag).where(Tag.list_id == mlist.id, Tag.name == name.lower()[:64]))


def list_tags(session: Session, mlist: MailingList) -> list[str]:
    return list(session.scalars(select(Tag.name).where(Tag.list_id == mlist.id).order_by(Tag.name)))


def tag_feed(session: Session, tag: Tag, limit: int = 30) -> list[PostEntry]:
    tagged = select(TopicTag.topic_id).where(TopicTag.tag_id == tag.id).scalar_subquery()
    return _feed(session, [Post.list_id == tag.list_id, Post.topic_id.in_(tagged)], limit)


def _starters_and_participants(session: Session, topic_ids: Sequence[int]) -> dict[int, tuple[str, str, int]]:
    if not topic_ids:
        return {}
    per_topic = (
        select(
            Post.topic_id.label("topic_id"),
            func.min(Post.id).label("first_id"),
            func.count(distinct(Post.author_address)).label("participants"),
        )
        .where(Post.topic_id.in_(topic_ids), Post.status == PUBLISHED)
        .group_by(Post.topic_id)
        .subquery()
    )
    rows = session.execute(
        select(per_topic.c.topic_id, Post.author_name, Post.author_address, per_topic.c.participants).join(
            Post, Post.id == per_topic.c.first_id
        )
    ).all()
    return {tid: (name, address, count) for tid, name, address, count in rows}


def resolve_topic(session: Session, mlist: MailingList, topic_id: int) -> Topic | None:
    """The topic, or the live topic it was merged into; None when it is not in this list."""
    seen: set[int] = set()
    topic = session.get(Topic, topic_id)
    while topic is not None and topic.merged_into_id is not None and topic.id not in seen:
        seen.add(topic.id)
        topic = session.get(Topic, topic.merged_into_id)
    if topic is None or topic.list_id != mlist.id:
        return None
    return topic


@dataclass(frozen=True, slots=True)
class _Node:
    id: int
    parent_id: int | None
    status: str
    author_name: str
    author_address: str
    message_id: str


Children = dict[int | None, list[_Node]]


def thread_order(
    session: Session, topic: Topic
) -> tuple[list[tuple[_Node, int]], dict[int, _Node], Children]:
    """All nodes of a topic in thread order (depth-first, siblings by arrival): one light statement.

    Returns (published posts with their display depth, every node by id, children by parent id).
    """
    rows = session.execute(
        select(Post.id, Post.parent_id, Post.status, Post.author_name, Post.author_address, Post.message_id)
        .where(Post.topic_id == topic.id)
        .order_by(Post.received_at, Post.id)
    ).all()
    nodes = {r.id: _Node(*r) for r in rows}
    children: Children = {}
    for node in nodes.values():
        parent = node.parent_id if node.parent_id in nodes else None
        children.setdefault(parent, []).append(node)
    ordered: list[tuple[_Node, int]] = []
    stack: list[tuple[_Node, int]] = [(n, 0) for n in reversed(children.get(None, []))]
    visited: set[int] = set()
    while stack:
        node, depth = stack.pop()
        if node.id in visited:  # a parent loop in bad data must not hang the page
            continue
        visited.add(node.id)
        shown = node.status in SHOWN
        if shown:
            ordered.append((node, depth))
        below = depth + 1 if shown else depth
        stack.extend((child, below) for child in reversed(children.get(node.id, [])))
    return ordered, nodes, children


def thread_page(session: Session, topic: Topic, page: int, per_page: int) -> ThreadPage:
    """One page of a topic's posts in thread order: two statements."""
    ordered, nodes, children = thread_order(session, topic)
    paged = paging(len(ordered), page, per_page)
    window = ordered[(paged.page - 1) * per_page : paged.page * per_page]
    by_id = (
        {p.id: p for p in session.scalars(select(Post).where(Post.id.in_([n.id for n, _ in window]))).all()}
        if window
        else {}
    )
    descendants, sibling_follows = _subtrees([depth for _, depth in ordered])
    offset = (paged.page - 1) * per_page
    views = []
    for index, (node, depth) in enumerate(window, start=offset):
        post = by_id[node.id]
        parent = nodes.get(post.parent_id) if post.parent_id is not None else None
        if post.status == REMOVED:
            views.append(
                PostView(post.id, post.message_id, "", "", "", None, post.received_at, "", None, (), depth,
                         0, None, "", "", descendants[index], sibling_follows[index], removed=True,
                         removed_by=_REMOVED_BY.get(post.hold_reason or "", "moderator"))
            )  # fmt: skip
            continue
        if parent is None:
            state, parent_author = "", ""
        elif parent.status == PUBLISHED:
            state, parent_author = "shown", parent.author_name or _local(parent.author_address)
        elif parent.status == PostStatus.PLACEHOLDER.value:
            state, parent_author = "missing", ""
        else:
            state, parent_author = "hidden", ""
        replies = sum(1 for c in children.get(post.id, []) if c.status == PUBLISHED)
        views.append(
            PostView(
                post.id,
                post.message_id,
                post.author_name,
                post.author_address,
                post.subject,
                post.date,
                post.received_at,
                post.text_body,
                post.html_body,
                tuple(post.attachments or ()),
                depth,
                replies,
                parent.id if parent is not None and state == "shown" else None,
                parent_author,
                state,
                descendants[index],
                sibling_follows[index],
            )
        )
    # The newest post is what a reply to the whole topic answers.
    published = [node for node, _ in ordered if node.status == PUBLISHED]
    newest = max(published, key=lambda node: node.id) if published else None
    return ThreadPage(
        topic, tuple(views), paged, newest.message_id if newest else "", newest.id if newest else None
    )


def _subtrees(depths: Sequence[int]) -> tuple[list[int], list[bool]]:
    """For each post of a depth-first order: its number of descendants, and whether a sibling
    (the next post at its depth before any shallower one) follows its sub-thread."""
    count = len(depths)
    descendants = [0] * count
    follows = [False] * count
    open_: list[int] = []  # indexes whose sub-thread has not ended yet
    for index, depth in enumerate(depths):
        while open_ and depths[open_[-1]] >= depth:
            ended = open_.pop()
            descendants[ended] = index - ended - 1
            follows[ended] = depths[ended] == depth
        open_.append(index)
    for ended in open_:
        descendants[ended] = count - ended - 1
    return descendants, follows


def _local(address: str) -> str:
    return address.split("@", 1)[0]


@dataclass(frozen=True, slots=True)
class Standing:
    """An author on a list: the key of their author page (the id of their first shown post,
    stable and not their address), since when they post or are a member, and how many
    posts the archive shows."""

    key: int
    since: dt.datetime | None
    member_since: dt.datetime | None
    posts: int


def standings(session: Session, mlist: MailingList, addresses: Sequence[str]) -> dict[str, Standing]:
    """The standing of each author address on the list: one statement.

    The counts and first dates come from the posts (list_id, author_address, received_at)
    index alone, without reading a row: they count every post the list stored from the
    address (a held one too: placeholders have no author). The page key is their first
    shown post, found by a correlated look-up that stops at it.
    """
    wanted = sorted({a for a in addresses if a})
    if not wanted:
        return {}
    first = aliased(Post)
    key = (
        select(first.id)
        .where(
            first.list_id == mlist.id, first.author_address == Post.author_address, first.status == PUBLISHED
        )
        .order_by(first.received_at, first.id)
        .limit(1)
        .scalar_subquery()
    )
    member_since = (
        select(Member.created_at)
        # Members' addresses are stored lower-case (lists.find_member): the (list_id, address)
        # index answers this.
        .where(Member.list_id == mlist.id, Member.address == func.lower(Post.author_address))
        .limit(1)
        .scalar_subquery()
    )
    rows = session.execute(
        select(Post.author_address, key, func.min(Post.received_at), func.count(), member_since)
        .where(Post.list_id == mlist.id, Post.author_address.in_(wanted))
        .group_by(Post.author_address)
    ).all()
    return {
        address: Standing(key_id, _utc(since), _utc(joined), count)
        for address, key_id, since, count, joined in rows
        if key_id is not None
    }


def author_of(session: Session, mlist: MailingList, key: int) -> tuple[str, str, int] | None:
    """(address, display name, key of their author page) of a shown post of this list, or None."""
    row = session.execute(
        select(Post.author_address, Post.author_name).where(
            Post.id == key, Post.list_id == mlist.id, Post.status == PUBLISHED
        )
    ).first()
    if row is None or not row.author_address:
        return None
    first = session.scalar(
        select(Post.id)
        .where(Post.list_id == mlist.id, Post.author_address == row.author_address, Post.status == PUBLISHED)
        .order_by(Post.received_at, Post.id)
        .limit(1)
    )
    return row.author_address, row.author_name, first or key


def author_posts(
    session: Session, mlist: MailingList, address: str, page: int, per_page: int
) -> tuple[list[PostEntry], Paged]:
    """One page of an author's shown posts in a list, newest first: two statements."""
    where = (Post.list_id == mlist.id, Post.author_address == address)
    total = (
        session.scalar(select(func.count()).select_from(Post).where(*where, Post.status == PUBLISHED)) or 0
    )
    paged = paging(total, page, per_page)
    rows = session.execute(_newest_entries(*where).limit(per_page).offset((paged.page - 1) * per_page)).all()
    return [PostEntry(*r) for r in rows], paged


def neighbour_topics(session: Session, topic: Topic) -> tuple[Topic | None, Topic | None, dt.datetime]:
    """(newer, older) topic of the same list by latest activity, as the list page orders
    them, and the list's latest activity (what a topic page's standings and neighbours
    can change with): one statement on the list's (last_post_at, id) index."""
    visible = (Topic.list_id == topic.list_id, HAS_POSTS)
    at, tid = topic.last_post_at, topic.id
    position = tuple_(Topic.last_post_at, Topic.id)  # a row value: a range on the index
    newer = (
        select(Topic.id)
        .where(*visible, position > tuple_(literal(at, Topic.last_post_at.type), literal(tid)))
        .order_by(Topic.last_post_at, Topic.id)
        .limit(1)
        .scalar_subquery()
    )
    older = (
        select(Topic.id)
        .where(*visible, position < tuple_(literal(at, Topic.last_post_at.type), literal(tid)))
        .order_by(Topic.last_post_at.desc(), Topic.id.desc())
        .limit(1)
        .scalar_subquery()
    )
    latest = (
        select(Topic.id)
        .where(Topic.list_id == topic.list_id, HAS_POSTS)
        .order_by(Topic.last_post_at.desc(), Topic.id.desc())
        .limit(1)
        .scalar_subquery()
    )
    found = session.scalars(
        select(Topic).where((Topic.id == newer) | (Topic.id == older) | (Topic.id == latest))
    ).all()
    here = (at, tid)
    above = [t for t in found if (t.last_post_at, t.id) > here]
    below = [t for t in found if (t.last_post_at, t.id) < here]
    newest = min(above, key=lambda t: (t.last_post_at, t.id)) if above else None
    activity = max([at, *(t.last_post_at for t in above)])
    return newest, (below[0] if below else None), activity


def post_position(session: Session, mlist: MailingList, post_id: int) -> tuple[int, int] | None:
    """(topic id, 0-based index in thread order) of a published post of this list."""
    post = session.get(Post, post_id)
    if post is None or post.list_id != mlist.id or post.status != PUBLISHED:
        return None
    topic = resolve_topic(session, mlist, post.topic_id)
    if topic is None:
        return None
    ordered, _, _ = thread_order(session, topic)
    for index, (node, _) in enumerate(ordered):
        if node.id == post_id:
            return topic.id, index
    return None


def published_post(session: Session, mlist: MailingList, post_id: int, with_raw: bool = False) -> Post | None:
    stmt = select(Post).where(Post.id == post_id, Post.list_id == mlist.id, Post.status == PUBLISHED)
    if with_raw:
        stmt = stmt.options(undefer(Post.raw))
    return session.scalars(stmt).first()


def _newest_entries(
    *where: ColumnElement[bool] | TextClause,
) -> Select[int, int, str, str, str, dt.datetime, str]:
    """The published posts matching ``where`` as ``PostEntry`` columns, newest first."""
    return (
        select(
            Post.id,
            Post.topic_id,
            Post.subject,
            Post.author_name,
            Post.author_address,
            Post.received_at,
            Post.text_body,
        )
        .where(*where, Post.status == PUBLISHED)
        .order_by(Post.received_at.desc(), Post.id.desc())
    )


def _feed(session: Session, where: Sequence[ColumnElement[bool]], limit: int) -> list[PostEntry]:
    rows = session.execute(_newest_entries(*where).limit(limit)).all()
    return [PostEntry(*r) for r in rows]


def list_feed(session: Session, mlist: MailingList, limit: int = 30) -> list[PostEntry]:
    return _feed(session, [Post.list_id == mlist.id], limit)


def topic_feed(session: Session, topic: Topic, limit: int = 30) -> list[PostEntry]:
    return _feed(session, [Post.topic_id == topic.id], limit)


def topic_raw_posts(session: Session, topic: Topic) -> Iterator[Post]:
    """The published posts of a topic with their raw bytes, in arrival order (for mbox)."""
    stmt = (
        select(Post)
        .where(Post.topic_id == topic.id, Post.status == PUBLISHED)
        .order_by(Post.received_at, Post.id)
        .options(undefer(Post.raw))
        .execution_options(yield_per=200)
    )
    yield from session.scalars(stmt)


def month_raw_posts(session: Session, mlist: MailingList, year: int, month: int) -> Iterator[Post]:
    start = dt.datetime(year, month, 1, tzinfo=dt.UTC)
    end = dt.datetime(year + (month == 12), month % 12 + 1, 1, tzinfo=dt.UTC)
    stmt = (
        select(Post)
        .where(
            Post.list_id == mlist.id,
            Post.status == PUBLISHED,
            Post.received_at >= start,
            Post.received_at < end,
        )
        .order_by(Post.received_at, Post.id)
        .options(undefer(Post.raw))
        .execution_options(yield_per=200)
    )
    yield from session.scalars(stmt)


def months(session: Session, mlist: MailingList) -> list[tuple[int, int, int]]:
    """(year, month, published posts) for every month with posts, newest first."""
    if session.get_bind().dialect.name == "sqlite":
        key = func.strftime("%Y-%m", Post.received_at)
    else:
        key = func.to_char(func.timezone("UTC", Post.received_at), "YYYY-MM")
    rows = session.execute(
        select(key.label("month"), func.count())
        .where(Post.list_id == mlist.id, Post.status == PUBLISHED)
        .group_by(key)
        .order_by(key.desc())
    ).all()
    out = []
    for month, count in rows:
        year, mon = str(month).split("-")
        out.append((int(year), int(mon), count))
    return out


# --- search: one interface, SQLite FTS5 or PostgreSQL full-text ---------------------------

MAX_TERMS = 12
_TERM = re.compile(r"\w+", re.UNICODE)


def search_terms(query: str) -> list[str]:
    """The words of a query: every one must match (the same on both databases)."""
    return [t.lower() for t in _TERM.findall(query)][:MAX_TERMS]


def search(
    session: Session, mlist: MailingList, query: str, page: int, per_page: int
) -> tuple[list[PostEntry], bool]:
    """Published posts of a list containing every word of ``query``, newest first.

    Returns (hits on this page, whether there are more). SQLite matches through the
    ``posts_fts`` table; PostgreSQL through the ``ix_posts_search`` expression index.
    """
    terms = search_terms(query)
    if not terms:
        return [], False
    offset = (max(page, 1) - 1) * per_page
    if session.get_bind().dialect.name == "sqlite":
        match = " ".join(f'"{t}"' for t in terms)
        condition = text("posts.id IN (SELECT rowid FROM posts_fts WHERE posts_fts MATCH :match)").bindparams(
            match=match
        )
    else:
        condition = text(
            "to_tsvector('simple'::regconfig, posts.subject || ' ' || posts.author_name || ' ' || "
            "posts.text_body) @@ plainto_tsquery('simple'::regconfig, :terms)"
        ).bindparams(terms=" ".join(terms))
    stmt = _newest_entries(Post.list_id == mlist.id, condition).limit(per_page + 1).offset(offset)
    rows = session.execute(stmt).all()
    hits = [PostEntry(*r) for r in rows[:per_page]]
    return hits, len(rows) > per_page


# --- the rate limits of the web's forms and links (web/forms.py: RateLimiter) ------------


@dataclass(frozen=True, slots=True)
class Membership:
    name: str
    title: str
    private: bool


def lists_of(session: Session, address: str) -> list[Membership]:
    """The lists ``address`` is a member of, by name."""
    rows = session.execute(
        select(MailingList.name, MailingList.title, MailingList.visibility)
        .join(Member, Member.list_id == MailingList.id)
        .where(Member.address == address.lower())
        .order_by(MailingList.name)
    )
    return [
        Membership(name, title or name, visibility == Visibility.PRIVATE.value)
        for name, title, visibility in rows
    ]


def topic_setting(
    session: Session, mlist: MailingList, address: str, topic_id: int
) -> tuple[bool, str | None]:
    """Whether ``address`` is a member of ``mlist``, and its watch or mute of the topic (or None)."""
    row = session.execute(
        select(Member.id, TopicSubscription.kind)
        .outerjoin(
            TopicSubscription,
            (TopicSubscription.member_id == Member.id) & (TopicSubscription.topic_id == topic_id),
        )
        .where(Member.list_id == mlist.id, Member.address == address.lower())
    ).first()
    return (False, None) if row is None else (True, row[1])


def forget_form_hits(session: Session, scope: str, until: dt.datetime) -> None:
    """Delete the hits of ``scope`` at or before ``until``: they left every window."""
    session.execute(delete(FormHit).where(FormHit.scope == scope, FormHit.at <= until))


def form_hits(session: Session, scope: str, key: str, since: dt.datetime, limit: int) -> list[dt.datetime]:
    """When ``key`` was counted in ``scope`` after ``since``: the oldest ``limit`` times, oldest first."""
    return list(
        session.scalars(
            select(FormHit.at)
            .where(FormHit.scope == scope, FormHit.key == key, FormHit.at > since)
            .order_by(FormHit.at)
            .limit(limit)
        ).all()
    )


def add_form_hit(session: Session, scope: str, key: str, at: dt.datetime) -> None:
    session.add(FormHit(scope=scope, key=key, at=at))


# --- the digest scheduler (runners/scheduler.py) ------------------------------------------


def digest_hours(session: Session) -> list[tuple[str, int | None, str | None]]:
    """Every list's name, digest hour and time zone; None where the list uses the site's."""
    rows = session.execute(select(MailingList.name, MailingList.digest_hour, MailingList.digest_timezone))
    return [(name, hour, timezone) for name, hour, timezone in rows]


def member_digest_slots(session: Session) -> list[tuple[str, int | None, str | None]]:
    """Each list's distinct member-chosen digest hours and time zones (None: the list's)."""
    rows = session.execute(
        select(MailingList.name, Member.digest_hour, Member.digest_timezone)
        .join(Member, Member.list_id == MailingList.id)
        .where(or_(Member.digest_hour.is_not(None), Member.digest_timezone.is_not(None)))
        .distinct()
    )
    return [(name, hour, timezone) for name, hour, timezone in rows]


# --- the preferences page (core/preferences.py) -------------------------------------------


def member_topics(session: Session, member_id: int) -> list[tuple[str, int, str]]:
    """(kind, topic id, subject) of each topic the member watches or muted, newest setting first."""
    rows = session.execute(
        select(TopicSubscription.kind, Topic.id, Topic.subject)
        .join(Topic, Topic.id == TopicSubscription.topic_id)
        .where(TopicSubscription.member_id == member_id)
        .order_by(TopicSubscription.created_at.desc(), TopicSubscription.id.desc())
    )
    return [(kind, topic_id, subject) for kind, topic_id, subject in rows]
