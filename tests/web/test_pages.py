"""The archive over real HTTP: lists, topics, posts, paging, sorting, feeds, downloads, caching."""

from __future__ import annotations

import datetime as dt
import mailbox
import re
import xml.etree.ElementTree as ET
from email import message_from_bytes
from pathlib import Path

from sqlalchemy import select, update

from mailforum.db.models import MailingList, Post, Topic, Visibility
from tests.helpers import message
from tests.web.kit import seed, thread_messages

ATOM = "{http://www.w3.org/2005/Atom}"


def topic_ids(site) -> dict[str, int]:
    with site.db.read_session() as session:
        return {t.subject: t.id for t in session.scalars(select(Topic).where(Topic.merged_into_id.is_(None)))}


def titles(html: str) -> list[str]:
    return re.findall(r'<h3><a href="/lists/dev/topics/\d+"><bdi>([^<]*)</bdi></a>', html)


def test_index_shows_public_lists_with_counts_and_hides_private_ones(site, web) -> None:
    from mailforum.db.models import Visibility

    site.create_list("secret", description="Nobody sees this", visibility=Visibility.PRIVATE)
    site.add_members("dev", "ann@example.com", "bob@example.com")
    seed(site.config, site.db, thread_messages(3))
    with web.client() as http:
        page = http.get("/")
    assert page.status_code == 200
    assert 'href="/lists/dev"' in page.text and "Developers talk here" in page.text
    assert "2 members · 1 topic · 3 posts" in page.text
    assert "secret" not in page.text and "Nobody sees this" not in page.text


def test_topics_sort_by_activity_newest_and_replies_and_page(site, web) -> None:
    seed(site.config, site.db, [*thread_messages(4, "a", "Alpha"), message("Beta", "<b0@example.com>")])
    seed(site.config, site.db, [message("Gamma", "<g0@example.com>"), *thread_messages(2, "d", "Delta")])
    ids = topic_ids(site)
    with site.db.session() as session:  # a reply to Alpha arrives last: it is the latest activity
        later = dt.datetime.now(dt.UTC) + dt.timedelta(hours=1)
        session.execute(update(Topic).where(Topic.id == ids["Alpha"]).values(last_post_at=later))
    with web.client() as http:
        latest = http.get("/lists/dev").text
        newest = http.get("/lists/dev", params={"sort": "newest"}).text
        replies = http.get("/lists/dev", params={"sort": "replies"}).text
        second = http.get("/lists/dev", params={"sort": "newest", "page": 2}).text
        beyond = http.get("/lists/dev", params={"sort": "newest", "page": 99})
        junk = http.get("/lists/dev", params={"sort": "<script>", "page": "x"})
    assert titles(newest) == ["Delta", "Gamma", "Beta"]  # 3 per page
    assert titles(second) == ["Alpha"]
    assert titles(replies)[:2] == ["Alpha", "Delta"]
    assert titles(latest)[0] == "Alpha" and len(titles(latest)) == 3
    assert "3 replies" in replies and "4 participants" in replies
    assert 'rel="next" href="/lists/dev?sort=newest&amp;page=2"' in newest
    assert 'aria-current="page"' in second and 'rel="prev"' in second
    assert beyond.status_code == 200 and titles(beyond.text) == ["Alpha"]
    assert junk.status_code == 200 and "<script>" not in junk.text


