"""A member's data and its erasure: ``members data`` and ``members forget``.

``data`` gathers every row that names an address, from every table of the schema
(``Base.metadata``, so a table added later is covered without touching this module):
rows whose address-like column (``ADDRESS_COLUMNS``) is the address, the rows of its
memberships (``member_id``), and the spool entries it sent. Raw messages are given by
size, not bytes.

``forget`` erases: memberships and everything hanging on them (topic and tag
settings, the outbox rows addressed to it, sent or not), every row of a table with
an ``address`` column (moderator and owner roles, allowed senders, confirmations and
whatever later tables key on the address: sessions, preferences), its form-limit
counters; its posts show a former member (``FORMER_NAME``, no address), or with
``remove_posts`` become tombstones with no text. Last, a sweep over every text, JSON
and binary column of every table replaces what still holds the address (a quote
in another member's post, the raw copy of a message, the spool, the audit log) with
``FORMER_ADDRESS``, and the From line of their own raw messages is rewritten, so the
archive's raw copies and exports no longer name them. What this cannot reach
(database backups, mail already delivered, the MTA's logs) is in docs/privacy.md.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import hmac
import json
import re
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

from sqlalchemy import JSON, LargeBinary, String, Table, delete, func, or_, select, update
from sqlalchemy.orm import Session

from mailforum.db import queries
from mailforum.db.base import Base
from mailforum.db.models import FormHit, MailingList, Member, OutboxEntry, Post, PostStatus, SpoolEntry
from mailforum.errors import InvalidInput

FORMER_NAME = "former member"
FORMER_ADDRESS = "former-member@invalid"
# Columns that hold one address, compared whole (lower case).
ADDRESS_COLUMNS = ("address", "author_address", "recipient", "mail_from", "actor", "target", "updated_by")
BATCH = 500
_FROM_HEADER = re.compile(rb"^From:[^\r\n]*(?:\r?\n[ \t][^\r\n]*)*", re.I | re.M)


def _normal(address: str) -> str:
    address = address.strip().lower()
    if "@" not in address or any(c.isspace() for c in address) or len(address) > 320:
        raise InvalidInput(f"not an email address: {address[:80]!r}")
    return address


def _value(value: Any) -> Any:
    if isinstance(value, dt.datetime):
        return value.isoformat()
    if isinstance(value, bytes | memoryview):
        return {"bytes": len(value)}
    return value


def _row(row: Any, names: dict[tuple[str, int], str]) -> dict[str, Any]:
    out = {}
    for name, raw in row._mapping.items():
        value = _value(raw)
        out[name] = value
        if name in ("list_id", "tag_id") and value is not None:
            label = names.get((name, value))
            if label is not None:
                out[name[:-3]] = label
    return out


def _labels(session: Session) -> dict[tuple[str, int], str]:
    from mailforum.db.models import Tag

    names: dict[tuple[str, int], str] = {}
    for list_id, name in session.execute(select(MailingList.id, MailingList.name)):
        names[("list_id", list_id)] = name
    for tag_id, name in session.execute(select(Tag.id, Tag.name)):
        names[("tag_id", tag_id)] = name
    return names


def data(session: Session, address: str) -> dict[str, Any]:
    """Everything stored about ``address``, table by table (empty tables left out)."""
    address = _normal(address)
    member_ids = list(session.scalars(select(Member.id).where(func.lower(Member.address) == address)))
    names = _labels(session)
    tables: dict[str, list[dict[str, Any]]] = {}
    for table in Base.metadata.sorted_tables:
        conditions = [func.lower(table.c[name]) == address for name in ADDRESS_COLUMNS if name in table.c]
        if "member_id" in table.c and member_ids:
            conditions.append(table.c.member_id.in_(member_ids))
        if not conditions:
            continue
        # Raw messages by size (the export gives them whole): never their bytes in a report.
        columns = [func.length(c).label(f"{c.name}_bytes") if c.name == "raw" else c for c in table.columns]
        rows = session.execute(select(*columns).where(or_(*conditions)).order_by(*table.primary_key.columns))
        found = [_row(row, names) for row in rows]
        if found:
            tables[table.name] = found
    lists = sorted({r["list"] for rows in tables.values() for r in rows if "list" in r})
    return {"address": address, "lists": lists, "tables": tables}


@dataclass
class Forgotten:
    memberships: int = 0
    rows_deleted: dict[str, int] = field(default_factory=dict)
    posts: int = 0
    posts_removed: int = 0
    rewritten: dict[str, int] = field(default_factory=dict)


def _form_key(secret_key: str, scope: str, key: str) -> str | None:
    """The form-limit counter key of ``key`` (web/forms.RateLimiter), or None with no site secret."""
    if not secret_key:
        return None
    limits = hmac.new(secret_key.encode(), b"mailforum web limits", hashlib.sha256).digest()
    return hmac.new(limits, f"{scope}\0{key}".encode(), hashlib.sha256).hexdigest()[:32]


def forget(session: Session, address: str, secret_key: str, remove_posts: bool = False) -> Forgotten:
    """Erase ``address`` (see the module doc); in the caller's transaction."""
    address = _normal(address)
    done = Forgotten()
    member_ids = list(session.scalars(select(Member.id).where(func.lower(Member.address) == address)))
    done.memberships = len(member_ids)
    names = {n for n in session.scalars(select(Member.display_name).where(Member.id.in_(member_ids))) if n}
    names |= {
        n
        for n in session.scalars(
            select(Post.author_name).where(func.lower(Post.author_address) == address).distinct()
        )
        if n
    }

    def deleted(table: Table, *where: Any) -> None:
        result = session.execute(delete(table).where(*where))
        count = int(result.rowcount or 0)  # type: ignore[attr-defined]
        if count:
            done.rows_deleted[table.name] = done.rows_deleted.get(table.name, 0) + count

    # What hangs on the memberships first (every table with a member_id), then what names the address.
    tables = list(reversed(Base.metadata.sorted_tables))
    deleted(Base.metadata.tables["outbox"], func.lower(OutboxEntry.recipient) == address)
    for table in tables:
        if "member_id" in table.c and member_ids and table.name != "members":
            deleted(table, table.c.member_id.in_(member_ids))
    for table in tables:
        if "address" in table.c:
            deleted(table, func.lower(table.c.address) == address)
    form_key = _form_key(secret_key, "address", address)
    if form_key is not None:
        deleted(Base.metadata.tables["form_hits"], FormHit.key == form_key)

    # Their posts: a former member's, or tombstones.
    own = list(session.scalars(select(Post).where(func.lower(Post.author_address) == address)))
    for post in own:
        post.author_address, post.author_name = "", FORMER_NAME
        if remove_posts and post.status != PostStatus.PLACEHOLDER.value:
            post.status = PostStatus.REMOVED.value
            post.hold_reason = queries.ERASED
            post.text_body, post.html_body, post.attachments, post.raw = "", None, [], None
            done.posts_removed += 1
        elif post.raw:
            post.raw = _FROM_HEADER.sub(f"From: {FORMER_NAME} <{FORMER_ADDRESS}>".encode(), post.raw, count=1)
    done.posts = len(own)
    for entry in session.scalars(select(SpoolEntry).where(func.lower(SpoolEntry.mail_from) == address)):
        entry.raw = _FROM_HEADER.sub(f"From: {FORMER_NAME} <{FORMER_ADDRESS}>".encode(), entry.raw, count=1)
    session.flush()
    # Topic counts do not change (the posts stay) unless removed.
    if remove_posts and own:
        from mailforum.core import threads, topics

        for topic_id in {p.topic_id for p in own}:
            topics.recount(session, threads.live_topic(session, topic_id))
    for table, count in sweep(session, address, names).items():
        done.rewritten[table] = count
    return done


