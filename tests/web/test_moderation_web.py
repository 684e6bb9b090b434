"""Moderators' tools on the web and the owners' tag vocabulary page, over real HTTP on SQLite and
PostgreSQL (RELIABILITY S41): each tool from a topic's page, 404 to anyone without the role
(anonymous, a member, the owner of another list) before any form is read, 403 without the
session's CSRF token, every change audited with the moderator's address and IP, and split
and retitle kept by ``rethread`` (the CLI's own functions)."""

from __future__ import annotations

import re

from sqlalchemy import select

from mailforum.core import lists, moderation, rethread, topics
from mailforum.db.models import AuditEntry, Tag, Topic, utcnow
from tests.helpers import message
from tests.web.kit import seed
from tests.web.test_accessibility import Outline
from tests.web.test_admin import MEMBER, MOD, OTHER, OWNER, WHO, csrf, roles_set_up, signed_in


def _seed(site) -> dict[str, dict]:
    seed(
        site.config,
        site.db,
        [
            message("Big thread", "<b0@example.com>", body="Everything here.\n"),
            message("Re: Big thread", "<b1@example.com>", sender="Bob <bob@example.com>",
                    body="A side question.\n", extra="In-Reply-To: <b0@example.com>"),
            message("Re: Big thread", "<b2@example.com>", sender="Mia <mia@example.com>",
                    body="The answer.\n", extra="In-Reply-To: <b1@example.com>"),
            message("Lunch", "<l0@example.com>", body="Pizza?\n"),
            message("Spam here", "<s0@example.com>", sender="Sam <sam@example.com>", body="Buy now.\n"),
        ],
    )  # fmt: skip
    return site.posts_by_id()


def _audit(site, action: str) -> list[AuditEntry]:
    with site.db.read_session() as session:
        return list(session.scalars(select(AuditEntry).where(AuditEntry.action == action)))


def test_every_tool_is_404_without_the_role_and_needs_csrf(site, web) -> None:
    roles_set_up(site)
    posts = _seed(site)
    topic = posts["<b0@example.com>"]["topic_id"]
    tools, tags = f"/lists/dev/topics/{topic}/moderate", "/admin/lists/dev/tags"
    wrong = []
    for who, address in WHO.items():
        moderates, owns = who in ("moderator", "owner", "admin"), who in ("owner", "admin")
        with signed_in(site, web, address) as http:
            for path, allowed in ((tools, moderates), (tags, owns)):
                got = http.get(path).status_code
                if got != (200 if allowed else 404):
                    wrong.append(f"GET {path} as {who}: {got}")
                got = http.post(path, data={"csrf": "forged", "action": "lock", "tags": "x"}).status_code
                if got != (403 if allowed else 404):
                    wrong.append(f"POST {path} with a forged token as {who}: {got}")
            for path in ("/lists/dev/topics/999999/moderate", "/lists/nosuch/topics/1/moderate"):
                if http.get(path).status_code != 404:
                    wrong.append(f"GET {path} as {who}: not 404")
            page = http.get(f"/lists/dev/topics/{topic}").text
            if ("Moderate this topic" in page) != moderates:
                wrong.append(f"the topic page's link to the tools, as {who}")
    assert wrong == []
    with site.db.read_session() as session:
        assert session.get(Topic, topic).locked_at is None  # nothing changed
    assert _audit(site, "topic.lock") == []


def _act(http, path: str, **fields: str):
    page = http.get(path)
    assert page.status_code == 200, page.text[:300]
    return http.post(path, data={"csrf": csrf(page, path), **fields})


