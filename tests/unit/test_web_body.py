"""Presentation rules of the archive: addresses, tags, mailto, HTML, CSRF and limits (quotes and
code: test_web_reading)."""

from __future__ import annotations

import datetime as dt
from urllib.parse import parse_qs, urlparse

import pytest
from sqlalchemy import select

from mailforum.db.models import FormHit
from mailforum.web import body
from mailforum.web.forms import CsrfTokens, RateLimiter, checked_address


def test_addresses_are_hidden_in_labels_and_bodies() -> None:
    assert body.author_label("", "ann@example.com", show_address=False) == "a…@example.com"
    assert body.author_label("Ann", "ann@example.com", show_address=False) == "Ann"
    assert body.author_label("Ann", "ann@example.com", show_address=True) == "Ann (ann at example.com)"
    assert body.hide_addresses("write to bob.b+x@mail.example.org now") == "write to b…@mail.example.org now"


def test_subject_tags_leave_out_the_lists_own_tag() -> None:
    assert body.subject_tags("Re: [dev] [ANN][python] New release", "dev") == (
        ("ANN", "python"),
        "New release",
    )
    assert body.subject_tags("", "dev") == ((), "(no subject)")


def test_mailto_carries_subject_and_in_reply_to() -> None:
    url = body.mailto("dev@lists.example.org", "Hello & bye", "<a+b@example.com>")
    parsed = urlparse(url)
    assert parsed.scheme == "mailto" and parsed.path == "dev@lists.example.org"
    query = parse_qs(parsed.query)
    assert query == {"subject": ["Re: Hello & bye"], "In-Reply-To": ["<a+b@example.com>"]}
    assert "Re: Re:" not in body.mailto("x@y", "Re: Hello")


def test_sanitize_html_keeps_structure_and_drops_everything_active() -> None:
    out = body.sanitize_html(
        '<p style="x" onclick="a()">Hi <a href="javascript:x()">j</a> <a href="https://ok.example/">ok</a>'
        '<img src="https://tracker.example/p.gif"><script>alert(1)</script><style>p{}</style></p>'
    )
    assert out.startswith("<p>Hi ")
    assert "onclick" not in out and "style" not in out and "script" not in out and "img" not in out
    assert "javascript" not in out
    assert 'href="https://ok.example/"' in out and "nofollow" in out


def test_csrf_tokens_bind_nonce_action_and_time() -> None:
    now = [1_000_000.0]
    tokens = CsrfTokens(b"k" * 32, max_age=60, clock=lambda: now[0])
    token = tokens.issue("nonce", "/lists/dev/join")
    assert tokens.check("nonce", "/lists/dev/join", token)
    assert not tokens.check("other", "/lists/dev/join", token)
    assert not tokens.check("nonce", "/lists/dev/topics/1/watch", token)
    assert not tokens.check("nonce", "/lists/dev/join", token[:-1] + ("0" if token[-1] != "0" else "1"))
    assert not tokens.check("", "/lists/dev/join", token)
    assert not tokens.check("nonce", "/lists/dev/join", "garbage")
    now[0] += 61
    assert not tokens.check("nonce", "/lists/dev/join", token)


def test_rate_limiter_slides_and_keeps_no_address(db) -> None:
    now = [dt.datetime(2026, 12, 1, tzinfo=dt.UTC)]
    limiter = RateLimiter(db, "address", 2, 10, b"k", clock=lambda: now[0])
    assert limiter.hit("a@example.com") == 0 and limiter.hit("a@example.com") == 0
    assert limiter.hit("a@example.com") == 10.0
    assert limiter.hit("b@example.com") == 0
    assert (
        RateLimiter(db, "client", 2, 10, b"k", clock=lambda: now[0]).hit("a@example.com") == 0
    )  # scopes apart
    now[0] += dt.timedelta(seconds=10.5)
    assert limiter.hit("a@example.com") == 0
    with db.read_session() as session:
        keys = list(session.scalars(select(FormHit.key)))
    assert len(keys) == 2 and not any("example" in k for k in keys)  # old hits gone, keys hashed


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("Ann@Example.COM", "ann@example.com"),
        ("  bob@example.org ", "bob@example.org"),
        ("not an address", None),
        ("a@b", None),
        ("x@example.com\r\nBcc: y@example.com", None),
        ("", None),
    ],
)
def test_checked_address(text: str, expected: str | None) -> None:
    assert checked_address(text) == expected


@pytest.mark.parametrize("text", ["alice@localhost", "Bob@host.local", "carol@intranet", "dan@x.test"])
def test_checked_address_takes_local_domains_only_when_allowed(text: str) -> None:
    """[site] allow_local_domains reaches the web forms too, as it does the CLI and mail commands."""
    assert checked_address(text) is None
    assert checked_address(text, local_domains=True) == text.lower()


def test_checked_address_never_takes_invalid_or_onion_domains() -> None:
    assert checked_address("eve@x.invalid", local_domains=True) is None
    assert checked_address("eve@x.onion", local_domains=True) is None


def test_linkify_links_urls_and_escapes_everything_else() -> None:
    from mailforum.web.formats import linkify

    out = str(
        linkify('See https://example.org/a?b=1&c=2. And <b>"https://x.example/"onmouseover=alert(1)</b>')
    )
    assert '<a href="https://example.org/a?b=1&amp;c=2" rel="nofollow noopener noreferrer ugc">' in out
    assert "</a>. And &lt;b&gt;&#34;" in out
    assert 'href="https://x.example/"' in out and "onmouseover=alert(1)&lt;/b&gt;" in out
    assert str(linkify("javascript:alert(1)")) == "javascript:alert(1)"
