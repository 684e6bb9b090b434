"""Outbound, end to end: real SMTP in, the real server with its delivery part, a fake relay out.

Who gets what (modes × watch/mute × author), the headers of the copies, threading in
a client-like check, replies through the per-recipient Reply-To, loop safety.
"""

from __future__ import annotations

import datetime as dt
import re
import smtplib
from email.utils import getaddresses

from sqlalchemy import select

from mailforum.core import tokens
from mailforum.core.lists import find_member, get_list
from mailforum.db.models import DeliveryMode, Post, PostingPolicy, SubscriptionKind, utcnow
from tests.helpers import DOMAIN, message, send, wait_for
from tests.integration.outbound_helpers import LIST, as_email, rows, settled, subscribe


def post(site, subject, message_id, sender="ann@example.com", extra="", body="Hello.\n", rcpt=LIST):
    send(site.config, message(subject, message_id, sender=sender, extra=extra, body=body), [rcpt], sender)


def delivered(site, relay, count):
    """Wait until the relay has ``count`` copies and the outbox has nothing left to send."""
    wait_for(lambda: relay.received(count) and settled(site))
    return relay.copies()


def test_each_delivery_mode_reaches_exactly_the_right_people_once(site, relay, server):
    site.create_list("dev")
    site.add_members("dev", "ann@example.com", "all@example.com")
    site.add_members("dev", "new@example.com", mode=DeliveryMode.NEW_TOPICS)
    site.add_members("dev", "digest@example.com", mode=DeliveryMode.DIGEST)
    site.add_members("dev", "none@example.com", mode=DeliveryMode.NONE)

    post(site, "Kick-off", "<t1@example.com>")
    assert delivered(site, relay, 2) == {"all@example.com": 1, "new@example.com": 1}

    post(site, "Re: Kick-off", "<t2@example.com>", "all@example.com", "In-Reply-To: <t1@example.com>")
    # The reply: ann (mode all, and watching the topic she started), not its author,
    # not new-topics, digest or none.
    assert delivered(site, relay, 3) == {"all@example.com": 1, "new@example.com": 1, "ann@example.com": 1}
    assert len(rows(site)) == 3 and {r.state for r in rows(site)} == {"sent"}


def test_watch_and_mute_override_the_delivery_mode(site, relay, server):
    site.create_list("dev")
    site.add_members("dev", "ann@example.com", "muter@example.com")
    site.add_members("dev", "watcher@example.com", mode=DeliveryMode.DIGEST)
    site.add_members("dev", "quiet@example.com", mode=DeliveryMode.NONE)
    post(site, "Topic", "<t1@example.com>")
    delivered(site, relay, 1)  # muter (mode all)
    subscribe(site, "watcher@example.com", "<t1@example.com>", SubscriptionKind.WATCH.value)
    subscribe(site, "muter@example.com", "<t1@example.com>", SubscriptionKind.MUTE.value)
    relay.transactions.clear()

    post(site, "Re: Topic", "<t2@example.com>", "quiet@example.com", "In-Reply-To: <t1@example.com>")
    assert delivered(site, relay, 2) == {"watcher@example.com": 1, "ann@example.com": 1}


def test_held_posts_notify_no_one(site, relay, server):
    site.create_list("dev", policy=PostingPolicy.MEMBERS)
    site.add_members("dev", "ann@example.com", "bob@example.com")
    post(site, "From outside", "<x1@example.com>", sender="stranger@example.net")
    wait_for(lambda: site.posts_by_id().get("<x1@example.com>", {}).get("status") == "held")
    assert rows(site) == [] and relay.transactions == []


