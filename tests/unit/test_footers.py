"""Our footer, quoted by replies, is recognised in every form clients give it (issue 13 item 6)."""

from __future__ import annotations

import textwrap

import pytest

from mailforum.mail.footers import strip_footers
from mailforum.mail.parse import html_to_text
from mailforum.render import Renderer

DOMAIN = "lists.example.org"
CONTEXT = {
    "list": {"name": "dev", "title": "Dev Talk", "address": f"dev@{DOMAIN}"},
    "post": {
        "subject": "Hi",
        "text": "Hello everyone.\n",
        "author_name": "Ann Q. Author-Longname",
        "author_address": "ann@example.com",
        "attachments": [],
        "date": None,
    },
    "links": {
        "topic": "https://forum.example.org/lists/dev/topics/17",
        "archive": "https://forum.example.org/lists/dev/",
        "watch": f"mailto:dev+watch-17@{DOMAIN}",
        "mute": f"mailto:dev+mute-17@{DOMAIN}",
        "mode": f"mailto:dev-request@{DOMAIN}?subject=help",
        "preferences": "https://forum.example.org/lists/dev/preferences",
        "unsubscribe": f"mailto:dev+unsubscribe@{DOMAIN}",
        "reply_private": "mailto:ann@example.com?subject=Re%3A%20Hi%20there%20everyone",
    },
}


def copy_text() -> str:
    return Renderer().render("dev", "notification/post.txt.j2", CONTEXT)


def copy_html() -> str:
    return Renderer().render("dev", "notification/post.html.j2", CONTEXT)


def quote(text: str, marker: str = ">") -> str:
    return "\n".join(marker + (" " + line if line else "") for line in text.splitlines()) + "\n"


def reflowed(text: str, width: int) -> str:
    """What a client that rewraps quoted text at ``width`` does (URLs are never broken)."""
    out = []
    for line in text.splitlines():
        out += textwrap.wrap(line, width, break_long_words=False, break_on_hyphens=False) or [""]
    return "\n".join(out) + "\n"


def outlook(text: str) -> str:
    """Outlook's plain-text reply: the original below a header block, unquoted; links as <…>."""
    text = text.replace(": https://", "<https://").replace(": mailto:", "<mailto:")
    text = "\n".join(
        line + ">" if "<https://" in line or "<mailto:" in line else line for line in text.splitlines()
    )
    return f"________________________________\nFrom: Ann Author\nSent: Monday\n\n{text}\n"


FORMS = {
    "as sent": lambda: copy_text(),
    "quoted": lambda: quote(copy_text()),
    "quoted twice": lambda: quote(quote(copy_text())),
    "quoted with spaces": lambda: quote(quote(copy_text()), "> "[:1]).replace(">>", "> >"),
    "reflowed at 40": lambda: quote(reflowed(copy_text(), 40)),
    "reflowed at 24": lambda: quote(quote(reflowed(copy_text(), 24))),
    "outlook": lambda: outlook(copy_text()),
    "html to text": lambda: html_to_text(copy_html()),
    "html quoted": lambda: quote(html_to_text(copy_html())),
    "html reflowed": lambda: quote(reflowed(html_to_text(copy_html()), 50)),
    "crlf": lambda: quote(copy_text()).replace("\n", "\r\n"),
}


@pytest.mark.parametrize("form", FORMS)
def test_the_footer_goes_in_every_form_and_the_text_around_it_stays(form):
    quoted = FORMS[form]()
    text = f"I agree.\n\nOn Mon, Ann wrote:\n{quoted}\nBob\n"
    cleaned = strip_footers(text, DOMAIN)
    for gone in ("topics/17", "watch-17", "unsubscribe@", "delivery mode", "Dev Talk", "privately", "--"):
        assert gone not in cleaned, (form, cleaned)
    assert cleaned.startswith("I agree.\n\nOn Mon, Ann wrote:\n") and cleaned.rstrip().endswith("Bob")
    assert "Hello everyone." in cleaned
    assert strip_footers(cleaned, DOMAIN) == cleaned  # nothing more to find


def test_five_footers_of_a_fourth_level_reply_all_go():
    text = copy_text()
    for level in range(4):
        text = f"Reply {level}.\n\nOn Mon, someone wrote:\n{quote(text)}\n" + copy_text()
    cleaned = strip_footers(text, DOMAIN)
    assert "Dev Talk <dev@" not in cleaned and "Unsubscribe" not in cleaned
    assert all(f"Reply {level}." in cleaned for level in range(4))


@pytest.mark.parametrize(
    "text",
    [
        "Please unsubscribe me.\nWatch this topic: it matters.\n",
        # Our labels without our address (another list's footer, or a lookalike).
        "-- \nOther <other@elsewhere.example>\nView this topic on the web: x\n"
        "Watch this topic: y\nUnsubscribe: z\n",
        # Our address, but fewer than three labels: a person's text.
        f"Write to Dev Talk <dev@{DOMAIN}>\nto unsubscribe, or view this topic on the web.\n",
        "<html>&lt;tag&gt;</html> <https://example.com/x>\n",
    ],
)
def test_text_that_is_not_our_footer_is_left_alone(text):
    assert strip_footers(text, DOMAIN) == text


def test_a_hostile_body_costs_little():
    lines = f"> Dev <b@{DOMAIN}> view this topic on the web · unsubscribe\n" * 5000
    assert strip_footers(lines, DOMAIN) == lines
    assert strip_footers("> \n" * 20000 + "x", DOMAIN) == "> \n" * 20000 + "x"
