"""Named crash points for the kill -9 tests (RELIABILITY H3).

``MAILFORUM_CRASH_AT=name:n`` makes the process SIGKILL itself the n-th time it
reaches ``point(name)``; unset (always, outside tests) a point costs one dict lookup.
Points: after_raw_commit, before_250_write, after_post_insert.
"""

from __future__ import annotations

import os
import signal
import threading

_TARGET: dict[str, int] = {}
_lock = threading.Lock()

_spec = os.environ.get("MAILFORUM_CRASH_AT", "")
if _spec:
    _name, _, _count = _spec.partition(":")
    _TARGET[_name] = int(_count or "1")


def point(name: str) -> None:
    if name not in _TARGET:
        return
    with _lock:
        _TARGET[name] -= 1
        if _TARGET[name] <= 0:
            os.kill(os.getpid(), signal.SIGKILL)