def test_reply_to_a_copy_lands_under_that_post_and_threads_in_every_client(site, relay, server):
    site.create_list("dev", title="Dev Talk")
    site.add_members("dev", "Ann Author <ann@example.com>", "bob@example.com", "carol@example.com")
    post(site, "Hello", "<t1@example.com>")
    delivered(site, relay, 2)
    bob_copy = as_email(relay.messages_for("bob@example.com")[0].data)
    reply_to = getaddresses([str(bob_copy["Reply-To"])])[0][1]
    assert re.fullmatch(rf"dev\+r-[a-z0-9-]+@{re.escape(DOMAIN)}", reply_to)
    relay.transactions.clear()

    # Bob answers from a web-mail form: no In-Reply-To, no References, a new subject.
    post(site, "my answer", "<r1@example.com>", "bob@example.com", body="I agree.\n", rcpt=reply_to)
    copies = delivered(site, relay, 2)
    assert copies == {"ann@example.com": 1, "carol@example.com": 1}
    stored = site.posts_by_id()["<r1@example.com>"]
    assert stored["parent_message_id"] == "<t1@example.com>"
    assert stored["topic_id"] == site.posts_by_id()["<t1@example.com>"]["topic_id"]

    # Carol answers Bob's reply through her copy: the chain t1 → r1 → r2 in every copy.
    carol_copy = as_email(relay.messages_for("carol@example.com")[0].data)
    assert str(carol_copy["In-Reply-To"]).strip() == str(bob_copy["Message-ID"]).strip() == "<t1@example.com>"
    carol_reply_to = getaddresses([str(carol_copy["Reply-To"])])[0][1]
    relay.transactions.clear()
    post(site, "Re: my answer", "<r2@example.com>", "carol@example.com", rcpt=carol_reply_to)
    delivered(site, relay, 2)
    copy = as_email(relay.messages_for("ann@example.com")[0].data)
    assert str(copy["Message-ID"]) == "<r2@example.com>"
    assert str(copy["In-Reply-To"]).strip() == "<r1@example.com>"
    assert str(copy["References"]).split() == ["<t1@example.com>", "<r1@example.com>"]
    # A client threads by References: every id it names is a message it already holds.
    assert _thread_root(copy, {"<t1@example.com>": None, "<r1@example.com>": "<t1@example.com>"}) == (
        "<t1@example.com>"
    )


def _thread_root(copy, known_parents):
    """What a mail client does (JWZ): walk References to the first known root."""
    refs = str(copy["References"]).split()
    assert all(r in known_parents for r in refs)
    node = refs[-1]
    while known_parents[node] is not None:
        node = known_parents[node]
    return node


def test_a_reply_address_used_by_someone_else_is_held(site, relay, server):
    site.create_list("dev")
    site.add_members("dev", "ann@example.com", "bob@example.com", "mallory@example.com")
    post(site, "Hello", "<t1@example.com>")
    delivered(site, relay, 2)
    bob_copy = as_email(relay.messages_for("bob@example.com")[0].data)
    bob_reply_to = getaddresses([str(bob_copy["Reply-To"])])[0][1]
    post(site, "hijack", "<h1@example.com>", "mallory@example.com", rcpt=bob_reply_to)
    held = wait_for(lambda: site.posts_by_id().get("<h1@example.com>"))
    assert held["status"] == "held"


def test_forged_reply_keys_are_refused_at_rcpt_and_expired_ones_become_posts(site, relay, server):
    """S3c: a guessed key costs the guesser a 550 and us nothing; an old genuine key still posts."""
    site.create_list("dev")
    site.add_members("dev", "ann@example.com", "bob@example.com")
    post(site, "Hello", "<t1@example.com>")
    delivered(site, relay, 1)
    real = getaddresses([str(as_email(relay.transactions[0].data)["Reply-To"])])[0][1]
    token = real.split("+r-", 1)[1].split("@")[0]
    forged = [
        f"dev+r-1-1-zz-{'a' * 26}@{DOMAIN}",
        real.replace(token, token[:-1] + ("a" if token[-1] != "a" else "b")),
    ]
    with smtplib.SMTP("127.0.0.1", site.config.smtp.port, timeout=10) as client:
        client.ehlo()
        client.mail("bob@example.com")
        for address in forged:
            code, text = client.rcpt(address)
            assert (code, text[:5]) == (550, b"5.1.1")
        assert client.rcpt(real)[0] == 250
        client.rset()
    key = tokens.derive_key(site.config.site.secret_key)
    with site.db.read_session() as session:
        bob = find_member(session, get_list(session, "dev").id, "bob@example.com")
        post_id = session.scalars(select(Post.id).where(Post.message_id == "<t1@example.com>")).one()
    stale = tokens.sign(key, tokens.REPLY, (bob.id, post_id), utcnow() - dt.timedelta(minutes=5))
    post(site, "late answer", "<late@example.com>", "bob@example.com", rcpt=f"dev+r-{stale}@{DOMAIN}")
    late = wait_for(lambda: site.posts_by_id().get("<late@example.com>"))
    assert late["status"] == "published" and late["parent_message_id"] is None


