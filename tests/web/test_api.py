"""The JSON API under /api/v1 over real HTTP, on SQLite and PostgreSQL: tokens, scopes, lists,
members (all or nothing), cursor pages, held posts, topics, bans, RFC 9457 errors, limits,
the audit log, and the OpenAPI document generated from the same table as the routes."""

from __future__ import annotations

import json
from dataclasses import replace
from typing import Any

import httpx
import pytest
from sqlalchemy import select

from mailforum.config import ApiConfig
from mailforum.core import api_tokens, bans, lists, roles, routing, topics
from mailforum.db.models import ApiToken, AuditEntry, MailingList, Member, Post, PostStatus, utcnow
from mailforum.mail.parse import parse
from mailforum.web import api
from tests.helpers import DOMAIN, free_ports, message
from tests.web.kit import WebThread, seed

PROBLEM = "application/problem+json"


def token(site, name: str, scope: str, list_name: str | None = None) -> str:
    with site.db.session() as session:
        mlist = lists.get_list(session, list_name) if list_name else None
        return api_tokens.create(session, name, scope, mlist)


def auth(tok: str | None) -> dict[str, str]:
    return {"Authorization": f"Bearer {tok}"} if tok else {}


def problem(r: httpx.Response, status: int) -> dict[str, Any]:
    assert r.status_code == status, r.text
    assert r.headers["content-type"] == PROBLEM
    body = r.json()
    assert body["status"] == status and body["title"] and body["detail"]
    return body


def hold(site, subject: str, sender: str = "stranger@example.net") -> int:
    """A non-member's post, held by the real processing path; returns its id."""
    raw = message(subject, f"<{subject.replace(' ', '-')}@example.net>", sender=sender)
    now = utcnow()
    with site.db.session() as session:
        routing.process(session, site.config, parse(raw), raw, sender, (f"dev@{DOMAIN}",), None, now, now)
    with site.db.read_session() as session:
        return session.scalars(select(Post.id).where(Post.subject == subject)).one()


def audit_actions(site) -> list[tuple[str, str, str]]:
    with site.db.read_session() as session:
        rows = session.scalars(select(AuditEntry).order_by(AuditEntry.id))
        return [(e.actor, e.action, e.target) for e in rows]


def test_lists_members_pages_and_the_audit_log(site, web) -> None:
    admin = token(site, "ops", "admin")
    with web.client(headers=auth(admin)) as http:
        made = http.post("/api/v1/lists", json={"name": "team", "title": "The team", "visibility": "private"})
        assert made.status_code == 201 and made.json()["name"] == "team" and made.json()["members"] == 0
        problem(http.post("/api/v1/lists", json={"name": "team"}), 409)
        problem(http.post("/api/v1/lists", json={"name": "Bad Name!"}), 422)
        problem(http.post("/api/v1/lists", json={"name": "x", "colour": "red"}), 422)  # unknown field
        problem(
            http.post("/api/v1/lists", content=b'{"name": ', headers={"content-type": "application/json"}),
            400,
        )
        assert [i["name"] for i in http.get("/api/v1/lists").json()["items"]] == ["dev", "team"]
        two = http.get("/api/v1/lists", params={"limit": 1}).json()
        assert [i["name"] for i in two["items"]] == ["dev"] and two["next"] == "dev"
        rest = http.get("/api/v1/lists", params={"limit": 1, "cursor": two["next"]}).json()
        assert [i["name"] for i in rest["items"]] == ["team"] and rest["next"] is None
        patched = http.patch("/api/v1/lists/team", json={"title": "Renamed", "policy": "moderated"})
        assert patched.status_code == 200 and patched.json()["title"] == "Renamed"
        assert http.get("/api/v1/lists/TEAM").json()["policy"] == "moderated"

        entries = [{"address": f"m{i:03d}@example.com"} for i in range(25)]
        entries[3] = {"address": "Dee <d@example.com>", "mode": "digest"}
        entries[4] = {"address": "e@example.com", "name": "Eve", "mode": "none"}
        added = http.post("/api/v1/lists/team/members", json={"members": entries})
        assert added.status_code == 200 and added.json() == {"added": 25, "existing": 0}
        again = http.post("/api/v1/lists/team/members", json={"members": entries[:2]})
        assert again.json() == {"added": 0, "existing": 2}

        items, cursor, pages = [], None, 0
        while True:
            page = http.get(
                "/api/v1/lists/team/members", params={"limit": 10, **({"cursor": cursor} if cursor else {})}
            )
            body = page.json()
            items += body["items"]
            pages += 1
            cursor = body["next"]
            if cursor is None:
                break
        assert pages == 3 and len(items) == 25 == len({i["address"] for i in items})
        by = {i["address"]: i for i in items}
        assert by["d@example.com"]["mode"] == "digest" and by["d@example.com"]["digest"] == "daily"
        assert by["d@example.com"]["name"] == "Dee" and by["e@example.com"]["name"] == "Eve"
        assert by["m000@example.com"] == by["m000@example.com"] | {"mode": "all", "delivery": "enabled"}
        problem(http.get("/api/v1/lists/team/members", params={"cursor": "x'; drop"}), 400)
        problem(http.get("/api/v1/lists/team/members", params={"limit": 0}), 400)

        changed = http.patch(
            "/api/v1/lists/team/members/E@Example.com", json={"mode": "digest", "nodupes": False}
        )
        assert (
            changed.status_code == 200
            and changed.json()["mode"] == "digest"
            and not changed.json()["nodupes"]
        )
        assert http.delete("/api/v1/lists/team/members/e%40example.com").status_code == 204
        problem(http.delete("/api/v1/lists/team/members/e@example.com"), 404)
        problem(http.patch("/api/v1/lists/team/members/m001@example.com", json={"mode": "sometimes"}), 422)
    actions = audit_actions(site)
    assert ("api:ops", "list.create", "team") in actions and ("api:ops", "list.settings", "team") in actions
    assert ("api:ops", "members.change", "e@example.com") in actions
    assert ("api:ops", "members.remove", "e@example.com") in actions
    assert sum(a == "members.add" for _, a, _ in actions) == 2


