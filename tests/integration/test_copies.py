"""What members see in their copies (issue 13): no duplicate for people the sender wrote to,
the sender's To/Cc kept visible, our footers kept out of what we store.

Real SMTP in to the real server, copies out to a fake relay. RELIABILITY B52, S16.
"""

from __future__ import annotations

import datetime as dt
from email.utils import getaddresses

from sqlalchemy import select

from mailforum.core import digest_schedule
from mailforum.core.copies import Composer
from mailforum.core.lists import find_member, get_list
from mailforum.db import outbox, spool
from mailforum.db.models import DeliveryMode, PostingPolicy
from mailforum.render import Renderer
from mailforum.runners.worker import SpoolProcessor
from tests.helpers import DOMAIN, message, send, wait_for
from tests.integration.outbound_helpers import LIST, as_email, rows, settled


def set_nodupes(site, address: str, on: bool) -> None:
    with site.db.session() as session:
        member = find_member(session, get_list(session, "dev").id, address)
        assert member is not None
        member.avoid_duplicates = on


def post_rows(site) -> set[str]:
    return {r.recipient for r in rows(site) if r.kind == "post"}


# To and Cc as a client writes them: mixed case, names with commas, an encoded-word whose
# decoded text looks like an address (it must not count), a group, a CR LF smuggled in a name.
TO = f'"Dev list" <dev@{DOMAIN}>, "Smith, Bob" <BOB@Example.COM>'
CC = (
    "=?utf-8?q?eve=40example=2Ecom?= <carol@EXAMPLE.com>, dan@example.com, dora@example.com,\r\n"
    " =?utf-8?q?Mallory=0D=0ABcc=3A_x=40evil=2Eexample?= <outsider@example.net>,\r\n"
    f" friends: frank@example.net;, dev+r-forged-token@{DOMAIN}"
)


def test_members_the_sender_wrote_to_get_no_list_copy_and_copies_show_to_and_cc(site, relay, server):
    site.create_list("dev", PostingPolicy.OPEN)
    site.add_members("dev", "ann@example.com", "bob@example.com", "carol@example.com")
    site.add_members("dev", "dan@example.com", "eve@example.com", "gus@example.com")
    site.add_members("dev", "dora@example.com", mode=DeliveryMode.DIGEST)
    set_nodupes(site, "dan@example.com", False)  # dan asked for the list copy anyway
    raw = message("Plans", "<p1@example.com>", sender="ann@example.com", to=TO, extra=f"Cc: {CC}")
    send(site.config, raw, [LIST], "ann@example.com")
    wait_for(lambda: relay.received(3) and settled(site))
    # bob (To, other case) and carol (Cc) have the sender's copy: no list copy. dan turned
    # nodupes off; eve is only in an encoded display name; gus is not named at all.
    assert post_rows(site) == {"dan@example.com", "eve@example.com", "gus@example.com"}
    copy = as_email(relay.messages_for("gus@example.com")[0].data)
    to = [a.lower() for _, a in getaddresses([str(copy["To"])])]
    cc = [a.lower() for _, a in getaddresses([str(copy["Cc"])])]
    assert to == [f"dev@{DOMAIN}", "bob@example.com"]
    # Only what the sender wrote (no member added: S16), none of our reply addresses.
    assert cc == [
        "carol@example.com",
        "dan@example.com",
        "dora@example.com",
        "outsider@example.net",
        "frank@example.net",
    ]
    head = relay.messages_for("gus@example.com")[0].data.split(b"\r\n\r\n")[0]
    assert b"\nBcc" not in head and b"gus@example.com" not in head.split(b"List-Unsubscribe")[0]
    assert "Mallory" in str(copy["Cc"]) and "\n" not in str(copy["Cc"])
    assert copy["From"].addresses[0].addr_spec == f"dev@{DOMAIN}"  # DMARC: still ours

    # Digests are not affected: dora, named in Cc, still finds the post in her digest.
    digest_schedule.run_list(site.db, site.config, "dev", dt.datetime.now(dt.UTC), scheduled=False)
    wait_for(lambda: relay.messages_for("dora@example.com") and settled(site))
    digest = as_email(relay.messages_for("dora@example.com")[0].data)
    assert "Plans" in str(digest["Subject"]) or "Plans" in digest.get_body(("plain",)).get_content()


def test_nodupes_off_by_default_only_for_those_who_say_so_and_a_watch_does_not_override(site, relay, server):
    site.create_list("dev", PostingPolicy.OPEN)
    site.add_members("dev", "ann@example.com", "bob@example.com", "cy@example.com")
    send(
        site.config, message("Root", "<r1@example.com>", sender="bob@example.com"), [LIST], "bob@example.com"
    )
    wait_for(lambda: relay.received(2) and settled(site))  # ann, cy; bob now watches his topic
    relay.transactions.clear()
    reply = message(
        "Re: Root",
        "<r2@example.com>",
        sender="ann@example.com",
        to="Bob <bob@example.com>",
        extra=f"Cc: {LIST}\r\nIn-Reply-To: <r1@example.com>",
    )
    send(site.config, reply, [LIST], "ann@example.com")
    wait_for(lambda: relay.received(1) and settled(site))
    assert {r.recipient for r in rows(site) if r.kind == "post" and r.message_id == "<r2@example.com>"} == {
        "cy@example.com"
    }


