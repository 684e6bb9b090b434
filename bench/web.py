#!/usr/bin/env python3
"""Benchmark the web archive: requests/s, latency and size of the list page and a 500-post topic.

Seeds a fresh SQLite database (or --db URL) with 100,000 topics by bulk inserts (one
post each, plus one topic of 500 posts), each filed under one of 20 tags, runs the real
server (`mailforum serve --no-smtp --no-process --no-delivery`) as a subprocess, and
measures sequential requests from one client (which, like a browser, accepts gzip; each
page's size is printed uncompressed, `_bytes`, and as sent gzipped, `_gzip_bytes`). The
tag page and the tag-filtered list are timed interleaved with the plain list page (one
request of each in turn) and reported as ratios of p95 to the list page's. The list and
topic pages are measured twice: anonymous, and signed in as a member (a stored session;
p95 should stay within 10% of anonymous). Last, ``POST /signin`` for addresses that are
members and for unknown ones, interleaved: the two latencies should not tell them apart.
Then a web post's way to the relay: `serve --no-smtp` with processing and delivery to an
SMTP sink in this process, and --posts web posts to a small list, one after the other on
the idle server, each timed from the POST of /lists/web/new to its copy's arrival at the
relay (`web_post_to_relay_p50_ms`, `_p95_ms`, `_max_ms`; p95 should stay below one
second). Prints `name: value` lines.
Run: .venv/bin/python bench/web.py [--topics N]
"""

from __future__ import annotations

# bench/threading.py (named by the threading issue) would shadow the stdlib module for
# every script run from this folder: drop the folder from the import path first.
import os
import sys

sys.path[:] = [p for p in sys.path if os.path.abspath(p or ".") != os.path.dirname(os.path.abspath(__file__))]

import argparse
import datetime as dt
import hashlib
import json
import os
import random
import re
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

import httpx
from sqlalchemy import func, insert, select

from mailforum.db import migrate
from mailforum.db.models import MailingList, Member, Post, Tag, Topic, TopicTag, WebSession
from mailforum.db.session import Database

BATCH = 5000
TAGS = 20
SESSION_KEY = "b" * 43  # the signed-in member's mf_session cookie
SIGNIN_PAIRS = 200  # known and unknown addresses asked for, each
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


def sign_in_member(db: Database, list_id: int) -> None:
    """A member of the list with a stored session (as /signin/TOKEN's POST makes one), and the
    members whose sign-in requests are compared with unknown addresses."""
    now = dt.datetime.now(dt.UTC)
    with db.session() as session:
        session.execute(
            insert(Member),
            [{"list_id": list_id, "address": "member@example.com", "created_at": now}]
            + [
                {"list_id": list_id, "address": f"known{i}@example.com", "created_at": now}
                for i in range(SIGNIN_PAIRS)
            ],
        )
        session.add(
            WebSession(
                key_hash=hashlib.sha256(SESSION_KEY.encode()).hexdigest(),
                address="member@example.com",
                created_at=now,
                seen_at=now,
                expires_at=now + dt.timedelta(days=30),
                user_agent="bench",
            )
        )


def signin_latencies(client: httpx.Client) -> tuple[list[float], list[float]]:
    """POST /signin for known and unknown addresses, alternating; seconds each."""
    page = client.get("/signin")
    token = re.search(r'action="/signin"[^>]*>\s*<input type="hidden" name="csrf" value="([^"]+)"', page.text)
    assert token, page.status_code
    known, unknown = [], []
    for i in range(SIGNIN_PAIRS):
        for address, times in ((f"known{i}@example.com", known), (f"unknown{i}@example.com", unknown)):
            t0 = time.perf_counter()
            response = client.post("/signin", data={"csrf": token.group(1), "address": address})
            times.append(time.perf_counter() - t0)
            assert response.status_code == 200, response.status_code
    return known, unknown


def percentiles(times: list[float]) -> tuple[float, float]:
    times = sorted(times)
    return statistics.median(times) * 1000, times[int(len(times) * 0.95) - 1] * 1000


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


