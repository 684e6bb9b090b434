#!/usr/bin/env python3
"""Posts benchmark (issue 16): 200 posts from 20 members to those 20 members.

Two parts, each on SQLite and on PostgreSQL (a fresh database on 127.0.0.1:5432, dropped
afterwards):

``processing`` — the spool processor alone, in this process: the 200 messages are put in
the spool in one statement, then ``SpoolProcessor.drain()`` threads and stores them and
writes their 3,800 outbox rows. Prints the processor's CPU per message (this process,
``time.process_time``), the SQL statements it sent per message (which a busy machine
does not change) and, on PostgreSQL, the CPU of the database's backends per
message (from /proc, their process title names the database). ``--profile FILE`` writes
a cProfile of the drain.

``end-to-end`` — the real server (``mailforum serve`` as a subprocess: ingest, processing
and delivery), the 200 posts sent over LMTP (4 connections), every copy at Postfix's
``smtp-sink``; timed from the first LMTP transaction until the outbox has every copy sent.
The floor, measured in the same run: the same 3,800 copies, rendered beforehand, sent by
aiosmtplib over 10 connections to the same sink. Prints both and their ratio (issue 16's
target: at least 0.5).

Needs ``/usr/sbin/smtp-sink`` (``apt-get install postfix``; the MTA is never started).
No traffic leaves 127.0.0.1. Usage:

    PYTHONPATH=$PWD .venv/bin/python bench/posts.py [--backends sqlite,postgresql]
        [--parts processing,end-to-end] [--posts 200] [--members 20] [--repeat 2]
"""

from __future__ import annotations

import os
import sys

# bench/threading.py would shadow the stdlib module: drop this folder from the import path.
sys.path[:] = [p for p in sys.path if os.path.abspath(p or ".") != os.path.dirname(os.path.abspath(__file__))]

import argparse
import asyncio
import contextlib
import cProfile
import email.utils
import importlib.util
import signal
import smtplib
import subprocess
import tempfile
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from types import ModuleType

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from sqlalchemy import event, func, select

from mailforum.config import Config, DatabaseConfig, SiteConfig
from mailforum.core import lists
from mailforum.db import migrate, spool
from mailforum.db.models import DeliveryMode, OutboxEntry, PostingPolicy, SpoolEntry, utcnow
from mailforum.db.session import Database
from mailforum.runners.worker import SpoolProcessor


def _load(name: str) -> ModuleType:
    """A sibling benchmark script as a module (bench/ is not a package)."""
    spec = importlib.util.spec_from_file_location(f"bench_{name}", Path(__file__).with_name(f"{name}.py"))
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module
    spec.loader.exec_module(module)
    return module


fanout = _load("fanout")  # database(), smtp_sink(), raw_send(), free_port()
nodes = _load("nodes")  # pg_cpu_seconds()

DOMAIN = "lists.example.org"
LIST = "dev"
TOPIC_LENGTH = 10  # posts per thread: the first opens a topic, the others reply to the one before
BODY = ("A benchmark post, about as long as a short real message on a list; nothing more. " * 12)[:900]


def out(name: str, value: float | int | str) -> None:
    print(f"{name}: {value:.4f}" if isinstance(value, float) else f"{name}: {value}", flush=True)


def member(number: int) -> str:
    return f"member{number:03d}@example.net"


def message(number: int, members: int) -> bytes:
    """Post ``number``: from member number % members, a reply to the post before it in its thread."""
    thread, position = divmod(number, TOPIC_LENGTH)
    subject = f"Thread {thread}: on the topic of benchmarks"
    lines = [
        f"From: Member {number % members} <{member(number % members)}>",
        f"To: {LIST}@{DOMAIN}",
        f"Subject: {'Re: ' if position else ''}{subject}",
        f"Message-ID: <post-{number}@example.net>",
        f"Date: {email.utils.format_datetime(utcnow())}",
    ]
    if position:
        lines.append(f"In-Reply-To: <post-{number - 1}@example.net>")
        lines.append(
            f"References: <post-{thread * TOPIC_LENGTH}@example.net> <post-{number - 1}@example.net>"
        )
    return ("\r\n".join(lines) + "\r\n\r\n" + BODY + "\r\n").encode()


def setup(db: Database, members: int) -> None:
    migrate.upgrade(db)
    with db.session() as session:
        mlist = lists.create_list(session, LIST, title="Benchmark", policy=PostingPolicy.MEMBERS)
        addresses = [lists.Address(member(i)) for i in range(members)]
        lists.add_members(session, mlist, addresses, DeliveryMode.ALL, utcnow())


def config_for(url: str, relay_port: int = 25) -> Config:
    from mailforum.config import RelayConfig

    return Config(
        database=DatabaseConfig(url=url),
        relay=RelayConfig(host="127.0.0.1", port=relay_port, max_connections=10),
        site=SiteConfig(domain=DOMAIN, base_url="https://forum.example.org", secret_key="bench-secret"),
    )


