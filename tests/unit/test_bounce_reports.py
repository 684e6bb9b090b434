"""Bounce reports of several MTAs, read with flufl.bounce (fixtures in tests/messages/bounces/)."""

from __future__ import annotations

from pathlib import Path

import pytest

from mailforum.core.authentication import strip_forged
from mailforum.core.bounces import HARD, SOFT, read_report

BOUNCES = Path(__file__).resolve().parent.parent / "messages" / "bounces"


def load(name: str) -> bytes:
    return (BOUNCES / name).read_bytes().replace(b"\r\n", b"\n").replace(b"\n", b"\r\n")


@pytest.mark.parametrize(
    ("name", "address", "kind", "quoted"),
    [
        ("postfix.eml", "dead@example.com", HARD, "<orig-1@example.com>"),
        ("exim.eml", "gone@example.com", HARD, "<orig-2@example.com>"),
        ("exchange.eml", "former.employee@corp.example.com", HARD, "<orig-3@example.com>"),
        ("gmail.eml", "nobody.here@gmail.example", HARD, "<orig-4@example.com>"),
        ("delayed.eml", "slow@example.com", SOFT, "<orig-5@example.com>"),
        ("qmail.eml", "olduser@qmail.example", HARD, "<orig-6@example.com>"),
    ],
)
def test_each_format_names_the_failed_address_its_kind_and_the_original(name, address, kind, quoted):
    report = read_report(load(name))
    assert report.kind == kind
    assert address in (report.hard if kind == HARD else report.soft)
    assert quoted in report.quoted_ids


def test_malformed_reports_never_raise():
    # RELIABILITY B47: multipart/report without message/delivery-status; Action: error; garbage.
    assert read_report(load("no-delivery-status.eml")).kind is None
    assert read_report(load("action-error.eml")).kind == HARD  # counted only with VERP evidence
    for raw in (
        b"",
        b"\x00\xff garbage",
        b"Content-Type: multipart/report; boundary=\r\n\r\n--\r\n",
        b"x" * 5000,
    ):
        assert read_report(raw).kind is None


def test_forged_authentication_results_claiming_our_id_are_stripped_the_topmost_stays():
    raw = (
        b"Authentication-Results: mx.ours.example; dmarc=fail header.from=example.com\r\n"
        b"Received: from evil.example\r\n"
        b"Authentication-Results: mx.ours.example;\r\n\tdmarc=pass header.from=example.com\r\n"
        b"Authentication-Results: other.example; spf=pass\r\n"
        b"From: live@example.com\r\n\r\nAuthentication-Results: mx.ours.example; in the body stays\r\n"
    )
    out = strip_forged(raw, "mx.ours.example")
    assert out.count(b"dmarc=pass") == 0 and b"dmarc=fail" in out
    assert b"other.example; spf=pass" in out and b"Received: from evil.example" in out
    assert out.endswith(b"\r\n\r\nAuthentication-Results: mx.ours.example; in the body stays\r\n")
    assert strip_forged(raw, "") == raw