def test_a_bulk_add_with_bad_entries_names_each_and_adds_nothing(site, web) -> None:
    with site.db.session() as session:
        bans.add(session, lists.get_list(session, "dev"), ["@spam.example"])
    writer = token(site, "w", "write")
    entries = [{"address": f"ok{i}@example.com"} for i in range(10)]
    entries[2] = {"address": "not an address"}
    entries[6] = {"address": "joe@mail.spam.example"}
    entries[8] = {"address": "x@example.com", "name": "Evil\r\nBcc: all"}
    with web.client(headers=auth(writer)) as http:
        r = http.post("/api/v1/lists/dev/members", json={"members": entries})
        body = problem(r, 422)
        assert [(e["index"], e["address"]) for e in body["errors"]] == [
            (2, "not an address"),
            (6, "joe@mail.spam.example"),
            (8, "x@example.com"),
        ]
        assert "banned (@spam.example)" in body["errors"][1]["error"]
        problem(http.post("/api/v1/lists/dev/members", json={"members": []}), 422)
        problem(http.post("/api/v1/lists/dev/members", json={"members": [{"mode": "all"}]}), 422)
    with site.db.read_session() as session:
        assert session.scalars(select(Member)).all() == []


def test_held_posts_approve_reject_discard_and_topics(site, web) -> None:
    first, second, third = (hold(site, f"Outside question {n}") for n in (1, 2, 3))
    writer, reader = token(site, "mod", "write"), token(site, "reader", "read")
    with web.client(headers=auth(writer)) as http:
        held = http.get("/api/v1/lists/dev/held").json()
        assert [i["id"] for i in held["items"]] == [first, second, third] and held["next"] is None
        assert (
            held["items"][0]["author"] == "stranger@example.net"
            and "not a member" in held["items"][0]["reason"]
        )
        problem(http.post(f"/api/v1/lists/dev/held/{first}", json={"action": "publish"}), 422)
        problem(
            http.post(f"/api/v1/lists/dev/held/{first}", json={"action": "approve"}, headers=auth(reader)),
            403,
        )
        ok = http.post(f"/api/v1/lists/dev/held/{first}", json={"action": "approve", "allow_sender": True})
        assert ok.status_code == 200 and "approved" in ok.json()["result"]
        problem(http.post(f"/api/v1/lists/dev/held/{first}", json={"action": "approve"}), 404)  # not held now
        assert (
            "rejected"
            in http.post(
                f"/api/v1/lists/dev/held/{second}", json={"action": "reject", "reason": "off topic"}
            ).json()["result"]
        )
        assert (
            "discarded"
            in http.post(f"/api/v1/lists/dev/held/{third}", json={"action": "discard"}).json()["result"]
        )
        assert http.get("/api/v1/lists/dev/held").json()["items"] == []
        topics = http.get("/api/v1/lists/dev/topics").json()["items"]
        assert [t["subject"] for t in topics] == ["Outside question 1"]
        detail = http.get(f"/api/v1/lists/dev/topics/{topics[0]['id']}").json()
        assert [p["id"] for p in detail["posts"]] == [first] and detail["posts"][0]["text"].startswith(
            "Hello"
        )
        problem(http.get("/api/v1/lists/dev/topics/999999"), 404)
        problem(http.get("/api/v1/lists/dev/topics/abc"), 404)
    with site.db.read_session() as session:
        assert session.get(Post, first).status == PostStatus.PUBLISHED.value
        assert session.get(Post, second) is None and session.get(Post, third) is None
    actions = audit_actions(site)
    assert [(a, t) for _, a, t in actions] == [
        ("held.approve", str(first)),
        ("held.reject", str(second)),
        ("held.discard", str(third)),
    ]


