"""The owner journey in a real headless Chromium (Playwright), as issue 18 asks: a site admin
signs in by mail, creates a list, pastes 100 members with one bad line, fixes it, approves a
held post, bans a sender, and sees the charts. ``serve``'s web and delivery run; the sign-in
mail is read at a real SMTP sink. Skipped where /usr/bin/chromium is missing, except in CI."""

from __future__ import annotations

import email
import email.policy
import re

from sqlalchemy import select

from mailforum.core import roles, routing
from mailforum.db.models import Ban, Member, Post, PostStatus, utcnow
from mailforum.mail.parse import parse
from tests.helpers import DOMAIN, RecordingSink, message, wait_for
from tests.web.test_browser import browser, pytestmark, served  # noqa: F401 (fixtures, the skip)

ADMIN = "boss@example.com"


def signin_link(sink: RecordingSink, address: str) -> str:
    mails = wait_for(lambda: [t for t in sink.transactions if t.rcpt_tos == [address]], timeout=30)
    body = email.message_from_bytes(mails[-1].data, policy=email.policy.default).get_body(("plain",))
    assert body is not None
    return re.findall(r"https?://\S+/signin/\S+", body.get_content())[0]


def test_an_admin_runs_a_new_list_from_the_browser(site, served, sink, browser) -> None:  # noqa: F811
    with site.db.session() as session:
        roles.add_admins(session, [ADMIN])
    context = browser.new_context()
    page = context.new_page()
    try:
        page.goto(served + "/signin")
        page.get_by_label("Your email address").fill(ADMIN)
        page.get_by_role("button", name="Mail me a sign-in link").click()
        page.goto(signin_link(sink, ADMIN))
        page.get_by_role("button", name="Sign in").click()

        page.goto(served + "/admin")
        page.get_by_role("link", name="Create a list").click()
        page.get_by_label("Name").fill("garden")
        page.get_by_label("Title").fill("Gardeners")
        page.get_by_role("button", name="Create the list").click()
        assert page.get_by_role("heading", level=1).inner_text() == "Running Gardeners"

        page.get_by_role("link", name="Members").click()
        lines = [f"grower{i}@example.com" for i in range(99)] + ["not an address"]
        page.get_by_label("One address per line").fill("\n".join(lines))
        page.get_by_role("button", name="Add members").click()
        assert "Nothing was added" in page.content() and "not an address" in page.content()
        with site.db.read_session() as session:
            assert session.scalars(select(Member)).all() == []
        fixed = (
            page.get_by_label("One address per line")
            .input_value()
            .replace("not an address", "rose@example.com")
        )
        page.get_by_label("One address per line").fill(fixed)
        page.get_by_role("button", name="Add members").click()
        assert "Added 100 member(s)" in page.content()

        for subject, sender in (("May I ask?", "guest@example.net"), ("Cheap pills", "spam@bad.example")):
            raw = message(subject, f"<{sender}>", sender=sender, to=f"garden@{DOMAIN}")
            now = utcnow()
            with site.db.session() as session:
                routing.process(
                    session, site.config, parse(raw), raw, sender, (f"garden@{DOMAIN}",), None, now, now
                )
        page.get_by_role("link", name="Held posts").click()
        page.locator("article.held", has_text="May I ask?").get_by_role(
            "button", name="Approve", exact=True
        ).click()
        page.locator("article.held", has_text="Cheap pills").get_by_role(
            "button", name="Discard and ban the sender"
        ).click()
        assert "No posts are waiting." in page.content()
        page.get_by_role("link", name="Bans").click()
        assert "spam@bad.example" in page.content()

        page.get_by_role("link", name="Activity").click()
        assert page.locator("svg.chart").count() == 5
        page.get_by_role("link", name="Audit log").click()
        assert page.locator("table.audit tbody tr").count() >= 5
    finally:
        context.close()
    with site.db.read_session() as session:
        statuses = dict(session.execute(select(Post.subject, Post.status)).all())
        assert statuses == {"May I ask?": PostStatus.PUBLISHED.value}
        assert session.scalars(select(Ban.pattern)).all() == ["spam@bad.example"]
        assert len(session.scalars(select(Member)).all()) == 100
