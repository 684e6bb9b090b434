"""Subscriptions by mail, end to end: real SMTP in, the real server (ingest, processing,
delivery, web), a fake relay out, real HTTP requests to the links in the mails.

RELIABILITY I6 (no answers to machines), S4 (forged subscribe), S5 (caps), S6 (tokens),
S7 (unsubscribe), S23 (command-mail abuse), B11 (null sender), B21 (no From).
"""

from __future__ import annotations

import re
from dataclasses import replace
from email.message import EmailMessage
from email.utils import getaddresses

import httpx
import pytest
from sqlalchemy import select

from mailforum.config import SecurityConfig
from mailforum.core import lists
from mailforum.db.models import (
    AuditEntry,
    Confirmation,
    DeliveryMode,
    Member,
    SubscriptionKind,
    TopicSubscription,
)
from tests.helpers import DOMAIN, ServerThread, message, send, wait_for
from tests.integration.outbound_helpers import as_email, rows, settled, topic_of

REQUEST = f"dev-request@{DOMAIN}"


@pytest.fixture
def dev(site):
    site.create_list("dev")
    return site


def mail(site, to, body="", subject="", sender="newbie@example.com", mail_from=None, extra="", mid=None):
    """Send one command mail over real SMTP."""
    global _count
    _count += 1
    raw = message(subject, mid or f"<c{_count}@example.com>", sender=sender, to=to, body=body, extra=extra)
    send(site.config, raw, [to], sender.split("<")[-1].rstrip(">") if mail_from is None else mail_from)


_count = 0


def inbox(relay, address) -> list[EmailMessage]:
    """The automatic answers ``address`` received (post notifications left out)."""
    found = [as_email(t.data) for t in relay.messages_for(address)]
    return [m for m in found if m["Auto-Submitted"] == "auto-replied"]


def wait_mail(relay, address, count=1) -> list[EmailMessage]:
    return wait_for(lambda: len(inbox(relay, address)) >= count and inbox(relay, address))


def quiet(site, relay, address, expected=0) -> None:
    """Everything processed and delivered, and ``address`` got exactly ``expected`` mails."""
    wait_for(lambda: processed(site) and settled(site))
    assert len(inbox(relay, address)) == expected, [m["Subject"] for m in inbox(relay, address)]


def processed(site) -> bool:
    from mailforum.db.models import SpoolEntry

    with site.db.read_session() as session:
        return session.scalar(select(SpoolEntry.id).where(SpoolEntry.state == "new")) is None


def member(site, address, list_name="dev") -> Member | None:
    with site.db.read_session() as session:
        mlist = lists.get_list(session, list_name)
        return lists.find_member(session, mlist.id, address)


def audited(site) -> list[tuple[str, str]]:
    with site.db.read_session() as session:
        return [(e.actor, e.action) for e in session.scalars(select(AuditEntry).order_by(AuditEntry.id))]


def text(msg: EmailMessage) -> str:
    part = msg.get_body(("plain",))
    assert part is not None
    return part.get_content()


def confirm_link(msg: EmailMessage) -> str:
    return re.search(r"(http://\S+/confirm/[0-9a-z-]+)", text(msg)).group(1)


def reply_target(msg: EmailMessage) -> str:
    return getaddresses([str(msg["Reply-To"])])[0][1]


# --- subscribe: double opt-in ----------------------------------------------------------------------


def test_subscribe_then_confirm_by_replying(dev, relay, server):
    mail(dev, REQUEST, subject="subscribe", sender="Newbie <newbie@example.com>")
    [confirmation] = wait_mail(relay, "newbie@example.com")
    assert member(dev, "newbie@example.com") is None  # nothing before the confirmation
    assert confirmation["Auto-Submitted"] == "auto-replied"
    assert reply_target(confirmation).startswith("dev+confirm-")
    # The reply, as a client writes it: Re: subject, the confirmation quoted below.
    quoted = "\n".join("> " + line for line in text(confirmation).splitlines())
    mail(
        dev,
        reply_target(confirmation),
        f"yes please\n\nOn Thu, Newbie wrote:\n{quoted}\n",
        "Re: " + str(confirmation["Subject"]),
        extra=f"In-Reply-To: {confirmation['Message-ID']}",
        sender="Newbie <newbie@example.com>",
    )
    wait_for(lambda: member(dev, "newbie@example.com"))
    assert member(dev, "newbie@example.com").display_name == "Newbie"  # the confirming From's name is kept
    welcome = wait_mail(relay, "newbie@example.com", 2)[1]
    assert "Welcome" in str(welcome["Subject"])
    assert audited(dev) == []  # by mail: not a web action, not audited


