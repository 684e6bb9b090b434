#!/usr/bin/env python3
"""Scale-out benchmark (issue 16): 1, 2 and 3 ``serve`` nodes on one PostgreSQL database.

Every node is a real ``mailforum serve --no-web`` process with its own SMTP port and
``[processing] node_name``; they share one fresh PostgreSQL database and one relay,
Postfix's ``smtp-sink``, which dumps every transaction it accepts to a file. A list of
``--members`` members (mode ``all``) gets ``--messages`` posts from its members, sent by
Postfix's ``smtp-source`` to all nodes at once (the sessions split evenly over their
ports, as several MX hosts or a balancing MTA would). For each node count it prints:

    nodes_{N}_ingest_msgs_per_s     acknowledged messages / time until the last 250
    nodes_{N}_done_s                first message sent .. every copy at the sink
    nodes_{N}_done_msgs_per_s       posts / done_s (the end-to-end rate)
    nodes_{N}_copies_per_s          copies at the sink / done_s
    nodes_{N}_vs_1                  done_msgs_per_s / the same for one node
    nodes_{N}_posts, _spool         posts stored, spool rows written
    nodes_{N}_stored_once           1 when every acknowledged message is exactly one post
    nodes_{N}_spool_resent          spool rows beyond the posts (a client resent what a dead
                                    node had stored but not acknowledged; not posted twice)
    nodes_{N}_copies_expected       outbox rows of kind 'post' (one per member and post)
    nodes_{N}_copies_missing        expected (Message-ID, recipient) pairs the sink never saw
    nodes_{N}_copies_twice          pairs the sink saw more than once
    nodes_{N}_node_cpu_ms_per_msg   CPU of every node's processes, per post (with its copies)
    nodes_{N}_pg_cpu_ms_per_msg     CPU of the PostgreSQL backends serving the nodes, per post
                                    (backends that ended before the run's end are not counted):
                                    with the nodes on machines of their own, what the database
                                    server must supply per post

Then the kill run: the same traffic over ``--kill-nodes`` nodes, but sent by a Python
client that records the Message-ID of every message that got its 250 (smtp-source
counts a message before reading the reply, so it cannot tell what a dead node
acknowledged). When a quarter of the messages are spooled and copies are on their
way, the last node's whole process group is killed with SIGKILL; it is started again
2 s later. Clients whose
connection died send their unacknowledged message again to the next node, as an MTA
would. It prints ``kill_acked`` (messages acknowledged), ``kill_lost`` (acknowledged
but not stored: must be 0), ``kill_duplicated_posts`` (stored more than once: must be
0), ``kill_copies_missing`` (must be 0) and ``kill_copies_twice`` (copies the killed
node had handed to the relay but not yet marked sent: the relay window, at most its
claimed batch).

Needs Postfix's test tools (``apt-get install postfix``; the MTA itself is never
started) and PostgreSQL at 127.0.0.1:5432 where user postgres may create databases.

    .venv/bin/python bench/nodes.py                       # 1, 2, 3 nodes, 2,000 messages, kill run
    .venv/bin/python bench/nodes.py --nodes 1,2 --messages 500 --no-kill
"""

from __future__ import annotations

# bench/threading.py would shadow the stdlib module: drop this folder from the import path.
import os
import sys

sys.path[:] = [p for p in sys.path if os.path.abspath(p or ".") != os.path.dirname(os.path.abspath(__file__))]

import argparse
import contextlib
import email.parser
import email.policy
import json
import shutil
import signal
import smtplib
import socket
import subprocess
import tempfile
import threading
import time
import uuid
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import psycopg

SMTP_SOURCE = "/usr/sbin/smtp-source"
SMTP_SINK = "/usr/sbin/smtp-sink"
PG_ADMIN = os.environ.get("MAILFORUM_BENCH_PG", "postgresql://postgres@127.0.0.1:5432/postgres")
DOMAIN = "lists.example.org"
LIST = "dev"
SESSIONS = 10  # client sessions in all, split over the nodes
BODY = 1024


def out(name: str, value: Any) -> None:
    print(f"{name}: {value:.3f}" if isinstance(value, float) else f"{name}: {value}", flush=True)


