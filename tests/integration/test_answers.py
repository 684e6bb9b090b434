"""Automatic answers (core.answers): when we stay silent, the daily cap, and the message we build.

RELIABILITY I6 (never answer machines; at most 10 answers per address per day) and I7
(Auto-Submitted, loop marker, List-Id; no CR/LF from input in any header).
"""

from __future__ import annotations

import datetime as dt
import email
import email.policy

import pytest
from sqlalchemy import select

from mailforum.core import answers
from mailforum.core.copies import Composer
from mailforum.core.lists import get_list
from mailforum.db import outbox
from mailforum.db.models import OutboxEntry, OutboxKind, utcnow
from mailforum.mail.parse import parse
from mailforum.render import Renderer
from tests.helpers import DOMAIN, message
from tests.integration.outbound_helpers import deliver, rows

NOW = dt.datetime(2026, 11, 26, 12, 0, tzinfo=dt.UTC)


def _parsed(extra: str = "", sender: str = "Ann <ann@example.com>", subject: str = "help"):
    return parse(message(subject=subject, sender=sender, to=f"dev-request@{DOMAIN}", extra=extra))


# --- should_answer: the silence table ----------------------------------------------------------

SILENT = [
    ("null sender", "", "", "", "Ann <ann@example.com>"),
    ("auto-submitted", "Auto-Submitted: auto-replied", "", "ann@example.com", "Ann <ann@example.com>"),
    ("auto-generated", "Auto-Submitted: auto-generated", "", "x@example.com", "x@example.com"),
    ("precedence bulk", "Precedence: bulk", "", "x@example.com", "x@example.com"),
    ("precedence junk", "Precedence: junk", "", "x@example.com", "x@example.com"),
    ("precedence list", "Precedence: list", "", "x@example.com", "x@example.com"),
    ("list-id", "List-Id: <other.example.net>", "", "x@example.com", "x@example.com"),
    ("list-unsubscribe", "List-Unsubscribe: <mailto:x@example.net>", "", "x@example.com", "x@example.com"),
    ("our loop marker", f"X-Loop: dev@{DOMAIN}", "", "x@example.com", "x@example.com"),
    ("from ourselves", "", "", f"dev-bounces@{DOMAIN}", f"dev-request@{DOMAIN}"),
    ("x-autoreply", "X-Autoreply: yes", "", "x@example.com", "x@example.com"),
    ("vacation subject", "", "Out of Office: back Monday", "x@example.com", "x@example.com"),
    ("automatic reply", "", "Automatic reply: help", "x@example.com", "x@example.com"),
    ("mailer-daemon", "", "", "mailer-daemon@example.com", "MAILER-DAEMON@example.com"),
    ("dsn", "Content-Type: multipart/report; report-type=delivery-status; boundary=b", "", "x@example.com",
     "x@example.com"),
]  # fmt: skip


@pytest.mark.parametrize(
    ("case", "extra", "subject", "mail_from", "sender"), SILENT, ids=[c[0] for c in SILENT]
)
def test_machines_are_never_answered(case, extra, subject, mail_from, sender):
    from tests.helpers import make_config

    config = make_config("sqlite:///unused.db")
    parsed = _parsed(extra, sender, subject or "help")
    assert answers.should_answer(parsed, mail_from, config) is not None, case


def test_a_person_is_answered():
    from tests.helpers import make_config

    config = make_config("sqlite:///unused.db")
    assert answers.should_answer(_parsed("Auto-Submitted: no"), "ann@example.com", config) is None
    assert answers.should_answer(_parsed(), "ann@example.com", config) is None


def test_no_from_is_not_answered():
    from tests.helpers import make_config

    config = make_config("sqlite:///unused.db")
    raw = f"To: dev-request@{DOMAIN}\r\nSubject: help\r\nMessage-ID: <x@y>\r\n\r\nhelp\r\n".encode()
    assert answers.should_answer(parse(raw), "ann@example.com", config) is not None


# --- answer: one row, capped -------------------------------------------------------------------


def _answer(site, to="ann@example.com", now=NOW, list_name="dev", **kw):
    context = kw.pop("context", {"subject": "Your request", "body": "Done."})
    with site.db.session() as session:
        mlist = get_list(session, list_name)
        return answers.answer(session, site.config, mlist, to, "command/message", context, now, **kw)


def test_answer_enqueues_one_notice_row(site):
    site.create_list("dev")
    assert _answer(site, "Ann@Example.com", in_reply_to="<m1@example.com>")
    [row] = rows(site)
    assert row.kind == OutboxKind.NOTICE.value
    assert row.recipient == "ann@example.com"
    assert row.payload["subject"] == "Your request"
    assert "Done." in row.payload["text"] and "Done." in row.payload["html"]
    assert row.payload["in_reply_to"] == "<m1@example.com>"


