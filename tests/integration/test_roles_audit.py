"""Roles (site admins, list owners, moderators) and the audit log, through the CLI and core."""

from __future__ import annotations

import json

from mailforum.core import audit, lists, moderation, roles
from mailforum.db.models import AuditEntry


def test_admins_are_added_listed_removed_and_audited(site):
    added = site.cli("admins", "add", "Root@Example.com", "ops@example.com")
    assert added.returncode == 0, added.stderr
    assert "root@example.com: added" in added.stdout
    again = site.cli("admins", "add", "root@example.com")
    assert "already an admin" in again.stdout
    assert site.cli("admins").stdout.split() == ["root@example.com", "ops@example.com"]
    removed = site.cli("admins", "remove", "ops@example.com", "nobody@example.com")
    assert (
        "ops@example.com: removed" in removed.stdout and "nobody@example.com: not an admin" in removed.stdout
    )
    assert site.cli("admins", "list").stdout.split() == ["root@example.com"]
    log = json.loads(site.cli("audit", "--json").stdout)
    assert [(e["action"], e["target"], e["actor"], e["origin"]) for e in log] == [
        ("admins.remove", "ops@example.com", "cli", "cli"),
        ("admins.add", "ops@example.com", "cli", "cli"),
        ("admins.add", "root@example.com", "cli", "cli"),
    ]


def test_admins_add_refuses_a_bad_address_and_changes_nothing(site):
    bad = site.cli("admins", "add", "root@example.com", "not-an-address")
    assert bad.returncode != 0 and "not a valid address" in bad.stderr
    assert site.cli("admins").stdout.split() == []
    assert site.cli("admins", "add").returncode != 0


def test_owners_per_list_and_the_roles_nest(site):
    site.create_list("dev")
    site.create_list("ops")
    assert site.cli("lists", "owners", "dev", "add", "ann@example.com").returncode == 0
    assert site.cli("lists", "owners", "dev").stdout.split() == ["ann@example.com"]
    assert site.cli("lists", "owners", "ops").stdout.split() == []
    assert site.cli("lists", "owners", "nolist", "add", "ann@example.com").returncode != 0
    site.cli("admins", "add", "root@example.com")
    with site.db.session() as session:
        dev, ops = lists.get_list(session, "dev"), lists.get_list(session, "ops")
        moderation.add_moderator(session, dev, "mod@example.com")
    with site.db.read_session() as session:
        dev, ops = lists.get_list(session, "dev"), lists.get_list(session, "ops")
        assert roles.is_owner(session, dev, "ANN@example.com")
        assert not roles.is_owner(session, ops, "ann@example.com")
        assert roles.is_moderator(session, dev, "ann@example.com")  # an owner moderates
        assert roles.is_moderator(session, dev, "mod@example.com")
        assert not roles.is_owner(session, dev, "mod@example.com")  # a moderator does not own
        assert roles.is_owner(session, ops, "root@example.com")  # an admin owns every list
        assert [m.name for m in roles.owned_lists(session, "ann@example.com")] == ["dev"]
        assert [m.name for m in roles.owned_lists(session, "root@example.com")] == ["dev", "ops"]
    removed = site.cli("lists", "owners", "dev", "remove", "ann@example.com")
    assert "ann@example.com: removed" in removed.stdout
    log = json.loads(site.cli("audit", "--list", "dev", "--json").stdout)
    assert [(e["action"], e["target"], e["detail"]["list"]) for e in log] == [
        ("owners.remove", "ann@example.com", "dev"),
        ("owners.add", "ann@example.com", "dev"),
    ]


def test_audit_entries_are_one_line_capped_and_outlive_their_list(site):
    site.create_list("dev")
    with site.db.session() as session:
        dev = lists.get_list(session, "dev")
        audit.record(
            session,
            actor="ann@example.com\r\nX-Injected: 1",
            origin="192.0.2.1",
            action="held.reject",
            mailing_list=dev,
            target="x" * 2000,
            detail={"reason": "spam\nfake line", "count": 2},
        )
    with site.db.session() as session:  # the list goes; its log stays, naming it
        session.delete(lists.get_list(session, "dev"))
    with site.db.read_session() as session:
        (entry,) = audit.entries(session)
        assert "\n" not in entry.actor and "\r" not in entry.actor
        assert len(entry.target) == 512
        assert entry.detail == {"reason": "spam fake line", "count": 2, "list": "dev"}
        assert session.get(AuditEntry, entry.id) is not None and entry.list_id is None
    text = site.cli("audit").stdout
    assert len(text.splitlines()) == 1


def test_the_audit_command_filters_by_actor_action_and_time(site):
    site.create_list("dev")
    assert site.cli("lists", "owners", "dev", "add", "ann@example.com").returncode == 0
    assert site.cli("admins", "add", "root@example.com").returncode == 0
    with site.db.session() as session:
        audit.record(session, actor="bob@example.com", origin="10.0.0.1", action="members.add", target="x")
        old = audit.record(
            session, actor="cli", origin="cli", action="owners.remove", target="old@example.com"
        )
        old.at = old.at.replace(year=2020)

    def shown(*args: str) -> list[tuple[str, str]]:
        r = site.cli("audit", "--json", *args)
        assert r.returncode == 0, r.stderr
        return [(e["actor"], e["action"]) for e in json.loads(r.stdout)]

    assert shown("--actor", "Bob@Example.com") == [("bob@example.com", "members.add")]
    assert shown("--action", "owners") == [("cli", "owners.remove"), ("cli", "owners.add")]
    assert shown("--action", "owners.add", "--actor", "cli") == [("cli", "owners.add")]
    assert shown("--action", "owner") == []
    assert len(shown("--since", "2021-01-01")) == 3
    assert shown("--since", "2019-06-01T00:00:00+02:00", "--action", "owners.remove") == [
        ("cli", "owners.remove")
    ]
    assert shown("--list", "dev", "--since", "2021-01-01") == [("cli", "owners.add")]
    bad = site.cli("audit", "--since", "last week")
    assert bad.returncode == 1 and "not an ISO 8601 date" in bad.stderr
