"""DKIM signatures on our outgoing mail (dkimpy), when ``[dkim] key_file`` is set.

Every copy is signed as it leaves (the per-recipient headers are part of it), with
relaxed/relaxed canonicalisation, over the headers a receiver and RFC 8058 care
about — ``List-Unsubscribe`` and ``List-Unsubscribe-Post`` inside ``h=`` so a
one-click unsubscribe URL cannot be swapped in transit (RFC 8058 §4). Our From is
always a list address (DMARC-safe munging), so the signature aligns with it when
``domain`` is the site domain (RELIABILITY S11).
"""

from __future__ import annotations

from pathlib import Path

import dkim

from mailforum.errors import ConfigError

SIGNED_HEADERS = (
    b"from",
    b"to",
    b"cc",
    b"subject",
    b"date",
    b"message-id",
    b"in-reply-to",
    b"references",
    b"reply-to",
    b"mime-version",
    b"content-type",
    b"content-transfer-encoding",
    b"list-id",
    b"list-post",
    b"list-help",
    b"list-archive",
    b"list-unsubscribe",
    b"list-unsubscribe-post",
    b"auto-submitted",
)


class Signer:
    """Signs message bytes with one key; built once, used for every copy."""

    def __init__(self, key_file: str, selector: str, domain: str) -> None:
        if not selector:
            raise ConfigError("[dkim] selector must be set when key_file is")
        try:
            self.key = Path(key_file).read_bytes()
        except OSError as exc:
            raise ConfigError(f"[dkim] key_file {key_file}: cannot read: {exc.strerror}") from None
        self.selector = selector.encode("ascii")
        self.domain = domain.encode("ascii")
        try:
            self.sign(b"From: a@b\r\nSubject: t\r\n\r\nx\r\n")
        except dkim.DKIMException as exc:
            raise ConfigError(f"[dkim] key_file {key_file}: not a usable private key: {exc}") from None

    def sign(self, data: bytes) -> bytes:
        """The message with a DKIM-Signature header on top."""
        present = {
            line.split(b":", 1)[0].strip().lower()
            for line in data.partition(b"\r\n\r\n")[0].split(b"\r\n")
            if line[:1] not in (b" ", b"\t") and b":" in line
        }
        headers = [h for h in SIGNED_HEADERS if h in present]
        signature = dkim.sign(
            data,
            self.selector,
            self.domain,
            self.key,
            canonicalize=(b"relaxed", b"relaxed"),
            include_headers=headers,
            linesep=b"\r\n",
        )
        return signature + data
