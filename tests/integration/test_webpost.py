"""Web posts take mail's path (issue 17): core.webpost writes a real message to the spool and the
real processor publishes, holds, threads and fans it out like mail. Copies at a fake relay."""

from __future__ import annotations

from dataclasses import replace
from email.utils import getaddresses

import pytest
from sqlalchemy import select

from mailforum.core import lists, webpost
from mailforum.db import webposts
from mailforum.db.models import Member, Post, PostingPolicy, SpoolEntry, utcnow
from mailforum.errors import InvalidInput
from tests.helpers import ServerThread, message, send, wait_for
from tests.integration.outbound_helpers import as_email, settled


def web_post(site, address: str, subject: str, body: str, parent_mid: str | None = None, uploads=()):
    with site.db.session() as session:
        mlist = lists.get_list(session, "dev")
        member = session.scalars(select(Member).where(Member.address == address)).one()
        parent = None
        if parent_mid is not None:
            parent = session.scalars(select(Post).where(Post.message_id == parent_mid)).one()
        spooled = webpost.write(
            session,
            site.config,
            mlist,
            member,
            webpost.Draft(subject, body, tuple(uploads)),
            parent,
            utcnow(),
        )
    return spooled


def settled_fate(site, spooled):
    """What became of a web post once the processor is done with it."""
    return wait_for(lambda: (f := fate(site, spooled)).fate is not webposts.Fate.WAITING and f).fate


def fate(site, spooled):
    with site.db.read_session() as session:
        mlist = lists.get_list(session, "dev")
        return webposts.fate(session, mlist.id, spooled.spool_id, spooled.message_id)


def test_a_web_topic_and_reply_reach_members_threaded_like_mail(site, relay, server):
    site.create_list("dev")
    site.add_members("dev", "ann@example.com", "bob@example.com", "cy@example.com")
    with site.db.session() as session:
        session.scalars(
            select(Member).where(Member.address == "ann@example.com")
        ).one().display_name = "Ann Web"
    root = web_post(site, "ann@example.com", "Hello from the browser", "First words.\n")
    wait_for(lambda: fate(site, root).fate is webposts.Fate.PUBLISHED)
    wait_for(lambda: relay.received(2) and settled(site))
    assert relay.messages_for("ann@example.com") == []  # her own post is not sent back to her
    copy = as_email(relay.messages_for("bob@example.com")[0].data)
    assert copy["Message-ID"] == root.message_id
    assert "Hello from the browser" in copy["Subject"]
    assert "Ann Web" in copy["From"] and copy["List-Id"]
    # every mail carries the member's preferences page, a link that opens after sign-in
    text = copy.get_body(("plain",)).get_content()
    assert f"{site.config.site.base_url}/lists/dev/preferences" in text
    stored = site.posts_by_id()[root.message_id]
    assert (stored["author"], stored["author_name"]) == ("ann@example.com", "Ann Web")
    assert stored["status"] == "published" and not stored.get("parent_message_id")

    # bob answers his copy by mail; ann answers bob from the web
    reply_to = getaddresses([copy["Reply-To"]])[0][1]
    raw = message(
        "Re: Hello from the browser",
        "<bob1@example.com>",
        sender="bob@example.com",
        body="Bob by mail.\n",
        extra=f"In-Reply-To: {root.message_id}",
    )
    send(site.config, raw, mail_from="bob@example.com", rcpts=[reply_to])
    wait_for(lambda: "<bob1@example.com>" in site.posts_by_id())
    wait_for(lambda: relay.messages_for("cy@example.com")[1:] and settled(site))  # bob's copy
    relay.transactions.clear()
    answer = web_post(site, "ann@example.com", "ignored", "Ann answers.\n", parent_mid="<bob1@example.com>")
    wait_for(lambda: fate(site, answer).fate is webposts.Fate.PUBLISHED)
    wait_for(lambda: relay.messages_for("cy@example.com") and settled(site))
    posts = site.posts_by_id()
    assert posts[answer.message_id]["parent_message_id"] == "<bob1@example.com>"
    assert posts[answer.message_id]["topic_id"] == posts[root.message_id]["topic_id"]
    cc = as_email(relay.messages_for("cy@example.com")[0].data)
    assert cc["Message-ID"] == answer.message_id
    assert cc["In-Reply-To"] == "<bob1@example.com>"
    assert cc["References"].split() == [root.message_id, "<bob1@example.com>"]
    assert cc["Subject"] == "Re: [dev] Hello from the browser"


