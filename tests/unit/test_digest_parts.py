"""Digest pieces without a database: splicing, trimming, cutting, the token signer, config keys."""

from __future__ import annotations

import datetime as dt
import email
import email.policy

import pytest

from mailforum.config import from_mapping
from mailforum.core import digest_content, digest_replies, tokens
from mailforum.errors import ConfigError
from mailforum.mail import digest as digest_mail
from mailforum.mail.compose import ListIdentity

IDENT = ListIdentity("dev", "Developers", "lists.example.org", "https://forum.example.org", "[dev]")
NOW = dt.datetime(2026, 11, 26, 7, tzinfo=dt.UTC)


def test_spliced_reply_addresses_decode_exactly_and_keep_lines_short():
    long_line = "ünïcödé " * 40
    text = f"Intro {long_line}\nReply: mailto:{digest_mail.marker(5)}?subject=Re%3A\n{'x' * 300}\n"
    text += f"Second: mailto:{digest_mail.marker(7)}\n"
    html = f'<a href="mailto:{digest_mail.marker(5)}">r</a> <p>{long_line}</p>'
    shared = digest_mail.build(IDENT, "Daily digest", text, html, NOW, (5, 7))
    addresses = {5: "dev+r-abc-5@lists.example.org", 7: "dev+r-abc-7@lists.example.org"}
    data = shared.personalise("<digest.dev.1.0-7@lists.example.org>", addresses.__getitem__, ("mailto:x@y",))
    assert all(len(line) <= 78 for line in data.split(b"\r\n"))
    msg = email.message_from_bytes(data, policy=email.policy.default)
    plain, html_part = (p.get_content() for p in msg.walk() if p.get_content_maintype() == "text")
    assert plain.replace("\r\n", "\n") == text.replace(digest_mail.marker(5), addresses[5]).replace(
        digest_mail.marker(7), addresses[7]
    )
    assert f'href="mailto:{addresses[5]}"' in html_part and long_line in html_part
    assert msg["Message-ID"] == "<digest.dev.1.0-7@lists.example.org>"
    assert msg["List-Unsubscribe"] == "<mailto:x@y>"


def test_a_marker_in_a_post_cannot_be_forged():
    from mailforum.config import Config
    from mailforum.core.digest_render import render_digest
    from mailforum.db.models import MailingList
    from mailforum.render import Renderer

    post = digest_content.DigestPost(3, 1, "Mallory \x1bR9\x1b", NOW, "s", "forged \x1bR9\x1b here", False)
    topic = digest_content.DigestTopic(1, "Topic \x1bR9\x1b", True, (post,))
    mlist = MailingList(name="dev", title="", subject_tag=None, digest_timezone=None)
    rendered = render_digest(Config(), Renderer(), mlist, (topic,), digest_content.DAILY, "26 Nov 2026")
    shared = digest_mail.build(IDENT, rendered.subject, rendered.text, rendered.html, NOW, rendered.post_ids)
    assert shared.post_ids == (3,)
    assert "forged" in rendered.text and "\x1bR9" not in rendered.text + rendered.html


def test_a_header_value_that_is_not_plain_ascii_is_refused_at_the_splice():
    shared = digest_mail.build(IDENT, "s", "t", "h", NOW, ())
    with pytest.raises(ValueError):
        shared.personalise("<a@b>\r\nBcc: x@y", lambda pid: "", ())


@pytest.mark.parametrize(
    ("body", "kept"),
    [
        ("New words.\n\nOn Thu, 26 Nov 2026, Ann wrote:\n> old\n> words\n", "New words."),
        ("Top.\n\n-- \nAnn\nwww.example.com\n", "Top."),
        ("> quoted\nanswer one\n> more\nanswer two\n", "answer one\nanswer two"),
        ("Hi\n\n-----Original Message-----\nFrom: x\n", "Hi"),
        ("> only a quote\n", "> only a quote"),  # nothing new: keep what there is
        ("Am 26.11.2026 schrieb Ann:\n> alt\nneu\n", "neu"),
    ],
)
def test_trim_keeps_the_new_text(body, kept):
    assert digest_content.trim(body) == kept


