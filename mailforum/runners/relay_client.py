"""One connection to the relay: the stdlib's ``smtplib``, driven from worker threads.

Measured against Postfix's ``smtp-sink`` with 86 kB digests on this 2-core machine
(``bench/digest.py`` prints both): aiosmtplib sent about 320 a second however many
connections it had, stock ``smtplib`` in threads about 550, and ``smtplib`` with the DATA
below about 880. Both libraries spend most of their CPU in two regular expressions over
every message — line endings to CRLF, then dot-stuffing — and that runs under the GIL,
so more connections do not help. Our messages are canonical CRLF already
(``mail.compose``): three byte counts confirm it, so the line-end expression runs only for
a message that needs it, and dot-stuffing is one ``bytes.replace``. The bytes on the wire
are the ones either library would send.

When the relay offers PIPELINING (RFC 2920; Postfix does), MAIL, RCPT and DATA go out in
one write and their replies are read in order: one round trip instead of three, measured
1.3–1.5× more digests a second. The replies mean exactly what ``smtplib.sendmail`` makes
of them (the same exceptions), so the delivery worker does not know which path ran.

A ``RelayConnection`` is used by one sender at a time, from the delivery worker's own
threads (a whole chunk of copies per call from the event loop), so the loop never blocks
on the relay.

Relays close connections on their own: Postfix after ``smtpd_timeout`` (300 s) idle with
``421 4.4.2 … timeout exceeded``, and all of them on a reload or restart. A connection
knows whether the relay hung up (``hung_up``: its socket is readable while no reply is
due), how long it idled, and, after a failed ``send``, whether the message had been
handed over (``handed_over``: the final ``.`` was written). A failure before that is a
stale connection, not a verdict on the copy (RELIABILITY F19); one after it is the
duplicate window (F8).
"""

from __future__ import annotations

import re
import select
import smtplib
import ssl
import time
from typing import Any

from mailforum.config import RelayConfig
from mailforum.mail.wire import WireData

_LINE_ENDS = re.compile(rb"\r\n|\r|\n")


def wire_data(message: bytes) -> bytes:
    """The DATA payload of ``message``: CRLF line ends, dot-stuffed, ending in CRLF . CRLF."""
    if isinstance(message, WireData):  # made so ahead (mail.wire: a digest's shared parts once)
        return message
    lines = message.count(b"\n")
    if message.count(b"\r\n") != lines or message.count(b"\r") != lines:
        message = _LINE_ENDS.sub(b"\r\n", message)
    # Dot-stuffing (RFC 5321 4.5.2): a line starts at the beginning or after LF.
    message = message.replace(b"\n.", b"\n..")
    if message.startswith(b"."):
        message = b"." + message
    if not message.endswith(b"\r\n"):
        message += b"\r\n"
    return message + b".\r\n"


_PRINTABLE = re.compile(r"[\x21-\x7e]*")  # no space, no control character: nothing to inject
# A bare addr-spec ``smtplib.quoteaddr`` would give back unchanged: no quoting, comments,
# brackets or routes to parse, and at most one ``@``.
_PLAIN_ADDRESS = re.compile(r"[^\x00-\x20\x7f<>()\[\]\\,;:\"@]+@[^\x00-\x20\x7f<>()\[\]\\,;:\"@]+")


def _quoted(address: str) -> str:
    """``smtplib.quoteaddr(address)``, without its full RFC 5322 parse for the common case."""
    if _PLAIN_ADDRESS.fullmatch(address):
        return f"<{address}>"
    return smtplib.quoteaddr(address)


def _pipelined(client: _Client | _TLSClient, sender: str, recipient: str, data: bytes) -> None:
    """``client.sendmail(sender, [recipient], data)`` with MAIL, RCPT and DATA in one write.

    Each reply is read before the next is trusted: on a 421 the relay may close at once,
    so nothing more is read. A refused MAIL or RCPT must make the relay refuse DATA too
    (RFC 2920 section 3.1); one that answers 354 anyway gets an empty message, which it
    cannot deliver without recipients, and an RSET.
    """
    size = f" SIZE={len(data)}" if client.has_extn("size") else ""
    client.send(f"MAIL FROM:{_quoted(sender)}{size}\r\nRCPT TO:{_quoted(recipient)}\r\nDATA\r\n")
    code, reply = client.getreply()
    if code == 421:
        client.close()
        raise smtplib.SMTPSenderRefused(code, reply, sender)
    refused: smtplib.SMTPException | None = None
    if code != 250:
        refused = smtplib.SMTPSenderRefused(code, reply, sender)
    code, reply = client.getreply()
    if code == 421:
        client.close()
        raise refused or smtplib.SMTPRecipientsRefused({recipient: (code, reply)})
    if refused is None and code not in (250, 251):
        refused = smtplib.SMTPRecipientsRefused({recipient: (code, reply)})
    code, reply = client.getreply()
    if code == 421:
        client.close()
        raise refused or smtplib.SMTPDataError(code, reply)
    if code == 354 and refused is not None:
        client.send(b".\r\n")
        client.getreply()
    if refused is not None or code != 354:
        _reset(client)
        raise refused or smtplib.SMTPDataError(code, reply)
    _hand_over(client, data)
    code, reply = client.getreply()
    if code != 250:
        if code == 421:
            client.close()
        else:
            _reset(client)
        raise smtplib.SMTPDataError(code, reply)