def test_a_revoked_token_is_refused_at_once_and_tokens_are_stored_hashed(site, web) -> None:
    tok = token(site, "short-lived", "read")
    with web.client() as http:
        assert http.get("/api/v1/lists", headers=auth(tok)).status_code == 200
        problem(http.get("/api/v1/lists"), 401)
        problem(http.get("/api/v1/lists", headers={"Authorization": f"Basic {tok}"}), 401)
        problem(http.get("/api/v1/lists", headers=auth(tok[:-1] + ("A" if tok[-1] != "A" else "B"))), 401)
        r = site.cli("api-tokens", "revoke", "short-lived")
        assert r.returncode == 0, r.stderr
        body = problem(http.get("/api/v1/lists", headers=auth(tok)), 401)
        assert "revoked" in body["detail"]
    with site.db.read_session() as session:
        dump = json.dumps([list(r) for r in session.execute(select(ApiToken.__table__))], default=str)
    assert tok.split("_")[2] not in dump


def test_the_cli_prints_a_token_once_lists_them_without_secrets_and_refuses_bad_input(site) -> None:
    made = site.cli("api-tokens", "create", "--name", "deploy", "--list", "dev", "--scope", "write")
    assert made.returncode == 0, made.stderr
    tok = made.stdout.strip().splitlines()[-1]
    assert tok.startswith("mf_") and len(tok) > 40
    listed = site.cli("api-tokens", "list")
    assert "deploy" in listed.stdout and "write" in listed.stdout and "dev" in listed.stdout
    assert tok not in listed.stdout and tok.split("_")[2] not in listed.stdout
    again = site.cli("api-tokens", "create", "--name", "deploy")
    assert again.returncode == 1 and "exists" in again.stderr
    assert site.cli("api-tokens", "create", "--name", "bad name").returncode == 1
    assert "no list" in site.cli("api-tokens", "create", "--name", "x", "--list", "nosuch").stderr
    assert "no token" in site.cli("api-tokens", "revoke", "nosuch").stderr
    assert ("cli", "api-token.create", "deploy") in audit_actions(site)


# --- authorisation: every route x every kind of caller ------------------------------------------

