"""Reading real list mail over real HTTP: quote shapes, patches, reflow, a post's own subject,
authors' standing and pages, folded sub-threads, page titles, neighbours, gzip.

The messages in tests/web/mail/ are hand-written in the shapes real clients send: a
72-column mutt post, a Gmail reply with its two-line attribution, Outlook's header
block, initials quoting, a git format-patch mail, format=flowed with indented code,
and a trailing quote.
"""

from __future__ import annotations

import gzip
import re
from collections.abc import Iterator
from dataclasses import replace
from pathlib import Path

import pytest
from sqlalchemy import select

from mailforum.db.models import Post, Topic
from tests.helpers import Site, message
from tests.web.kit import WebThread, seed

MAIL = Path(__file__).parent / "mail"


@pytest.fixture
def wide(site: Site) -> Iterator[WebThread]:
    """The archive with 50 posts a page (the site fixture's pages hold 4)."""
    site.config = replace(site.config, web=replace(site.config.web, posts_per_page=50))
    running = WebThread(site.config, site.db)
    running.start()
    yield running
    running.stop()


def topic_of(site: Site, message_id: str) -> int:
    with site.db.read_session() as session:
        return session.scalars(select(Post.topic_id).where(Post.message_id == message_id)).one()


def post_id(site: Site, message_id: str) -> int:
    with site.db.read_session() as session:
        return session.scalars(select(Post.id).where(Post.message_id == message_id)).one()


def article(page: str, pid: int) -> str:
    """One post's <article> out of a topic page."""
    start = page.index(f'id="p{pid}"')
    return page[start : page.index("</article>", start)]


def test_real_mail_shapes_read_as_people_wrote_them(site, wide) -> None:
    site.add_members("dev", "bob@example.com")
    seed(site.config, site.db, [p.read_bytes() for p in sorted(MAIL.glob("*.eml"))])
    topic = topic_of(site, "<read-root@example.com>")
    with wide.client() as http:
        page = http.get(f"/lists/dev/topics/{topic}").text
    root = article(page, post_id(site, "<read-root@example.com>"))
    # 72-column prose is one paragraph; the writer's own breaks (the sign-off) stay.
    assert re.search(
        r'<p class="prose">This first post is hard-wrapped at 72 columns the way mutt, Emacs and '
        r"most plain-text mail programs write it, so on a phone each line breaks again",
        root,
    )
    assert '<p class="prose">Thanks,\nAnn</p>' in root
    gmail = article(page, post_id(site, "<read-gmail@example.com>"))
    # The two-line Gmail attribution names the quote and is not shown; the quote with blank
    # lines inside is one bar, open (short, and the post goes on after it).
    assert "wrote:" not in gmail
    assert gmail.count('<details class="quote" open><summary>Replying to <bdi>Ann Author</bdi>') == 1
    # The long one is folded with its line count, and its nested level is a quote in the quote.
    assert (
        '<details class="quote"><summary>Replying to <bdi>Ann Author</bdi> <span class="count">· 8 lines'
        in gmail
    )
    assert "<summary><bdi>an earlier message</bdi> wrote <span" in gmail
    outlook = article(page, post_id(site, "<read-outlook@corp.example.com>"))
    assert '<details class="quote"><summary>Replying to <bdi>Bob Builder</bdi>' in outlook
    assert "Original Message" not in outlook and "Sent:" not in outlook
    initials = article(page, post_id(site, "<read-initials@example.com>"))
    assert '<details class="quote" open><summary>Replying to <bdi>Bob Builder</bdi>' in initials
    assert "BB&gt;" not in initials
    patch = article(page, post_id(site, "<read-patch@example.com>"))
    assert '<p class="subject"><bdi>[PATCH 2/7] web: set patches in monospace</bdi></p>' in patch
    assert '<pre class="code" tabindex="0">---\n templates/web/style.css | 3 ++-' in patch
    assert '<pre class="code" tabindex="0">diff --git a/templates/web/style.css' in patch
    assert '<pre class="signature" aria-label="Signature">2.43.0</pre>' in patch
    flowed = article(page, post_id(site, "<read-flowed@example.com>"))
    assert '<pre class="code" tabindex="0">    for (i = 0; i &lt; n; i++)\n        printf' in flowed
    assert "goes on with the next one, so a phone can fill its width" in flowed
    trailing = article(page, post_id(site, "<read-trailing@example.com>"))
    assert (
        '<details class="quote"><summary>Replying to <bdi>Ann Author</bdi> <span class="count">· 2 lines'
        in trailing
    )
    # Replies with the topic's subject do not repeat it.
    assert '<p class="subject">' not in gmail and '<p class="subject">' not in root


