"""Bounces: read them, trust only those that name a copy we sent, score, disable, warn, remove.

Evidence, strongest first (RELIABILITY S8, B47):

    verp      the bounce came to NAME-bounces+TOKEN@: the HMAC-checked token names the
              outbox row we sent, and that row went to a member of this list
              → the member's score grows (hard or soft, read from the report)
    quoted    no valid token, but flufl.bounce finds a failed address and the report
              quotes the Message-ID of a copy we sent to that very address recently
              → logged and noted in the spool outcome for the operator, but no score:
              Message-IDs are public (the archive shows them), so anyone could write it
    (else)    forged, foreign or unreadable → nothing changes; the reason is logged

Scoring (DESIGN: bounces): a hard bounce (5.x.x) adds ``hard_score``, a soft one
(4.x.x, "delayed") ``soft_score`` at most once a day; a score with no bounce for
``stale_days`` starts again from zero. At ``threshold`` delivery is disabled at
once and the first warning goes out; ``housekeeping`` sends the rest (``warnings``,
``warning_interval_days`` apart), then removes the member. A signed link (POST) or
mail to NAME+enable-TOKEN@ re-enables delivery. A relay's 5xx while sending a
post counts as a hard bounce (``relay_refused``).

The relay's 250 is not evidence that the mailbox works (a dead address bounces
later), so delivery does not lower the score; time does (``stale_days``).
"""

from __future__ import annotations

import datetime as dt
import email
import email.policy
import logging
import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from email.message import Message

import flufl.bounce
from sqlalchemy import func, select
from sqlalchemy.orm import Session

from mailforum import metrics
from mailforum.config import Config
from mailforum.core import notices, tokens
from mailforum.db.models import MailingList, Member, OutboxEntry, OutboxKind, OutboxState
from mailforum.errors import MailforumError
from mailforum.mail.addresses import list_address

log = logging.getLogger(__name__)

HARD = "hard"
SOFT = "soft"
_MSGID = re.compile(rb"^Message-ID:[ \t]*(<[^>\r\n]{1,250}>)", re.IGNORECASE | re.MULTILINE)


@dataclass(frozen=True, slots=True)
class Report:
    """What a bounce says: the failed addresses (lower case) and the Message-IDs it quotes."""

    hard: frozenset[str] = frozenset()
    soft: frozenset[str] = frozenset()
    quoted_ids: tuple[str, ...] = ()

    @property
    def kind(self) -> str | None:
        return HARD if self.hard else SOFT if self.soft else None


@dataclass(frozen=True, slots=True)
class Result:
    """What handling one bounce did; ``ignored`` bounces change nothing."""

    summary: str
    ignored: bool = False


def _addresses(found: Iterable[bytes | str]) -> frozenset[str]:
    out = set()
    for a in found:
        text = a.decode("utf-8", "replace") if isinstance(a, bytes) else str(a)
        text = text.strip().strip("<>").lower()
        if "@" in text and len(text) <= 320:
            out.add(text)
    return frozenset(out)


def _quoted_ids(msg: Message, raw: bytes) -> tuple[str, ...]:
    ids: list[str] = []
    for part in msg.walk():
        ctype = part.get_content_type()
        if ctype == "message/rfc822":
            inner = part.get_payload()
            for m in inner if isinstance(inner, list) else [inner]:
                if isinstance(m, Message) and m.get("Message-ID"):
                    ids.append(str(m.get("Message-ID")).strip())
        elif ctype == "text/rfc822-headers":
            payload = part.get_payload(decode=True)
            if isinstance(payload, bytes):
                ids += [m.decode("ascii", "replace") for m in _MSGID.findall(payload)]
    if not ids:  # non-standard formats quote the original in the text: look below our own headers
        _, _, body = raw.partition(b"\r\n\r\n") if b"\r\n\r\n" in raw else raw.partition(b"\n\n")
        ids = [m.decode("ascii", "replace") for m in _MSGID.findall(body)]
    return tuple(dict.fromkeys(i for i in ids if i.startswith("<")))


def read_report(raw: bytes) -> Report:
    """Parse a bounce with flufl.bounce (RFC 3464 DSNs and the common non-standard formats).

    Never raises: a report nobody can read is an empty Report (RELIABILITY B47).
    """
    try:
        msg = email.message_from_bytes(raw, policy=email.policy.compat32)
        temporary, permanent = flufl.bounce.all_failures(msg)
        hard = _addresses(permanent)
        soft = _addresses(temporary) - hard
        return Report(hard, soft, _quoted_ids(msg, raw))
    except Exception as exc:  # a parser bug on hostile input must not park the message
        log.warning("bounce could not be parsed: %s", type(exc).__name__)
        return Report()


def receive(
    session: Session,
    config: Config,
    mlist: MailingList,
    verp: str,
    raw: bytes,
    mail_from: str,
    now: dt.datetime,
) -> Result:
    """Handle one message to NAME-bounces[+VERP]@: score a member, or change nothing."""
    report = read_report(raw)
    if verp:
        row = _verp_row(session, config, mlist, verp, now)
        if row is not None:
            return _from_verp(session, config, mlist, row, report, mail_from, now)
        log.info("bounce for %s: VERP token not valid; reading it as a plain bounce", mlist.name)
    return _from_report(session, config, mlist, report, now)


