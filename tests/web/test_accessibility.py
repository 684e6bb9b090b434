"""Structure a screen reader relies on, on every kind of page: language, landmarks, one h1,
headings without skipped levels, a label for every field, the viewport for phones."""

from __future__ import annotations

from html.parser import HTMLParser

from sqlalchemy import select

from mailforum.db.models import Post, Topic
from tests.helpers import message
from tests.web.kit import seed, thread_messages


class Outline(HTMLParser):
    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)
        self.lang = ""
        self.viewport = False
        self.landmarks: set[str] = set()
        self.headings: list[int] = []
        self.labels: set[str] = set()
        self.fields: list[str] = []

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        a = dict(attrs)
        if tag == "html":
            self.lang = a.get("lang") or ""
        if tag == "meta" and a.get("name") == "viewport":
            self.viewport = True
        if tag in ("main", "header", "footer", "nav"):
            self.landmarks.add(tag)
        if len(tag) == 2 and tag[0] == "h" and tag[1].isdigit():
            self.headings.append(int(tag[1]))
        if tag == "label" and a.get("for"):
            self.labels.add(a["for"] or "")
        if tag in ("input", "select", "textarea") and a.get("type") != "hidden":
            self.fields.append(a.get("id") or "")


def test_every_page_has_a_readable_structure(site, web) -> None:
    seed(site.config, site.db, [*thread_messages(6), message("Other", "<o@example.com>")])
    with site.db.read_session() as session:
        topic = session.scalar(select(Topic.id).where(Topic.post_count > 1))
        post = session.scalar(select(Post.id).limit(1))
    paths = [
        "/",
        "/lists/dev",
        f"/lists/dev/topics/{topic}",
        f"/lists/dev/topics/{topic}?page=2",
        "/lists/dev/search",
        "/lists/dev/search?q=reply",
        "/lists/dev/archive",
        "/lists/dev/join",
        f"/lists/dev/topics/{topic}/watch",
        f"/lists/dev/authors/{post}",
        "/lists/nope",
    ]
    with web.client(follow_redirects=True) as http:
        paths.append(str(http.get(f"/lists/dev/posts/{post}").url.raw_path, "ascii"))
        for path in paths:
            outline = Outline()
            outline.feed(http.get(path).text)
            assert outline.lang == "en" and outline.viewport, path
            assert {"main", "header", "footer", "nav"} <= outline.landmarks, path
            assert outline.headings.count(1) == 1 and outline.headings[0] == 1, path
            for before, after in zip(outline.headings, outline.headings[1:], strict=False):
                assert after <= before + 1, f"{path}: h{before} then h{after}"
            assert all(f and f in outline.labels for f in outline.fields), f"{path}: a field without a label"