class Sink:
    """The relay: an SMTP server in this process noting when each copy arrives (by subject)."""

    def __init__(self) -> None:
        from aiosmtpd.controller import Controller

        self.arrived: dict[str, float] = {}
        self.event = threading.Condition()
        sink = self

        class Handler:
            async def handle_DATA(self, server: object, session: object, envelope: object) -> str:
                data = envelope.original_content or b""  # type: ignore[attr-defined]
                found = re.search(rb"Bench post (\d+)", data)
                if found:
                    with sink.event:
                        sink.arrived.setdefault(found.group(1).decode(), time.perf_counter())
                        sink.event.notify_all()
                return "250 2.0.0 OK"

        self.port = free_port()
        self.controller = Controller(Handler(), hostname="127.0.0.1", port=self.port)
        self.controller.start()

    def wait(self, name: str, timeout: float) -> float | None:
        with self.event:
            self.event.wait_for(lambda: name in self.arrived, timeout)
            return self.arrived.get(name)

    def stop(self) -> None:
        self.controller.stop()


def add_web_list(db: Database) -> None:
    """The small list the web posts go to: the signed-in member posts, one reader gets the copies."""
    now = dt.datetime.now(dt.UTC)
    with db.session() as session:
        list_id = session.scalar(
            insert(MailingList).values(name="web", title="Web posts").returning(MailingList.id)
        )
        session.execute(
            insert(Member),
            [
                {"list_id": list_id, "address": a, "created_at": now}
                for a in ("member@example.com", "reader@example.com")
            ],
        )


def post_latencies(base: str, sink: Sink, count: int) -> list[float]:
    """``count`` web posts, each after the last one's copy arrived: POST to relay, in ms."""
    out = []
    cookies = {"mf_session": SESSION_KEY}
    with httpx.Client(base_url=base, timeout=30, cookies=cookies, headers={"Origin": base}) as client:
        page = client.get("/lists/web/new")
        form = re.search(r'<form[^>]*action="/lists/web/new"[^>]*>(.*?)</form>', page.text, re.S)
        found = re.search(r'name="csrf" value="([^"]+)"', form.group(1) if form else "")
        assert page.status_code == 200 and found, page.status_code
        csrf = found.group(1)
        for n in range(count):
            fields = {
                "csrf": csrf,
                "subject": f"Bench post {n}",
                "body": f"Posted from the bench, number {n}.\n",
            }
            t0 = time.perf_counter()
            answer = client.post("/lists/web/new", data=fields)
            assert answer.status_code == 303, (answer.status_code, answer.text[:200])
            arrived = sink.wait(str(n), 30)
            if arrived is None:
                raise SystemExit(f"web post {n} did not reach the relay within 30 s")
            out.append((arrived - t0) * 1000)
            time.sleep(0.2)  # idle between posts
    return out


