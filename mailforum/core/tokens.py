"""HMAC-signed, expiring, purpose-bound tokens for addresses and links.

A token carries a few non-negative integers (ids) and an expiry, and a 128-bit
HMAC-SHA256 over the purpose, the integers and the expiry. Purposes keep tokens
apart: a reply token is no use as a VERP or an unsubscribe token, because the purpose
is inside the MAC (RELIABILITY S3, S6, S8). The text uses only ``[a-z0-9-]``, so it
survives MTAs that lower-case local parts, and fits in an address or a URL path:

    >>> t = sign(b"k", "reply", (7, 42), now + dt.timedelta(days=365))
    >>> t                                # member 7, post 42, expiry, MAC
    '7-16-1l2m3n-3xq…'
    >>> verify(b"k", "reply", t, now, fields=2)
    (7, 42)

Verification compares MACs with ``hmac.compare_digest`` (constant time; Mailman
CVE-2021-34337) and raises ``InvalidToken`` for anything wrong, without saying
what, so a guesser learns nothing. Issue 5 reuses this for confirm/unsubscribe.

Tokens that go into an address's local part use the short form (``sign_short``,
RELIABILITY B53): expiry in hours and a 64-bit MAC, so that with ids up to
``MAX_ID`` every address fits RFC 5321's 64 octets for the list names we accept. Its
MAC covers a format marker too, and only the purposes in ``SHORT_PURPOSES`` accept
it; ``verify`` still reads the long form of every purpose, so address tokens sent
before the change keep working until they expire:

    >>> sign_short(b"k", "reply", (7, 42), now + dt.timedelta(days=365))
    '7-16-apjc-…'                        # member 7, post 42, hour of expiry, 13-letter MAC

A digest carries a reply address per post for each member: 50 posts to 10,000 members
were 500,000 HMACs, most of the time spent personalising digests. ``DigestSigner``
makes them with one HMAC per member and a keyed BLAKE2b per post: the member key is
HMAC-SHA256 over the purpose, the member's field and the expiry hour, and a post's
64-bit MAC is BLAKE2b keyed with it over the post's field. The text is the short
form's; the 13th MAC letter has one bit the 64 bits leave over, always 0 in the short
form, and 1 here, which is how ``verify`` tells the two apart (``DIGEST_PURPOSES``).
Without the site key, the member key of one member says nothing about another's, and
a post's MAC nothing about another post's.
"""

from __future__ import annotations

import base64
import datetime as dt
import hashlib
import hmac
from collections.abc import Sequence

from mailforum.errors import MailforumError

MAC_BYTES = 16  # 128 bits (RELIABILITY S3: keys are at least 128 bits)
SHORT_MAC_BYTES = 8  # 64 bits in addresses: a guess costs an SMTP transaction
_SHORT_MAC_LEN = 13  # base32 letters of SHORT_MAC_BYTES
_LONG_MAC_LEN = 26
MAX_ID = 36**7 - 1  # ids up to 78 billion keep address tokens within their budget
_HOUR_DIGITS = 4  # hours since 1970 in base 36: four digits until the year 2161
_DIGITS = "0123456789abcdefghijklmnopqrstuvwxyz"

# The purposes in use; a new one is just a new string, listed here for readers.
REPLY = "reply"  # NAME+r-TOKEN@domain: (member id, post id)
VERP = "verp"  # NAME-bounces+TOKEN@domain: (outbox row id,)
ENABLE = "enable"  # NAME+enable-TOKEN@domain and /lists/NAME/enable/TOKEN: (member id,)
MODERATE = "moderate"  # NAME+mod-TOKEN@domain and /lists/NAME/held/TOKEN: (post id, action)
CONFIRM = "confirm"  # NAME+confirm-TOKEN@domain and /confirm/TOKEN: (confirmation id, list id)
UNSUBSCRIBE = "unsubscribe"  # one-click /unsubscribe/TOKEN (RFC 8058): (member id, list id)
SIGNIN = "signin"  # /signin/TOKEN (core/signin.py): (sign-in link id,)
# Purposes whose tokens go into addresses (short form); NAME+confirm-TOKEN carries
# (confirmation id,) only, the /confirm/TOKEN link keeps the long (id, list id) form.
SHORT_PURPOSES = frozenset({REPLY, VERP, ENABLE, MODERATE, CONFIRM})
# Purposes whose tokens ``DigestSigner`` also makes (member key per member, MAC per post).
DIGEST_PURPOSES = frozenset({REPLY})


class InvalidToken(MailforumError):
    """A token that is malformed, forged, of another purpose, or expired."""


class ExpiredToken(InvalidToken):
    """A genuine token past its expiry (callers may treat it more kindly than a forgery)."""


def derive_key(secret: str) -> bytes:
    """The signing key from ``[site] secret_key``; refuses an empty secret."""
    if not secret:
        raise MailforumError("[site] secret_key is empty: set it to a long random string (see README)")
    return hashlib.sha256(b"mailforum-tokens\0" + secret.encode("utf-8")).digest()


