"""End to end in a real headless Chromium (Debian's chromium, driven by Playwright).

A reader opens the list, sorts, pages, opens a topic, pages through it, unfolds a
quote (no script: <details>), checks the stylesheet loads under the CSP, asks to
watch the topic by email, finds the confirmation mail at the relay sink, follows its link
and confirms, and reads a hostile HTML mail without any script running; on a phone-sized
screen nothing scrolls sideways. ``serve``'s real web, delivery and housekeeping parts run,
with the relay pointed at a real SMTP sink. Skipped where /usr/bin/chromium is
missing, except in CI (CI=true), where .ci/run installs it.
"""

from __future__ import annotations

import email
import email.policy
import os
import re
from collections.abc import Iterator
from dataclasses import replace
from pathlib import Path

import pytest
from sqlalchemy import select

from mailforum.db.models import Member, Post, SubscriptionKind, TopicSubscription
from tests.helpers import RecordingSink, ServerThread, Site, message, wait_for
from tests.web.kit import seed, thread_messages
from tests.web.test_xss import PAYLOADS

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
    """``serve`` without ingest, processing and the scheduler: the web archive, and delivery
    through the relay (the sink). Yields the archive's base URL."""
    site.config = replace(site.config, relay=replace(site.config.relay, port=sink.port))
    running = ServerThread(site.config, ingest=False, process=False, scheduler=False)
    running.start()
    yield f"http://127.0.0.1:{site.config.web.port}"
    running.stop()


def confirmation_link(sink: RecordingSink, address: str) -> str:
    """The confirm link of the (only) mail the sink took for ``address``."""
    mails = wait_for(lambda: [t for t in sink.transactions if t.rcpt_tos == [address]], timeout=30)
    assert len(mails) == 1
    parsed = email.message_from_bytes(mails[0].data, policy=email.policy.default)
    body = parsed.get_body(("plain",))
    assert body is not None
    links = re.findall(r"https?://\S+/confirm/\S+", body.get_content())
    assert len(set(links)) == 1, links
    return links[0]


def test_a_reader_browses_sorts_pages_and_watches_a_topic(site, served, sink, browser) -> None:
    html = "<p>hostile page</p>" + "".join(PAYLOADS)
    seed(
        site.config,
        site.db,
        [
            *thread_messages(6, "long", "Long discussion"),
            message("Quiet one", "<q1@example.com>"),
            message("Quiet two", "<q2@example.com>"),
            message(
                "Quoting",
                "<q3@example.com>",
                body="Quiet Person wrote:\n> the quoted words\n\nMy answer.\n",
            ),
            message(
                "Hostile", "<h@example.com>", body=html, extra="MIME-Version: 1.0\nContent-Type: text/html"
            ),
        ],
    )
    context = browser.new_context(viewport={"width": 375, "height": 720})
    page = context.new_page()
    dialogs: list[str] = []
    page.on("dialog", lambda dialog: (dialogs.append(dialog.message), dialog.dismiss()))
    try:
        page.goto(served + "/")
        page.get_by_role("link", name="dev").click()
        assert page.get_by_role("heading", level=1).inner_text() == "dev"
        assert page.locator(".topic-row").count() == 3  # three per page in these tests

        page.get_by_role("link", name="Most replies").click()
        assert "sort=replies" in page.url
        assert page.locator(".topic-row h3 a").first.inner_text() == "Long discussion"
        page.get_by_role("link", name="Next →").first.click()  # paging at the top and the bottom
        assert "page=2" in page.url and page.locator(".topic-row").count() == 2

        page.get_by_role("link", name="Most replies").click()
        page.get_by_role("link", name="Long discussion").click()
        assert page.get_by_role("heading", level=1).inner_text().startswith("Long discussion")
        assert page.locator("article.post").count() == 4
        assert page.evaluate("document.documentElement.scrollWidth") <= 376  # readable on a phone
        page.get_by_role("link", name="Next →").first.click()
        assert page.locator("article.post").count() == 2 and "Reply number 5." in page.content()
        # The stylesheet loads under the CSP (style-src 'self'): the page is laid out by it.
        assert page.evaluate("getComputedStyle(document.body).maxWidth") == "768px"

        page.get_by_role("link", name="Watch this topic by email").click()
        page.get_by_label("Your email address").fill("reader@example.com")
        page.get_by_role("button", name="Watch this topic").click()
        assert page.get_by_role("heading", level=1).inner_text() == "Check your mail"
        # The confirmation mail reaches the relay; its link asks first (GET changes nothing),
        # the button confirms.
        link = confirmation_link(sink, "reader@example.com")
        assert link.startswith(served + "/confirm/")
        page.goto(link)
        assert page.get_by_role("heading", level=1).inner_text() == "Please confirm"
        assert watchers(site, "reader@example.com") == []
        page.get_by_role("button", name="Confirm").click()
        assert page.get_by_role("heading", level=1).inner_text() == "Confirmed"
        assert len(watchers(site, "reader@example.com")) == 1

        page.goto(served + "/lists/dev")
        page.get_by_role("link", name="Quoting").click()
        quote = page.locator("details.quote blockquote")
        assert quote.is_visible() and "the quoted words" in quote.inner_text()  # short: open
        page.get_by_text("Replying to Quiet Person").click()
        assert not quote.is_visible()  # folds, without any script

        page.goto(served + "/lists/dev")
        page.get_by_role("link", name="Hostile").click()
        assert "hostile page" in page.content()
        page.wait_for_timeout(300)  # give onload/onerror/autofocus handlers their chance
        assert dialogs == []
        assert (
            page.evaluate("document.querySelectorAll('script, iframe, object, embed, img, svg').length") == 0
        )
        assert not re.search(r"javascript:", page.evaluate("document.body.innerHTML"), re.IGNORECASE)
    finally:
        context.close()


