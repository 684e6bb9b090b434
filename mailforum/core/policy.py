"""The posting policy: a table of small named rules, each returning a reason or None.

The first rule that fires decides. Actions after acceptance never bounce: a message
we will not publish is held (kept for a moderator, with its reason) or discarded
(kept in the spool with its reason, never answered) — RELIABILITY I8: a notice to a
possibly forged sender would be backscatter.
"""

from __future__ import annotations

import enum
import re
from collections.abc import Callable
from dataclasses import dataclass

from mailforum.config import Config
from mailforum.core import answers
from mailforum.core.authentication import verdict
from mailforum.db.models import MailingList, Member, PostingPolicy
from mailforum.mail.addresses import list_address
from mailforum.mail.parse import ParsedMessage


class Action(enum.StrEnum):
    ACCEPT = "accept"
    HOLD = "hold"
    DISCARD = "discard"


@dataclass(frozen=True, slots=True)
class Decision:
    action: Action
    rule: str = ""
    reason: str = ""


@dataclass(frozen=True, slots=True)
class PolicyContext:
    mlist: MailingList
    parsed: ParsedMessage
    raw: bytes
    mail_from: str  # the envelope sender, "" for a null sender
    sender: Member | None  # the member matching From, if any
    config: Config
    # Posts stored from this From address in this list in the last minute and the last day.
    recent_posts: tuple[int, int] = (0, 0)
    # The sender proved who they are another way (a signed per-recipient reply address).
    token_verified: bool = False
    # A moderator allowed this non-member to post (core/moderation.allow).
    allowed: bool = False
    # The sender has had a post published in this list before (for "moderate_first_post").
    posted_before: bool = True
    # The signed reply address the message came to was issued to another member.
    token_for_another: bool = False
    # Another post already holds this Message-ID (known once the message is placed in a thread).
    message_id_taken: bool = False
    # The ban (core/bans.py) that names the From or envelope sender, if any.
    ban: str = ""

    @property
    def domain(self) -> str:
        return self.config.site.domain


Check = Callable[[PolicyContext], str | None]


@dataclass(frozen=True, slots=True)
class Rule:
    name: str
    check: Check
    action: Action


def is_our_own_mail(ctx: PolicyContext) -> str | None:
    """Our loop marker or our List-Id came back (RELIABILITY B49, S10)."""
    # The whole address, not a part of another one ("dev@" is in "old-dev@").
    ours = re.compile(
        rf"(?<![\w.+=-]){re.escape(list_address(ctx.mlist.name, ctx.domain))}(?![\w-]|\.\w)", re.I
    )
    for header in ("x-loop", "x-mailforum-loop", "list-post"):
        if ours.search(ctx.parsed.header(header)):
            return f"{header} names this list"
    if f"<{ctx.mlist.name}.{ctx.domain}>".lower() in ctx.parsed.header("list-id").lower():
        return "List-Id of this list"
    return None


def _first_reason(ctx: PolicyContext, checks: tuple[answers.Check, ...]) -> str | None:
    """The first reason one of ``core.answers``' checks gives, read for this message."""
    incoming = answers.Incoming(ctx.parsed, ctx.mail_from, ctx.domain)
    return next((reason for check in checks if (reason := check(incoming))), None)


def is_automated(ctx: PolicyContext) -> str | None:
    """Mail no human wrote: bounces, ``Auto-Submitted``, bulk mail (RFC 3834 §2, B11)."""
    return _first_reason(ctx, (answers.null_sender, answers.auto_submitted, answers.bulk_precedence))


def is_vacation_or_report(ctx: PolicyContext) -> str | None:
    """Out-of-office notices and delivery reports that do not say ``Auto-Submitted`` (S10).

    Held rather than discarded: the subject of a human's post can look like one.
    """
    return _first_reason(ctx, (answers.vacation, answers.delivery_report))


def from_is_suspect(ctx: PolicyContext) -> str | None:
    """A From: that is not exactly one mailbox, or whose display name reads as another
    address, is never attributed to anyone (the CVE-2023-27043 family; see parse._sender)."""
    return ctx.parsed.from_problem or None


def is_banned(ctx: PolicyContext) -> str | None:
    """A sender an owner banned, by address, domain or pattern (core/bans.py)."""
    return f"banned sender ({ctx.ban})" if ctx.ban else None


def has_no_sender(ctx: PolicyContext) -> str | None:
    """No usable From: never let it bypass the sender checks (Mailman 3 #414, B21)."""
    return None if ctx.parsed.from_address else "no From address"


