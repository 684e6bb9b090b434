"""The API's routes for the audit log, owners, tags, moderators' tools and site-wide bans, over real
HTTP on SQLite and PostgreSQL: each change audited with the token's name and the client address,
422 naming each bad field, and the moderators' decisions surviving `rethread` as the CLI's do."""

from __future__ import annotations

from sqlalchemy import select

from mailforum.core import lists, topics
from mailforum.db.models import AuditEntry, Ban, ListOwner, Post, PostStatus, utcnow
from tests.helpers import message
from tests.web.kit import seed
from tests.web.test_api import auth, fresh_reply, problem, token


def entries(site, actor: str) -> list[AuditEntry]:
    with site.db.read_session() as session:
        return list(
            session.scalars(select(AuditEntry).where(AuditEntry.actor == actor).order_by(AuditEntry.id))
        )


def test_the_audit_log_pages_and_filters_by_actor_action_and_time(site, web) -> None:
    site.create_list("other")
    admin, bound = token(site, "ops", "admin"), token(site, "devonly", "admin", "dev")
    before = utcnow()
    with web.client(headers=auth(admin)) as http:
        for n in range(5):
            assert http.post(
                "/api/v1/lists/dev/members", json={"members": [{"address": f"a{n}@example.com"}]}
            ).is_success
        assert http.post("/api/v1/lists/other/tags", json={"tags": ["x"]}).is_success
        assert site.cli("lists", "owners", "dev", "add", "ann@example.com").returncode == 0

        walked, cursor = [], None
        while True:
            page = http.get(
                "/api/v1/audit", params={"limit": 2, **({"cursor": cursor} if cursor else {})}
            ).json()
            walked += page["items"]
            cursor = page["next"]
            if cursor is None:
                break
        assert [e["action"] for e in walked] == ["owners.add", "tags.add", *["members.add"] * 5]
        assert walked[0]["actor"] == "cli" and walked[1]["list"] == "other" and walked[2]["list"] == "dev"
        assert walked[2]["actor"] == "api:ops" and walked[2]["detail"]["client"] == "127.0.0.1"

        by_api = http.get("/api/v1/audit", params={"actor": "api:ops"}).json()["items"]
        assert len(by_api) == 6 and {e["actor"] for e in by_api} == {"api:ops"}
        group = http.get("/api/v1/audit", params={"action": "members"}).json()["items"]
        assert (
            len(group) == 5 and http.get("/api/v1/audit", params={"action": "member"}).json()["items"] == []
        )
        exact = http.get("/api/v1/audit", params={"action": "tags.add"}).json()["items"]
        assert [e["list"] for e in exact] == ["other"]
        assert len(http.get("/api/v1/audit", params={"since": before.isoformat()}).json()["items"]) == 7
        assert http.get("/api/v1/audit", params={"since": "2999-01-01"}).json()["items"] == []
        assert len(http.get("/api/v1/audit", params={"since": "2000-01-01T00:00:00Z"}).json()["items"]) == 7
        bad = problem(http.get("/api/v1/audit", params={"since": "yesterday"}), 400)
        assert bad["errors"][0]["field"] == "since"

        on_dev = http.get("/api/v1/lists/dev/audit", params={"action": "owners"}).json()["items"]
        assert [(e["actor"], e["target"]) for e in on_dev] == [("cli", "ann@example.com")]
        problem(http.get("/api/v1/audit", headers=auth(bound)), 403)  # bound to a list: not site-wide
        assert len(http.get("/api/v1/lists/dev/audit", headers=auth(bound)).json()["items"]) == 6
        problem(http.get("/api/v1/lists/other/audit", headers=auth(bound)), 404)