def test_copies_carry_the_list_headers_one_recipient_each(site, relay, server):
    """RELIABILITY I7 and S16: list headers, VERP sender, loop marker; one recipient per copy."""
    site.create_list("dev", title="Dev Talk")
    site.add_members("dev", "ann@example.com", "bob@example.com", "carol@example.com")
    post(site, "[dev] Hello", "<t1@example.com>")
    delivered(site, relay, 2)
    key = tokens.derive_key(site.config.site.secret_key)
    ids = {r.recipient: r.id for r in rows(site)}
    for transaction in relay.transactions:
        assert len(transaction.rcpt_tos) == 1
        rcpt = transaction.rcpt_tos[0]
        msg = as_email(transaction.data)
        assert msg["Subject"] == "[dev] Hello"  # the tag is never doubled
        assert getaddresses([str(msg["From"])])[0][1] == LIST
        assert "via Dev Talk" in str(msg["From"])
        assert getaddresses([str(msg["X-Original-From"])])[0][1] == "ann@example.com"
        assert msg["List-Id"] == '"Dev Talk" <dev.lists.example.org>'
        assert msg["List-Post"] == f"<mailto:{LIST}>"
        assert msg["List-Help"].startswith("<mailto:dev-request@")
        assert msg["List-Archive"].startswith("<http")
        assert "mailto:dev+unsubscribe@" in msg["List-Unsubscribe"]
        assert msg["List-Unsubscribe-Post"] == "List-Unsubscribe=One-Click"
        assert msg["Precedence"] == "list"
        assert msg["Auto-Submitted"] == "auto-generated"
        assert msg["X-Loop"] == LIST
        assert msg["Message-ID"] == "<t1@example.com>"
        assert msg.get_content_type() == "multipart/alternative"
        # Roster privacy: no other member's address anywhere in the headers.
        head = transaction.data.split(b"\r\n\r\n", 1)[0].decode().lower()
        others = {"bob@example.com", "carol@example.com"} - {rcpt}
        assert not any(o in head for o in others)
        # VERP: the envelope sender names this very copy, signed.
        local = transaction.mail_from.split("@")[0]
        assert local.startswith("dev-bounces+") and transaction.mail_from.endswith("@" + DOMAIN)
        verp = local.split("+", 1)[1]
        assert tokens.verify(key, tokens.VERP, verp, utcnow(), fields=1) == (ids[rcpt],)
        text = msg.get_body(("plain",)).get_content()
        assert "Hello." in text and "mailto:dev+mute-" in text and "mailto:dev+unsubscribe@" in text


def test_our_own_copy_coming_back_is_not_posted_again(site, relay, server):
    site.create_list("dev")
    site.add_members("dev", "ann@example.com", "bob@example.com")
    post(site, "Hello", "<t1@example.com>")
    delivered(site, relay, 1)
    copy = relay.transactions[0].data.replace(b"<t1@example.com>", b"<t1-again@example.com>")
    send(site.config, copy, [LIST], "bob@example.com")
    wait_for(lambda: site.cli("spool", "list", "--state", "discarded").stdout.count("\n") >= 1)
    assert "<t1-again@example.com>" not in site.posts_by_id()
