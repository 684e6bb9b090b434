"""What a stored post keeps of its message: one rule for live mail (``core.posting``) and
imports (``core.archive``), so the two cannot drift apart."""

from __future__ import annotations

import datetime as dt

from mailforum.config import Config
from mailforum.core.authentication import strip_forged
from mailforum.db.models import Post
from mailforum.mail.footers import strip_footers
from mailforum.mail.parse import ParsedMessage


def fill(post: Post, config: Config, parsed: ParsedMessage, raw: bytes, received_at: dt.datetime) -> None:
    """Copy the message's author, subject, dates, bodies, attachment list and raw bytes into ``post``."""
    post.author_address = parsed.from_address
    post.author_name = parsed.from_name
    post.subject = parsed.subject
    post.date = parsed.date
    post.received_at = received_at
    # Our own footers, quoted by the replies that answer our copies, are not the author's text.
    post.text_body = strip_footers(parsed.text_body, config.site.domain)
    post.html_body = parsed.html_body
    post.attachments = [
        {"filename": a.filename, "type": a.content_type, "size": a.size} for a in parsed.attachments
    ]
    # Forged Authentication-Results claiming our MTA's id never reach the archive (RFC 8601 §5);
    # the spool keeps the bytes as received.
    post.raw = strip_forged(raw, config.security.authserv_id)
    post.fingerprint = parsed.fingerprint
