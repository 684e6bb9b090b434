"""The exception tree of mailforum.

Everything a user or a peer can cause is a ``MailforumError``; the CLI prints its
message as one line, and the ingest server turns an ``IngestError`` into its SMTP reply.

    MailforumError
    ├── ConfigError          bad or missing configuration (names the key or file)
    ├── DatabaseError        the database cannot be reached or is not initialised
    ├── NotFound             an unknown list, member, spool entry … named by the user
    ├── InvalidInput         a bad address or argument given on the command line
    └── IngestError          a message or envelope refused during the SMTP session
        ├── RecipientRefused     550 5.1.1 / 550 5.7.1 at RCPT
        ├── MessageRejected      5xx after DATA: a permanent judgement (loop, hops, header size)
        └── TemporaryFailure     4xx: try again later (storage trouble, limits)
"""

from __future__ import annotations


class MailforumError(Exception):
    """Base of every error that mailforum reports to a user or a peer."""


class ConfigError(MailforumError):
    """The configuration file is missing, unreadable or has a bad value."""


class DatabaseError(MailforumError):
    """The database cannot be reached, or its schema is missing or too old."""


class NotFound(MailforumError):
    """Something named by the user (a list, a member, a spool entry) does not exist."""


class InvalidInput(MailforumError):
    """An argument or address given by the user is not valid."""


class IngestError(MailforumError):
    """A refusal during the SMTP session; ``smtp_reply`` is the full reply line."""

    smtp_reply = "451 4.3.0 Temporary failure, please try again later"

    def __init__(self, message: str = "", smtp_reply: str | None = None) -> None:
        super().__init__(message or (smtp_reply or self.smtp_reply))
        if smtp_reply is not None:
            self.smtp_reply = smtp_reply


class RecipientRefused(IngestError):
    smtp_reply = "550 5.1.1 No such list here"


class MessageRejected(IngestError):
    smtp_reply = "550 5.7.1 Message refused"


class TemporaryFailure(IngestError):
    smtp_reply = "451 4.3.0 Temporary failure, please try again later"