def count(db: Database, *where: object) -> int:
    with db.read_session() as session:
        return int(session.scalar(select(func.count()).select_from(OutboxEntry).where(*where)) or 0)  # type: ignore[arg-type]


def processing(backend: str, posts: int, members: int, profile: str | None) -> dict[str, float]:
    """Spool ``posts`` messages, then drain the spool in this process; CPU per message."""
    with fanout.database(backend) as url:
        db = Database(url)
        try:
            setup(db, members)
            config = config_for(url)
            raws = [message(n, members) for n in range(posts)]
            with db.session() as session:
                spool.insert_batch(
                    session,
                    [
                        spool.NewMessage(r, member(n % members), (f"{LIST}@{DOMAIN}",))
                        for n, r in enumerate(raws)
                    ],
                    utcnow(),
                )
            processor = SpoolProcessor(db, config)
            statements = [0]

            def counted(*_args: object) -> None:
                statements[0] += 1

            event.listen(db.engine, "before_cursor_execute", counted)
            dbname = url.rsplit("/", 1)[1]
            pg0 = nodes.pg_cpu_seconds(dbname) if backend == "postgresql" else 0.0
            cpu0, wall0 = time.process_time(), time.perf_counter()
            profiler = cProfile.Profile() if profile else None
            if profiler:
                profiler.enable()
            done = processor.drain()
            if profiler:
                profiler.disable()
                profiler.dump_stats(f"{profile}.{backend}")
            cpu, wall = time.process_time() - cpu0, time.perf_counter() - wall0
            pg = nodes.pg_cpu_seconds(dbname) - pg0 if backend == "postgresql" else 0.0
            copies = count(db)
            with db.read_session() as session:
                states = dict(
                    session.execute(select(SpoolEntry.state, func.count()).group_by(SpoolEntry.state)).all()
                )
            if done != posts or copies != posts * (members - 1) or states != {"done": posts}:
                sys.exit(f"{backend}: processed {done}, {copies} copies, spool {states}")
            return {
                "cpu_ms_per_msg": cpu * 1000 / posts,
                "wall_s": wall,
                "db_cpu_ms_per_msg": pg * 1000 / posts,
                "statements_per_msg": statements[0] / posts,
            }
        finally:
            db.dispose()


@contextlib.contextmanager
def server(url: str, relay_port: int, workdir: Path) -> Iterator[int]:
    """``mailforum serve`` with LMTP on a free port, the relay at ``relay_port``."""
    lmtp, smtp = fanout.free_port(), fanout.free_port()
    conf = workdir / "mailforum.toml"
    conf.write_text(
        f'[database]\nurl = "{url}"\n'
        f'[site]\ndomain = "{DOMAIN}"\nbase_url = "https://forum.example.org"\nsecret_key = "bench-secret"\n'
        f'[smtp]\nhost = "127.0.0.1"\nport = {smtp}\nlmtp_port = {lmtp}\n'
        f'[relay]\nhost = "127.0.0.1"\nport = {relay_port}\nmax_connections = 10\n'
        f"[outbound]\npoll_interval = 0.05\n"
    )
    env = dict(os.environ, MAILFORUM_CONFIG=str(conf))
    log = open(workdir / "serve.log", "wb")  # noqa: SIM115
    proc = subprocess.Popen(
        [sys.executable, "-m", "mailforum", "serve", "--no-web"],
        env=env,
        stdout=log,
        stderr=subprocess.STDOUT,
        start_new_session=True,
    )
    try:
        deadline = time.monotonic() + 60
        while True:
            with contextlib.suppress(OSError), smtplib.LMTP("127.0.0.1", lmtp, timeout=1) as probe:
                probe.noop()
                break
            if proc.poll() is not None or time.monotonic() > deadline:
                sys.exit(f"serve did not start: {(workdir / 'serve.log').read_text()[-3000:]}")
            time.sleep(0.1)
        yield lmtp
    finally:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(proc.pid, signal.SIGTERM)
        try:
            proc.wait(60)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()
        log.close()


def send_lmtp(port: int, raws: list[tuple[str, bytes]], connections: int) -> None:
    def one_connection(share: list[tuple[str, bytes]]) -> None:
        with smtplib.LMTP("127.0.0.1", port, timeout=60) as client:
            for sender, raw in share:
                refused = client.sendmail(sender, [f"{LIST}@{DOMAIN}"], raw)
                if refused:
                    raise RuntimeError(f"LMTP refused: {refused}")

    shares = [raws[i::connections] for i in range(connections)]
    with ThreadPoolExecutor(connections) as pool:
        list(pool.map(one_connection, shares))


