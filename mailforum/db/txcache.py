"""Typed entries of ``Session.info``: what a transaction remembers between calls.

``Session.info`` is a plain dict, so what one function stores there and another
reads back would be unchecked. A ``TxCache`` names one entry and the type of its
value; every access goes through it, typed. The entries live as long as the
session (one transaction here) unless ``clear``-ed, e.g. after a rollback.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Generic, TypeVar

from sqlalchemy.orm import Session

T = TypeVar("T")


class TxCache(Generic[T]):
    """One ``Session.info`` entry: its key, and how to make it when first needed."""

    __slots__ = ("factory", "key")

    def __init__(self, key: str, factory: Callable[[], T]) -> None:
        self.key = key
        self.factory = factory

    def get(self, session: Session) -> T | None:
        """The entry, or None when this transaction has not made it."""
        value: T | None = session.info.get(self.key)
        return value

    def setdefault(self, session: Session) -> T:
        """The entry, made empty on first use."""
        value: T | None = session.info.get(self.key)
        if value is None:
            value = session.info[self.key] = self.factory()
        return value

    def clear(self, session: Session) -> None:
        session.info.pop(self.key, None)
