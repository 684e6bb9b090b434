"""RELIABILITY S25: token parts of our addresses and links never reach a log line."""

from __future__ import annotations

import logging

from mailforum import logsafe


def test_tokens_in_addresses_and_links_are_redacted():
    line = (
        "RCPT TO:<dev-bounces+1-hudvb-jhejpqcnvht4p6zlz5hrri2rpa@lists.example.org> "
        "reply dev+r-7-16-1l2m3n-abcdefghij@x mod dev+mod-3-1-zz-abcdefghijk@x "
        "http://h/lists/dev/enable/2-hudvb-rz5arspk2p57i3qgwva7pfkk2i and dev+watch-12@x"
    )
    out = logsafe.redact(line)
    for secret in ("jhejpqcnvht4p6zlz5hrri2rpa", "abcdefghij", "abcdefghijk", "rz5arspk2p57i3qgwva7pfkk2i"):
        assert secret not in out
    assert "dev+watch-12@x" in out and "dev-bounces+…@lists.example.org" in out


def test_the_filter_rewrites_records_and_drops_body_echo():
    f = logsafe.RedactTokens()
    record = logging.LogRecord(
        "mail.log",
        logging.DEBUG,
        "",
        0,
        "%s >> %r",
        ("peer", b"MAIL FROM:<d-bounces+1-aaaaaaaaaaaa@x>"),
        None,
    )
    assert f.filter(record) and "aaaaaaaaaaaa" not in record.getMessage()
    body = logging.LogRecord("mail.log", logging.DEBUG, "", 0, "DATA readline: %s", (b"secret",), None)
    assert not f.filter(body)
