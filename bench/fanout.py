#!/usr/bin/env python3
"""Fan-out benchmark (issue 4): one post to 10,000 members in mode ``all``.

Measures, on SQLite and on PostgreSQL, the time from storing the post (processing:
policy, threading, 10,000 outbox rows in the post's transaction) until every copy
is marked sent — the relay's 250 came back and was recorded — through the real
delivery worker (render once, splice per recipient, the relay client over
``[relay] max_connections`` connections). The relay is Postfix's ``smtp-sink``
(a Python sink would be the bottleneck): ``apt-get install postfix``, only the
``/usr/sbin/smtp-sink`` binary is used. In the same run it measures the raw relay
client (``runners.relay_client``, no database, no rendering): pre-rendered copies of
the same size over 10 connections to the same sink (``_ratio``), and aiosmtplib sending
them the same way, issue 16's floor (``_ratio_to_aiosmtplib``; its target: at least 0.5).

Prints ``name: value`` lines. Usage:

    .venv/bin/python bench/fanout.py [--members 10000] [--backends sqlite,postgresql]
"""

from __future__ import annotations

# bench/threading.py (named by the threading issue) would shadow the stdlib module for
# every script run from this folder: drop the folder from the import path first.
import os
import sys

sys.path[:] = [p for p in sys.path if os.path.abspath(p or ".") != os.path.dirname(os.path.abspath(__file__))]

import argparse
import asyncio
import contextlib
import os
import shutil
import socket
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import Iterator
from dataclasses import replace
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import aiosmtplib
from sqlalchemy import func, select

from mailforum.config import Config, DatabaseConfig, OutboundConfig, RelayConfig, SiteConfig
from mailforum.core import lists, routing
from mailforum.db import migrate
from mailforum.db.models import DeliveryMode, OutboxEntry, PostingPolicy, utcnow
from mailforum.db.session import Database
from mailforum.mail.parse import parse
from mailforum.runners.delivery import DeliveryWorker
from mailforum.runners.relay_client import RelayConnection

