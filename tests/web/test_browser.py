"""End to end in a real headless Chromium (Debian's chromium, driven by Playwright).

A reader opens the list, sorts, pages, opens a topic, pages through it, unfolds a
quote (no script: <details>), checks the stylesheet loads under the CSP, asks to
watch the topic by email, and reads a hostile HTML mail without any script running; on a
phone-sized screen nothing scrolls sideways. Skipped where /usr/bin/chromium is
missing, except in CI (CI=true), where .ci/run installs it.
"""

from __future__ import annotations

import os
import re
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.helpers import message
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


def test_a_reader_browses_sorts_pages_and_watches_a_topic(site, web, recorder, browser) -> None:
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
        page.goto(web.base + "/")
        page.get_by_role("link", name="dev").click()
        assert page.get_by_role("heading", level=1).inner_text() == "dev"
        assert page.locator(".topic-row").count() == 3  # three per page in these tests

        page.get_by_role("link", name="Most replies").click()
        assert "sort=replies" in page.url
        assert page.locator(".topic-row h3 a").first.inner_text() == "Long discussion"
        page.get_by_role("link", name="Next →").click()
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
        assert [(c.kind, c.address) for c in recorder.calls] == [("watch", "reader@example.com")]

        page.goto(web.base + "/lists/dev")
        page.get_by_role("link", name="Quoting").click()
        quote = page.locator("details.quote blockquote")
        assert not quote.is_visible()  # folded, without any script
        page.get_by_text("Replying to Quiet Person").click()
        assert quote.is_visible() and "the quoted words" in quote.inner_text()

        page.goto(web.base + "/lists/dev")
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
