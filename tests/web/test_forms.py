"""The join and watch forms: CSRF, validation, rate limits, the hand-off, and no membership oracle."""

from __future__ import annotations

import re
from collections.abc import Iterator
from dataclasses import replace

import httpx
import pytest
from sqlalchemy import select

from mailforum.db.models import Topic
from mailforum.db.session import Database
from mailforum.web.links import BAD_TOKENS
from tests.helpers import free_ports, message
from tests.web.kit import WebThread, seed


def form_token(http: httpx.Client, path: str) -> str:
    page = http.get(path)
    assert page.status_code == 200 and page.headers["cache-control"] == "no-store"
    found = re.search(r'name="csrf" value="([^"]+)"', page.text)
    assert found and 'for="address"' in page.text and 'id="address"' in page.text
    return found.group(1)


def topic_id(site) -> int:
    with site.db.read_session() as session:
        return session.scalar(select(Topic.id).limit(1))


def test_join_hands_the_address_to_the_confirmation_hook_and_answers_neutrally(site, web, recorder) -> None:
    site.add_members("dev", "member@example.com")
    with web.client() as http:
        token = form_token(http, "/lists/dev/join")
        member = http.post("/lists/dev/join", data={"csrf": token, "address": "Member@Example.com"})
        stranger = http.post("/lists/dev/join", data={"csrf": token, "address": "stranger@example.com"})
    assert member.status_code == stranger.status_code == 200
    # The page never tells whether an address is a member (RELIABILITY S4, S16).
    assert member.text.replace("member@example.com", "X") == stranger.text.replace(
        "stranger@example.com", "X"
    )
    assert "Check your mail" in member.text
    assert [(c.kind, c.list_name, c.address, c.topic_id) for c in recorder.calls] == [
        ("join", "dev", "member@example.com", None),
        ("join", "dev", "stranger@example.com", None),
    ]
    assert recorder.calls[0].client == "127.0.0.1"


def test_watch_names_the_topic(site, web, recorder) -> None:
    seed(site.config, site.db, [message("Watched", "<w@example.com>")])
    path = f"/lists/dev/topics/{topic_id(site)}/watch"
    with web.client() as http:
        token = form_token(http, path)
        answer = http.post(path, data={"csrf": token, "address": "ann@example.com"})
    assert answer.status_code == 200 and "Check your mail" in answer.text
    assert [(c.kind, c.address, c.topic_id) for c in recorder.calls] == [
        ("watch", "ann@example.com", topic_id(site))
    ]


def test_posts_without_a_valid_token_are_refused(site, web, recorder) -> None:
    with web.client() as http:
        token = form_token(http, "/lists/dev/join")
        missing = http.post("/lists/dev/join", data={"address": "a@example.com"})
        forged = http.post("/lists/dev/join", data={"csrf": "1.deadbeef", "address": "a@example.com"})
    with web.client() as fresh:  # a token without its cookie is worthless
        no_cookie = fresh.post("/lists/dev/join", data={"csrf": token, "address": "a@example.com"})
    assert [r.status_code for r in (missing, forged, no_cookie)] == [403] * 3
    assert "This form has expired" in missing.text
    assert recorder.calls == []


def test_posts_from_another_origin_are_refused(site, web, recorder) -> None:
    with web.client() as http:
        token = form_token(http, "/lists/dev/join")
        other_site = http.post(
            "/lists/dev/join",
            data={"csrf": token, "address": "a@example.com"},
            headers={"origin": "https://evil.example"},
        )
        same_site = http.post(
            "/lists/dev/join",
            data={"csrf": token, "address": "a@example.com"},
            headers={"origin": site.config.site.base_url},
        )
    assert (other_site.status_code, same_site.status_code) == (403, 200)
    assert len(recorder.calls) == 1


def test_a_bad_address_is_explained_on_the_form(site, web, recorder) -> None:
    with web.client() as http:
        token = form_token(http, "/lists/dev/join")
        bad = http.post("/lists/dev/join", data={"csrf": token, "address": '"><script>alert(1)</script>'})
    assert bad.status_code == 400
    assert 'role="alert"' in bad.text and 'aria-invalid="true"' in bad.text
    assert "<script>alert(1)</script>" not in bad.text
    assert recorder.calls == []


def test_forms_are_rate_limited_per_client(site, web, recorder) -> None:
    with web.client() as http:
        token = form_token(http, "/lists/dev/join")
        answers = [
            http.post("/lists/dev/join", data={"csrf": token, "address": f"x{i}@example.com"})
            for i in range(4)
        ]
    assert [a.status_code for a in answers] == [200, 200, 200, 429]
    assert int(answers[3].headers["retry-after"]) > 0
    assert len(recorder.calls) == 3


@pytest.fixture
def second_node(site, recorder) -> Iterator[WebThread]:
    """Another ``serve`` node: its own process state, its own connection pool, one database."""
    config = replace(site.config, web=replace(site.config.web, port=free_ports(1)[0]))
    db = Database(site.config.database.url)
    node = WebThread(config, db, recorder)
    node.start()
    yield node
    node.stop()
    db.dispose()


def test_rate_limits_hold_across_nodes(site, web, second_node, recorder) -> None:
    """Issue 12: the limits are stored, so a second node does not grant a second allowance."""
    with web.client() as first, second_node.client() as second:
        token = form_token(first, "/lists/dev/join")
        second.cookies.update(first.cookies)  # the same browser, sent to the other node
        answers = [first.post("/lists/dev/join", data={"csrf": token, "address": "a@example.com"})]
        answers += [
            second.post("/lists/dev/join", data={"csrf": token, "address": f"b{i}@example.com"})
            for i in range(3)
        ]
        assert [a.status_code for a in answers] == [200, 200, 200, 429]
        assert len(recorder.calls) == 3
        # Guessed link tokens: BAD_TOKENS in all, across both nodes, then 429 on either.
        guesses = [(first, second)[i % 2].get(f"/confirm/{i}-guess-{i}") for i in range(BAD_TOKENS)]
        assert {g.status_code for g in guesses} == {404}
        assert first.get("/confirm/1-guess-x").status_code == 429
        assert second.get("/unsubscribe/1-guess-x").status_code == 429


def broken_hook(_request: object) -> None:
    raise RuntimeError("mail system down")


@pytest.mark.parametrize("hook", [None, broken_hook], ids=["no-sender", "failing-hook"])
def test_without_a_working_confirmation_sender_the_page_is_the_same(site, hook) -> None:
    """No confirmation sender, or one that fails: the same neutral page, and no error shown."""
    running = WebThread(site.config, site.db, hook)
    running.start()
    try:
        with running.client() as http:
            token = form_token(http, "/lists/dev/join")
            answer = http.post("/lists/dev/join", data={"csrf": token, "address": "ann@example.com"})
    finally:
        running.stop()
    assert (
        answer.status_code == 200
        and "Check your mail" in answer.text
        and "mail system down" not in answer.text
    )
