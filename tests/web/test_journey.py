"""A member who never opens a mail client, in a real headless Chromium (Playwright).

Alice signs in with the link the sink received, starts a topic and answers a post from
the browser; the copies at the sink thread as a mail client threads them (Message-ID,
In-Reply-To, References); bob's reply by mail to his copy lands in the same topic;
alice switches to digests, mutes the topic and signs out, after which the forms post
nothing. ``serve``'s real parts run (ingest, processing, delivery, web) with the relay
pointed at a real SMTP sink. Skipped where /usr/bin/chromium is missing, except in CI.
"""

from __future__ import annotations

import email
import email.policy
import os
import re
from collections.abc import Iterator
from dataclasses import replace
from email.utils import getaddresses
from pathlib import Path

import pytest

from tests.helpers import RecordingSink, ServerThread, Site, message, send, wait_for

CHROMIUM = Path("/usr/bin/chromium")

pytestmark = pytest.mark.skipif(
    not CHROMIUM.exists() and os.environ.get("CI") != "true",
    reason="no /usr/bin/chromium (apt-get install chromium)",
)


@pytest.fixture(scope="module")
def browser() -> Iterator[object]:
    from playwright.sync_api import sync_playwright

    with sync_playwright() as playwright:
        chromium = playwright.chromium.launch(
            executable_path=str(CHROMIUM), args=["--headless", "--no-sandbox", "--disable-gpu"]
        )
        yield chromium
        chromium.close()


@pytest.fixture
def served(site: Site, sink: RecordingSink) -> Iterator[str]:
    site.config = replace(site.config, relay=replace(site.config.relay, port=sink.port))
    site.add_members("dev", "alice@example.com", "bob@example.com", "carol@example.com")
    running = ServerThread(site.config, scheduler=False)
    running.start()
    yield f"http://127.0.0.1:{site.config.web.port}"
    running.stop()


def mails(sink: RecordingSink, address: str) -> list[email.message.EmailMessage]:
    return [
        email.message_from_bytes(t.data, policy=email.policy.default)  # type: ignore[misc]
        for t in list(sink.transactions)
        if address in t.rcpt_tos
    ]


def with_id(sink: RecordingSink, address: str, message_id: str) -> email.message.EmailMessage:
    return wait_for(
        lambda: next((m for m in mails(sink, address) if m["Message-ID"] == message_id), None), 30
    )


def signin_link(sink: RecordingSink, base: str, address: str) -> str:
    def find() -> str | None:
        for m in mails(sink, address):
            body = m.get_body(("plain",))
            found = re.findall(re.escape(base) + r"/signin/\S+", body.get_content() if body else "")
            if found:
                return found[-1]
        return None

    return wait_for(find, 30)


def test_a_member_signs_in_posts_replies_chooses_digests_mutes_and_signs_out(
    site, served, sink, browser
) -> None:
    page = browser.new_context(viewport={"width": 1280, "height": 900}).new_page()
    base = served
    # sign in with the link from the sink
    page.goto(base + "/signin")
    page.get_by_label("Your email address").fill("alice@example.com")
    page.get_by_role("button", name="Mail me a sign-in link").click()
    page.goto(signin_link(sink, base, "alice@example.com"))
    page.get_by_role("button", name="Sign in").click()
    assert "alice@example.com" in page.locator("header.site").inner_text()

    # a new topic from the web
    page.goto(base + "/lists/dev")
    page.get_by_role("link", name="New topic").click()
    page.get_by_label("Subject").fill("Planning the release")
    page.get_by_label("Your message (plain text)").fill("Shall we ship on Friday?")
    page.get_by_role("button", name="Start the topic").click()
    assert re.search(r"/lists/dev/topics/\d+", page.url)
    assert "Shall we ship on Friday?" in page.content()
    root = wait_for(lambda: next((p for p in site.export() if p["subject"] == "Planning the release"), None))
    bob_copy = with_id(sink, "bob@example.com", root["message_id"])
    with_id(sink, "carol@example.com", root["message_id"])
    assert not [m for m in mails(sink, "alice@example.com") if m["Message-ID"] == root["message_id"]]

    # bob answers by mail with Reply: his post lands in the same topic, under alice's
    reply_to = getaddresses([bob_copy["Reply-To"]])[0][1]
    raw = message(
        "Re: " + str(bob_copy["Subject"]),
        "<bob-answer@example.com>",
        sender="Bob <bob@example.com>",
        body="Friday is fine by me: walrus.\n",
        extra=f"In-Reply-To: {root['message_id']}\nReferences: {root['message_id']}",
    )
    send(site.config, raw, mail_from="bob@example.com", rcpts=[reply_to])
    bob = wait_for(lambda: site.posts_by_id().get("<bob-answer@example.com>"))
    assert (bob["topic_id"], bob["parent_message_id"]) == (root["topic_id"], root["message_id"])

    # alice answers bob from the web, quoting him
    page.reload()
    replies = page.locator("a", has_text=re.compile(r"^Reply$"))
    assert replies.count() == 2  # a Reply link under every post
    replies.nth(1).click()
    page.get_by_role("link", name="Quote the post").click()
    assert "> Friday is fine by me: walrus." in page.get_by_label("Your message (plain text)").input_value()
    page.get_by_label("Your message (plain text)").press("End")
    page.get_by_label("Your message (plain text)").type("\nGreat, Friday it is.")
    page.get_by_role("button", name="Send the reply").click()
    assert re.search(r"/lists/dev/topics/\d+", page.url) and "Great, Friday it is." in page.content()
    mine = wait_for(lambda: next((p for p in site.export() if "Great, Friday" in p["text"]), None))
    carol = with_id(sink, "carol@example.com", mine["message_id"])
    assert carol["In-Reply-To"] == "<bob-answer@example.com>"
    assert carol["References"].split() == [root["message_id"], "<bob-answer@example.com>"]

    # digests instead of single posts, and the topic muted
    page.goto(base + "/lists/dev/preferences")
    page.get_by_label("Delivery").select_option("digest")
    page.get_by_role("button", name="Save").click()
    shown = site.cli("members", "show", "dev", "alice@example.com").stdout
    assert "mode:      digest" in shown and "digest:    daily" in shown
    page.goto(base + f"/lists/dev/topics/{root['topic_id']}")
    page.get_by_role("button", name=re.compile("^Mute", re.I)).first.click()
    assert f"muted:     {root['topic_id']}" in site.cli("members", "show", "dev", "alice@example.com").stdout
    page.goto(base + "/lists/dev/preferences")
    assert "Planning the release" in page.locator("main").inner_text()

    # sign out: the forms post nothing any more
    page.get_by_role("button", name="Sign out").click()
    page.goto(base + "/lists/dev/new")
    assert "/signin" in page.url
    assert len(site.export()) == 3