def test_cut_stops_at_a_boundary():
    text = "para one " * 30 + "\n\n" + "para two " * 30
    short, was_cut = digest_content.cut(text, 300)
    assert was_cut and short.endswith(" …") and len(short) <= 302
    assert digest_content.cut("short", 300) == ("short", False)


def test_the_signer_writes_the_same_tokens_as_sign():
    key = tokens.derive_key("k")
    expires = NOW + dt.timedelta(days=365)
    signer = tokens.Signer(key, tokens.REPLY, expires)
    for fields in [(1, 2), (7, 123456789), (0, 0), (2**40, 5)]:
        token = signer.sign(fields)
        assert token == tokens.sign_short(key, tokens.REPLY, fields, expires)
        assert tokens.verify(key, tokens.REPLY, token, NOW, fields=2) == fields


def test_digest_replies_are_recognised_by_id_or_subject():
    from mailforum.mail.parse import parse

    def parsed(subject: str, extra: str = "") -> object:
        head = f"From: a@example.com\r\nSubject: {subject}\r\nMessage-ID: <m@x>\r\n{extra}\r\n"
        return parse(head.encode() + b"body\r\n")

    domain = "lists.example.org"
    assert digest_replies.is_digest_reply(
        parsed("Re: hello", "In-Reply-To: <digest.dev.4.0-9@lists.example.org>\r\n"), domain
    )
    assert digest_replies.is_digest_reply(parsed("Re: [dev] Daily digest, 26 Nov 2026: 3 new posts"), domain)
    assert digest_replies.is_digest_reply(
        parsed("AW: Re: Weekly digest, week to 26 Nov 2026: 1 new post"), domain
    )
    assert not digest_replies.is_digest_reply(parsed("Re: a message digest algorithm"), domain)
    assert not digest_replies.is_digest_reply(
        parsed("Re: hello", "In-Reply-To: <digest.dev.4.0-9@elsewhere.org>\r\n"), domain
    )
    assert not digest_replies.is_digest_reply(parsed("Digest of the meeting"), domain)


def test_digest_config_keys_are_checked():
    assert (
        from_mapping({"digest": {"weekly_day": "fri", "timezone": "Europe/Berlin"}}).digest.weekly_day
        == "fri"
    )
    with pytest.raises(ConfigError, match="weekly_day"):
        from_mapping({"digest": {"weekly_day": "friday"}})
    with pytest.raises(ConfigError, match="timezone"):
        from_mapping({"digest": {"timezone": "Mars/Olympus"}})


# -- the MIME digest ------------------------------------------------------------------


def _embedded(post_id: int, subject: str = "Alpha", author: str = "Ann", text: str = "Body\n"):
    from mailforum.mail.compose import PostView

    view = PostView(f"<p{post_id}@example.com>", subject, author, "ann@example.com", NOW, 1, ("<root@x>",))
    return digest_mail.embed(IDENT, digest_mail.EmbeddedPost(post_id, view, text))


def _lf(part) -> str:
    return part.get_content().replace("\r\n", "\n")


def _mime(posts, contents: str = "", footer: str = "-- \nfooter\n") -> bytes:
    contents = contents or "".join(f"{n}. mailto:{digest_mail.marker(n)}?subject=x\n" for n in posts)
    shared = digest_mail.build_mime(IDENT, "Daily digest", contents, footer, list(posts.values()), NOW)
    return shared.personalise(
        "<digest.dev.1.0-7@lists.example.org>",
        lambda pid: f"dev+r-{pid}-abc@lists.example.org",
        ("mailto:dev+unsubscribe@lists.example.org",),
    )