def sizes(client: httpx.Client, path: str) -> tuple[int, int]:
    """The page's size as sent without compression, and as sent to a client that takes gzip
    (the same as without when the server does not compress)."""
    raw = client.get(path, headers={"accept-encoding": "identity"})
    with client.stream("GET", path, headers={"accept-encoding": "gzip"}) as streamed:
        wire = sum(len(chunk) for chunk in streamed.iter_raw())
    return len(raw.content), wire


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
    parser.add_argument("--posts", type=int, default=100, help="web posts timed from POST to the relay")
    parser.add_argument("--posts-per-page", type=int, default=50, help="[web] posts_per_page (500: one page)")
    args = parser.parse_args()
    work = Path(tempfile.mkdtemp(prefix="mfbench-web-"))
    url = args.db or f"sqlite:///{work / 'bench.db'}"
    db = Database(url)
    migrate.upgrade(db)
    topic_id, seconds = seed(db, args.topics, 500)
    with db.read_session() as session:
        list_id = session.scalar(select(MailingList.id).where(MailingList.name == "dev"))
    sign_in_member(db, list_id)
    add_web_list(db)
    db.dispose()
    print(f"seed_topics: {args.topics + 1}")
    print(f"seed_seconds: {seconds:.1f}")
    port = free_port()
    sink = Sink()
    config = work / "mailforum.toml"
    config.write_text(
        f'[database]\nurl = {json.dumps(url)}\n[site]\nbase_url = "http://127.0.0.1:{port}"\n'
        f'domain = "lists.example.org"\nsecret_key = "bench"\n[web]\nhost = "127.0.0.1"\nport = {port}\n'
        f"posts_per_page = {args.posts_per_page}\nform_limit = 1000\n"
        f'[relay]\nhost = "127.0.0.1"\nport = {sink.port}\n'
        "[security]\npost_rate_per_minute = 100000\npost_rate_per_day = 100000\n"
    )
    env = dict(os.environ, MAILFORUM_CONFIG=str(config))
    server = subprocess.Popen(
        [sys.executable, "-m", "mailforum", "serve", "--no-smtp", "--no-process", "--no-delivery"],
        env=env,
        cwd=work,
        stdout=subprocess.DEVNULL,
        stderr=None if os.environ.get("BENCH_DEBUG") else subprocess.DEVNULL,
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
                raw, zipped = sizes(client, path)
                print(f"{name}_bytes: {raw}")
                print(f"{name}_gzip_bytes: {zipped}")
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
        # Anonymous and signed-in requests interleaved, so the load of a shared machine weighs on both alike.
        signed = {"list_page": "/lists/dev", "topic_500_page": f"/lists/dev/topics/{topic_id}"}
        with (
            httpx.Client(base_url=base, timeout=30) as anonymous,
            httpx.Client(base_url=base, timeout=30, cookies={"mf_session": SESSION_KEY}) as member,
        ):
            assert "member@example.com" in member.get("/lists/dev").text, "the stored session did not sign in"
            for name, path in signed.items():
                both: dict[str, list[float]] = {"anonymous": [], "signed_in": []}
                for _ in range(args.requests if "topic" not in name else args.requests // 2):
                    for who, client in (("anonymous", anonymous), ("signed_in", member)):
                        t0 = time.perf_counter()
                        assert client.get(path).status_code == 200
                        both[who].append(time.perf_counter() - t0)
                for who, times in both.items():
                    p50, p95 = percentiles(times)
                    print(f"{name}_{who}_interleaved_p50_ms: {p50:.1f}")
                    print(f"{name}_{who}_interleaved_p95_ms: {p95:.1f}")
        with httpx.Client(base_url=base, timeout=30, headers={"origin": base}) as visitor:
            known, unknown = signin_latencies(visitor)
        for name, times in (("signin_known", known), ("signin_unknown", unknown)):
            p50, p95 = percentiles(times)
            print(f"{name}_p50_ms: {p50:.1f}")
            print(f"{name}_p95_ms: {p95:.1f}")
    finally:
        server.terminate()
        server.wait(30)
    # A web post's way to the relay on an idle server: serve with processing and delivery.
    server = subprocess.Popen(
        [sys.executable, "-m", "mailforum", "serve", "--no-smtp", "--no-scheduler"],
        env=env,
        cwd=work,
        stdout=subprocess.DEVNULL,
        stderr=None if os.environ.get("BENCH_DEBUG") else subprocess.DEVNULL,
    )
    try:
        base = f"http://127.0.0.1:{port}"
        deadline = time.monotonic() + 60
        while True:
            try:
                httpx.get(base + "/static/style.css", timeout=5)
                break
            except httpx.TransportError:
                if time.monotonic() > deadline or server.poll() is not None:
                    raise SystemExit("the server did not start") from None
                time.sleep(0.2)
        times = sorted(post_latencies(base, sink, args.posts))
        print(f"web_posts: {len(times)}")
        print(f"web_post_to_relay_p50_ms: {statistics.median(times):.1f}")
        print(f"web_post_to_relay_p95_ms: {times[int(len(times) * 0.95) - 1]:.1f}")
        print(f"web_post_to_relay_max_ms: {times[-1]:.1f}")
    finally:
        server.terminate()
        server.wait(30)
        sink.stop()
        if not args.db:
            for f in work.iterdir():
                f.unlink()
            work.rmdir()


if __name__ == "__main__":
    main()
