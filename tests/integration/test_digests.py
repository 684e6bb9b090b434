"""Digests end to end: real processing path in, the real delivery worker, a fake relay out.

A controllable clock (``now`` passed in) drives the schedule; marks decide the content.
"""

from __future__ import annotations

import datetime as dt
import re
import urllib.parse
from dataclasses import replace
from email.message import EmailMessage
from urllib.parse import unquote

import pytest
from sqlalchemy import select

from mailforum.core import bounces, copies, digest_content, digest_schedule, lists
from mailforum.db.models import (
    DeliveryMode,
    MailingList,
    Member,
    OutboxEntry,
    PostingPolicy,
    SubscriptionKind,
)
from tests.helpers import DOMAIN, message
from tests.integration.outbound_helpers import as_email, deliver, store, subscribe
from tests.relay import FakeRelay

# In the past of the real clock, so the delivery worker finds the rows due.
DAY1 = dt.datetime(2026, 10, 1, 7, 0, 5, tzinfo=dt.UTC)


def setup_list(site, *digest_members: str, others: tuple[str, ...] = ("ann@example.com",)) -> None:
    site.create_list("dev", PostingPolicy.OPEN)
    site.add_members("dev", *others, mode=DeliveryMode.ALL)
    if digest_members:
        site.add_members("dev", *digest_members, mode=DeliveryMode.DIGEST)


def post(site, subject: str, mid: str, body: str = "Hello.\n", extra: str = "") -> None:
    out = store(site, message(subject, f"<{mid}>", body=body, extra=extra))
    assert "published" in out[0], out


def run(site, now: dt.datetime, scheduled: bool = True, **kw) -> digest_schedule.RunResult:
    return digest_schedule.run_list(site.db, site.config, "dev", now, scheduled=scheduled, **kw)


def digests_for(relay: FakeRelay, address: str) -> list[EmailMessage]:
    out = []
    for t in relay.messages_for(address):
        msg = as_email(t.data)
        if msg["Message-ID"].startswith("<digest."):
            out.append(msg)
    return out


def text_of(msg: EmailMessage, kind: str = "text/plain") -> str:
    return "\n".join(p.get_content() for p in msg.walk() if p.get_content_type() == kind)


def test_a_day_of_posts_gives_each_digest_member_exactly_that_day(site, relay):
    setup_list(site, "dora@example.com", "dan@example.com")
    post(site, "Alpha topic", "a1@example.com", body="alpha body\n")
    post(site, "Beta topic", "b1@example.com", body="beta body\n")
    post(site, "Re: Alpha topic", "a2@example.com", extra="In-Reply-To: <a1@example.com>")
    result = run(site, DAY1)
    assert result.queued == 2
    deliver(site.config, site.db)
    for who in ("dora@example.com", "dan@example.com"):
        (msg,) = digests_for(relay, who)
        text = text_of(msg)
        assert "Alpha topic" in text and "Beta topic" in text and "alpha body" in text
        assert msg["Subject"] == "[dev] Daily digest, 1 Oct 2026: 3 new posts in 2 topics"
        assert msg["Auto-Submitted"] == "auto-generated" and msg["List-Id"]
        html = text_of(msg, "text/html")
        # HTML and text show the same posts: the same per-post reply addresses, in the same order.
        replies = re.findall(r"dev\+r-[a-z0-9-]+@" + re.escape(DOMAIN), text)
        assert len(replies) == 3
        assert re.findall(r"dev\+r-[a-z0-9-]+@" + re.escape(DOMAIN), unquote(html)) == replies
    # ann is in mode "all": she got the posts one by one and no digest.
    assert digests_for(relay, "ann@example.com") == []


def test_nothing_repeats_and_an_empty_day_sends_nothing(site, relay):
    setup_list(site, "dora@example.com")
    post(site, "Alpha topic", "a1@example.com")
    run(site, DAY1)
    assert run(site, DAY1 + dt.timedelta(days=1)).queued == 0  # nothing new: no mail
    post(site, "Gamma topic", "g1@example.com")
    assert run(site, DAY1 + dt.timedelta(days=2)).queued == 1
    deliver(site.config, site.db)
    first, second = digests_for(relay, "dora@example.com")
    assert "Alpha topic" in text_of(first) and "Gamma topic" not in text_of(first)
    assert "Gamma topic" in text_of(second) and "Alpha topic" not in text_of(second)