def test_owners_are_listed_added_all_or_nothing_and_removed(site, web) -> None:
    admin = token(site, "ops", "admin")
    with web.client(headers=auth(admin)) as http:
        bad = problem(
            http.post("/api/v1/lists/dev/owners", json={"addresses": ["Ann@Example.com", "not an address"]}),
            422,
        )
        assert [(e["index"], e["field"]) for e in bad["errors"]] == [(1, "addresses.1")]
        assert http.get("/api/v1/lists/dev/owners").json()["items"] == []
        made = http.post(
            "/api/v1/lists/dev/owners", json={"addresses": ["Ann <Ann@Example.com>", "bob@example.com"]}
        )
        assert made.json() == {"changed": ["ann@example.com", "bob@example.com"]}
        again = http.post("/api/v1/lists/dev/owners", json={"addresses": ["ann@example.com"]})
        assert again.json() == {"changed": []}
        assert [o["address"] for o in http.get("/api/v1/lists/dev/owners").json()["items"]] == [
            "ann@example.com",
            "bob@example.com",
        ]
        assert http.delete("/api/v1/lists/dev/owners/Bob@example.com").status_code == 204
        problem(http.delete("/api/v1/lists/dev/owners/bob@example.com"), 404)
    assert site.cli("lists", "owners", "dev").stdout.split() == ["ann@example.com"]
    log = [(e.action, e.target, e.origin, e.detail["client"]) for e in entries(site, "api:ops")]
    assert log == [
        ("owners.add", "ann@example.com", "api", "127.0.0.1"),
        ("owners.add", "bob@example.com", "api", "127.0.0.1"),
        ("owners.remove", "bob@example.com", "api", "127.0.0.1"),
    ]
    with site.db.read_session() as session:
        assert len(session.scalars(select(ListOwner)).all()) == 1


def test_tags_vocabulary_topic_tags_and_the_tag_filter(site, web) -> None:
    admin, writer = token(site, "ops", "admin"), token(site, "mod", "write")
    first = fresh_reply(site, "one")
    second = fresh_reply(site, "two")
    with site.db.read_session() as session:
        t1, t2 = (session.get(Post, p).topic_id for p in (first, second))
    with web.client(headers=auth(admin)) as http:
        assert http.post("/api/v1/lists/dev/tags", json={"tags": ["#Agile", "strategy"]}).json() == {
            "changed": ["agile", "strategy"]
        }
        bad = problem(http.post("/api/v1/lists/dev/tags", json={"tags": ["ok", "two words", "x\ny"]}), 422)
        assert [e["field"] for e in bad["errors"]] == ["tags.1", "tags.2"]
        assert [t["name"] for t in http.get("/api/v1/lists/dev/tags").json()["items"]] == [
            "agile",
            "strategy",
        ]

        put = http.put(
            f"/api/v1/lists/dev/topics/{t1}/tags", json={"tags": ["agile", "Strategy"]}, headers=auth(writer)
        )
        assert put.status_code == 200 and put.json()["tags"] == ["agile", "strategy"]
        unknown = problem(
            http.put(f"/api/v1/lists/dev/topics/{t1}/tags", json={"tags": ["agile", "nope"]}), 422
        )
        assert [(e["index"], e["field"]) for e in unknown["errors"]] == [(1, "tags.1")] and "nope" in unknown[
            "detail"
        ]
        # Each entry keeps its own index, the badly written and the unknown alike.
        both = problem(
            http.put(f"/api/v1/lists/dev/topics/{t1}/tags", json={"tags": ["two words", "nope"]}), 422
        )
        assert [(e["index"], e["field"]) for e in both["errors"]] == [(0, "tags.0"), (1, "tags.1")]
        assert http.put(f"/api/v1/lists/dev/topics/{t2}/tags", json={"tags": ["strategy"]}).json()[
            "tags"
        ] == ["strategy"]
        assert http.put(f"/api/v1/lists/dev/topics/{t1}/tags", json={"tags": ["agile"]}).json()["tags"] == [
            "agile"
        ]
        problem(http.put("/api/v1/lists/dev/topics/999999/tags", json={"tags": []}), 404)

        items = http.get("/api/v1/lists/dev/topics").json()["items"]
        assert [(t["id"], t["tags"], t["locked"], t["pinned"]) for t in items] == [
            (t2, ["strategy"], False, False),
            (t1, ["agile"], False, False),
        ]
        assert [
            t["id"] for t in http.get("/api/v1/lists/dev/topics", params={"tag": "agile"}).json()["items"]
        ] == [t1]
        assert [
            t["id"] for t in http.get("/api/v1/lists/dev/topics", params={"tag": "#Strategy"}).json()["items"]
        ] == [t2]
        assert (
            problem(http.get("/api/v1/lists/dev/topics", params={"tag": "nope"}), 400)["errors"][0]["field"]
            == "tag"
        )
        assert http.get(f"/api/v1/lists/dev/topics/{t1}").json()["tags"] == ["agile"]

        assert http.delete("/api/v1/lists/dev/tags/agile").status_code == 204
        problem(http.delete("/api/v1/lists/dev/tags/agile"), 404)
        assert http.get(f"/api/v1/lists/dev/topics/{t1}").json()["tags"] == []
    actions = [(e.action, e.origin, e.detail.get("client")) for e in entries(site, "api:mod")]
    assert actions == [("topic.tag", "api", "127.0.0.1")]
    assert [e.action for e in entries(site, "api:ops")] == [
        "tags.add",
        "topic.tag",
        "topic.untag",
        "tags.remove",
    ]


