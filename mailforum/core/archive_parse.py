"""The parser process of ``import-mbox`` (``core.archive``): parse many messages, never raise.

A module of its own so that the process, started by ``spawn``, imports only the mail
parser: importing ``core.archive`` would load the whole processing path (routing, every
use case, SQLAlchemy's models), which cost that process 0.6 s of CPU before its first
message.
"""

from __future__ import annotations

import os
import threading
import time
import traceback

from mailforum.mail.parse import ParsedMessage, Unprocessable, parse

Parsed = tuple[ParsedMessage | None, str | None]  # the parsed message, or why it cannot be


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
