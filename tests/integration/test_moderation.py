"""Moderation end to end: hold → moderator notice → approve by reply or by POST → fan-out.

RELIABILITY S1 (spoofed member: held or confirm-by-reply to the real member), S2
(forged Authentication-Results), S9 (no backscatter: rejections only to authenticated
authors), S21 (no thread hijack into a members-only list), S22 (floods held, nothing lost).
"""

from __future__ import annotations

import datetime as dt
import re
from dataclasses import replace

import httpx
from sqlalchemy import select

from mailforum.config import SecurityConfig
from mailforum.core import moderation, routing
from mailforum.db.models import MailingList, OutboxEntry, OutboxKind, Post, PostingPolicy, PostStatus, utcnow
from mailforum.mail.parse import parse
from tests.helpers import DOMAIN, ServerThread, message, send, wait_for
from tests.integration.outbound_helpers import deliver, rows, settled
from tests.web.kit import WebThread

MOD = "mod@example.com"
AR_PASS = f"Authentication-Results: {DOMAIN}; dmarc=pass header.from=example.com"
AR_FAIL = f"Authentication-Results: {DOMAIN}; dmarc=fail header.from=example.com"


def process(site, raw: bytes, rcpt: str = f"dev@{DOMAIN}", mail_from: str | None = None, now=None) -> str:
    now = now or utcnow()
    parsed = parse(raw)
    sender = parsed.from_address if mail_from is None else mail_from
    with site.db.session() as session:
        out = routing.process(session, site.config, parsed, raw, sender, (rcpt,), None, now, now)
        return out[0].summary


def setup(site, moderators=(MOD,), policy=None) -> None:
    if policy is None:
        site.create_list("dev")
    else:
        site.create_list("dev", policy=policy)
    site.add_members("dev", "ann@example.com", "bob@example.com")
    with site.db.session() as session:
        mlist = session.scalars(select(MailingList)).one()
        for address in moderators:
            moderation.add_moderator(session, mlist, address)


def posts(site) -> dict[str, str]:
    with site.db.read_session() as session:
        return {p.message_id: p.status for p in session.scalars(select(Post))}


def notices_to(site, address: str) -> list[OutboxEntry]:
    return [r for r in rows(site) if r.kind == OutboxKind.NOTICE.value and r.recipient == address]


def copies_of(site, message_id: str) -> list[str]:
    with site.db.read_session() as session:
        return sorted(
            session.scalars(
                select(OutboxEntry.recipient).where(
                    OutboxEntry.kind == OutboxKind.POST.value, OutboxEntry.message_id == message_id
                )
            )
        )


def addresses_in(text: str) -> dict[str, str]:
    """The reply address for each action in a moderator notice, and the web link."""
    found = {"link": re.search(r"(http://\S+/held/\S+)", text).group(1)}
    for kind, address in re.findall(r"(reject|discard)[^\n]*\n(?:[^\n]*\n)?\s+(dev\+mod-\S+@\S+)", text):
        found[kind] = address
    return found


def test_a_non_member_post_is_held_the_moderator_approves_by_reply_and_it_fans_out(site, relay):
    setup(site)
    summary = process(site, message("Outsider", "<o1@example.com>", sender="out@example.org"))
    assert "held (not-member)" in summary
    assert posts(site) == {"<o1@example.com>": PostStatus.HELD.value}
    assert notices_to(site, "out@example.org") == []  # S9: never the sender
    (notice,) = notices_to(site, MOD)
    approve = notice.payload["reply_to"]
    assert approve.startswith("dev+mod-") and "not-member" in notice.payload["text"]
    deliver(site.config, site.db)
    mail = relay.messages_for(MOD)[0].data
    assert b"Auto-Submitted: auto-replied" in mail and f"Reply-To: {approve}".encode() in mail
    # A vacation reply of the moderator's, and a reply from someone else, decide nothing.
    ooo = message("Re: Held", "<v1@example.com>", sender=MOD, extra="Auto-Submitted: auto-replied")
    assert "ignored" in process(site, ooo, approve)
    assert "ignored" in process(
        site, message("Re: Held", "<x1@example.com>", sender="bob@example.com"), approve
    )
    assert posts(site)["<o1@example.com>"] == PostStatus.HELD.value
    # The moderator's reply approves: published, and the members get it.
    assert "approved" in process(site, message("Re: Held", "<r1@example.com>", sender=MOD), approve)
    assert posts(site)["<o1@example.com>"] == PostStatus.PUBLISHED.value
    assert copies_of(site, "<o1@example.com>") == ["ann@example.com", "bob@example.com"]
    deliver(site.config, site.db)
    assert settled(site) and relay.messages_for("bob@example.com")
    # Approving twice does nothing more.
    assert "ignored" in process(site, message("Re: Held", "<r2@example.com>", sender=MOD), approve)


