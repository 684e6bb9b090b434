"""Issue 12 item 4: bidirectional controls in names, subjects and titles stay where they are.

Every page is parsed the way a browser would: no bidi control may reach ``<title>`` or an
attribute, and text outside message bodies holds none; user text in headings, links and
meta lines is isolated in ``<bdi>`` (bodies in ``dir="auto"`` blocks), so RTL text
cannot reorder what follows it.
"""

from __future__ import annotations

from html.parser import HTMLParser

import pytest
from sqlalchemy import select

from mailforum.db.models import Topic
from mailforum.textsafe import BIDI_CONTROLS
from tests.helpers import message
from tests.web.kit import seed

CONTROLS = ["\u202e", "\u202b", "\u2067", "\u2068", "\u200f", "\u061c"]
VOID = {"area", "base", "br", "col", "embed", "hr", "img", "input", "link", "meta", "source", "track", "wbr"}


class Isolation(HTMLParser):
    """Where bidi controls and the user's words appear: in which element, isolated or not."""

    def __init__(self, words: list[str]) -> None:
        super().__init__()
        self.words, self.stack, self.problems = words, [], []
        self.isolated_words = 0

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        for name, value in attrs:
            if value and BIDI_CONTROLS.search(value):
                self.problems.append(f"bidi control in <{tag} {name}>")
        if tag not in VOID:
            self.stack.append((tag, tag == "bdi" or dict(attrs).get("dir") == "auto"))

    def handle_endtag(self, tag: str) -> None:
        while self.stack and self.stack.pop()[0] != tag:
            pass

    def handle_data(self, data: str) -> None:
        isolated = any(iso for _tag, iso in self.stack)
        inside = [t for t, _iso in self.stack]
        if BIDI_CONTROLS.search(data) and ("title" in inside or not isolated):
            self.problems.append(f"bidi control in <{'/'.join(inside)}>: {data!r}")
        if any(w in data for w in self.words) and "title" not in inside:
            if isolated:
                self.isolated_words += 1
            else:
                self.problems.append(f"user text not isolated in <{'/'.join(inside)}>: {data!r}")


def check(page: str, words: list[str]) -> Isolation:
    parser = Isolation(words)
    parser.feed(page)
    parser.close()
    return parser


@pytest.fixture
def bidi_site(site):
    site.create_list("rtl", title="Tit\u202ele", description="desc\u202e")
    raws = []
    for i, control in enumerate(CONTROLS):
        subject = f"Subj{control}ect{i}"
        raws.append(
            message(
                subject,
                f"<b{i}@example.com>",
                sender=f'"Nam{control}e{i} \u05e9\u05dc\u05d5\u05dd" <n{i}@example.com>',
                body=f"Bo{control}dy {i}\n",
                extra="MIME-Version: 1.0\nContent-Type: multipart/mixed; boundary=B",
            ).replace(
                f"Bo{control}dy {i}\r\n".encode(),
                (
                    f"--B\r\nContent-Type: text/plain; charset=utf-8\r\n\r\nBo{control}dy {i}\r\n"
                    f"--B\r\nContent-Type: text/plain\r\nContent-Disposition: attachment; "
                    f"filename*=utf-8''fi{control.encode().hex()}le{i}.txt\r\n\r\nx\r\n--B--\r\n"
                ).encode(),
            )
        )
    seed(site.config, site.db, raws, "rtl")
    return site


def test_bidi_controls_are_isolated_or_removed_on_every_page(bidi_site, web) -> None:
    with bidi_site.db.read_session() as session:
        topics = list(session.scalars(select(Topic.id).where(Topic.post_count > 0)))
    paths = ["/", "/lists/rtl", "/lists/rtl/archive", "/lists/rtl/join", "/lists/rtl/search?q=Bo"]
    paths += [f"/lists/rtl/topics/{t}" for t in topics] + [f"/lists/rtl/topics/{t}/watch" for t in topics]
    words = ["Title", "Subject", "Name", "\u05e9\u05dc\u05d5\u05dd"]
    isolated = 0
    with web.client() as http:
        for path in paths:
            page = http.get(path)
            assert page.status_code == 200, path
            found = check(page.text, words)
            assert found.problems == [], f"{path}: {found.problems[:5]}"
            isolated += found.isolated_words
        feed = http.get("/lists/rtl/feed.atom").text
        assert not BIDI_CONTROLS.search(feed.split("<content", 1)[0])
    assert isolated >= 3 * len(CONTROLS)
