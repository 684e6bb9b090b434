"""A processing batch shares work between its messages (the fan-out written at its end,
core.fanout.Deferred; memberships and posts read at its start, routing.prefetch) and still
does what post-by-post processing does: the same copies to the same members, the same
watches, the same policy decisions.

The same mail goes to two lists with the same members: list ``one`` is processed a message
per transaction without deferral (the reference), list ``two`` by the spool processor in
one batch. Watches gained inside the batch (a digest member who starts a topic hears of its
replies; a new-topics member who replies hears of later ones; an author with ``receive_own``
on in digest mode gets their own post through their new watch) must count as they would
have, post by post; a command in the middle of the batch writes what waits first.
"""

from __future__ import annotations

from dataclasses import replace

from sqlalchemy import select

from mailforum.core import subscriptions
from mailforum.core.lists import Address, find_member, get_list
from mailforum.db import spool
from mailforum.db.models import (
    ConfirmAction,
    DeliveryMode,
    Member,
    OutboxEntry,
    Post,
    PostingPolicy,
    PostStatus,
    SpoolEntry,
    SpoolState,
    TopicSubscription,
    utcnow,
)
from mailforum.runners.worker import SpoolProcessor
from tests.helpers import DOMAIN, message
from tests.integration.outbound_helpers import store

MEMBERS = {
    "ann@example.com": DeliveryMode.DIGEST,
    "bob@example.com": DeliveryMode.ALL,
    "carol@example.com": DeliveryMode.NEW_TOPICS,
    "erin@example.com": DeliveryMode.DIGEST,
    "fred@example.com": DeliveryMode.NONE,
}


def mail(name: str) -> list[tuple[str, bytes]]:
    """(sender, message) in order; Message-IDs carry the list's name (no cross-post rule)."""

    def one(letter: str, sender: str, subject: str, parent: str = "", to: str = name) -> tuple[str, bytes]:
        extra = f"In-Reply-To: <{parent}-{name}@x>" if parent else ""
        return sender, message(subject, f"<{letter}-{name}@x>", sender, f"{to}@{DOMAIN}", extra=extra)

    return [
        one("a", "ann@example.com", "Stairs"),
        one("b", "bob@example.com", "Re: Stairs", parent="a"),
        one("c", "carol@example.com", "Re: Stairs", parent="a"),
        one("h", "bob@example.com", "help", to=f"{name}-request"),
        one("d", "bob@example.com", "Re: Stairs", parent="a"),
        one("e", "erin@example.com", "Windows"),
        one("f", "fred@example.com", "Re: Windows", parent="e"),
    ]


def copies(site, name: str) -> set[tuple[str, str]]:
    """(which post, to whom) of the list's post copies; the post named by its Message-ID's letter."""
    with site.db.read_session() as session:
        mlist = get_list(session, name)
        found = session.execute(
            select(Post.message_id, OutboxEntry.recipient)
            .join(Post, Post.id == OutboxEntry.post_id)
            .where(OutboxEntry.list_id == mlist.id, OutboxEntry.kind == "post")
        )
        return {(message_id[1], recipient) for message_id, recipient in found}


def watchers(site, name: str) -> set[tuple[str, str, str]]:
    """(the topic's first post's letter, member, watch or mute) of the list's topic subscriptions."""
    with site.db.read_session() as session:
        mlist = get_list(session, name)
        found = session.execute(
            select(Post.message_id, Member.address, TopicSubscription.kind)
            .join(Post, (Post.topic_id == TopicSubscription.topic_id) & Post.parent_id.is_(None))
            .join(Member, Member.id == TopicSubscription.member_id)
            .where(Post.list_id == mlist.id)
        )
        return {(message_id[1], address, kind) for message_id, address, kind in found}


