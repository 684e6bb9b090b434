#!/usr/bin/env python3
"""Disk use of a busy list over a year, with and without retention (``[spool] keep_days``).

Stores ``--posts`` posts of about ``--size`` bytes from a member, through the real
processing path, to a list of ``--members`` members in mode ``all`` (so each post also
queues one outbox copy per other member), on a temporary SQLite file. It measures the
bytes the database uses (pages in use, not the file, which SQLite does not shrink) per
post, marks the copies sent, moves time ``keep_days`` + 15 days on, runs the retention
purge (core/retention.py) and measures again: what a post leaves for good (the post and
its raw copy, the spool row without its raw bytes) and what retention removes (the spool's
raw copy, the sent copies). Then it extrapolates to ``--per-day`` posts a day for a year:

    bytes_per_post_kept, bytes_per_post_purged    measured
    year_posts                                    per_day × 365
    year_without_retention_mb                     everything kept a year
    year_with_retention_mb                        kept part of a year + keep_days of the purged part

    .venv/bin/python bench/disk.py [--posts 200] [--members 500] [--size 5000] [--per-day 50]
"""

from __future__ import annotations

# bench/threading.py would shadow the stdlib module: drop this folder from the import path.
import os
import sys

sys.path[:] = [p for p in sys.path if os.path.abspath(p or ".") != os.path.dirname(os.path.abspath(__file__))]

import argparse
import datetime as dt
import random
import shutil
import tempfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from sqlalchemy import text, update

from mailforum.config import Config, DatabaseConfig, SecurityConfig, SiteConfig
from mailforum.core import lists, retention
from mailforum.db import migrate, spool
from mailforum.db.models import DeliveryMode, OutboxEntry, OutboxState, SpoolEntry, utcnow
from mailforum.db.session import Database
from mailforum.runners.worker import SpoolProcessor

DOMAIN = "lists.example.org"
WORDS = [
    "the",
    "list",
    "post",
    "reply",
    "thread",
    "member",
    "message",
    "archive",
    "topic",
    "quote",
    "said",
    "wrote",
    "about",
    "when",
]


def out(name: str, value: object) -> None:
    print(f"{name}: {value}", flush=True)


def used_bytes(db: Database) -> int:
    with db.engine.connect() as conn:
        pages = conn.execute(text("PRAGMA page_count")).scalar_one()
        free = conn.execute(text("PRAGMA freelist_count")).scalar_one()
        size = conn.execute(text("PRAGMA page_size")).scalar_one()
    return int((pages - free) * size)


def mail(n: int, size: int, rng: random.Random) -> bytes:
    body = []
    while sum(len(line) + 2 for line in body) < size - 400:
        body.append(" ".join(rng.choice(WORDS) for _ in range(12)))
    head = (
        f"From: Ann Author <ann@example.com>\r\nTo: dev@{DOMAIN}\r\nSubject: Topic {n // 10}\r\n"
        f"Message-ID: <disk{n}@example.com>\r\nDate: Thu, 26 Nov 2026 10:00:00 +0000\r\n"
        "Received: from mx.example.com by mx.lists.example.org; Thu, 26 Nov 2026 10:00:01 +0000\r\n"
    )
    if n % 10:
        head += f"In-Reply-To: <disk{n - 1}@example.com>\r\nReferences: <disk{n - 1}@example.com>\r\n"
    return (head + "\r\n" + "\r\n".join(body) + "\r\n").encode()


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--posts", type=int, default=200, help="posts to measure with")
    parser.add_argument("--members", type=int, default=500)
    parser.add_argument("--size", type=int, default=5000, help="average raw message bytes")
    parser.add_argument("--per-day", type=int, default=50, help="posts a day, for the year estimate")
    args = parser.parse_args()
    folder = Path(tempfile.mkdtemp(prefix="mf-disk-"))
    try:
        url = f"sqlite:///{folder / 'disk.db'}"
        config = Config(
            database=DatabaseConfig(url=url),
            # A day's posts arrive here in seconds: the posting-rate rule would hold them.
            security=SecurityConfig(post_rate_per_minute=10**6, post_rate_per_day=10**6),
            site=SiteConfig(
                domain=DOMAIN, base_url="http://127.0.0.1", secret_key="disk-bench-0123456789abcdef"
            ),
        )
        db = Database(url)
        migrate.upgrade(db)
        with db.session() as session:
            lists.create_list(session, "dev")
        with db.session() as session:
            mlist = lists.get_list(session, "dev")
            members = ["ann@example.com"] + [f"member{i}@example.net" for i in range(args.members - 1)]
            lists.add_members(
                session, mlist, [lists.check_address(a) for a in members], DeliveryMode.ALL, utcnow()
            )
        start = used_bytes(db)
        rng = random.Random(12)
        raws = [mail(n, args.size, rng) for n in range(args.posts)]
        with db.session() as session:
            spool.insert_batch(
                session, [spool.NewMessage(r, "ann@example.com", (f"dev@{DOMAIN}",)) for r in raws], utcnow()
            )
        SpoolProcessor(db, config).drain()
        stored = used_bytes(db)
        later = dt.timedelta(days=config.spool.keep_days + 15)
        with db.session() as session:  # sent long ago, processed long ago
            session.execute(
                update(OutboxEntry).values(state=OutboxState.SENT.value, sent_at=utcnow() - later)
            )
            session.execute(update(SpoolEntry).values(processed_at=utcnow() - later))
        done = retention.purge(db, config, utcnow())
        kept = used_bytes(db)
        per_kept = (kept - start) / args.posts
        per_purged = (stored - kept) / args.posts
        year = args.per_day * 365
        out("members", args.members)
        out("posts_measured", args.posts)
        out("raw_bytes_per_post", sum(len(r) for r in raws) // args.posts)
        out("outbox_copies_per_post", done["sent outbox copies"] // args.posts)
        out("bytes_per_post_stored", f"{(stored - start) / args.posts:.0f}")
        out("bytes_per_post_kept", f"{per_kept:.0f}")
        out("bytes_per_post_purged", f"{per_purged:.0f}")
        out("keep_days", f"{config.spool.keep_days:g}")
        out("year_posts", year)
        out("year_without_retention_mb", f"{(per_kept + per_purged) * year / 1e6:.0f}")
        window = min(year, args.per_day * max(config.spool.keep_days, config.outbound.verp_token_days))
        out("year_with_retention_mb", f"{(per_kept * year + per_purged * window) / 1e6:.0f}")
        db.dispose()
    finally:
        shutil.rmtree(folder, ignore_errors=True)


if __name__ == "__main__":
    main()
