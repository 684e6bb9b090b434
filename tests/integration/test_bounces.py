"""Bounces end to end: VERP round trips through the fake relay, forged bounces, scores over time.

RELIABILITY S8 (forged bounces change nothing; soft < hard; threshold; stale; warnings
before removal), B47 (malformed reports), and the relay's own 5xx as a hard bounce.
"""

from __future__ import annotations

import datetime as dt
from dataclasses import replace

from sqlalchemy import select

from mailforum.config import BouncesConfig
from mailforum.core import bounces, routing
from mailforum.core.lists import find_member
from mailforum.db.models import MailingList, Member, OutboxEntry, OutboxKind, utcnow
from mailforum.mail.parse import parse
from tests.helpers import DOMAIN, message, send, wait_for
from tests.integration.outbound_helpers import deliver, rows, settled
from tests.relay import FakeRelay

DEAD = "dead@example.com"
BOUNCES = f"dev-bounces@{DOMAIN}"


def process(site, raw: bytes, rcpt: str, mail_from: str, now: dt.datetime) -> list[str]:
    with site.db.session() as session:
        outcomes = routing.process(session, site.config, parse(raw), raw, mail_from, (rcpt,), None, now, now)
        return [o.summary for o in outcomes]


def dsn(to: str, original_id: str, status: str = "5.1.1", action: str = "failed", rcpt: str = DEAD) -> bytes:
    return (
        f"From: MAILER-DAEMON@mx.example.net\r\nTo: {to}\r\nSubject: Undelivered Mail Returned to Sender\r\n"
        f"Message-ID: <dsn-{original_id.strip('<>')}-{status}@mx.example.net>\r\nMIME-Version: 1.0\r\n"
        'Content-Type: multipart/report; report-type=delivery-status; boundary="B"\r\n\r\n'
        "--B\r\nContent-Type: text/plain\r\n\r\nYour message could not be delivered.\r\n"
        "--B\r\nContent-Type: message/delivery-status\r\n\r\nReporting-MTA: dns; mx.example.net\r\n\r\n"
        f"Final-Recipient: rfc822; {rcpt}\r\nAction: {action}\r\nStatus: {status}\r\n\r\n"
        "--B\r\nContent-Type: text/rfc822-headers\r\n\r\n"
        f"Message-ID: {original_id}\r\nSubject: x\r\n\r\n--B--\r\n"
    ).encode()


def member(site, address: str = DEAD) -> Member | None:
    with site.db.read_session() as session:
        found = find_member(session, 1, address)
        if found is not None:
            session.expunge(found)
        return found


def setup_list(site) -> None:
    site.create_list("dev")
    site.add_members("dev", "ann@example.com", DEAD, "live@example.com")


def post_and_deliver(site, relay, n: int, now: dt.datetime) -> None:
    process(site, message(f"post {n}", f"<p{n}@example.com>"), f"dev@{DOMAIN}", "ann@example.com", now)
    deliver(site.config, site.db)
    assert settled(site)


def disable_dead(site, now: dt.datetime) -> str:
    """The list set up, dead@ hard-bounced five times (delivery disabled, warned); its enable token."""
    setup_list(site)
    with site.db.session() as session:
        m = find_member(session, 1, DEAD)
        mlist = session.get(MailingList, m.list_id)
        for _ in range(5):
            bounces.score(session, site.config, mlist, m, bounces.HARD, now)
        return bounces.enable_token(site.config, m, now)


def verp_of(relay: FakeRelay, n: int) -> str:
    """The envelope sender of the copy of post n that went to dead@."""
    for t in relay.messages_for(DEAD):
        if f"<p{n}@example.com>".encode() in t.data:
            return t.mail_from
    raise AssertionError(f"no copy of post {n} to {DEAD}")


def test_verp_bounces_disable_after_the_threshold_then_fan_out_skips_the_member(site, relay):
    setup_list(site)
    now = utcnow()
    for n in range(1, 6):
        post_and_deliver(site, relay, n, now)
        verp = verp_of(relay, n)
        assert verp.startswith("dev-bounces+") and verp != BOUNCES
        out = process(site, dsn(verp, f"<p{n}@example.com>"), verp, "", now)
        assert "hard bounce" in out[0], out
        state = member(site)
        assert state is not None and state.bounce_score == n
        # One hard bounce alone never disables; the fifth (threshold 5.0) does, at once.
        assert (state.delivery_disabled_at is not None) == (n == 5)
    notices = [r for r in rows(site) if r.kind == OutboxKind.NOTICE.value]
    assert [r.recipient for r in notices] == [DEAD]
    assert "enable" in notices[0].payload["text"]
    before = len(relay.messages_for(DEAD))
    post_and_deliver(site, relay, 6, now)
    copies = relay.messages_for(DEAD)
    assert (
        len(copies) == before + 1 and b"Auto-Submitted: auto-replied" in copies[-1].data
    )  # only the warning
    assert any(b"<p6@example.com>" in t.data for t in relay.messages_for("live@example.com"))