def test_topic_shows_posts_in_thread_order_with_replies_and_permalinks(site, web) -> None:
    raws = [
        message("Plan", "<r@example.com>", body="Root.\n"),
        message(
            "Re: Plan", "<a@example.com>", sender="Bo <bo@example.com>", extra="In-Reply-To: <r@example.com>"
        ),
        message(
            "Re: Plan", "<b@example.com>", sender="Cy <cy@example.com>", extra="In-Reply-To: <r@example.com>"
        ),
        message(
            "Re: Plan",
            "<c@example.com>",
            sender="Di <di@example.com>",
            body="Bo Builder wrote:\n> Root.\n\nAnswer to Bo.\n-- \nDi's signature\n",
            extra="In-Reply-To: <a@example.com>",
        ),
    ]
    seed(site.config, site.db, raws)
    topic = topic_ids(site)["Plan"]
    with web.client() as http:
        page = http.get(f"/lists/dev/topics/{topic}").text
        with site.db.read_session() as session:
            posts = {p.message_id: p.id for p in session.scalars(select(Post))}
        link = http.get(f"/lists/dev/posts/{posts['<c@example.com>']}")
    order = re.findall(r'<h2 id="h\d+" class="author">(?:<a href="[^"]*">)?<bdi>([^<]*)</bdi>', page)
    assert order == ["Ann Author", "Bo", "Di", "Cy"]  # Di answers Bo, so Di comes under Bo, before Cy
    assert "2 replies" in page  # under the root
    assert "<summary>Replying to <bdi>Bo Builder</bdi> <span" in page
    assert '<pre class="signature" aria-label="Signature">Di&#39;s signature</pre>' in page
    assert f'replying to <a href="/lists/dev/posts/{posts["<a@example.com>"]}"><bdi>Bo</bdi></a>' in page
    assert link.status_code == 302
    assert link.headers["location"] == f"/lists/dev/topics/{topic}#p{posts['<c@example.com>']}"
    mailto = re.search(r'href="(mailto:dev@lists\.example\.org\?[^"]+)"', page)
    assert mailto and "subject=Re%3A%20Plan" in mailto.group(1) and "In-Reply-To=%3C" in mailto.group(1)


def test_long_topics_are_paged_and_permalinks_land_on_the_right_page(site, web) -> None:
    seed(site.config, site.db, thread_messages(10))
    topic = topic_ids(site)["A long topic"]
    with site.db.read_session() as session:
        last = session.scalar(select(Post.id).where(Post.message_id == "<t9@example.com>"))
    with web.client() as http:
        first = http.get(f"/lists/dev/topics/{topic}").text
        third = http.get(f"/lists/dev/topics/{topic}", params={"page": 3}).text
        link = http.get(f"/lists/dev/posts/{last}")
    assert "The root post." in first and "Reply number 4." not in first
    assert "Reply number 8." in third and "Reply number 9." in third
    assert link.headers["location"] == f"/lists/dev/topics/{topic}?page=3#p{last}"


def test_a_reply_to_a_message_never_received_says_so(site, web) -> None:
    seed(
        site.config,
        site.db,
        [message("Re: Lost", "<child@example.com>", extra="In-Reply-To: <gone@example.com>")],
    )
    topic = topic_ids(site)["Re: Lost"]
    with web.client() as http:
        page = http.get(f"/lists/dev/topics/{topic}").text
    assert "replying to a message we never received" in page
    assert "gone@example.com" not in page


def test_merged_topics_redirect_old_links(site, web) -> None:
    seed(site.config, site.db, [message("One", "<m1@example.com>"), message("Two", "<m2@example.com>")])
    ids = topic_ids(site)
    seed(
        site.config,
        site.db,
        [message("Re: both", "<m3@example.com>", extra="References: <m1@example.com> <m2@example.com>")],
    )
    with web.client() as http:
        old = http.get(f"/lists/dev/topics/{ids['Two']}")
    assert old.status_code == 301 and old.headers["location"] == f"/lists/dev/topics/{ids['One']}"