def _b36(number: int) -> str:
    if number < 0:
        raise ValueError("token fields are non-negative integers")
    out = ""
    while True:
        number, digit = divmod(number, 36)
        out = _DIGITS[digit] + out
        if not number:
            return out


def _mac(key: bytes, purpose: str, body: str, size: int = MAC_BYTES) -> str:
    marker = "" if size == MAC_BYTES else "\0short"
    digest = hmac.digest(key, f"{purpose}{marker}\0{body}".encode(), "sha256")[:size]
    return _base32(digest)


def _base32(digest: bytes) -> str:
    """``base64.b32encode(digest)`` in lower case without padding, for the two MAC sizes:
    letters by pairs from a table (the stdlib's is Python, a letter at a time)."""
    pairs = _B32_PAIRS
    if len(digest) == SHORT_MAC_BYTES:  # 64 bits and a zero bit: 13 letters
        n = int.from_bytes(digest, "big") << 6
        return (
            pairs[n >> 60]
            + pairs[n >> 50 & 1023]
            + pairs[n >> 40 & 1023]
            + pairs[n >> 30 & 1023]
            + pairs[n >> 20 & 1023]
            + pairs[n >> 10 & 1023]
            + _B32[n >> 5 & 31]
        )
    if len(digest) == MAC_BYTES:  # 128 bits and two zero bits: 26 letters
        high = int.from_bytes(digest[:10], "big")  # 80 bits: 16 letters
        low = int.from_bytes(digest[10:], "big") << 2  # 48 bits and two: 10 letters
        return (
            pairs[high >> 70]
            + pairs[high >> 60 & 1023]
            + pairs[high >> 50 & 1023]
            + pairs[high >> 40 & 1023]
            + pairs[high >> 30 & 1023]
            + pairs[high >> 20 & 1023]
            + pairs[high >> 10 & 1023]
            + pairs[high & 1023]
            + pairs[low >> 40]
            + pairs[low >> 30 & 1023]
            + pairs[low >> 20 & 1023]
            + pairs[low >> 10 & 1023]
            + pairs[low & 1023]
        )
    return base64.b32encode(digest).decode("ascii").rstrip("=").lower()