def test_subscribe_shortcut_then_confirm_by_link(dev, relay, server):
    mail(dev, f"dev+subscribe@{DOMAIN}", "")
    [confirmation] = wait_mail(relay, "newbie@example.com")
    link = confirm_link(confirmation)
    with httpx.Client(timeout=10) as http:
        page = http.get(link)  # what a link scanner does: nothing changes
        assert page.status_code == 200 and "<form" in page.text and "newbie@example.com" in page.text
        assert member(dev, "newbie@example.com") is None
        done = http.post(link)
        assert done.status_code == 200 and "member" in done.text
        assert member(dev, "newbie@example.com") is not None
        again = http.post(link)  # single use
        assert again.status_code == 200 and "already" in again.text
        tampered = http.post(link[:-3] + ("aaa" if not link.endswith("aaa") else "bbb"))
        assert tampered.status_code == 404
    wait_mail(relay, "newbie@example.com", 2)
    quiet(dev, relay, "newbie@example.com", 2)  # the confirmation and one welcome, nothing else
    assert audited(dev) == [("newbie@example.com", "member.join")]  # joined on the web: theirs


def test_unsubscribe_needs_a_confirmation_and_says_goodbye(dev, relay, server):
    dev.add_members("dev", "ann@example.com")
    mail(dev, f"dev+unsubscribe@{DOMAIN}", sender="ann@example.com")
    [confirmation] = wait_mail(relay, "ann@example.com")
    assert member(dev, "ann@example.com") is not None
    mail(
        dev,
        reply_target(confirmation),
        "ok\n",
        "Re: " + str(confirmation["Subject"]),
        sender="ann@example.com",
    )
    wait_for(lambda: member(dev, "ann@example.com") is None)
    goodbye = wait_mail(relay, "ann@example.com", 2)[1]
    assert "left" in str(goodbye["Subject"])
    assert "/lists/dev/preferences" in goodbye.get_body(("plain",)).get_content()


def test_confirm_command_in_the_subject_of_mail_to_request(dev, relay, server):
    mail(dev, REQUEST, "subscribe\n")
    [confirmation] = wait_mail(relay, "newbie@example.com")
    # A client that drops Reply-To and answers the From (-request) address: the subject has the token.
    mail(dev, REQUEST, "", "Re: " + str(confirmation["Subject"]))
    wait_for(lambda: member(dev, "newbie@example.com"))


# --- the member commands ---------------------------------------------------------------------------


def seed_topic(site, relay) -> int:
    send(site.config, message("A topic", "<topic@example.com>", sender="ann@example.com"), [f"dev@{DOMAIN}"])
    wait_for(lambda: site.posts_by_id().get("<topic@example.com>"))
    return topic_of(site, "<topic@example.com>")


def subscriptions_of(site, address) -> dict[int, str]:
    with site.db.read_session() as session:
        found = member(site, address)
        rows_ = session.execute(
            select(TopicSubscription.topic_id, TopicSubscription.kind).where(
                TopicSubscription.member_id == found.id
            )
        ).all()
    return dict(rows_)


def test_member_commands_in_the_body_stop_at_the_signature(dev, relay, server):
    dev.add_members("dev", "ann@example.com", "bob@example.com")
    topic = seed_topic(dev, relay)
    body = f"mode new-topics\nwatch {topic}\nDigest Weekly\nstatus\n\n-- \nBob\nunsubscribe\n"
    mail(dev, REQUEST, body, "my settings", sender="bob@example.com")
    [answer] = wait_mail(relay, "bob@example.com")
    bob = member(dev, "bob@example.com")
    # A digest asked for in new-topics mode comes on top of the first posts (not instead).
    assert (bob.delivery_mode, bob.digest_frequency) == (DeliveryMode.NEW_TOPICS.value, "weekly")
    assert subscriptions_of(dev, "bob@example.com") == {topic: SubscriptionKind.WATCH.value}
    body_text = text(answer)
    assert "mode new-topics" in body_text and f"watch {topic}" in body_text and "is a member" in body_text
    quiet(dev, relay, "bob@example.com", 1)  # "unsubscribe" after the signature was not read
    assert "Bob" not in body_text  # nothing of the sender's text comes back