def test_a_repeated_hour_or_a_second_scheduler_sends_once(site, relay):
    """F15: the clock stepped back an hour fires the same period again; it adds nothing."""
    setup_list(site, "dora@example.com")
    post(site, "Alpha topic", "a1@example.com")
    assert run(site, DAY1).queued == 1
    post(site, "Beta topic", "b1@example.com")  # arrives after the run: the next digest's
    assert run(site, DAY1).queued == 0  # a second scheduler, or a double fire
    assert run(site, DAY1 - dt.timedelta(hours=1)).queued == 0  # clock stepped back an hour
    assert run(site, DAY1 + dt.timedelta(minutes=50)).queued == 0  # the hour repeated
    assert run(site, DAY1 + dt.timedelta(days=1)).queued == 1
    deliver(site.config, site.db)
    first, second = digests_for(relay, "dora@example.com")
    assert "Beta topic" not in text_of(first) and "Beta topic" in text_of(second)


def test_a_skipped_day_catches_up_once(site, relay):
    """F15: the clock jumps a day forward (or the scheduler was down): one digest with both days."""
    setup_list(site, "dora@example.com")
    post(site, "Alpha topic", "a1@example.com")
    post(site, "Beta topic", "b1@example.com")
    assert run(site, DAY1 + dt.timedelta(days=2, hours=5)).queued == 1
    assert run(site, DAY1 + dt.timedelta(days=2, hours=6)).queued == 0
    deliver(site.config, site.db)
    (msg,) = digests_for(relay, "dora@example.com")
    assert "Alpha topic" in text_of(msg) and "Beta topic" in text_of(msg)


def test_a_clock_that_ran_days_ahead_and_was_corrected_does_not_stop_the_digests(site, relay, caplog):
    """F15, the large case: a run under a clock a month ahead claims that month's day; once the
    clock is right again the next day's digest still goes (not a month later), and only once."""
    setup_list(site, "dora@example.com")
    post(site, "Alpha topic", "a1@example.com")
    assert run(site, DAY1 + dt.timedelta(days=30)).queued == 1  # the clock a month ahead
    post(site, "Beta topic", "b1@example.com")
    with caplog.at_level("WARNING", logger="mailforum.core.digest_schedule"):
        assert run(site, DAY1 + dt.timedelta(days=1)).queued == 1  # corrected: the next morning
    assert any("the clock was wrong by days" in r.getMessage() for r in caplog.records)
    assert run(site, DAY1 + dt.timedelta(days=1, minutes=30)).queued == 0  # a second fire: nothing
    post(site, "Gamma topic", "g1@example.com")
    assert run(site, DAY1 + dt.timedelta(days=1) - dt.timedelta(hours=1)).queued == 0  # an hour back
    assert run(site, DAY1 + dt.timedelta(days=2)).queued == 1
    deliver(site.config, site.db)
    texts = [text_of(m) for m in digests_for(relay, "dora@example.com")]
    assert len(texts) == 3
    assert ["Alpha topic" in t for t in texts] == [True, False, False]
    assert ["Beta topic" in t for t in texts] == [False, True, False]
    assert ["Gamma topic" in t for t in texts] == [False, False, True]


def test_muted_topics_are_left_out_and_watched_ones_come_at_once(site, relay):
    setup_list(site, "dora@example.com", "dan@example.com")
    post(site, "Alpha topic", "a1@example.com")
    post(site, "Beta topic", "b1@example.com")
    subscribe(site, "dora@example.com", "<a1@example.com>", SubscriptionKind.MUTE.value)
    subscribe(site, "dan@example.com", "<b1@example.com>", SubscriptionKind.MUTE.value)
    subscribe(site, "dan@example.com", "<a1@example.com>", SubscriptionKind.WATCH.value)
    post(site, "Re: Alpha topic", "a2@example.com", extra="In-Reply-To: <a1@example.com>")
    run(site, DAY1)
    deliver(site.config, site.db)
    (dora,) = digests_for(relay, "dora@example.com")
    assert "Beta topic" in text_of(dora) and "Alpha topic" not in text_of(dora)
    (dan,) = digests_for(relay, "dan@example.com")
    assert "Alpha topic" in text_of(dan) and "Beta topic" not in text_of(dan)
    # dan watches Alpha: its reply reached him at once as well.
    ids = [as_email(t.data)["Message-ID"] for t in relay.messages_for("dan@example.com")]
    assert "<a2@example.com>" in ids


