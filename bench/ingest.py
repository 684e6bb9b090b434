"""Ingest benchmark (issue 2; RELIABILITY L3 and L11): how fast does mail get durably accepted?

For each database (a temporary SQLite file, then a fresh PostgreSQL database that is
created on 127.0.0.1:5432 and dropped afterwards) this starts the real server,
``mailforum serve`` as a subprocess, with the spool processor running in the same
process as in production, and drives it with Postfix's ``smtp-source``: 10 sessions
that each stay connected (``-d``), 1 kB bodies, to the address of a list that exists.
A message counts only if smtp-source got its 250 (the tool aborts on anything else,
and reports how many DATA commands completed) AND its spool row is in the database
when smtp-source has exited. The same smtp-source parameters drive an aiosmtpd
server whose handler does nothing but answer 250 (another subprocess), interleaved
with the real runs, so noise on the shared machine hits both alike.

Then the archive is grown to ``--scale`` posts (topics, posts and their spool rows,
seeded with executemany on SQLite and COPY on PostgreSQL, not through SMTP) and
ingest is measured again, followed by the Message-ID lookup that threading does
(``core.threads.find_posts``: posts by (list_id, message_id)) at that scale.

Every measurement is repeated ``--repeat`` times; the best is printed along with all
runs, so the spread is visible. Lines are ``name: value``:

    {db}_noop_msgs_per_s           aiosmtpd with a do-nothing handler
    {db}_ingest_msgs_per_s         mailforum serve, processor on (the real configuration)
    {db}_ratio                     ingest / noop (target >= 0.7)
    {db}_ingest_noprocess_msgs_per_s   serve --no-process: ingest alone, for the GIL question
    {db}_ingest_with_processor_vs_alone  ingest with the processor / without it (1.0: no starvation)
    {db}_drain_s                   time for the processor to empty the backlog of one run
    {db}_ingest_{N}_msgs_per_s     ingest with N posts stored (N = 1m for --scale 1000000); also noop_{N}
    {db}_{N}_ratio                 ingest at N / noop at N (measured in the same phase)
    {db}_{N}_vs_empty              ingest at N / ingest on the empty database (target >= 0.9)
    {db}_msgid_lookup_p99_ms       threading's Message-ID lookup at N posts (target < 5 ms);
                                   ..._cpu_p99_ms: its CPU time (wall minus preemption on a busy
                                   machine); ..._sql_p99_ms: the bare query, without the ORM
    {db}_time_{part}_s             how long each part of the benchmark took
    ..._runs, ..._cpu_ms_per_msg   every run; the server's CPU time (all threads) per message, best run

Needs ``/usr/sbin/smtp-source`` (Debian: ``apt-get install postfix``; only this test
tool is used, the MTA is never started) and, for PostgreSQL, a server at
127.0.0.1:5432 where user postgres may create databases. No traffic leaves 127.0.0.1.

    .venv/bin/python bench/ingest.py                     # both databases, 100,000 posts (a few minutes)
    .venv/bin/python bench/ingest.py --scale 1000000     # L11: 1M posts (seeding takes minutes)
    .venv/bin/python bench/ingest.py --db sqlite --messages 2000 --repeat 1   # a quick look
    .venv/bin/python bench/ingest.py --reconnect --scale 0   # one connection per message
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
import datetime as dt
import hashlib
import json
import os
import random
import re
import shutil
import signal
import socket
import sqlite3
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

SMTP_SOURCE = "/usr/sbin/smtp-source"
DOMAIN = "lists.example.org"
LIST = "bench"
SESSIONS = 10
BODY = 1024
HELO = "bench.example"
POSTS_PER_TOPIC = 10
PG_ADMIN = "postgresql://postgres@127.0.0.1:5432/postgres"


def out(name: str, value: Any) -> None:
    print(f"{name}: {value}", flush=True)


def note(text: str) -> None:
    print(f"# {text}", file=sys.stderr, flush=True)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def wait_port(port: int, proc: subprocess.Popen[bytes], timeout: float = 30.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"server exited with {proc.returncode} before listening on {port}")
        try:
            with socket.create_connection(("127.0.0.1", port), 0.2):
                return
        except OSError:
            time.sleep(0.05)
    raise RuntimeError(f"nothing listening on 127.0.0.1:{port} after {timeout} s")


def cpu_seconds(pid: int) -> float:
    """User + system CPU time of a process, all its threads, and of its live children
    (serve's supervisor has one per role on PostgreSQL) (Linux /proc)."""
    total = 0.0
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rsplit(")", 1)[1].split()
        except (OSError, IndexError):
            continue
        if stat.parent.name == str(pid) or fields[1] == str(pid):
            total += (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")
    return total


def label(n: int) -> str:
    """1000000 → 1m, 100000 → 100k (for the names of the printed values)."""
    if n % 1_000_000 == 0:
        return f"{n // 1_000_000}m"
    if n % 1000 == 0:
        return f"{n // 1000}k"
    return str(n)


# ---------------------------------------------------------------------------
# smtp-source


# One connection per message instead of 10 kept-alive sessions (--reconnect).
RECONNECT = False


def smtp_source(port: int, messages: int) -> tuple[int, float]:
    """Send ``messages`` over 10 parallel sessions; (messages acknowledged, seconds)."""
    cmd = [
        SMTP_SOURCE,
        "-c",  # print a counter each time a DATA completes: our "acknowledged" count
        *([] if RECONNECT else ["-d"]),  # -d: keep each session open for the next message
        "-s",
        str(SESSIONS),
        "-l",
        str(BODY),
        "-m",
        str(messages),
        "-M",
        HELO,
        "-f",
        "ann@example.com",
        "-t",
        f"{LIST}@{DOMAIN}",
        "-S",
        "Benchmark message",
        f"127.0.0.1:{port}",
    ]
    start = time.perf_counter()
    proc = subprocess.run(cmd, capture_output=True, timeout=600, check=False)
    seconds = time.perf_counter() - start
    counts = re.findall(rb"\d+", proc.stdout)
    acked = int(counts[-1]) if counts else 0
    if proc.returncode != 0:
        # smtp-source stops at the first reply that is not 2xx; what it acknowledged still counts.
        note(f"smtp-source exited {proc.returncode}: {proc.stderr.decode(errors='replace').strip()[:300]}")
    return acked, seconds


# ---------------------------------------------------------------------------
# The do-nothing aiosmtpd server (a subprocess: one Python process, like serve)


def run_noop_server(port: int) -> None:
    from aiosmtpd.smtp import SMTP

    class Handler:
        async def handle_DATA(self, server: Any, session: Any, envelope: Any) -> str:
            return "250 OK"

    async def main() -> None:
        loop = asyncio.get_running_loop()
        server = await loop.create_server(
            lambda: SMTP(Handler(), hostname=HELO, decode_data=False), "127.0.0.1", port
        )
        stop = asyncio.Event()
        loop.add_signal_handler(signal.SIGTERM, stop.set)
        async with server:
            await stop.wait()

    asyncio.run(main())


@dataclass
class Server:
    port: int
    pid: int


@contextlib.contextmanager
def noop_server() -> Iterator[Server]:
    port = free_port()
    proc = subprocess.Popen([sys.executable, __file__, "--noop-server", str(port)])
    try:
        wait_port(port, proc)
        yield Server(port, proc.pid)
    finally:
        proc.terminate()
        proc.wait(30)


# ---------------------------------------------------------------------------
# The database under test


@dataclass
class Target:
    """One database: its URL, the config file of the server, and a scratch directory."""

    kind: str  # "sqlite" or "postgresql"
    url: str
    workdir: Path
    port: int = field(default_factory=free_port)
    web_port: int = field(default_factory=free_port)
    relay_port: int = field(default_factory=free_port)
    pid: int = 0  # of the running server

    @property
    def config_file(self) -> Path:
        return self.workdir / "mailforum.toml"

    def write_config(self) -> None:
        self.config_file.write_text(
            "\n".join(
                [
                    "[database]",
                    f"url = {json.dumps(self.url)}",
                    "[smtp]",
                    'host = "127.0.0.1"',
                    f"port = {self.port}",
                    "lmtp_port = 0",
                    # All benchmark traffic comes from 127.0.0.1: with --reconnect, one
                    # connection per message would hit the per-IP rate limit (300/min).
                    *(["max_connection_rate_per_ip = 10000000"] if RECONNECT else []),
                    "[site]",
                    f'domain = "{DOMAIN}"',
                    f'base_url = "http://127.0.0.1:{self.web_port}"',
                    'secret_key = "benchmark-secret-0123456789abcdef"',
                    # serve runs every part, as in production: the web archive on a free
                    # port, delivery towards a port nobody listens on (the list has no
                    # members, so there is nothing to send).
                    "[web]",
                    'host = "127.0.0.1"',
                    f"port = {self.web_port}",
                    "[relay]",
                    'host = "127.0.0.1"',
                    f"port = {self.relay_port}",
                    "",
                ]
            )
        )

    def cli(self, *args: str) -> None:
        subprocess.run(
            [sys.executable, "-m", "mailforum", "--config", str(self.config_file), *args],
            check=True,
            stdout=subprocess.DEVNULL,
            cwd=self.workdir,
        )

    @contextlib.contextmanager
    def serve(self, *args: str) -> Iterator[subprocess.Popen[bytes]]:
        log = open(self.workdir / "serve.log", "ab")  # noqa: SIM115
        proc = subprocess.Popen(
            [sys.executable, "-m", "mailforum", "--config", str(self.config_file), "serve", *args],
            stdout=log,
            stderr=subprocess.STDOUT,
            cwd=self.workdir,
        )
        try:
            wait_port(self.port, proc)
            self.pid = proc.pid
            yield proc
        finally:
            proc.send_signal(signal.SIGTERM)
            try:
                proc.wait(60)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()
            log.close()

    def connect(self) -> Any:
        """A plain DB-API connection (sqlite3 or psycopg), autocommit."""
        if self.kind == "sqlite":
            conn = sqlite3.connect(self.url.removeprefix("sqlite:///"), isolation_level=None, timeout=30)
            return conn
        import psycopg

        return psycopg.connect(self.url.replace("postgresql+psycopg://", "postgresql://"), autocommit=True)

    def scalar(self, sql: str) -> Any:
        conn = self.connect()
        try:
            return conn.execute(sql).fetchone()[0]
        finally:
            conn.close()

    def spool_rows(self) -> int:
        return int(self.scalar("SELECT count(*) FROM spool"))

    def spool_new(self) -> int:
        return int(self.scalar("SELECT count(*) FROM spool WHERE state = 'new'"))

    def wait_drained(self, timeout: float = 600.0) -> float:
        start = time.perf_counter()
        while self.spool_new():
            if time.perf_counter() - start > timeout:
                raise RuntimeError(f"spool backlog not drained after {timeout} s")
            time.sleep(0.1)
        return time.perf_counter() - start


@contextlib.contextmanager
def sqlite_target() -> Iterator[Target]:
    workdir = Path(tempfile.mkdtemp(prefix="mf-bench-sqlite-"))
    try:
        yield Target("sqlite", f"sqlite:///{workdir / 'bench.db'}", workdir)
    finally:
        shutil.rmtree(workdir, ignore_errors=True)


@contextlib.contextmanager
def postgres_target(admin_url: str) -> Iterator[Target]:
    import psycopg

    name = f"mf_bench_{os.getpid()}_{int(time.time())}"
    workdir = Path(tempfile.mkdtemp(prefix="mf-bench-pg-"))
    with psycopg.connect(admin_url, autocommit=True) as admin:
        admin.execute(f"CREATE DATABASE {name}")
    base = admin_url.rsplit("/", 1)[0].replace("postgresql://", "postgresql+psycopg://")
    try:
        yield Target("postgresql", f"{base}/{name}", workdir)
    finally:
        with psycopg.connect(admin_url, autocommit=True) as admin:
            admin.execute(f"DROP DATABASE IF EXISTS {name} WITH (FORCE)")
        shutil.rmtree(workdir, ignore_errors=True)


# ---------------------------------------------------------------------------
# Measurements


@dataclass
class Runs:
    values: list[float] = field(default_factory=list)
    cpu_ms: list[float] = field(default_factory=list)  # server CPU time per message

    @property
    def best(self) -> float:
        return max(self.values)

    def show(self) -> str:
        return " ".join(f"{v:.0f}" for v in self.values)

    def cpu(self) -> str:
        return f"{min(self.cpu_ms):.3f}"


def measure_ingest(target: Target, messages: int, runs: Runs) -> None:
    """One smtp-source run against the real server: acknowledged AND stored messages per second."""
    before = target.spool_rows()
    cpu = cpu_seconds(target.pid)
    acked, seconds = smtp_source(target.port, messages)
    runs.cpu_ms.append((cpu_seconds(target.pid) - cpu) * 1000 / max(1, acked))
    stored = target.spool_rows() - before
    if stored != acked:
        note(f"{target.kind}: smtp-source saw {acked} acknowledged, the spool holds {stored} new rows")
    if stored < acked:
        raise RuntimeError(f"LOST: {acked - stored} acknowledged messages are not in the spool")
    runs.values.append(min(acked, stored) / seconds)


def measure_noop(server: Server, messages: int, runs: Runs) -> None:
    cpu = cpu_seconds(server.pid)
    acked, seconds = smtp_source(server.port, messages)
    runs.cpu_ms.append((cpu_seconds(server.pid) - cpu) * 1000 / max(1, acked))
    runs.values.append(acked / seconds)


def phase(target: Target, suffix: str, messages: int, repeat: int, noop: Server) -> tuple[Runs, Runs, Runs]:
    """Interleaved noop and ingest runs with the server up; each run starts with an empty backlog."""
    noops, ingest, drain = Runs(), Runs(), Runs()
    measure_noop(noop, min(messages, 500), Runs())  # warm-up, not counted
    for _ in range(repeat):
        measure_noop(noop, messages, noops)
        measure_ingest(target, messages, ingest)
        drain.values.append(target.wait_drained())
    p = f"{target.kind}_"
    out(f"{p}noop{suffix}_msgs_per_s", f"{noops.best:.0f}")
    out(f"{p}noop{suffix}_msgs_per_s_runs", noops.show())
    out(f"{p}noop{suffix}_cpu_ms_per_msg", noops.cpu())
    out(f"{p}ingest{suffix}_msgs_per_s", f"{ingest.best:.0f}")
    out(f"{p}ingest{suffix}_msgs_per_s_runs", ingest.show())
    out(f"{p}ingest{suffix}_cpu_ms_per_msg", ingest.cpu())
    return noops, ingest, drain


# ---------------------------------------------------------------------------
# Seeding a large archive without SMTP


def _seed_rows(start_topic: int, start_post: int, start_spool: int, list_id: int, n: int) -> Iterator[Any]:
    """(topics, spool rows, posts) for ``n`` posts, ``POSTS_PER_TOPIC`` to a topic, spread over two years."""
    now = dt.datetime.now(dt.UTC).replace(tzinfo=None)
    span = dt.timedelta(days=730)
    raw_body = ("x" * 76 + "\r\n") * 12
    topics: list[tuple[Any, ...]] = []
    spool: list[tuple[Any, ...]] = []
    posts: list[tuple[Any, ...]] = []
    for i in range(n):
        t = start_topic + i // POSTS_PER_TOPIC
        first = i % POSTS_PER_TOPIC == 0
        when = now - span + span * (i / n) - dt.timedelta(days=1)
        mid = seed_message_id(i)
        subject = f"Seeded topic {t}" if first else f"Re: Seeded topic {t}"
        raw = (
            f"From: Seeder {i % 997} <seed{i % 997}@example.com>\r\nTo: {LIST}@{DOMAIN}\r\n"
            f"Subject: {subject}\r\nMessage-ID: {mid}\r\n\r\n{raw_body}"
        ).encode()
        if first:
            topics.append((t, list_id, subject, f"seeded topic {t}", when, when, POSTS_PER_TOPIC))
        spool.append(
            (
                start_spool + i,
                when,
                f"seed{i % 997}@example.com",
                json.dumps([f"{LIST}@{DOMAIN}"]),
                raw,
                len(raw),
                when,
                "smtp",
                "127.0.0.1",
                "done",
                1,
            )
        )
        parent = None if first else start_post + i - (i % POSTS_PER_TOPIC)
        posts.append(
            (
                start_post + i,
                list_id,
                t,
                parent,
                mid,
                f"seed{i % 997}@example.com",
                f"Seeder {i % 997}",
                subject,
                when,
                when,
                raw_body,
                raw,
                hashlib.sha256(raw).hexdigest(),
                start_spool + i,
                "published",
                "[]",
            )
        )
        if len(posts) >= 20_000 or i == n - 1:
            yield topics, spool, posts
            topics, spool, posts = [], [], []


def seed_message_id(i: int) -> str:
    return f"<{hashlib.sha1(str(i).encode()).hexdigest()[:20]}.{i}@seed.example>"


def seed(target: Target, n: int) -> None:
    conn = target.connect()
    try:
        list_id = conn.execute(f"SELECT id FROM lists WHERE name = '{LIST}'").fetchone()[0]
        starts = [conn.execute(f"SELECT coalesce(max(id), 0) + 1 FROM {t}").fetchone()[0] for t in TABLES]
        chunks = _seed_rows(*starts, list_id, n)
        if target.kind == "sqlite":
            _seed_sqlite(conn, chunks)
        else:
            _seed_postgres(conn, chunks)
    finally:
        conn.close()


TABLES = ("topics", "posts", "spool")
TOPIC_COLS = "id, list_id, subject, subject_key, created_at, last_post_at, post_count"
SPOOL_COLS = "id, received_at, mail_from, rcpt_tos, raw, size, processed_at, protocol, peer, state, attempts"
POST_COLS = (
    "id, list_id, topic_id, parent_id, message_id, author_address, author_name, subject, date,"
    " received_at, text_body, raw, fingerprint, spool_id, status, attachments"
)


SQLITE_TIME = "%Y-%m-%d %H:%M:%S.%f"  # how SQLAlchemy stores DateTime on SQLite


def _seed_sqlite(conn: sqlite3.Connection, chunks: Iterator[Any]) -> None:
    # Seeding is setup, not the thing measured: no fsync per page here.
    conn.execute("PRAGMA synchronous=OFF")
    conn.execute("PRAGMA cache_size=-400000")
    conn.execute("BEGIN IMMEDIATE")

    def fmt(rows: list[tuple[Any, ...]]) -> list[tuple[Any, ...]]:
        return [tuple(v.strftime(SQLITE_TIME) if isinstance(v, dt.datetime) else v for v in r) for r in rows]

    for topics, spool, posts in chunks:
        for table, cols, rows in (
            ("topics", TOPIC_COLS, topics),
            ("spool", SPOOL_COLS, spool),
            ("posts", POST_COLS, posts),
        ):
            marks = ", ".join("?" * len(cols.split(",")))
            conn.executemany(f"INSERT INTO {table} ({cols}) VALUES ({marks})", fmt(rows))
    conn.execute("COMMIT")
    conn.execute("PRAGMA wal_checkpoint(TRUNCATE)")


def _seed_postgres(conn: Any, chunks: Iterator[Any]) -> None:
    utc = dt.UTC

    def aware(rows: list[tuple[Any, ...]]) -> Iterator[tuple[Any, ...]]:
        for r in rows:
            yield tuple(v.replace(tzinfo=utc) if isinstance(v, dt.datetime) else v for v in r)

    with conn.transaction():
        for topics, spool, posts in chunks:
            for table, cols, rows in (
                ("topics", TOPIC_COLS, topics),
                ("spool", SPOOL_COLS, spool),
                ("posts", POST_COLS, posts),
            ):
                with conn.cursor().copy(f"COPY {table} ({cols}) FROM STDIN") as copy:
                    for row in aware(rows):
                        copy.write_row(row)
    for table in TABLES:
        conn.execute(f"SELECT setval(pg_get_serial_sequence('{table}', 'id'), (SELECT max(id) FROM {table}))")
    # autovacuum would analyse the new rows within a minute; do it now so the run is repeatable.
    conn.execute("ANALYZE")


# ---------------------------------------------------------------------------
# Threading's Message-ID lookup


def lookup_latency(target: Target, n_seeded: int, samples: int = 10_000) -> dict[str, Any]:
    """Threading's Message-ID lookup at scale: 90% hits among the seeded posts, 10% misses.

    ``orm``: ``core.threads.find_posts`` as threading calls it (query and ORM load) inside an
    open transaction; ``sql``: the bare indexed query through the DB-API, for the index alone.
    Times are in ms; the plan shows which index answers.
    """
    from sqlalchemy import text

    from mailforum.core.threads import find_posts
    from mailforum.db.session import Database

    db = Database(target.url)
    rng = random.Random(2)
    picks = [rng.randrange(n_seeded) for _ in range(samples)]
    mids = [seed_message_id(i) if k % 10 else f"<missing.{i}@nowhere.example>" for k, i in enumerate(picks)]
    result: dict[str, Any] = {}
    try:
        with db.read_session() as session:
            list_id = session.execute(text("SELECT id FROM lists WHERE name = :n"), {"n": LIST}).scalar_one()
            explain = "EXPLAIN QUERY PLAN " if target.kind == "sqlite" else "EXPLAIN "
            plan_rows = session.execute(
                text(f"{explain}SELECT id FROM posts WHERE list_id = :l AND message_id = :m"),
                {"l": list_id, "m": seed_message_id(1)},
            ).all()
            result["plan"] = " | ".join(str(r[-1]) for r in plan_rows)
        orm: list[float] = []
        cpu: list[float] = []  # this thread's CPU time: what is left when preemption is taken out
        for k, mid in enumerate(mids):
            with db.read_session() as session:
                session.execute(text("SELECT 1"))  # the transaction is open, as it is in processing
                start, start_cpu = time.perf_counter(), time.thread_time()
                found = find_posts(session, list_id, [mid])
                orm.append((time.perf_counter() - start) * 1000)
                cpu.append((time.thread_time() - start_cpu) * 1000)
            if k % 10 and mid not in found:
                raise RuntimeError(f"seeded {mid} not found")
        conn = target.connect()
        mark = "?" if target.kind == "sqlite" else "%s"
        query = f"SELECT id, topic_id FROM posts WHERE list_id = {mark} AND message_id = {mark}"
        sql: list[float] = []
        try:
            for mid in mids:
                start = time.perf_counter()
                conn.execute(query, (list_id, mid)).fetchall()
                sql.append((time.perf_counter() - start) * 1000)
        finally:
            conn.close()
        for name, times in (("orm", orm), ("cpu", cpu), ("sql", sql)):
            times.sort()
            result[f"{name}_p50"] = statistics.median(times)
            result[f"{name}_p99"] = times[int(len(times) * 0.99)]
            result[f"{name}_max"] = times[-1]
        return result
    finally:
        db.dispose()


# ---------------------------------------------------------------------------
# One database from start to finish


def bench(target: Target, args: argparse.Namespace) -> None:
    p = f"{target.kind}_"
    clock = time.perf_counter()

    def lap(part: str) -> None:
        nonlocal clock
        now = time.perf_counter()
        out(f"{p}time_{part}_s", f"{now - clock:.1f}")
        clock = now

    target.write_config()
    target.cli("init")
    target.cli("lists", "create", LIST, "--policy", "open")
    lap("setup")

    with noop_server() as noop:
        if args.compare_no_process:
            with target.serve("--no-process"):
                alone = Runs()
                for _ in range(args.repeat):
                    measure_ingest(target, args.messages, alone)
            out(f"{p}ingest_noprocess_msgs_per_s", f"{alone.best:.0f}")
            out(f"{p}ingest_noprocess_msgs_per_s_runs", alone.show())
            out(f"{p}ingest_noprocess_cpu_ms_per_msg", alone.cpu())
            lap("noprocess")

        with target.serve():
            target.wait_drained()  # what --no-process left behind
            noops, ingest, drain = phase(target, "", args.messages, args.repeat, noop)
        out(f"{p}ratio", f"{ingest.best / noops.best:.2f}")
        out(f"{p}drain_s", f"{statistics.median(drain.values):.1f}")
        out(f"{p}drain_s_runs", " ".join(f"{d:.1f}" for d in drain.values))
        if args.compare_no_process:
            out(f"{p}ingest_with_processor_vs_alone", f"{ingest.best / alone.best:.2f}")
        lap("empty")

        if args.scale:
            seed(target, args.scale)
            out(f"{p}posts_stored", target.scalar("SELECT count(*) FROM posts"))
            lap("seed")
            n = label(args.scale)
            with target.serve():
                noop_n, ingest_n, _ = phase(target, f"_{n}", args.messages, args.repeat, noop)
            out(f"{p}{n}_ratio", f"{ingest_n.best / noop_n.best:.2f}")
            out(f"{p}{n}_vs_empty", f"{ingest_n.best / ingest.best:.2f}")
            lap("scaled")
            found = lookup_latency(target, args.scale)
            out(f"{p}msgid_lookup_posts", args.scale)
            out(f"{p}msgid_lookup_p50_ms", f"{found['orm_p50']:.3f}")
            out(f"{p}msgid_lookup_p99_ms", f"{found['orm_p99']:.3f}")
            out(f"{p}msgid_lookup_max_ms", f"{found['orm_max']:.3f}")
            out(f"{p}msgid_lookup_cpu_p99_ms", f"{found['cpu_p99']:.3f}")
            out(f"{p}msgid_lookup_sql_p50_ms", f"{found['sql_p50']:.3f}")
            out(f"{p}msgid_lookup_sql_p99_ms", f"{found['sql_p99']:.3f}")
            out(f"{p}msgid_lookup_plan", found["plan"])
            lap("lookup")


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--db", choices=["sqlite", "postgresql", "both"], default="both")
    parser.add_argument("--messages", type=int, default=5000, help="messages per smtp-source run")
    parser.add_argument("--repeat", type=int, default=3, help="runs per measurement; the best is reported")
    parser.add_argument(
        "--scale", type=int, default=100_000, help="posts to seed for the scale part (0: skip)"
    )
    parser.add_argument(
        "--no-compare-no-process",
        dest="compare_no_process",
        action="store_false",
        help="skip the runs with the spool processor switched off",
    )
    parser.add_argument(
        "--reconnect",
        action="store_true",
        help="one connection per message (smtp-source without -d); lifts the per-IP connection rate limit",
    )
    parser.add_argument("--pg-admin-url", default=PG_ADMIN)
    parser.add_argument("--noop-server", type=int, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.noop_server:
        run_noop_server(args.noop_server)
        return
    global RECONNECT
    RECONNECT = args.reconnect
    if not os.access(SMTP_SOURCE, os.X_OK):
        sys.exit(f"{SMTP_SOURCE} not found: apt-get install postfix (only its test tools are used)")
    out("nproc", os.cpu_count())
    out("sessions", SESSIONS)
    out("connection_per_message", int(RECONNECT))
    out("body_bytes", BODY)
    out("messages_per_run", args.messages)
    out("repeat", args.repeat)
    targets: list[Callable[[], contextlib.AbstractContextManager[Target]]] = []
    if args.db in ("sqlite", "both"):
        targets.append(sqlite_target)
    if args.db in ("postgresql", "both"):
        targets.append(lambda: postgres_target(args.pg_admin_url))
    for make in targets:
        with make() as target:
            bench(target, args)


if __name__ == "__main__":
    main()
