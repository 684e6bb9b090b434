"""RELIABILITY S14 and B41: a corpus of XSS payloads, written as mail, renders inert.

Payloads from the OWASP XSS filter evasion cheat sheet and PortSwigger's XSS cheat
sheet go into HTML parts, text parts, subjects, display names and attachment names.
Every page, feed and search result is then parsed the way a browser would, and must
contain nothing a browser would run or fetch: no script, no event handler, no
javascript:/data:/vbscript: URL, no frames, objects, styles, remote images, <base>
or refresh. The headless-browser test (test_browser.py) shows no dialog fires.
"""

from __future__ import annotations

import re
import xml.etree.ElementTree as ET
from html.parser import HTMLParser

import pytest
from sqlalchemy import select

from mailforum.db.models import Topic
from tests.helpers import message
from tests.web.kit import seed

PAYLOADS = [
    "<script>alert(1)</script>",
    "<img src=x onerror=alert(2)>",
    "<svg/onload=alert(3)>",
    "<body onload=alert(4)>",
    '<iframe src="javascript:alert(5)"></iframe>',
    '<a href="javascript:alert(6)">six</a>',
    '<a href="JaVaScRiPt:alert(7)">seven</a>',
    '<a href="&#106;&#97;&#118;&#97;&#115;&#99;&#114;&#105;&#112;&#116;&#58;alert(8)">eight</a>',
    '<a href="jav&#x09;ascript:alert(9)">nine</a>',
    '<meta http-equiv="refresh" content="0;url=javascript:alert(10)">',
    '<div style="background:url(javascript:alert(11))">eleven</div>',
    '<div style="width: expression(alert(12))">twelve</div>',
    '<math><mi xlink:href="javascript:alert(13)">m</mi></math>',
    '<form action="javascript:alert(14)"><input type=submit></form>',
    '<object data="javascript:alert(15)"></object>',
    '<embed src="data:text/html;base64,PHNjcmlwdD5hbGVydCgxNik8L3NjcmlwdD4=">',
    '<base href="javascript:alert(17)//">',
    '<link rel=stylesheet href="javascript:alert(18)">',
    '<table background="javascript:alert(19)"><tr><td>nineteen</td></tr></table>',
    '<img src="https://tracker.example/pixel.gif">',
    "<details open ontoggle=alert(21)>x</details>",
    "<input autofocus onfocus=alert(22)>",
    "<scr<script>ipt>alert(23)</scr</script>ipt>",
    "<<script>alert(24);//<</script>",
    '<IMG """><SCRIPT>alert(25)</SCRIPT>">',
    '<a href="data:text/html,<script>alert(26)</script>">twenty-six</a>',
    "<style>@import 'https://evil.example/x.css';</style>",
    '<video><source onerror="alert(28)"></video>',
    "<marquee onstart=alert(29)>m</marquee>",
    '<p title="</p><script>alert(30)</script>">thirty</p>',
    '<a href="vbscript:msgbox(31)">thirty-one</a>',
    "<svg><animate onbegin=alert(32) attributeName=x dur=1s>",
]

# What our own templates use; anything else on a page came from a message.
PAGE_TAGS = {
    "html", "head", "meta", "title", "link", "body", "a", "header", "nav", "ol", "ul", "li", "main", "footer",
    "p", "h1", "h2", "h3", "h4", "h5", "h6", "span", "time", "article", "section", "div", "pre", "details",
    "summary", "blockquote", "form", "label", "input", "button", "mark", "strong", "b", "i", "em", "u", "s",
    "small", "sub", "sup", "code", "dl", "dt", "dd", "hr", "br", "table", "thead", "tbody", "tfoot", "tr",
    "td", "th", "caption", "bdi",
}  # fmt: skip
URL_ATTRIBUTES = {
    "href",
    "src",
    "action",
    "formaction",
    "data",
    "background",
    "xlink:href",
    "poster",
    "content",
}


