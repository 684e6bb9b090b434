"""The attachments of a stored raw message, by position, for downloads from the archive.

The order and the rule for what counts as an attachment are those of
``mail.parse`` (the metadata stored with each post), so attachment N of a post's
``attachments`` list is attachment N here. Nothing is ever decompressed or
interpreted (RELIABILITY B40): the bytes are the transfer-decoded payload.
"""

from __future__ import annotations

from dataclasses import dataclass
from email import message_from_bytes
from email.policy import compat32

from mailforum.mail.parse import check_limits, decode_header_value

# Types a browser may be told as they are; everything else is application/octet-stream.
SAFE_TYPES = frozenset(
    {
        "application/pdf",
        "application/zip",
        "application/gzip",
        "application/x-tar",
        "application/octet-stream",
        "image/png",
        "image/jpeg",
        "image/gif",
        "image/webp",
        "text/plain",
        "text/csv",
        "text/x-diff",
        "text/x-patch",
        "audio/mpeg",
        "audio/ogg",
        "video/mp4",
    }
)


@dataclass(frozen=True, slots=True)
class AttachmentData:
    filename: str
    content_type: str  # as declared by the sender
    data: bytes

    @property
    def safe_type(self) -> str:
        declared = self.content_type.lower()
        if declared not in SAFE_TYPES:
            return "application/octet-stream"
        return f"{declared}; charset=utf-8" if declared.startswith("text/") else declared


def attachment(raw: bytes, index: int) -> AttachmentData | None:
    """Attachment number ``index`` (0-based) of ``raw``, or None when there is no such one."""
    check_limits(raw)
    msg = message_from_bytes(raw, policy=compat32)
    seen = 0
    for part in msg.walk():
        if part.is_multipart():
            continue
        ctype = part.get_content_type()
        disposition = (part.get("content-disposition") or "").split(";")[0].strip().lower()
        filename = part.get_filename()
        if not (disposition == "attachment" or filename or not ctype.startswith("text/")):
            continue
        if part is msg and ctype.startswith("text/"):
            continue
        if seen == index:
            payload = part.get_payload(decode=True)
            name = decode_header_value(filename) if filename else ""
            return AttachmentData(name, ctype, payload if isinstance(payload, bytes) else b"")
        seen += 1
    return None