def test_a_forged_from_changes_no_members_settings(dev, relay):
    # With our MTA's verdict configured, "mode none" in a mail "from" a member that the MTA did
    # not authenticate changes nothing; the refusal goes to the real member (S1, S7).
    dev.config = replace(dev.config, security=SecurityConfig(authserv_id=DOMAIN))
    dev.add_members("dev", "bob@example.com")
    running = ServerThread(dev.config)
    running.start()
    try:
        forged = f"Authentication-Results: {DOMAIN}; dmarc=fail header.from=example.com"
        mail(dev, REQUEST, "mode none\nnodupes off\ndigest daily\n", sender="bob@example.com", extra=forged)
        [answer] = wait_mail(relay, "bob@example.com")
        assert "Nothing changed" in text(answer)
        bob = member(dev, "bob@example.com")
        assert (bob.delivery_mode, bob.avoid_duplicates, bob.digest_frequency) == ("all", True, None)
        signed = f"Authentication-Results: {DOMAIN}; dmarc=pass header.from=example.com"
        mail(dev, REQUEST, "mode none\n", sender="bob@example.com", extra=signed)
        wait_for(lambda: member(dev, "bob@example.com").delivery_mode == DeliveryMode.NONE.value)
    finally:
        running.stop()


def test_watch_and_mute_shortcuts(dev, relay, server):
    dev.add_members("dev", "ann@example.com", "bob@example.com")
    topic = seed_topic(dev, relay)
    mail(dev, f"dev+mute-{topic}@{DOMAIN}", sender="bob@example.com")
    wait_for(lambda: subscriptions_of(dev, "bob@example.com") == {topic: "mute"})
    mail(dev, f"dev+watch-{topic}@{DOMAIN}", sender="bob@example.com")
    wait_for(lambda: subscriptions_of(dev, "bob@example.com") == {topic: "watch"})
    mail(dev, REQUEST, f"unwatch {topic}", sender="bob@example.com")
    wait_for(lambda: subscriptions_of(dev, "bob@example.com") == {})
    answers = wait_mail(relay, "bob@example.com", 3)
    assert all(a["Auto-Submitted"] == "auto-replied" for a in answers)


def test_errors_are_explained(dev, relay, server):
    dev.add_members("dev", "bob@example.com")
    mail(dev, REQUEST, "mode sometimes\nwatch 999999\nfrobnicate now\n", sender="bob@example.com")
    [answer] = wait_mail(relay, "bob@example.com")
    body = text(answer)
    assert "mode all" in body  # how to do it right
    assert "no topic 999999" in body
    assert "not a command" in body and "frobnicate" not in body  # never echoed
    mail(dev, REQUEST, "digest daily\nunsubscribe\n", sender="stranger@example.com")
    [answer] = wait_mail(relay, "stranger@example.com")
    assert "not a member" in text(answer) and "subscribe" in text(answer)


def test_help_and_an_empty_mail_get_the_command_list(dev, relay, server):
    mail(dev, REQUEST, "", "help", sender="ann@example.com")
    mail(dev, REQUEST, "Hello, how does this work?\n", "question", sender="bob@example.com")
    for who in ("ann@example.com", "bob@example.com"):
        [answer] = wait_mail(relay, who)
        assert "digest daily|weekly|off" in text(answer)


def test_commands_in_html_only_mail(dev, relay, server):
    dev.add_members("dev", "bob@example.com")
    html = (
        "<html><body><p>mode none</p><div>status</div>"
        "<blockquote type=cite>unsubscribe</blockquote></body></html>"
    )
    extra = "MIME-Version: 1.0\nContent-Type: text/html; charset=utf-8"
    mail(dev, REQUEST, html, "", sender="bob@example.com", extra=extra)
    [answer] = wait_mail(relay, "bob@example.com")
    assert member(dev, "bob@example.com").delivery_mode == "none"
    assert "is a member" in text(answer)
    quiet(dev, relay, "bob@example.com", 1)  # the quoted "unsubscribe" was not read


# --- no abuse, no backscatter -----------------------------------------------------------------------