def test_author_addresses_never_appear_raw(site, web) -> None:
    seed(
        site.config,
        site.db,
        [
            message(
                "Hi", "<h1@example.com>", sender="nameless@example.com", body="mail me at zed@example.net\n"
            ),
            message(
                "Re: Hi",
                "<h2@example.com>",
                sender="Ann <ann@example.com>",
                extra="In-Reply-To: <h1@example.com>",
            ),
        ],
    )
    topic = topic_ids(site)["Hi"]
    with web.client() as http:
        pages = [
            http.get(p).text
            for p in ("/", "/lists/dev", f"/lists/dev/topics/{topic}", "/lists/dev/feed.atom")
        ]
        pages.append(http.get("/lists/dev/search", params={"q": "mail"}).text)
    for text in pages:
        assert (
            "nameless@example.com" not in text
            and "zed@example.net" not in text
            and "ann@example.com" not in text
        )
    assert "n…@example.com" in pages[2] and "z…@example.net" in pages[2]


def test_bad_dates_and_empty_bodies_render(site, web) -> None:
    """RELIABILITY B43 (garbage dates) and B44 (empty, whitespace, attachment-only, HTML-only, quote-only)."""
    attachment_only = (
        "MIME-Version: 1.0\nContent-Type: multipart/mixed; boundary=XX\n",
        "--XX\nContent-Type: application/zip\nContent-Disposition: attachment; filename=bomb.zip\n"
        "Content-Transfer-Encoding: base64\n\nUEsDBBQAAAAIAA==\n--XX--\n",
    )
    raws = [
        message("Empty", "<e1@example.com>", body=""),
        message("Blank", "<e2@example.com>", body="   \n\n \n"),
        message("Quote only", "<e3@example.com>", body="> just a quote\n"),
        message("Attached", "<e4@example.com>", body=attachment_only[1], extra=attachment_only[0]),
        message(
            "Html only", "<e5@example.com>", body="<p>Only <b>HTML</b></p>", extra="Content-Type: text/html"
        ),
    ]
    raws = [
        r.replace(b"Date: Thu, 26 Nov 2026 10:00:00 +0000", b"Date: Fri, 31 Feb 9999 99:99:99 +9999")
        for r in raws
    ]
    seed(site.config, site.db, raws)
    ids = topic_ids(site)
    with web.client() as http:
        listing = http.get("/lists/dev")
        pages = {name: http.get(f"/lists/dev/topics/{tid}") for name, tid in ids.items()}
    assert listing.status_code == 200
    assert all(p.status_code == 200 for p in pages.values())
    assert (
        "(This message has no text.)" in pages["Empty"].text
        and "(This message has no text.)" in pages["Blank"].text
    )
    assert "<summary>Replying to <bdi>an earlier message</bdi> <span" in pages["Quote only"].text
    assert "bomb.zip" in pages["Attached"].text
    assert "<p>Only <b>HTML</b></p>" in pages["Html only"].text


