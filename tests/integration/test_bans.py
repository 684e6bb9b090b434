"""Bans: by address, domain or pattern, per list or site-wide; posts discarded, joins refused."""

from __future__ import annotations

import pytest
from sqlalchemy import select

from mailforum.core import bans, lists, routing, subscriptions
from mailforum.db.models import ConfirmAction, Post, SpoolEntry, SpoolState, utcnow
from mailforum.errors import InvalidInput
from mailforum.mail.parse import parse
from tests.helpers import DOMAIN, message, send, wait_for


def process(site, raw: bytes, sender: str, list_name: str = "dev") -> str:
    now = utcnow()
    with site.db.session() as session:
        out = routing.process(
            session, site.config, parse(raw), raw, sender, (f"{list_name}@{DOMAIN}",), None, now, now
        )
        return out[0].summary


@pytest.mark.parametrize(
    ("pattern", "address", "hit"),
    [
        ("ann@example.com", "ANN@example.com", True),
        ("ann@example.com", "ann@example.com.evil", False),
        ("@example.com", "bob@example.com", True),
        ("@example.com", "bob@mail.example.com", True),
        ("@example.com", "bob@notexample.com", False),
        ("^spam[0-9]+@", "spam12@anywhere.org", False),  # fullmatch: the whole address
        ("^spam[0-9]+@.*", "spam12@anywhere.org", True),
        ("^spam[0-9]+@.*", "nospam12@anywhere.org", False),
    ],
)
def test_a_pattern_matches_what_it_says(pattern: str, address: str, hit: bool) -> None:
    assert bans.matches(bans.normalise(pattern), address) is hit


@pytest.mark.parametrize("bad", ["", "no-at-sign", "@", "@bad domain", "^([a-z]+", "a@b\nc", "x" * 400])
def test_a_bad_pattern_is_refused_with_a_reason(bad: str) -> None:
    with pytest.raises(InvalidInput, match="bad ban pattern"):
        bans.normalise(bad)


def test_posts_from_banned_senders_are_discarded_on_their_list_and_everywhere_for_site_bans(site) -> None:
    site.create_list("dev")
    site.create_list("ops")
    site.add_members("dev", "ann@example.com", "spammer@bad.example")
    site.add_members("ops", "ann@example.com", "troll@example.net")
    with site.db.session() as session:
        bans.add(session, lists.get_list(session, "dev"), ["@bad.example"])
        bans.add(session, None, ["^troll@.*"])
    summary = process(
        site, message("Buy now", "<s1@bad.example>", sender="spammer@bad.example"), "spammer@bad.example"
    )
    assert "banned sender (@bad.example)" in summary
    assert "banned sender (^troll@.*)" in process(
        site, message("Flame", "<t1@example.net>", sender="troll@example.net"), "troll@example.net", "ops"
    )
    # The envelope sender is checked too, and a ban on dev does not reach ops.
    assert "banned" in process(site, message("Hi", "<a1@example.com>"), "bounce@bad.example")
    assert "banned" not in process(site, message("Hi", "<a2@example.com>"), "bounce@bad.example", "ops")
    assert "banned" not in process(site, message("Fine", "<a3@example.com>"), "ann@example.com")
    with site.db.read_session() as session:
        subjects = set(session.scalars(select(Post.subject)))
    assert subjects == {"Hi", "Fine"}
    with site.db.session() as session:
        assert bans.remove(session, lists.get_list(session, "dev"), ["@BAD.example", "@other.example"]) == [
            "@bad.example"
        ]
    assert "banned" not in process(
        site, message("Back", "<s2@bad.example>", sender="spammer@bad.example"), "x@y.z"
    )


def test_a_banned_address_gets_no_confirmation_mail(site) -> None:
    site.create_list("dev")
    with site.db.session() as session:
        mlist = lists.get_list(session, "dev")
        bans.add(session, mlist, ["@bad.example"])
        now = utcnow()
        assert not subscriptions.request(
            session, site.config, mlist, lists.Address("joe@bad.example"), ConfirmAction.SUBSCRIBE, now
        )
        assert subscriptions.request(
            session, site.config, mlist, lists.Address("joe@good.example"), ConfirmAction.SUBSCRIBE, now
        )


def test_the_cli_adds_lists_and_lifts_bans_and_refuses_bad_patterns(site) -> None:
    site.create_list("dev")
    r = site.cli("bans", "dev", "add", "Spam@Example.com", "@bad.example", "^x.*@y$")
    assert r.returncode == 0, r.stderr
    assert "banned 3 pattern(s) on dev" in r.stdout
    assert site.cli("bans", "dev").stdout.split() == ["spam@example.com", "@bad.example", "^x.*@y$"]
    bad = site.cli("bans", "dev", "add", "ok@example.com", "^(")
    assert bad.returncode == 1 and "not a regular expression" in bad.stderr
    assert "ok@example.com" not in site.cli("bans", "dev", "list").stdout  # all or nothing
    assert site.cli("bans", "*", "add", "@site.example").returncode == 0
    assert site.cli("bans", "*").stdout.split() == ["@site.example"]
    assert "lifted 1 pattern(s)" in site.cli("bans", "dev", "remove", "@bad.example", "@never.example").stdout
    assert "no list" in site.cli("bans", "nosuch").stderr
    assert site.cli("bans", "dev", "add").returncode == 1


def test_a_banned_sender_over_smtp_is_kept_in_the_spool_with_the_reason(site, server) -> None:
    site.create_list("dev")
    site.add_members("dev", "ann@example.com")
    with site.db.session() as session:
        bans.add(session, lists.get_list(session, "dev"), ["ann@example.com"])
    send(site.config, message("Banned hello", "<b1@example.com>"))

    def discarded():
        with site.db.read_session() as session:
            return session.scalars(
                select(SpoolEntry).where(SpoolEntry.state == SpoolState.DISCARDED.value)
            ).first()

    entry = wait_for(discarded)
    assert "banned sender (ann@example.com)" in (entry.outcome or "")
