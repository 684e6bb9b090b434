"""Cutting a sequence into chunks: one ``IN (…)`` of bounded size, one insert, one transaction."""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from itertools import islice
from typing import TypeVar

T = TypeVar("T")


def chunks(items: Iterable[T], size: int) -> Iterator[list[T]]:
    """``items`` in lists of ``size`` (the last one shorter), read lazily: a stream stays a stream."""
    if size < 1:
        raise ValueError(f"chunk size must be positive, not {size}")
    rest = iter(items)
    while chunk := list(islice(rest, size)):
        yield chunk
