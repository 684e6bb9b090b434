"""The SMTP/LMTP session: reply codes, limits and hostile clients (RELIABILITY B1–B18, S17, S18).

Every test talks to the real server on a loopback port, with smtplib or with the
byte-exact RawClient, and checks what is stored through the database.
"""

from __future__ import annotations

import contextlib
import smtplib
import time
from collections.abc import Iterator
from dataclasses import replace
from typing import Any

import pytest
from sqlalchemy import func, select

from mailforum.config import Config
from mailforum.db.models import SpoolEntry
from tests.helpers import DOMAIN, RawClient, ServerThread, message, send, wait_for

LIST = f"dev@{DOMAIN}"


@pytest.fixture
def dev(site):
    site.create_list("dev")
    site.add_members("dev", "ann@example.com")
    return site


@contextlib.contextmanager
def smtp_server(site, **smtp: Any) -> Iterator[Config]:
    """A server of the test's own, with these ``[smtp]`` settings changed; its config."""
    config = replace(site.config, smtp=replace(site.config.smtp, **smtp))
    running = ServerThread(config)
    running.start()
    try:
        yield config
    finally:
        running.stop()


def spool_count(site) -> int:
    with site.db.read_session() as session:
        return session.scalar(select(func.count()).select_from(SpoolEntry)) or 0


def session_to_data(client: RawClient, rcpts: list[str] | None = None) -> None:
    assert client.cmd("EHLO client.example").startswith("250")
    assert client.cmd("MAIL FROM:<ann@example.com>").startswith("250")
    for rcpt in rcpts or [LIST]:
        assert client.cmd(f"RCPT TO:<{rcpt}>").startswith("250")
    assert client.cmd("DATA").startswith("354")


def test_250_comes_only_after_the_message_is_committed(dev, server):
    # No waiting: the moment the client has its 250, the raw bytes are in the database.
    raw = message(message_id="<durable@example.com>")
    send(dev.config, raw)
    with dev.db.read_session() as session:
        stored = session.scalars(select(SpoolEntry.raw)).all()
    assert raw in [bytes(r) for r in stored]


def test_unknown_list_and_foreign_domains_are_refused_at_rcpt(dev, server):
    client = RawClient(dev.config.smtp.port)
    client.cmd("EHLO x")
    client.cmd("MAIL FROM:<ann@example.com>")
    assert client.cmd(f"RCPT TO:<nosuch@{DOMAIN}>").startswith("550 5.1.1")
    assert client.cmd("RCPT TO:<someone@gmail.com>").startswith("550 5.7.1")
    # A source route to a foreign mailbox is a relay attempt; to our own list, RFC 5321 §3.6.1
    # says to ignore the route, which aiosmtpd does.
    assert client.cmd("RCPT TO:<@relay.example:someone@gmail.com>").startswith("550 5.7.1")
    assert client.cmd(f"RCPT TO:<dev%other@{DOMAIN}>").startswith("550 5.7.1")
    assert client.cmd(f"RCPT TO:<dev+';DROP TABLE posts;--@{DOMAIN}>")[:3] in ("501", "550")
    assert client.cmd(f"RCPT TO:<dev+nosuchcommand@{DOMAIN}>").startswith("550 5.1.1")
    # The session is still usable after refusals.
    assert client.cmd(f"RCPT TO:<DEV@{DOMAIN.upper()}>").startswith("250")
    client.close()


def test_oversized_message_gets_552_at_mail_and_after_data(site, tmp_path):
    site.create_list("dev")
    with smtp_server(site, max_message_size=4096) as config:
        client = RawClient(config.smtp.port)
        assert "SIZE 4096" in client.cmd("EHLO x")
        assert client.cmd("MAIL FROM:<ann@example.com> SIZE=999999999").startswith("552 5.3.4")
        assert client.cmd("MAIL FROM:<ann@example.com>").startswith("250")
        assert client.cmd(f"RCPT TO:<{LIST}>").startswith("250")
        assert client.cmd("DATA").startswith("354")
        client.send(b"Subject: big\r\n\r\n" + b"x" * 70 + b"\r\n" + (b"y" * 70 + b"\r\n") * 200)
        assert client.cmd(".").startswith("552 5.3.4")
        # Discarded while reading, the session goes on.
        assert client.cmd("NOOP").startswith("250")
        client.close()
        assert spool_count(site) == 0


