"""Members on the web: a new topic and a reply from the browser, the preferences page, and abuse.

Real HTTP against ``serve``'s real parts (web, spool processor, delivery) with copies at a
fake relay, on both databases. Sessions are made as sign-in makes them (``web/auth``'s
table and cookie); the whole sign-in by mail runs in tests/web/test_journey.py.
"""

from __future__ import annotations

import datetime as dt
import re
import secrets
import threading
from collections.abc import Iterator
from email.utils import getaddresses

import httpx
import pytest
from sqlalchemy import select

from mailforum.core import lists
from mailforum.core.subscriptions import set_topic
from mailforum.db import websessions
from mailforum.db.models import Member, PostingPolicy, SubscriptionKind, Topic, utcnow
from mailforum.runners import wakeup
from mailforum.web.auth import SESSION_COOKIE, key_hash
from tests.helpers import ServerThread, message, send, wait_for
from tests.integration.outbound_helpers import as_email, settled


@pytest.fixture
def served(site) -> Iterator[ServerThread]:
    """``serve``'s parts (ingest, processing, delivery, web) on the site's ports."""
    site.add_members("dev", "ann@example.com", "bob@example.com", "cy@example.com")
    running = ServerThread(site.config, scheduler=False)
    running.start()
    yield running
    running.stop()


def signed_in(site, address: str) -> httpx.Client:
    """A browser with a live session for ``address``, as a sign-in leaves it."""
    key = secrets.token_urlsafe(32)
    now = utcnow()
    with site.db.session() as session:
        websessions.add_session(session, key_hash(key), address, now, now + dt.timedelta(days=1), "test")
    return browser(site, {SESSION_COOKIE: key})


def browser(site, cookies: dict[str, str] | None = None) -> httpx.Client:
    base = f"http://127.0.0.1:{site.config.web.port}"
    return httpx.Client(base_url=base, timeout=20, cookies=cookies or {}, headers={"Origin": base})


def token(page: httpx.Response, action: str) -> str:
    """The CSRF token of the page's form posting to ``action``."""
    form = re.search(rf'<form[^>]*action="{re.escape(action)}"[^>]*>(.*?)</form>', page.text, re.S)
    assert form, f"no form posting to {action}"
    found = re.search(r'name="csrf" value="([^"]+)"', form.group(1))
    assert found
    return found.group(1)


def submit(http: httpx.Client, path: str, fields: dict[str, str], files=None) -> httpx.Response:
    page = http.get(path)
    assert page.status_code == 200, page.text[:300]
    return http.post(path, data={"csrf": token(page, path), **fields}, files=files)


def test_a_member_posts_a_topic_and_a_reply_that_reach_members_threaded(site, relay, served) -> None:
    with signed_in(site, "ann@example.com") as ann:
        answer = submit(ann, "/lists/dev/new", {"subject": "From the browser", "body": "First words.\n"})
        assert answer.status_code == 303, answer.text[:300]
        assert re.fullmatch(r"/lists/dev/topics/\d+(\?page=1)?#p\d+", answer.headers["location"])
        root_id = int(answer.headers["location"].rpartition("#p")[2])
        wait_for(lambda: relay.received(2) and settled(site))
        root = next(p for p in site.export() if p["subject"] == "From the browser")
        assert (root["author"], root["parent_message_id"], root["status"]) == (
            "ann@example.com",
            None,
            "published",
        )
        assert relay.messages_for("ann@example.com") == []
        bob_copy = as_email(relay.messages_for("bob@example.com")[0].data)
        assert bob_copy["Message-ID"] == root["message_id"]

        # bob answers by mail with his client's Reply; ann answers bob on the web, quoting him
        send(
            site.config,
            message(
                "Re: From the browser",
                "<bob1@example.com>",
                sender="bob@example.com",
                body="Bob by mail: walrus.\n",
                extra=f"In-Reply-To: {root['message_id']}",
            ),
            mail_from="bob@example.com",
            rcpts=[getaddresses([bob_copy["Reply-To"]])[0][1]],
        )
        bob = wait_for(lambda: site.posts_by_id().get("<bob1@example.com>"))
        assert bob["parent_message_id"] == root["message_id"]
        topic = ann.get(answer.headers["location"].partition("#")[0])
        bob_id = max(int(x) for x in re.findall(r"/lists/dev/posts/(\d+)/reply", topic.text))
        assert f"/lists/dev/posts/{root_id}/reply" in topic.text  # a Reply link under every post
        quoted = ann.get(f"/lists/dev/posts/{bob_id}/reply?quote=1")
        assert "&gt; Bob by mail: walrus." in quoted.text and "First words" not in quoted.text
        wait_for(lambda: relay.messages_for("cy@example.com")[1:] and settled(site))
        relay.transactions.clear()
        reply = submit(ann, f"/lists/dev/posts/{bob_id}/reply", {"body": "Ann answers bob.\n"})
        assert (
            reply.status_code == 303 and f"/lists/dev/topics/{root['topic_id']}" in reply.headers["location"]
        )
    mine = next(p for p in site.export() if p["text"].startswith("Ann answers bob"))
    assert (mine["parent_message_id"], mine["topic_id"]) == ("<bob1@example.com>", root["topic_id"])
    wait_for(lambda: relay.messages_for("cy@example.com") and settled(site))
    copy = as_email(relay.messages_for("cy@example.com")[0].data)
    assert copy["Message-ID"] == mine["message_id"] and copy["In-Reply-To"] == "<bob1@example.com>"
    assert copy["References"].split() == [root["message_id"], "<bob1@example.com>"]


