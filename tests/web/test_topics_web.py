"""Tags and moderators' marks on the web (issue 19): tag pages, the tag filter, a tag's Atom
feed, tags on topic pages, pinned topics first, removed posts as tombstones."""

from __future__ import annotations

from mailforum.core import lists, topics
from mailforum.db.models import utcnow
from tests.helpers import message
from tests.web.kit import WebThread, seed


def _tag(site, *names: str) -> None:
    with site.db.session() as session:
        topics.add_tags(session, lists.get_list(session, "dev"), names, utcnow())


def _topic_of(site, message_id: str) -> int:
    return site.posts_by_id()[message_id]["topic_id"]


def _seed_tagged(site) -> None:
    _tag(site, "agile", "risk")
    seed(
        site.config,
        site.db,
        [
            message("[agile] Sprint length", "<a1@example.com>", body="How long?\n"),
            message("Hiring", "<h1@example.com>", body="#risk\nWe need people.\n"),
            message("Plain", "<p1@example.com>", body="Nothing tagged.\n"),
            message("Re: [agile] Sprint length", "<a2@example.com>", extra="In-Reply-To: <a1@example.com>"),
        ],
    )


def test_tag_pages_filter_and_feed(site, web: WebThread) -> None:
    _seed_tagged(site)
    posts = site.posts_by_id()
    assert posts["<a1@example.com>"]["tags"] == ["agile"]
    assert posts["<a2@example.com>"]["tags"] == ["agile"]  # a reply carries its topic's tags
    assert posts["<h1@example.com>"]["tags"] == ["risk"]
    assert posts["<p1@example.com>"]["tags"] == []
    with web.client() as http:
        page = http.get("/lists/dev/tags/agile")
        assert page.status_code == 200
        assert "Sprint length" in page.text and "Hiring" not in page.text and "Plain" not in page.text
        filtered = http.get("/lists/dev", params={"tag": "risk"})
        assert filtered.status_code == 200
        assert "Hiring" in filtered.text and "Sprint length" not in filtered.text
        assert http.get("/lists/dev/tags/nosuch").status_code == 404
        assert http.get("/lists/dev", params={"tag": "nosuch"}).status_code == 404
        assert http.get("/lists/dev/tags/nosuch/feed.atom").status_code == 404
        feed = http.get("/lists/dev/tags/agile/feed.atom")
        assert feed.status_code == 200 and feed.headers["content-type"].startswith("application/atom+xml")
        assert feed.text.count("<entry>") == 2 and "Hiring" not in feed.text
        topic = http.get(f"/lists/dev/topics/{_topic_of(site, '<h1@example.com>')}")
        assert 'href="/lists/dev/tags/risk"' in topic.text
        everything = http.get("/lists/dev")
        assert 'href="/lists/dev/tags/agile"' in everything.text  # the vocabulary, as links


def test_pinned_first_locked_notice_and_tombstone(site, web: WebThread) -> None:
    _seed_tagged(site)
    sprint, plain = _topic_of(site, "<a1@example.com>"), _topic_of(site, "<p1@example.com>")
    removed = site.posts_by_id()["<a2@example.com>"]["id"]
    with site.db.session() as session:
        mlist = lists.get_list(session, "dev")
        topics.mark(session, mlist, sprint, "pin", topics.Actor(), utcnow())
        topics.mark(session, mlist, plain, "lock", topics.Actor(), utcnow())
        topics.remove_post(session, mlist, removed, "spam", topics.Actor(), utcnow())
    with web.client() as http:
        listing = http.get("/lists/dev").text
        assert "Pinned" in listing
        assert listing.index("Sprint length") < listing.index("Hiring")
        thread = http.get(f"/lists/dev/topics/{sprint}").text
        assert "removed by a moderator" in thread
        assert "Reply number" not in thread
        assert http.get(f"/lists/dev/posts/{removed}").status_code == 404
        assert "This topic is locked" in http.get(f"/lists/dev/topics/{plain}").text
    assert site.posts_by_id()["<a2@example.com>"]["status"] == "removed"