def test_approve_by_post_on_the_web_get_changes_nothing(site, relay):
    setup(site)
    process(site, message("Outsider", "<o2@example.com>", sender="out@example.org"))
    link = addresses_in(notices_to(site, MOD)[0].payload["text"])["link"]
    web = WebThread(site.config, site.db)
    web.start()
    try:
        with httpx.Client(timeout=10) as client:
            page = client.get(link)
            assert page.status_code == 200 and "Approve" in page.text and "Outsider" in page.text
            assert posts(site)["<o2@example.com>"] == PostStatus.HELD.value  # link scanners change nothing
            done = client.post(link, data={"action": "approve", "allow": "1"})
            assert done.status_code == 200 and "approved" in done.text
            gone = client.get(link)  # nothing left to decide
            assert gone.status_code == 200 and "not valid any more" in gone.text
            forged = link[:-4] + "aaaa"
            assert "Approve" not in client.post(forged, data={"action": "discard"}).text
    finally:
        web.stop()
    assert posts(site)["<o2@example.com>"] == PostStatus.PUBLISHED.value
    assert copies_of(site, "<o2@example.com>") == ["ann@example.com", "bob@example.com"]
    # The sender was allowed: their next post is published at once.
    assert "published" in process(site, message("Again", "<o3@example.com>", sender="out@example.org"))


def test_reject_tells_only_an_authenticated_author_and_discard_tells_no_one(site):
    site.config = replace(site.config, security=SecurityConfig(authserv_id=DOMAIN))
    setup(site, policy=PostingPolicy.MODERATED)
    process(site, message("Signed", "<a1@example.com>", sender="ann@example.com", extra=AR_PASS))
    process(site, message("Forged", "<a2@example.com>", sender="bob@example.com", extra=AR_FAIL))
    process(site, message("Third", "<a3@example.com>", sender="ann@example.com", extra=AR_PASS))
    held = {p.subject: p.id for p in moderation_list(site)}
    now = utcnow()
    with site.db.session() as session:
        mlist = session.scalars(select(MailingList)).one()
        for subject, action in (("Signed", moderation.REJECT), ("Forged", moderation.REJECT)):
            post = moderation.held_post(session, held[subject])
            moderation.act(session, site.config, mlist, post, action, now, reason="off topic")
        moderation.act(session, site.config, mlist, moderation.held_post(session, held["Third"]), 3, now)
    told = notices_to(site, "ann@example.com")
    assert len(told) == 1 and "off topic" in told[0].payload["text"]
    assert notices_to(site, "bob@example.com") == []  # S9: the From of a failed check is not told
    assert posts(site) == {}


def moderation_list(site):
    with site.db.read_session() as session:
        return moderation.held_posts(session)


def test_spoofed_member_is_held_never_published_and_forged_results_are_stripped(site):
    site.config = replace(site.config, security=SecurityConfig(authserv_id=DOMAIN))
    setup(site)
    raw = message(
        "wire money",
        "<s1@example.com>",
        sender="bob@example.com",
        extra=f"{AR_FAIL}\nAuthentication-Results: {DOMAIN}; dmarc=pass header.from=example.com",
    )
    assert "held (unverified-sender)" in process(site, raw, mail_from="attacker@evil.example")
    assert copies_of(site, "<s1@example.com>") == []
    with site.db.read_session() as session:
        stored = session.scalars(select(Post)).one()
        assert b"dmarc=fail" in stored.raw and b"dmarc=pass" not in stored.raw  # RFC 8601 §5


