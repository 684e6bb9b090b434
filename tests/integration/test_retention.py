"""Retention (core/retention.py) on both databases: what housekeeping purges, and what it keeps."""

from __future__ import annotations

import datetime as dt
from dataclasses import replace

from sqlalchemy import func, select, update

from mailforum.core import retention, subscriptions
from mailforum.core.lists import Address, get_list
from mailforum.db import spool
from mailforum.db.models import (
    ConfirmAction,
    Confirmation,
    OutboxEntry,
    OutboxState,
    Post,
    SpoolEntry,
    SpoolState,
    utcnow,
)
from mailforum.runners.worker import SpoolProcessor
from tests.helpers import ServerThread, message, wait_for

LONG_AGO = dt.timedelta(days=45)  # past the 30-day defaults of keep_days and verp_token_days


def _setup(site) -> None:
    """Two processed posts (with sent copies to bob), one parked entry, one confirmation."""
    site.create_list("dev")
    site.add_members("dev", "ann@example.com", "bob@example.com")
    rcpt = ("dev@lists.example.org",)
    with site.db.session() as session:
        spool.insert_batch(
            session,
            [
                spool.NewMessage(message(f"post {n}", f"<p{n}@example.com>"), "ann@example.com", rcpt)
                for n in (1, 2)
            ]
            + [spool.NewMessage(b"Subject: parked\r\n\r\nbroken\r\n", "ann@example.com", rcpt)],
            utcnow(),
        )
        session.execute(update(SpoolEntry).where(SpoolEntry.id == 3).values(state=SpoolState.FAILED.value))
        mlist = get_list(session, "dev")
        subscriptions.request(
            session, site.config, mlist, Address("carl@example.com"), ConfirmAction.SUBSCRIBE, utcnow()
        )
    assert SpoolProcessor(site.db, site.config).drain() == 2
    with site.db.session() as session:
        session.execute(update(OutboxEntry).values(state=OutboxState.SENT.value, sent_at=utcnow()))


def _age(site, by: dt.timedelta) -> None:
    """Move every timestamp retention looks at ``by`` into the past."""
    with site.db.session() as session:
        for model, columns in (
            (SpoolEntry, ("processed_at",)),
            (OutboxEntry, ("sent_at",)),
            (Confirmation, ("created_at", "expires_at")),
        ):
            for row in session.scalars(select(model)):
                for column in columns:
                    if getattr(row, column) is not None:
                        setattr(row, column, getattr(row, column) - by)


def _count(site, model) -> int:
    with site.db.read_session() as session:
        return session.scalar(select(func.count()).select_from(model)) or 0


def test_nothing_young_is_purged(site):
    _setup(site)
    _age(site, dt.timedelta(days=29))  # the confirmation expired 22 days ago: kept 30
    assert set(retention.due(site.db, site.config, utcnow()).values()) == {0}
    assert set(retention.purge(site.db, site.config, utcnow()).values()) == {0}


def test_housekeeping_purges_old_raw_bytes_copies_and_confirmations(site):
    _setup(site)
    copies = _count(site, OutboxEntry)
    assert copies >= 2
    _age(site, LONG_AGO)
    dry = site.cli("housekeeping", "--dry-run")
    assert dry.returncode == 0, dry.stderr
    assert "2\twould purge spool raw bytes" in dry.stdout
    assert f"{copies}\twould purge sent outbox copies" in dry.stdout
    assert "1\twould purge expired confirmations" in dry.stdout
    assert _count(site, OutboxEntry) == copies  # a dry run changes nothing
    # Batches of one row: each its own transaction, all done in the end.
    done = retention.purge(site.db, site.config, utcnow(), batch=1)
    assert done == {"spool raw bytes": 2, "sent outbox copies": copies, "expired confirmations": 1}
    with site.db.read_session() as session:
        raws = dict(session.execute(select(SpoolEntry.id, SpoolEntry.raw)).all())
        assert bytes(raws[1]) == bytes(raws[2]) == b""
        assert bytes(raws[3]).startswith(b"Subject: parked")  # parked entries keep theirs
        posts = session.execute(select(Post.message_id, Post.raw)).all()
        assert {m for m, _ in posts} == {"<p1@example.com>", "<p2@example.com>"}
        assert all(b"Hello everyone." in bytes(raw) for _, raw in posts)  # the archive keeps its copy
    assert _count(site, OutboxEntry) == 0 and _count(site, Confirmation) == 0
    exported = site.cli("export", "--list", "dev", "--format", "mbox")
    assert exported.returncode == 0 and exported.stdout.count("Hello everyone.") == 2
    again = site.cli("housekeeping")
    assert again.returncode == 0, again.stderr
    assert "0\tspool raw bytes" in again.stdout and "0\tsent outbox copies" in again.stdout


def test_sent_copies_outlive_keep_days_until_their_bounce_address_expires(site):
    config = replace(site.config, spool=replace(site.config.spool, keep_days=2))
    _setup(site)
    _age(site, dt.timedelta(days=10))
    due = retention.due(site.db, config, utcnow())
    assert due["spool raw bytes"] == 2
    assert due["sent outbox copies"] == 0  # [outbound] verp_token_days is 30


def test_serve_runs_the_purge_periodically(site):
    _setup(site)
    _age(site, LONG_AGO)
    config = replace(site.config, bounces=replace(site.config.bounces, housekeeping_interval=0.2))
    running = ServerThread(config, ingest=False, web=False, scheduler=False, delivery=False)
    running.start()
    try:
        wait_for(lambda: _count(site, OutboxEntry) == 0 and _count(site, Confirmation) == 0)
    finally:
        running.stop()


def test_a_flood_of_held_posts_expires_in_short_transactions(site):
    # RELIABILITY F20: 1,000 expiries in one transaction held the SQLite write lock for seconds.
    from mailforum.runners.housekeeping import EXPIRE_BATCH, Housekeeper

    site.create_list("dev")  # members only, and nobody is a member: every post is held
    flood = EXPIRE_BATCH + 5
    with site.db.session() as session:
        spool.insert_batch(
            session,
            [
                spool.NewMessage(
                    message(f"held {n}", f"<h{n}@example.com>"), "ann@example.com", ("dev@lists.example.org",)
                )
                for n in range(flood)
            ],
            utcnow(),
        )
    SpoolProcessor(site.db, site.config).drain()
    later = utcnow() + dt.timedelta(days=site.config.moderation.held_expire_days + 1)
    keeper = Housekeeper(site.db, site.config, clock=lambda: later)
    assert keeper.once()["held posts expired"] == EXPIRE_BATCH
    assert keeper.once()["held posts expired"] == flood - EXPIRE_BATCH
