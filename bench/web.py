#!/usr/bin/env python3
"""Benchmark the web archive: requests/s and latency of the list page and a 500-post topic.

Seeds a fresh SQLite database (or --db URL) with 100,000 topics by bulk inserts (one
post each, plus one topic of 500 posts), each filed under one of 20 tags (issue 19),
runs the real server (`mailforum serve --no-smtp --no-process`) as a subprocess, and
measures sequential requests from one client. The tag page and the tag-filtered list
are timed interleaved with the plain list page (one request of each in turn, so a busy
machine slows all three alike) and reported as ratios of p95 to the list page's.
Prints `name: value` lines. Run: .venv/bin/python bench/web.py [--topics N]
"""

from __future__ import annotations

# bench/threading.py (named by the threading issue) would shadow the stdlib module for
# every script run from this folder: drop the folder from the import path first.
import os
import sys

sys.path[:] = [p for p in sys.path if os.path.abspath(p or ".") != os.path.dirname(os.path.abspath(__file__))]

import argparse
import datetime as dt
import json
import os
import random
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import httpx
from sqlalchemy import func, insert, select

from mailforum.db import migrate
from mailforum.db.models import MailingList, Post, Tag, Topic, TopicTag
from mailforum.db.session import Database

BATCH = 5000
TAGS = 20
BODY = "Hello list, this is a reasonably ordinary message body about topic {n}.\n" * 3


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def raw_message(n: int, subject: str, body: str) -> bytes:
    return (
        f"From: Person {n % 500} <p{n % 500}@example.com>\r\nSubject: {subject}\r\n"
        f"Message-ID: <bench{n}@example.com>\r\nDate: Thu, 26 Nov 2026 10:00:00 +0000\r\n\r\n{body}"
    ).encode()


def seed(db: Database, topics: int, long_topic: int) -> tuple[int, float]:
    """Bulk-insert ``topics`` topics of one post and one topic of ``long_topic`` posts."""
    start = time.perf_counter()
    now = dt.datetime.now(dt.UTC)
    rng = random.Random(7)
    with db.session() as session:
        list_id = session.scalar(
            insert(MailingList)
            .values(name="dev", title="Developers", description="The bench list")
            .returning(MailingList.id)
        )
        session.execute(insert(Tag), [{"list_id": list_id, "name": f"tag{t}"} for t in range(TAGS)])
        tag_ids = list(session.scalars(select(Tag.id).where(Tag.list_id == list_id).order_by(Tag.id)))
    for first in range(0, topics, BATCH):
        count = min(BATCH, topics - first)
        with db.session() as session:
            base = (session.scalar(select(func.max(Topic.id))) or 0) + 1
            rows, posts = [], []
            for i in range(count):
                n = first + i
                created = now - dt.timedelta(minutes=rng.randrange(0, 60 * 24 * 700))
                subject = f"[tag{n % 9}] Topic number {n}"
                rows.append(
                    {
                        "id": base + i,
                        "list_id": list_id,
                        "subject": subject,
                        "subject_key": subject.lower(),
                        "created_at": created,
                        "last_post_at": created + dt.timedelta(minutes=rng.randrange(600)),
                        "post_count": 1 + rng.randrange(3) * 0,
                        "tagged": True,
                    }
                )
                posts.append(
                    {
                        "list_id": list_id,
                        "topic_id": base + i,
                        "message_id": f"<bench{n}@example.com>",
                        "status": "published",
                        "author_address": f"p{n % 500}@example.com",
                        "author_name": f"Person {n % 500}",
                        "subject": subject,
                        "received_at": created,
                        "text_body": BODY.format(n=n),
                        "attachments": [],
                        "raw": raw_message(n, subject, BODY.format(n=n)),
                    }
                )
            session.execute(insert(Topic), rows)
            session.execute(insert(Post), posts)
            session.execute(
                insert(TopicTag),
                [
                    {
                        "topic_id": r["id"],
                        "tag_id": tag_ids[(first + i) % TAGS],
                        "last_post_at": r["last_post_at"],
                        "post_count": r["post_count"],
                    }
                    for i, r in enumerate(rows)
                ],
            )
    with db.session() as session:
        created = now - dt.timedelta(days=1)
        topic_id = session.scalar(
            insert(Topic)
            .values(
                list_id=list_id,
                subject="A 500-post topic",
                subject_key="a 500-post topic",
                created_at=created,
                last_post_at=created + dt.timedelta(minutes=long_topic),
                post_count=long_topic,
            )
            .returning(Topic.id)
        )
        parent = None
        for i in range(long_topic):
            n = topics + i
            quoted = f"Person {i} wrote:\n> an earlier line\n> and another\n\nMy answer {i}.\n-- \nsig {i}\n"
            parent = session.scalar(
                insert(Post)
                .values(
                    list_id=list_id,
                    topic_id=topic_id,
                    parent_id=parent if i % 5 else None,
                    message_id=f"<bench{n}@example.com>",
                    status="published",
                    author_address=f"p{i % 40}@example.com",
                    author_name=f"Person {i % 40}",
                    subject="Re: A 500-post topic",
                    received_at=created + dt.timedelta(minutes=i),
                    text_body=quoted,
                    attachments=[],
                    raw=raw_message(n, "Re: A 500-post topic", quoted),
                )
                .returning(Post.id)
            )
    return topic_id, time.perf_counter() - start


