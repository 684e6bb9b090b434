"""Text as stored and shown (issue 12): the sender's words are kept, control characters are not.

A multipart whose declared boundary never appears is read as text, not lost. ESC, BEL
and the other C0/C1 controls in bodies (whatever their charset), subjects, names and
attachment names never reach the export, the web pages or the digests; tab and newline do.
"""

from __future__ import annotations

import datetime as dt
import re

import httpx
from sqlalchemy import select

from mailforum.core import digest_schedule
from mailforum.db.models import DeliveryMode, PostingPolicy, Topic
from tests.helpers import DOMAIN, send, wait_for
from tests.integration.outbound_helpers import as_email, deliver

CONTROLS = re.compile(r"[\x00-\x08\x0b-\x1f\x7f-\x9f]")  # everything but tab, newline (and CR on the wire)
DAY = dt.datetime(2026, 10, 1, 7, 0, 5, tzinfo=dt.UTC)

DIRTY = (
    b"From: =?utf-8?q?Ann=1B=5B31m_Author?= <ann@example.com>\r\n"
    b"To: dev@" + DOMAIN.encode() + b"\r\n"
    b"Subject: =?utf-8?q?Esc=1B=5D0=3Btitle=07_subject?=\r\n"
    b"Message-ID: <dirty@example.com>\r\n"
    b"Date: Thu, 26 Nov 2026 10:00:00 +0000\r\n"
    b"MIME-Version: 1.0\r\n"
    b'Content-Type: multipart/mixed; boundary="b1"\r\n'
    b"\r\n"
    b"--b1\r\n"
    b"Content-Type: text/plain; charset=x-no-such-charset\r\n"
    b"\r\n"
    b"Clear \x1b[2Jscreen\x07 bell\x0b\x0c feeds \xc2\x9bcsi\x7f del\r\n"
    b"col1\tcol2\r\n"
    b"--b1\r\n"
    b"Content-Type: application/octet-stream\r\n"
    b'Content-Disposition: attachment; filename="=?utf-8?q?evil=1B=5B1m=2Etxt?="\r\n'
    b"\r\n"
    b"data\r\n"
    b"--b1--\r\n"
)
LOST_BOUNDARY = (
    b"From: Bob <bob@example.com>\r\n"
    b"To: dev@" + DOMAIN.encode() + b"\r\n"
    b"Subject: No boundary\r\n"
    b"Message-ID: <noboundary@example.com>\r\n"
    b"Date: Thu, 26 Nov 2026 11:00:00 +0000\r\n"
    b"MIME-Version: 1.0\r\n"
    b'Content-Type: multipart/alternative; boundary="never-seen"\r\n'
    b"\r\n"
    b"These are the words I wrote.\r\n"
    b"They must not be lost.\r\n"
)


def test_controls_never_reach_export_pages_or_digests_and_a_lost_boundary_keeps_the_text(site, relay, server):
    site.create_list("dev", PostingPolicy.OPEN)
    site.add_members("dev", "dora@example.com", mode=DeliveryMode.DIGEST)
    for raw in (DIRTY, LOST_BOUNDARY):
        send(site.config, raw, mail_from="ann@example.com")
    posts = wait_for(lambda: len(site.posts_by_id()) == 2 and site.posts_by_id())

    dirty = posts["<dirty@example.com>"]
    assert dirty["text"] == "Clear [2Jscreen bell   feeds csi del\ncol1\tcol2"
    assert dirty["subject"] == "Esc]0;title subject"
    for field in ("subject", "author_name", "title"):
        assert not CONTROLS.search(dirty[field] or ""), field
    assert [a["filename"] for a in dirty["attachments"]] == ["evil[1m.txt"]
    lost = posts["<noboundary@example.com>"]
    assert lost["text"] == "These are the words I wrote.\nThey must not be lost.\n"
    assert lost["attachments"] == []

    with site.db.read_session() as session:
        topics = list(session.scalars(select(Topic.id)))
    pages = [f"/lists/dev/topics/{tid}" for tid in topics] + ["/lists/dev", "/lists/dev/feed.atom"]
    with httpx.Client(base_url=site.config.site.base_url, timeout=10) as http:
        for path in pages:
            page = http.get(path)
            if page.status_code == 404:  # a route this version does not have
                continue
            assert page.status_code == 200, path
            assert not CONTROLS.search(page.text.replace("\r", "")), path
        topic_page = (
            http.get(f"/lists/dev/topics/{min(topics)}").text
            + http.get(f"/lists/dev/topics/{max(topics)}").text
        )
    assert "These are the words I wrote." in topic_page and "col2" in topic_page

    assert digest_schedule.run_list(site.db, site.config, "dev", DAY, scheduled=True).queued == 1
    deliver(site.config, site.db)
    (digest,) = wait_for(lambda: relay.messages_for("dora@example.com"))
    message = as_email(digest.data)
    parts = [p.get_content() for p in message.walk() if p.get_content_maintype() == "text"]
    assert parts and any("They must not be lost." in text for text in parts)
    for text in parts:
        assert not CONTROLS.search(text.replace("\r", ""))
