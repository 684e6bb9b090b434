"""Signed tokens: round trip, expiry, purpose binding, tampering, case, constant-time comparison."""

from __future__ import annotations

import datetime as dt
import hmac

import pytest

from mailforum.core import tokens
from mailforum.errors import MailforumError

KEY = tokens.derive_key("a-secret")
NOW = dt.datetime(2026, 11, 26, 12, 0, tzinfo=dt.UTC)
LATER = NOW + dt.timedelta(days=365)


def test_round_trip_and_alphabet():
    token = tokens.sign(KEY, tokens.REPLY, (7, 123456789), LATER)
    assert set(token) <= set("abcdefghijklmnopqrstuvwxyz0123456789-")
    assert tokens.verify(KEY, tokens.REPLY, token, NOW, fields=2) == (7, 123456789)
    assert tokens.verify(KEY, tokens.REPLY, token.upper(), NOW, fields=2) == (7, 123456789)  # MTAs fold case


def test_mac_is_at_least_128_bits():
    mac = tokens.sign(KEY, tokens.VERP, (1,), LATER).rsplit("-", 1)[1]
    assert len(mac) * 5 >= 128


@pytest.mark.parametrize(
    "mangle",
    [
        lambda t: t[:-1] + ("a" if t[-1] != "a" else "b"),  # forged MAC
        lambda t: "8" + t[1:],  # another member
        lambda t: t.replace("-", "", 1),  # fewer fields
        lambda t: "",
        lambda t: "-" * 5,
        lambda t: "zz-" + t,
        lambda t: t + "-" + "a" * 300,
    ],
)
def test_tampered_tokens_are_refused(mangle):
    token = tokens.sign(KEY, tokens.REPLY, (7, 42), LATER)
    with pytest.raises(tokens.InvalidToken):
        tokens.verify(KEY, tokens.REPLY, mangle(token), NOW, fields=2)


def test_purpose_key_and_expiry_bind_the_token():
    token = tokens.sign(KEY, tokens.REPLY, (7, 42), NOW + dt.timedelta(minutes=5))
    with pytest.raises(tokens.InvalidToken):
        tokens.verify(KEY, "unsubscribe", token, NOW, fields=2)
    with pytest.raises(tokens.InvalidToken):
        tokens.verify(tokens.derive_key("another"), tokens.REPLY, token, NOW, fields=2)
    with pytest.raises(tokens.InvalidToken):
        tokens.verify(KEY, tokens.REPLY, token, NOW + dt.timedelta(minutes=6), fields=2)


def test_empty_secret_is_refused():
    with pytest.raises(MailforumError, match="secret_key"):
        tokens.derive_key("")


def test_comparison_is_constant_time(monkeypatch):
    """The MAC check goes through hmac.compare_digest (Mailman CVE-2021-34337)."""
    calls = []
    real = hmac.compare_digest

    def spy(a, b):
        calls.append((a, b))
        return real(a, b)

    monkeypatch.setattr(tokens.hmac, "compare_digest", spy)
    token = tokens.sign(KEY, tokens.REPLY, (1, 2), LATER)
    tokens.verify(KEY, tokens.REPLY, token, NOW, fields=2)
    with pytest.raises(tokens.InvalidToken):
        tokens.verify(KEY, tokens.REPLY, token[:-1] + ("a" if token[-1] != "a" else "b"), NOW, fields=2)
    assert len(calls) == 2
