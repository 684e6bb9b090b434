"""Signing in by mail in a real headless Chromium: the cookies as a browser keeps them.

A visitor asks for a link, finds it at the relay sink (``serve``'s real delivery), opens
it (a page with a button), signs in, reads a private list, mutes a topic, opens the
same link in a second browser (it says so), and signs out. Skipped like test_browser.py.
"""

from __future__ import annotations

import email
import email.policy
import re

from sqlalchemy import select

from mailforum.db.models import Member, SubscriptionKind, TopicSubscription, Visibility
from tests.helpers import RecordingSink, message, wait_for
from tests.web.kit import seed
from tests.web.test_browser import browser, pytestmark, served  # noqa: F401 (fixtures, skip mark)

ALICE = "alice@example.com"


def signin_link(sink: RecordingSink, address: str) -> str:
    mails = wait_for(lambda: [t for t in sink.transactions if t.rcpt_tos == [address]], timeout=30)
    body = email.message_from_bytes(mails[-1].data, policy=email.policy.default).get_body(("plain",))
    assert body is not None
    (link,) = set(re.findall(r"https?://\S+/signin/[0-9a-z-]+", body.get_content()))
    return link


def test_a_visitor_signs_in_reads_a_private_list_mutes_and_signs_out(site, served, sink, browser) -> None:  # noqa: F811
    site.create_list("secret", visibility=Visibility.PRIVATE)
    site.add_members("secret", ALICE)
    site.add_members("dev", ALICE)
    seed(site.config, site.db, [message("Secret plans", "<s1@example.com>")], "secret")
    seed(site.config, site.db, [message("Open topic", "<o1@example.com>")])
    context = browser.new_context()
    other = browser.new_context()
    page = context.new_page()
    try:
        assert page.goto(served + "/lists/secret").status == 404
        page.goto(served + "/")
        page.get_by_role("link", name="Sign in").click()
        page.get_by_label("Your email address").fill(ALICE)
        page.get_by_role("button", name="Mail me a sign-in link").click()
        assert page.get_by_role("heading", level=1).inner_text() == "Check your mail"
        link = signin_link(sink, ALICE)

        # Forwarded to another browser, or opened by a scanner: it says so, and signs nobody in.
        elsewhere = other.new_page()
        elsewhere.goto(link)
        assert elsewhere.get_by_role("heading", level=1).inner_text() == "Another browser asked for this link"

        page.goto(link)
        assert ALICE in page.inner_text("main")
        page.get_by_role("button", name="Sign in", exact=True).click()
        assert page.url == served + "/account"
        assert page.get_by_role("heading", level=1).inner_text() == f"Signed in as {ALICE}"

        response = page.goto(served + "/lists/secret")
        assert response is not None and response.status == 200
        assert "Secret plans" in page.content()

        page.goto(served + "/lists/dev")
        page.get_by_role("link", name="Open topic").click()
        page.get_by_role("button", name="Mute").click()
        assert page.get_by_role("button", name="Unmute").is_visible()
        with site.db.read_session() as session:
            kinds = session.scalars(
                select(TopicSubscription.kind).join(Member).where(Member.address == ALICE)
            ).all()
        assert kinds == [SubscriptionKind.MUTE.value]

        page.get_by_role("button", name="Sign out").first.click()
        assert page.get_by_role("link", name="Sign in").is_visible()
        assert page.goto(served + "/lists/secret").status == 404
        # The used link is spent, here as anywhere.
        page.goto(link)
        assert page.get_by_role("heading", level=1).inner_text() == "This link was used already"
    finally:
        context.close()
        other.close()