def end_to_end(backend: str, posts: int, members: int, sink: int) -> dict[str, float]:
    with fanout.database(backend) as url, tempfile.TemporaryDirectory(prefix="mf-posts-") as folder:
        db = Database(url)
        try:
            setup(db, members)
            expected = posts * (members - 1)
            raws = [(member(n % members), message(n, members)) for n in range(posts)]
            with server(url, sink, Path(folder)) as lmtp:
                started = time.perf_counter()
                send_lmtp(lmtp, raws, 4)
                accepted = time.perf_counter() - started
                deadline = time.monotonic() + 600
                while count(db, OutboxEntry.state == "sent") < expected:
                    if time.monotonic() > deadline:
                        sys.exit(
                            f"{backend}: only {count(db, OutboxEntry.state == 'sent')} of {expected} sent"
                        )
                    time.sleep(0.02)
                total = time.perf_counter() - started
            if count(db) != expected:
                sys.exit(f"{backend}: {count(db)} outbox rows, expected {expected}")
            return {"accept_s": accepted, "total_s": total, **timeline(db)}
        finally:
            db.dispose()


def timeline(db: Database) -> dict[str, float]:
    """Where the run's time went, from the rows' own stamps: seconds from the first spool
    commit until the last one (``spooled_s``), the last post stored (``processed_s``), and
    the first and last copy sent (``first_sent_s``, ``sent_s``)."""
    with db.read_session() as session:
        first, spooled, processed = session.execute(
            select(
                func.min(SpoolEntry.received_at),
                func.max(SpoolEntry.received_at),
                func.max(SpoolEntry.processed_at),
            )
        ).one()
        first_sent, sent = session.execute(
            select(func.min(OutboxEntry.sent_at), func.max(OutboxEntry.sent_at))
        ).one()
    return {
        name: (stamp - first).total_seconds()
        for name, stamp in (
            ("spooled_s", spooled),
            ("processed_s", processed),
            ("first_sent_s", first_sent),
            ("sent_s", sent),
        )
    }


def floor(sink: int, posts: int, members: int) -> float:
    """The same number of copies, of the size a copy has, by aiosmtplib over 10 connections."""
    sample = (
        message(1, members) + b"\r\n" + b"x" * 600 + b"\r\n"
    )  # our list headers and footer add ~600 bytes
    return float(
        asyncio.run(fanout.raw_send(sink, [sample] * (posts * (members - 1)), 10, client="aiosmtplib"))
    )


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--backends", default="sqlite,postgresql")
    parser.add_argument("--parts", default="processing,end-to-end")
    parser.add_argument("--posts", type=int, default=200)
    parser.add_argument("--members", type=int, default=20)
    parser.add_argument("--repeat", type=int, default=2, help="runs per measurement; the best is kept")
    parser.add_argument("--profile", metavar="FILE", help="cProfile of the processing drain, to FILE.BACKEND")
    args = parser.parse_args()
    parts = args.parts.split(",")
    out("load_average_1min", os.getloadavg()[0])
    for backend in args.backends.split(","):
        if "processing" in parts:
            runs = [processing(backend, args.posts, args.members, args.profile) for _ in range(args.repeat)]
            best = min(runs, key=lambda r: r["cpu_ms_per_msg"])
            out(f"{backend}_processing_cpu_ms_per_msg", best["cpu_ms_per_msg"])
            out(
                f"{backend}_processing_cpu_ms_per_msg_runs",
                " ".join(f"{r['cpu_ms_per_msg']:.2f}" for r in runs),
            )
            out(f"{backend}_processing_wall_s", best["wall_s"])
            out(f"{backend}_processing_statements_per_msg", best["statements_per_msg"])
            if backend == "postgresql":
                out(f"{backend}_processing_db_cpu_ms_per_msg", best["db_cpu_ms_per_msg"])
        if "end-to-end" in parts:
            with fanout.smtp_sink() as sink:
                runs: list[dict[str, float]] = []
                floors: list[float] = []
                for _ in range(args.repeat):  # interleaved, so noise on the machine hits both alike
                    floors.append(floor(sink, args.posts, args.members))
                    runs.append(end_to_end(backend, args.posts, args.members, sink))
            totals = [r["total_s"] for r in runs]
            best = min(runs, key=lambda r: r["total_s"])
            out(f"{backend}_posts_total_s", min(totals))
            for stage in ("spooled_s", "processed_s", "first_sent_s", "sent_s"):
                out(f"{backend}_posts_{stage}", best[stage])
            out(f"{backend}_posts_total_s_runs", " ".join(f"{t:.2f}" for t in totals))
            out(f"{backend}_posts_per_s", args.posts / min(totals))
            out(f"{backend}_floor_aiosmtplib_s", min(floors))
            out(f"{backend}_ratio", min(floors) / min(totals))
    out("load_average_1min_end", os.getloadavg()[0])


if __name__ == "__main__":
    main()