def test_a_batch_sends_what_post_by_post_processing_sends(site):
    for name in ("one", "two"):
        site.create_list(name, policy=PostingPolicy.OPEN)
        for address, mode in MEMBERS.items():
            site.add_members(name, address, mode=mode)
        with site.db.session() as session:
            erin = find_member(session, get_list(session, name).id, "erin@example.com")
            assert erin is not None
            erin.receive_own = True
    for sender, raw in mail("one"):
        rcpt = f"one-request@{DOMAIN}" if b"one-request@" in raw else f"one@{DOMAIN}"
        store(site, raw, rcpt, sender)
    with site.db.session() as session:
        spool.insert_batch(
            session,
            [
                spool.NewMessage(
                    raw, sender, (f"two-request@{DOMAIN}" if b"two-request@" in raw else f"two@{DOMAIN}",)
                )
                for sender, raw in mail("two")
            ],
            utcnow(),
        )
    assert SpoolProcessor(site.db, site.config).run_once() == 7  # one claim, one batch
    with site.db.read_session() as session:
        states = set(session.scalars(select(SpoolEntry.state)))
    assert states == {SpoolState.DONE.value}
    expected = copies(site, "one")
    # The watches gained inside the batch decided these: without them the copies differ.
    assert ("b", "ann@example.com") in expected and ("d", "carol@example.com") in expected
    assert ("e", "erin@example.com") in expected and ("f", "erin@example.com") in expected
    assert copies(site, "two") == expected
    assert {(p, k, w) for p, k, w in watchers(site, "two")} == {
        (p, k, w) for p, k, w in watchers(site, "one")
    }


def test_a_membership_changed_inside_a_batch_counts_for_the_posts_after_it(site):
    """The batch reads its senders' memberships at once (routing.prefetch); a command in the
    batch (here the mail that confirms a subscription) makes it read them again, so the
    sender's post before the confirmation is a stranger's and the one after it a member's."""
    site.create_list("dev", policy=PostingPolicy.MEMBERS)
    site.add_members("dev", "bob@example.com")
    now = utcnow()
    with site.db.session() as session:
        mlist = get_list(session, "dev")
        assert subscriptions.request(
            session, site.config, mlist, Address("ann@example.com", "Ann"), ConfirmAction.SUBSCRIBE, now
        )
    with site.db.read_session() as session:
        invitation = session.scalars(
            select(OutboxEntry)
            .where(OutboxEntry.recipient == "ann@example.com")
            .order_by(OutboxEntry.id.desc())
        ).first()
    assert invitation is not None
    confirm_address = invitation.payload["reply_to"]
    batch = [
        (message("Before", "<before@x>", "ann@example.com"), f"dev@{DOMAIN}"),
        (message("Re: confirm", "<yes@x>", "ann@example.com", confirm_address), confirm_address),
        (message("After", "<after@x>", "ann@example.com"), f"dev@{DOMAIN}"),
    ]
    with site.db.session() as session:
        spool.insert_batch(
            session, [spool.NewMessage(raw, "ann@example.com", (rcpt,)) for raw, rcpt in batch], now
        )
    assert SpoolProcessor(site.db, site.config).run_once() == 3
    with site.db.read_session() as session:
        assert find_member(session, get_list(session, "dev").id, "ann@example.com") is not None
        status = {mid: state for mid, state in session.execute(select(Post.message_id, Post.status))}
    assert status["<before@x>"] != PostStatus.PUBLISHED.value
    assert status["<after@x>"] == PostStatus.PUBLISHED.value


def test_the_rate_limit_counts_the_posts_of_the_batch_itself(site):
    """The batch reads its senders' recent posts once (posting.remember_recent) and adds those
    it stores: a flood inside one batch is held from the same post on as one by one."""
    site.config = replace(site.config, security=replace(site.config.security, post_rate_per_minute=3))
    flood = [message(f"Flood {n}", f"<{n}-{{name}}@x>", "bob@example.com") for n in range(6)]
    for name in ("one", "two"):
        site.create_list(name, policy=PostingPolicy.OPEN)
        site.add_members(name, "bob@example.com")
        store(
            site,
            message("Earlier", f"<early-{name}@x>", "bob@example.com", f"{name}@{DOMAIN}"),
            f"{name}@{DOMAIN}",
        )
    for raw in flood:
        store(site, raw.replace(b"{name}", b"one"), f"one@{DOMAIN}", "bob@example.com")
    with site.db.session() as session:
        spool.insert_batch(
            session,
            [
                spool.NewMessage(raw.replace(b"{name}", b"two"), "bob@example.com", (f"two@{DOMAIN}",))
                for raw in flood
            ],
            utcnow(),
        )
    assert SpoolProcessor(site.db, site.config).run_once() == 6

    def states(name: str) -> list[str]:
        with site.db.read_session() as session:
            mlist = get_list(session, name)
            found = session.execute(
                select(Post.message_id, Post.status).where(
                    Post.list_id == mlist.id, Post.message_id.like("<_-%")
                )
            )
            return [state for _, state in sorted(found)]

    assert states("one") == ["published"] * 2 + ["held"] * 4  # the earlier post counts too
    assert states("two") == states("one")
