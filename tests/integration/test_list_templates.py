"""A list's own mail templates (``lists templates``, the owner pages): kept only when they
compile, rendered in the sandbox, and a stored template that fails when a mail is rendered
falls back to the built-in one, so the copy still goes out (RELIABILITY S36, B55)."""

from __future__ import annotations

import logging

from sqlalchemy import select

from mailforum.core import list_templates, lists
from mailforum.db.models import AuditEntry, ListTemplate
from tests.helpers import DOMAIN, message, send, wait_for
from tests.integration.outbound_helpers import LIST, as_email, settled

POST = "notification/post.txt.j2"


def post(site, subject: str, message_id: str, sender: str = "ann@example.com") -> None:
    send(site.config, message(subject, message_id, sender=sender, body="Hello there.\n"), [LIST], sender)


def body_for(relay, address: str, count: int) -> list[str]:
    wait_for(lambda: len(relay.messages_for(address)) >= count)
    texts = []
    for transaction in relay.messages_for(address):
        part = as_email(transaction.data).get_body(("plain",))
        assert part is not None
        texts.append(part.get_content().replace("\r\n", "\n"))
    return texts


def test_the_cli_lists_shows_sets_and_resets_templates_and_refuses_bad_ones(site, tmp_path):
    site.create_list("dev")
    names = site.cli("lists", "templates", "dev").stdout.splitlines()
    assert f"{POST}  built-in" in names and "command/help.txt.j2  built-in" in names
    assert not any(n.startswith(("web/", "signin/")) for n in names)
    builtin = site.cli("lists", "templates", "dev", "show", POST)
    assert builtin.returncode == 0 and builtin.stdout.startswith("{{ post.text }}")

    good = tmp_path / "good.j2"
    good.write_text("Our list says:\n{{ post.text }}\n", encoding="utf-8")
    done = site.cli("lists", "templates", "dev", "set", POST, str(good))
    assert done.returncode == 0 and done.stdout.strip() == f"dev: {POST} set", done.stderr
    assert (
        site.cli("lists", "templates", "dev", "set", POST, str(good)).stdout.strip()
        == f"dev: {POST} unchanged"
    )
    assert site.cli("lists", "templates", "dev", "show", POST).stdout == good.read_text()
    assert f"{POST}  own (by cli)" in site.cli("lists", "templates", "dev").stdout
    piped = site.cli("lists", "templates", "dev", "set", "command/help.txt.j2", "-", input=b"Help!\n")
    assert piped.returncode == 0, piped.stderr

    broken = tmp_path / "broken.j2"
    broken.write_text("line one\n{% if post.text %}\nno end\n", encoding="utf-8")
    bad = site.cli("lists", "templates", "dev", "set", POST, str(broken))
    assert bad.returncode == 1 and "does not compile: line 3" in bad.stderr and "endif" in bad.stderr, (
        bad.stderr
    )
    big = tmp_path / "big.j2"
    big.write_bytes(b"x" * (64 * 1024 + 1))
    too_big = site.cli("lists", "templates", "dev", "set", POST, str(big))
    assert too_big.returncode == 1 and "over 65536 bytes" in too_big.stderr
    binary = tmp_path / "binary.j2"
    binary.write_bytes(b"\xff\xfe\x00")
    assert "not UTF-8 text" in site.cli("lists", "templates", "dev", "set", POST, str(binary)).stderr
    for args in (("set", "web/base.html", str(good)), ("show", "../../etc/passwd"), ("reset", "nosuch.j2")):
        refused = site.cli("lists", "templates", "dev", *args)
        assert refused.returncode == 1 and "no mail template named" in refused.stderr, (args, refused.stderr)
    assert "give the template's NAME" in site.cli("lists", "templates", "dev", "show").stderr
    assert "no list named 'nope'" in site.cli("lists", "templates", "nope").stderr

    reset = site.cli("lists", "templates", "dev", "reset", POST)
    assert reset.stdout.strip() == f"dev: {POST} reset to the built-in one"
    assert (
        site.cli("lists", "templates", "dev", "reset", POST).stdout.strip()
        == f"dev: {POST} was the built-in one"
    )
    with site.db.read_session() as session:
        kept = session.scalars(select(ListTemplate.name)).all()
        mlist = lists.get_list(session, "dev")
        log = [(e.action, e.target) for e in session.scalars(select(AuditEntry).order_by(AuditEntry.id))]
    assert kept == ["command/help.txt.j2"] and mlist.templates_version == 3
    assert log == [
        ("templates.set", POST),
        ("templates.set", "command/help.txt.j2"),
        ("templates.reset", POST),
    ]


