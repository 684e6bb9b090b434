"""RELIABILITY B53: every address we write fits 64 octets, for the longest list name we
accept, with large ids; and those addresses route back over real SMTP."""

from __future__ import annotations

import datetime as dt
import smtplib
from email.utils import getaddresses

from mailforum.core import bounces, moderation, routing, tokens
from mailforum.core.lists import get_list
from mailforum.db.models import Member, utcnow
from mailforum.mail.addresses import LOCAL_PART_MAX, MAX_LIST_NAME, Kind, list_address, parse_recipient
from tests.helpers import DOMAIN, message, send, wait_for
from tests.integration.outbound_helpers import as_email, settled

NAME = "long-name." + "x" * (MAX_LIST_NAME - len("long-name."))
BIG = tokens.MAX_ID


def written_addresses(site) -> dict[str, str]:
    """Every kind of address we write, made by the code that writes it, with large ids."""
    config, now = site.config, utcnow()
    key = tokens.derive_key(config.site.secret_key)
    later = now + dt.timedelta(days=365)
    with site.db.read_session() as session:
        mlist = get_list(session, NAME)
        enable = bounces.enable_token(config, Member(id=BIG), now)
        moderate = moderation.reply_address(config, mlist, BIG, moderation.REJECT, now)
    confirm = tokens.sign_short(key, tokens.CONFIRM, (BIG,), later)
    return {
        "post": list_address(NAME, DOMAIN),
        "reply": list_address(
            NAME, DOMAIN, Kind.REPLY, tokens.sign_short(key, tokens.REPLY, (BIG, BIG), later)
        ),
        "digest reply": f"{NAME}+r-{tokens.Signer(key, tokens.REPLY, later).sign((BIG, BIG))}@{DOMAIN}",
        "verp": list_address(NAME, DOMAIN, Kind.BOUNCES, tokens.sign_short(key, tokens.VERP, (BIG,), later)),
        "confirm": list_address(NAME, DOMAIN, Kind.CONFIRM, confirm),
        "enable": list_address(NAME, DOMAIN, Kind.ENABLE, enable),
        "moderate": moderate,
        "watch": list_address(NAME, DOMAIN, Kind.WATCH, str(BIG)),
        "mute": list_address(NAME, DOMAIN, Kind.MUTE, str(BIG)),
        "unsubscribe": list_address(NAME, DOMAIN, Kind.UNSUBSCRIBE),
        "subscribe": list_address(NAME, DOMAIN, Kind.SUBSCRIBE),
        "request": list_address(NAME, DOMAIN, Kind.REQUEST),
        "owner": list_address(NAME, DOMAIN, Kind.OWNER),
        "bounces": list_address(NAME, DOMAIN, Kind.BOUNCES),
    }


def test_every_address_of_the_longest_name_fits_and_is_accepted_at_rcpt(site, server):
    site.create_list(NAME)
    written = written_addresses(site)
    with smtplib.SMTP("127.0.0.1", site.config.smtp.port, timeout=10) as client:
        client.ehlo()
        client.mail("bob@example.com")
        for what, address in written.items():
            local = address.rpartition("@")[0]
            assert len(local.encode()) <= LOCAL_PART_MAX, (what, address)
            recipient = parse_recipient(address, DOMAIN)
            assert recipient.list_name == NAME, what
            if recipient.kind in routing.ROUTES:  # -owner has no route yet
                assert client.rcpt(address)[0] == 250, (what, address)
        client.rset()


def test_a_longer_name_is_refused_clearly(site):
    result = site.cli("lists", "create", NAME + "y")
    assert result.returncode != 0 and f"at most {MAX_LIST_NAME} characters" in result.stderr


def test_confirm_and_reply_addresses_of_the_longest_name_route_back(site, relay, server):
    site.create_list(NAME)
    site.add_members(NAME, "ann@example.com", "bob@example.com")
    newbie = "newbie@example.com"
    send(site.config, message("", "<s1@example.com>", sender=newbie), [f"{NAME}+subscribe@{DOMAIN}"], newbie)
    [ask] = wait_for(lambda: [as_email(t.data) for t in relay.messages_for(newbie)])
    confirm_to = getaddresses([str(ask["Reply-To"])])[0][1]
    assert confirm_to.startswith(f"{NAME}+confirm-") and len(confirm_to.rpartition("@")[0]) <= 64
    send(
        site.config,
        message("Re: " + str(ask["Subject"]), "<s2@example.com>", sender=newbie),
        [confirm_to],
        newbie,
    )
    wait_for(lambda: _member(site, newbie))

    send(site.config, message("Hello", "<t1@example.com>"), [list_address(NAME, DOMAIN)], "ann@example.com")
    wait_for(lambda: relay.messages_for("bob@example.com") and settled(site))
    [copy] = relay.messages_for("bob@example.com")
    reply_to = getaddresses([str(as_email(copy.data)["Reply-To"])])[0][1]
    for address in (reply_to, copy.mail_from):
        assert len(address.rpartition("@")[0]) <= LOCAL_PART_MAX, address
    assert copy.mail_from.startswith(f"{NAME}-bounces+")
    send(
        site.config,
        message("my answer", "<r1@example.com>", sender="bob@example.com"),
        [reply_to],
        "bob@example.com",
    )
    answer = wait_for(lambda: site.posts_by_id(NAME).get("<r1@example.com>"))
    assert answer["parent_message_id"] == "<t1@example.com>"


def _member(site, address: str) -> bool:
    from mailforum.core.lists import find_member

    with site.db.read_session() as session:
        return find_member(session, get_list(session, NAME).id, address) is not None
