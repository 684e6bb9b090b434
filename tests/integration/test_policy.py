"""Posting policy after acceptance: publish, hold with a reason, or discard with a reason.

Nothing is bounced after the 250 (RELIABILITY I8); held and discarded mail keeps its
reason where an operator can see it.
"""

from __future__ import annotations

import pytest
from sqlalchemy import select

from mailforum.db.models import PostingPolicy, SpoolEntry
from tests.helpers import DOMAIN, message, send, wait_for


@pytest.mark.parametrize(
    ("policy", "sender", "status"),
    [
        (PostingPolicy.MEMBERS, "ann@example.com", "published"),
        (PostingPolicy.MEMBERS, "stranger@example.net", "held"),
        (PostingPolicy.OPEN, "stranger@example.net", "published"),
        (PostingPolicy.MODERATED, "ann@example.com", "held"),
    ],
)
def test_policy_decides_published_or_held(site, server, policy, sender, status):
    site.create_list("dev", policy=policy)
    site.add_members("dev", "ann@example.com")
    send(site.config, message(sender=sender), mail_from=sender)
    post = wait_for(lambda: site.posts_by_id().get("<m1@example.com>"))
    assert post["status"] == status


def test_held_post_keeps_its_reason(site, server):
    site.create_list("dev")
    send(site.config, message(sender="stranger@example.net"), mail_from="stranger@example.net")
    state, outcome = site.outcome_of("<m1@example.com>")
    assert state == "done"
    assert "held (not-member)" in outcome


@pytest.mark.parametrize(
    ("extra", "mail_from", "rule"),
    [
        ("", "", "auto-submitted"),  # a null sender: a bounce or a notice (B11)
        ("Auto-Submitted: auto-replied", "ann@example.com", "auto-submitted"),
        ("Precedence: bulk", "ann@example.com", "auto-submitted"),
        (f"X-Loop: dev@{DOMAIN}", "ann@example.com", "loop"),
        (f"List-Id: Dev <dev.{DOMAIN}>", "ann@example.com", "loop"),
        # Our copy came back through another list that put its own marker on top (B49).
        (f"X-Loop: other@lists.example.net\nX-Loop: dev@{DOMAIN}", "ann@example.com", "loop"),
        (f"List-Id: <other.example.net>\nList-Id: Dev <dev.{DOMAIN}>", "ann@example.com", "loop"),
        (f"List-Post: <mailto:dev@{DOMAIN}>", "ann@example.com", "loop"),
    ],
)
def test_automated_and_looping_mail_is_discarded_with_a_reason(site, server, sink, extra, mail_from, rule):
    site.create_list("dev")
    site.add_members("dev", "ann@example.com")
    send(site.config, message(extra=extra), mail_from=mail_from)
    state, outcome = site.outcome_of("<m1@example.com>")
    assert state == "discarded"
    assert rule in outcome
    assert site.export() == []
    assert sink.transactions == []  # and nobody is answered


@pytest.mark.parametrize("marker", [f"X-Loop: old-dev@{DOMAIN}", f"List-Post: <mailto:dev@{DOMAIN}.example>"])
def test_another_lists_marker_is_not_ours(site, server, marker):
    # "dev@…" inside another address is not this list's marker (B49).
    site.create_list("dev")
    site.add_members("dev", "ann@example.com")
    send(site.config, message(extra=marker))
    assert wait_for(lambda: site.posts_by_id().get("<m1@example.com>"))["status"] == "published"


@pytest.mark.parametrize(
    ("subject", "extra"),
    [
        ("Out of Office: back on Monday", ""),
        ("Automatic reply: your question", ""),
        ("Abwesenheitsnotiz", ""),
        ("Re: release", "X-Vacation: yes"),
        ("Re: release", "X-Autoreply: yes"),
        (
            "Delivery Status Notification",
            'Content-Type: multipart/report; report-type=delivery-status; boundary="b"',
        ),
    ],
)
def test_vacation_notices_and_reports_from_a_member_are_held_not_published(site, server, subject, extra):
    # A member's out-of-office program answering a copy (From: the list) without Auto-Submitted (S10).
    site.create_list("dev")
    site.add_members("dev", "ann@example.com")
    send(site.config, message(subject, extra=extra))
    _, outcome = site.outcome_of("<m1@example.com>")
    assert "held (vacation)" in outcome
    assert site.posts_by_id()["<m1@example.com>"]["status"] == "held"


@pytest.mark.parametrize(
    ("subject", "body"),
    [("unsubscribe", "\n"), ("Hello", "remove me\n"), ("subscribe", "please\n")],
)
def test_administrivia_sent_to_the_list_is_held(site, server, subject, body):
    site.create_list("dev")
    site.add_members("dev", "ann@example.com")
    send(site.config, message(subject, body=body))
    post = wait_for(lambda: site.posts_by_id().get("<m1@example.com>"))
    assert post["status"] == "held"