@pytest.mark.parametrize("claim_batch", [1, 10])
def test_a_full_digest_cache_renders_again_and_loses_nothing(site, relay, monkeypatch, claim_batch):
    """L6: shared digests are kept up to a byte budget. Over it (here: any digest at all),
    the oldest go, but never one the chunk being loaded still needs, and a later chunk
    renders its own again: every member gets the right digest."""
    monkeypatch.setattr(copies, "DIGEST_CACHE_BYTES", 1)
    setup_list(site, "dora@example.com", "dan@example.com", "dee@example.com", "don@example.com")
    post(site, "Alpha topic", "a1@example.com")
    post(site, "Beta topic", "b1@example.com")
    post(site, "Gamma topic", "c1@example.com")
    subscribe(site, "dora@example.com", "<a1@example.com>", SubscriptionKind.MUTE.value)
    subscribe(site, "dan@example.com", "<b1@example.com>", SubscriptionKind.MUTE.value)
    subscribe(site, "dee@example.com", "<c1@example.com>", SubscriptionKind.MUTE.value)
    run(site, DAY1)
    stats = deliver(site.config, site.db, claim_batch=claim_batch)
    assert (stats.sent, stats.failed) == (4, 0)
    muted = {"dora": "Alpha", "dan": "Beta", "dee": "Gamma", "don": None}
    for name, left_out in muted.items():
        (msg,) = digests_for(relay, f"{name}@example.com")
        shown = {t for t in ("Alpha", "Beta", "Gamma") if f"{t} topic" in text_of(msg)}
        assert shown == {"Alpha", "Beta", "Gamma"} - {left_out}, name


def test_a_member_who_muted_everything_new_gets_no_mail_and_moves_on(site, relay):
    setup_list(site, "dora@example.com")
    post(site, "Alpha topic", "a1@example.com")
    subscribe(site, "dora@example.com", "<a1@example.com>", SubscriptionKind.MUTE.value)
    result = run(site, DAY1)
    assert (result.queued, result.skipped) == (0, 1)
    with site.db.read_session() as session:
        mark = select(Member.digest_mark).where(Member.address == "dora@example.com")
        assert session.scalars(mark).one() > 0


def test_members_in_other_modes_who_asked_for_a_digest_get_it(site, relay):
    setup_list(site, "dora@example.com", others=("ann@example.com", "nina@example.com"))
    with site.db.session() as session:
        nina = session.scalars(select(Member).where(Member.address == "nina@example.com")).one()
        nina.delivery_mode = DeliveryMode.NEW_TOPICS.value
        nina.digest_frequency = digest_content.DAILY
    post(site, "Alpha topic", "a1@example.com")
    assert run(site, DAY1).queued == 2
    deliver(site.config, site.db)
    assert len(digests_for(relay, "nina@example.com")) == 1


def test_weekly_members_get_one_digest_a_week(site, relay):
    setup_list(site, "dora@example.com", "wendy@example.com")
    with site.db.session() as session:
        wendy = session.scalars(select(Member).where(Member.address == "wendy@example.com")).one()
        wendy.digest_frequency = digest_content.WEEKLY
    monday = dt.datetime(2026, 10, 5, 7, 0, 5, tzinfo=dt.UTC)
    post(site, "Alpha topic", "a1@example.com")
    assert run(site, monday).queued == 2  # the week's first run on or after Monday: both
    post(site, "Beta topic", "b1@example.com")
    assert run(site, monday + dt.timedelta(days=1)).queued == 1  # Tuesday: dora only
    post(site, "Gamma topic", "g1@example.com")
    assert run(site, monday + dt.timedelta(days=2)).queued == 1  # Wednesday: dora only
    assert run(site, monday + dt.timedelta(days=7)).queued == 1  # next Monday: wendy, two posts
    deliver(site.config, site.db)
    first, second = digests_for(relay, "wendy@example.com")
    assert "Weekly digest" in second["Subject"]
    assert "Alpha topic" in text_of(first) and "Beta topic" not in text_of(first)
    assert "Beta topic" in text_of(second) and "Gamma topic" in text_of(second)
    assert len(digests_for(relay, "dora@example.com")) == 3


def test_the_list_may_override_hour_and_time_zone(site):
    setup_list(site, "dora@example.com")
    with site.db.session() as session:
        mlist = session.scalars(select(MailingList)).one()
        mlist.digest_hour = 6
        mlist.digest_timezone = "Pacific/Auckland"
        # 06:00 in Auckland on 27 Nov is 17:00 UTC on 26 Nov.
        fire = digest_schedule.last_fire(site.config, mlist, dt.datetime(2026, 11, 26, 17, 30, tzinfo=dt.UTC))
        assert (fire.day, fire.hour) == (27, 6)