CALLERS = ("none", "read", "write", "admin", "other")  # other: an admin token bound to another list
# route -> expected status for each caller, in CALLERS order
TABLE: list[tuple[str, str, Any, tuple[int, ...]]] = [
    ("GET", "/api/v1/lists", None, (401, 200, 200, 200, 200)),
    ("POST", "/api/v1/lists", {"name": "new-{who}"}, (401, 403, 403, 201, 403)),
    ("GET", "/api/v1/lists/dev", None, (401, 200, 200, 200, 404)),
    ("PATCH", "/api/v1/lists/dev", {"title": "T"}, (401, 403, 403, 200, 404)),
    ("GET", "/api/v1/lists/dev/members", None, (401, 200, 200, 200, 404)),
    (
        "POST",
        "/api/v1/lists/dev/members",
        {"members": [{"address": "n-{who}@example.com"}]},
        (401, 403, 200, 200, 404),
    ),
    ("PATCH", "/api/v1/lists/dev/members/ann@example.com", {"mode": "all"}, (401, 403, 200, 200, 404)),
    ("DELETE", "/api/v1/lists/dev/members/d-{who}@example.com", None, (401, 403, 204, 204, 404)),
    ("GET", "/api/v1/lists/dev/held", None, (401, 200, 200, 200, 404)),
    ("POST", "/api/v1/lists/dev/held/{held}", {"action": "discard"}, (401, 403, 200, 200, 404)),
    ("GET", "/api/v1/lists/dev/topics", None, (401, 200, 200, 200, 404)),
    ("GET", "/api/v1/lists/dev/topics/{topic}", None, (401, 200, 200, 200, 404)),
    ("GET", "/api/v1/lists/dev/bans", None, (401, 200, 200, 200, 404)),
    ("POST", "/api/v1/lists/dev/bans", {"patterns": ["b-{who}@example.com"]}, (401, 403, 200, 200, 404)),
    ("DELETE", "/api/v1/lists/dev/bans", {"patterns": ["b-{who}@example.com"]}, (401, 403, 200, 200, 404)),
    ("GET", "/api/v1/audit", None, (401, 403, 403, 200, 403)),
    ("GET", "/api/v1/lists/dev/audit", None, (401, 200, 200, 200, 404)),
    ("GET", "/api/v1/lists/dev/owners", None, (401, 403, 403, 200, 404)),
    ("POST", "/api/v1/lists/dev/owners", {"addresses": ["o-{who}@example.com"]}, (401, 403, 403, 200, 404)),
    ("DELETE", "/api/v1/lists/dev/owners/x-{who}@example.com", None, (401, 403, 403, 204, 404)),
    ("GET", "/api/v1/lists/dev/tags", None, (401, 200, 200, 200, 404)),
    ("POST", "/api/v1/lists/dev/tags", {"tags": ["t-{who}"]}, (401, 403, 403, 200, 404)),
    ("DELETE", "/api/v1/lists/dev/tags/g-{who}", None, (401, 403, 403, 204, 404)),
    ("PUT", "/api/v1/lists/dev/topics/{topic}/tags", {"tags": ["seeded"]}, (401, 403, 200, 200, 404)),
    ("POST", "/api/v1/lists/dev/topics/{topic}", {"action": "pin"}, (401, 403, 200, 200, 404)),
    ("POST", "/api/v1/lists/dev/posts/{reply}/split", None, (401, 403, 200, 200, 404)),
    ("POST", "/api/v1/lists/dev/posts/{reply}/remove", {"reason": "spam"}, (401, 403, 200, 200, 404)),
    ("GET", "/api/v1/bans", None, (401, 403, 403, 200, 403)),
    ("POST", "/api/v1/bans", {"patterns": ["s-{who}@example.com"]}, (401, 403, 403, 200, 403)),
    ("DELETE", "/api/v1/bans/{ban}", None, (401, 403, 403, 204, 403)),
    ("DELETE", "/api/v1/lists/v-{who}", None, (401, 403, 403, 200, 404)),
    ("GET", "/api/v1/lists/nosuch", None, (401, 404, 404, 404, 404)),
    ("GET", "/api/v1/openapi.json", None, (200, 200, 200, 200, 200)),
]


def test_every_route_answers_each_caller_as_the_table_says(site, web) -> None:
    site.create_list("other")
    for who in CALLERS:
        site.create_list(f"v-{who}")
    site.add_members("dev", "ann@example.com", *(f"d-{who}@example.com" for who in CALLERS))
    seed(site.config, site.db, [message("Seeded topic", "<seed@example.com>")])
    with site.db.read_session() as session:
        topic = session.scalars(select(Post.topic_id)).one()
    with site.db.session() as session:
        dev = lists.get_list(session, "dev")
        roles.add_owners(session, dev, [f"x-{who}@example.com" for who in CALLERS])
        topics.add_tags(session, dev, ["seeded", *(f"g-{who}" for who in CALLERS)], utcnow())
    tokens = {who: token(site, who, who) for who in ("read", "write", "admin")}
    tokens["other"] = token(site, "other", "admin", "other")
    tokens["none"] = None
    # Every operation of the API is in the table (and nothing else is in the API).
    covered = {(m, p) for m, p, _, _ in TABLE}
    for op in api.OPERATIONS:
        path = "/api/v1" + op.path
        assert any(m == op.method and _same(path, p) for m, p in covered), f"{op.method} {path} not in TABLE"
    wrong = []
    with web.client() as http:
        for method, path, body, expected in TABLE:
            for who, want in zip(CALLERS, expected, strict=True):
                held = (
                    hold(site, f"Held for {who} {method} {len(wrong)} {path[-5:]}") if "{held}" in path else 0
                )
                reply = fresh_reply(site, f"{who}{len(wrong)}{method}{path[-8:]}") if "{reply}" in path else 0
                ban = fresh_ban(site, f"{who}-{method}-{path[-6:]}") if "{ban}" in path else 0
                url = path.format(who=who, held=held, topic=topic, reply=reply, ban=ban)
                payload = json.loads(json.dumps(body).replace("{who}", who)) if body is not None else None
                r = http.request(method, url, json=payload, headers=auth(tokens[who]))
                if r.status_code != want:
                    wrong.append(f"{method} {url} as {who}: {r.status_code}, want {want}: {r.text[:100]}")
                elif r.status_code >= 400:
                    assert r.headers["content-type"] == PROBLEM, (method, url, who)
    assert wrong == []


