#!/usr/bin/env python3
"""Bounce processing benchmark (issue 8): VERP bounces scored per second, forged ones ignored per second.

Stores one post to ``--members`` members (SQLite in a temporary folder), marks the
copies sent, then processes one RFC 3464 DSN per copy through ``routing.process``
(flufl.bounce parsing, VERP token check, the outbox row and member lookups, the
score update; one transaction per bounce, as the spool processor does for a
message tried before), and as many forged DSNs without a VERP token. Needs nothing
but the package. Prints ``name: value`` lines. Usage:

    .venv/bin/python bench/bounces.py [--members 2000]
"""

from __future__ import annotations

# bench/threading.py (named by the threading issue) would shadow the stdlib module for
# every script run from this folder: drop the folder from the import path first.
import os
import sys

sys.path[:] = [p for p in sys.path if os.path.abspath(p or ".") != os.path.dirname(os.path.abspath(__file__))]

import argparse
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from sqlalchemy import select, update

from mailforum.config import Config, DatabaseConfig, SiteConfig
from mailforum.core import copies, lists, routing
from mailforum.db import migrate, outbox
from mailforum.db.models import DeliveryMode, OutboxEntry, OutboxState, utcnow
from mailforum.db.session import Database
from mailforum.mail.parse import parse
from mailforum.render import Renderer

DOMAIN = "lists.example.org"


def dsn(to: str, rcpt: str, original: str) -> bytes:
    return (
        f"From: MAILER-DAEMON@mx.example.net\r\nTo: {to}\r\nSubject: Undelivered Mail\r\n"
        "MIME-Version: 1.0\r\n"
        'Content-Type: multipart/report; report-type=delivery-status; boundary="B"\r\n\r\n'
        "--B\r\nContent-Type: text/plain\r\n\r\nNot delivered.\r\n"
        "--B\r\nContent-Type: message/delivery-status\r\n\r\nReporting-MTA: dns; mx.example.net\r\n\r\n"
        f"Final-Recipient: rfc822; {rcpt}\r\nAction: failed\r\nStatus: 5.1.1\r\n\r\n"
        f"--B\r\nContent-Type: text/rfc822-headers\r\n\r\nMessage-ID: {original}\r\n\r\n--B--\r\n"
    ).encode()


def run(db: Database, config: Config, raws: list[tuple[str, bytes]]) -> float:
    start = time.perf_counter()
    for rcpt, raw in raws:
        parsed = parse(raw)
        now = utcnow()
        with db.session() as session:
            routing.process(session, config, parsed, raw, "", (rcpt,), None, now, now)
    return time.perf_counter() - start


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--members", type=int, default=2000)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as folder:
        config = Config(
            database=DatabaseConfig(url=f"sqlite:///{folder}/bench.db"),
            site=SiteConfig(domain=DOMAIN, secret_key="bench-secret-0123456789"),
        )
        db = Database(config.database.url)
        migrate.upgrade(db)
        with db.session() as session:
            mlist = lists.create_list(session, "dev")
            addresses = [lists.check_address(f"m{i}@example.com") for i in range(args.members)]
            lists.add_members(session, mlist, addresses, DeliveryMode.ALL, utcnow())
        raw = b"From: m0@example.com\r\nSubject: hello\r\nMessage-ID: <b1@example.com>\r\n\r\nHi.\r\n"
        now = utcnow()
        with db.session() as session:
            routing.process(
                session, config, parse(raw), raw, "m0@example.com", (f"dev@{DOMAIN}",), None, now, now
            )
            session.execute(update(OutboxEntry).values(state=OutboxState.SENT.value))
        composer = copies.Composer(config, Renderer(None))
        with db.read_session() as session:
            rows = session.scalars(select(OutboxEntry).order_by(OutboxEntry.id)).all()
            claimed = [
                outbox.ClaimedCopy(
                    r.id, r.kind, r.list_id, r.post_id, r.member_id, r.recipient, r.message_id, {}, 1, now
                )
                for r in rows
            ]
        verp = [(composer.verp("dev", c, now), c.recipient) for c in claimed]
        real = [(to, dsn(to, rcpt, "<b1@example.com>")) for to, rcpt in verp]
        forged = [(f"dev-bounces@{DOMAIN}", dsn(f"dev-bounces@{DOMAIN}", rcpt, "<x@y>")) for _, rcpt in verp]
        real_s = run(db, config, real)
        forged_s = run(db, config, forged)
        db.dispose()
    print(f"bounces: {len(real)}")
    print(f"verp_bounces_per_second: {len(real) / real_s:.0f}")
    print(f"forged_bounces_per_second: {len(forged) / forged_s:.0f}")


if __name__ == "__main__":
    main()
