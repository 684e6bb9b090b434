#!/usr/bin/env python3
"""Digest benchmark (issue 6): 10,000 digest members, 50 posts in 10 topics.

``digest_build_s``: one ``digest send`` run — marks moved and 10,000 digest rows
enqueued (core.digest_schedule.run_list). ``digest_deliver_s``: the real delivery worker
renders each (list, period) once, splices each member's signed reply addresses and
sends all of them to Postfix's ``smtp-sink`` (``apt-get install postfix``; only the
``/usr/sbin/smtp-sink`` binary is used, the MTA is never started). Also prints the
size of one digest, the time to personalise all of them without sending, and the
floor: the same bytes sent by the bare relay client (``runners.relay_client``) over 10
connections to the same sink — and, for comparison, by aiosmtplib. ``deliver_over_raw_send``
is the ratio to that floor; ``raw_send_wire_bytes_s`` and ``deliver_over_raw_send_wire``
the stricter floor, the same bytes handed to the relay client already dot-stuffed
(``mail.wire``), as the delivery worker's digests are.

``--format mime`` (or ``standard,mime``) sets the list's digest format: the RFC 1153
digest with every post whole as a message/rfc822 part (lists.digest_format); its
metrics are named ``<backend>_mime_…``. ``digest_render_s`` is the shared part alone
(rendered and encoded once), ``digest_personalise_s`` the splicing of every member's
reply addresses into it, ``digest_render_splice_s`` both.

Prints ``name: value`` lines. Usage:

    .venv/bin/python bench/digest.py [--members 10000] [--posts 50] [--backends sqlite,postgresql]

RELIABILITY L6 (10,000 members, 500 posts; within 15 minutes, memory bounded):

    .venv/bin/python bench/digest.py --posts 500 --topics 50 --backends sqlite --no-floors
        [--format standard|mime|standard,mime]
"""

from __future__ import annotations

# bench/threading.py (named by the threading issue) would shadow the stdlib module for
# every script run from this folder: drop the folder from the import path first.
import os
import sys

sys.path[:] = [p for p in sys.path if os.path.abspath(p or ".") != os.path.dirname(os.path.abspath(__file__))]

import argparse
import asyncio
import datetime as dt
import resource
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from sqlalchemy import func, select

from bench.fanout import database, raw_send, smtp_sink, store
from mailforum.config import Config, DatabaseConfig, OutboundConfig, RelayConfig, SiteConfig
from mailforum.core import digest_schedule, lists
from mailforum.core.copies import Composer
from mailforum.db import migrate, outbox
from mailforum.db.models import DeliveryMode, DigestFormat, OutboxEntry, PostingPolicy, utcnow
from mailforum.db.session import Database
from mailforum.mail import wire
from mailforum.render import Renderer
from mailforum.runners.delivery import DeliveryWorker

DOMAIN = "lists.example.org"
BODY = (
    "This is a benchmark post, long enough to look like a real message on a list, with a "
    "second sentence, so a digest of fifty of them weighs about what real ones do. "
) * 3


def setup(db: Database, config: Config, members: int, posts: int, topics: int, fmt: str) -> None:
    migrate.upgrade(db)
    with db.session() as session:
        mlist = lists.create_list(session, "dev", title="Benchmark", policy=PostingPolicy.OPEN)
        mlist.digest_format = DigestFormat(fmt).value
        addresses = [lists.Address(f"member{i:05d}@example.net") for i in range(members)]
        lists.add_members(session, mlist, addresses, DeliveryMode.DIGEST, utcnow() - dt.timedelta(days=1))
    for n in range(posts):
        topic = n % topics
        head = f"From: Author {n} <author{n}@example.com>\r\nTo: dev@{DOMAIN}\r\n"
        if n < topics:
            head += f"Subject: Benchmark topic {topic}\r\n"
        else:
            head += f"Subject: Re: Benchmark topic {topic}\r\nIn-Reply-To: <bench-{topic}@example.com>\r\n"
        head += f"Message-ID: <bench-{n}@example.com>\r\nDate: Thu, 26 Nov 2026 10:00:00 +0000\r\n"
        store(db, config, (head + "\r\n" + BODY + "\r\n").encode())


def count_sent(db: Database) -> int:
    with db.read_session() as session:
        return int(
            session.scalar(
                select(func.count()).where(OutboxEntry.state == "sent", OutboxEntry.kind == "digest")
            )
            or 0
        )


def personalise_only(db: Database, config: Config) -> tuple[float, float, bytes]:
    """Render once, then splice every pending digest without sending: (render s, splice s, one digest)."""
    composer = Composer(config, Renderer())
    now = utcnow()
    data = b""
    with db.read_session() as session:
        rows = [
            outbox.ClaimedCopy(
                e.id, e.kind, e.list_id, e.post_id, e.member_id, e.recipient, e.message_id, e.payload, 0, now
            )
            for e in session.scalars(select(OutboxEntry).where(OutboxEntry.kind == "digest"))
        ]
        t0 = time.perf_counter()
        composer.load(session, rows)
        t1 = time.perf_counter()
    for row in rows:
        env = composer.compose(row, now)
        assert not isinstance(env, str), env
        data = env.build()
    t2 = time.perf_counter()
    # The floor gets the plain message, as any caller hands it to the relay client (ours is
    # already in DATA form, mail.wire); raw_wire_s below sends it in that form too.
    return t1 - t0, t2 - t1, wire.message(data)


