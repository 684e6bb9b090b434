"""What became of a post written in the browser (core.webpost): the queries the web asks.

The web writes the message to the spool and answers once the processor stored it (or
after a short wait): published, it shows the topic; held, a page saying the post awaits
a moderator; not there yet, a page saying it is on its way.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass

from sqlalchemy import select
from sqlalchemy.orm import Session

from mailforum.db.models import Post, PostStatus, SpoolEntry, SpoolState
from mailforum.db.spool import WEB

__all__ = ["Fate", "WebPostFate", "fate"]


class Fate(enum.StrEnum):
    WAITING = "waiting"  # still in the spool (or being processed)
    PUBLISHED = "published"
    HELD = "held"  # awaits a moderator
    NOT_POSTED = "not-posted"  # processed, but no post came of it (discarded, parked)


@dataclass(frozen=True, slots=True)
class WebPostFate:
    fate: Fate
    author: str  # the spool entry's envelope sender: the member who wrote it
    post_id: int | None = None
    topic_id: int | None = None


def fate(session: Session, list_id: int, spool_id: int, message_id: str) -> WebPostFate | None:
    """The state of the web post spooled as ``spool_id``; None when there is no such web entry."""
    entry = session.execute(
        select(SpoolEntry.state, SpoolEntry.mail_from, SpoolEntry.protocol).where(SpoolEntry.id == spool_id)
    ).one_or_none()
    if entry is None or entry.protocol != WEB:
        return None
    post = session.execute(
        select(Post.id, Post.topic_id, Post.status).where(
            Post.list_id == list_id, Post.message_id == message_id
        )
    ).one_or_none()
    if post is not None:
        fates = {PostStatus.PUBLISHED.value: Fate.PUBLISHED, PostStatus.HELD.value: Fate.HELD}
        return WebPostFate(fates.get(post.status, Fate.NOT_POSTED), entry.mail_from, post.id, post.topic_id)
    if entry.state == SpoolState.NEW.value:
        return WebPostFate(Fate.WAITING, entry.mail_from)
    return WebPostFate(Fate.NOT_POSTED, entry.mail_from)