def test_moderators_tools_over_the_api_survive_rethread(site, web) -> None:
    site.create_list("other")
    writer, bound = token(site, "mod", "write"), token(site, "devmod", "write", "dev")
    split_at = fresh_reply(site, "split")
    keep = fresh_reply(site, "keep")
    gone = fresh_reply(site, "gone")
    with site.db.read_session() as session:
        t_split, t_keep, t_gone = (session.get(Post, p).topic_id for p in (split_at, keep, gone))
    mover = fresh_reply(site, "mover")
    with site.db.read_session() as session:
        t_move = session.get(Post, mover).topic_id
    with web.client(headers=auth(writer)) as http:
        url = f"/api/v1/lists/dev/topics/{t_keep}"
        locked = http.post(url, json={"action": "lock"}).json()
        assert locked["locked"] and not locked["pinned"]
        assert http.post(url, json={"action": "pin"}).json()["pinned"]
        assert not http.post(url, json={"action": "unlock"}).json()["locked"]
        missing = problem(http.post(url, json={"action": "retitle"}), 422)
        assert missing["errors"][0]["field"] == "title"
        broken = problem(http.post(url, json={"action": "retitle", "title": "Bcc: all\r\nX"}), 422)
        assert broken["errors"][0]["field"] == "title"
        assert (
            http.post(url, json={"action": "retitle", "title": "Kept for good"}).json()["subject"]
            == "Kept for good"
        )
        problem(http.post(url, json={"action": "explode"}), 422)
        problem(http.post("/api/v1/lists/dev/topics/999999", json={"action": "lock"}), 404)

        split = http.post(f"/api/v1/lists/dev/posts/{split_at}/split")
        assert split.status_code == 200 and split.json()["post_count"] == 1
        new_topic = split.json()["id"]
        assert new_topic != t_split
        problem(http.post(f"/api/v1/lists/dev/posts/{split_at}/split"), 409)  # starts its topic now
        problem(http.post("/api/v1/lists/dev/posts/999999/split"), 404)

        into = problem(
            http.post(f"/api/v1/lists/dev/topics/{t_gone}", json={"action": "merge", "into": 999999}), 422
        )
        assert into["errors"][0]["field"] == "into"
        merged = http.post(f"/api/v1/lists/dev/topics/{t_gone}", json={"action": "merge", "into": t_keep})
        assert (
            merged.status_code == 200 and merged.json()["id"] == t_keep and merged.json()["post_count"] == 4
        )

        removed = http.post(f"/api/v1/lists/dev/posts/{gone}/remove", json={"reason": "off topic"})
        assert removed.json() == {"id": gone, "topic": t_keep, "status": "removed"}
        problem(http.post(f"/api/v1/lists/dev/posts/{gone}/remove", json={}), 409)
        assert (
            problem(http.post(f"/api/v1/lists/dev/posts/{keep}/remove", json={"reason": "a\nb"}), 422)[
                "errors"
            ][0]["field"]
            == "reason"
        )

        hidden = problem(
            http.post(
                f"/api/v1/lists/dev/topics/{t_move}",
                json={"action": "move", "list": "other"},
                headers=auth(bound),
            ),
            422,
        )
        assert hidden["errors"][0]["field"] == "list" and "no list" in hidden["detail"]
        moved = http.post(f"/api/v1/lists/dev/topics/{t_move}", json={"action": "move", "list": "other"})
        assert moved.status_code == 200
        assert http.get(f"/api/v1/lists/other/topics/{t_move}").status_code == 200

    done = site.cli("rethread", "--list", "dev")
    assert done.returncode == 0, done.stderr
    with site.db.read_session() as session:
        mlist = lists.get_list(session, "dev")
        split_post = session.get(Post, split_at)
        root = session.scalars(select(Post).where(Post.message_id == "<root-split@example.com>")).one()
        assert split_post.topic_id != root.topic_id  # the split held
        kept = session.scalars(select(Post).where(Post.message_id == "<root-keep@example.com>")).one()
        absorbed = session.scalars(select(Post).where(Post.message_id == "<root-gone@example.com>")).one()
        assert kept.topic_id == absorbed.topic_id  # the merge held
        topic = topics.get_topic(session, mlist, kept.topic_id)
        assert topic.subject == "Kept for good"  # the retitle held
        assert session.get(Post, gone).status == PostStatus.REMOVED.value
    log = [(e.action, e.origin, e.detail.get("client")) for e in entries(site, "api:mod")]
    assert [a for a, _, _ in log] == [
        "topic.lock",
        "topic.pin",
        "topic.unlock",
        "topic.retitle",
        "topic.split",
        "topic.merge",
        "post.remove",
        "topic.move",
    ]
    assert {(o, c) for _, o, c in log} == {("api", "127.0.0.1")}