def test_authors_show_their_standing_and_link_to_their_page_without_addresses(site, wide) -> None:
    site.add_members("dev", "bob@example.com")
    seed(site.config, site.db, [p.read_bytes() for p in sorted(MAIL.glob("*.eml"))])
    seed(
        site.config,
        site.db,
        [message("Another", "<bob2@example.com>", sender="Bob Builder <bob@example.com>")],
    )
    topic = topic_of(site, "<read-root@example.com>")
    first = post_id(site, "<read-gmail@example.com>")
    with wide.client() as http:
        page = http.get(f"/lists/dev/topics/{topic}").text
        bob = article(page, first)
        assert f'<a href="/lists/dev/authors/{first}"><bdi>Bob Builder</bdi></a>' in bob
        assert re.search(r'member since <time datetime="[^"]+">\w{3} \d{4}</time> · 2 posts', bob)
        eve = article(page, post_id(site, "<read-patch@example.com>"))
        assert re.search(r"posting since <time [^>]+>Nov 2026</time> · 1 post<", eve)
        author = http.get(f"/lists/dev/authors/{first}")
        other = http.get(f"/lists/dev/authors/{post_id(site, '<bob2@example.com>')}", follow_redirects=False)
        missing = http.get("/lists/dev/authors/999999")
    assert author.status_code == 200
    assert (
        "<title>Posts by Bob Builder · Developers" in author.text
        or "<title>Posts by Bob Builder ·" in author.text
    )
    assert author.text.count('<h2 class="result">') == 2 and "Another" in author.text
    for text in (page, author.text):
        assert "bob@example.com" not in text and "ann@example.com" not in text
    # Any of their posts' ids leads to the one page; a post that is not there is 404.
    assert other.status_code == 301 and other.headers["location"] == f"/lists/dev/authors/{first}"
    assert missing.status_code == 404


def chain(prefix: str, parent: str, count: int, sender: str) -> list[bytes]:
    raws, above = [], parent
    for n in range(count):
        mid = f"<{prefix}{n}@example.com>"
        raws.append(
            message("Re: Branches", mid, sender=sender, body=f"{prefix} {n}\n", extra=f"In-Reply-To: {above}")
        )
        above = mid
    return raws


def test_a_long_side_branch_folds_as_n_replies_and_the_main_line_does_not(site, wide) -> None:
    raws = [message("Branches", "<br-root@example.com>", body="Root.\n")]
    raws += chain("side", "<br-root@example.com>", 5, "Sid Side <sid@example.com>")  # 1 reply + 4 under it
    raws += chain("main", "<br-root@example.com>", 7, "Mia Main <mia@example.com>")  # a later sibling
    seed(site.config, site.db, raws)
    topic = topic_of(site, "<br-root@example.com>")
    with wide.client() as http:
        page = http.get(f"/lists/dev/topics/{topic}").text
    folds = re.findall(
        r'<details class="subthread">\s*<summary class="depth-(\d)">([^<]*)<bdi>([^<]*)</bdi>', page
    )
    assert folds == [("2", "4 replies by ", "Sid Side")]
    # The folded posts are in the page (a <details>, no script), the main line is not folded.
    fold = page[
        page.index('<details class="subthread">') : page.index("</details>\n{% endif %}") if False else None
    ]
    assert f'id="p{post_id(site, "<side4@example.com>")}"' in fold
    assert page.count('<details class="subthread">') == 1
    # Depths beyond 3 share one indent.
    assert "depth-4" not in page and 'class="post depth-3"' in page