def test_lmtp_answers_each_recipient(dev, server):
    dev.create_list("other")
    client = RawClient(dev.config.smtp.lmtp_port)
    assert client.cmd("LHLO x").startswith("250")
    assert client.cmd("MAIL FROM:<ann@example.com>").startswith("250")
    assert client.cmd(f"RCPT TO:<{LIST}>").startswith("250")
    assert client.cmd(f"RCPT TO:<nosuch@{DOMAIN}>").startswith("550 5.1.1")
    assert client.cmd(f"RCPT TO:<other@{DOMAIN}>").startswith("250")
    assert client.cmd("DATA").startswith("354")
    client.send(message(message_id="<lmtp@example.com>") + b".\r\n")
    replies = [client.reply(), client.reply()]  # one per accepted recipient (RFC 2033 §4.2)
    assert all(r.startswith("250 2.0.0") for r in replies)
    client.cmd("QUIT")
    wait_for(lambda: "<lmtp@example.com>" in dev.posts_by_id("other"))
    assert "<lmtp@example.com>" in dev.posts_by_id("dev")


def test_recipients_beyond_the_limit_get_452(dev, server):
    client = RawClient(dev.config.smtp.port)
    client.cmd("EHLO x")
    client.cmd("MAIL FROM:<ann@example.com>")
    codes = [client.cmd(f"RCPT TO:<{LIST}>")[:9] for _ in range(101)]
    assert codes[:100] == ["250 2.1.5"] * 100
    assert codes[100] == "452 4.5.3"
    client.close()


def test_header_block_too_large_is_refused(dev, server):
    big = b"X-Filler: " + b"a" * 900 + b"\r\n"
    raw = message(extra="").replace(b"\r\n\r\n", b"\r\n" + big * 120 + b"\r\n", 1)
    with pytest.raises(smtplib.SMTPDataError) as refused:
        send(dev.config, raw)
    assert refused.value.smtp_code == 552
    assert b"5.3.4" in refused.value.smtp_error


def test_too_many_hops_is_a_loop(dev, server):
    hops = "".join(f"Received: from h{i}.example by h{i + 1}.example; Thu, 26 Nov 2026\n" for i in range(101))
    with pytest.raises(smtplib.SMTPDataError) as refused:
        send(dev.config, message(extra=hops))
    assert refused.value.smtp_code == 554
    assert b"5.4.6" in refused.value.smtp_error
    assert spool_count(dev) == 0


def test_smuggled_second_message_stays_one_message(dev, server):
    # CVE-2024-27305 class: a bare-LF "end of data" must not end DATA.
    client = RawClient(dev.config.smtp.port)
    session_to_data(client)
    client.send(
        b"From: ann@example.com\r\nSubject: first\r\nMessage-ID: <smug1@example.com>\r\n\r\ntext\n.\r\n"
        b"MAIL FROM:<ceo@victim.example>\r\nRCPT TO:<dev@lists.example.org>\r\nDATA\r\n"
        b"From: ceo@victim.example\r\n\r\nwire money\r\n.\r\n"
    )
    assert client.reply().startswith("250")
    assert client.cmd("QUIT").startswith("221")
    posts = wait_for(dev.export)
    assert len(posts) == 1
    assert "wire money" in posts[0]["text"]
    assert spool_count(dev) == 1


def test_dot_stuffing_is_undone(dev, server):
    client = RawClient(dev.config.smtp.port)
    session_to_data(client)
    client.send(
        b"From: ann@example.com\r\nMessage-ID: <dots@example.com>\r\n\r\n..\r\n...\r\n..hidden\r\n.\r\n"
    )
    assert client.reply().startswith("250")
    client.close()
    text = wait_for(dev.export)[0]["text"]
    assert text == ".\n..\n.hidden\n"