def _reset(client: smtplib.SMTP) -> None:
    """RSET after a refusal; a relay that hung up meanwhile just closes the connection."""
    try:
        client.rset()
    except OSError:
        client.close()


def _hand_over(client: _Client | _TLSClient, data: bytes) -> None:
    """Write the message and its final dot; from here on the relay may have taken it."""
    client.send(wire_data(data))
    client.handed_over = True


class _FastData:
    """``smtplib.SMTP.data`` with ``wire_data`` instead of its unconditional regular expressions."""

    handed_over = False  # the final dot of the current transaction was written

    def data(self, msg: Any) -> tuple[int, bytes]:
        client: _Client = self  # type: ignore[assignment]
        client.putcmd("data")
        code, reply = client.getreply()
        if code != 354:
            raise smtplib.SMTPDataError(code, reply)
        _hand_over(client, msg.encode("ascii") if isinstance(msg, str) else msg)
        return client.getreply()


class _Client(_FastData, smtplib.SMTP):
    pass


class _TLSClient(_FastData, smtplib.SMTP_SSL):
    pass


class RelayConnection:
    """A connected, greeted (and, as configured, TLS-protected and logged-in) relay session."""

    def __init__(self, relay: RelayConfig, local_hostname: str) -> None:
        self.relay = relay
        self.local_hostname = local_hostname
        self._client: _Client | _TLSClient | None = None
        self.used = 0  # transactions begun on this connection
        self._last_used = time.monotonic()
        self._handed_over = False

    def open(self) -> None:
        """Connect, EHLO, STARTTLS and AUTH as ``[relay]`` says; raises what ``smtplib`` raises."""
        relay = self.relay
        client: _Client | _TLSClient
        if relay.tls:
            client = _TLSClient(
                relay.host,
                relay.port,
                local_hostname=self.local_hostname,
                timeout=relay.timeout,
                context=ssl.create_default_context(),
            )
        else:
            client = _Client(
                relay.host, relay.port, local_hostname=self.local_hostname, timeout=relay.timeout
            )
        try:
            client.ehlo_or_helo_if_needed()
            if relay.starttls:
                client.starttls(context=ssl.create_default_context())
                client.ehlo()
            if relay.username:
                client.login(relay.username, relay.password)
        except BaseException:
            client.close()
            raise
        self._client = client
        self.used = 0
        self._last_used = time.monotonic()

    @property
    def connected(self) -> bool:
        return self._client is not None and self._client.sock is not None

    @property
    def idle(self) -> float:
        """Seconds since the last transaction ended (or the connection was opened)."""
        return time.monotonic() - self._last_used

    @property
    def handed_over(self) -> bool:
        """Whether the last ``send`` wrote its final dot: a failure after it may be a duplicate."""
        return self._handed_over

    def fileno(self) -> int:
        """The socket's descriptor, for waiting on the relay hanging up (-1 when closed)."""
        sock = self._client.sock if self._client is not None else None
        return sock.fileno() if sock is not None else -1

    def hung_up(self) -> bool:
        """True when the relay spoke or closed while no reply was due: a ``421`` (idle
        timeout, shutdown) or EOF. Such a connection is dead; ``close`` it."""
        fd = self.fileno()
        if fd < 0:
            return True
        readable, _, _ = select.select([fd], [], [], 0)
        return bool(readable)

    def send(self, sender: str, recipient: str, data: bytes) -> None:
        """One transaction with one recipient. Raises ``smtplib``'s errors, ``OSError`` on I/O
        failure, and ``UnicodeEncodeError`` for an address this relay cannot take."""
        client = self._client
        if client is None or client.sock is None:
            raise smtplib.SMTPServerDisconnected("not connected to the relay")
        client.handed_over = False
        self.used += 1
        try:
            self._transaction(client, sender, recipient, data)
        finally:
            self._last_used = time.monotonic()
            self._handed_over = client.handed_over

    @staticmethod
    def _transaction(client: _Client | _TLSClient, sender: str, recipient: str, data: bytes) -> None:
        if not (sender.isascii() and recipient.isascii()):
            if not client.has_extn("smtputf8"):
                raise UnicodeEncodeError("ascii", recipient, 0, 1, "the relay does not offer SMTPUTF8")
            client.sendmail(sender, [recipient], data, mail_options=["SMTPUTF8"])
        elif client.has_extn("pipelining") and _PRINTABLE.fullmatch(sender + recipient):
            _pipelined(client, sender, recipient, data)
        else:
            client.sendmail(sender, [recipient], data)

    def quit(self) -> None:
        client, self._client = self._client, None
        if client is None or client.sock is None:
            return
        try:
            client.quit()
        except OSError:  # smtplib.SMTPException included
            client.close()

    def close(self) -> None:
        client, self._client = self._client, None
        if client is not None:
            client.close()