def test_long_posts_are_cut_with_a_link_and_quotes_trimmed(site, relay):
    site.config = replace(site.config, digest=replace(site.config.digest, max_post_chars=200))
    setup_list(site, "dora@example.com")
    body = ("word " * 200) + "\n"
    post(site, "Long topic", "l1@example.com", body=body)
    reply = "I agree.\n\nOn Thu, Ann wrote:\n> quoted words here\n> more\n\n-- \nAnn's signature\n"
    post(site, "Re: Long topic", "l2@example.com", body=reply, extra="In-Reply-To: <l1@example.com>")
    run(site, DAY1)
    deliver(site.config, site.db)
    (msg,) = digests_for(relay, "dora@example.com")
    text = text_of(msg)
    assert "The full post: " in text and "/lists/dev/posts/" in text, text
    assert "I agree." in text and "quoted words" not in text and "signature" not in text
    assert "Ann wrote" not in text


def test_a_digest_outbox_row_is_unique_per_member_and_period(site):
    setup_list(site, "dora@example.com")
    post(site, "Alpha topic", "a1@example.com")
    run(site, DAY1)
    with site.db.read_session() as session:
        (row,) = session.scalars(select(OutboxEntry).where(OutboxEntry.kind == "digest")).all()
        assert row.dedupe_key and row.dedupe_key.startswith("digest:")
        assert row.payload["to"] > row.payload["from"]


def reply_addresses(msg: EmailMessage) -> list[str]:
    return re.findall(r"dev\+r-[a-z0-9-]+@" + re.escape(DOMAIN), text_of(msg))


def alpha_beta_digest(site, relay) -> EmailMessage:
    """Dora's one digest of the first day, holding two new topics: Alpha, then Beta."""
    setup_list(site, "dora@example.com")
    post(site, "Alpha topic", "a1@example.com")
    post(site, "Beta topic", "b1@example.com")
    run(site, DAY1)
    deliver(site.config, site.db)
    (msg,) = digests_for(relay, "dora@example.com")
    return msg


def test_a_reply_through_a_digest_link_lands_under_that_post(site, relay):
    msg = alpha_beta_digest(site, relay)
    text = text_of(msg)
    beta = reply_addresses(msg)[text.index("Beta topic") > text.index("Alpha topic")]
    raw = message("Re: Beta topic", "<r1@example.com>", sender="dora@example.com", to=beta)
    out = store(site, raw, rcpt=beta)
    assert "published" in out[0]
    posts = site.posts_by_id()
    assert posts["<r1@example.com>"]["parent_message_id"] == "<b1@example.com>"


def test_reply_links_never_say_re_re(site, relay):
    """A reply's reply link keeps its one "Re:" (and a German "AW:" is a reply prefix too)."""
    setup_list(site, "dora@example.com")
    post(site, "Alpha topic", "a1@example.com")
    post(site, "Re: Alpha topic", "a2@example.com", extra="In-Reply-To: <a1@example.com>")
    post(site, "AW: Alpha topic", "a3@example.com", extra="In-Reply-To: <a2@example.com>")
    run(site, DAY1)
    deliver(site.config, site.db)
    (msg,) = digests_for(relay, "dora@example.com")
    subjects = [
        urllib.parse.unquote(s)
        for s in re.findall(r'mailto:[^"?]+\?subject=([^"&]+)', text_of(msg, "text/html"))
    ]
    assert sorted(s for s in subjects if s != "help") == [
        "AW: Alpha topic",
        "Re: Alpha topic",
        "Re: Alpha topic",
    ]


def test_a_reply_to_the_digest_quoting_one_post_is_threaded_there(site, relay):
    msg = alpha_beta_digest(site, relay)
    text = text_of(msg)
    section = text[text.index("2. Beta topic") if "2. Beta topic" in text else text.index("1. Beta topic") :]
    quoted = "\n".join("> " + line for line in section.splitlines()[:14])
    body = f"Me too.\n\nOn Thu, dev digest wrote:\n{quoted}\n"
    extra = f"In-Reply-To: {msg['Message-ID']}"
    raw = message(
        f"Re: {msg['Subject']}", "<r2@example.com>", sender="dora@example.com", body=body, extra=extra
    )
    assert "published" in store(site, raw)[0]
    assert site.posts_by_id()["<r2@example.com>"]["parent_message_id"] == "<b1@example.com>"