def _verp_row(
    session: Session, config: Config, mlist: MailingList, verp: str, now: dt.datetime
) -> OutboxEntry | None:
    # The token is checked at verification time only; a token that expired since we sent the
    # copy is still ours, but bounces that late are stale anyway.
    try:
        (row_id,) = tokens.verify(tokens.derive_key(config.site.secret_key), tokens.VERP, verp, now, fields=1)
    except MailforumError:
        return None
    row = session.get(OutboxEntry, row_id)
    if row is None or row.list_id != mlist.id:
        return None
    return row


def _member_for(session: Session, mlist: MailingList, row: OutboxEntry) -> Member | None:
    """The member the copy went to, if it still is one and the address is unchanged."""
    if row.member_id is None:
        return None
    member = session.get(Member, row.member_id, with_for_update=True)
    if member is None or member.list_id != mlist.id or member.address.lower() != row.recipient.lower():
        return None
    return member


def _from_verp(
    session: Session,
    config: Config,
    mlist: MailingList,
    row: OutboxEntry,
    report: Report,
    mail_from: str,
    now: dt.datetime,
) -> Result:
    member = _member_for(session, mlist, row)
    if member is None:
        return Result(f"{mlist.name}: bounce for outbox {row.id}, not a member's copy; ignored", True)
    kind = report.kind
    if kind is None:
        # Vacation replies go to the envelope sender too; only a null-sender report counts.
        if mail_from:
            return Result(f"{mlist.name}: mail to a bounce address that is no bounce; ignored", True)
        kind = SOFT
    return Result(f"{mlist.name}: {score(session, config, mlist, member, kind, now)}")


def _from_report(
    session: Session, config: Config, mlist: MailingList, report: Report, now: dt.datetime
) -> Result:
    failed = report.hard | report.soft
    if not failed:
        log.info("bounce for %s: no failed address found (unknown format); ignored", mlist.name)
        return Result(f"{mlist.name}: unrecognised bounce; ignored", True)
    if not report.quoted_ids:
        return Result(f"{mlist.name}: bounce without VERP naming no message of ours; ignored", True)
    since = now - dt.timedelta(days=config.bounces.stale_days)
    done = []
    for address in sorted(failed):
        row = session.scalars(
            select(OutboxEntry)
            .where(
                OutboxEntry.list_id == mlist.id,
                func.lower(OutboxEntry.recipient) == address,
                OutboxEntry.message_id.in_(report.quoted_ids),
                OutboxEntry.state == OutboxState.SENT.value,
                OutboxEntry.created_at >= since,
            )
            .limit(1)
        ).first()
        member = _member_for(session, mlist, row) if row is not None else None
        if member is not None:
            done.append(f"member {member.id}")
    if not done:
        return Result(f"{mlist.name}: bounce without VERP for no copy we sent; ignored", True)
    log.info("bounce without VERP for %d member(s) of %s: not counted", len(done), mlist.name)
    return Result(
        f"{mlist.name}: bounce without VERP for {', '.join(done)}; not counted (no VERP); ignored", True
    )


def score(
    session: Session, config: Config, mlist: MailingList, member: Member, kind: str, now: dt.datetime
) -> str:
    """Add one bounce to the member's score; disable delivery at the threshold. Returns a summary."""
    b = config.bounces
    if member.bounce_last_at is not None and now - member.bounce_last_at > dt.timedelta(days=b.stale_days):
        member.bounce_score = 0.0
        member.bounce_soft_at = None
    if kind == SOFT:
        if member.bounce_soft_at is not None and now - member.bounce_soft_at < dt.timedelta(days=1):
            return f"member {member.id}: soft bounce, already counted today"
        member.bounce_soft_at = now
        member.bounce_score += b.soft_score
    else:
        member.bounce_score += b.hard_score
    member.bounce_last_at = now
    metrics.BOUNCES.labels(kind).inc()
    summary = f"member {member.id}: {kind} bounce, score {member.bounce_score:g}"
    if member.delivery_disabled_at is None and member.bounce_score >= b.threshold:
        disable(session, config, mlist, member, now)
        summary += ", delivery disabled"
    log.info("bounce on %s: %s", mlist.name, summary)
    return summary


def disable(session: Session, config: Config, mlist: MailingList, member: Member, now: dt.datetime) -> None:
    """Stop sending to the member at once, and send the first warning."""
    member.delivery_disabled_at = now
    member.bounce_warnings = 0
    warn(session, config, mlist, member, now)


def enable_token(config: Config, member: Member, now: dt.datetime) -> str:
    expires = now + dt.timedelta(days=config.bounces.enable_token_days)
    return tokens.sign_short(tokens.derive_key(config.site.secret_key), tokens.ENABLE, (member.id,), expires)


