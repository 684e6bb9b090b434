"""Templates: per-list overrides, strict undefined variables, escaping only in HTML."""

from __future__ import annotations

import os

import jinja2
import pytest

from mailforum import render
from mailforum.render import Renderer

CONTEXT = {
    "list": {"name": "dev", "title": "Dev <Talk>", "address": "dev@lists.example.org"},
    "post": {
        "subject": "Hi",
        "text": "a < b & c",
        "author_name": "Ann",
        "author_address": "ann@example.com",
        "attachments": [{"filename": "x.pdf", "type": "application/pdf", "size": 10}],
        "date": None,
    },
    "links": {
        "topic": "https://f/lists/dev/topics/1",
        "archive": "https://f/lists/dev/",
        "watch": "mailto:dev+watch-1@lists.example.org",
        "mute": "mailto:dev+mute-1@lists.example.org",
        "mode": "mailto:dev-request@lists.example.org?subject=help",
        "preferences": "https://forum.example.org/lists/dev/preferences",
        "unsubscribe": "mailto:dev+unsubscribe@lists.example.org",
        "reply_private": "mailto:ann@example.com?subject=Re%3A%20Hi",
    },
}


def test_text_is_not_escaped_and_html_is():
    renderer = Renderer()
    text = renderer.render("dev", "notification/post.txt.j2", CONTEXT)
    html = renderer.render("dev", "notification/post.html.j2", CONTEXT)
    assert "a < b & c" in text and "x.pdf" in text and "mailto:dev+mute-1@" in text
    assert "a &lt; b &amp; c" in html and "Dev &lt;Talk&gt;" in html and "<script" not in html


def test_a_list_can_override_a_template(tmp_path):
    (tmp_path / "dev" / "notification").mkdir(parents=True)
    (tmp_path / "dev" / "notification" / "post.txt.j2").write_text("custom {{ post.subject }}\n")
    renderer = Renderer(tmp_path)
    assert renderer.render("dev", "notification/post.txt.j2", CONTEXT) == "custom Hi\n"
    assert "a < b & c" in renderer.render("other", "notification/post.txt.j2", CONTEXT)


def test_an_edited_template_file_is_used_after_the_recheck_interval(tmp_path, monkeypatch):
    """Template files are not looked at on every render (render.RECHECK), but an edit, of a
    template or of what it includes, is picked up once the interval has passed."""
    (tmp_path / "notification").mkdir()
    page, part = tmp_path / "notification" / "post.txt.j2", tmp_path / "notification" / "part.txt.j2"
    page.write_text("one {% include 'notification/part.txt.j2' %}")
    part.write_text("A")
    monkeypatch.setattr(render, "RECHECK", 3600.0)
    renderer = Renderer(tmp_path)
    assert renderer.render("dev", "notification/post.txt.j2", CONTEXT) == "one A"
    part.write_text("B")
    os.utime(part, (part.stat().st_atime, part.stat().st_mtime + 10))
    assert renderer.render("dev", "notification/post.txt.j2", CONTEXT) == "one A"  # not looked at yet
    monkeypatch.setattr(render, "RECHECK", 0.0)
    assert renderer.render("dev", "notification/post.txt.j2", CONTEXT) == "one B"
    page.write_text("two {% include 'notification/part.txt.j2' %}")
    os.utime(page, (page.stat().st_atime, page.stat().st_mtime + 20))
    assert renderer.render("dev", "notification/post.txt.j2", CONTEXT) == "two B"


def test_an_undefined_variable_is_an_error_not_blank_text(tmp_path):
    (tmp_path / "notification").mkdir()
    (tmp_path / "notification" / "post.txt.j2").write_text("{{ post.nonexistent }}")
    with pytest.raises(jinja2.UndefinedError):
        Renderer(tmp_path).render("dev", "notification/post.txt.j2", CONTEXT)


def test_owner_templates_run_in_a_sandbox_that_bounds_what_they_can_make() -> None:
    """S36: no Python internals, no mutation, no gigabyte strings or huge powers."""
    import jinja2.sandbox

    from mailforum.render import sandbox

    env = sandbox(jinja2.BaseLoader())
    assert (
        env.from_string('{{ "ab" * 3 }} {{ 2 ** 10 }} {{ x|join(",") }}').render(x=[1, 2])
        == "ababab 1024 1,2"
    )
    for source in (
        '{{ "x" * 10**8 }}',
        "{{ [0] * 2000000 }}",
        "{{ 2 ** 100000 }}",
        "{{ x.__class__.__mro__ }}",
        "{{ x.append(3) }}",
        "{% for i in range(10**7) %}{% endfor %}",
    ):
        with pytest.raises((jinja2.sandbox.SecurityError, OverflowError)):
            env.from_string(source).render(x=[1, 2])