def _pattern(address: str) -> re.Pattern[str]:
    """The address as a whole word: not the tail of a longer one ("bob@x" is in "jimbob@x")."""
    return re.compile(rf"(?<![\w.+=-]){re.escape(address)}(?![\w-]|\.\w)", re.I)


def _raw_pattern(address: str) -> re.Pattern[bytes]:
    return re.compile(rb"(?<![\w.+=-])" + re.escape(address.encode()) + rb"(?![\w-]|\.\w)", re.I)


def _replace_json(value: Any, pattern: re.Pattern[str]) -> Any:
    if isinstance(value, str):
        return pattern.sub(FORMER_ADDRESS, value)
    if isinstance(value, list):
        return [_replace_json(v, pattern) for v in value]
    if isinstance(value, dict):
        return {_replace_json(k, pattern): _replace_json(v, pattern) for k, v in value.items()}
    return value


def _text_columns(table: Table) -> Iterator[tuple[str, str]]:
    """(column name, "text" | "json" | "bytes") for the columns that can hold an address."""
    for column in table.columns:
        kind = column.type
        impl = getattr(kind, "impl", None)
        if isinstance(kind, JSON) or isinstance(impl, JSON):
            yield column.name, "json"
        elif isinstance(kind, LargeBinary) or isinstance(impl, LargeBinary):
            yield column.name, "bytes"
        elif isinstance(kind, String):  # Text is a String
            yield column.name, "text"


