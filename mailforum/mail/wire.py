"""A message's SMTP DATA bytes made ahead of sending, for the parts many copies share.

Before the relay takes a message it needs CRLF line ends, dot-stuffing (RFC 5321
§4.5.2: a line that starts with ``.`` gets another) and the final ``CRLF . CRLF``.
``runners.relay_client.wire_data`` does that per copy: five passes over each 85 kB
digest, measured as a fifth of the CPU the delivery worker spends on 10,000 digests. A
digest's shared parts are the same for every member, so ``mail.digest`` makes them
ready once (``stuff``) and joins them with the few personal bytes per copy into a
``WireData``, which the relay client sends as it is.

A piece is stuffed as the part of a message it will be: whether it starts a line
depends on what precedes it, so the caller says (``line_start``). Pieces that end in a
lone CR or start with a lone LF would join differently on their own; the callers'
pieces never do (the digest builders write CRLF, personal parts are printable ASCII).
"""

from __future__ import annotations

import re

_LINE_ENDS = re.compile(rb"\r\n|\r|\n")
END = b".\r\n"  # the end of DATA, after a message that ends in CRLF


class WireData(bytes):
    """A whole message already in DATA form: CRLF line ends, dot-stuffed, ending in
    ``CRLF . CRLF``. ``relay_client.wire_data`` passes it through unchanged; anything that
    rewrites the message (DKIM signing) must use the plain bytes instead."""


def stuff(piece: bytes, line_start: bool) -> bytes:
    """``piece`` with CRLF line ends and dot-stuffed, where it starts a line if ``line_start``.

    Returns ``piece`` itself when nothing changes (the usual case: no memory twice)."""
    lines = piece.count(b"\n")
    if piece.count(b"\r\n") != lines or piece.count(b"\r") != lines:
        piece = _LINE_ENDS.sub(b"\r\n", piece)
    if b"\n." in piece:
        piece = piece.replace(b"\n.", b"\n..")
    if line_start and piece.startswith(b"."):
        piece = b"." + piece
    return piece


def wire(message: bytes) -> WireData:
    """The whole ``message`` in DATA form (what the relay client makes of plain bytes)."""
    if isinstance(message, WireData):
        return message
    data = stuff(message, True)
    return WireData(data + (END if data.endswith(b"\r\n") else b"\r\n" + END))


def message(data: bytes) -> bytes:
    """The message a ``WireData`` carries (plain bytes are returned as they are): for a
    DKIM signer, a test or a benchmark that needs the message rather than the wire."""
    if not isinstance(data, WireData):
        return data
    body = bytes(data[: -len(END)])
    body = body.replace(b"\r\n..", b"\r\n.")
    return body[1:] if body.startswith(b"..") else body