def test_a_forged_subscribe_sends_the_victim_one_plain_confirmation(dev, relay, server):
    evil = '"Click http://evil.example to claim prize" <victim@example.com>'
    mail(
        dev,
        REQUEST,
        "subscribe\nClick http://evil.example now\n" + "subscribe\n" * 20,
        "subscribe",
        sender=evil,
        mail_from="attacker@example.net",
    )
    [confirmation] = wait_mail(relay, "victim@example.com")
    quiet(dev, relay, "victim@example.com", 1)
    assert inbox(relay, "attacker@example.net") == []
    raw = bytes(confirmation)
    assert b"evil" not in raw and b"prize" not in raw and b"Click" not in raw
    assert member(dev, "victim@example.com") is None
    with httpx.Client(timeout=10) as http:  # the victim confirms by link: the forger's name is not kept
        assert http.post(confirm_link(confirmation)).status_code == 200
    assert member(dev, "victim@example.com").display_name == ""
    # An existing member gets the very same kind of mail (no "already subscribed" oracle).
    dev.add_members("dev", "member@example.com")
    mail(dev, REQUEST, "subscribe", sender="member@example.com", mail_from="attacker@example.net")
    [other] = wait_mail(relay, "member@example.com")

    def shape(m: EmailMessage, who: str) -> str:
        return re.sub(r"[0-9a-z]+(-[0-9a-z]+){2,}", "TOKEN", text(m)).replace(who, "ADDR")

    assert shape(other, "member@example.com") == shape(confirmation, "victim@example.com")


def test_one_pending_confirmation_per_list_and_three_a_day_per_address(site, relay, server):
    for name in ("a", "b", "c", "d", "e"):
        site.create_list(name)
    for name in ("a", "a", "b", "c", "d", "e"):
        mail(site, f"{name}-request@{DOMAIN}", "subscribe", sender="victim@example.com")
    wait_mail(relay, "victim@example.com", 3)
    quiet(site, relay, "victim@example.com", 3)
    with site.db.read_session() as session:
        assert len(session.scalars(select(Confirmation.id)).all()) == 3


@pytest.mark.parametrize(
    ("extra", "mail_from"),
    [
        ("Auto-Submitted: auto-replied", "vacation@example.com"),
        ("Precedence: bulk", "vacation@example.com"),
        ("List-Id: <other.example.net>", "vacation@example.com"),
        ("X-Autoreply: yes", "vacation@example.com"),
        ("", ""),  # a bounce: MAIL FROM:<> (B11)
    ],
    ids=["auto-submitted", "precedence", "list-id", "x-autoreply", "null-sender"],
)
def test_machines_writing_to_request_get_no_answer(dev, relay, server, extra, mail_from):
    dev.add_members("dev", "vacation@example.com")
    mail(
        dev,
        REQUEST,
        "unsubscribe\nhelp\n",
        "Out of office",
        sender="vacation@example.com",
        mail_from=mail_from,
        extra=extra,
    )
    mail(dev, f"dev+subscribe@{DOMAIN}", sender="vacation@example.com", mail_from=mail_from, extra=extra)
    quiet(dev, relay, "vacation@example.com", 0)
    assert rows(dev) == []


def test_a_vacation_reply_to_a_confirmation_does_not_confirm(dev, relay, server):
    mail(dev, REQUEST, "subscribe")
    [confirmation] = wait_mail(relay, "newbie@example.com")
    mail(
        dev,
        reply_target(confirmation),
        "I am away.",
        "Auto: " + str(confirmation["Subject"]),
        extra="Auto-Submitted: auto-replied",
    )
    quiet(dev, relay, "newbie@example.com", 1)
    assert member(dev, "newbie@example.com") is None


def test_mail_without_from_gets_no_answer(dev, relay, server):
    raw = f"To: {REQUEST}\r\nSubject: help\r\nMessage-ID: <nofrom@x>\r\n\r\nhelp\r\n".encode()
    send(dev.config, raw, [REQUEST], "someone@example.com")
    quiet(dev, relay, "someone@example.com", 0)
    assert rows(dev) == []


def test_only_the_first_ten_command_lines_are_read(dev, relay, server):
    dev.add_members("dev", "bob@example.com")
    body = "status\n" * 9 + "mode none\n" + "mode digest\n" * 490
    mail(dev, REQUEST, body, sender="bob@example.com")
    [answer] = wait_mail(relay, "bob@example.com")
    assert member(dev, "bob@example.com").delivery_mode == "none"
    assert text(answer).count("Done") == 2  # ten lines read; "status" nine times is one command


