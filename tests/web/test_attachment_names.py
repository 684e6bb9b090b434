"""Issue 12 item 5: every attachment downloads from the link on the page and in our mails,
under a generated URL name, and is saved under a sanitised name."""

from __future__ import annotations

import re
from html import unescape
from urllib.parse import quote, unquote, urlsplit

from sqlalchemy import select

from mailforum.core.lists import get_list, identity
from mailforum.db.models import Post
from tests.helpers import message
from tests.web.kit import seed

NAMES = [
    "../../etc/passwd",
    "dir/sub/report.pdf",
    "..\\..\\boot.ini",
    "a..b....c.txt",
    "evil\u202egnp.exe",
    "ü" * 300 + ".pdf",
    "..",
]


def hostile() -> bytes:
    parts = "".join(
        f"--B\nContent-Type: application/octet-stream\n"
        f"Content-Disposition: attachment; filename*=UTF-8''{quote(name, safe='')}\n\nfile {i}\n"
        for i, name in enumerate(NAMES)
    )
    return message(
        "Files",
        "<files@example.com>",
        extra="MIME-Version: 1.0\nContent-Type: multipart/mixed; boundary=B",
        body=f"--B\nContent-Type: text/plain\n\nSee attached.\n{parts}--B--\n",
    )


def saved_name(disposition: str) -> str:
    return unquote(disposition.split("filename*=UTF-8''", 1)[1])


def test_every_attachment_link_downloads_under_a_safe_name(site, web) -> None:
    seed(site.config, site.db, [hostile()])
    with site.db.read_session() as session:
        post = session.scalars(select(Post).where(Post.message_id == "<files@example.com>")).one()
        ident = identity(site.config, get_list(session, "dev"))
        stored = [a["filename"] for a in post.attachments]
        mail_links = [urlsplit(ident.attachment_url(post.id, i, n)).path for i, n in enumerate(stored)]
    with web.client() as http:
        page = http.get(f"/lists/dev/topics/{post.topic_id}").text
        links = [unescape(u) for u in re.findall(r'<a href="([^"]+/attachments/[^"]+)" download>', page)]
        assert len(links) == len(NAMES)
        for index, link in enumerate(links):
            segment = link.rsplit("/", 1)[1]
            assert re.fullmatch(r"[A-Za-z0-9._-]+", segment) and ".." not in segment, segment
            for url in (link, mail_links[index]):
                got = http.get(url)
                assert got.status_code == 200 and got.content == f"file {index}".encode(), url
            name = saved_name(got.headers["content-disposition"])
            assert "/" not in name and "\\" not in name and ".." not in name and "\u202e" not in name
            assert len(name.encode()) <= 255
        # Links sent before this change named the file as it came; they still work.
        assert http.get(f"/lists/dev/posts/{post.id}/attachments/1/dir%2Fsub%2Freport.pdf").status_code == 200
    shown = re.findall(r"download><bdi>([^<]*)</bdi></a>", page)
    assert shown[:2] == ["passwd", "report.pdf"] and shown[3] == "a.b.c.txt"
    assert shown[5].endswith(".pdf") and 250 < len(shown[5].encode()) <= 255