def test_site_wide_bans(site, web) -> None:
    admin, bound = token(site, "ops", "admin"), token(site, "devonly", "admin", "dev")
    with web.client(headers=auth(admin)) as http:
        bad = problem(
            http.post("/api/v1/bans", json={"patterns": ["@spam.example", "^(", "a\nb@x.com"]}), 422
        )
        assert [e["field"] for e in bad["errors"]] == ["patterns.1", "patterns.2"]
        added = http.post("/api/v1/bans", json={"patterns": ["@Spam.example", "^.*@junk\\.example$"]}).json()[
            "items"
        ]
        assert [b["pattern"] for b in added] == ["@spam.example", "^.*@junk\\.example$"]
        assert http.post("/api/v1/bans", json={"patterns": ["@spam.example"]}).json()["items"] == []
        first = http.get("/api/v1/bans", params={"limit": 1}).json()
        assert [b["pattern"] for b in first["items"]] == ["@spam.example"] and first["next"]
        rest = http.get("/api/v1/bans", params={"limit": 1, "cursor": first["next"]}).json()
        assert [b["pattern"] for b in rest["items"]] == ["^.*@junk\\.example$"] and rest["next"] is None
        problem(http.get("/api/v1/bans", headers=auth(bound)), 403)
        # a site-wide ban holds on the list: a bulk add of a banned address is refused
        refused = problem(
            http.post("/api/v1/lists/dev/members", json={"members": [{"address": "x@spam.example"}]}), 422
        )
        assert "banned (@spam.example)" in refused["errors"][0]["error"]
        assert http.delete(f"/api/v1/bans/{added[0]['id']}").status_code == 204
        problem(http.delete(f"/api/v1/bans/{added[0]['id']}"), 404)
        assert http.post("/api/v1/lists/dev/bans", json={"patterns": ["list@example.com"]}).is_success
        with site.db.read_session() as session:
            list_ban = session.scalars(select(Ban.id).where(Ban.pattern == "list@example.com")).one()
        problem(http.delete(f"/api/v1/bans/{list_ban}"), 404)  # a list's ban is not site-wide
    assert site.cli("bans", "*").stdout.split() == ["^.*@junk\\.example$"]
    assert [
        (e.action, e.target, e.list_id) for e in entries(site, "api:ops") if e.action.startswith("bans")
    ] == [
        ("bans.add", "@spam.example", None),
        ("bans.add", "^.*@junk\\.example$", None),
        ("bans.remove", "@spam.example", None),
        ("bans.add", "list@example.com", entries(site, "api:ops")[-1].list_id),
    ]


