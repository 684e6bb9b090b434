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
"""

from __future__ import annotations

import base64
import datetime as dt
import hashlib
import hmac
from collections.abc import Sequence

from mailforum.errors import MailforumError

MAC_BYTES = 16  # 128 bits (RELIABILITY S3: keys are at least 128 bits)
_DIGITS = "0123456789abcdefghijklmnopqrstuvwxyz"

# The purposes in use; a new one is just a new string, listed here for readers.
REPLY = "reply"  # NAME+r-TOKEN@domain: (member id, post id)
VERP = "verp"  # NAME-bounces+TOKEN@domain: (outbox row id,)


class InvalidToken(MailforumError):
    """A token that is malformed, forged, of another purpose, or expired."""


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


def _mac(key: bytes, purpose: str, body: str) -> str:
    digest = hmac.new(key, f"{purpose}\0{body}".encode(), hashlib.sha256).digest()[:MAC_BYTES]
    return base64.b32encode(digest).decode("ascii").rstrip("=").lower()


def sign(key: bytes, purpose: str, fields: Sequence[int], expires: dt.datetime) -> str:
    """A token for ``purpose`` carrying ``fields``, valid until ``expires`` (to the minute)."""
    minutes = int(expires.timestamp() // 60)
    body = "-".join(_b36(f) for f in (*fields, minutes))
    return f"{body}-{_mac(key, purpose, body)}"


def verify(key: bytes, purpose: str, token: str, now: dt.datetime, fields: int) -> tuple[int, ...]:
    """The fields of a valid, unexpired ``purpose`` token; ``InvalidToken`` otherwise."""
    token = token.strip().lower()
    body, _, mac = token.rpartition("-")
    parts = body.split("-") if body else []
    if len(parts) != fields + 1 or len(token) > 200:
        raise InvalidToken("invalid token")
    if not hmac.compare_digest(_mac(key, purpose, body), mac):
        raise InvalidToken("invalid token")
    try:
        numbers = tuple(int(p, 36) for p in parts)
    except ValueError:
        raise InvalidToken("invalid token") from None
    if numbers[-1] * 60 < now.timestamp():
        raise InvalidToken("expired token")
    return numbers[:-1]
