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


# --- a digest's reply addresses: one member key, a MAC per post (DigestSigner) ----------------


def _digest_tokens(member: int, posts: list[int], expires: dt.datetime = LATER) -> list[str]:
    return tokens.DigestSigner(KEY, tokens.REPLY, expires).sign(member, posts)


def _flip(token: str, at: int = -1) -> str:
    """``token`` with one letter of its MAC changed to another of the alphabet."""
    letter = token[at]
    other = tokens._B32[(tokens._B32.index(letter) + 2) % 32]  # the spare bit stays as it is
    return token[:at] + other + (token[at + 1 :] if at != -1 else "")


def test_digest_tokens_verify_as_reply_tokens_of_the_short_length():
    posts = [1, 42, 123456789, tokens.MAX_ID]
    for member in (0, 7, tokens.MAX_ID):
        signed = _digest_tokens(member, posts, dt.datetime(2160, 12, 31, tzinfo=dt.UTC))
        for post, token in zip(posts, signed, strict=True):
            assert len(token) <= tokens.short_length((tokens.MAX_ID, tokens.MAX_ID)) and tokens.is_short(
                token
            )
            assert set(token) <= set("abcdefghijklmnopqrstuvwxyz0123456789-")
            assert tokens.verify(KEY, tokens.REPLY, token.upper(), NOW, fields=2) == (member, post)
    assert len(set(_digest_tokens(7, posts))) == len(posts)


def test_a_digest_token_is_no_use_for_another_member_or_post():
    """The member's key is an HMAC of the member (and expiry) under the site key: swapping the
    member or post field of a genuine token, or taking one member's MAC for another's, fails."""
    (token,) = _digest_tokens(7, [42])
    member, post, hours, mac = token.split("-")
    (other,) = _digest_tokens(8, [42])
    for forged in [
        f"8-{post}-{hours}-{mac}",  # another member, same MAC
        f"{member}-{tokens._b36(43)}-{hours}-{mac}",  # another post
        f"{member}-{post}-{hours}-{other.rsplit('-', 1)[1]}",  # another member's MAC
        f"0{member}-{post}-{hours}-{mac}",  # the same number spelled otherwise
        f"{member}-{post}-{tokens._b36(int(hours, 36) + 1)}-{mac}",  # a later expiry
        _flip(token),
        _flip(token, -13),
    ]:
        with pytest.raises(tokens.InvalidToken):
            tokens.verify(KEY, tokens.REPLY, forged, NOW, fields=2)
    with pytest.raises(tokens.InvalidToken):
        tokens.verify(tokens.derive_key("another"), tokens.REPLY, token, NOW, fields=2)


def test_the_spare_bit_keeps_the_two_short_forms_apart():
    """A short token's 13th MAC letter has one bit the 64-bit MAC leaves over: 0 in the
    ``sign_short`` form, 1 in the ``DigestSigner`` form. Flipping it makes either invalid."""
    old = tokens.sign_short(KEY, tokens.REPLY, (7, 42), LATER)
    (new,) = _digest_tokens(7, [42])
    assert tokens._B32.index(old[-1]) % 2 == 0 and tokens._B32.index(new[-1]) % 2 == 1
    assert old.rsplit("-", 1)[0] == new.rsplit("-", 1)[0]  # same fields, other MAC
    for token in (old, new):
        flipped = token[:-1] + tokens._B32[tokens._B32.index(token[-1]) ^ 1]
        with pytest.raises(tokens.InvalidToken):
            tokens.verify(KEY, tokens.REPLY, flipped, NOW, fields=2)
    # Tokens of either form sent before keep working; the long form too.
    assert tokens.verify(KEY, tokens.REPLY, old, NOW, fields=2) == (7, 42)
    assert tokens.verify(KEY, tokens.REPLY, tokens.sign(KEY, tokens.REPLY, (7, 42), LATER), NOW, 2) == (7, 42)


def test_the_digest_form_is_refused_for_other_purposes_and_single_fields():
    (token,) = _digest_tokens(7, [42])
    for purpose in tokens.SHORT_PURPOSES - {tokens.REPLY}:
        with pytest.raises(tokens.InvalidToken):
            tokens.verify(KEY, purpose, token, NOW, fields=2)
    # A one-field token with the spare bit set (as a VERP or enable token would be).
    verp = tokens.sign_short(KEY, tokens.VERP, (7,), LATER)
    with pytest.raises(tokens.InvalidToken):
        tokens.verify(KEY, tokens.VERP, verp[:-1] + tokens._B32[tokens._B32.index(verp[-1]) | 1], NOW, 1)
    with pytest.raises(ValueError):
        tokens.DigestSigner(KEY, tokens.VERP, LATER)
    with pytest.raises(ValueError):
        tokens.DigestSigner(KEY, tokens.REPLY, LATER).sign(-1, [1])


def test_digest_tokens_expire_within_the_hour():
    (token,) = _digest_tokens(7, [42], NOW + dt.timedelta(minutes=5))
    assert tokens.verify(KEY, tokens.REPLY, token, NOW + dt.timedelta(minutes=59), fields=2) == (7, 42)
    with pytest.raises(tokens.ExpiredToken):
        tokens.verify(KEY, tokens.REPLY, token, NOW + dt.timedelta(hours=1, minutes=1), fields=2)


def test_digest_token_comparison_is_constant_time(monkeypatch):
    calls = []
    real = hmac.compare_digest

    def spy(a, b):
        calls.append((a, b))
        return real(a, b)

    monkeypatch.setattr(tokens.hmac, "compare_digest", spy)
    (token,) = _digest_tokens(1, [2])
    tokens.verify(KEY, tokens.REPLY, token, NOW, fields=2)
    with pytest.raises(tokens.InvalidToken):
        tokens.verify(KEY, tokens.REPLY, _flip(token), NOW, fields=2)
    assert len(calls) == 2


def test_the_digest_signer_matches_the_slow_path():
    """``DigestSigner.sign`` (cached, one HMAC per member) writes what ``verify`` computes."""
    signer = tokens.DigestSigner(KEY, tokens.REPLY, LATER)
    for member in (1, 99, 2**40):
        for token in signer.sign(member, list(range(30))):
            m, p, hours, mac = token.split("-")
            assert mac == tokens._digest_mac(KEY, tokens.REPLY, m, p, hours)


def test_the_table_base32_is_the_stdlib_s():
    """``_base32`` (letters by pairs from a table) writes what ``base64.b32encode`` does."""
    import base64
    import os

    for size in [tokens.SHORT_MAC_BYTES, tokens.MAC_BYTES, 0, 1, 5, 7, 20]:
        for data in [bytes(size), b"\xff" * size, *(os.urandom(size) for _ in range(200))]:
            assert tokens._base32(data) == base64.b32encode(data).decode().rstrip("=").lower()
