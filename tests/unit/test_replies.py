import sqlite3

import pytest

from mailforum.runners.ingest import classify_storage_error, enhance


@pytest.mark.parametrize(
    ("stock", "ours"),
    [
        ("552 Error: Too much mail data", "552 5.3.4 Message too big for this list"),
        (
            "552 Error: message size exceeds fixed maximum message size",
            "552 5.3.4 Message too big for this list",
        ),
        ("503 Error: need MAIL command", "503 5.5.1 need MAIL command"),
        ("500 Command line too long", "500 5.5.2 Command line too long"),
        ('500 Error: command "FOO" not recognized', '500 5.5.2 command "FOO" not recognized'),
        ("550 5.1.1 No such list", "550 5.1.1 No such list"),  # already enhanced: untouched
        ("250 HELP", "250 HELP"),  # the last EHLO line is a keyword, not a reply text
        ("250-SIZE 10", "250-SIZE 10"),
        ("354 End data with <CR><LF>.<CR><LF>", "354 End data with <CR><LF>.<CR><LF>"),
    ],
)
def test_every_refusal_gets_an_enhanced_code(stock, ours):
    assert enhance(stock) == ours


@pytest.mark.parametrize(
    ("error", "code", "fatal", "whole"),
    [
        (sqlite3.OperationalError("database or disk is full"), "452 4.3.1", False, True),
        (sqlite3.OperationalError("disk I/O error"), "451 4.3.0", True, True),
        (sqlite3.OperationalError("database is locked"), "451 4.3.0", False, True),
        (ValueError("a value one row could not store"), "451 4.3.0", False, False),
    ],
)
def test_storage_errors_are_temporary_never_5xx(error, code, fatal, whole):
    failure = classify_storage_error(error)
    assert failure.reply.startswith(code)
    assert (failure.fatal, failure.whole_database) == (fatal, whole)