def test_a_reply_to_the_whole_digest_is_not_posted(site, relay):
    msg = alpha_beta_digest(site, relay)
    quoted = "\n".join("> " + line for line in text_of(msg).splitlines())
    extra = f"In-Reply-To: {msg['Message-ID']}\nReferences: {msg['Message-ID']}"
    raw = message(
        f"Re: {msg['Subject']}",
        "<r3@example.com>",
        sender="dora@example.com",
        body=f"Hi!\n{quoted}\n",
        extra=extra,
    )
    out = store(site, raw)
    assert "reply to a digest, not posted (answered how to reply to one post)" in out[0]
    assert "<r3@example.com>" not in site.posts_by_id()
    deliver(site.config, site.db)
    (answer,) = [
        as_email(t.data) for t in relay.messages_for("dora@example.com") if b"auto-replied" in t.data
    ]
    assert answer["Auto-Submitted"] == "auto-replied" and answer["In-Reply-To"] == "<r3@example.com>"
    assert "Reply to this post" in text_of(answer) and "was not posted" in answer["Subject"]
    # The subject alone is enough to tell (clients that drop In-Reply-To).
    raw = message(
        "Re: [dev] Daily digest, 1 Oct 2026: 2 new posts", "<r4@example.com>", sender="dora@example.com"
    )
    assert "reply to a digest, not posted" in store(site, raw)[0]
    # An out-of-office answer to the digest is never answered (RFC 3834, RELIABILITY I6).
    raw = message(
        "Re: [dev] Daily digest, 1 Oct 2026: 2 new posts",
        "<r5@example.com>",
        sender="dora@example.com",
        extra="Auto-Submitted: auto-replied",
    )
    assert "discarded" in store(site, raw)[0]
    with site.db.read_session() as session:
        notices = session.scalars(select(OutboxEntry).where(OutboxEntry.kind == "notice")).all()
    assert len(notices) == 2  # r3 and r4 answered; r5 (automatic) not


def test_header_injection_through_a_topic_subject_does_not_reach_the_digest(site, relay):
    """RELIABILITY S12/B23: the digest's header set is the template's, whatever the subjects."""
    setup_list(site, "dora@example.com")
    post(site, "hi=?UTF-8?Q?=0A?=Bcc: victim@example.net", "x1@example.com")
    run(site, DAY1)
    deliver(site.config, site.db)
    (t,) = relay.messages_for("dora@example.com")
    head = t.data.split(b"\r\n\r\n", 1)[0]
    assert b"\nBcc" not in head and b"\rBcc" not in head
    msg = as_email(t.data)
    assert msg["Bcc"] is None
    names = sorted(k.lower() for k in msg)
    assert names == sorted(
        [
            "from", "to", "subject", "date", "list-id", "list-post", "list-help", "list-archive",
            "list-unsubscribe-post", "precedence", "auto-submitted", "x-loop", "mime-version",
            "content-type", "message-id", "list-unsubscribe",
        ]
    )  # fmt: skip
    assert "Bcc: victim" in text_of(msg)  # shown as text, harmless


def test_a_new_digest_reader_starts_with_what_is_new_not_the_archive(site, relay):
    setup_list(site)
    site.add_members("dev", "carl@example.com", mode=DeliveryMode.ALL)
    post(site, "Old topic", "o1@example.com", body="already mailed to everyone\n")
    site.add_members("dev", "nina@example.com", mode=DeliveryMode.DIGEST)  # joins after the post
    store(
        site,
        message("mode digest", "<cmd1@example.com>", sender="carl@example.com", body="mode digest\n"),
        f"dev-request@{DOMAIN}",
        mail_from="carl@example.com",
    )
    post(site, "New topic", "n1@example.com", body="fresh\n")
    run(site, DAY1)
    deliver(site.config, site.db)
    for who in ("nina@example.com", "carl@example.com"):
        (msg,) = digests_for(relay, who)
        text = text_of(msg)
        assert "New topic" in text and "Old topic" not in text, who


def pause(site, address: str, now: dt.datetime) -> None:
    """Bounces reached the threshold: what core.bounces does then (delivery off, a warning)."""
    with site.db.session() as session:
        mlist = lists.get_list(session, "dev")
        member = lists.find_member(session, mlist.id, address)
        bounces.disable(session, site.config, mlist, member, now)


def mark_of(site, address: str) -> int:
    with site.db.read_session() as session:
        return session.scalars(select(Member.digest_mark).where(Member.address == address)).one()