# --- our footers, quoted by replies, stay out of what we store (item 6) -----------------------

FOOTER_BITS = ("View this topic on the web", "Reply privately", "Watch this topic", "delivery mode", "+mute-")


def copy_of(relay, address: str, message_id: str):
    for transaction in relay.messages_for(address):
        msg = as_email(transaction.data)
        if msg["Message-ID"] == message_id:
            return msg
    return None


def quoted(text: str, marker: str = "> ") -> str:
    return "\n".join((marker + line).rstrip() for line in text.splitlines()) + "\n"


def test_a_chain_of_replies_quoting_our_footers_stores_none_of_them(site, relay, server):
    site.create_list("dev", PostingPolicy.OPEN)
    site.add_members("dev", "ann@example.com", "bob@example.com", "carol@example.com")
    site.add_members("dev", "dora@example.com", mode=DeliveryMode.DIGEST)
    send(
        site.config,
        message("Plans", "<c1@example.com>", sender="ann@example.com", body="Root text.\n"),
        [LIST],
    )
    parent = "<c1@example.com>"
    # Each member answers the copy they got, the way their client quotes it.
    replies = [
        ("bob@example.com", "mutt", "<c2@example.com>"),
        ("carol@example.com", "outlook", "<c3@example.com>"),
        ("ann@example.com", "html", "<c4@example.com>"),
        ("bob@example.com", "mutt", "<c5@example.com>"),
    ]
    for number, (who, style, mid) in enumerate(replies, 2):
        copy = wait_for(lambda who=who, parent=parent: copy_of(relay, who, parent))
        text = copy.get_body(("plain",)).get_content()
        html = copy.get_body(("html",)).get_content()
        extra = f"In-Reply-To: {parent}"
        if style == "mutt":
            body = f"Reply {number}.\n\nOn Mon, someone wrote:\n{quoted(text)}"
        elif style == "outlook":
            body = f"Reply {number}.\n\n-----Original Message-----\nFrom: Dev Talk\n\n{text}"
        else:  # an HTML-only reply quoting our HTML part in a blockquote
            body = f"<html><body><p>Reply {number}.</p><blockquote>{html}</blockquote></body></html>\n"
            extra += "\nContent-Type: text/html; charset=utf-8"
        raw = message(f"Re: {copy['Subject']}", mid, sender=who, body=body, extra=extra)
        send(site.config, raw, [LIST], who)
        parent = mid
    wait_for(lambda: len(site.posts_by_id()) == 5 and settled(site))
    stored = site.posts_by_id()
    assert "> Root text." in stored["<c2@example.com>"]["text"]
    for number, (_, _, mid) in enumerate(replies, 2):
        text = stored[mid]["text"]
        assert (f"Reply {number}." in text and "Root text." in text) or number > 2
        assert not [bit for bit in FOOTER_BITS if bit in text], (mid, text)
    with site.db.read_session() as session:
        from mailforum.db.models import Post

        raw = session.scalars(select(Post.raw).where(Post.message_id == "<c2@example.com>")).one()
    assert b"View this topic on the web" in raw  # the raw message stays as received

    # Digests show the stored text: no footer of ours in dora's digest but its own.
    digest_schedule.run_list(site.db, site.config, "dev", dt.datetime.now(dt.UTC), scheduled=False)
    wait_for(lambda: relay.messages_for("dora@example.com") and settled(site))
    digest = as_email(relay.messages_for("dora@example.com")[0].data)
    digest_text = digest.get_body(("plain",)).get_content()
    assert "Reply 5." in digest_text and "View this topic on the web" not in digest_text
    assert "Reply privately" not in digest_text


def test_a_claim_naming_more_posts_than_the_cache_holds_composes_every_copy(site):
    """RELIABILITY F25: the composer's post cache never evicts a post the rows in hand need: a claim of
    more distinct posts than ``cache_size`` used to fail the evicted ones' copies for good as
    "the post no longer exists"."""
    site.create_list("dev", policy=PostingPolicy.OPEN)
    site.add_members("dev", "ann@example.com", "bob@example.com")
    raws = [
        message(subject=f"post {n}", sender="carol@example.net", message_id=f"<many-{n}@example.net>")
        for n in range(5)
    ]
    now = dt.datetime.now(dt.UTC)
    with site.db.session() as session:
        spool.insert_batch(
            session, [spool.NewMessage(raw, "carol@example.net", (f"dev@{DOMAIN}",)) for raw in raws], now
        )
    assert SpoolProcessor(site.db, site.config).drain() == 5
    with site.db.session() as session:
        claimed = outbox.claim(session, now + dt.timedelta(minutes=1), 100, dt.timedelta(minutes=5), "test")
    assert len(claimed) == 10 and len({row.post_id for row in claimed}) == 5
    composer = Composer(site.config, Renderer(), cache_size=2)
    for rows_in_hand in (claimed, claimed[:4]):  # a second chunk evicts only what it does not need
        with site.db.read_session() as session:
            composer.load(session, rows_in_hand)
        built = [composer.compose(row, now) for row in rows_in_hand]
        assert [b for b in built if isinstance(b, str)] == []
        assert {b.row.recipient for b in built if not isinstance(b, str)} == {
            "ann@example.com",
            "bob@example.com",
        }