def test_data_ended_by_bare_lf_dot_is_not_ended_and_hits_the_deadline(site):
    site.create_list("dev")
    with smtp_server(site, data_timeout=1.0) as config:
        client = RawClient(config.smtp.port)
        session_to_data(client)
        client.send(b"Subject: x\r\n\r\nbody\n.\n")
        assert client.closed(timeout=10)
        assert b"421 4.4.2" in client.buffer
        assert spool_count(site) == 0


def test_trickling_sender_is_cut_at_the_data_deadline(site):
    site.create_list("dev")
    with smtp_server(site, data_timeout=1.5, idle_timeout=30) as config:
        client = RawClient(config.smtp.port)
        session_to_data(client)
        started = time.monotonic()
        with contextlib.suppress(OSError):
            client.trickle(b"Subject: slow\r\n\r\n" + b"x" * 100, 0.05)
        assert client.closed(timeout=10)
        assert time.monotonic() - started < 8
        # And a fresh client is still served.
        assert RawClient(config.smtp.port).banner.startswith("220")


def test_long_command_line_gets_500_and_the_session_continues(dev, server):
    client = RawClient(dev.config.smtp.port)
    client.cmd("EHLO x")
    assert client.cmd(b"MAIL FROM:<" + b"a" * 100_000 + b"@example.com>\r\n").startswith("500 5.5.2")
    assert client.cmd("NOOP").startswith("250")
    client.close()


def test_nul_and_eight_bit_in_commands_are_refused(dev, server):
    client = RawClient(dev.config.smtp.port)
    # NUL or a stray CR in the argument of any command, not only MAIL and RCPT (B9, S17).
    for hostile in (b"EHLO cli\x00ent", b"HELO cli\rent", b"VRFY dev\x00", b"NOOP \x00"):
        assert client.cmd(hostile + b"\r\n").startswith("501 5.5.2"), hostile
    client.cmd("EHLO x")
    assert client.cmd(b"MAIL FROM:<ann\x00@example.com>\r\n")[:1] == "5"
    assert client.cmd(b"MAIL FROM:<ann\r@example.com>\r\n")[:1] == "5"
    assert client.cmd("MAIL FROM:<änn@example.com>\r\n".encode()).startswith("500")
    assert client.cmd("MAIL FROM:<ann@example.com>").startswith("250")
    assert client.cmd(f"RCPT TO:<{LIST}\x00>".encode() + b"\r\n").startswith("501 5.5.2")
    assert client.cmd(f"RCPT TO:<{LIST}> \x00".encode() + b"\r\n").startswith("501 5.5.2")
    assert client.cmd("NOOP").startswith("250")
    client.close()
    assert spool_count(dev) == 0


def test_nul_bytes_in_the_message_are_stored_raw_and_removed_from_text(dev, server):
    raw = message(message_id="<nul@example.com>", body="before\x00after\n")
    send(dev.config, raw)
    post = wait_for(dev.export)[0]
    assert post["text"] == "beforeafter\n"
    with dev.db.read_session() as session:
        assert raw in [bytes(r) for r in session.scalars(select(SpoolEntry.raw))]


def test_commands_out_of_order_get_503(dev, server):
    client = RawClient(dev.config.smtp.port)
    client.cmd("EHLO x")
    assert client.cmd("DATA").startswith("503 5.5.1")
    assert client.cmd(f"RCPT TO:<{LIST}>").startswith("503 5.5.1")
    client.cmd("MAIL FROM:<ann@example.com>")
    assert client.cmd("MAIL FROM:<ann@example.com>").startswith("503 5.5.1")
    client.close()


def test_repeated_noop_is_cut_off(dev, server):
    client = RawClient(dev.config.smtp.port)
    replies = [client.cmd("NOOP") for _ in range(21)]
    assert all(r.startswith("250") for r in replies[:20])
    assert replies[20].startswith("421 4.7.0")
    assert client.closed()