def test_attachments_download_with_safe_headers(site, web) -> None:
    raw = message(
        "Files",
        "<f@example.com>",
        extra="MIME-Version: 1.0\nContent-Type: multipart/mixed; boundary=B",
        body=(
            "--B\nContent-Type: text/plain\n\nSee attached.\n"
            "--B\nContent-Type: text/html; name=evil.html\n"
            'Content-Disposition: attachment; filename="../evil\\".html"\n\n'
            "<script>alert(1)</script>\n"
            "--B\nContent-Type: application/zip\nContent-Disposition: attachment; filename=bomb.zip\n"
            "Content-Transfer-Encoding: base64\n\nUEsDBBQAAAAIAA==\n--B--\n"
        ),
    )
    seed(site.config, site.db, [raw])
    with site.db.read_session() as session:
        post = session.scalar(select(Post.id).where(Post.message_id == "<f@example.com>"))
    with web.client() as http:
        html = http.get(f"/lists/dev/posts/{post}/attachments/0/x")
        zipped = http.get(f"/lists/dev/posts/{post}/attachments/1/bomb.zip")
        missing = http.get(f"/lists/dev/posts/{post}/attachments/2/none")
    assert html.status_code == 200 and html.content == b"<script>alert(1)</script>"
    assert html.headers["content-type"] == "application/octet-stream"
    assert html.headers["content-disposition"].startswith('attachment; filename="')
    assert "/" not in html.headers["content-disposition"].split(";")[1]
    assert html.headers["x-content-type-options"] == "nosniff"
    assert "sandbox" in html.headers["content-security-policy"]
    assert (
        zipped.headers["content-type"] == "application/zip"
        and zipped.content == b"PK\x03\x04\x14\x00\x00\x00\x08\x00"
    )
    # RELIABILITY B40: an archive is served as the opaque bytes it came as, never unpacked or shown.
    assert zipped.headers["content-disposition"].startswith('attachment; filename="bomb.zip"')
    assert zipped.headers["x-content-type-options"] == "nosniff"
    assert missing.status_code == 404
    # Cached only with revalidation: a conditional GET is answered 304 while the list is
    # public, and 404 as soon as it is private (no shared cache keeps serving it for a day).
    assert zipped.headers["cache-control"] == "public, max-age=0, must-revalidate"
    etag = zipped.headers["etag"]
    with web.client() as http:
        again = http.get(f"/lists/dev/posts/{post}/attachments/1/bomb.zip", headers={"If-None-Match": etag})
        assert again.status_code == 304 and again.headers["etag"] == etag and not again.content
        with site.db.session() as session:
            dev = session.scalars(select(MailingList).where(MailingList.name == "dev")).one()
            dev.visibility = Visibility.PRIVATE.value
        hidden = http.get(f"/lists/dev/posts/{post}/attachments/1/bomb.zip", headers={"If-None-Match": etag})
    assert hidden.status_code == 404


def test_atom_feeds_are_valid_xml_with_escaped_text(site, web) -> None:
    seed(site.config, site.db, [message("<b>Bold</b> & co", "<x@example.com>", body="a < b & c\n")])
    topic = topic_ids(site)["<b>Bold</b> & co"]
    with web.client() as http:
        feeds = [http.get("/lists/dev/feed.atom"), http.get(f"/lists/dev/topics/{topic}/feed.atom")]
    for feed in feeds:
        assert feed.headers["content-type"].startswith("application/atom+xml")
        root = ET.fromstring(feed.content)
        entries = root.findall(f"{ATOM}entry")
        assert len(entries) == 1
        assert entries[0].find(f"{ATOM}title").text == "<b>Bold</b> & co"
        assert entries[0].find(f"{ATOM}content").text.strip() == "a < b & c"
        assert (
            entries[0]
            .find(f"{ATOM}link")
            .get("href")
            .startswith(site.config.site.base_url + "/lists/dev/posts/")
        )


def test_a_post_with_control_characters_does_not_break_the_feeds(site, web) -> None:
    """A form feed (patches, Emacs), ANSI colours or a bell in one post must not make the whole
    feed ill-formed XML, which feed readers drop entirely."""
    body = "page one\x0cpage two \x1b[31mred\x1b[0m bell\x07 \ufffe end\n"
    seed(site.config, site.db, [message("Controls \x1b[1m", "<ctl@example.com>", body=body)])
    topic = next(iter(topic_ids(site).values()))
    with web.client() as http:
        feeds = [http.get("/lists/dev/feed.atom"), http.get(f"/lists/dev/topics/{topic}/feed.atom")]
        page = http.get(f"/lists/dev/topics/{topic}")
    assert page.status_code == 200 and "page two" in page.text
    for feed in feeds:
        root = ET.fromstring(feed.content)  # well-formed
        (entry,) = root.findall(f"{ATOM}entry")
        text = entry.find(f"{ATOM}content").text
        assert text.startswith("page one page two") and "red" in text and text.strip().endswith("end")


