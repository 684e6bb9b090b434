"""Digest pieces without a database: splicing, trimming, cutting, the token signer, config keys."""

from __future__ import annotations

import datetime as dt
import email
import email.policy

import pytest

from mailforum.config import from_mapping
from mailforum.core import digests, tokens
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
    from mailforum.core.notify import render_digest
    from mailforum.db.models import MailingList
    from mailforum.render import Renderer

    post = digests.DigestPost(3, 1, "Mallory \x1bR9\x1b", NOW, "s", "forged \x1bR9\x1b here", False)
    topic = digests.DigestTopic(1, "Topic \x1bR9\x1b", True, (post,))
    mlist = MailingList(name="dev", title="", subject_tag=None, digest_timezone=None)
    rendered = render_digest(Config(), Renderer(), mlist, (topic,), digests.DAILY, "26 Nov 2026")
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
    assert digests.trim(body) == kept


def test_cut_stops_at_a_boundary():
    text = "para one " * 30 + "\n\n" + "para two " * 30
    short, was_cut = digests.cut(text, 300)
    assert was_cut and short.endswith(" …") and len(short) <= 302
    assert digests.cut("short", 300) == ("short", False)


def test_the_signer_writes_the_same_tokens_as_sign():
    key = tokens.derive_key("k")
    expires = NOW + dt.timedelta(days=365)
    signer = tokens.Signer(key, tokens.REPLY, expires)
    for fields in [(1, 2), (7, 123456789), (0, 0), (2**40, 5)]:
        token = signer.sign(fields)
        assert token == tokens.sign(key, tokens.REPLY, fields, expires)
        assert tokens.verify(key, tokens.REPLY, token, NOW, fields=2) == fields


def test_digest_replies_are_recognised_by_id_or_subject():
    from mailforum.mail.parse import parse

    def parsed(subject: str, extra: str = "") -> object:
        head = f"From: a@example.com\r\nSubject: {subject}\r\nMessage-ID: <m@x>\r\n{extra}\r\n"
        return parse(head.encode() + b"body\r\n")

    domain = "lists.example.org"
    assert digests.is_digest_reply(
        parsed("Re: hello", "In-Reply-To: <digest.dev.4.0-9@lists.example.org>\r\n"), domain
    )
    assert digests.is_digest_reply(parsed("Re: [dev] Daily digest, 26 Nov 2026: 3 new posts"), domain)
    assert digests.is_digest_reply(parsed("AW: Re: Weekly digest, week to 26 Nov 2026: 1 new post"), domain)
    assert not digests.is_digest_reply(parsed("Re: a message digest algorithm"), domain)
    assert not digests.is_digest_reply(
        parsed("Re: hello", "In-Reply-To: <digest.dev.4.0-9@elsewhere.org>\r\n"), domain
    )
    assert not digests.is_digest_reply(parsed("Digest of the meeting"), domain)


def test_digest_config_keys_are_checked():
    assert (
        from_mapping({"digest": {"weekly_day": "fri", "timezone": "Europe/Berlin"}}).digest.weekly_day
        == "fri"
    )
    with pytest.raises(ConfigError, match="weekly_day"):
        from_mapping({"digest": {"weekly_day": "friday"}})
    with pytest.raises(ConfigError, match="timezone"):
        from_mapping({"digest": {"timezone": "Mars/Olympus"}})