def test_session_closes_after_the_hard_error_limit(dev, server):
    # An HTTP client on the SMTP port (B16) is a stream of errors.
    client = RawClient(dev.config.smtp.port)
    client.send(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n")
    for _ in range(25):
        try:
            client.send(b"POST / HTTP/1.1\r\n")
        except OSError:
            break
    assert client.closed()
    # Closed by our hard error limit (421) or by aiosmtpd's junk-command limit (502), whichever first.
    assert b"421 4.7.0" in client.buffer or b"502 5.5.1" in client.buffer
    assert RawClient(dev.config.smtp.port).banner.startswith("220")


def test_auth_is_not_offered(dev, server):
    client = RawClient(dev.config.smtp.port)
    assert "AUTH" not in client.cmd("EHLO x")
    assert client.cmd("AUTH PLAIN AGFubgBzZWNyZXQ=")[:1] == "5"
    client.close()


def test_connections_per_ip_are_capped(site):
    with smtp_server(site, max_connections_per_ip=3) as config:
        held = [RawClient(config.smtp.port) for _ in range(3)]
        assert all(c.banner.startswith("220") for c in held)
        extra = RawClient(config.smtp.port)
        assert extra.banner.startswith("421 4.7.0")
        assert extra.closed()
        held[0].cmd("QUIT")
        wait_for(lambda: RawClient(config.smtp.port).banner.startswith("220"))
        for c in held:
            c.close()


def test_connection_rate_per_ip_is_capped(site):
    with smtp_server(site, max_connection_rate_per_ip=5) as config:
        banners = []
        for _ in range(6):
            client = RawClient(config.smtp.port)
            banners.append(client.banner[:9])
            if client.banner.startswith("220"):
                client.cmd("QUIT")
            client.close()
        assert banners[:5] == ["220 lists"] * 5
        assert banners[5] == "421 4.7.0"


def test_reset_in_the_middle_of_data_stores_nothing(dev, server):
    client = RawClient(dev.config.smtp.port)
    session_to_data(client)
    client.send(b"Subject: x\r\n\r\n" + b"y" * 500_000)
    client.reset()
    time.sleep(0.3)
    assert spool_count(dev) == 0
    assert RawClient(dev.config.smtp.port).banner.startswith("220")


def test_idle_client_is_closed_at_the_idle_timeout(site):
    with smtp_server(site, idle_timeout=0.5) as config:
        client = RawClient(config.smtp.port)
        client.cmd("EHLO x")
        assert client.closed(timeout=5)
        assert b"421 4.4.2" in client.buffer


def test_total_connections_are_capped(site):
    with smtp_server(site, max_connections=2, max_connections_per_ip=10) as config:
        held = [RawClient(config.smtp.port) for _ in range(2)]
        refused = RawClient(config.smtp.port)
        assert refused.banner.startswith("421 4.7.0")
        for c in held:
            c.close()


def test_announced_sizes_beyond_the_budget_are_deferred(site):
    site.create_list("dev")
    with smtp_server(site, max_pending_bytes=3_000_000) as config:
        first, second = RawClient(config.smtp.port), RawClient(config.smtp.port)
        for c in (first, second):
            c.cmd("EHLO x")
        assert first.cmd("MAIL FROM:<a@example.com> SIZE=2000000").startswith("250")
        assert second.cmd("MAIL FROM:<b@example.com> SIZE=2000000").startswith("452 4.3.1")
        assert first.cmd("RSET").startswith("250")  # releases the reservation
        assert second.cmd("MAIL FROM:<b@example.com> SIZE=2000000").startswith("250")


# Pipelining (RFC 2920): Postfix's smtpd_forbid_unauth_pipelining. A command whose reply
# the client must wait for, followed by more input, is a protocol synchronization error.

OUT_OF_SYNC = "554 5.5.0 Error: SMTP protocol synchronization"
BODY = message(message_id="<early@example.com>") + b".\r\n"


def assert_refused_out_of_sync(client: RawClient, site, replies_before: int = 0) -> None:
    for _ in range(replies_before):
        assert client.reply()[:1] in "23"
    assert client.reply() == OUT_OF_SYNC
    assert client.closed()
    assert client.buffer == b""  # nothing the client sent after the offending command was run
    assert spool_count(site) == 0


@pytest.mark.parametrize("lmtp", [False, True], ids=["smtp", "lmtp"])
def test_body_sent_before_354_is_refused_and_not_stored(dev, server, lmtp):
    port = dev.config.smtp.lmtp_port if lmtp else dev.config.smtp.port
    client = RawClient(port)
    assert client.cmd("LHLO x" if lmtp else "EHLO x").startswith("250")
    assert client.cmd("MAIL FROM:<ann@example.com>").startswith("250")
    assert client.cmd(f"RCPT TO:<{LIST}>").startswith("250")
    client.send(b"DATA\r\n" + BODY)
    assert_refused_out_of_sync(client, dev)


@pytest.mark.parametrize(
    ("lmtp", "greeting", "command"),
    [
        (False, "EHLO x", "EHLO x"),
        (False, "EHLO x", "NOOP"),
        (False, "EHLO x", "VRFY ann"),
        (False, "EHLO x", "EXPN dev"),
        (False, "EHLO x", "QUIT"),
        (False, "EHLO x", "HELO x"),
        (True, "LHLO x", "LHLO x"),
        (True, "LHLO x", "QUIT"),
    ],
)
def test_commands_pipelined_after_a_group_ender_are_refused(dev, server, lmtp, greeting, command):
    port = dev.config.smtp.lmtp_port if lmtp else dev.config.smtp.port
    client = RawClient(port)
    assert client.cmd(greeting).startswith("250")
    client.send(f"{command}\r\nMAIL FROM:<ann@example.com>\r\nRCPT TO:<{LIST}>\r\nDATA\r\n".encode() + BODY)
    assert_refused_out_of_sync(client, dev)


@pytest.mark.parametrize("greeting", ["EHLO x", "HELO x"])
def test_a_greeting_pipelined_with_the_transaction_is_refused(dev, server, greeting):
    client = RawClient(dev.config.smtp.port)
    client.send(f"{greeting}\r\nMAIL FROM:<ann@example.com>\r\nRCPT TO:<{LIST}>\r\n".encode())
    assert_refused_out_of_sync(client, dev)


def test_a_helo_client_was_not_offered_pipelining(dev, server):
    client = RawClient(dev.config.smtp.port)
    assert client.cmd("HELO x").startswith("250")
    client.send(f"MAIL FROM:<ann@example.com>\r\nRCPT TO:<{LIST}>\r\n".encode())
    assert_refused_out_of_sync(client, dev)


@pytest.mark.parametrize("lmtp", [False, True], ids=["smtp", "lmtp"])
def test_rfc_2920_pipelining_still_works(dev, server, lmtp):
    port = dev.config.smtp.lmtp_port if lmtp else dev.config.smtp.port
    client = RawClient(port)
    assert "PIPELINING" in client.cmd("LHLO x" if lmtp else "EHLO x")
    dev.create_list("other")
    group = ["RSET", "MAIL FROM:<ann@example.com>", f"RCPT TO:<{LIST}>", f"RCPT TO:<other@{DOMAIN}>", "DATA"]
    client.send("".join(f"{command}\r\n" for command in group).encode())
    assert [client.reply()[:3] for _ in range(5)] == ["250", "250", "250", "250", "354"]
    client.send(BODY + b"QUIT\r\n")  # the content and what follows it are one group (RFC 2920 §3.2)
    replies = [client.reply()[:3] for _ in range(3 if lmtp else 2)]
    assert replies == (["250", "250", "221"] if lmtp else ["250", "221"])
    assert spool_count(dev) == 1