def test_each_tool_from_the_web_is_audited_and_split_and_retitle_survive_rethread(site, web) -> None:
    roles_set_up(site)
    with site.db.session() as session:
        moderation.add_moderator(session, lists.get_list(session, "other"), MOD)
    posts = _seed(site)
    big, lunch, spam = (posts[f"<{k}@example.com>"]["topic_id"] for k in ("b0", "l0", "s0"))
    tools = f"/lists/dev/topics/{big}/moderate"
    with signed_in(site, web, MOD) as http:
        for action, column in (("lock", "locked_at"), ("pin", "pinned_at")):
            answer = _act(http, tools, action=action)
            assert answer.status_code == 303 and answer.headers["location"] == f"/lists/dev/topics/{big}"
            with site.db.read_session() as session:
                assert getattr(session.get(Topic, big), column) is not None
        assert "This topic is locked" in http.get(f"/lists/dev/topics/{big}").text
        for action in ("unlock", "unpin"):
            assert _act(http, tools, action=action).status_code == 303
        with site.db.read_session() as session:
            assert session.get(Topic, big).locked_at is None and session.get(Topic, big).pinned_at is None

        assert _act(http, tools, action="retitle", title="The big one").status_code == 303
        assert "The big one" in http.get(f"/lists/dev/topics/{big}").text
        bad = _act(http, tools, action="retitle", title="   ")
        assert bad.status_code == 422 and "title that is not empty" in bad.text

        split = _act(http, tools, action="split", post=str(posts["<b1@example.com>"]["id"]))
        assert split.status_code == 303
        new = int(split.headers["location"].rpartition("/")[2])
        assert new != big
        root = _act(http, tools, action="split", post=str(posts["<b0@example.com>"]["id"]))
        assert root.status_code == 422 and "nothing to split" in root.text
        elsewhere = _act(http, tools, action="split", post=str(posts["<l0@example.com>"]["id"]))
        assert elsewhere.status_code == 422  # a post of another topic

        merged = _act(http, f"/lists/dev/topics/{lunch}/moderate", action="merge", into=f"#{big}")
        assert merged.status_code == 303 and merged.headers["location"] == f"/lists/dev/topics/{big}"
        assert _act(http, tools, action="merge", into=str(big)).status_code == 422  # into itself
        assert _act(http, tools, action="merge", into="abc").status_code == 422

        removed = _act(
            http, f"/lists/dev/topics/{spam}/moderate", action="remove",
            post=str(posts["<s0@example.com>"]["id"]), reason="spam",
        )  # fmt: skip
        assert removed.status_code == 303 and removed.headers["location"] == "/lists/dev"
        assert http.get(f"/lists/dev/topics/{spam}").status_code == 404  # its only post is gone

        nowhere = _act(http, f"/lists/dev/topics/{new}/moderate", action="move", to="nosuch")
        assert nowhere.status_code == 422 and "you do not moderate" in nowhere.text
        moved = _act(http, f"/lists/dev/topics/{new}/moderate", action="move", to="other")
        assert moved.status_code == 303 and moved.headers["location"].startswith("/lists/other/topics/")
        token = csrf(http.get(tools), tools)
        assert http.post(tools, data={"csrf": token, "action": "explode"}).status_code == 400
        # Fields named like the page's own parameters are only form fields.
        odd = {"csrf": token, "action": "merge", "into": "x", "status": "200", "error": "", "request": "x"}
        assert http.post(tools, data=odd).status_code == 422

    after = site.posts_by_id()
    assert after["<l0@example.com>"]["topic_id"] == big
    assert after["<s0@example.com>"]["status"] == "removed"
    assert (
        site.posts_by_id("other")["<b1@example.com>"]["topic_id"]
        == site.posts_by_id("other")["<b2@example.com>"]["topic_id"]
    )
    for action in ("topic.lock", "topic.unlock", "topic.pin", "topic.unpin", "topic.retitle",
                   "topic.split", "topic.merge", "topic.move", "post.remove"):  # fmt: skip
        entries = _audit(site, action)
        assert entries and all((e.actor, e.origin) == (MOD, "127.0.0.1") for e in entries), action

    rethread.rethread(site.db, site.config, "dev")
    with site.db.read_session() as session:
        assert session.get(Topic, big).subject == "The big one"
    again = site.posts_by_id()
    assert again["<l0@example.com>"]["topic_id"] == again["<b0@example.com>"]["topic_id"]


