"""Deleting a list (`lists delete`, core/lists.delete_list): it asks, prints what goes, removes every
row of the list in one transaction, never sends its pending copies, and is not quadratic in topics."""

from __future__ import annotations

import json
import time

from sqlalchemy import func, select

from mailforum.core import lists, topics
from mailforum.db.models import (
    AuditEntry,
    MailingList,
    Member,
    OutboxEntry,
    Post,
    Tag,
    Topic,
    TopicTag,
    utcnow,
)
from tests.helpers import DOMAIN, message
from tests.integration.outbound_helpers import deliver, store


def count(site, model, *where) -> int:
    with site.db.read_session() as session:
        return session.scalar(select(func.count()).select_from(model).where(*where)) or 0


def test_lists_delete_asks_prints_counts_and_never_sends_pending_copies(site, relay) -> None:
    site.create_list("dev")
    site.create_list("keep")
    site.add_members("dev", "ann@example.com", "bob@example.com")
    site.add_members("keep", "ann@example.com", "kim@example.com")
    store(site, message("First", "<first@example.com>", sender="ann@example.com"))
    deliver(site.config, site.db)  # bob has the first post: a sent copy
    assert len(relay.transactions) == 1
    relay.transactions.clear()
    store(site, message("Second", "<second@example.com>", sender="ann@example.com"))
    store(
        site,
        message("Kept", "<kept@example.com>", sender="ann@example.com"),
        rcpt=f"keep@{DOMAIN}",
    )
    with site.db.session() as session:
        dev = lists.get_list(session, "dev")
        topics.add_tags(session, dev, ["agile"], utcnow())
        topic = session.scalars(select(Topic).where(Topic.list_id == dev.id)).first()
        topics.set_tags_by_hand(session, dev, topic.id, ["agile"], topics.Actor())
    assert site.cli("lists", "owners", "dev", "add", "owner@example.com").returncode == 0
    assert site.cli("api-tokens", "create", "--name", "devtok", "--list", "dev").returncode == 0

    asked = site.cli("lists", "delete", "dev", input=b"n\n")
    assert asked.returncode != 0 and "delete the list dev" in asked.stdout
    assert (
        "members 2, topics 2, posts 2" in asked.stdout and "outbox pending 1, outbox sent 1" in asked.stdout
    )
    assert count(site, MailingList, MailingList.name == "dev") == 1

    done = site.cli("lists", "delete", "DEV", "--yes")
    assert done.returncode == 0, done.stderr
    assert "deleted list dev" in done.stdout and "tags 1" in done.stdout and "api tokens 1" in done.stdout
    assert site.cli("lists", "list").stdout.split() == ["keep"]
    assert site.cli("lists", "delete", "dev", "--yes").returncode == 1  # no such list now

    deliver(site.config, site.db)  # only the kept list's copy goes out
    assert [t.rcpt_tos for t in relay.transactions] == [["kim@example.com"]]
    for model in (Post, Topic, Tag, TopicTag):
        assert count(site, model) == (1 if model in (Post, Topic) else 0), model
    assert count(site, Member) == 2 and count(site, OutboxEntry, OutboxEntry.list_id.is_(None)) == 0
    log = json.loads(site.cli("audit", "--json", "--action", "list.delete").stdout)
    assert [(e["actor"], e["target"], e["detail"]["posts"], e["detail"]["list"]) for e in log] == [
        ("cli", "dev", 2, "dev")
    ]
    with site.db.read_session() as session:
        assert all(
            e.list_id is None for e in session.scalars(select(AuditEntry)) if e.detail.get("list") == "dev"
        )


def test_deleting_a_list_of_thousands_of_topics_is_fast(site) -> None:
    """4,000 topics, half merged into others, 8,000 posts, replies linked: one delete in well under
    a few seconds on both databases (before migration 0017 each topic scanned two tables)."""
    site.create_list("big")
    site.create_list("small")
    now = utcnow()
    with site.db.session() as session:
        big = lists.get_list(session, "big")
        made = [Topic(list_id=big.id, subject=f"T{i}", created_at=now, last_post_at=now) for i in range(4000)]
        session.add_all(made)
        session.flush()
        for i, topic in enumerate(made[2000:]):
            topic.merged_into_id = made[i].id
        posts = [
            Post(list_id=big.id, topic_id=t.id, message_id=f"<p{n}-{t.id}@example.com>", received_at=now)
            for t in made
            for n in range(2)
        ]
        session.add_all(posts)
        session.flush()
        for first, second in zip(posts[::2], posts[1::2], strict=True):
            second.parent_id = first.id
        topics.add_tags(session, big, ["a", "b"], now)
        tags = topics.vocabulary(session, big)
        for topic in made[:1000]:
            topics.tag_topic(session, topic, tags)
    site.add_members("big", *(f"m{i}@example.com" for i in range(500)))
    site.add_members("small", "ann@example.com")
    started = time.perf_counter()
    with site.db.session() as session:
        counts = lists.delete_list(session, lists.get_list(session, "big"))
    took = time.perf_counter() - started
    print(f"\ndeleted a list of 4000 topics, 8000 posts, 500 members in {took:.2f} s")
    assert counts.topics == 4000 and counts.posts == 8000 and counts.members == 500
    assert took < 10, took
    assert count(site, Topic) == 0 and count(site, Post) == 0 and count(site, TopicTag) == 0
    assert count(site, Member) == 1