@pytest.fixture
def checked_site(site):
    """The site with an authserv-id: mail "from" a member needs a passing DMARC check."""
    site.config = replace(site.config, security=replace(site.config.security, authserv_id="mx.example.org"))
    running = ServerThread(site.config)
    running.start()
    yield site
    running.stop()


def test_the_session_counts_as_authentication_but_policy_still_applies(checked_site):
    site = checked_site
    site.create_list("dev")
    site.add_members("dev", "ann@example.com")
    send(site.config, message(sender="ann@example.com"), mail_from="ann@example.com")
    wait_for(lambda: "<m1@example.com>" in site.posts_by_id())
    assert site.posts_by_id()["<m1@example.com>"]["status"] == "held"  # mail without DMARC evidence
    spooled = web_post(site, "ann@example.com", "Web", "From the browser.\n")
    assert settled_fate(site, spooled) is webposts.Fate.PUBLISHED
    # moderation still applies: a moderated list holds the web post too
    with site.db.session() as session:
        lists.get_list(session, "dev").posting_policy = PostingPolicy.MODERATED.value
    held = web_post(site, "ann@example.com", "Second", "Also from the browser.\n")
    assert settled_fate(site, held) is webposts.Fate.HELD


def test_a_web_header_in_mail_proves_nothing(checked_site):
    # Only the spool entry's protocol, written by the web alone, makes the From trusted.
    site = checked_site
    site.create_list("dev")
    site.add_members("dev", "ann@example.com")
    send(
        site.config,
        message(sender="ann@example.com", extra=f"{webpost.SOURCE_HEADER}: web"),
        mail_from="ann@example.com",
    )
    wait_for(lambda: "<m1@example.com>" in site.posts_by_id())
    assert site.posts_by_id()["<m1@example.com>"]["status"] == "held"
    with site.db.read_session() as session:
        assert {e.protocol for e in session.scalars(select(SpoolEntry))} == {"smtp"}


def test_no_cr_or_lf_from_input_reaches_a_header(site, db):
    site.create_list("dev")
    site.add_members("dev", "ann@example.com")
    with site.db.session() as session:
        member = session.scalars(select(Member)).one()
        member.display_name = "Ann\r\nBcc: victim@example.net"
        mlist = lists.get_list(session, "dev")
        draft = webpost.Draft("Hi\r\nBcc: evil@example.net =?utf-8?b?DQpCY2M6IHhAeC54?=", "body\n")
        draft = webpost.check_draft(site.config, draft, reply=False)
        raw = webpost.compose(session, site.config, mlist, member, draft, None, utcnow())
    head = raw.split(b"\r\n\r\n")[0]
    assert b"\nBcc" not in head and b"\rBcc" not in head
    assert all(not line.lower().startswith(b"bcc") for line in head.split(b"\r\n"))


@pytest.mark.parametrize(
    ("subject", "body", "problem"),
    [
        ("", "text", "needs a subject"),
        ("Subject", "  \n", "empty"),
        ("x" * 201, "text", "longer than"),
    ],
)
def test_a_bad_draft_is_refused_with_a_reason(site, subject, body, problem):
    with pytest.raises(InvalidInput, match=problem):
        webpost.check_draft(site.config, webpost.Draft(subject, body), reply=False)


def test_attachments_go_along_within_the_mail_size_limit(site, relay, server):
    site.create_list("dev")
    site.add_members("dev", "ann@example.com", "bob@example.com")
    upload = webpost.Upload("notes/../x.txt", "text/plain", b"attached words\n")
    spooled = web_post(site, "ann@example.com", "With a file", "See the file.\n", uploads=[upload])
    wait_for(lambda: fate(site, spooled).fate is webposts.Fate.PUBLISHED)
    post = site.posts_by_id()[spooled.message_id]
    (stored,) = post["attachments"]
    assert "/" not in stored["filename"] and stored["filename"].endswith("x.txt") and stored["size"] == 15
    big = webpost.Upload(
        "big.bin", "application/octet-stream", b"x" * (site.config.smtp.max_message_size + 1)
    )
    with pytest.raises(InvalidInput, match="larger than"):
        web_post(site, "ann@example.com", "Too big", "x", uploads=[big])


def test_a_reply_to_a_post_of_another_list_is_refused(site):
    site.create_list("dev")
    site.create_list("other")
    site.add_members("dev", "ann@example.com")
    send_free = message(sender="ann@example.com")
    from tests.web.kit import seed

    seed(site.config, site.db, [send_free], list_name="other")
    with pytest.raises(InvalidInput):
        web_post(site, "ann@example.com", "x", "y", parent_mid="<m1@example.com>")