def test_copies_queued_before_the_pause_are_not_sent_but_the_warning_is(site, relay):
    """A copy waiting in the outbox (here: the relay said 450) when bounces pause the member
    is not sent any more; the warning, a notice, still goes, and so do the others' copies."""
    setup_list(site)
    now = utcnow()
    relay.rcpt[DEAD] = "450 4.2.1 Mailbox busy"
    process(site, message("post 1", "<p1@example.com>"), f"dev@{DOMAIN}", "ann@example.com", now)
    deliver(site.config, site.db)
    assert [r.state for r in rows(site) if r.recipient == DEAD] == ["pending"]
    with site.db.session() as session:
        mlist = session.get(MailingList, 1)
        found = find_member(session, 1, DEAD)
        assert mlist is not None and found is not None
        bounces.disable(session, site.config, mlist, found, now)
    del relay.rcpt[DEAD]
    wait_for(lambda: (deliver(site.config, site.db, retry_base=0.05), settled(site))[1], timeout=20)
    states = {(r.recipient, r.kind): (r.state, r.last_reply) for r in rows(site)}
    assert states[(DEAD, OutboxKind.POST.value)] == ("failed", "delivery paused by bounces")
    assert states[(DEAD, OutboxKind.NOTICE.value)][0] == "sent"
    assert states[("live@example.com", OutboxKind.POST.value)][0] == "sent"
    copies = relay.messages_for(DEAD)
    assert len(copies) == 1 and b"Auto-Submitted: auto-replied" in copies[0].data


def test_forged_bounces_change_nothing(site, relay):
    setup_list(site)
    now = utcnow()
    post_and_deliver(site, relay, 1, now)
    verp = verp_of(relay, 1)
    head, _, mac = verp.partition("@")[0].rpartition("-")
    wrong = f"{head}-{'a' * len(mac)}@{DOMAIN}"
    forged = [
        (BOUNCES, dsn(BOUNCES, "<never-sent@example.com>")),  # no VERP, a message we never sent
        (BOUNCES, dsn(BOUNCES, "<p1@example.com>", rcpt="live@example.com")),  # a real copy, no VERP
        (wrong, dsn(wrong, "<p1@example.com>")),  # a VERP token with a bad MAC
        (BOUNCES, dsn(BOUNCES, "<p1@example.com>", rcpt="stranger@example.com")),  # never mailed
        (BOUNCES, b"From: x@example.net\r\nSubject: hi\r\n\r\nnot a bounce\r\n"),
    ]
    for rcpt, raw in forged:
        for _ in range(20):
            out = process(site, raw, rcpt, "", now)
            assert "ignored" in out[0], out
    # Even a report quoting a copy we really sent to live@ scores nothing without VERP:
    # Message-IDs are public, so anyone could have written it.
    assert "not counted" in process(site, forged[1][1], BOUNCES, "", now)[0]
    assert member(site).bounce_score == 0 and member(site, "live@example.com").bounce_score == 0


def test_soft_bounces_count_once_a_day_and_scores_go_stale(site, relay):
    setup_list(site)
    now = utcnow()
    post_and_deliver(site, relay, 1, now)
    verp = verp_of(relay, 1)
    for _ in range(5):
        process(site, dsn(verp, "<p1@example.com>", "4.4.1", "delayed"), verp, "", now)
    assert member(site).bounce_score == 0.5
    process(site, dsn(verp, "<p1@example.com>", "4.4.1", "delayed"), verp, "", now + dt.timedelta(days=1))
    assert member(site).bounce_score == 1.0
    process(site, dsn(verp, "<p1@example.com>"), verp, "", now + dt.timedelta(days=2))
    assert member(site).bounce_score == 2.0
    # Nothing for more than stale_days: the next bounce starts from zero.
    process(site, dsn(verp, "<p1@example.com>"), verp, "", now + dt.timedelta(days=10))
    assert member(site).bounce_score == 1.0


def test_a_vacation_reply_to_the_bounce_address_is_not_a_bounce(site, relay):
    setup_list(site)
    now = utcnow()
    post_and_deliver(site, relay, 1, now)
    verp = verp_of(relay, 1)
    reply = message("Out of office", "<ooo@example.com>", sender=DEAD, extra="Auto-Submitted: auto-replied")
    assert "ignored" in process(site, reply, verp, DEAD, now)[0]
    assert member(site).bounce_score == 0


