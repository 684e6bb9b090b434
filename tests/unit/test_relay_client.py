"""The relay client's DATA payload and envelope: the same bytes smtplib and aiosmtplib would send."""

from __future__ import annotations

import re
import smtplib

import pytest

from mailforum.runners.relay_client import _quoted, wire_data


def reference(message: bytes) -> bytes:
    """What both libraries do to every message: CRLF line ends, dot-stuffing, the final dot."""
    message = re.sub(rb"\r\n|\r|\n", b"\r\n", message)
    message = re.sub(rb"(?m)^\.", b"..", message)
    if not message.endswith(b"\r\n"):
        message += b"\r\n"
    return message + b".\r\n"


@pytest.mark.parametrize(
    "message",
    [
        b"Subject: plain\r\n\r\nA canonical body.\r\n",
        b"Subject: no final line end\r\n\r\nbody",
        b"Subject: bare LF\n\nline one\nline two\n",
        b"Subject: bare CR\r\rline\rmore\r",
        b"Subject: mixed\r\n\r\none\ntwo\rthree\r\n\r\r\n",
        b".Subject: a leading dot\r\n\r\nx\r\n",
        b"Subject: dots\r\n\r\n.\r\n..\r\n.hidden\r\nend.\r\n",
        b"Subject: lone dot line with bare LF\n\n.\n",
        b"Subject: CR before a dot\r\n\r\nx\r.y\r\n",
        b"",
    ],
)
def test_wire_data_matches_the_libraries(message: bytes) -> None:
    assert wire_data(message) == reference(message)


def test_a_canonical_message_is_sent_as_it_is() -> None:
    body = b"Subject: t\r\n\r\n" + b"x" * 74 + b"\r\n"
    assert wire_data(body) == body + b".\r\n"


@pytest.mark.parametrize(
    "address",
    [
        "",
        "a@b.c",
        "dev-bounces+1-abc-defghijklmnop@lists.example.org",
        "x.y+z@ex-ample.net",
        "o'neil/b=c@x.org",
        "a..b@c",
        '"quoted local"@b',
        "a(comment)@c",
        "<a@b>",
        "a@b@c",
        "a@[192.0.2.1]",
        "no-at-sign",
    ],
)
def test_envelope_addresses_are_quoted_as_smtplib_quotes_them(address: str) -> None:
    """The shortcut for a bare addr-spec gives what smtplib.quoteaddr gives for every address."""
    assert _quoted(address) == smtplib.quoteaddr(address)