def watchers(site: Site, address: str) -> list[int]:
    """The topics ``address`` watches on the list "dev"."""
    with site.db.read_session() as session:
        return list(
            session.scalars(
                select(TopicSubscription.topic_id)
                .join(Member, Member.id == TopicSubscription.member_id)
                .where(Member.address == address, TopicSubscription.kind == SubscriptionKind.WATCH.value)
            )
        )


@pytest.fixture
def served_wide(site: Site) -> Iterator[str]:
    """``serve``'s web alone, with 50 posts a page (the site fixture's pages hold 4)."""
    site.config = replace(site.config, web=replace(site.config.web, posts_per_page=50))
    running = ServerThread(site.config, ingest=False, process=False, scheduler=False, delivery=False)
    running.start()
    yield f"http://127.0.0.1:{site.config.web.port}"
    running.stop()


SIDE3 = "<side3@example.com>"


def test_real_mail_on_a_phone_and_a_desktop(site, served_wide, browser) -> None:
    """At 375 and 1280 px: the page never scrolls sideways, a patch's long line scrolls inside its
    own block, folded quotes and sub-threads unfold without script."""
    from tests.web.test_reading import MAIL, chain

    raws = [p.read_bytes() for p in sorted(MAIL.glob("*.eml"))]
    raws += chain("side", "<read-root@example.com>", 5, "Sid Side <sid@example.com>")
    raws += chain("main", "<read-root@example.com>", 2, "Mia Main <mia@example.com>")
    seed(site.config, site.db, raws)
    with site.db.read_session() as session:
        topic = session.scalars(
            select(Post.topic_id).where(Post.message_id == "<read-root@example.com>")
        ).one()
    shots = os.environ.get("MAILFORUM_SCREENSHOTS")
    for width in (375, 1280):
        context = browser.new_context(viewport={"width": width, "height": 800})
        page = context.new_page()
        try:
            page.goto(f"{served_wide}/lists/dev/topics/{topic}")
            if shots:
                page.screenshot(path=f"{shots}/topic-{width}.png", full_page=True)
            assert page.evaluate("document.documentElement.scrollWidth") <= width
            code = page.locator("pre.code", has_text="diff --git").first
            assert code.evaluate("e => getComputedStyle(e).whiteSpace") == "pre"
            assert "mono" in code.evaluate("e => getComputedStyle(e).fontFamily").lower()
            assert code.evaluate("e => e.scrollWidth > e.clientWidth")  # the long line scrolls inside
            code.evaluate("e => { e.scrollLeft = 400; }")
            assert code.evaluate("e => e.scrollLeft") > 0
            assert page.evaluate("document.documentElement.scrollWidth") <= width
            # The folded sub-thread unfolds on a click; its posts were in the page all along.
            fold = page.locator("details.subthread")
            assert fold.count() == 1 and not fold.locator("article.post").first.is_visible()
            fold.locator("summary").click()
            assert fold.locator("article.post").first.is_visible()
            # A link to a post inside a fold (a permalink, "replying to") opens the fold.
            with site.db.read_session() as session:
                inside = session.scalars(select(Post.id).where(Post.message_id == SIDE3)).one()
            page.goto(f"{served_wide}/lists/dev/posts/{inside}")
            assert page.locator(f"#p{inside}").is_visible()
            page.goto(f"{served_wide}/lists/dev/topics/{topic}")
            # The long quote of the Gmail reply is folded; a click shows it.
            long_quote = page.locator("details.quote:not([open])", has_text="8 lines").first.element_handle()
            assert not long_quote.query_selector("blockquote").is_visible()
            long_quote.query_selector("summary").click()
            assert long_quote.query_selector("blockquote").is_visible()
            assert page.evaluate("document.documentElement.scrollWidth") <= width
        finally:
            context.close()
