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


# --- short tokens for addresses (issue 12, RELIABILITY B53) ------------------------------------


def test_short_tokens_round_trip_within_their_length_and_carry_64_bit_macs():
    for purpose, fields in [(tokens.REPLY, (tokens.MAX_ID, tokens.MAX_ID)), (tokens.VERP, (tokens.MAX_ID,))]:
        token = tokens.sign_short(KEY, purpose, fields, dt.datetime(2160, 12, 31, tzinfo=dt.UTC))
        assert len(token) == tokens.short_length(fields) and tokens.is_short(token)
        assert len(token.rsplit("-", 1)[1]) * 5 >= 64
        assert tokens.verify(KEY, purpose, token.upper(), NOW, fields=len(fields)) == fields


def test_short_tokens_are_purpose_bound_and_expire_within_the_hour():
    token = tokens.sign_short(KEY, tokens.REPLY, (7, 42), NOW + dt.timedelta(minutes=5))
    assert tokens.verify(KEY, tokens.REPLY, token, NOW + dt.timedelta(minutes=59), fields=2) == (7, 42)
    with pytest.raises(tokens.ExpiredToken):
        tokens.verify(KEY, tokens.REPLY, token, NOW + dt.timedelta(hours=1, minutes=1), fields=2)
    with pytest.raises(tokens.InvalidToken):
        tokens.verify(KEY, tokens.MODERATE, token, NOW, fields=2)
    with pytest.raises(tokens.InvalidToken):
        tokens.verify(KEY, tokens.REPLY, token[:-1] + ("a" if token[-1] != "a" else "b"), NOW, fields=2)
    with pytest.raises(ValueError):
        tokens.sign_short(KEY, tokens.UNSUBSCRIBE, (1, 2), LATER)  # links keep 128 bits


def test_a_64_bit_mac_is_no_use_for_a_link_purpose():
    """Forging the short form of an unsubscribe token: refused, even with a genuine short MAC."""
    body = "1-2-apjc"
    forged = f"{body}-{tokens._mac(KEY, tokens.UNSUBSCRIBE, body, tokens.SHORT_MAC_BYTES)}"
    with pytest.raises(tokens.InvalidToken):
        tokens.verify(KEY, tokens.UNSUBSCRIBE, forged, NOW, fields=2)


def test_long_tokens_already_sent_for_addresses_still_verify():
    for purpose in tokens.SHORT_PURPOSES:
        old = tokens.sign(KEY, purpose, (7, 42), LATER)
        assert not tokens.is_short(old)
        assert tokens.verify(KEY, purpose, old, NOW, fields=2) == (7, 42)