def test_posting_takes_a_session_a_csrf_token_and_membership(site, served) -> None:
    site.add_members("dev", "dee@example.com")
    with signed_in(site, "ann@example.com") as ann:
        good = token(ann.get("/lists/dev/new"), "/lists/dev/new")
        fields = {"subject": "Forged", "body": "not from ann"}
        with browser(site) as anon:  # no session: no post, and no way round the sign-in
            refused = anon.post("/lists/dev/new", data={"csrf": good, **fields})
            assert refused.status_code in (303, 401, 403) and "/topics/" not in refused.headers.get(
                "location", ""
            )
        assert ann.post("/lists/dev/new", data={"csrf": "1.forged", **fields}).status_code == 403
        assert ann.post("/lists/dev/new", data=fields).status_code == 403
        other_origin = ann.post(
            "/lists/dev/new", data={"csrf": good, **fields}, headers={"Origin": "https://evil.example"}
        )
        assert other_origin.status_code == 403
        # a token for another form does not fit this one
        prefs = token(ann.get("/lists/dev/preferences"), "/lists/dev/preferences")
        assert ann.post("/lists/dev/new", data={"csrf": prefs, **fields}).status_code == 403
    with signed_in(site, "stranger@example.net") as stranger:
        page = stranger.get("/lists/dev/new")
        assert (
            page.status_code == 403
            and "Only members post here" in page.text
            and "/lists/dev/join" in page.text
        )
        forced = stranger.post("/lists/dev/new", data={"csrf": "x", **fields})
        assert forced.status_code == 403
    # after sign-out the same cookie posts nothing
    with signed_in(site, "dee@example.com") as dee:
        fresh = token(dee.get("/lists/dev/new"), "/lists/dev/new")
        with site.db.session() as session:
            websessions.end_sessions(session, "dee@example.com")
        after = dee.post("/lists/dev/new", data={"csrf": fresh, **fields})
        assert after.status_code in (303, 401, 403) and "/topics/" not in after.headers.get("location", "")
    assert site.export() == []


def test_a_held_web_post_leads_to_a_page_only_its_author_sees(site, served) -> None:
    with site.db.session() as session:
        lists.get_list(session, "dev").posting_policy = PostingPolicy.MODERATED.value
    with signed_in(site, "ann@example.com") as ann:
        answer = submit(ann, "/lists/dev/new", {"subject": "Moderated", "body": "Please approve.\n"})
        assert answer.status_code == 303
        sent = answer.headers["location"]
        assert re.fullmatch(r"/lists/dev/sent/\d+/web\.[0-9a-f]{24}", sent)
        page = ann.get(sent)
        assert page.status_code == 200 and "awaits a moderator" in page.text
    assert [p["status"] for p in site.export()] == ["held"]
    with signed_in(site, "bob@example.com") as bob:
        assert bob.get(sent).status_code == 404


def test_a_bad_post_is_shown_again_with_its_reason_and_the_text_kept(site, served) -> None:
    with signed_in(site, "ann@example.com") as ann:
        answer = submit(ann, "/lists/dev/new", {"subject": "", "body": "Words kept.\n"})
        assert answer.status_code == 422
        assert "a new topic needs a subject" in answer.text and "Words kept." in answer.text
        crlf = submit(ann, "/lists/dev/new", {"subject": "Hi\r\nBcc: evil@example.net", "body": "x\n"})
        assert crlf.status_code == 303
    post = wait_for(lambda: site.export())[0]
    assert "\n" not in post["subject"] and "\r" not in post["subject"]