def set_template(site, name: str, source: str) -> None:
    with site.db.session() as session:
        list_templates.set_template(session, lists.get_list(session, "dev"), name, source, "test")


def test_stored_templates_are_used_and_a_broken_one_falls_back_so_the_copy_still_goes_out(
    site, relay, server, caplog
):
    site.create_list("dev")
    site.add_members("dev", "ann@example.com", "bob@example.com")
    set_template(site, POST, "Our own words.\n{{ post.text }}{% include '_partials/footer.txt.j2' %}")
    post(site, "First", "<t1@example.com>")
    assert body_for(relay, "bob@example.com", 1)[0].startswith("Our own words.\nHello there.")

    caplog.set_level(logging.WARNING, logger="mailforum.render")
    set_template(site, POST, "Broken: {{ no_such_thing.at_all }}\n")  # compiles; fails when rendered
    post(site, "Second", "<t2@example.com>")
    second = body_for(relay, "bob@example.com", 2)[1]
    assert second.startswith("Hello there.") and "Broken" not in second  # the built-in template
    assert f"its stored template {POST} failed (UndefinedError" in caplog.text

    set_template(site, POST, "{{ post.__class__.__mro__ }}{{ ''.__class__.__subclasses__() }}\n")
    post(site, "Third", "<t3@example.com>")
    third = body_for(relay, "bob@example.com", 3)[2]
    assert third.startswith("Hello there.") and "class" not in third  # the sandbox refused it
    assert "SecurityError" in caplog.text or "UndefinedError" in caplog.text
    wait_for(lambda: settled(site))


def test_a_template_cannot_put_cr_or_lf_into_a_header(site, relay, server):
    """A command answer's subject comes from the template's subject block: whatever it
    prints, the Subject is one line and no header is added (S36)."""
    site.create_list("dev")
    site.add_members("dev", "ann@example.com")
    set_template(
        site,
        "command/help.txt.j2",
        '{% extends "command/_layout.txt.j2" %}{% block subject %}Hi\r\nBcc: evil@example.net\n'
        "X-Evil: 1{% endblock %}{% block body %}Ask us.{% endblock %}",
    )
    raw = message("help", "<h1@example.com>", sender="ann@example.com", to=f"dev-request@{DOMAIN}")
    send(site.config, raw, [f"dev-request@{DOMAIN}"], "ann@example.com")
    wait_for(lambda: relay.messages_for("ann@example.com"))
    answer = relay.messages_for("ann@example.com")[0]
    assert answer.rcpt_tos == ["ann@example.com"]
    mail = as_email(answer.data)
    assert mail["Subject"] == "Hi Bcc: evil@example.net X-Evil: 1" and mail["X-Evil"] is None
    assert mail["Bcc"] is None and "Ask us." in mail.get_body(("plain",)).get_content()


def test_a_lists_own_digest_template_is_used_for_its_digests(site):
    from mailforum.db.models import DeliveryMode, PostingPolicy
    from tests.integration.outbound_helpers import store

    site.create_list("dev", PostingPolicy.OPEN)
    site.add_members("dev", "dora@example.com", mode=DeliveryMode.DIGEST)
    assert "published" in store(site, message("Digest me", "<d1@example.com>", sender="ann@example.com"))[0]
    set_template(
        site,
        "digest/daily.txt.j2",
        "Our own digest of {{ list.title }}: {{ digest.posts }} post(s)\n"
        "{% for t in topics %}* {{ t.subject }}\n{% endfor %}",
    )
    dry = site.cli("digest", "send", "--list", "dev", "--dry-run")
    assert dry.returncode == 0, dry.stderr
    assert "Our own digest of dev: 1 post(s)\n* Digest me" in dry.stdout


def test_an_owners_address_on_a_template_is_in_their_data_and_forgotten(site):
    import json

    site.create_list("dev")
    with site.db.session() as session:
        dev = lists.get_list(session, "dev")
        list_templates.set_template(session, dev, POST, "{{ post.text }}\n", "Owner@Example.com")
    data = json.loads(site.cli("members", "data", "owner@example.com").stdout)
    assert [r["name"] for r in data["tables"]["list_templates"]] == [POST]
    assert site.cli("members", "forget", "owner@example.com").returncode == 0
    with site.db.read_session() as session:
        assert session.scalars(select(ListTemplate.updated_by)).all() == ["former-member@invalid"]