SMTP_SINK = "/usr/sbin/smtp-sink"
PG_SERVER = os.environ.get("MAILFORUM_BENCH_PG", "postgresql://postgres@127.0.0.1:5432/postgres")
DOMAIN = "lists.example.org"
BODY = ("This is a benchmark post, long enough to look like a short real message on a list. " * 12)[:900]


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@contextlib.contextmanager
def smtp_sink() -> Iterator[int]:
    if not os.path.exists(SMTP_SINK):
        sys.exit(f"{SMTP_SINK} not found: apt-get install postfix (only its smtp-sink is used)")
    port = free_port()
    args = [SMTP_SINK, "-m", "100", f"127.0.0.1:{port}", "256"]
    if os.geteuid() == 0:
        args[1:1] = ["-u", "nobody"]
    proc = subprocess.Popen(args, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        with contextlib.suppress(OSError), socket.create_connection(("127.0.0.1", port), 0.2):
            break
        time.sleep(0.05)
    try:
        yield port
    finally:
        proc.terminate()
        proc.wait(10)
        if proc.stderr:
            proc.stderr.close()


@contextlib.contextmanager
def database(backend: str) -> Iterator[str]:
    if backend == "sqlite":
        folder = tempfile.mkdtemp(prefix="mfbench-")
        try:
            yield f"sqlite:///{folder}/bench.db"
        finally:
            shutil.rmtree(folder, ignore_errors=True)
        return
    import psycopg

    name = f"mfbench_{uuid.uuid4().hex[:10]}"
    with psycopg.connect(PG_SERVER, autocommit=True) as conn:
        conn.execute(f'CREATE DATABASE "{name}"')
    try:
        yield "postgresql+psycopg://" + PG_SERVER.split("://", 1)[1].rsplit("/", 1)[0] + "/" + name
    finally:
        with psycopg.connect(PG_SERVER, autocommit=True) as conn:
            conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


def setup(db: Database, members: int) -> None:
    migrate.upgrade(db)
    with db.session() as session:
        mlist = lists.create_list(session, "dev", title="Benchmark", policy=PostingPolicy.OPEN)
        addresses = [lists.Address(f"member{i:05d}@example.net") for i in range(members)]
        lists.add_members(session, mlist, addresses, DeliveryMode.ALL, utcnow())


def post_bytes() -> bytes:
    return (
        "From: Ann Author <ann@example.com>\r\nTo: dev@lists.example.org\r\nSubject: Benchmark post\r\n"
        "Message-ID: <bench-1@example.com>\r\nDate: Thu, 26 Nov 2026 10:00:00 +0000\r\n\r\n" + BODY + "\r\n"
    ).encode()


def store(db: Database, config: Config, raw: bytes) -> None:
    parsed = parse(raw)
    now = utcnow()
    with db.session() as session:
        routing.process(
            session,
            config,
            parsed,
            raw,
            parsed.from_address,
            (f"dev@{DOMAIN}",),
            None,
            now,
            now,
            imported=False,
        )


def count_sent(db: Database) -> int:
    with db.read_session() as session:
        return int(session.scalar(select(func.count()).where(OutboxEntry.state == "sent")) or 0)


def run_fanout(
    backend: str, relay_port: int, members: int, connections: int, unrecorded: int
) -> dict[str, float]:
    with database(backend) as url:
        config = Config(
            database=DatabaseConfig(url=url),
            relay=RelayConfig(host="127.0.0.1", port=relay_port, max_connections=connections),
            site=SiteConfig(domain=DOMAIN, base_url="https://forum.example.org", secret_key="bench-secret"),
            outbound=replace(OutboundConfig(), poll_interval=0.05, unrecorded=unrecorded),
        )
        db = Database(url)
        try:
            setup(db, members)
            t0 = time.perf_counter()
            store(db, config, post_bytes())
            t1 = time.perf_counter()
            worker = DeliveryWorker(db, config)
            stats = asyncio.run(worker.run(once=True))
            t2 = time.perf_counter()
            sent = count_sent(db)
            if sent != members or stats.sent != members:
                sys.exit(f"{backend}: only {sent} of {members} copies sent ({stats})")
            return {"enqueue_s": t1 - t0, "deliver_s": t2 - t1, "total_s": t2 - t0}
        finally:
            db.dispose()


async def raw_send(port: int, messages: list[bytes], connections: int, client: str = "relay") -> float:
    """The pre-rendered messages over ``connections`` connections, by the bare SMTP client:
    ``relay`` (ours: smtplib in worker threads, as the delivery worker drives it) or
    ``aiosmtplib`` (for comparison)."""
    per = [messages[i::connections] for i in range(connections)]

    async def ours(batch: list[bytes], n: int) -> None:
        conn = RelayConnection(RelayConfig(host="127.0.0.1", port=port, timeout=60), DOMAIN)
        await asyncio.to_thread(conn.open)
        for i, data in enumerate(batch):
            await asyncio.to_thread(
                conn.send, f"dev-bounces+{n}-{i}@{DOMAIN}", f"member{n:02d}{i:05d}@example.net", data
            )
        await asyncio.to_thread(conn.quit)

    async def theirs(batch: list[bytes], n: int) -> None:
        conn = aiosmtplib.SMTP(hostname="127.0.0.1", port=port, start_tls=False, timeout=60)
        await conn.connect()
        for i, data in enumerate(batch):
            await conn.sendmail(f"dev-bounces+{n}-{i}@{DOMAIN}", [f"member{n:02d}{i:05d}@example.net"], data)
        await conn.quit()

    one = ours if client == "relay" else theirs
    t0 = time.perf_counter()
    await asyncio.gather(*(one(b, n) for n, b in enumerate(per)))
    return time.perf_counter() - t0


def sample_copy(relay_port: int) -> bytes:
    """One real copy as the worker renders it, to give the raw sender the same bytes to push."""
    from mailforum.core.copies import prepare_post
    from mailforum.render import Renderer

    with database("sqlite") as url:
        config = Config(
            database=DatabaseConfig(url=url),
            site=SiteConfig(domain=DOMAIN, base_url="https://forum.example.org", secret_key="bench-secret"),
        )
        db = Database(url)
        try:
            setup(db, 2)
            store(db, config, post_bytes())
            with db.read_session() as session:
                prepared = prepare_post(session, config, Renderer(), 1)
            assert prepared is not None
            return prepared.copy.personalise(f"dev+r-1-1-abc-{'a' * 26}@{DOMAIN}", prepared.unsubscribe)
        finally:
            db.dispose()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--members", type=int, default=10_000)
    parser.add_argument("--connections", type=int, default=10)
    parser.add_argument("--backends", default="sqlite,postgresql")
    parser.add_argument("--repeat", type=int, default=2, help="runs per measurement; the best is kept")
    parser.add_argument("--unrecorded", type=int, default=OutboundConfig().unrecorded)
    args = parser.parse_args()
    with smtp_sink() as port:
        copy = sample_copy(port)
        print(f"members: {args.members}")
        print(f"unrecorded_per_connection: {args.unrecorded}")
        print(f"copy_bytes: {len(copy)}")
        raws: list[float] = []
        for backend in args.backends.split(","):
            # Interleave raw and fan-out runs: the machine is shared, so rates drift between runs.
            best: dict[str, float] | None = None
            raw_best = aio_best = 0.0
            for _ in range(args.repeat):
                raw_s = asyncio.run(raw_send(port, [copy] * args.members, args.connections))
                raw_best = max(raw_best, args.members / raw_s)
                # The floor: aiosmtplib over the same connections, copies prebuilt.
                aio_s = asyncio.run(raw_send(port, [copy] * args.members, args.connections, "aiosmtplib"))
                aio_best = max(aio_best, args.members / aio_s)
                result = run_fanout(backend, port, args.members, args.connections, args.unrecorded)
                if best is None or result["total_s"] < best["total_s"]:
                    best = result
            assert best is not None
            raws.append(raw_best)
            rate = args.members / best["total_s"]
            print(f"{backend}_enqueue_s: {best['enqueue_s']:.3f}")
            print(f"{backend}_deliver_s: {best['deliver_s']:.3f}")
            print(f"{backend}_fanout_total_s: {best['total_s']:.3f}")
            print(f"{backend}_fanout_msgs_per_s: {rate:.0f}")
            print(f"{backend}_raw_send_msgs_per_s: {raw_best:.0f}")
            print(f"{backend}_ratio: {rate / raw_best:.2f}")
            print(f"{backend}_aiosmtplib_send_msgs_per_s: {aio_best:.0f}")
            print(f"{backend}_ratio_to_aiosmtplib: {rate / aio_best:.2f}")
        print(f"raw_send_msgs_per_s: {max(raws):.0f}")


if __name__ == "__main__":
    main()
