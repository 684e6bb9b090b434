"""A post's ancestors, read up the stored thread: what In-Reply-To and References say.

Every copy of a post carries In-Reply-To and References rebuilt from the thread we
stored (``parent_id``), never from the sender's own headers: a post copy
(``core.copies``) and a post embedded in a MIME digest (``core.digest_content``) both
ask here. The walk goes a level of the tree at a time for all posts at once, so a
digest of 500 posts costs as many queries as its deepest thread is deep, and one post
as many as it has ancestors.
"""

from __future__ import annotations

from collections.abc import Mapping

from sqlalchemy import select
from sqlalchemy.orm import Session

from mailforum.batching import chunks
from mailforum.db.models import Post

MAX_ANCESTORS = 200  # a deeper thread is cut at the root's end: headers stay bounded

Known = Mapping[int, tuple[str, int | None]]  # post id → (its Message-ID, its parent's id)


def ancestors(session: Session, posts: Known) -> dict[int, tuple[str, ...]]:
    """For each post (id → its Message-ID and parent id), its ancestors' Message-IDs, root first.

    At most ``MAX_ANCESTORS`` each; a cycle in the stored parents or a parent gone
    ends the chain there.
    """
    known = dict(posts)
    wanted = {parent for _, parent in posts.values() if parent is not None}
    for _ in range(MAX_ANCESTORS):
        wanted -= known.keys()
        if not wanted:
            break
        for chunk in chunks(sorted(wanted), 1000):
            rows = session.execute(select(Post.id, Post.message_id, Post.parent_id).where(Post.id.in_(chunk)))
            known.update((pid, (mid, parent)) for pid, mid, parent in rows)
        wanted = {parent for pid in wanted if pid in known and (parent := known[pid][1]) is not None}
    return {post_id: _chain(known, post_id, parent) for post_id, (_, parent) in posts.items()}


def _chain(known: Known, post_id: int, parent: int | None) -> tuple[str, ...]:
    chain: list[str] = []
    seen = {post_id}
    while parent is not None and parent not in seen and len(chain) < MAX_ANCESTORS:
        seen.add(parent)
        if parent not in known:
            break
        message_id, parent = known[parent]
        chain.append(message_id)
    return tuple(reversed(chain))
