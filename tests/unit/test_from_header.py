"""The From: reader (parse._sender) and the archive dates, without a server."""

from __future__ import annotations

import datetime as dt

import pytest

from mailforum.core.archive import archive_date, archive_dates
from mailforum.mail.parse import _sender, clean_text, envelope_date, received_date


@pytest.mark.parametrize(
    ("value", "address", "name"),
    [
        ("ann@example.com", "ann@example.com", ""),
        ("Ann Author <Ann@Example.com>", "ann@example.com", "Ann Author"),
        ('"Author, Ann" <ann@example.com>', "ann@example.com", "Author, Ann"),
        ("Mr. A. Author <ann@example.com> (home)", "ann@example.com", "Mr. A. Author"),
        ("ann@example.com (Ann Author)", "ann@example.com", "Ann Author"),
        ("=?utf-8?q?J=C3=BCrgen?= <j@example.de>", "j@example.de", "Jürgen"),
        ("Jürgen <j@example.de>", "j@example.de", "Jürgen"),
        ('"ann@example.com" <ann@example.com>', "ann@example.com", "ann@example.com"),
        ("<ann@example.com>", "ann@example.com", ""),
        ("Ann <ann@[192.0.2.1]>", "ann@[192.0.2.1]", "Ann"),
        (" Ann\r\n <ann@example.com>", "ann@example.com", "Ann"),
    ],
)
def test_one_honest_mailbox_is_read_as_before(value, address, name):
    assert _sender([value]) == (address, name, "")


@pytest.mark.parametrize(
    ("values", "reason"),
    [
        (["a@example.com, b@example.net"], "more than one address"),
        (["team: a@example.com;"], "a group"),
        (["a@example.com)<b@example.net>"], "unbalanced parenthesis"),
        (["a@example.com <b@example.net>"], "special characters in the display name"),
        (["<a@example.com> b@example.net"], "text after the address"),
        (["<a@example.com> <b@example.net>"], "not one angle address"),
        (['"a@example.com\\" <b@example.net>"'], "not one address"),
        (['"unbalanced <b@example.net>'], "unbalanced quote"),
        (["=?utf-8?q?a=40example=2Ecom?="], "not one address"),
        (["=?utf-8?q?a?=@example.com"], "an encoded-word in the address"),
        ([""], "no address"),
        (["Ann <a@example.com>\x1b"], "unexpected character"),
        (["a@example.com", "b@example.net"], "2 From: fields"),
    ],
)
def test_anything_but_one_mailbox_is_no_sender_with_its_reason(values, reason):
    address, _, problem = _sender(values)
    assert address == "" and reason in problem


@pytest.mark.parametrize(
    "value",
    [
        '"a@example.com" <b@example.net>',
        "=?utf-8?q?a=40example=2Ecom?= <b@example.net>",
        "=?utf-8?b?QW5uIDxhQGV4YW1wbGUuY29tPg==?= <b@example.net>",
        "=?utf-8?q?a=EF=BC=A0example=2Ecom?= <b@example.net>",
        "b@example.net (a@example.com)",
        "Ann (a@example.com) <b@example.net>",
    ],
)
def test_a_name_that_reads_as_another_address_is_suspect_but_names_the_real_mailbox(value):
    address, _, problem = _sender([value])
    assert address == "b@example.net"
    assert problem.startswith("the display name looks like another address (a@example.com")


def test_clean_text_keeps_tab_and_newline_only():
    assert clean_text("a\x1b[1mb\x07\tc\r\nd\re\x0cf\x00g\x9bh") == "a[1mb\tc\nd\ne fgh"


def test_archive_dates_from_line_then_received_then_neighbours():
    utc = dt.UTC
    assert envelope_date(b"From ann@example.com Sat Mar  2 10:30:00 2002") == dt.datetime(
        2002, 3, 2, 10, 30, tzinfo=utc
    )
    assert envelope_date(b"From ann at example.com  Sat Mar  2 10:30:00 2002 +0100") == dt.datetime(
        2002, 3, 2, 9, 30, tzinfo=utc
    )
    assert envelope_date(b"From MAILER-DAEMON") is None
    assert envelope_date(b"From x Sat Mar  2 10:30:00 1902") is None
    received = (
        b"Received: by b; Sun, 3 Mar 2002 09:15:00 +0000\nReceived: by a; Sun, 3 Mar 2002 09:00:00 +0000\n\nx"
    )
    assert received_date(received) == dt.datetime(2002, 3, 3, 9, 15, tzinfo=utc)
    dated = b"From x Sat Mar  2 10:30:00 2002\nDate: Fri, 1 Mar 2002 08:00:00 +0000\n\nx"
    assert archive_date(dated) == dt.datetime(2002, 3, 1, 8, 0, tzinfo=utc)  # the Date first
    undated = b"From -\nSubject: x\n\nx"
    first, second = archive_date(dated), archive_date(received)
    assert archive_dates([undated, dated, undated, received]) == [first, first, first, second]
    assert archive_dates([undated], before=second) == [second]
    assert archive_dates([undated]) == [None]