_ADMINISTRIVIA = re.compile(
    r"^\s*(un)?subscribe\b|^\s*remove me\b|^\s*(help|set digest|leave)\s*$", re.IGNORECASE
)


def is_administrivia(ctx: PolicyContext) -> str | None:
    """ "unsubscribe" sent to everyone instead of to -request (Mailman's administrivia, S24)."""
    lines = [line for line in ctx.parsed.text_body.splitlines() if line.strip()]
    if len(lines) > 5:
        return None
    for text in (ctx.parsed.subject, *lines[:2]):
        if _ADMINISTRIVIA.match(text):
            return f"looks like a command: {text.strip()[:40]!r}"
    return None


def member_not_verified(ctx: PolicyContext) -> str | None:
    """A post is attributed to a member only when the evidence holds (RELIABILITY S1, S2)."""
    authserv_id = ctx.config.security.authserv_id
    if not authserv_id or ctx.sender is None or ctx.token_verified:
        return None
    result = verdict(ctx.raw, authserv_id, ctx.parsed.from_address)
    return None if result.authenticated else f"From a member, not authenticated: {result.reason}"


def too_many_posts(ctx: PolicyContext) -> str | None:
    """A flood from one sender is held, not published (RELIABILITY S22; defaults 10/min, 200/day)."""
    minute, day = ctx.recent_posts
    limits = ctx.config.security
    if minute >= limits.post_rate_per_minute:
        return f"more than {limits.post_rate_per_minute} posts in a minute"
    if day >= limits.post_rate_per_day:
        return f"more than {limits.post_rate_per_day} posts in a day"
    return None


def sender_not_member(ctx: PolicyContext) -> str | None:
    if ctx.mlist.posting_policy == PostingPolicy.MEMBERS.value and ctx.sender is None and not ctx.allowed:
        return f"{ctx.parsed.from_address} is not a member"
    return None


def first_post(ctx: PolicyContext) -> str | None:
    """A member's first post waits for a moderator where the list asks for it."""
    if ctx.mlist.moderate_first_post and ctx.sender is not None and not ctx.posted_before:
        return "a member's first post is moderated on this list"
    return None


def list_is_moderated(ctx: PolicyContext) -> str | None:
    return "every post is moderated" if ctx.mlist.posting_policy == PostingPolicy.MODERATED.value else None


def reply_token_for_another(ctx: PolicyContext) -> str | None:
    """A reply address used by someone other than the member it was given to: a forwarded
    copy or a forged From is held for a moderator (RELIABILITY S3a/b)."""
    return "the reply address was issued to another member" if ctx.token_for_another else None


def message_id_reused(ctx: PolicyContext) -> str | None:
    """Another message already holds this Message-ID (RELIABILITY S20): the message is kept
    too, under its derived id, but a moderator sees it before anyone is notified."""
    return f"another post already has {ctx.parsed.message_id[:200]}" if ctx.message_id_taken else None


# Known only once the message is placed in a thread (core.threads.place): core.posting asks
# it alone then, of a message every other rule let through.
MESSAGE_ID_REUSED = Rule("message-id-reused", message_id_reused, Action.HOLD)

RULES: tuple[Rule, ...] = (
    Rule("loop", is_our_own_mail, Action.DISCARD),
    Rule("auto-submitted", is_automated, Action.DISCARD),
    Rule("banned", is_banned, Action.DISCARD),
    Rule("vacation", is_vacation_or_report, Action.HOLD),
    Rule("suspect-from", from_is_suspect, Action.HOLD),
    Rule("no-sender", has_no_sender, Action.HOLD),
    Rule("administrivia", is_administrivia, Action.HOLD),
    Rule("unverified-sender", member_not_verified, Action.HOLD),
    Rule("too-many-posts", too_many_posts, Action.HOLD),
    Rule("not-member", sender_not_member, Action.HOLD),
    Rule("first-post", first_post, Action.HOLD),
    Rule("moderated", list_is_moderated, Action.HOLD),
    Rule("reply-token", reply_token_for_another, Action.HOLD),
    MESSAGE_ID_REUSED,
)


def decide(ctx: PolicyContext, rules: tuple[Rule, ...] = RULES) -> Decision:
    for rule in rules:
        reason = rule.check(ctx)
        if reason:
            return Decision(rule.action, rule.name, reason)
    return Decision(Action.ACCEPT)