# --- one-click unsubscribe (RFC 8058) ----------------------------------------------------------------


def test_one_click_unsubscribe_with_a_bare_post(dev, relay, server):
    dev.add_members("dev", "ann@example.com", "bob@example.com")
    send(dev.config, message("Hello", "<hello@example.com>", sender="ann@example.com"), [f"dev@{DOMAIN}"])
    [copy] = [as_email(t.data) for t in wait_for(lambda: relay.messages_for("bob@example.com"))]
    assert copy["List-Unsubscribe-Post"] == "List-Unsubscribe=One-Click"
    links = re.findall(r"<([^>]+)>", str(copy["List-Unsubscribe"]))
    assert links[0].startswith(dev.config.site.base_url + "/unsubscribe/")
    assert links[1] == f"mailto:dev+unsubscribe@{DOMAIN}"
    url = links[0]
    with httpx.Client(timeout=10, follow_redirects=False) as http:
        assert http.get(url).status_code == 200
        assert member(dev, "bob@example.com") is not None  # GET changes nothing
        forged = http.post(
            url[:-4] + "aaaa",
            content=b"List-Unsubscribe=One-Click",
            headers={"content-type": "application/x-www-form-urlencoded"},
        )
        assert forged.status_code == 404
        # Exactly what a mail provider sends: no cookie, no Origin, a foreign cookie even.
        done = http.post(
            url,
            content=b"List-Unsubscribe=One-Click",
            headers={"content-type": "application/x-www-form-urlencoded", "cookie": "session=other"},
        )
        assert done.status_code == 200
        assert member(dev, "bob@example.com") is None
        assert audited(dev) == [("bob@example.com", "member.leave")]
        again = http.post(url, content=b"List-Unsubscribe=One-Click")
        assert again.status_code == 200
        assert http.post(url, content=b"").status_code == 400  # a POST that is not the RFC 8058 one
    assert member(dev, "ann@example.com") is not None


def test_one_click_as_multipart_form_data(dev, relay, server):
    dev.add_members("dev", "ann@example.com", "bob@example.com")
    send(dev.config, message("Hello", "<hello@example.com>", sender="ann@example.com"), [f"dev@{DOMAIN}"])
    [copy] = [as_email(t.data) for t in wait_for(lambda: relay.messages_for("bob@example.com"))]
    url = re.findall(r"<([^>]+)>", str(copy["List-Unsubscribe"]))[0]
    with httpx.Client(timeout=10) as http:
        done = http.post(url, files={"List-Unsubscribe": (None, "One-Click")})
        assert done.status_code == 200
    assert member(dev, "bob@example.com") is None


# --- the web forms send the same confirmation ---------------------------------------------------------


def test_the_join_form_sends_a_confirmation(dev, relay, server):
    base = dev.config.site.base_url
    with httpx.Client(base_url=base, timeout=10) as http:
        form = http.get("/lists/dev/join")
        token = re.search(r'name="csrf" value="([^"]+)"', form.text).group(1)
        sent = http.post("/lists/dev/join", data={"csrf": token, "address": "webby@example.com"})
        assert sent.status_code == 200
    [confirmation] = wait_mail(relay, "webby@example.com")
    with httpx.Client(timeout=10) as http:
        assert http.post(confirm_link(confirmation)).status_code == 200
    assert member(dev, "webby@example.com") is not None


def test_the_watch_form_and_watch_by_mail_let_a_stranger_follow_one_topic(dev, relay, server):
    dev.add_members("dev", "ann@example.com")
    topic = seed_topic(dev, relay)
    base = dev.config.site.base_url
    with httpx.Client(base_url=base, timeout=10) as http:
        form = http.get(f"/lists/dev/topics/{topic}/watch")
        token = re.search(r'name="csrf" value="([^"]+)"', form.text).group(1)
        http.post(f"/lists/dev/topics/{topic}/watch", data={"csrf": token, "address": "reader@example.com"})
    mail(dev, f"dev+watch-{topic}@{DOMAIN}", sender="other@example.com")
    for who in ("reader@example.com", "other@example.com"):
        [confirmation] = wait_mail(relay, who)
        assert f"follow topic {topic}" in text(confirmation)
        with httpx.Client(timeout=10) as http:
            assert http.post(confirm_link(confirmation)).status_code == 200
        assert member(dev, who).delivery_mode == "none"
        assert subscriptions_of(dev, who) == {topic: "watch"}


