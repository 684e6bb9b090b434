"""RELIABILITY S25: with DEBUG logging, no VERP, enable or moderation token reaches the log."""

from __future__ import annotations

import logging
import re

from sqlalchemy import select

from mailforum.core import moderation
from mailforum.db.models import MailingList, Member, OutboxEntry, OutboxKind
from tests.helpers import DOMAIN, message, send, wait_for
from tests.integration.outbound_helpers import settled
from tests.integration.test_bounces import DEAD, dsn


def test_no_token_in_debug_logs(site, relay, server, caplog):
    caplog.set_level(logging.DEBUG)
    site.create_list("dev")
    site.add_members("dev", "ann@example.com", DEAD)
    with site.db.session() as session:
        moderation.add_moderator(session, session.scalars(select(MailingList)).one(), "mod@example.com")
    send(site.config, message("post 1", "<p1@example.com>"), [f"dev@{DOMAIN}"], "ann@example.com")
    wait_for(lambda: relay.messages_for(DEAD) and settled(site))
    verp = relay.messages_for(DEAD)[0].mail_from
    for _ in range(5):
        send(site.config, dsn(verp, "<p1@example.com>"), [verp], "")
    send(
        site.config,
        message("Outsider", "<o1@example.com>", sender="out@example.org"),
        [f"dev@{DOMAIN}"],
        "o@x",
    )

    def notices() -> list[OutboxEntry]:
        with site.db.read_session() as session:
            return list(
                session.scalars(select(OutboxEntry).where(OutboxEntry.kind == OutboxKind.NOTICE.value))
            )

    wait_for(lambda: len(notices()) == 2 and settled(site))
    approve = next(n for n in notices() if n.recipient == "mod@example.com").payload["reply_to"]
    send(
        site.config,
        message("Re: held", "<r1@example.com>", sender="mod@example.com"),
        [approve],
        "mod@example.com",
    )
    wait_for(lambda: relay.messages_for("ann@example.com") and settled(site))
    with site.db.read_session() as session:
        assert (
            session.scalars(select(Member).where(Member.address == DEAD)).one().delivery_disabled_at
            is not None
        )
    secrets = {verp.split("+", 1)[1].split("@")[0], approve.split("mod-", 1)[1].split("@")[0]}
    warning = next(n for n in notices() if n.recipient == DEAD).payload["text"]
    secrets.add(re.search(r"enable-(\S+)@", warning).group(1))
    # The MAC part is what must stay secret; ids and expiry alone are harmless.
    macs = {s.rsplit("-", 1)[1] for s in secrets}
    text = "\n".join(r.getMessage() for r in caplog.records)
    assert len(caplog.records) > 10
    leaked = [m for m in macs if m in text or m.upper() in text]
    assert not leaked, [line for line in text.splitlines() if any(m in line for m in leaked)][:5]