def _hours(expires: dt.datetime) -> int:
    """The hour a short token expires at, rounded up (it lives at most an hour longer)."""
    return -int(-expires.timestamp() // 3600)


def sign(key: bytes, purpose: str, fields: Sequence[int], expires: dt.datetime) -> str:
    """A token for ``purpose`` carrying ``fields``, valid until ``expires`` (to the minute)."""
    minutes = int(expires.timestamp() // 60)
    body = "-".join(_b36(f) for f in (*fields, minutes))
    return f"{body}-{_mac(key, purpose, body)}"


def sign_short(key: bytes, purpose: str, fields: Sequence[int], expires: dt.datetime) -> str:
    """The short token for an address's local part: expiry to the hour, 64-bit MAC."""
    if purpose not in SHORT_PURPOSES:
        raise ValueError(f"{purpose!r} tokens are not used in addresses")
    body = "-".join(_b36(f) for f in (*fields, _hours(expires)))
    return f"{body}-{_mac(key, purpose, body, SHORT_MAC_BYTES)}"


def short_length(fields: Sequence[int]) -> int:
    """The longest short token whose fields are at most ``fields`` (expiring before 2161)."""
    return sum(len(_b36(f)) + 1 for f in fields) + _HOUR_DIGITS + 1 + _SHORT_MAC_LEN


def is_short(token: str) -> bool:
    """Whether ``token`` has the short form's MAC (``verify`` decides if it is genuine)."""
    return len(token.strip().rpartition("-")[2]) == _SHORT_MAC_LEN


def verify(key: bytes, purpose: str, token: str, now: dt.datetime, fields: int) -> tuple[int, ...]:
    """The fields of a valid, unexpired ``purpose`` token, short or long; ``InvalidToken``
    otherwise."""
    token = token.strip().lower()
    body, _, mac = token.rpartition("-")
    parts = body.split("-") if body else []
    short = len(mac) == _SHORT_MAC_LEN and purpose in SHORT_PURPOSES
    if len(parts) != fields + 1 or len(token) > 200 or not (short or len(mac) == _LONG_MAC_LEN):
        raise InvalidToken("invalid token")
    if short and _B32.find(mac[-1]) & 1:  # the spare bit: a DigestSigner token
        if purpose not in DIGEST_PURPOSES or fields < 2:
            raise InvalidToken("invalid token")
        expected = _digest_mac(key, purpose, parts[0], "-".join(parts[1:-1]), parts[-1])
    else:
        expected = _mac(key, purpose, body, SHORT_MAC_BYTES if short else MAC_BYTES)
    if not hmac.compare_digest(expected, mac):
        raise InvalidToken("invalid token")
    try:
        numbers = tuple(int(p, 36) for p in parts)
    except ValueError:
        raise InvalidToken("invalid token") from None
    if numbers[-1] * (3600 if short else 60) < now.timestamp():
        raise ExpiredToken("expired token")
    return numbers[:-1]


class Signer:
    """Many short tokens of one purpose and expiry, faster than ``sign_short`` one by one
    (a digest's 50 reply addresses for each of 10,000 members): the key and expiry are
    prepared once, field encodings are cached, and the MAC state is copied. Same text as
    ``sign_short`` (tests/unit/test_tokens.py checks it)."""

    def __init__(self, key: bytes, purpose: str, expires: dt.datetime) -> None:
        self._base = hmac.new(key, f"{purpose}\0short\0".encode(), hashlib.sha256)
        self._hours = _b36(_hours(expires))
        self._fields: dict[int, str] = {}

    def _field(self, number: int) -> str:
        text = self._fields.get(number)
        if text is None:
            if len(self._fields) > 100_000:
                self._fields.clear()
            text = self._fields[number] = _b36(number)
        return text

    def sign(self, fields: Sequence[int]) -> str:
        body = "-".join([*(self._field(f) for f in fields), self._hours])
        mac_state = self._base.copy()
        mac_state.update(body.encode())
        digest = mac_state.digest()[:SHORT_MAC_BYTES]
        # base32 of 8 bytes is 64 bits and one zero bit in 13 letters: 7 table lookups.
        n = int.from_bytes(digest, "big") << 6
        mac = "".join([_B32_PAIRS[(n >> shift) & 1023] for shift in range(60, -1, -10)])[:_SHORT_MAC_LEN]
        return f"{body}-{mac}"


_B32 = "abcdefghijklmnopqrstuvwxyz234567"
_B32_PAIRS = [a + b for a in _B32 for b in _B32]


# DigestSigner's domain separation: the member key's HMAC input, and BLAKE2b's personalisation.
_DIGEST_MARKER = "\0digest\0"
_DIGEST_PERSON = b"mailforum-post"


def _member_key(key: bytes, purpose: str, member: str, hours: str) -> bytes:
    return hmac.new(key, f"{purpose}{_DIGEST_MARKER}{member}-{hours}".encode(), hashlib.sha256).digest()


def _digest_mac(key: bytes, purpose: str, member: str, rest: str, hours: str) -> str:
    """The MAC ``DigestSigner`` gives a token (the slow way, for ``verify``)."""
    member_key = _member_key(key, purpose, member, hours)
    tag = hashlib.blake2b(rest.encode(), digest_size=SHORT_MAC_BYTES, key=member_key, person=_DIGEST_PERSON)
    return _letters(int.from_bytes(tag.digest(), "big"))


def _letters(tag: int) -> str:
    """A 64-bit MAC and the spare bit set, as the 13 base32 letters of the short form."""
    n = tag << 6 | 32
    pairs = _B32_PAIRS
    return (
        pairs[n >> 60]
        + pairs[n >> 50 & 1023]
        + pairs[n >> 40 & 1023]
        + pairs[n >> 30 & 1023]
        + pairs[n >> 20 & 1023]
        + pairs[n >> 10 & 1023]
        + _B32[n >> 5 & 31]
    )


class DigestSigner:
    """One member's short tokens for many posts, of one purpose and expiry: one HMAC for
    the member, then a keyed BLAKE2b per post (a digest's 50 reply addresses cost one
    HMAC, not 50). ``verify`` reads them as it reads ``sign_short``'s; the two never
    verify as each other (the spare bit, see the module's text).

        >>> DigestSigner(key, REPLY, expires).sign(7, [42, 43])
        ['7-16-apjc-…', '7-17-apjc-…']
    """

    def __init__(self, key: bytes, purpose: str, expires: dt.datetime) -> None:
        if purpose not in DIGEST_PURPOSES:
            raise ValueError(f"{purpose!r} tokens are not signed per member")
        self._hours = _b36(_hours(expires))
        self._base = hmac.new(key, f"{purpose}{_DIGEST_MARKER}".encode(), hashlib.sha256)
        # post id -> ("-<post>-<hours>-", b"<post>"), the text around a MAC and what it covers
        self._posts: dict[int, tuple[str, bytes]] = {}

    def _post(self, post_id: int) -> tuple[str, bytes]:
        cached = self._posts.get(post_id)
        if cached is None:
            if len(self._posts) > 100_000:
                self._posts.clear()
            text = _b36(post_id)
            cached = self._posts[post_id] = (f"-{text}-{self._hours}-", text.encode())
        return cached

    def sign(self, member_id: int, post_ids: Sequence[int]) -> list[str]:
        """The tokens for (member, post), one per post id, in order."""
        member = _b36(member_id)
        state = self._base.copy()
        state.update(f"{member}-{self._hours}".encode())
        member_key = state.digest()
        blake2b, from_bytes, post = hashlib.blake2b, int.from_bytes, self._post
        out = []
        for post_id in post_ids:
            text, covered = post(post_id)
            tag = blake2b(covered, digest_size=SHORT_MAC_BYTES, key=member_key, person=_DIGEST_PERSON)
            out.append(member + text + _letters(from_bytes(tag.digest(), "big")))
        return out