def test_a_moderator_splits_on_the_web_and_rethread_keeps_it(site, web) -> None:
    roles_set_up(site)
    posts = _seed(site)
    big = posts["<b0@example.com>"]["topic_id"]
    tools = f"/lists/dev/topics/{big}/moderate"
    with signed_in(site, web, OWNER) as http:  # an owner moderates too
        page = http.get(tools)
        assert "Split here" in page.text and page.headers["x-robots-tag"] == "noindex"
        assert _act(http, tools, action="split", post=str(posts["<b1@example.com>"]["id"])).status_code == 303
    rethread.rethread(site.db, site.config, "dev")
    topic = {mid: p["topic_id"] for mid, p in site.posts_by_id().items()}
    assert topic["<b1@example.com>"] == topic["<b2@example.com>"] != topic["<b0@example.com>"]


def test_owners_manage_the_tag_vocabulary_on_the_web(site, web) -> None:
    roles_set_up(site)
    path = "/admin/lists/dev/tags"
    with signed_in(site, web, OWNER) as http:
        settings = http.get("/admin/lists/dev")
        assert 'href="/admin/lists/dev/tags"' in settings.text  # the owner pages' navigation
        added = _act(http, path, action="add", tags="Agile, risk #Strategy")
        assert added.status_code == 303, added.text[:300]
        page = http.get(path)
        assert all(f"<code>{t}</code>" in page.text for t in ("agile", "risk", "strategy"))
        bad = _act(http, path, action="add", tags="ok no/slash")
        assert bad.status_code == 422 and "not a tag name" in bad.text
        empty = _act(http, path, action="add", tags="  ")
        assert empty.status_code == 422
        assert _act(http, path, action="remove", tag="risk").status_code == 303
    with site.db.read_session() as session:
        names = sorted(session.scalars(select(Tag.name)))
    assert names == ["agile", "strategy"]  # "ok" was not added: the whole line was refused
    adds, removes = _audit(site, "tags.add"), _audit(site, "tags.remove")
    assert [(e.actor, e.origin) for e in adds + removes] == [(OWNER, "127.0.0.1")] * 2
    assert re.search(r"agile", str(adds[0].detail))
    with signed_in(site, web, MEMBER) as http:
        assert http.get(path).status_code == 404
    with signed_in(site, web, OTHER) as http:
        assert http.post(path, data={"csrf": "x", "action": "add", "tags": "evil"}).status_code == 404
    with site.db.read_session() as session:
        mlist = lists.get_list(session, "dev")
        assert [t.name for t in topics.vocabulary(session, mlist)] == ["agile", "strategy"]


def test_the_signed_in_pages_have_a_readable_structure(site, web) -> None:
    """The tools page, the tag page, the delete page and the forms with tags: landmarks, one
    h1, no skipped heading level, a label for every field (as tests/web/test_accessibility)."""
    roles_set_up(site)
    _tags_of(site, "agile", "risk")
    posts = _seed(site)
    big = posts["<b0@example.com>"]["topic_id"]
    pages = {
        OWNER: [f"/lists/dev/topics/{big}/moderate", "/admin/lists/dev/tags"],
        MEMBER: ["/lists/dev/preferences", "/lists/dev/new"],
    }
    for address, paths in pages.items():
        with signed_in(site, web, address) as http:
            for path in paths:
                page = http.get(path)
                assert page.status_code == 200, path
                outline = Outline()
                outline.feed(page.text)
                assert {"main", "header", "footer", "nav"} <= outline.landmarks, path
                assert outline.headings.count(1) == 1 and outline.headings[0] == 1, path
                for before, after in zip(outline.headings, outline.headings[1:], strict=False):
                    assert after <= before + 1, f"{path}: h{before} then h{after}"
                unlabelled = [f for f in outline.fields if not f or f not in outline.labels]
                assert unlabelled == [], path


def _tags_of(site, *names: str) -> None:
    with site.db.session() as session:
        topics.add_tags(session, lists.get_list(session, "dev"), names, utcnow())