def test_confirm_by_reply_goes_to_the_real_member_who_can_publish(site):
    site.config = replace(site.config, security=SecurityConfig(authserv_id=DOMAIN))
    setup(site)
    with site.db.session() as session:
        session.scalars(select(MailingList)).one().unverified_action = "confirm"
    process(
        site, message("Unsigned", "<c1@example.com>", sender="bob@example.com"), mail_from="x@evil.example"
    )
    (ask,) = notices_to(site, "bob@example.com")
    assert notices_to(site, MOD) == []
    confirm = ask.payload["reply_to"]
    # The attacker cannot answer for bob; bob can.
    assert "ignored" in process(site, message("Re", "<c2@example.com>", sender="x@evil.example"), confirm)
    assert "approved" in process(site, message("Re", "<c3@example.com>", sender="bob@example.com"), confirm)
    assert copies_of(site, "<c1@example.com>") == ["ann@example.com"]


def test_first_post_is_held_where_the_list_asks_and_floods_are_held_not_lost(site):
    setup(site)
    with site.db.session() as session:
        session.scalars(select(MailingList)).one().moderate_first_post = True
    assert "held (first-post)" in process(site, message("Hi", "<f1@example.com>"))
    (held,) = moderation_list(site)
    with site.db.session() as session:
        mlist = session.scalars(select(MailingList)).one()
        moderation.act(session, site.config, mlist, moderation.held_post(session, held.id), 1, utcnow())
    assert "published" in process(site, message("Again", "<f2@example.com>"))
    # S22: the 11th post in a minute is held, not dropped.
    for i in range(3, 15):
        process(site, message(f"Flood {i}", f"<f{i}@example.com>"))
    statuses = posts(site)
    assert len(statuses) == 14
    assert [statuses[f"<f{i}@example.com>"] for i in (3, 10, 11, 14)] == [
        "published",
        "published",
        "held",
        "held",
    ]


def test_held_posts_expire_with_a_summary_to_the_moderators(site):
    setup(site)
    old = utcnow() - dt.timedelta(days=20)
    process(site, message("Old", "<x1@example.com>", sender="out@example.org"), now=old)
    process(site, message("New", "<x2@example.com>", sender="out@example.org"))
    with site.db.session() as session:
        assert moderation.expire(session, site.config, utcnow()) == 1
    assert posts(site) == {"<x2@example.com>": PostStatus.HELD.value}
    summary = [n for n in notices_to(site, MOD) if "Expired" in n.payload["subject"]]
    assert len(summary) == 1 and "Old" in summary[0].payload["text"]


def test_thread_hijack_from_outside_is_not_attached(site):
    setup(site)
    process(site, message("Members only", "<h1@example.com>"))
    reply = message(
        "Re: Members only",
        "<h2@example.com>",
        sender="out@example.org",
        extra="In-Reply-To: <h1@example.com>",
    )
    assert "held" in process(site, reply)
    assert copies_of(site, "<h2@example.com>") == []


def test_cli_moderators_held_and_bounces(site):
    site.create_list("dev")
    site.add_members("dev", "ann@example.com")
    assert site.cli("lists", "moderators", "dev", "add", MOD).returncode == 0
    assert site.cli("lists", "moderators", "dev").stdout.split() == [MOD]
    process(site, message("Outsider", "<k1@example.com>", sender="out@example.org"))
    listed = site.cli("held", "list").stdout
    assert "out@example.org" in listed and "not-member" in listed
    post_id = listed.split("\t")[0]
    approved = site.cli("held", "approve", post_id)
    assert approved.returncode == 0 and "approved" in approved.stdout
    missing = site.cli("held", "discard", post_id)
    assert missing.returncode != 0 and "not held" in missing.stderr and "Traceback" not in missing.stderr
    assert site.cli("members", "bounces", "dev").returncode == 0
    status = site.cli("status").stdout
    assert "bounces and moderation" in status


def test_over_smtp_spoofed_member_from_outside_is_not_published(site, relay, request):
    site.config = replace(site.config, security=SecurityConfig(authserv_id=DOMAIN))
    setup(site, moderators=())
    server = ServerThread(site.config)
    server.start()
    request.addfinalizer(server.stop)
    raw = message("wire money", "<w1@example.com>", sender="bob@example.com", extra=AR_FAIL)
    send(site.config, raw, [f"dev@{DOMAIN}"], "attacker@evil.example")
    send(
        site.config,
        message("genuine", "<g1@example.com>", extra=AR_PASS),
        [f"dev@{DOMAIN}"],
        "ann@example.com",
    )
    wait_for(lambda: relay.messages_for("bob@example.com") and settled(site))
    assert not any(b"wire money" in t.data for t in relay.transactions)