def test_a_member_paused_by_bounces_misses_the_digests_of_that_time_and_no_more(site, relay):
    """Mailman's rule: a disabled member misses what is sent while disabled. Turned back on
    weeks later, they get the next digest like everyone, not one giant digest of all since."""
    setup_list(site, "dora@example.com", "dan@example.com")
    post(site, "Alpha topic", "a1@example.com")
    assert run(site, DAY1).queued == 2
    pause(site, "dan@example.com", DAY1 + dt.timedelta(hours=1))
    for day in range(1, 4):
        post(site, f"Away topic {day}", f"w{day}@example.com")
        result = run(site, DAY1 + dt.timedelta(days=day))
        assert (result.queued, result.paused) == (1, 1)  # dora's digest; dan passed over
        assert mark_of(site, "dan@example.com") == mark_of(site, "dora@example.com") == result.end_mark
    enabled = site.cli("members", "enable", "dev", "dan@example.com")
    assert enabled.returncode == 0, enabled.stderr
    post(site, "Back topic", "back@example.com")
    # Paused and turned back on between two digests: nothing was sent meanwhile, nothing missed.
    pause(site, "dora@example.com", DAY1 + dt.timedelta(days=3, hours=2))
    with site.db.session() as session:
        bounces.enable(lists.find_member(session, lists.get_list(session, "dev").id, "dora@example.com"))
    result = run(site, DAY1 + dt.timedelta(days=4))
    assert (result.queued, result.paused) == (2, 0)
    deliver(site.config, site.db)
    dan = digests_for(relay, "dan@example.com")
    assert len(dan) == 2
    assert "Back topic" in text_of(dan[1]) and "Away topic" not in text_of(dan[1])
    assert dan[1]["Subject"].endswith(": 1 new post in 1 topic")
    dora = digests_for(relay, "dora@example.com")
    assert len(dora) == 5 and "Back topic" in text_of(dora[-1])
    # `digest send` says who it passed over.
    pause(site, "dan@example.com", DAY1 + dt.timedelta(days=5))
    post(site, "Later topic", "later@example.com")
    sent = site.cli("digest", "send", "--list", "dev")
    assert "dev: 1 digest queued (1 member paused by bounces passed over)" in sent.stdout, sent.stdout


def lf(text: str) -> str:
    return text.replace("\r\n", "\n")


def toc(msg: EmailMessage) -> tuple[list[str], list[str]]:
    """The table of contents of the text part and of the HTML part, in order."""
    text = lf(text_of(msg))
    head = text[text.index("Topics\n") : text.index("_" * 20)]
    plain = re.findall(r"^  \d+\. (.+) \(", head, re.M)
    html = re.findall(r'<li><a href="#t\d+">([^<]+)</a>', text_of(msg, "text/html"))
    return plain, html


def test_contents_new_topics_first_then_the_most_active_and_per_topic_watch_and_mute(site, relay):
    setup_list(site, "dora@example.com")
    post(site, "Old topic", "o1@example.com")
    post(site, "Other old", "p1@example.com")
    run(site, DAY1)
    bo, cy = "Bo Builder <bo@example.com>", "Cy <cy@example.com>"
    for n in (2, 3, 4):
        raw = message(
            "Re: Old topic", f"<o{n}@example.com>", sender=bo, extra="In-Reply-To: <o1@example.com>"
        )
        assert "published" in store(site, raw)[0]
    post(site, "Re: Other old", "p2@example.com", extra="In-Reply-To: <p1@example.com>")
    post(site, "Small new", "n1@example.com")
    post(site, "Big new", "b1@example.com")
    raw = message("Re: Big new", "<b2@example.com>", sender=cy, extra="In-Reply-To: <b1@example.com>")
    assert "published" in store(site, raw)[0]
    run(site, DAY1 + dt.timedelta(days=1))
    deliver(site.config, site.db)
    digest = digests_for(relay, "dora@example.com")[1]
    plain, html = toc(digest)
    assert plain == html == ["Big new", "Small new", "Old topic", "Other old"]
    text = lf(text_of(digest))
    assert "1. Big new (new, 2 posts)" in text and "3. Old topic (3 posts)" in text
    assert digest["Subject"] == "[dev] Daily digest, 2 Oct 2026: 7 new posts in 4 topics"
    # Each post: its author and time.
    authors = re.findall(r"^----\n(.+), (\d\d:\d\d)$", text, re.M)
    assert [a for a, _ in authors] == ["Ann Author", "Cy", "Ann Author", *["Bo Builder"] * 3, "Ann Author"]
    # Watch and Mute, per topic: mute "Other old", watch "Big new", by the digest's own links.
    found = re.findall(
        r"^\d+\. (.+?)(?:  \[new topic\])?\n+   \S+\n   Watch: (\S+)   Mute: (\S+)$", text, re.M
    )
    watch = {title: w for title, w, _ in found}
    mute = {title: m for title, _, m in found}
    assert set(watch) == {"Big new", "Small new", "Old topic", "Other old"}
    for address in (mute["Other old"], watch["Big new"]):
        to = address.removeprefix("mailto:")
        cmd = message("command", f"<cmd-{to.split('@')[0]}@example.com>", sender="dora@example.com", to=to)
        store(site, cmd, rcpt=to, mail_from="dora@example.com")
    post(site, "Re: Other old", "p3@example.com", extra="In-Reply-To: <p1@example.com>")
    post(site, "Re: Big new", "b3@example.com", extra="In-Reply-To: <b1@example.com>")
    run(site, DAY1 + dt.timedelta(days=2))
    deliver(site.config, site.db)
    third = digests_for(relay, "dora@example.com")[2]
    assert toc(third) == (["Big new"], ["Big new"])  # Other old muted
    ids = [as_email(t.data)["Message-ID"] for t in relay.messages_for("dora@example.com")]
    assert "<b3@example.com>" in ids and "<p3@example.com>" not in ids  # watched: at once as well


