#!/usr/bin/env python3
"""Command-mail benchmark (issue 5): how fast subscriptions by mail are processed.

On SQLite (a temporary file, WAL) and, when reachable, PostgreSQL, it measures:

- ``should_answer`` per message (the RFC 3834 silence table);
- processing ``subscribe`` mails to ``dev-request@`` from distinct senders through the
  real processing path (parse, route, confirmation row, one outbox notice), one
  transaction per message, as the spool worker does;
- confirming each of them (token check, single-use update, member row, welcome notice);
- one-click unsubscribes by signed link.

Prints ``name: value`` lines. Usage:

    .venv/bin/python bench/commands.py [--count 500] [--backends sqlite,postgresql]
"""

from __future__ import annotations

# bench/threading.py (named by the threading issue) would shadow the stdlib module for
# every script run from this folder: drop the folder from the import path first.
import os
import sys

sys.path[:] = [p for p in sys.path if os.path.abspath(p or ".") != os.path.dirname(os.path.abspath(__file__))]

import argparse
import contextlib
import sys
import tempfile
import time
import uuid
from collections.abc import Iterator
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from sqlalchemy import select

from mailforum.config import Config, DatabaseConfig, SiteConfig, SubscriptionsConfig
from mailforum.core import answers, lists, routing, subscriptions, tokens
from mailforum.db import migrate
from mailforum.db.models import Member, OutboxEntry, utcnow
from mailforum.db.session import Database
from mailforum.mail.parse import parse

DOMAIN = "lists.example.org"
PG = "postgresql+psycopg://postgres@127.0.0.1:5432/"


def command_mail(number: int) -> bytes:
    return (
        f"From: Person {number} <p{number}@example.com>\r\nTo: dev-request@{DOMAIN}\r\n"
        f"Subject: subscribe\r\nMessage-ID: <c{number}@example.com>\r\n"
        "Date: Thu, 26 Nov 2026 10:00:00 +0000\r\n\r\nsubscribe\r\n\r\n-- \r\nPerson\r\n"
    ).encode()


@contextlib.contextmanager
def database(backend: str) -> Iterator[str]:
    if backend == "sqlite":
        with tempfile.TemporaryDirectory() as folder:
            yield f"sqlite:///{folder}/bench.db"
        return
    import psycopg

    name = f"mfbench_{uuid.uuid4().hex[:10]}"
    with psycopg.connect(PG.replace("+psycopg", "") + "postgres", autocommit=True) as conn:
        conn.execute(f'CREATE DATABASE "{name}"')
    try:
        yield PG + name
    finally:
        with psycopg.connect(PG.replace("+psycopg", "") + "postgres", autocommit=True) as conn:
            conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


def run(backend: str, count: int) -> None:
    with database(backend) as url:
        config = Config(
            database=DatabaseConfig(url=url),
            site=SiteConfig(domain=DOMAIN, secret_key="bench-secret-0123456789"),
            # Every sender is distinct, but lift the caps so the benchmark measures work, not refusals.
            subscriptions=SubscriptionsConfig(confirmations_per_day=1000, answers_per_day=1000),
        )
        db = Database(url)
        migrate.upgrade(db)
        with db.session() as session:
            lists.create_list(session, "dev")
        raws = [command_mail(i) for i in range(count)]

        parsed = [parse(raw) for raw in raws]
        start = time.perf_counter()
        for message in parsed:
            answers.should_answer(message, "p@example.com", config)
        print(f"{backend}_should_answer_us: {(time.perf_counter() - start) / count * 1e6:.1f}")

        start = time.perf_counter()
        for raw in raws:
            now = utcnow()
            with db.session() as session:
                message = parse(raw)
                rcpt = (f"dev-request@{DOMAIN}",)
                routing.process(session, config, message, raw, message.from_address, rcpt, None, now, now)
        elapsed = time.perf_counter() - start
        print(f"{backend}_subscribe_mails_per_s: {count / elapsed:.0f}")

        with db.read_session() as session:
            tokens_ = [
                row.payload["reply_to"].split("+confirm-")[1].split("@")[0]
                for row in session.scalars(select(OutboxEntry).order_by(OutboxEntry.id))
            ]
        assert len(tokens_) == count, len(tokens_)
        start = time.perf_counter()
        for token in tokens_:
            with db.session() as session:
                outcome = subscriptions.confirm(session, config, token, utcnow())
                assert outcome.status is subscriptions.Status.DONE
        print(f"{backend}_confirms_per_s: {count / (time.perf_counter() - start):.0f}")

        key = tokens.derive_key(config.site.secret_key)
        with db.read_session() as session:
            members = session.execute(select(Member.id, Member.list_id)).all()
        assert len(members) == count
        links = [
            tokens.sign(key, tokens.UNSUBSCRIBE, (m.id, m.list_id), utcnow().replace(year=2030))
            for m in members
        ]
        start = time.perf_counter()
        for link in links:
            with db.session() as session:
                assert (
                    subscriptions.unsubscribe_by_link(session, config, link, utcnow()).status.value == "done"
                )
        print(f"{backend}_one_click_unsubscribes_per_s: {count / (time.perf_counter() - start):.0f}")
        db.dispose()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--count", type=int, default=500)
    parser.add_argument("--backends", default="sqlite,postgresql")
    args = parser.parse_args()
    for backend in args.backends.split(","):
        try:
            run(backend.strip(), args.count)
        except Exception as exc:  # an unreachable PostgreSQL: say so, go on
            print(f"{backend}_error: {type(exc).__name__}: {str(exc).splitlines()[0][:120]}")


if __name__ == "__main__":
    main()
