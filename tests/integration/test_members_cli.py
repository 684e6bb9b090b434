"""``members add --welcome``, ``members invite`` and ``members show`` (real CLI processes)."""

from __future__ import annotations

from sqlalchemy import select

from mailforum.db.models import Confirmation, OutboxEntry
from tests.integration.outbound_helpers import subscribe


def notices(site) -> list[tuple[str, str]]:
    with site.db.read_session() as session:
        rows = session.scalars(select(OutboxEntry).order_by(OutboxEntry.id)).all()
    return [(r.recipient, r.payload["template"]) for r in rows]


def test_members_add_sends_no_mail_unless_asked_to_welcome(site):
    site.create_list("dev")
    assert site.cli("members", "add", "dev", "ann@example.com").returncode == 0
    assert notices(site) == []
    done = site.cli("members", "add", "dev", "--welcome", "ann@example.com", "Bob <bob@example.com>")
    assert done.returncode == 0, done.stderr
    assert "1 welcome mail(s) queued" in done.stdout
    assert notices(site) == [("bob@example.com", "command/welcome")]  # ann was a member already


def test_members_invite_sends_confirmations_not_memberships(site):
    site.create_list("dev")
    done = site.cli("members", "invite", "dev", "ann@example.com", "bob@example.com")
    assert done.returncode == 0, done.stderr
    assert "queued 2 invitation(s)" in done.stdout
    assert site.cli("members", "list", "dev").stdout == ""
    assert notices(site) == [("ann@example.com", "command/confirm"), ("bob@example.com", "command/confirm")]
    again = site.cli("members", "invite", "dev", "ann@example.com")
    assert "queued 0" in again.stdout and "1 not sent" in again.stdout
    with site.db.read_session() as session:
        assert {c.source for c in session.scalars(select(Confirmation))} == {"invite"}
    bad = site.cli("members", "invite", "dev", "not-an-address")
    assert bad.returncode != 0 and len(bad.stderr.strip().splitlines()) == 1


def test_members_show_prints_mode_digest_and_topics(site):
    from tests.helpers import message
    from tests.integration.outbound_helpers import store

    site.create_list("dev")
    site.add_members("dev", "Ann <ann@example.com>", "bob@example.com")
    store(site, message("First", "<t1@example.com>", sender="bob@example.com"))
    store(site, message("Second", "<t2@example.com>", sender="bob@example.com"))
    subscribe(site, "ann@example.com", "<t1@example.com>", "watch")
    subscribe(site, "ann@example.com", "<t2@example.com>", "mute")
    shown = site.cli("members", "show", "dev", "ANN@example.com")
    assert shown.returncode == 0, shown.stderr
    fields = dict(line.split(":", 1) for line in shown.stdout.splitlines())
    fields = {k: v.strip() for k, v in fields.items()}
    assert fields["address"] == "ann@example.com" and fields["name"] == "Ann"
    assert (fields["mode"], fields["digest"]) == ("all", "off")
    assert fields["watching"] == "1" and fields["muted"] == "2"
    assert fields["digest at"] == "07:00 UTC (the list's)"
    missing = site.cli("members", "show", "dev", "nobody@example.com")
    assert missing.returncode != 0 and "not a member" in missing.stderr
    assert len(missing.stderr.strip().splitlines()) == 1


def test_members_set_nodupes_and_show_it(site):
    site.create_list("dev")
    site.add_members("dev", "ann@example.com", "bob@example.com")
    shown = site.cli("members", "show", "dev", "ann@example.com")
    assert "nodupes:   on" in shown.stdout  # the default: no list copy of a post addressed to you
    done = site.cli("members", "set", "dev", "ANN@example.com", "bob@example.com", "--nodupes", "off")
    assert done.returncode == 0, done.stderr
    assert done.stdout.splitlines() == ["ann@example.com: nodupes off", "bob@example.com: nodupes off"]
    assert "nodupes:   off" in site.cli("members", "show", "dev", "ann@example.com").stdout
    missing = site.cli("members", "set", "dev", "nobody@example.com", "--nodupes", "on")
    assert missing.returncode != 0 and "not a member" in missing.stderr


def test_members_set_digest_hour_and_time_zone_and_show_them(site):
    site.create_list("dev")
    site.add_members("dev", "ann@example.com")
    done = site.cli(
        "members", "set", "dev", "ann@example.com", "--digest-hour", "8", "--digest-timezone", "Asia/Tokyo"
    )
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == "ann@example.com: digest at 08:00 Asia/Tokyo"
    assert "digest at: 08:00 Asia/Tokyo\n" in site.cli("members", "show", "dev", "ann@example.com").stdout
    back = site.cli(
        "members", "set", "dev", "ann@example.com", "--digest-hour", "list", "--digest-timezone", "list"
    )
    assert back.returncode == 0, back.stderr
    assert "digest at: 07:00 UTC (the list's)" in site.cli("members", "show", "dev", "ann@example.com").stdout
    bad = site.cli("members", "set", "dev", "ann@example.com", "--digest-timezone", "Mars/Base")
    assert bad.returncode == 1 and "unknown time zone 'Mars/Base'" in bad.stderr
    nothing = site.cli("members", "set", "dev", "ann@example.com")
    assert nothing.returncode != 0 and "say what to set" in nothing.stderr