def test_the_digest_unsubscribes_in_one_click(site, relay):
    """RFC 8058 on a digest: its List-Unsubscribe https link, POSTed, ends the membership at once."""
    import httpx

    from tests.helpers import ServerThread

    setup_list(site, "dora@example.com")
    post(site, "Alpha topic", "a1@example.com")
    run(site, DAY1)
    deliver(site.config, site.db)
    (msg,) = digests_for(relay, "dora@example.com")
    assert msg["List-Unsubscribe-Post"] == "List-Unsubscribe=One-Click"
    url = next(u for u in re.findall(r"<([^>]+)>", str(msg["List-Unsubscribe"])) if u.startswith("http"))
    assert "Unsubscribe: mailto:dev+unsubscribe@" in text_of(msg) and "Change your delivery mode:" in text_of(
        msg
    )
    # the member's preferences page, a link that opens after sign-in (never one that signs in)
    assert f"on the web (after signing in): {site.config.site.base_url}/lists/dev/preferences\r\n" in text_of(
        msg
    )
    web = ServerThread(site.config, ingest=False, process=False, delivery=False, scheduler=False)
    web.start()
    try:
        with httpx.Client(timeout=10) as http:
            done = http.post(url, content=b"List-Unsubscribe=One-Click")
    finally:
        web.stop()
    assert done.status_code == 200
    with site.db.read_session() as session:
        assert session.scalars(select(Member).where(Member.address == "dora@example.com")).first() is None


def test_a_poison_post_in_the_period_is_left_out_and_logged_and_the_digest_goes(
    site, relay, monkeypatch, caplog
):
    """F14 (Mailman CVE-2005-3573): a post that cannot be prepared for the digest is excluded and
    logged; the digest goes out with the rest, and the mark moves past it."""
    setup_list(site, "dora@example.com")
    post(site, "Alpha topic", "a1@example.com", body="alpha body\n")
    post(site, "Poison topic", "x1@example.com", body="POISON\n")
    post(site, "Beta topic", "b1@example.com", body="beta body\n")
    real_trim = digest_content.trim

    def trim(text: str) -> str:  # a fault only this post's text triggers (RELIABILITY H3-style)
        if "POISON" in text:
            raise RecursionError("maximum recursion depth exceeded")
        return real_trim(text)

    monkeypatch.setattr(digest_content, "trim", trim)
    assert run(site, DAY1).queued == 1
    with caplog.at_level("ERROR", logger="mailforum.core.digest_content"):
        deliver(site.config, site.db)
    (msg,) = digests_for(relay, "dora@example.com")
    text = text_of(msg)
    assert "alpha body" in text and "beta body" in text and "POISON" not in text
    assert msg["Subject"] == "[dev] Daily digest, 1 Oct 2026: 2 new posts in 2 topics"
    assert any("left out of a digest" in r.getMessage() for r in caplog.records)
    assert run(site, DAY1 + dt.timedelta(days=1)).queued == 0  # not retried into the next digest


def command(site, sender: str, body: str) -> list[str]:
    raw = message("cmd", f"<cmd-{len(body)}-{sender}>", sender=sender, body=body)
    return store(site, raw, f"dev-request@{DOMAIN}", mail_from=sender)