@pytest.mark.parametrize("from_header", ["", "undisclosed-recipients:;", "not an address"])
def test_mail_without_a_usable_from_is_held_not_published(site, server, from_header):
    site.create_list("dev", policy=PostingPolicy.OPEN)
    raw = message(sender=from_header)
    send(site.config, raw)
    post = wait_for(lambda: site.posts_by_id().get("<m1@example.com>"))
    assert post["status"] == "held"


def test_same_message_twice_is_one_post(site, server):
    site.create_list("dev")
    site.add_members("dev", "ann@example.com")
    raw = message()
    send(site.config, raw)
    send(site.config, raw, lmtp=True)
    send(site.config, b"Received: from mx2.example.net by mx.example.net\r\n" + raw)
    wait_for(lambda: len(_done(site)) == 3)
    assert [p["message_id"] for p in site.export()] == ["<m1@example.com>"]


def test_cross_post_is_one_post_per_list(site, server):
    site.create_list("dev")
    site.create_list("users")
    site.add_members("dev", "ann@example.com")
    site.add_members("users", "ann@example.com")
    send(site.config, message(), [f"dev@{DOMAIN}", f"users@{DOMAIN}"])
    wait_for(lambda: site.export("dev") and site.export("users"))
    assert len(site.export("dev")) == len(site.export("users")) == 1


def test_message_id_squatter_does_not_swallow_the_real_post(site, server):
    site.create_list("dev", policy=PostingPolicy.OPEN)
    send(site.config, message("fake", "<real@example.com>", sender="mallory@evil.example", body="spam\n"))
    send(site.config, message("Real topic", "<real@example.com>", body="the genuine text\n"))
    posts = wait_for(lambda: (p := site.export()) and len(p) == 2 and p)
    texts = {p["text"] for p in posts}
    assert texts == {"spam\n", "the genuine text\n"}


def test_message_without_message_id_gets_a_stable_one_and_dedupes(site, server):
    site.create_list("dev")
    site.add_members("dev", "ann@example.com")
    raw = message(message_id=None)
    send(site.config, raw)
    send(site.config, raw)
    wait_for(lambda: len(_done(site)) == 2)
    posts = site.export()
    assert len(posts) == 1
    assert posts[0]["message_id"].endswith("@mailforum.invalid>")


def _done(site):
    with site.db.read_session() as session:
        return list(session.scalars(select(SpoolEntry.id).where(SpoolEntry.state == "done")))


def authserv(site, **security):
    from dataclasses import replace

    security.setdefault("authserv_id", DOMAIN)
    return replace(site.config, security=replace(site.config.security, **security))


@pytest.mark.parametrize(
    ("results", "status"),
    [
        ([f"{DOMAIN}; dmarc=pass header.from=example.com"], "published"),
        (
            [
                f"{DOMAIN}; dmarc=fail header.from=example.com",
                f"{DOMAIN}; dmarc=pass header.from=example.com",
            ],
            "held",
        ),
        ([], "held"),
    ],
)
def test_member_is_trusted_only_with_our_mtas_verdict(site, results, status):
    from tests.helpers import ServerThread

    config = authserv(site)
    site.create_list("dev")
    site.add_members("dev", "ann@example.com")
    running = ServerThread(config)
    running.start()
    try:
        extra = "".join(f"Authentication-Results: {r}\n" for r in results)
        send(config, message(extra=extra), mail_from="attacker@evil.example")
        post = wait_for(lambda: site.posts_by_id().get("<m1@example.com>"))
        assert post["status"] == status
    finally:
        running.stop()


def test_a_flood_from_one_sender_is_held(site):
    from tests.helpers import ServerThread

    config = authserv(site, authserv_id="", post_rate_per_minute=3)
    site.create_list("dev")
    site.add_members("dev", "ann@example.com")
    running = ServerThread(config)
    running.start()
    try:
        for i in range(5):
            send(config, message(f"post {i}", f"<f{i}@example.com>"))
        posts = wait_for(lambda: (p := site.posts_by_id()) and len(p) == 5 and p)
        statuses = [posts[f"<f{i}@example.com>"]["status"] for i in range(5)]
        assert statuses == ["published"] * 3 + ["held"] * 2
    finally:
        running.stop()


def test_cross_post_notifies_a_member_of_both_lists_once(site):
    from tests.integration.outbound_helpers import rows, store

    site.create_list("dev")
    site.create_list("users")
    site.add_members("dev", "carl@example.com", "ann@example.com")
    site.add_members("users", "carl@example.com", "ann@example.com", "dora@example.com")
    store(site, message(), f"dev@{DOMAIN}")
    store(site, message(), f"users@{DOMAIN}")
    assert len(site.export("dev")) == len(site.export("users")) == 1
    recipients = sorted(r.recipient for r in rows(site))
    assert recipients == ["carl@example.com", "dora@example.com"]  # ann is the author