def test_mbox_downloads_per_topic_and_per_month(site, web, tmp_path: Path) -> None:
    seed(
        site.config,
        site.db,
        [*thread_messages(3), message("Other", "<o@example.com>", body="From here on\n")],
    )
    topic = topic_ids(site)["A long topic"]
    with site.db.read_session() as session:
        month = session.scalar(select(Post.received_at).limit(1))
    with web.client() as http:
        per_topic = http.get(f"/lists/dev/topics/{topic}/topic.mbox")
        archive = http.get("/lists/dev/archive").text
        per_month = http.get(f"/lists/dev/mbox/{month:%Y-%m}.mbox")
        empty = http.get("/lists/dev/mbox/1999-01.mbox")
        bad = http.get("/lists/dev/mbox/2026-13.mbox")
    assert f'href="/lists/dev/mbox/{month:%Y-%m}.mbox"' in archive and "4 posts" in archive
    assert per_topic.headers["content-disposition"].startswith("attachment;")
    for response, expected in ((per_topic, 3), (per_month, 4)):
        path = tmp_path / "x.mbox"
        path.write_bytes(response.content)
        box = mailbox.mbox(str(path))
        try:
            ids = [m["Message-ID"] for m in box]
        finally:
            box.close()
        assert len(ids) == expected
    assert b"\n>From here on" in per_month.content
    assert message_from_bytes(per_topic.content.split(b"\n", 1)[1])["Message-ID"] == "<t0@example.com>"
    assert empty.status_code == 200 and empty.content == b""
    assert bad.status_code == 404


def test_search_finds_posts_with_all_words(site, web) -> None:
    seed(
        site.config,
        site.db,
        [
            message("Harbour", "<s1@example.com>", body="The marmalade-harbour opens at dawn.\n"),
            message("Orchard", "<s2@example.com>", body="Pelican orchard, no harbour here.\n"),
        ],
    )
    with web.client() as http:
        both = http.get("/lists/dev/search", params={"q": "harbour"}).text
        one = http.get("/lists/dev/search", params={"q": "marmalade HARBOUR"}).text
        none = http.get("/lists/dev/search", params={"q": "marmalade pelican"}).text
        hostile = http.get("/lists/dev/search", params={"q": '"<script>alert(1)</script> OR *'})
    assert both.count('<li>\n    <h3><a href="/lists/dev/posts/') == 2
    assert "<mark>marmalade</mark>-<mark>harbour</mark>" in one and "Pelican" not in one
    assert "No posts contain all of these words." in none
    assert hostile.status_code == 200 and "<script>alert" not in hostile.text


def test_archive_pages_carry_caching_and_security_headers(site, web) -> None:
    seed(site.config, site.db, thread_messages(2))
    topic = topic_ids(site)["A long topic"]
    with web.client() as http:
        for path in (
            "/",
            "/lists/dev",
            f"/lists/dev/topics/{topic}",
            "/lists/dev/feed.atom",
            "/static/style.css",
        ):
            first = http.get(path)
            assert first.status_code == 200, path
            assert first.headers["etag"].startswith('W/"'), path
            again = http.get(path, headers={"if-none-match": first.headers["etag"]})
            assert again.status_code == 304 and again.content == b"", path
            assert "default-src 'none'" in first.headers["content-security-policy"]
            assert first.headers["x-content-type-options"] == "nosniff"
        page = http.get(f"/lists/dev/topics/{topic}")
        assert "last-modified" in page.headers
        since = http.get(
            f"/lists/dev/topics/{topic}", headers={"if-modified-since": page.headers["last-modified"]}
        )
        assert since.status_code == 304
        missing = http.get("/lists/nope")
        assert missing.status_code == 404 and "content-security-policy" in missing.headers


def test_search_follows_placeholders_filled_later_and_skips_held_posts(site, web) -> None:
    from mailforum.db.models import PostingPolicy

    seed(
        site.config,
        site.db,
        [message("Re: Early", "<child@example.com>", extra="In-Reply-To: <late@example.com>")],
    )
    seed(site.config, site.db, [message("Early", "<late@example.com>", body="quixotic zeppelin\n")])
    site.create_list("mod", policy=PostingPolicy.MODERATED)
    with web.client() as http:
        found = http.get("/lists/dev/search", params={"q": "zeppelin"}).text
    assert found.count('<li>\n    <h3><a href="/lists/dev/posts/') == 1
    with site.db.session() as session:  # a held post is not in the archive, nor in its search
        session.execute(update(Post).where(Post.message_id == "<late@example.com>").values(status="held"))
    with web.client() as http:
        hidden = http.get("/lists/dev/search", params={"q": "zeppelin"}).text
    assert "No posts contain all of these words." in hidden


