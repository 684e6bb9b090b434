"""Replies to a digest itself, not to one post's reply address (RELIABILITY S3d).

A reply to the digest (its Message-ID in In-Reply-To or References, or its subject
after "Re:") is never a new "Re: … digest" topic: ``core.posting`` threads it under the
one post the quoted text names (``quoted_post``), or tells the sender, politely and
once, how to reply to one post (``answer_digest_reply``; Discourse's
ReplyToDigestError).
"""

from __future__ import annotations

import datetime as dt
import logging
import re

from sqlalchemy.orm import Session

from mailforum.config import Config
from mailforum.core import answers, tokens
from mailforum.db.models import MailingList, Post, PostStatus
from mailforum.errors import MailforumError
from mailforum.mail.headers import msgid_list
from mailforum.mail.parse import ParsedMessage

log = logging.getLogger(__name__)

# The Message-ID digest_enqueue.message_id gives a digest.
_DIGEST_ID = re.compile(r"^<digest\.[a-z0-9._-]+\.\d+\.\d+-\d+@", re.I)
# Our subject ("[dev] Daily digest, 26 Nov 2026: …") after Re:/AW:/SV: — not any subject
# with "digest" in it, which a real topic may have.
_DIGEST_SUBJECT = re.compile(
    r"^\s*((re|aw|sv|antw|vs)\s*:\s*)+(\[[^\]]{1,80}\]\s*)?(daily digest, |weekly digest, week to )", re.I
)


def is_digest_reply(parsed: ParsedMessage, domain: str) -> bool:
    """The message answers one of our digests: its Message-ID in the headers, or its subject."""
    for mid in msgid_list(parsed.in_reply_to) + msgid_list(parsed.references):
        if _DIGEST_ID.match(mid) and mid.lower().endswith("@" + domain.lower() + ">"):
            return True
    return bool(_DIGEST_SUBJECT.match(parsed.subject or ""))


def quoted_post(
    session: Session, config: Config, mlist: MailingList, text: str, now: dt.datetime
) -> Post | None:
    """The one post the quoted text identifies: its reply address or its web link.

    Only quoted lines (">") count; when they name more than one post (the whole
    digest quoted), or none, there is no answer and the sender is told how to reply.
    """
    quoted = "\n".join(line for line in text.splitlines() if line.lstrip().startswith(">"))
    ids: set[int] = set()
    key = tokens.derive_key(config.site.secret_key)
    reply = re.compile(rf"{re.escape(mlist.name)}\+r-([a-z0-9-]{{10,200}})@", re.I)
    for token in reply.findall(quoted):
        try:
            _member, post_id = tokens.verify(key, tokens.REPLY, token, now, fields=2)
        except MailforumError:
            continue
        ids.add(post_id)
    link = re.compile(rf"/lists/{re.escape(mlist.name)}/posts/(\d+)\b")
    ids |= {int(n) for n in link.findall(quoted)}
    if len(ids) != 1:
        return None
    post = session.get(Post, ids.pop())
    if post is None or post.list_id != mlist.id or post.status != PostStatus.PUBLISHED.value:
        return None
    return post


def answer_digest_reply(
    session: Session,
    config: Config,
    mlist: MailingList,
    parsed: ParsedMessage,
    mail_from: str,
    now: dt.datetime,
) -> bool:
    """Tell the sender how to reply to one post (templates/digest/reply_help.*.j2).

    False when they must not be answered (RFC 3834: automated mail, lists, loops) or the
    daily answer cap for their address is reached (RELIABILITY I6).
    """
    reason = answers.should_answer(parsed, mail_from, config)
    if reason is not None:
        log.info("reply to a digest of %s not answered: %s", mlist.name, reason)
        return False
    context = {"original_subject": parsed.subject or "(no subject)"}
    return answers.answer(
        session,
        config,
        mlist,
        parsed.from_address,
        "digest/reply_help",
        context,
        now,
        in_reply_to=parsed.message_id,
    )
