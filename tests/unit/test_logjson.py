"""[logging] format = "json": one JSON object per record, exceptions included."""

from __future__ import annotations

import json
import logging

from mailforum.logjson import JsonFormatter


def test_a_record_becomes_one_line_of_json_with_its_exception() -> None:
    try:
        raise ValueError("boom")
    except ValueError:
        record = logging.getLogger("mailforum.test").makeRecord(
            "mailforum.test",
            logging.ERROR,
            __file__,
            1,
            "failed for %s\nsecond line",
            ("dev",),
            exc_info=True,
        )
        import sys

        record.exc_info = sys.exc_info()
    line = JsonFormatter().format(record)
    assert "\n" not in line
    entry = json.loads(line)
    assert entry["level"] == "ERROR" and entry["logger"] == "mailforum.test"
    assert entry["message"] == "failed for dev\nsecond line"
    assert "ValueError: boom" in entry["exception"] and entry["time"].endswith("+00:00")
