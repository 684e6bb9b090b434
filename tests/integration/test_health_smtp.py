"""RELIABILITY S19 (no AUTH to brute-force; credentials never logged) and S10 (our notices capped)."""

from __future__ import annotations

import logging

from sqlalchemy import select

from mailforum.core import notices
from mailforum.db.models import MailingList, OutboxEntry, utcnow
from tests.helpers import RawClient

CREDENTIALS = "AHVzZXIAc2VjcmV0LXBhc3N3b3Jk"  # base64 of "\0user\0secret-password"


def test_auth_is_not_offered_and_attempts_are_refused_without_logging_them(site, server, caplog):
    caplog.set_level(logging.DEBUG)
    client = RawClient(site.config.smtp.port)
    try:
        assert client.banner.startswith("220")
        ehlo = client.cmd("EHLO attacker.example")
        assert ehlo.startswith("250") and "AUTH" not in ehlo.upper()
        for _ in range(6):
            assert client.cmd(f"AUTH PLAIN {CREDENTIALS}")[:1] == "5"
        assert client.cmd("QUIT").startswith("221")
    finally:
        client.close()
    text = "\n".join(r.getMessage() for r in caplog.records)
    assert CREDENTIALS not in text and "secret-password" not in text


def test_our_notices_to_one_address_are_capped_at_ten_a_day(site):
    site.create_list("dev")
    now = utcnow()
    with site.db.session() as session:
        mlist = session.scalars(select(MailingList)).one()
        sent = [
            notices.send(session, site.config, mlist, notices.Notice("Vac@Example.com", "s", "t"), now)
            for _ in range(12)
        ]
        assert notices.send(
            session, site.config, mlist, notices.Notice("mod@x.org", "s", "t"), now, capped=False
        )
    assert sent == [True] * 10 + [False] * 2
    with site.db.read_session() as session:
        assert len(session.scalars(select(OutboxEntry)).all()) == 11