def test_a_relay_550_is_a_hard_bounce_for_that_member(site, relay):
    setup_list(site)
    relay.rcpt[DEAD] = "550 5.1.1 No such user"
    post_and_deliver(site, relay, 1, utcnow())
    failed = [r for r in rows(site) if r.recipient == DEAD]
    assert failed[0].state == "failed" and failed[0].last_reply.startswith("550")
    assert member(site).bounce_score == 1.0
    assert member(site, "live@example.com").bounce_score == 0


def test_warnings_are_spaced_then_the_member_is_removed(site, relay):
    config = replace(site.config, bounces=BouncesConfig(threshold=2.0, warnings=3, warning_interval_days=7))
    site.config = config
    setup_list(site)
    now = utcnow()
    post_and_deliver(site, relay, 1, now)
    verp = verp_of(relay, 1)
    for i in range(2):
        process(site, dsn(verp, "<p1@example.com>"), verp, "", now + dt.timedelta(minutes=i))
    assert member(site).delivery_disabled_at is not None and member(site).bounce_warnings == 1

    def tick(days: float) -> tuple[int, int]:
        with site.db.session() as session:
            return bounces.housekeeping(session, config, now + dt.timedelta(days=days))

    assert tick(3) == (0, 0)
    assert tick(7.01) == (1, 0) and tick(7.02) == (0, 0)
    assert tick(14.02) == (1, 0)
    assert member(site).bounce_warnings == 3
    assert tick(21.03) == (0, 1)
    assert member(site) is None
    with site.db.read_session() as session:
        keys = session.scalars(select(OutboxEntry.id).where(OutboxEntry.kind == "notice")).all()
    assert len(keys) == 3


def test_the_warning_re_enables_by_mail_and_a_forged_enable_does_nothing(site, relay):
    now = utcnow()
    token = disable_dead(site, now)
    assert member(site).delivery_disabled_at is not None
    bad = f"dev+enable-{token[:-3]}aaa@{DOMAIN}"
    assert (
        "ignored"
        in process(site, message("x", "<e0@example.com>", sender="x@evil.example"), bad, "x@e", now)[0]
    )
    assert member(site).delivery_disabled_at is not None
    good = f"dev+enable-{token}@{DOMAIN}"
    assert (
        "re-enabled" in process(site, message("enable", "<e1@example.com>", sender=DEAD), good, DEAD, now)[0]
    )
    state = member(site)
    assert state.delivery_disabled_at is None and state.bounce_score == 0


def test_verp_round_trip_over_smtp_with_the_server(site, relay, server):
    """A real post over SMTP, the copy's VERP sender, a DSN back over SMTP to it."""
    setup_list(site)
    send(site.config, message("post 1", "<p1@example.com>"), [f"dev@{DOMAIN}"], "ann@example.com")
    wait_for(lambda: relay.messages_for(DEAD) and settled(site))
    verp = relay.messages_for(DEAD)[0].mail_from
    send(site.config, dsn(verp, "<p1@example.com>"), [verp], "")
    wait_for(lambda: member(site).bounce_score == 1.0)
    send(site.config, dsn(BOUNCES, "<p1@example.com>"), [BOUNCES], "")  # no VERP: not counted
    send(site.config, dsn(verp, "<p1@example.com>", "4.4.1", "delayed"), [verp], "")
    wait_for(lambda: member(site).bounce_score == 1.5)


def test_the_warning_link_shows_a_button_on_get_and_enables_on_post(site):
    import httpx

    from tests.web.kit import WebThread

    now = utcnow()
    disable_dead(site, now)
    (warning,) = [r for r in rows(site) if r.kind == OutboxKind.NOTICE.value]
    link = next(w for w in warning.payload["text"].split() if "/enable/" in w)
    web = WebThread(site.config, site.db)
    web.start()
    try:
        with httpx.Client(timeout=10) as client:
            page = client.get(link)
            assert page.status_code == 200 and "<form" in page.text and DEAD in page.text
            assert member(site).delivery_disabled_at is not None  # GET changes nothing
            assert "not valid any more" in client.post(link[:-3] + "aaa").text
            assert member(site).delivery_disabled_at is not None
            done = client.post(link)
            assert done.status_code == 200 and "again" in done.text
    finally:
        web.stop()
    assert member(site).delivery_disabled_at is None and member(site).bounce_score == 0


def test_enable_delivery_command_mails_the_member_a_fresh_link(site):
    now = utcnow()
    disable_dead(site, now)
    before = len([r for r in rows(site) if r.kind == OutboxKind.NOTICE.value])
    command = message("Please", "<en1@example.com>", sender=DEAD, body="enable delivery\n")
    process(site, command, f"dev-request@{DOMAIN}", DEAD, now)
    sent = [r for r in rows(site) if r.kind == OutboxKind.NOTICE.value][before:]
    assert [r.recipient for r in sent] == [DEAD] and "/enable/" in sent[0].payload["text"]
    assert member(site).delivery_disabled_at is not None  # only the link turns it back on