def test_the_text_part_is_preferred_to_the_html_part(site, web) -> None:
    """RELIABILITY B41: with both parts, the archive shows the text one."""
    raw = message(
        "Both",
        "<alt@example.com>",
        extra="MIME-Version: 1.0\nContent-Type: multipart/alternative; boundary=A",
        body=(
            "--A\nContent-Type: text/plain; charset=utf-8\n\nthe plain version\n"
            '--A\nContent-Type: text/html; charset=utf-8\n\n<p>the <b>html</b> version<img src="https://t.example/x"></p>\n'
            "--A--\n"
        ),
    )
    seed(site.config, site.db, [raw])
    with web.client() as http:
        page = http.get(f"/lists/dev/topics/{topic_ids(site)['Both']}").text
    assert "the plain version" in page and "html</b> version" not in page and "t.example" not in page


def test_a_database_that_fails_gets_a_polite_503(site, tmp_path) -> None:
    from dataclasses import replace

    from mailforum.config import DatabaseConfig
    from mailforum.db.session import Database
    from tests.web.kit import WebThread

    broken = Database(f"sqlite:///{tmp_path}/missing/dir/x.db")
    running = WebThread(replace(site.config, database=DatabaseConfig(url=broken.url)), broken)
    running.start()
    try:
        with running.client() as http:
            page = http.get("/lists/dev")
    finally:
        running.stop()
        broken.dispose()
    assert page.status_code == 503 and page.headers["retry-after"] == "30"
    assert "The archive is busy" in page.text and "Traceback" not in page.text


def test_search_results_are_paged(site, web) -> None:
    seed(
        site.config,
        site.db,
        [message(f"Kumquat {i}", f"<k{i}@example.com>", body="kumquat\n") for i in range(5)],
    )
    with web.client() as http:
        first = http.get("/lists/dev/search", params={"q": "kumquat"}).text
        second = http.get("/lists/dev/search", params={"q": "kumquat", "page": 2}).text
    assert first.count("<mark>kumquat</mark>") == 3 and 'rel="next"' in first and 'rel="prev"' not in first
    assert second.count("<mark>kumquat</mark>") == 2 and 'rel="prev"' in second and 'rel="next"' not in second


def test_index_and_topic_rows_show_activity_starter_tags_and_each_post_its_own_reply_link(site, web) -> None:
    seed(
        site.config,
        site.db,
        [
            message("[dev][ANN] Release 2", "<rel@example.com>", sender="Rita <rita@example.com>"),
            message(
                "Re: [dev][ANN] Release 2",
                "<rel2@example.com>",
                sender="Sam <sam@example.com>",
                extra="In-Reply-To: <rel@example.com>",
            ),
        ],
    )
    topic = topic_ids(site)["[dev][ANN] Release 2"]
    with site.db.read_session() as session:
        last = session.scalar(select(Topic.last_post_at).where(Topic.id == topic))
    stamp = last.astimezone(dt.UTC).isoformat(timespec="seconds").replace("+00:00", "Z")
    with web.client() as http:
        index = http.get("/").text
        listing = http.get("/lists/dev").text
        page = http.get(f"/lists/dev/topics/{topic}").text
    assert f'last activity <time datetime="{stamp}">' in index
    assert titles(listing) == ["Release 2"]  # the list's own tag left out of the title
    assert (
        '<span class="tag"><bdi>ANN</bdi></span>' in listing
        and '<span class="tag"><bdi>dev</bdi></span>' not in listing
    )
    assert "by <bdi>Rita</bdi> ·" in listing and "1 reply ·" in listing and "2 participants ·" in listing
    assert f'last post <time datetime="{stamp}">' in listing
    # Each post's "Reply by email" answers that post: its own Message-ID in In-Reply-To.
    links = re.findall(r'<a href="(mailto:[^"]+)">Reply by email</a>', page)
    assert [re.search(r"In-Reply-To=([^&]+)", u).group(1) for u in links] == [
        "%3Crel%40example.com%3E",
        "%3Crel2%40example.com%3E",
    ]
    assert all("subject=Re%3A%20%5Bdev%5D%5BANN%5D%20Release%202" in u for u in links)
    whole = re.search(r'<a class="button" href="(mailto:[^"]+)">Reply by email</a>', page).group(1)
    assert whole.endswith("In-Reply-To=%3Crel2%40example.com%3E")  # the topic's: under its last post


