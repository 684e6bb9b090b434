"""No N+1: each page costs the same few statements however many topics and posts it shows.

Statements are counted with a SQLAlchemy ``before_cursor_execute`` listener on the
engine the running app uses.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

from sqlalchemy import event, select

from mailforum.db.models import Post, Topic
from tests.helpers import message
from tests.web.kit import seed, thread_messages


@contextmanager
def counting(engine) -> Iterator[list[str]]:
    statements: list[str] = []

    def record(conn, cursor, statement, parameters, context, executemany) -> None:
        if statement.lstrip().upper().startswith(("SELECT", "WITH")):
            statements.append(statement)

    event.listen(engine, "before_cursor_execute", record)
    try:
        yield statements
    finally:
        event.remove(engine, "before_cursor_execute", record)


def cost(site, http, path: str) -> int:
    with counting(site.db.engine) as statements:
        assert http.get(path).status_code == 200
    return len(statements)


def test_page_costs_do_not_grow_with_the_data(site, web) -> None:
    seed(site.config, site.db, [*thread_messages(2, "a", "First"), message("Second", "<b@example.com>")])
    with site.db.read_session() as session:
        small = session.scalar(select(Topic.id).where(Topic.subject == "First"))
    with web.client() as http:
        before = {p: cost(site, http, p) for p in ("/", "/lists/dev", f"/lists/dev/topics/{small}")}
        for n in range(8):
            seed(site.config, site.db, thread_messages(6, f"m{n}-", f"Busy topic {n}"))
        with site.db.read_session() as session:
            big = session.scalar(select(Post.topic_id).where(Post.message_id == "<m7-0@example.com>"))
        after = {
            "/": cost(site, http, "/"),
            "/lists/dev": cost(site, http, "/lists/dev"),
            f"/lists/dev/topics/{small}": cost(site, http, f"/lists/dev/topics/{big}?page=2"),
        }
        search = cost(site, http, "/lists/dev/search?q=reply")
        feed = cost(site, http, "/lists/dev/feed.atom")
    assert after == before
    assert before["/"] == 1
    # list, its topics, pinned topics, the page's tags, the vocabulary (and the viewer's session)
    assert before["/lists/dev"] <= 7
    # list, topic, its tree, its page's posts, the authors' standings, the neighbour topics, its tags
    assert before[f"/lists/dev/topics/{small}"] <= 7
    assert search <= 2 and feed <= 2