def enable_url(config: Config, mlist: MailingList, token: str) -> str:
    return f"{config.site.base_url.rstrip('/')}/lists/{mlist.name}/enable/{token}"


def warn(session: Session, config: Config, mlist: MailingList, member: Member, now: dt.datetime) -> None:
    """One warning: delivery is paused, and how to turn it back on."""
    token = enable_token(config, member, now)
    number = member.bounce_warnings + 1
    left = max(config.bounces.warnings - number, 0)
    days = config.bounces.warning_interval_days
    address = list_address(mlist.name, config.site.domain)
    text = (
        f"Hello,\n\nmail from the list {mlist.display_title} <{address}> to {member.address} has been\n"
        "bouncing, so we have stopped sending it to you for now.\n\n"
        "To get list mail again, open this page and press the button:\n\n"
        f"    {enable_url(config, mlist, token)}\n\n"
        f"or send any message to {mlist.name}+enable-{token}@{config.site.domain}\n\n"
        + (
            f"We will remind you {left} more time(s), {days:g} days apart, and then remove\n"
            "your address from the list.\n"
            if left
            else f"If we hear nothing, your address will be removed from the list in {days:g} days.\n"
        )
    )
    notice = notices.Notice(member.address, f"Delivery from {mlist.display_title} is paused", text)
    notices.send(session, config, mlist, notice, now)
    member.bounce_warnings = number
    member.bounce_warned_at = now


def send_enable_link(
    session: Session, config: Config, mlist: MailingList, member: Member, now: dt.datetime
) -> bool:
    """The "enable delivery" command's answer: the signed link and address, to the member only."""
    token = enable_token(config, member, now)
    text = (
        f"To get mail from {mlist.display_title} again at {member.address}, open this page and\n"
        f"press the button:\n\n    {enable_url(config, mlist, token)}\n\n"
        f"or send any message to {mlist.name}+enable-{token}@{config.site.domain}\n"
    )
    notice = notices.Notice(member.address, f"Turn on mail from {mlist.display_title}", text)
    return notices.send(session, config, mlist, notice, now)


def enable(member: Member) -> None:
    """Deliver to the member again, with a clean score."""
    member.delivery_disabled_at = None
    member.bounce_score = 0.0
    member.bounce_last_at = None
    member.bounce_soft_at = None
    member.bounce_warnings = 0
    member.bounce_warned_at = None


def member_for_enable_token(
    session: Session, config: Config, mlist: MailingList, token: str, now: dt.datetime
) -> Member | None:
    try:
        (member_id,) = tokens.verify(
            tokens.derive_key(config.site.secret_key), tokens.ENABLE, token, now, fields=1
        )
    except MailforumError:
        return None
    member = session.get(Member, member_id)
    return member if member is not None and member.list_id == mlist.id else None


def enable_by_token(
    session: Session, config: Config, mlist: MailingList, token: str, now: dt.datetime
) -> Result:
    """Mail to NAME+enable-TOKEN@ (or the POST of the warning's link)."""
    member = member_for_enable_token(session, config, mlist, token, now)
    if member is None:
        return Result(f"{mlist.name}: enable token not valid; ignored", True)
    enable(member)
    log.info("delivery re-enabled for member %s of %s", member.id, mlist.name)
    return Result(f"{mlist.name}: delivery re-enabled for member {member.id}")


def relay_refused(
    session: Session, config: Config, refused: Sequence[tuple[int, int | None, str]], now: dt.datetime
) -> int:
    """A 5xx from the relay while sending a post: a hard bounce for that member.

    ``refused`` holds (list id, member id, outbox kind) of rows the relay refused; returns
    how many members were scored.
    """
    count = 0
    for list_id, member_id, kind in refused:
        if member_id is None or kind != OutboxKind.POST.value:
            continue
        member = session.get(Member, member_id, with_for_update=True)
        mlist = session.get(MailingList, list_id)
        if member is None or mlist is None or member.list_id != list_id:
            continue
        score(session, config, mlist, member, HARD, now)
        count += 1
    return count


def housekeeping(session: Session, config: Config, now: dt.datetime) -> tuple[int, int]:
    """Send due warnings to disabled members; remove those warned enough. Returns (warned, removed)."""
    b = config.bounces
    due = now - dt.timedelta(days=b.warning_interval_days)
    members = session.scalars(
        select(Member)
        .where(Member.delivery_disabled_at.is_not(None), Member.bounce_warned_at <= due)
        .order_by(Member.id)
        .limit(1000)
        .with_for_update(skip_locked=True)  # several nodes: each member is warned by one of them
    ).all()
    warned = removed = 0
    for member in members:
        mlist = session.get(MailingList, member.list_id)
        assert mlist is not None
        if member.bounce_warnings < b.warnings:
            warn(session, config, mlist, member, now)
            warned += 1
        else:
            log.info("member %s removed from %s after %d bounce warnings", member.id, mlist.name, b.warnings)
            session.delete(member)
            removed += 1
    return warned, removed
