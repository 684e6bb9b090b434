"""What the web's forms need besides HTML: CSRF tokens, rate limits, reading a POST, the hand-off.

The forms ("join this list", "watch this topic by email", in ``subscribe.py``) take
an address and ask for a confirmation mail. The web never sends that mail itself: it
calls one injected ``RequestConfirmation`` callable (the subscriptions feature provides
it), and always answers the same neutral page, so the page never tells whether an
address is a member (RELIABILITY S4, S16).

CSRF: a double-submit token bound to a random per-browser cookie, the form's path
and a time stamp, signed with HMAC-SHA256 and compared with ``hmac.compare_digest``.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import hmac
import time
from collections.abc import Callable
from dataclasses import dataclass

from email_validator import EmailNotValidError, validate_email
from starlette.exceptions import HTTPException
from starlette.requests import Request

from mailforum.core.lists import is_local_domain, validate_local
from mailforum.db import queries
from mailforum.db.models import utcnow
from mailforum.db.session import Database


@dataclass(frozen=True, slots=True)
class ConfirmationRequest:
    """Someone asked, on the web, for ``address`` to join a list or watch one of its topics."""

    kind: str  # "join" or "watch"
    list_name: str
    address: str
    topic_id: int | None
    client: str  # the requesting IP, for the subscriptions feature's own caps


RequestConfirmation = Callable[[ConfirmationRequest], None]

FORM_KINDS = ("join", "watch")
MAX_FORM_BYTES = 8192


class CsrfTokens:
    """Signs and checks form tokens: ``<issued>.<hmac(nonce, action, issued)>``."""

    def __init__(self, secret: bytes, max_age: float, clock: Callable[[], float] = time.time) -> None:
        self._secret = secret
        self.max_age = max_age
        self._clock = clock

    def _sign(self, nonce: str, action: str, issued: int) -> str:
        message = f"csrf\0{nonce}\0{action}\0{issued}".encode()
        return hmac.new(self._secret, message, hashlib.sha256).hexdigest()

    def issue(self, nonce: str, action: str) -> str:
        issued = int(self._clock())
        return f"{issued}.{self._sign(nonce, action, issued)}"

    def check(self, nonce: str, action: str, token: str) -> bool:
        issued_text, dot, signature = token.partition(".")
        if not nonce or not dot or not issued_text.isdigit():
            return False
        issued = int(issued_text)
        if not 0 <= self._clock() - issued <= self.max_age:
            return False
        return hmac.compare_digest(signature.encode(), self._sign(nonce, action, issued).encode())


class RateLimiter:
    """At most ``limit`` events per key in any ``window`` seconds (sliding window).

    Counted in the database (``form_hits``), so every ``serve`` node of one database
    shares the count, in the style of the subscriptions feature's confirmation
    caps. Keys are stored as an HMAC, not as the IP or address. Two nodes answering the
    same key in the same instant may each let one more through; the window holds.
    """

    def __init__(
        self,
        db: Database,
        scope: str,
        limit: int,
        window: float,
        secret: bytes,
        clock: Callable[[], dt.datetime] = utcnow,
    ) -> None:
        self.scope = scope
        self.limit = limit
        self.window = dt.timedelta(seconds=window)
        self._db = db
        self._secret = secret
        self._clock = clock

    def hit(self, key: str) -> float:
        """Count one event; 0.0 when allowed, else the seconds until the next is allowed.
        Blocking (the database): call it from a worker thread."""
        now = self._clock()
        start = now - self.window
        digest = hmac.new(self._secret, f"{self.scope}\0{key}".encode(), hashlib.sha256).hexdigest()[:32]
        with self._db.session() as session:
            queries.forget_form_hits(session, self.scope, start)
            recent = queries.form_hits(session, self.scope, digest, start, self.limit)
            if len(recent) >= self.limit:
                return max((recent[0] + self.window - now).total_seconds(), 0.001)
            queries.add_form_hit(session, self.scope, digest, now)
        return 0.0


def checked_address(text: str, local_domains: bool = False) -> str | None:
    """The normalised address, or None when it is not a valid address (email-validator).

    ``local_domains`` ([site] allow_local_domains) also accepts the special-use and
    dotless domains of intranet and test installs, as the CLI and mail commands do.
    """
    text = text.strip()
    if not text or len(text) > 320 or any(c in text for c in "\r\n\0"):
        return None
    try:
        if local_domains and is_local_domain(text.rpartition("@")[2]):
            return validate_local(text).lower()
        return validate_email(text, check_deliverability=False, allow_smtputf8=True).normalized.lower()
    except EmailNotValidError:
        return None


async def read_form(request: Request, length_required: bool = True) -> dict[str, str]:
    """The fields of a small posted form (urlencoded or multipart, no files); 400 when it is
    bigger than ``MAX_FORM_BYTES`` or malformed. Without ``length_required`` a POST that
    gives no Content-Length counts as empty."""
    length = request.headers.get("content-length", "" if length_required else "0")
    if not length.isdigit() or int(length) > MAX_FORM_BYTES:
        raise HTTPException(400)
    try:
        form = await request.form(max_files=0, max_fields=10, max_part_size=4096)
    except HTTPException:
        raise HTTPException(400) from None
    try:
        return {k: str(v) for k, v in form.items()}
    finally:
        await form.close()