def test_an_attachment_goes_along(site, relay, served) -> None:
    with signed_in(site, "ann@example.com") as ann:
        files = {"attachment": ("notes.txt", b"attached words\n", "text/plain")}
        answer = submit(
            ann, "/lists/dev/new", {"subject": "With a file", "body": "See the file.\n"}, files=files
        )
        assert answer.status_code == 303
    (post,) = site.export()
    assert [(a["filename"], a["size"]) for a in post["attachments"]] == [("notes.txt", 15)]


def test_preferences_change_what_members_show_says(site, served) -> None:
    with site.db.session() as session:
        mlist = lists.get_list(session, "dev")
        member = session.scalars(select(Member).where(Member.address == "ann@example.com")).one()
        topic = Topic(list_id=mlist.id, subject="Noisy topic", post_count=1)
        session.add(topic)
        session.flush()
        set_topic(session, member, topic, SubscriptionKind.MUTE, utcnow())
        topic_id = topic.id
    with signed_in(site, "ann@example.com") as ann:
        page = ann.get("/lists/dev/preferences")
        assert page.status_code == 200 and "ann@example.com" in page.text and "Noisy topic" in page.text
        saved = submit(
            ann,
            "/lists/dev/preferences",
            {"mode": "digest", "digest": "weekly", "digest_hour": "8", "timezone": "Asia/Tokyo"},
        )
        assert saved.status_code == 303 and saved.headers["location"] == "/lists/dev/preferences?saved=1"
        shown = site.cli("members", "show", "dev", "ann@example.com").stdout
        assert "mode:      digest" in shown and "digest:    weekly" in shown
        assert "digest at: 08:00 Asia/Tokyo" in shown and f"muted:     {topic_id}" in shown
        bad = submit(ann, "/lists/dev/preferences", {"mode": "all", "digest": "off", "timezone": "Mars/Base"})
        assert bad.status_code == 422 and "unknown time zone" in bad.text
        # one click ends the mute; one more undoes that
        path = f"/lists/dev/preferences/topics/{topic_id}"
        cleared = ann.post(
            path, data={"csrf": token(ann.get("/lists/dev/preferences"), path), "action": "clear"}
        )
        assert cleared.status_code == 200 and "Undo" in cleared.text
        assert "muted:     -" in site.cli("members", "show", "dev", "ann@example.com").stdout
        undone = ann.post(path, data={"csrf": token(cleared, path), "action": "mute"})
        assert undone.status_code == 200
        assert f"muted:     {topic_id}" in site.cli("members", "show", "dev", "ann@example.com").stdout
        leave = "/lists/dev/preferences/leave"
        left = ann.post(leave, data={"csrf": token(ann.get("/lists/dev/preferences"), leave)})
        assert left.status_code == 200 and "You have left" in left.text
    assert "not a member" in site.cli("members", "show", "dev", "ann@example.com").stderr


def test_the_preferences_page_of_a_non_member_and_without_a_session(site, served) -> None:
    with signed_in(site, "stranger@example.net") as stranger:
        page = stranger.get("/lists/dev/preferences")
        assert page.status_code == 403 and "/lists/dev/join" in page.text
    with browser(site) as anon:
        page = anon.get("/lists/dev/preferences")
        assert page.status_code in (303, 302) and "/signin" in page.headers["location"]


def test_a_web_post_wakes_the_spool_processors_of_other_processes(site) -> None:
    """The web writes the spool and wakes the processors wherever they run (runners/wakeup); with
    none running, the post waits in the spool and its author is told it is on its way."""
    site.add_members("dev", "ann@example.com")
    web_only = ServerThread(site.config, ingest=False, process=False, delivery=False, scheduler=False)
    web_only.start()
    channel = wakeup.open_channel(site.config.database.url)
    woken = threading.Event()
    try:
        channel.listen(wakeup.SPOOL, woken.set)
        woken.wait(2)  # PostgreSQL's listener calls back once when it starts listening
        woken.clear()
        with signed_in(site, "ann@example.com") as ann:
            answer = submit(ann, "/lists/dev/new", {"subject": "Anyone there?", "body": "Hello.\n"})
            assert woken.wait(10)
            assert answer.status_code == 303 and "/lists/dev/sent/" in answer.headers["location"]
            page = ann.get(answer.headers["location"])
            assert page.status_code == 200 and "on its way" in page.text
    finally:
        channel.close()
        web_only.stop()
    assert site.export() == []  # nothing processed it: still in the spool, not lost