def test_long_topics_page_with_titles_paging_at_both_ends_neighbours_and_jump_to_latest(site, web) -> None:
    raws = [message("Long", "<l0@example.com>")]
    raws += [
        message("Re: Long", f"<l{n}@example.com>", extra=f"In-Reply-To: <l{n - 1}@example.com>")
        for n in range(1, 6)
    ]
    seed(site.config, site.db, [message("Older one", "<o@example.com>")])
    seed(site.config, site.db, raws)
    seed(site.config, site.db, [message("Newer one", "<n@example.com>")])
    with site.db.read_session() as session:
        ids = {t.subject: t.id for t in session.scalars(select(Topic))}
    latest = post_id(site, "<l5@example.com>")
    with web.client() as http:
        one = http.get(f"/lists/dev/topics/{ids['Long']}").text
        two = http.get(f"/lists/dev/topics/{ids['Long']}", params={"page": 2}).text
    assert "<title>Long · " in one and "<title>Long (page 2 of 2) · " in two
    assert one.count('<nav class="paging"') == 2 and two.count('<nav class="paging"') == 2
    assert f'<a href="/lists/dev/posts/{latest}">Jump to the latest post</a>' in one
    # Neighbours in the list page's order (latest activity): ties by id, so newer is later.
    assert (
        f'rel="prev" href="/lists/dev/topics/{ids["Newer one"]}">← Newer topic: <bdi>Newer one</bdi>' in one
    )
    assert (
        f'rel="next" href="/lists/dev/topics/{ids["Older one"]}">Older topic: <bdi>Older one</bdi> →' in one
    )


def test_pages_feeds_and_the_stylesheet_are_gzipped_and_etags_still_answer_304(site, web) -> None:
    seed(site.config, site.db, [p.read_bytes() for p in sorted(MAIL.glob("*.eml"))])
    topic = topic_of(site, "<read-root@example.com>")
    paths = ["/", "/lists/dev", f"/lists/dev/topics/{topic}", "/lists/dev/feed.atom", "/static/style.css"]
    with (
        web.client(headers={"accept-encoding": "gzip"}) as http,
        web.client(headers={"accept-encoding": "identity"}) as plain,
    ):
        for path in paths:
            zipped = http.get(path)
            raw = plain.get(path)
            assert zipped.status_code == raw.status_code == 200, path
            assert zipped.headers["content-encoding"] == "gzip", path
            assert "accept-encoding" in zipped.headers["vary"].lower(), path
            assert "content-encoding" not in raw.headers, path
            assert zipped.content == raw.content  # httpx decodes: the same page
            assert int(zipped.headers["content-length"]) < len(raw.content), path
            # One weak ETag names both encodings: a conditional GET answers 304 either way.
            assert zipped.headers["etag"] == raw.headers["etag"] and zipped.headers["etag"].startswith('W/"')
            again = http.get(path, headers={"if-none-match": zipped.headers["etag"]})
            assert again.status_code == 304 and again.content == b"", path
            assert "accept-encoding" in again.headers["vary"].lower(), path
            assert plain.get(path, headers={"if-none-match": zipped.headers["etag"]}).status_code == 304
        # The bytes on the wire are gzip (not only what httpx decoded).
        with http.stream("GET", f"/lists/dev/topics/{topic}") as streamed:
            wire = b"".join(streamed.iter_raw())
        assert gzip.decompress(wire).startswith(b"<!doctype html>")


def test_a_pasted_document_folds_after_its_first_screens(site, web) -> None:
    document = "\n\n".join(
        f"Article {n}. The government shall make no law about paragraph {n}." for n in range(300)
    )
    seed(site.config, site.db, [message("Long read", "<doc@example.com>", body="Read this:\n\n" + document)])
    with web.client() as http:
        page = http.get(f"/lists/dev/topics/{topic_of(site, '<doc@example.com>')}").text
    assert page.count('<details class="more"><summary>Read the rest of this post') == 1
    folded = page[page.index('<details class="more">') :]
    assert "Article 0." not in folded and "Article 299." in folded


def test_standings_are_remembered_for_their_time_to_live_then_read_again(site) -> None:
    from mailforum.core import lists
    from mailforum.web.archive_pages import Standings

    now = [1000.0]
    remembered = Standings(ttl=300, clock=lambda: now[0])
    seed(site.config, site.db, [message("One", "<s1@example.com>", sender="Sam <sam@example.com>")])

    def posts() -> int | None:
        with site.db.read_session() as session:
            found = remembered.get(
                session, lists.get_list(session, "dev"), ["sam@example.com", "nobody@example.com"]
            )
        assert "nobody@example.com" not in found  # no shown post: no standing, no author page
        return found["sam@example.com"].posts

    assert posts() == 1
    seed(site.config, site.db, [message("Two", "<s2@example.com>", sender="Sam <sam@example.com>")])
    now[0] += 299
    assert posts() == 1  # within the time to live: the page shows what it showed
    now[0] += 2
    assert posts() == 2