def note(text: str) -> None:
    print(f"# {text}", file=sys.stderr, flush=True)


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def wait_port(port: int, timeout: float = 60.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        with contextlib.suppress(OSError), socket.create_connection(("127.0.0.1", port), timeout=1):
            return
        time.sleep(0.05)
    raise RuntimeError(f"nothing listens on {port} after {timeout} s")


def member(i: int) -> str:
    return f"m{i:03d}@example.net"


# ---------------------------------------------------------------------------
# The relay: smtp-sink, dumping each transaction to a file


@dataclass
class Sink:
    directory: Path
    port: int = field(default_factory=free_port)
    proc: subprocess.Popen[bytes] | None = None

    def start(self) -> None:
        self.directory.mkdir(mode=0o777, exist_ok=True)
        self.directory.chmod(0o777)  # smtp-sink drops to nobody before it writes
        self.proc = subprocess.Popen(
            [SMTP_SINK, "-u", "nobody", "-d", f"{self.directory}/%M.", f"127.0.0.1:{self.port}", "1024"],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        wait_port(self.port)

    def stop(self) -> None:
        if self.proc is not None:
            self.proc.terminate()
            self.proc.wait(10)

    def files(self) -> list[Path]:
        return [p for p in self.directory.iterdir() if p.is_file()]

    def pairs(self) -> Counter[tuple[str, str]]:
        """(Message-ID, recipient) of every copy the sink accepted."""
        seen: Counter[tuple[str, str]] = Counter()
        parser = email.parser.BytesHeaderParser(policy=email.policy.compat32)
        for path in self.files():
            data = path.read_bytes()
            # The dump starts with smtp-sink's own X-* lines (one X-Rcpt-Args per RCPT),
            # then the message as received.
            rcpts = [
                line.split(b":", 1)[1].strip().decode().removeprefix("TO:").strip("<>").lower()
                for line in data.splitlines()
                if line.startswith(b"X-Rcpt-Args:")
            ]
            mid = (parser.parsebytes(data).get("Message-ID") or "").strip().strip("<>")
            for rcpt in rcpts:
                seen[(mid, rcpt)] += 1
        return seen


# ---------------------------------------------------------------------------
# The cluster: one database, N nodes


@dataclass
class Node:
    index: int
    config: Path
    port: int
    workdir: Path
    proc: subprocess.Popen[bytes] | None = None

    def start(self) -> None:
        log = open(self.workdir / f"node{self.index}.log", "ab")  # noqa: SIM115
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "mailforum", "--config", str(self.config), "serve", "--no-web"],
            stdout=log,
            stderr=subprocess.STDOUT,
            cwd=self.workdir,
            start_new_session=True,  # its own process group, so kill -9 takes every child
        )
        log.close()
        wait_port(self.port)

    def kill(self) -> None:
        assert self.proc is not None
        os.killpg(self.proc.pid, signal.SIGKILL)
        self.proc.wait()

    def stop(self) -> None:
        if self.proc is None or self.proc.poll() is not None:
            return
        self.proc.send_signal(signal.SIGTERM)
        try:
            self.proc.wait(60)
        except subprocess.TimeoutExpired:
            os.killpg(self.proc.pid, signal.SIGKILL)
            self.proc.wait()

    def cpu_seconds(self) -> float:
        """User and system time of the node's process group (children included), from /proc."""
        total = 0.0
        assert self.proc is not None
        for stat in Path("/proc").glob("[0-9]*/stat"):
            with contextlib.suppress(OSError, ValueError, IndexError):
                fields = stat.read_text().rsplit(")", 1)[1].split()
                if int(fields[2]) == self.proc.pid:  # pgrp
                    total += (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")
        return total


def pg_cpu_seconds(database: str) -> float:
    """CPU time so far of the PostgreSQL backends serving ``database`` (their process title
    names it), so other databases' work on the same server does not count."""
    total = 0.0
    tag = f" {database} ".encode()
    for proc in Path("/proc").glob("[0-9]*"):
        with contextlib.suppress(OSError, ValueError, IndexError):
            if tag not in (proc / "cmdline").read_bytes():
                continue
            fields = (proc / "stat").read_text().rsplit(")", 1)[1].split()
            total += (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")
    return total


@dataclass
class Cluster:
    nodes_count: int
    members: int
    workdir: Path = field(default_factory=lambda: Path(tempfile.mkdtemp(prefix="mf-nodes-")))
    db: str = field(default_factory=lambda: f"mf_nodes_{uuid.uuid4().hex[:10]}")
    nodes: list[Node] = field(default_factory=list)
    sink: Sink | None = None

    @property
    def url(self) -> str:
        base = PG_ADMIN.rsplit("/", 1)[0].replace("postgresql://", "postgresql+psycopg://")
        return f"{base}/{self.db}"

    def config(self, index: int, port: int) -> Path:
        assert self.sink is not None
        path = self.workdir / f"node{index}.toml"
        lines = [
            "[database]",
            f"url = {json.dumps(self.url)}",
            "[smtp]",
            'host = "127.0.0.1"',
            f"port = {port}",
            "lmtp_port = 0",
            "[site]",
            f'domain = "{DOMAIN}"',
            'base_url = "http://127.0.0.1:1"',
            'secret_key = "benchmark-secret-0123456789abcdef"',
            "[relay]",
            'host = "127.0.0.1"',
            f"port = {self.sink.port}",
            "[security]",
            # One sender per client session posts hundreds of messages a minute here.
            "post_rate_per_minute = 1000000",
            "post_rate_per_day = 1000000",
            "[processing]",
            f'node_name = "node{index}"',
            "lease = 20.0",
            "[outbound]",
            "lease = 30.0",
            "",
        ]
        path.write_text("\n".join(lines))
        return path

    def cli(self, *args: str, stdin: str | None = None) -> None:
        subprocess.run(
            [sys.executable, "-m", "mailforum", "--config", str(self.nodes[0].config), *args],
            check=True,
            input=stdin.encode() if stdin is not None else None,
            stdout=subprocess.DEVNULL,
            cwd=self.workdir,
        )

    def __enter__(self) -> Cluster:
        self.workdir.chmod(0o711)  # smtp-sink (nobody) must reach its dump folder
        with psycopg.connect(PG_ADMIN, autocommit=True) as admin:
            admin.execute(f"CREATE DATABASE {self.db}")
        self.sink = Sink(self.workdir / "sink")
        self.sink.start()
        for i in range(self.nodes_count):
            port = free_port()
            self.nodes.append(Node(i, self.config(i, port), port, self.workdir))
        self.cli("init")
        self.cli("lists", "create", LIST, "--policy", "members")
        self.cli(
            "members", "add", LIST, "--file", "-", stdin="\n".join(member(i) for i in range(self.members))
        )
        for node in self.nodes:
            node.start()
        return self

    def __exit__(self, *exc: object) -> None:
        for node in self.nodes:
            node.stop()
        if self.sink is not None:
            self.sink.stop()
        with psycopg.connect(PG_ADMIN, autocommit=True) as admin:
            admin.execute(f"DROP DATABASE IF EXISTS {self.db} WITH (FORCE)")
        shutil.rmtree(self.workdir, ignore_errors=True)

    def query(self, sql: str) -> list[tuple[Any, ...]]:
        with psycopg.connect(
            self.url.replace("postgresql+psycopg://", "postgresql://"), autocommit=True
        ) as conn:
            return list(conn.execute(sql).fetchall())

    def scalar(self, sql: str) -> int:
        return int(self.query(sql)[0][0])

    def wait_done(self, expected_spool: int, timeout: float = 900.0) -> None:
        """Until every spooled message is processed and every copy is sent (or failed)."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            spool, waiting, pending = self.query(
                "SELECT (SELECT count(*) FROM spool), (SELECT count(*) FROM spool WHERE state = 'new'),"
                " (SELECT count(*) FROM outbox WHERE state = 'pending')"
            )[0]
            if spool >= expected_spool and not waiting and not pending:
                return
            time.sleep(0.1)
        raise RuntimeError("the cluster did not finish in time")

    def expected_copies(self) -> set[tuple[str, str]]:
        rows = self.query("SELECT message_id, recipient FROM outbox WHERE kind = 'post'")
        return {(mid.strip().strip("<>"), rcpt.lower()) for mid, rcpt in rows}

    def report(self, prefix: str, seconds_done: float, messages: int) -> dict[str, Any]:
        """The figures of a run whose clients had ``messages`` distinct messages acknowledged."""
        assert self.sink is not None
        posts = self.scalar("SELECT count(*) FROM posts WHERE status = 'published'")
        spool = self.scalar("SELECT count(*) FROM spool")
        distinct = self.scalar("SELECT count(DISTINCT message_id) FROM posts WHERE status = 'published'")
        expected = self.expected_copies()
        seen = self.sink.pairs()
        failed = self.scalar("SELECT count(*) FROM outbox WHERE state = 'failed'")
        figures = {
            "posts": posts,
            "spool": spool,
            # Every acknowledged message is one post; a client that resent a message whose 250
            # it never saw (the kill run) adds a spool row, not a post.
            "stored_once": int(posts == distinct == messages),
            "spool_resent": spool - posts,
            "copies_expected": len(expected),
            "copies_missing": len(expected - set(seen)),
            "copies_twice": sum(n - 1 for n in seen.values() if n > 1),
            "copies_unexpected": len(set(seen) - expected),
            "copies_failed": failed,
            "done_s": seconds_done,
            "done_msgs_per_s": posts / seconds_done,
            "copies_per_s": sum(seen.values()) / seconds_done,
        }
        for name, value in figures.items():
            out(f"{prefix}_{name}", value)
        return figures


# ---------------------------------------------------------------------------
# Traffic


def smtp_source(port: int, messages: int, sessions: int, sender: str) -> int:
    proc = subprocess.run(
        [
            SMTP_SOURCE,
            "-d",
            "-s",
            str(sessions),
            "-l",
            str(BODY),
            "-m",
            str(messages),
            "-M",
            "client.example.net",
            "-f",
            sender,
            "-t",
            f"{LIST}@{DOMAIN}",
            "-S",
            f"Scale-out {uuid.uuid4().hex[:8]}",
            f"127.0.0.1:{port}",
        ],
        capture_output=True,
        timeout=900,
        check=False,
    )
    if proc.returncode != 0:
        note(f"smtp-source on {port} exited {proc.returncode}: {proc.stderr.decode(errors='replace')[:300]}")
    return messages


def split(total: int, parts: int) -> list[int]:
    return [total // parts + (1 if i < total % parts else 0) for i in range(parts)]


def message(i: int, sender: str) -> tuple[str, bytes]:
    mid = f"kill.{i}.{uuid.uuid4().hex[:12]}@client.example.net"
    body = (f"Kill run message number {i}. " * 40)[:BODY]
    raw = (
        f"From: {sender}\r\nTo: {LIST}@{DOMAIN}\r\nSubject: Kill run {i}\r\n"
        f"Message-ID: <{mid}>\r\nDate: Fri, 04 Dec 2026 12:00:00 +0000\r\n\r\n{body}\r\n"
    )
    return mid, raw.encode()


@dataclass
class PySource:
    """smtplib clients in threads, recording the Message-ID of every 250; a failed
    connection sends the same message again to the next node, as an MTA would."""

    ports: list[int]
    acked: list[str] = field(default_factory=list)
    retries: int = 0
    lock: threading.Lock = field(default_factory=threading.Lock)

    def client(self, worker: int, items: list[int]) -> None:
        sender = member(worker)
        turn = worker
        conn: smtplib.SMTP | None = None
        for i in items:
            mid, raw = message(i, sender)
            while True:
                try:
                    if conn is None:
                        conn = smtplib.SMTP("127.0.0.1", self.ports[turn % len(self.ports)], timeout=30)
                        conn.ehlo("client.example.net")
                    conn.sendmail(sender, [f"{LIST}@{DOMAIN}"], raw)
                    with self.lock:
                        self.acked.append(mid)
                    break
                except (OSError, smtplib.SMTPException):
                    with contextlib.suppress(Exception):
                        if conn is not None:
                            conn.close()
                    conn = None
                    turn += 1  # the next node, as an MX list would
                    with self.lock:
                        self.retries += 1
                    time.sleep(0.2)
        if conn is not None:
            with contextlib.suppress(Exception):
                conn.quit()

    def run(self, messages: int, sessions: int) -> threading.Thread:
        chunks = [list(range(w, messages, sessions)) for w in range(sessions)]
        threads = [threading.Thread(target=self.client, args=(w, chunk)) for w, chunk in enumerate(chunks)]

        def all_of_them() -> None:
            for t in threads:
                t.start()
            for t in threads:
                t.join()

        driver = threading.Thread(target=all_of_them)
        driver.start()
        return driver


# ---------------------------------------------------------------------------
# Runs


def scale_run(n: int, args: argparse.Namespace) -> dict[str, Any]:
    with Cluster(n, args.members) as cluster:
        node_cpu0, pg_cpu0 = sum(node.cpu_seconds() for node in cluster.nodes), pg_cpu_seconds(cluster.db)
        counts = split(args.messages, n)
        sessions = split(SESSIONS, n)
        start = time.perf_counter()
        threads = [
            threading.Thread(target=smtp_source, args=(node.port, counts[i], max(1, sessions[i]), member(i)))
            for i, node in enumerate(cluster.nodes)
        ]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        ingest_s = time.perf_counter() - start
        cluster.wait_done(args.messages)
        done_s = time.perf_counter() - start
        node_cpu = sum(node.cpu_seconds() for node in cluster.nodes) - node_cpu0
        pg_cpu = pg_cpu_seconds(cluster.db) - pg_cpu0
        out(f"nodes_{n}_ingest_msgs_per_s", args.messages / ingest_s)
        figures = cluster.report(f"nodes_{n}", done_s, args.messages)
        posts = max(1, figures["posts"])
        out(f"nodes_{n}_node_cpu_ms_per_msg", node_cpu * 1000 / posts)
        out(f"nodes_{n}_pg_cpu_ms_per_msg", pg_cpu * 1000 / posts)
        return figures


def kill_run(args: argparse.Namespace) -> None:
    with Cluster(args.kill_nodes, args.members) as cluster:
        victim = cluster.nodes[-1]
        source = PySource([node.port for node in cluster.nodes])
        start = time.perf_counter()
        driver = source.run(args.messages, SESSIONS)
        # Mid-run: a quarter of the mail accepted and copies already on their way, so the
        # victim dies holding claims on the spool and on the outbox.
        spooled = sent = 0
        while (spooled < args.messages // 4 or not sent) and driver.is_alive():
            spooled, sent = cluster.query(
                "SELECT (SELECT count(*) FROM spool), (SELECT count(*) FROM outbox WHERE state = 'sent')"
            )[0]
            time.sleep(0.02)
        victim.kill()
        killed_at = time.perf_counter() - start
        time.sleep(2)
        victim.start()
        driver.join()
        cluster.wait_done(len(set(source.acked)))
        done_s = time.perf_counter() - start
        stored = Counter(
            mid.strip().strip("<>")
            for (mid,) in cluster.query("SELECT message_id FROM posts WHERE status = 'published'")
        )
        acked = set(source.acked)
        out("kill_nodes", args.kill_nodes)
        out("kill_at_s", killed_at)
        out("kill_spooled_before", spooled)
        out("kill_sent_before", sent)
        out("kill_acked", len(acked))
        out("kill_client_retries", source.retries)
        out("kill_lost", sum(1 for mid in acked if not stored[mid]))
        out("kill_duplicated_posts", sum(n - 1 for n in stored.values() if n > 1))
        cluster.report("kill", done_s, len(acked))


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--nodes", default="1,2,3", help="node counts to measure, comma-separated")
    parser.add_argument("--messages", type=int, default=2000)
    parser.add_argument("--members", type=int, default=20, help="members of the list, each gets every post")
    parser.add_argument("--kill-nodes", type=int, default=2, help="nodes in the kill run")
    parser.add_argument("--no-kill", action="store_true", help="skip the kill run")
    args = parser.parse_args()
    for tool in (SMTP_SOURCE, SMTP_SINK):
        if not Path(tool).exists():
            sys.exit(f"{tool} is missing: apt-get install postfix (only its test tools are used)")
    out("cores", os.cpu_count() or 0)
    base: float | None = None
    for n in (int(x) for x in args.nodes.split(",")):
        figures = scale_run(n, args)
        base = base or figures["done_msgs_per_s"]
        out(f"nodes_{n}_vs_1", figures["done_msgs_per_s"] / base)
    if not args.no_kill:
        kill_run(args)


if __name__ == "__main__":
    main()
