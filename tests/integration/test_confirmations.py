"""Confirmation tokens and their table (core.subscriptions), with a controllable clock.

RELIABILITY S5 (one pending per list and address, three mails a day) and S6 (expired,
reused, tampered, cross-purpose and cross-list tokens; simultaneous confirms; tokens
never logged). The end-to-end paths over SMTP and HTTP are in test_commands.py.
"""

from __future__ import annotations

import datetime as dt
import logging
import threading
from dataclasses import replace

from sqlalchemy import select

from mailforum.core import lists, subscriptions, tokens
from mailforum.core.subscriptions import Status
from mailforum.db.models import ConfirmAction, Confirmation, OutboxEntry

NOW = dt.datetime(2026, 11, 26, 12, 0, tzinfo=dt.UTC)


def ask(
    site, address="ann@example.com", action=ConfirmAction.SUBSCRIBE, now=NOW, list_name="dev", config=None
):
    with site.db.session() as session:
        mlist = lists.get_list(session, list_name)
        who = lists.Address(address, "Ann")
        return subscriptions.request(session, config or site.config, mlist, who, action, now)


def token_of(site, address="ann@example.com") -> str:
    """The token from the newest confirmation mail to ``address`` (its Reply-To)."""
    with site.db.read_session() as session:
        row = session.scalars(
            select(OutboxEntry).where(OutboxEntry.recipient == address).order_by(OutboxEntry.id.desc())
        ).first()
    assert row is not None and row.payload["template"] == "command/confirm"
    return row.payload["reply_to"].split("+confirm-")[1].split("@")[0]


def confirm(site, token, now=NOW, config=None):
    with site.db.session() as session:
        return subscriptions.confirm(session, config or site.config, token, now)


def is_member(site, address="ann@example.com", list_name="dev") -> bool:
    with site.db.read_session() as session:
        mlist = lists.get_list(session, list_name)
        return lists.find_member(session, mlist.id, address) is not None


def test_a_token_works_once(site):
    site.create_list("dev")
    assert ask(site)
    token = token_of(site)
    assert not is_member(site)
    assert confirm(site, token).status is Status.DONE
    assert is_member(site)
    assert confirm(site, token).status is Status.ALREADY


def test_tokens_expire_after_the_configured_days(site):
    site.create_list("dev")
    assert ask(site)
    token = token_of(site)
    assert confirm(site, token, NOW + dt.timedelta(days=7, minutes=1)).status is Status.EXPIRED
    short = replace(site.config, subscriptions=replace(site.config.subscriptions, confirm_days=1.0))
    assert ask(site, "bob@example.com", config=short)
    assert (
        confirm(site, token_of(site, "bob@example.com"), NOW + dt.timedelta(days=2)).status is Status.EXPIRED
    )
    assert not is_member(site) and not is_member(site, "bob@example.com")


def test_tampered_cross_purpose_and_cross_list_tokens_are_refused(site):
    site.create_list("dev")
    site.create_list("ops")
    assert ask(site)
    token = token_of(site)
    flipped = token[:-1] + ("a" if token[-1] != "a" else "b")
    assert confirm(site, flipped).status is Status.INVALID
    assert confirm(site, "").status is Status.INVALID
    key = tokens.derive_key(site.config.site.secret_key)
    with site.db.read_session() as session:
        row = session.scalars(select(Confirmation)).one()
        ops = lists.get_list(session, "ops")
    expires = NOW + dt.timedelta(days=1)
    other_list = tokens.sign(key, tokens.CONFIRM, (row.id, ops.id), expires)
    assert confirm(site, other_list).status is Status.INVALID
    other_purpose = tokens.sign(key, tokens.UNSUBSCRIBE, (row.id, row.list_id), expires)
    assert confirm(site, other_purpose).status is Status.INVALID
    with site.db.session() as session:  # and a confirmation token is no unsubscribe link
        assert subscriptions.unsubscribe_by_link(session, site.config, token, NOW).status is Status.INVALID
    assert not is_member(site)
    assert confirm(site, token).status is Status.DONE


def test_two_simultaneous_confirms_act_once(site):
    site.create_list("dev")
    assert ask(site)
    token = token_of(site)
    barrier = threading.Barrier(2)
    results: list[Status] = []

    def one() -> None:
        barrier.wait()
        results.append(confirm(site, token).status)

    threads = [threading.Thread(target=one) for _ in range(2)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(30)
    assert sorted(results) == [Status.ALREADY, Status.DONE]
    with site.db.read_session() as session:
        welcomes = session.scalars(
            select(OutboxEntry).where(OutboxEntry.recipient == "ann@example.com")
        ).all()
    assert [w.payload["template"] for w in welcomes] == ["command/confirm", "command/welcome"]


def test_one_pending_request_per_list_and_address_and_three_mails_a_day(site):
    for name in ("a", "b", "c", "d"):
        site.create_list(name)
    assert ask(site, list_name="a")
    assert not ask(site, list_name="a", now=NOW + dt.timedelta(minutes=1))  # already pending
    assert ask(site, list_name="b")
    assert ask(site, list_name="c")
    assert not ask(site, list_name="d")  # the fourth mail today
    assert ask(site, list_name="d", now=NOW + dt.timedelta(hours=25))  # tomorrow


def test_a_new_kind_of_request_supersedes_the_pending_one(site):
    site.create_list("dev")
    site.add_members("dev", "ann@example.com")
    assert ask(site)
    first = token_of(site)
    assert ask(site, action=ConfirmAction.UNSUBSCRIBE, now=NOW + dt.timedelta(minutes=5))
    assert confirm(site, first, NOW + dt.timedelta(minutes=6)).status is Status.EXPIRED
    assert confirm(site, token_of(site), NOW + dt.timedelta(minutes=6)).status is Status.DONE
    assert not is_member(site)


def test_a_member_who_confirms_a_subscribe_hears_they_are_a_member(site):
    site.create_list("dev")
    site.add_members("dev", "ann@example.com")
    assert ask(site)
    outcome = confirm(site, token_of(site))
    assert (outcome.status, outcome.detail) == (Status.ALREADY, "already a member")


def test_tokens_are_never_logged(site, caplog):
    site.create_list("dev")
    caplog.set_level(logging.DEBUG)
    assert ask(site)
    token = token_of(site)
    confirm(site, token)
    confirm(site, token)
    assert ask(site, action=ConfirmAction.UNSUBSCRIBE)
    second = token_of(site)
    confirm(site, second)
    assert token not in caplog.text and second not in caplog.text
    assert "confirm-" not in caplog.text