def test_dates_from_the_year_9999_or_1900_or_none_do_not_move_topics(site, web) -> None:
    """RELIABILITY B43: the receive time orders topics and feeds; the Date header stays in the raw."""
    dates = {
        "Normal": "Mon, 02 Mar 2026 10:00:00 +0000",
        "Far future": "Fri, 31 Dec 9999 23:00:00 -1200",
        "Ancient": "Mon, 01 Jan 1900 00:00:00 +0000",
        "Undated": None,
        "Garbage": "yesterday at noon, probably",
    }
    raws = []
    for n, (subject, date) in enumerate(dates.items()):
        raw = message(subject, f"<d{n}@example.com>")
        old = b"Date: Thu, 26 Nov 2026 10:00:00 +0000\r\n"
        raws.append(raw.replace(old, f"Date: {date}\r\n".encode() if date else b""))
    seed(site.config, site.db, raws)
    ids = topic_ids(site)
    with web.client() as http:
        first = http.get("/lists/dev", params={"sort": "newest"}).text
        second = http.get("/lists/dev", params={"sort": "newest", "page": 2}).text
        future = http.get(f"/lists/dev/topics/{ids['Far future']}")
        feed = ET.fromstring(http.get("/lists/dev/feed.atom").content)
        mbox = http.get(f"/lists/dev/topics/{ids['Far future']}/topic.mbox").content
    assert titles(first) == ["Garbage", "Undated", "Ancient"] and titles(second) == ["Far future", "Normal"]
    assert future.status_code == 200 and "9999" not in future.text
    assert re.search(r'datetime="20\d\d-', future.text)
    updated = feed.find(f"{ATOM}updated").text
    assert updated.startswith("20") and all(e.text.startswith("20") for e in feed.iter(f"{ATOM}updated"))
    assert b"Date: Fri, 31 Dec 9999 23:00:00 -1200" in mbox  # the original, kept


def test_numbers_too_big_for_a_row_id_are_not_found_not_errors(site, web) -> None:
    """A path's topic, post, author, spool or attachment number is a row id: 1 to 18 digits.
    Longer numbers, and 18-digit ones no row has, answer 404 (a 20-digit number once reached
    the database and came back a 500: it does not fit a BIGINT)."""
    from starlette.routing import Route

    seed(site.config, site.db, thread_messages(3))
    routes = [r for r in web.app.routes if isinstance(r, Route) and "GET" in (r.methods or ())]
    numbered = [r.path for r in routes if ":id}" in r.path]
    assert len(numbered) >= 8
    with web.client() as http:
        for path in numbered:
            for number in ("9" * 18, "9" * 19, "1" + "0" * 30):
                url = re.sub(r"\{(\w+):id\}", number, path).replace("{list}", "dev")
                url = url.replace("{filename:path}", "a.txt").replace("{key}", "k")
                answer = http.get(url, follow_redirects=False)
                assert answer.status_code in (404, 303), (url, answer.status_code)