def test_a_mime_digest_is_contents_a_digest_of_messages_and_a_footer():
    long_text = "ünïcödé " * 40 + "\n> quoted\n-- \nsig\n"
    data = _mime({5: _embedded(5, text=long_text), 7: _embedded(7, "Beta")})
    assert all(len(line) <= 78 for line in data.split(b"\r\n"))
    msg = email.message_from_bytes(data, policy=email.policy.default)
    contents, digest, footer = msg.iter_parts()
    assert msg.get_content_type() == "multipart/mixed" and digest.get_content_type() == "multipart/digest"
    assert _lf(contents) == "".join(
        f"{n}. mailto:dev+r-{n}-abc@lists.example.org?subject=x\n" for n in (5, 7)
    )
    inner = [part.get_content() for part in digest.iter_parts()]
    assert [p.get_content_type() for p in digest.iter_parts()] == ["message/rfc822"] * 2
    assert [m["Message-ID"] for m in inner] == ["<p5@example.com>", "<p7@example.com>"]
    assert [m["Reply-To"] for m in inner] == [
        "dev+r-5-abc@lists.example.org",
        "dev+r-7-abc@lists.example.org",
    ]
    assert _lf(inner[0]) == long_text and inner[0]["Content-Transfer-Encoding"] == "quoted-printable"
    assert inner[0]["From"] == "Ann via Developers <dev@lists.example.org>"
    assert inner[0]["In-Reply-To"] == "<root@x>" and inner[1]["Subject"] == "[dev] Beta"
    assert _lf(footer) == "-- \nfooter\n"
    assert msg["Message-ID"] == "<digest.dev.1.0-7@lists.example.org>"


def test_embedded_headers_cannot_be_injected():
    tricks = [
        "hi=?UTF-8?Q?=0A?=Bcc: victim@example.net",
        "=?utf-8?b?DQpCY2M6IHZpY3RpbUBleGFtcGxlLm5ldA==?=",
        "x\r\nBcc: victim@example.net",
        "x\nReply-To: evil@example.net",
    ]
    posts = {n: _embedded(n, subject=t, author=t) for n, t in enumerate(tricks, 1)}
    msg = email.message_from_bytes(_mime(posts), policy=email.policy.default)
    for part in list(msg.iter_parts())[1].iter_parts():
        inner = part.get_content()
        assert sorted(k.lower() for k in inner) == sorted(
            [
                "from", "to", "subject", "date", "message-id", "in-reply-to", "references",
                "x-original-from", "reply-to", "mime-version", "content-type", "content-transfer-encoding",
            ]
        )  # fmt: skip
        assert inner["Reply-To"].startswith("dev+r-")


def test_the_header_check_refuses_what_an_unpatched_stdlib_would_inject():
    """CVE-2024-6923: Python 3.11.7 folds a decoded CR LF into a header line of its own."""
    from email.message import EmailMessage

    from mailforum.mail.compose import POLICY

    msg = EmailMessage(policy=POLICY)
    msg["Subject"] = "=?utf-8?q?a=0D=0ABcc:_x@y?="
    with pytest.raises(ValueError, match="malformed"):
        digest_mail._folded(msg)


def test_the_outline_shows_each_part_and_the_embedded_headers():
    text = digest_mail.outline(_mime({5: _embedded(5)}))
    assert "=== digest: multipart/mixed, 3 parts" in text
    assert "=== 2: multipart/digest, 1 parts" in text and "=== 2.1: message/rfc822" in text
    assert "Message-ID: <p5@example.com>" in text and "Reply-To: dev+r-5-abc@lists.example.org" in text


def test_the_header_check_refuses_an_empty_line_inside_the_block():
    from email.message import EmailMessage

    from mailforum.mail.compose import POLICY

    msg = EmailMessage(policy=POLICY)
    msg["Subject"] = "=?utf-8?q?a=0D=0A=0D=0Abody?="
    with pytest.raises(ValueError, match="malformed"):
        digest_mail._folded(msg)
