"""Keep signed tokens out of logs (RELIABILITY S25).

aiosmtpd logs every SMTP command at DEBUG on the ``mail.log`` logger, so with ``-vv``
the per-copy bounce addresses (NAME-bounces+TOKEN@), reply, enable, moderation and
confirm addresses would be written out whole. ``install()`` puts a filter on that
logger which replaces every token part of our addresses and links with ``…`` before
any handler sees the record, and drops aiosmtpd's line-by-line echo of message
bodies ("DATA readline"), which may quote a notice with its links. Idempotent;
called by the ingest server and the CLI.
"""

from __future__ import annotations

import logging
import re

# The detail after "+" of our addresses that carry a signed token (mail/addresses.py).
_TOKEN = re.compile(
    r"(?i)(-bounces\+|-confirm\+|\+(?:r|mod|enable|confirm)-|/(?:enable|held|confirm|unsubscribe)/)[a-z0-9-]{8,}"
)
LOGGERS = ("mail.log",)


def redact(text: str) -> str:
    return _TOKEN.sub(r"\1…", text)


class RedactTokens(logging.Filter):
    def filter(self, record: logging.LogRecord) -> bool:
        if isinstance(record.msg, str) and record.msg.startswith("DATA readline"):
            return False
        try:
            message = record.getMessage()
        except Exception:  # a broken format: leave it to the handler's own error path
            return True
        cleaned = redact(message)
        if cleaned != message:
            record.msg, record.args = cleaned, None
        return True


def install() -> None:
    for name in LOGGERS:
        logger = logging.getLogger(name)
        if not any(isinstance(f, RedactTokens) for f in logger.filters):
            logger.addFilter(RedactTokens())
