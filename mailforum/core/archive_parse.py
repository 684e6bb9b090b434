"""The parser process of ``import-mbox`` (``core.archive``): parse and date many messages, never raise.

A module of its own so that the process, when it is started by ``spawn`` (a forked one
has everything already), imports only the mail parser: importing ``core.archive`` would
load SQLAlchemy and the models, which cost that process 0.6 s of CPU before its first
message.
"""

from __future__ import annotations

import datetime as dt
import os
import re
import threading
import time
import traceback

from mailforum.mail.parse import (
    ParsedMessage,
    Unprocessable,
    envelope_date,
    header_date,
    parse,
    received_date,
)

Parsed = tuple[ParsedMessage | None, str | None]  # the parsed message, or why it cannot be
Dated = tuple[ParsedMessage | None, str | None, dt.datetime | None]  # ... and its ``archive_date``


def parse_chunk(raws: list[bytes]) -> list[Parsed]:
    """Parse many messages; never raises (runs in the parser process of an import)."""
    out: list[Parsed] = []
    for raw in raws:
        try:
            out.append((parse(raw), None))
        except Unprocessable as exc:
            out.append((None, f"unprocessable: {exc}"))
        except Exception:
            out.append((None, traceback.format_exc(limit=8)))
    return out


def parse_entries(entries: list[bytes]) -> list[Dated]:
    """Parse many archive entries (perhaps with their mbox From_ lines), and date each
    (``archive_date``); never raises. The import's parser process does this work, so
    the process that stores spends no time on it."""
    results = parse_chunk([split_envelope(entry)[1] for entry in entries])
    return [
        (message, error, archive_date(entry))
        for entry, (message, error) in zip(entries, results, strict=True)
    ]


_ENVELOPE = re.compile(rb"From (?![ \t]*:)")  # an mbox From_ line, not a "From :" header


def split_envelope(entry: bytes) -> tuple[bytes, bytes]:
    """(mbox From_ line, message) of an archive entry; the line is b"" when there is none."""
    if not _ENVELOPE.match(entry):
        return b"", entry
    line, _, message = entry.partition(b"\n")
    return line.rstrip(b"\r"), message


def archive_date(entry: bytes) -> dt.datetime | None:
    """When an archived message was written: its Date, else its From_ line, else its newest
    Received: (RELIABILITY B51); None when none of them says."""
    line, raw = split_envelope(entry)
    return header_date(raw) or envelope_date(line) or received_date(raw)


def watch_parent(parent: int, every: float = 0.5) -> None:
    """End this process when ``parent`` does (the parser process's initializer).

    A forked parser holds its own copy of the pipe its work comes down, so it would never
    see that pipe close: after a kill -9 of the import it would wait forever, an orphan.
    """

    def watch() -> None:
        while os.getppid() == parent:
            time.sleep(every)
        os._exit(1)

    threading.Thread(target=watch, name="watch-parent", daemon=True).start()
