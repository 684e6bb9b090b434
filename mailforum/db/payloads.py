"""What an outbox row's ``payload`` holds for the kinds that carry no post.

``core.digest_enqueue`` writes a ``digest`` row (a member's posts between two marks) and
``core.answers`` a ``notice`` row (an answer, rendered when it was decided);
``core.copies`` reads them back when the row is delivered. Both sides use these
types, so a key renamed on one side is a type error on the other. The column is
JSON, so what comes back from the database is read through ``digest_payload`` and
``notice_payload``, which also give rows written by older versions their defaults.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, TypedDict

# "from" is a keyword, hence the functional form.
DigestPayload = TypedDict("DigestPayload", {"from": int, "to": int, "frequency": str, "label": str})


class NoticePayload(TypedDict):
    template: str  # what it answers, e.g. "command/confirm" (kept for operators and tests)
    subject: str
    text: str
    html: str
    in_reply_to: str | None  # the Message-ID answered
    sender: str  # a role from core.answers.SENDER_ROLES: "request" or "owner"
    reply_to: str | None  # one of our own addresses


Payload = DigestPayload | NoticePayload


def digest_payload(stored: Mapping[str, Any]) -> DigestPayload:
    return {
        "from": int(stored["from"]),
        "to": int(stored["to"]),
        "frequency": str(stored["frequency"]),
        "label": str(stored["label"]),
    }


def notice_payload(stored: Mapping[str, Any]) -> NoticePayload:
    return {
        "template": str(stored.get("template") or ""),
        "subject": str(stored.get("subject") or ""),
        "text": str(stored.get("text") or ""),
        "html": str(stored.get("html") or ""),
        "in_reply_to": _text_or_none(stored.get("in_reply_to")),
        "sender": str(stored.get("sender") or "request"),
        "reply_to": _text_or_none(stored.get("reply_to")),
    }


def _text_or_none(value: object) -> str | None:
    return str(value) if value else None