def traces(session: Session, address: str) -> list[tuple[str, str, tuple[Any, ...]]]:
    """(table, column, primary key) of every value that still holds ``address`` (tests, `forget`)."""
    return [(t, c, k) for t, c, k, _ in _scan(session, _normal(address))]


def _scan(session: Session, address: str) -> Iterator[tuple[str, str, tuple[Any, ...], Any]]:
    """Every value of every table that holds ``address`` as a whole address, with its row's key."""
    pattern, raw_pattern = _pattern(address), _raw_pattern(address)

    def holds(value: Any) -> bool:
        if isinstance(value, bytes | memoryview):
            return raw_pattern.search(bytes(value)) is not None
        if isinstance(value, str):
            return pattern.search(value) is not None
        return pattern.search(json.dumps(value, ensure_ascii=False)) is not None

    for table in Base.metadata.sorted_tables:
        keys = list(table.primary_key.columns)
        for name, kind in _text_columns(table):
            column = table.c[name]
            if kind == "text":  # the database finds the candidates; the pattern decides
                stmt = select(*keys, column).where(func.lower(column).contains(address, autoescape=True))
                for row in session.execute(stmt):
                    if holds(row[-1]):
                        yield table.name, name, tuple(row[:-1]), row[-1]
                continue
            last = None
            while True:  # JSON and bytes: read in batches by primary key, compared here
                stmt = select(*keys, column).where(column.is_not(None)).order_by(*keys).limit(BATCH)
                if last is not None:
                    stmt = stmt.where(keys[0] > last)
                rows = session.execute(stmt).all()
                for row in rows:
                    if holds(row[-1]):
                        yield table.name, name, tuple(row[:-1]), row[-1]
                if len(rows) < BATCH or len(keys) != 1:
                    break
                last = rows[-1][0]


def _named(address: str, names: set[str]) -> tuple[re.Pattern[str] | None, re.Pattern[bytes] | None]:
    """``Name <address>`` (an attribution line, a header) for the names the address went by."""
    if not names:
        return None, None
    alternatives = "|".join(re.escape(n) for n in sorted(names, key=len, reverse=True))
    text = rf"\"?(?:{alternatives})\"?\s*<{re.escape(address)}>"
    return re.compile(text, re.I), re.compile(text.encode(), re.I)


def sweep(session: Session, address: str, names: set[str] | None = None) -> dict[str, int]:
    """Replace every remaining occurrence of ``address`` in any text, JSON or binary value
    (with the name it went by, where it stands as ``Name <address>``)."""
    pattern, raw_pattern = _pattern(address), _raw_pattern(address)
    named, raw_named = _named(address, names or set())
    former = f"{FORMER_NAME} <{FORMER_ADDRESS}>"
    counts: dict[str, int] = {}
    tables = {t.name: t for t in Base.metadata.sorted_tables}
    for table_name, column_name, key, value in list(_scan(session, address)):
        table = tables[table_name]
        where = [k == v for k, v in zip(table.primary_key.columns, key, strict=True)]
        if isinstance(value, str):
            new: Any = pattern.sub(FORMER_ADDRESS, named.sub(former, value) if named else value)
        elif isinstance(value, bytes | memoryview):
            value = bytes(value)
            new = raw_pattern.sub(
                FORMER_ADDRESS.encode(), raw_named.sub(former.encode(), value) if raw_named else value
            )
        else:
            new = _replace_json(value, pattern)
        session.execute(update(table).where(*where).values({column_name: new}))
        counts[table_name] = counts.get(table_name, 0) + 1
    return counts