# --- administrivia on the post address (S24) ----------------------------------------------------------


def test_unsubscribe_sent_to_the_list_is_held_and_the_author_told_where_commands_go(dev, relay, server):
    dev.add_members("dev", "ann@example.com", "bob@example.com")
    send(dev.config, message("unsubscribe", "<u1@example.com>", sender="bob@example.com"), [f"dev@{DOMAIN}"])
    [answer] = wait_mail(relay, "bob@example.com")
    assert f"dev+unsubscribe@{DOMAIN}" in text(answer)
    auto = message("unsubscribe", "<u2@example.com>", sender="bob@example.com", extra="Precedence: bulk")
    send(dev.config, auto, [f"dev@{DOMAIN}"])
    quiet(dev, relay, "bob@example.com", 1)
    assert relay.messages_for("ann@example.com") == []  # not published
    assert member(dev, "bob@example.com") is not None


def test_guessing_link_tokens_gets_404_then_429(dev, server):
    base = dev.config.site.base_url
    with httpx.Client(base_url=base, timeout=10) as http:
        codes = [
            http.post(f"/unsubscribe/1-2-3-guess{i:03d}", content=b"List-Unsubscribe=One-Click").status_code
            for i in range(20)
        ]
        assert set(codes) == {404}
        assert http.post("/confirm/1-2-3-guess999").status_code == 429
        assert http.get("/confirm/not/a/token").status_code == 404


def test_a_command_in_subject_and_body_runs_once_and_answers_name_the_topic(dev, relay, server):
    dev.add_members("dev", "ann@example.com", "bob@example.com")
    topic = seed_topic(dev, relay)
    mail(dev, REQUEST, f"mute {topic}\n", f"mute {topic}", sender="bob@example.com")
    [answer] = wait_mail(relay, "bob@example.com")
    body = text(answer)
    assert body.count(f"mute {topic}:") == 1, body  # reported once
    assert f'topic {topic} ("A topic")' in body  # by number and by title
    mail(dev, REQUEST, "status\n", "status", sender="bob@example.com")
    status = text(wait_mail(relay, "bob@example.com", 2)[1])
    assert status.count("status:") == 1 and f'muted topic {topic} ("A topic")' in status


def test_nodupes_by_mail_and_in_status(dev, relay, server):
    dev.add_members("dev", "bob@example.com")
    assert member(dev, "bob@example.com").avoid_duplicates  # on by default
    mail(dev, REQUEST, "set nodupes off\nstatus\n", sender="bob@example.com")
    [answer] = wait_mail(relay, "bob@example.com")
    assert member(dev, "bob@example.com").avoid_duplicates is False
    assert "addressed to you sent" in text(answer)
    mail(dev, REQUEST, "nodupes on\n", sender="bob@example.com")
    wait_mail(relay, "bob@example.com", 2)
    assert member(dev, "bob@example.com").avoid_duplicates is True


def test_the_welcome_says_what_digest_daily_does_as_the_command_does(dev, relay, server):
    """'digest daily' in mode all adds the digest (digest_enqueue.frequency_of); 'mode digest' replaces."""
    mail(dev, f"dev+subscribe@{DOMAIN}", "")
    [confirmation] = wait_mail(relay, "newbie@example.com")
    httpx.post(confirm_link(confirmation), timeout=10)
    welcome = wait_mail(relay, "newbie@example.com", 2)[1]
    lines_ = {
        line.split()[0] + " " + line.split()[1]: line
        for line in text(welcome).splitlines()
        if line.startswith("  ")
    }
    assert "as well as" in lines_["digest daily"] and "instead" not in lines_["digest daily"]
    assert "instead" in lines_["mode digest"]
    html = welcome.get_body(("html",)).get_content()
    assert "one mail a day instead" not in html and "as well as" in html
    mail(dev, REQUEST, "digest daily\n")
    answer = text(wait_mail(relay, "newbie@example.com", 3)[2])
    assert "as well as" in answer and member(dev, "newbie@example.com").delivery_mode == "all"
