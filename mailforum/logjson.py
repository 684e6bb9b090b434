"""Structured logs: ``[logging] format = "json"`` writes one JSON object per record.

Each line has ``time`` (UTC, ISO 8601), ``level``, ``logger``, ``message``, the process
id, and ``exception`` (the formatted traceback) when there is one, so a log collector
needs no parsing rules. The redaction of signed tokens (logsafe.py) works on the
message before it gets here, so JSON logs hide them as the text ones do.
"""

from __future__ import annotations

import datetime as dt
import json
import logging


class JsonFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        entry: dict[str, object] = {
            "time": dt.datetime.fromtimestamp(record.created, dt.UTC).isoformat(timespec="milliseconds"),
            "level": record.levelname,
            "logger": record.name,
            "message": record.getMessage(),
            "pid": record.process,
        }
        if record.exc_info:
            entry["exception"] = self.formatException(record.exc_info)
        return json.dumps(entry, ensure_ascii=False)


def use(kind: str) -> None:
    """Switch the root logger's handlers to ``kind`` ("json" or "text"; text leaves them as they are)."""
    if kind != "json":
        return
    for handler in logging.getLogger().handlers:
        handler.setFormatter(JsonFormatter())
