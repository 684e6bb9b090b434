"""Declarative base: naming convention for constraints and the type map.

The PostgreSQL-only types (BYTEA, JSONB) are chosen when a dialect asks for them
(``load_dialect_impl``), not at import: importing ``sqlalchemy.dialects.postgresql``
pulls in every PostgreSQL driver's dialect and asyncio's, ~20-30 ms of each command's start
on SQLite.
"""

from __future__ import annotations

import datetime as dt
from typing import Any, ClassVar

from sqlalchemy import JSON, BigInteger, DateTime, Dialect, Integer, LargeBinary, MetaData, Text
from sqlalchemy.orm import DeclarativeBase
from sqlalchemy.types import TypeDecorator, TypeEngine

# Stable constraint names, so Alembic migrations can name what they alter.
NAMING = {
    "ix": "ix_%(table_name)s_%(column_0_N_name)s",
    "uq": "uq_%(table_name)s_%(column_0_N_name)s",
    "ck": "ck_%(table_name)s_%(constraint_name)s",
    "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
    "pk": "pk_%(table_name)s",
}

# 64-bit keys on PostgreSQL; SQLite needs INTEGER for a rowid alias (autoincrement).
Id = BigInteger().with_variant(Integer(), "sqlite")


class BlobType(TypeDecorator[bytes]):
    """Bytes: BYTEA on PostgreSQL, BLOB elsewhere."""

    impl = LargeBinary
    cache_ok = True

    def load_dialect_impl(self, dialect: Dialect) -> TypeEngine[Any]:
        if dialect.name == "postgresql":
            from sqlalchemy.dialects.postgresql import BYTEA  # loaded with the dialect anyway

            return dialect.type_descriptor(BYTEA())
        return dialect.type_descriptor(LargeBinary())


class JsonType(TypeDecorator[Any]):
    """A JSON document: JSONB on PostgreSQL, JSON text elsewhere."""

    impl = JSON
    cache_ok = True
    should_evaluate_none = True  # as JSON(): None is stored as JSON null, never SQL NULL

    def load_dialect_impl(self, dialect: Dialect) -> TypeEngine[Any]:
        if dialect.name == "postgresql":
            from sqlalchemy.dialects.postgresql import JSONB  # loaded with the dialect anyway

            return dialect.type_descriptor(JSONB())
        return dialect.type_descriptor(JSON())


Blob = BlobType()
Json = JsonType()


class UTCDateTime(TypeDecorator[dt.datetime]):
    """Aware UTC datetimes in and out, on SQLite (which stores naive text) as on PostgreSQL."""

    impl = DateTime(timezone=True)
    cache_ok = True

    def process_bind_param(self, value: dt.datetime | None, dialect: Dialect) -> dt.datetime | None:
        if value is None:
            return None
        if value.tzinfo is None:
            raise ValueError("naive datetime given to a UTC column")
        value = value.astimezone(dt.UTC)
        return value.replace(tzinfo=None) if dialect.name == "sqlite" else value

    def process_result_value(self, value: dt.datetime | None, dialect: Dialect) -> dt.datetime | None:
        if value is None:
            return None
        return value.replace(tzinfo=dt.UTC) if value.tzinfo is None else value.astimezone(dt.UTC)


class Base(DeclarativeBase):
    metadata = MetaData(naming_convention=NAMING)
    type_annotation_map: ClassVar[dict[Any, Any]] = {
        dt.datetime: UTCDateTime(),
        str: Text(),
        bytes: Blob,
        dict[str, Any]: Json,
        list[Any]: Json,
    }