class Inspector(HTMLParser):
    """Collects what a browser would act on."""

    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)
        self.problems: list[str] = []

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        if tag not in PAGE_TAGS:
            self.problems.append(f"<{tag}>")
        for name, value in attrs:
            flat = re.sub(r"[\s\x00-\x1f]", "", (value or "")).lower()
            if name.startswith("on") or name in ("style", "background", "srcdoc", "formaction"):
                self.problems.append(f"<{tag} {name}=>")
            if name in URL_ATTRIBUTES and re.match(r"^(javascript|vbscript|data|livescript):", flat):
                self.problems.append(f"<{tag} {name}={flat[:30]}>")
            if name in ("href", "src", "action") and not re.match(r"^(/|#|https?:|mailto:)", flat):
                self.problems.append(f"<{tag} {name}={flat[:30]}>")
        if tag == "meta" and any(n == "http-equiv" for n, _ in attrs):
            self.problems.append("<meta http-equiv>")
        if tag == "link" and not dict(attrs).get("href", "").startswith("/"):
            self.problems.append("<link> to elsewhere")
        if tag == "form" and not (dict(attrs).get("action") or "").startswith("/"):
            self.problems.append("<form> to elsewhere")


def active(page: str) -> list[str]:
    inspector = Inspector()
    inspector.feed(page)
    inspector.close()
    return inspector.problems


def hostile_mail() -> list[bytes]:
    html = (
        "<html><head><title>t</title></head><body><p>hostile html</p>"
        + "\n".join(PAYLOADS)
        + "</body></html>"
    )
    raws = [
        message(
            "Hostile html", "<x1@example.com>", body=html, extra="MIME-Version: 1.0\nContent-Type: text/html"
        ),
        message("Hostile text", "<x2@example.com>", body="hostile text\n" + "\n".join(PAYLOADS) + "\n"),
    ]
    for i, payload in enumerate(PAYLOADS):
        bare = payload.replace('"', "")
        attachment = (
            "MIME-Version: 1.0\nContent-Type: multipart/mixed; boundary=B",
            f"--B\nContent-Type: text/plain\n\nhostile {i}\n--B\nContent-Type: text/html\n"
            f'Content-Disposition: attachment; filename="{bare}.html"\n\n{payload}\n--B--\n',
        )
        raws.append(
            message(
                f"Re: Hostile html {payload}",
                f"<p{i}@example.com>",
                sender=f'"{bare}" <x{i}@example.com>',
                body=attachment[1],
                extra=attachment[0] + "\nIn-Reply-To: <x1@example.com>",
            )
        )
    raws.append(message(PAYLOADS[0] + " in a new subject", "<s@example.com>", body=PAYLOADS[1]))
    return raws


def test_the_corpus_is_big_enough() -> None:
    assert len(PAYLOADS) >= 20
    assert active('<p>fine <a href="/x">x</a></p>') == []
    for payload in ("<script>alert(1)</script>", '<img src=x onerror="a()">', '<a href="javascript:x">x</a>'):
        assert active(payload), payload  # the inspector does see what it must find


@pytest.fixture
def hostile_site(site):
    seed(site.config, site.db, hostile_mail())
    return site


def test_hostile_mail_renders_inert_on_every_page(hostile_site, web) -> None:
    with hostile_site.db.read_session() as session:
        topics = list(session.scalars(select(Topic.id).where(Topic.post_count > 0)))
    paths = ["/", "/lists/dev", "/lists/dev?sort=replies", "/lists/dev/archive"]
    paths += [f"/lists/dev/topics/{t}?page={n}" for t in topics for n in range(1, 10)]
    paths += [f"/lists/dev/search?q={q}" for q in ("alert", "script", "hostile", "onerror")]
    paths += [f"/lists/dev/topics/{t}/watch" for t in topics] + ["/lists/dev/join"]
    seen_hostile = 0
    with web.client() as http:
        for path in paths:
            page = http.get(path)
            assert page.status_code == 200, path
            assert "default-src 'none'" in page.headers["content-security-policy"]
            problems = active(page.text)
            assert problems == [], f"{path}: {problems[:5]}"
            seen_hostile += "hostile" in page.text
        for path in ["/lists/dev/feed.atom", *(f"/lists/dev/topics/{t}/feed.atom" for t in topics)]:
            feed = ET.fromstring(http.get(path).content)  # well-formed: every payload escaped
            tags = {el.tag for el in feed.iter()}
            assert all(t.startswith("{http://www.w3.org/2005/Atom}") for t in tags), tags
    assert seen_hostile >= 5
