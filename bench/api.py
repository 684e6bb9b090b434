#!/usr/bin/env python3
"""Benchmark the JSON API: a bulk add of 10,000 members, then a walk of them page by page.

Makes a fresh SQLite database (or uses --db URL: PostgreSQL wants an empty database),
creates a list and an admin token, runs the real server (`mailforum serve --no-smtp
--no-process --no-delivery --no-scheduler`, the web alone, one process) as a subprocess,
and times, over HTTP from one client:

    api_bulk_add_s        POST /api/v1/lists/dev/members with --members entries (one request)
    api_walk_s            GET /api/v1/lists/dev/members from the first page to "next": null
    api_walk_pages        how many pages that took (?limit=--page-size)
    api_page_p50_ms       the median time of one page of the walk
    api_bulk_add_again_s  the same POST again: every address already a member (nothing added)

Targets (issue 18): the bulk add under 5 s and the walk under 2 s for 10,000 members
(Mailman's `addmembers` took 222 s for 10,000 on this machine). Prints `name: value`.

    .venv/bin/python bench/api.py [--members 10000] [--page-size 500] [--db URL]
"""

from __future__ import annotations

# bench/threading.py (named by the threading issue) would shadow the stdlib module for
# every script run from this folder: drop the folder from the import path first.
import os
import sys

sys.path[:] = [p for p in sys.path if os.path.abspath(p or ".") != os.path.dirname(os.path.abspath(__file__))]

import argparse
import json
import shutil
import socket
import statistics
import subprocess
import tempfile
import time
from pathlib import Path

import httpx

from mailforum.core import api_tokens, lists
from mailforum.db import migrate
from mailforum.db.session import Database

parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
parser.add_argument("--members", type=int, default=10_000)
parser.add_argument("--page-size", type=int, default=500, help="?limit= of each page of the walk")
parser.add_argument("--db", help="database URL (default: a fresh SQLite file in a temp dir)")


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def main() -> None:
    args = parser.parse_args()
    work = Path(tempfile.mkdtemp(prefix="mfbench-api-"))
    url = args.db or f"sqlite:///{work / 'bench.db'}"
    db = Database(url)
    migrate.upgrade(db)
    with db.session() as session:
        lists.create_list(session, "dev")
        token = api_tokens.create(session, "bench", "admin")
    db.dispose()
    port = free_port()
    config = work / "mailforum.toml"
    config.write_text(
        f'[database]\nurl = {json.dumps(url)}\n[site]\nbase_url = "http://127.0.0.1:{port}"\n'
        f'secret_key = "bench"\n[web]\nhost = "127.0.0.1"\nport = {port}\n'
        f"[api]\nmax_page_size = {max(args.page_size, 2000)}\nmax_body = {64 * 1024 * 1024}\n"
    )
    env = dict(os.environ, MAILFORUM_CONFIG=str(config))
    web_only = ("--single-process", "--no-smtp", "--no-process", "--no-delivery", "--no-scheduler")
    server = subprocess.Popen(
        [sys.executable, "-m", "mailforum", "serve", *web_only],
        env=env,
        cwd=work,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        headers = {"Authorization": f"Bearer {token}"}
        with httpx.Client(base_url=f"http://127.0.0.1:{port}", timeout=120, headers=headers) as client:
            deadline = time.monotonic() + 60
            while True:
                try:
                    client.get("/healthz")
                    break
                except httpx.TransportError:
                    if time.monotonic() > deadline or server.poll() is not None:
                        raise SystemExit("the server did not start") from None
                    time.sleep(0.2)
            members = [
                {"address": f"member{i:06d}@example.com", "name": f"Member {i}"} for i in range(args.members)
            ]
            start = time.perf_counter()
            r = client.post("/api/v1/lists/dev/members", json={"members": members})
            bulk = time.perf_counter() - start
            assert r.status_code == 200 and r.json()["added"] == args.members, r.text[:300]
            start = time.perf_counter()
            r = client.post("/api/v1/lists/dev/members", json={"members": members})
            again = time.perf_counter() - start
            assert r.json() == {"added": 0, "existing": args.members}, r.text[:300]

            seen, pages, cursor, times = 0, 0, None, []
            start = time.perf_counter()
            while True:
                params: dict[str, str | int] = {"limit": args.page_size}
                if cursor is not None:
                    params["cursor"] = cursor
                t0 = time.perf_counter()
                r = client.get("/api/v1/lists/dev/members", params=params)
                times.append(time.perf_counter() - t0)
                body = r.json()
                seen += len(body["items"])
                pages += 1
                cursor = body["next"]
                if cursor is None:
                    break
            walk = time.perf_counter() - start
            assert seen == args.members, seen
        print(f"api_members: {args.members}")
        print(f"api_bulk_add_s: {bulk:.2f}")
        print(f"api_bulk_add_again_s: {again:.2f}")
        print(f"api_walk_s: {walk:.2f}")
        print(f"api_walk_pages: {pages}")
        print(f"api_page_p50_ms: {statistics.median(times) * 1000:.1f}")
    finally:
        server.terminate()
        server.wait(30)
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
