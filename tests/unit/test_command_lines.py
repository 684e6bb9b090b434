"""Reading the command lines of a mail: subject, body, and where the commands end (S23)."""

from __future__ import annotations

import pytest

from mailforum.core.commands import command_lines, strip_subject
from mailforum.mail.parse import parse
from tests.helpers import message


def lines(body: str, subject: str = "", extra: str = "", limit: int = 10) -> list[str]:
    return [
        " ".join(words) for words in command_lines(parse(message(subject, body=body, extra=extra)), limit)
    ]


def test_subject_counts_only_when_it_is_a_command():
    assert lines("", "Re: [dev] subscribe") == ["subscribe"]
    assert lines("help\n", "Question about the list") == ["help"]


def test_a_confirmation_token_in_the_subject_becomes_a_confirm_line():
    assert lines("", "Re: Please confirm: join the list dev (confirm 1-2-abc-defghij)") == [
        "confirm 1-2-abc-defghij"
    ]


@pytest.mark.parametrize(
    "tail",
    [
        "-- \nAnn\nunsubscribe\n",
        "--\nunsubscribe\n",
        "> unsubscribe\n",
        "On Thu, 26 Nov 2026, Ann <ann@example.com> wrote:\nunsubscribe\n",
        "-----Original Message-----\nunsubscribe\n",
        "________________________________\nFrom: Ann <ann@example.com>\nunsubscribe\n",
        "From: Ann <ann@example.com>\nunsubscribe\n",
        "Sent from my phone\nunsubscribe\n",
    ],
)
def test_commands_stop_at_signatures_and_quotes(tail):
    assert lines("mode digest\n\nstatus\n" + tail) == ["mode digest", "status"]


def test_at_most_the_limit_of_lines_is_read():
    many = "".join(f"watch {n}\n" for n in range(500))
    assert len(lines(many, "help")) == 10
    assert len(lines(many, limit=3)) == 3
    assert lines("status\n" * 500) == ["status"]  # and a repeated line counts once


def test_html_only_mail_is_read_through_its_text_without_quotes():
    html = "<p>mode none</p><div>status</div><blockquote>unsubscribe</blockquote>"
    extra = "MIME-Version: 1.0\nContent-Type: text/html; charset=utf-8"
    assert lines(html, extra=extra) == ["mode none", "status"]


def test_subject_prefixes_and_tags_are_stripped():
    assert strip_subject("Re: AW: [dev] Fwd: subscribe") == "subscribe"


@pytest.mark.parametrize(
    ("subject", "body", "expected"),
    [
        ("mute 12", "mute 12\n", ["mute 12"]),
        ("Re: [dev] Digest Daily", "digest daily.\nstatus\ndigest daily\n", ["Digest Daily", "status"]),
        ("status", "STATUS\nhelp\nStatus!\n", ["status", "help"]),
        ("", "watch 3\nwatch 4\nwatch 3\n", ["watch 3", "watch 4"]),
    ],
)
def test_a_command_given_twice_is_read_once(subject, body, expected):
    assert lines(body, subject) == expected