def test_cr_lf_and_nul_are_refused_in_titles_names_and_reasons(site, web) -> None:
    admin = token(site, "ops", "admin")
    site.add_members("dev", "ann@example.com")
    with web.client(headers=auth(admin)) as http:
        for method, url, body, field in [
            ("POST", "/api/v1/lists", {"name": "new", "title": "A\nB"}, "title"),
            ("PATCH", "/api/v1/lists/dev", {"title": "A\rB"}, "title"),
            ("PATCH", "/api/v1/lists/dev/members/ann@example.com", {"name": "Ann\u0000"}, "name"),
            ("POST", "/api/v1/lists/dev/held/1", {"action": "reject", "reason": "no\r\nBcc: x"}, "reason"),
        ]:
            body_out = problem(http.request(method, url, json=body), 422)
            assert [e["field"] for e in body_out["errors"]] == [field], (url, body_out)
        assert http.get("/api/v1/lists/dev").json()["title"] == ""


def test_deleting_a_list_counts_first_then_deletes_and_audits(site, web) -> None:
    site.create_list("gone")
    site.add_members("gone", "ann@example.com", "bob@example.com")
    admin, bound = token(site, "ops", "admin"), token(site, "gonetok", "admin", "gone")
    fresh_reply(site, "stays")  # in dev
    seed(site.config, site.db, [message("Bye", "<bye@example.com>")], "gone")
    with web.client(headers=auth(admin)) as http:
        problem(http.delete("/api/v1/lists/gone", headers=auth(bound)), 403)  # bound: not site-wide
        problem(http.delete("/api/v1/lists/gone", params={"dry_run": "maybe"}), 400)
        dry = http.delete("/api/v1/lists/gone", params={"dry_run": "true"}).json()
        assert (
            dry["deleted"] is False and dry["members"] == 2 and dry["topics"] == 1 and dry["api_tokens"] == 1
        )
        assert http.get("/api/v1/lists/gone").status_code == 200
        done = http.delete("/api/v1/lists/gone").json()
        assert done == dry | {"deleted": True}
        problem(http.get("/api/v1/lists/gone"), 404)
        problem(http.delete("/api/v1/lists/gone"), 404)
        assert http.get("/api/v1/lists/dev/topics").json()["items"]  # the other list keeps its topics
        log = http.get("/api/v1/audit", params={"action": "list.delete"}).json()["items"]
        assert [(e["actor"], e["target"], e["list"], e["detail"]["posts"]) for e in log] == [
            ("api:ops", "gone", "gone", 1)
        ]
    with site.db.read_session() as session:
        assert session.scalars(
            select(AuditEntry.list_id).where(AuditEntry.action == "list.delete")
        ).all() == [None]


def test_the_digest_hour_time_zone_and_format_in_patch(site, web) -> None:
    admin = token(site, "ops", "admin")
    with web.client(headers=auth(admin)) as http:
        made = http.patch(
            "/api/v1/lists/dev",
            json={"digest_hour": 7, "digest_timezone": "Europe/Berlin", "digest_format": "mime"},
        ).json()
        assert (made["digest_hour"], made["digest_timezone"], made["digest_format"]) == (
            7,
            "Europe/Berlin",
            "mime",
        )
        assert "07:00 Europe/Berlin" in site.cli("digest", "schedule", "dev", "--hour", "7").stdout
        assert "digest format mime" in site.cli("digest", "format", "dev").stdout
        zone = problem(http.patch("/api/v1/lists/dev", json={"digest_timezone": "Mars/Olympus"}), 422)
        assert zone["errors"][0]["field"] == "digest_timezone"
        assert problem(http.patch("/api/v1/lists/dev", json={"digest_hour": 24}), 422)["errors"][0][
            "field"
        ] == ("digest_hour")
        problem(http.patch("/api/v1/lists/dev", json={"digest_format": "html"}), 422)
        assert http.patch("/api/v1/lists/dev", json={"title": "Same"}).json()["digest_hour"] == 7  # untouched
        back = http.patch("/api/v1/lists/dev", json={"digest_hour": None, "digest_timezone": None}).json()
        assert (back["digest_hour"], back["digest_timezone"]) == (None, None)
    with site.db.read_session() as session:
        changes = session.scalars(
            select(AuditEntry.detail).where(AuditEntry.action == "list.settings").order_by(AuditEntry.id)
        ).all()
    assert changes[0] | {"client": "", "list": ""} == {
        "digest_hour": 7,
        "digest_timezone": "Europe/Berlin",
        "digest_format": "mime",
        "client": "",
        "list": "",
    }
    assert changes[-1]["digest_hour"] is None and changes[-1]["digest_timezone"] is None