def run(
    backend: str, port: int, members: int, posts: int, topics: int, fmt: str, floors: bool = True
) -> dict[str, float]:
    with database(backend) as url:
        config = Config(
            database=DatabaseConfig(url=url),
            relay=RelayConfig(host="127.0.0.1", port=port, max_connections=10),
            site=SiteConfig(domain=DOMAIN, base_url="https://forum.example.org", secret_key="bench-secret"),
            outbound=OutboundConfig(poll_interval=0.05, claim_batch=200),
        )
        db = Database(url)
        try:
            setup(db, config, members, posts, topics, fmt)
            t0 = time.perf_counter()
            result = digest_schedule.run_list(db, config, "dev", utcnow())
            t1 = time.perf_counter()
            if result.queued != members:
                sys.exit(f"{backend}: {result.queued} digests queued, want {members}")
            render_s, splice_s, sample = personalise_only(db, config)
            if (b"multipart/digest" in sample) != (fmt == DigestFormat.MIME.value):
                sys.exit(f"{backend}: the digest is not in the {fmt} format")
            t2 = time.perf_counter()
            stats = asyncio.run(DeliveryWorker(db, config).run(once=True))
            t3 = time.perf_counter()
            if count_sent(db) != members:
                sys.exit(f"{backend}: only {count_sent(db)} of {members} digests sent ({stats})")
            raw_s = aio_s = wire_s = float("nan")
            if floors:
                raw_s = asyncio.run(raw_send(port, [sample] * members, 10))
                wire_s = asyncio.run(raw_send(port, [wire.wire(sample)] * members, 10))
                aio_s = asyncio.run(raw_send(port, [sample] * members, 10, client="aiosmtplib"))
            return {
                "build": t1 - t0,
                "render": render_s,
                "personalise": splice_s,
                "deliver": t3 - t2,
                "bytes": len(sample),
                "raw": raw_s,
                "raw_wire": wire_s,
                "aiosmtplib": aio_s,
            }
        finally:
            db.dispose()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--members", type=int, default=10_000)
    parser.add_argument("--posts", type=int, default=50)
    parser.add_argument("--topics", type=int, default=10)
    parser.add_argument("--backends", default="sqlite,postgresql")
    parser.add_argument(
        "--no-floors", action="store_true", help="skip the bare-client sends of the same bytes (long at L6)"
    )
    parser.add_argument(
        "--format", default="standard", help="digest format(s): standard, mime or standard,mime"
    )
    args = parser.parse_args()
    formats = [f.strip() for f in args.format.split(",") if f.strip()]
    for fmt in formats:
        if fmt not in {f.value for f in DigestFormat}:
            parser.error(f"unknown digest format {fmt!r} (use standard or mime)")
    print(f"members: {args.members}")
    print(f"posts: {args.posts}")
    with smtp_sink() as port:
        for backend in args.backends.split(","):
            for fmt in formats:
                r = run(backend, port, args.members, args.posts, args.topics, fmt, not args.no_floors)
                name = backend if fmt == DigestFormat.STANDARD.value else f"{backend}_{fmt}"
                print(f"{name}_digest_bytes: {r['bytes']:.0f}")
                print(f"{name}_digest_build_s: {r['build']:.3f}")
                print(f"{name}_digest_render_s: {r['render']:.3f}")
                print(f"{name}_digest_personalise_s: {r['personalise']:.3f}")
                print(f"{name}_digest_render_splice_s: {r['render'] + r['personalise']:.3f}")
                print(f"{name}_digest_deliver_s: {r['deliver']:.3f}")
                # The floor: the same bytes pushed by the bare relay client over 10 connections.
                if not args.no_floors:
                    print(f"{name}_raw_send_same_bytes_s: {r['raw']:.3f}")
                    print(f"{name}_deliver_over_raw_send: {r['deliver'] / r['raw']:.2f}")
                    # The stricter floor: the same bytes handed over already dot-stuffed.
                    print(f"{name}_raw_send_wire_bytes_s: {r['raw_wire']:.3f}")
                    print(f"{name}_deliver_over_raw_send_wire: {r['deliver'] / r['raw_wire']:.2f}")
                    print(f"{name}_aiosmtplib_same_bytes_s: {r['aiosmtplib']:.3f}")
    # Peak memory of the whole run (RELIABILITY L6: bounded, not growing with members × posts).
    print(f"peak_rss_mb: {resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024:.0f}")


if __name__ == "__main__":
    main()