def test_at_most_ten_answers_per_address_per_day_across_lists(site):
    site.create_list("dev")
    site.create_list("ops")
    sent = [
        _answer(site, list_name="dev" if i % 2 else "ops", now=NOW + dt.timedelta(minutes=i))
        for i in range(12)
    ]
    assert sent == [True] * 10 + [False] * 2
    assert _answer(site, "bob@example.com")  # another address has its own count
    assert _answer(site, capped=False)  # moderators and operators are not capped
    assert _answer(site, now=NOW + dt.timedelta(hours=25))  # a day later the window has moved on
    with site.db.read_session() as session:
        count = len(
            list(session.scalars(select(OutboxEntry.id).where(OutboxEntry.recipient == "ann@example.com")))
        )
    assert count == 12


def test_answers_to_our_own_addresses_or_bad_addresses_are_dropped(site):
    site.create_list("dev")
    assert not _answer(site, f"dev@{DOMAIN}")
    assert not _answer(site, "ann@example.com\r\nBcc: evil@example.net")
    assert not _answer(site, "not an address")
    assert rows(site) == []


# --- the message the delivery worker builds ------------------------------------------------------


def _build(site, row_id=None):
    composer = Composer(site.config, Renderer())
    with site.db.session() as session:
        claimed = outbox.claim(session, NOW, 10, dt.timedelta(seconds=60), "test")
    with site.db.read_session() as session:
        composer.load(session, claimed)
    built = [composer.compose(row, NOW) for row in claimed]
    assert all(not isinstance(b, str) for b in built), built
    return built


def test_the_answer_is_multipart_auto_replied_and_parses_strictly(site):
    site.create_list("dev")
    assert _answer(
        site,
        in_reply_to="<m1@example.com>",
        context={"subject": "Hi", "body": "<b>x</b>", "reply_to": f"dev+confirm-abc@{DOMAIN}"},
    )
    [copy] = _build(site)
    msg = email.message_from_bytes(copy.build(), policy=email.policy.strict)
    assert msg["Auto-Submitted"] == "auto-replied"
    assert msg["X-Loop"] == f"dev@{DOMAIN}"
    assert f"<dev.{DOMAIN}>" in msg["List-Id"]
    assert msg["From"].addresses[0].addr_spec == f"dev-request@{DOMAIN}"
    assert msg["To"].addresses[0].addr_spec == "ann@example.com"
    assert msg["Reply-To"].addresses[0].addr_spec == f"dev+confirm-abc@{DOMAIN}"
    assert msg["In-Reply-To"] == "<m1@example.com>"
    assert msg["Message-ID"].endswith(f"@{DOMAIN}>")
    assert msg.get_content_type() == "multipart/alternative"
    assert "&lt;b&gt;x&lt;/b&gt;" in msg.get_body(("html",)).get_content()
    assert copy.sender.startswith("dev-bounces+")
    for line in copy.build().split(b"\r\n\r\n")[0].split(b"\r\n"):
        assert b"\r" not in line and b"\n" not in line and b"\0" not in line


def test_owner_notices_come_from_the_owner_address(site):
    site.create_list("dev")
    assert _answer(
        site, "mod@example.com", capped=False, context={"subject": "Held", "body": "x", "sender": "owner"}
    )
    [copy] = _build(site)
    msg = email.message_from_bytes(copy.build(), policy=email.policy.strict)
    assert msg["From"].addresses[0].addr_spec == f"dev-owner@{DOMAIN}"


def test_no_cr_lf_from_input_reaches_a_header(site):
    site.create_list("dev")
    evil = "Hello\r\nBcc: victim@example.net\r\n=?utf-8?b?DQpCY2M6IHZAZXhhbXBsZS5uZXQ=?="
    assert _answer(site, in_reply_to="<a@b>\r\nBcc: x@example.net", context={"subject": evil, "body": "x"})
    [copy] = _build(site)
    msg = email.message_from_bytes(copy.build(), policy=email.policy.strict)
    assert msg["Bcc"] is None
    assert "\n" not in str(msg["Subject"]) and "\r" not in str(msg["Subject"])
    head = copy.build().split(b"\r\n\r\n")[0]
    assert b"\nBcc" not in head


def test_answers_travel_through_the_real_relay(site, sink):
    from dataclasses import replace

    site.create_list("dev")
    assert _answer(site, now=utcnow())
    config = replace(site.config, relay=replace(site.config.relay, port=sink.port))
    deliver(config, site.db)
    [transaction] = sink.transactions
    assert transaction.rcpt_tos == ["ann@example.com"]
    msg = email.message_from_bytes(transaction.data, policy=email.policy.default)
    assert msg["Subject"] == "Your request"
    assert "Done." in msg.get_body(("plain",)).get_content()