def test_a_new_topics_member_who_asks_for_a_digest_gets_it_on_top_of_first_posts(site, relay):
    """`digest daily` in mode new-topics: first posts still come at once, and the daily digest has
    the whole day; `digest off` ends the digest and keeps the mode. `mode digest` is "instead"."""
    setup_list(site)
    site.add_members("dev", "nina@example.com", mode=DeliveryMode.NEW_TOPICS)
    command(site, "nina@example.com", "digest daily\n")
    with site.db.read_session() as session:
        nina = session.scalars(select(Member).where(Member.address == "nina@example.com")).one()
        assert (nina.delivery_mode, nina.digest_frequency) == ("new-topics", "daily")
    post(site, "Alpha topic", "a1@example.com")
    post(site, "Re: Alpha topic", "a2@example.com", extra="In-Reply-To: <a1@example.com>")
    assert run(site, DAY1).queued == 1
    deliver(site.config, site.db)
    ids = [as_email(t.data)["Message-ID"] for t in relay.messages_for("nina@example.com")]
    assert "<a1@example.com>" in ids and "<a2@example.com>" not in ids  # new-topics, as before
    (msg,) = digests_for(relay, "nina@example.com")
    assert msg["Subject"].endswith(": 2 new posts in 1 topic")
    answers = [text_of(as_email(t.data)) for t in relay.messages_for("nina@example.com")]
    assert any("daily digest as well as the first post of every new topic" in a for a in answers)
    command(site, "nina@example.com", "digest off\n")
    post(site, "Beta topic", "b1@example.com")
    assert run(site, DAY1 + dt.timedelta(days=1)).queued == 0
    with site.db.read_session() as session:
        nina = session.scalars(select(Member).where(Member.address == "nina@example.com")).one()
        assert (nina.delivery_mode, nina.digest_frequency) == ("new-topics", None)


# -- the bytes on the wire: shared parts dot-stuffed once, tokens signed per member ----------

DOTTED = ".\n..\n.hidden\nend.\n. spaced\n"


def test_a_post_with_lines_of_dots_arrives_whole_in_every_digest(site, relay):
    """The digest's shared parts go out dot-stuffed once (mail.wire), the personal parts per
    copy: a line "." in a post must neither end DATA early nor lose or gain a dot."""
    setup_list(site, "dora@example.com", "dan@example.com")
    post(site, "Dotted topic", "d1@example.com", body=DOTTED)
    run(site, DAY1)
    deliver(site.config, site.db)
    for address in ("dora@example.com", "dan@example.com"):
        (msg,) = digests_for(relay, address)
        assert DOTTED in text_of(msg).replace("\r\n", "\n")
        html = text_of(msg, "text/html")
        assert all(line in html for line in ("..", ".hidden", "end."))


def test_digest_reply_addresses_are_signed_per_member_and_verify_only_for_theirs(site, relay):
    """One HMAC per member and a keyed BLAKE2b per post (tokens.DigestSigner): each
    member's addresses verify as (member, post), and are theirs alone."""
    from mailforum.core import tokens

    msg = alpha_beta_digest(site, relay)
    key = tokens.derive_key(site.config.site.secret_key)
    now = dt.datetime.now(dt.UTC)
    with site.db.read_session() as session:
        dora = session.scalar(select(Member.id).where(Member.address == "dora@example.com"))
    found = set()
    for address in reply_addresses(msg):
        token = address.split("+r-", 1)[1].split("@", 1)[0]
        assert tokens._B32.index(token[-1]) % 2 == 1  # the per-member form
        member, post_id = tokens.verify(key, tokens.REPLY, token, now, fields=2)
        assert member == dora
        found.add(post_id)
        for forged in (f"{tokens._b36(dora + 1)}-{token.split('-', 1)[1]}",):
            with pytest.raises(tokens.InvalidToken):
                tokens.verify(key, tokens.REPLY, forged, now, fields=2)
    assert len(found) == 2


def test_a_dkim_signed_digest_is_signed_as_plain_bytes_and_verifies(site, tmp_path):
    """With DKIM the copy is signed before it is stuffed (not the DATA form: the final dot
    is no part of the message)."""
    import base64
    import subprocess

    import dkim

    from mailforum.config import DkimConfig
    from tests.integration.outbound_helpers import deliver as deliver_with
    from tests.relay import fake_relay

    private = tmp_path / "dkim.pem"
    subprocess.run(["openssl", "genrsa", "-out", str(private), "2048"], check=True, capture_output=True)
    der = subprocess.run(
        ["openssl", "rsa", "-in", str(private), "-pubout", "-outform", "DER"], check=True, capture_output=True
    ).stdout
    record = b"v=DKIM1; k=rsa; p=" + base64.b64encode(der)
    config = replace(site.config, dkim=DkimConfig(key_file=str(private), selector="s1"))
    setup_list(site, "dora@example.com")
    post(site, "Dotted topic", "d1@example.com", body=DOTTED)
    run(site, DAY1)
    with fake_relay(site.config.relay.port) as relay:
        deliver_with(config, site.db)
        (copy,) = [t for t in relay.messages_for("dora@example.com") if b"Message-ID: <digest." in t.data]
    assert copy.data.startswith(b"DKIM-Signature:")
    assert dkim.verify(copy.data, dnsfunc=lambda name, timeout=5: record)
    assert DOTTED in text_of(as_email(copy.data)).replace("\r\n", "\n")
