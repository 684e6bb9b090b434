"""Shared steps for the outbound tests: store a post through the real processing path, deliver, look."""

from __future__ import annotations

import asyncio
import email
import email.policy
from dataclasses import replace
from email.message import EmailMessage
from typing import Any

from sqlalchemy import select

from mailforum.config import Config
from mailforum.core import routing
from mailforum.db import outbox
from mailforum.db.models import OutboxEntry, Post, Topic, TopicSubscription, utcnow
from mailforum.mail.parse import parse
from mailforum.runners.delivery import DeliveryWorker
from tests.helpers import DOMAIN, Site

LIST = f"dev@{DOMAIN}"


def store(site: Site, raw: bytes, rcpt: str = LIST, mail_from: str | None = None) -> list[str]:
    """Process one message as the spool worker would (policy, threading, fan-out); returns summaries."""
    parsed = parse(raw)
    now = utcnow()
    with site.db.session() as session:
        outcomes = routing.process(
            session,
            site.config,
            parsed,
            raw,
            mail_from if mail_from is not None else parsed.from_address,
            (rcpt,),
            None,
            now,
            now,
        )
        return [o.summary for o in outcomes]


def deliver(config: Config, db: Any, relay: dict[str, Any] | None = None, **outbound: Any) -> Any:
    """``mailforum deliver --once`` in this process; returns the worker's stats."""
    if outbound:
        config = replace(config, outbound=replace(config.outbound, **outbound))
    if relay:
        config = replace(config, relay=replace(config.relay, **relay))
    worker = DeliveryWorker(db, config)
    return asyncio.run(worker.run(once=True))


def rows(site: Site) -> list[OutboxEntry]:
    with site.db.read_session() as session:
        return list(session.scalars(select(OutboxEntry).order_by(OutboxEntry.id)))


def settled(site: Site) -> bool:
    """No copy is waiting: everything is sent or failed."""
    with site.db.read_session() as session:
        return outbox.status(session, utcnow()).counts.get("pending", 0) == 0


def topic_of(site: Site, message_id: str) -> int:
    with site.db.read_session() as session:
        post = session.scalars(select(Post).where(Post.message_id == message_id)).one()
        return post.topic_id


def subscribe(site: Site, address: str, message_id: str, kind: str) -> None:
    """Watch or mute the topic of ``message_id`` for a member (what issue 5's commands will do)."""
    from mailforum.core.lists import find_member

    with site.db.session() as session:
        post = session.scalars(select(Post).where(Post.message_id == message_id)).one()
        member = find_member(session, post.list_id, address)
        assert member is not None
        existing = session.scalars(
            select(TopicSubscription).where(
                TopicSubscription.member_id == member.id, TopicSubscription.topic_id == post.topic_id
            )
        ).first()
        if existing is None:
            session.add(TopicSubscription(member_id=member.id, topic_id=post.topic_id, kind=kind))
        else:
            existing.kind = kind
        assert session.get(Topic, post.topic_id) is not None


def as_email(data: bytes) -> EmailMessage:
    msg = email.message_from_bytes(data, policy=email.policy.default)
    assert isinstance(msg, EmailMessage)
    return msg
