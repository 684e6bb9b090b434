#!/usr/bin/env python3
"""Burst benchmark (issue 12 item 7; RELIABILITY F20): does a flood slow our 250s down, or refuse them?

The reported run: Postfix's ``smtp-source -s 10 -m 3000 -l 1000`` (10 sessions, a new
connection per message, 1,000-byte bodies), three bursts back to back, against
``mailforum serve`` on SQLite with processing and delivery running, to a list whose one
member is the sender, so the posting-rate rule holds most of the flood for moderation.
Refusals (``451 4.3.0 Storage busy``) came ~30 s in, when something held the SQLite
write lock past ``busy_timeout``.

This script runs that scenario against the real server (a subprocess, on a temporary
SQLite file; delivery goes to Postfix's ``smtp-sink``) and prints ``name: value`` lines:

    burst_{n}_acked, burst_{n}_s     messages smtp-source got a 250 for, and how long the burst took
    acked, refused                   in all; refused = sent - acked (smtp-source stops a
                                     session at the first refusal)
    storage_busy_replies             "spool commit failed" in the server log: 451s we gave
    drain_s                          from the last burst until the spool has nothing new
    lock_transactions                SQLite write transactions during the run
    lock_longest_hold_s              longest time one transaction held the write lock
                                     (BEGIN IMMEDIATE acquired → connection returned after COMMIT)
    lock_longest_holder              its thread and first statement
    lock_longest_wait_s              longest time a BEGIN IMMEDIATE waited for the lock
    lock_holds_over_1s               transactions that held it longer than a second

Needs ``/usr/sbin/smtp-source`` and ``/usr/sbin/smtp-sink`` (``apt-get install postfix``;
the MTA is never started). Everything stays on 127.0.0.1.

    .venv/bin/python bench/burst.py                          # the reported scenario
    .venv/bin/python bench/burst.py --bursts 1 --messages 500   # a quick look
"""

from __future__ import annotations

# bench/threading.py would shadow the stdlib module: drop this folder from the import path.
import os
import sys

sys.path[:] = [p for p in sys.path if os.path.abspath(p or ".") != os.path.dirname(os.path.abspath(__file__))]

import argparse
import importlib.util
import re
import time
from pathlib import Path
from types import ModuleType


def _load(name: str) -> ModuleType:
    """A sibling benchmark script as a module (bench/ is not a package)."""
    spec = importlib.util.spec_from_file_location(f"bench_{name}", Path(__file__).with_name(f"{name}.py"))
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # dataclasses look their module up there
    spec.loader.exec_module(module)
    return module


ingest = _load("ingest")  # Target (serve as a subprocess), smtp_source, out
fanout = _load("fanout")  # smtp_sink

_LOCK_LINE = re.compile(
    r"SQLite write lock: (\d+) write transactions, longest hold ([\d.]+) s \((.*)\), "
    r"longest wait ([\d.]+) s, (\d+) over"
)


def lock_summary(log: str) -> tuple[int, float, str, float, int]:
    """The main database's lock statistics, which serve logs when it stops."""
    found = [m.groups() for m in _LOCK_LINE.finditer(log)]
    if not found:
        return 0, 0.0, "-", 0.0, 0
    busiest = max(found, key=lambda g: int(g[0]))
    return int(busiest[0]), float(busiest[1]), busiest[2], float(busiest[3]), int(busiest[4])


def run(args: argparse.Namespace) -> None:
    ingest.BODY = args.body
    ingest.SESSIONS = args.sessions
    ingest.RECONNECT = not args.keep_sessions  # the reported command has no -d
    with fanout.smtp_sink() as sink_port, ingest.sqlite_target() as target:
        target.relay_port = sink_port
        target.write_config()
        target.cli("init")
        target.cli("lists", "create", ingest.LIST)  # members only: the sender is the one member
        target.cli("members", "add", ingest.LIST, "ann@example.com")
        acked_total = 0
        with target.serve():
            for n in range(1, args.bursts + 1):
                acked, seconds = ingest.smtp_source(target.port, args.messages)
                ingest.out(f"burst_{n}_acked", acked)
                ingest.out(f"burst_{n}_s", f"{seconds:.1f}")
                acked_total += acked
            started = time.perf_counter()
            target.wait_drained()
            ingest.out("drain_s", f"{time.perf_counter() - started:.1f}")
            ingest.out("posts", target.scalar("SELECT count(*) FROM posts"))
            ingest.out("held_posts", target.scalar("SELECT count(*) FROM posts WHERE status = 'held'"))
        log = (target.workdir / "serve.log").read_text(errors="replace")
    ingest.out("acked", acked_total)
    ingest.out("refused", args.bursts * args.messages - acked_total)
    ingest.out("storage_busy_replies", log.count("spool commit failed"))
    transactions, hold, holder, wait, slow = lock_summary(log)
    ingest.out("lock_transactions", transactions)
    ingest.out("lock_longest_hold_s", f"{hold:.3f}")
    ingest.out("lock_longest_holder", holder)
    ingest.out("lock_longest_wait_s", f"{wait:.3f}")
    ingest.out("lock_holds_over_1s", slow)
    for line in log.splitlines():
        if "write lock held" in line or "spool commit failed" in line:
            ingest.note(line[:200])


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--bursts", type=int, default=3)
    parser.add_argument("--messages", type=int, default=3000, help="messages per burst (smtp-source -m)")
    parser.add_argument("--sessions", type=int, default=10, help="parallel sessions (smtp-source -s)")
    parser.add_argument("--body", type=int, default=1000, help="body bytes (smtp-source -l)")
    parser.add_argument("--keep-sessions", action="store_true", help="smtp-source -d: reuse each connection")
    args = parser.parse_args()
    for tool in (ingest.SMTP_SOURCE, fanout.SMTP_SINK):
        if not os.access(tool, os.X_OK):
            sys.exit(f"{tool} not found: apt-get install postfix (only its test tools are used)")
    ingest.out("nproc", os.cpu_count())
    ingest.out("bursts", args.bursts)
    ingest.out("messages_per_burst", args.messages)
    ingest.out("sessions", args.sessions)
    ingest.out("body_bytes", args.body)
    run(args)


if __name__ == "__main__":
    main()