def fresh_reply(site, key: str) -> int:
    """A new topic of a root and one reply, seeded as live mail; returns the reply's id."""
    key = "".join(c for c in key if c.isalnum())
    seed(
        site.config,
        site.db,
        [
            message(f"Root {key}", f"<root-{key}@example.com>"),
            message(
                f"Re: Root {key}",
                f"<reply-{key}@example.com>",
                extra=f"In-Reply-To: <root-{key}@example.com>",
            ),
        ],
    )
    with site.db.read_session() as session:
        return session.scalars(select(Post.id).where(Post.message_id == f"<reply-{key}@example.com>")).one()


def fresh_ban(site, key: str) -> int:
    from mailforum.db.models import Ban

    key = "".join(c for c in key if c.isalnum()).lower()
    with site.db.session() as session:
        bans.add(session, None, [f"ban-{key}@example.com"])
    with site.db.read_session() as session:
        return session.scalars(select(Ban.id).where(Ban.pattern == f"ban-{key}@example.com")).one()


def _same(real: str, table: str) -> bool:
    import re

    pattern = re.sub(r"\\\{[^}]*\\\}", "[^/]+", re.escape(real))
    return re.fullmatch(pattern, table) is not None


def test_the_openapi_document_describes_every_operation_with_pydantic_schemas(site, web) -> None:
    with web.client() as http:
        spec = http.get("/api/v1/openapi.json").json()
    assert spec["openapi"].startswith("3.1") and spec["servers"][0]["url"].endswith("/api/v1")
    described = {(m.upper(), p) for p, item in spec["paths"].items() for m in item}
    assert described == {(op.method, op.path) for op in api.OPERATIONS}
    schemas = spec["components"]["schemas"]
    body = spec["paths"]["/lists/{list}/members"]["post"]["requestBody"]["content"]["application/json"][
        "schema"
    ]
    assert body == {"$ref": "#/components/schemas/MembersIn"}
    assert schemas["MemberIn"]["required"] == ["address"]
    assert set(schemas["DeliveryMode"]["enum"]) == {"all", "new-topics", "digest", "none"}
    assert "next" in schemas["Page_MemberOut_"]["properties"]


# --- limits ---------------------------------------------------------------------------------------


@pytest.fixture
def tight(site):
    """A second web server on the same database, with a small body cap and a small rate limit."""
    port = free_ports(1)[0]
    config = replace(
        site.config,
        web=replace(site.config.web, port=port),
        api=ApiConfig(max_body=4096, rate_limit=5, rate_window=60.0, page_size=2, max_page_size=3),
    )
    running = WebThread(config, site.db)
    running.start()
    yield running
    running.stop()


def test_bodies_are_capped_and_each_token_is_rate_limited(site, tight) -> None:
    one, two = token(site, "one", "admin"), token(site, "two", "admin")
    with tight.client() as http:
        big = b'{"name": "big", "title": "' + b"x" * 5000 + b'"}'
        problem(http.post("/api/v1/lists", content=big, headers=auth(one)), 413)

        def chunks():
            for _ in range(10):
                yield b" " * 1000
            yield b'{"name": "chunked"}'

        problem(http.post("/api/v1/lists", content=chunks(), headers=auth(one)), 413)  # no Content-Length
        assert http.get("/api/v1/lists", headers=auth(one)).json()["next"] is None  # page_size 2, one list
        problem(http.get("/api/v1/lists", params={"limit": 4}, headers=auth(one)), 400)  # above max_page_size
        assert http.get("/api/v1/lists", headers=auth(one)).status_code == 200  # the 5th request
        r = http.get("/api/v1/lists", headers=auth(one))
        problem(r, 429)
        assert 1 <= int(r.headers["retry-after"]) <= 60
        assert http.get("/api/v1/lists", headers=auth(two)).status_code == 200  # per token
    with site.db.read_session() as session:
        assert [n for n in session.scalars(select(MailingList.name))] == ["dev"]