def measure(client: httpx.Client, path: str, requests: int) -> tuple[float, float, float]:
    client.get(path)  # warm up
    times = []
    start = time.perf_counter()
    for _ in range(requests):
        t0 = time.perf_counter()
        response = client.get(path)
        times.append(time.perf_counter() - t0)
        assert response.status_code == 200, (path, response.status_code)
    total = time.perf_counter() - start
    times.sort()
    return requests / total, statistics.median(times) * 1000, times[int(len(times) * 0.95) - 1] * 1000


def measure_interleaved(client: httpx.Client, paths: dict[str, str], requests: int) -> dict[str, float]:
    """p95 (ms) of each path, one request of each in turn ``requests`` times."""
    times: dict[str, list[float]] = {name: [] for name in paths}
    for path in paths.values():
        client.get(path)  # warm up
    for _ in range(requests):
        for name, path in paths.items():
            t0 = time.perf_counter()
            response = client.get(path)
            times[name].append(time.perf_counter() - t0)
            assert response.status_code == 200, (path, response.status_code)
    return {name: sorted(t)[int(len(t) * 0.95) - 1] * 1000 for name, t in times.items()}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--topics", type=int, default=100_000)
    parser.add_argument("--requests", type=int, default=200)
    parser.add_argument("--db", help="database URL (default: a fresh SQLite file in a temp dir)")
    parser.add_argument("--posts-per-page", type=int, default=50, help="[web] posts_per_page (500: one page)")
    args = parser.parse_args()
    work = Path(tempfile.mkdtemp(prefix="mfbench-web-"))
    url = args.db or f"sqlite:///{work / 'bench.db'}"
    db = Database(url)
    migrate.upgrade(db)
    topic_id, seconds = seed(db, args.topics, 500)
    db.dispose()
    print(f"seed_topics: {args.topics + 1}")
    print(f"seed_seconds: {seconds:.1f}")
    port = free_port()
    config = work / "mailforum.toml"
    config.write_text(
        f'[database]\nurl = {json.dumps(url)}\n[site]\nbase_url = "http://127.0.0.1:{port}"\n'
        f'secret_key = "bench"\n[web]\nhost = "127.0.0.1"\nport = {port}\n'
        f"posts_per_page = {args.posts_per_page}\n"
    )
    env = dict(os.environ, MAILFORUM_CONFIG=str(config))
    server = subprocess.Popen(
        [sys.executable, "-m", "mailforum", "serve", "--no-smtp", "--no-process"],
        env=env,
        cwd=work,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        base = f"http://127.0.0.1:{port}"
        with httpx.Client(base_url=base, timeout=30) as client:
            deadline = time.monotonic() + 60
            while True:
                try:
                    client.get("/static/style.css")
                    break
                except httpx.TransportError:
                    if time.monotonic() > deadline or server.poll() is not None:
                        raise SystemExit("the server did not start") from None
                    time.sleep(0.2)
            cases = {
                "index": "/",
                "list_page": "/lists/dev",
                "list_page_replies": "/lists/dev?sort=replies",
                "list_page_1000": "/lists/dev?page=1000",
                "topic_500_page": f"/lists/dev/topics/{topic_id}",
                "topic_500_last_page": f"/lists/dev/topics/{topic_id}?page={-(-500 // args.posts_per_page)}",
                "search": "/lists/dev/search?q=ordinary+topic",
            }
            for name, path in cases.items():
                rate, p50, p95 = measure(
                    client, path, args.requests if "topic" not in name else args.requests // 2
                )
                print(f"{name}_requests_per_s: {rate:.0f}")
                print(f"{name}_p50_ms: {p50:.1f}")
                print(f"{name}_p95_ms: {p95:.1f}")
            tagged = {
                "list_page": "/lists/dev",
                "tag_page": "/lists/dev/tags/tag7",
                "tag_filter": "/lists/dev?tag=tag7",
                "list_page_100": "/lists/dev?page=100",
                "tag_page_100": "/lists/dev/tags/tag7?page=100",
            }
            p95 = measure_interleaved(client, tagged, args.requests)
            for name, value in p95.items():
                print(f"interleaved_{name}_p95_ms: {value:.1f}")
            print(f"tag_page_over_list_page_p95: {p95['tag_page'] / p95['list_page']:.2f}")
            print(f"tag_filter_over_list_page_p95: {p95['tag_filter'] / p95['list_page']:.2f}")
            print(f"tag_page_100_over_list_page_100_p95: {p95['tag_page_100'] / p95['list_page_100']:.2f}")
    finally:
        server.terminate()
        server.wait(30)
        if not args.db:
            for f in work.iterdir():
                f.unlink()
            work.rmdir()


if __name__ == "__main__":
    main()
