"""A member's settings as the preferences page changes them: delivery, digests and their hour, topics.

The same rules as the mail commands (``core.commands``: ``mode …``, ``digest …``): a
member who starts digests gets what is new from now on; leaving digest mode ends the
digests it brought; ``mode digest`` without a frequency is a daily digest. Besides,
the page sets the member's own digest hour and time zone (None: the list's), which the
digest scheduler honours (``core.digest_schedule.run_member_slot``).
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass
from functools import cache
from zoneinfo import ZoneInfo, available_timezones

from sqlalchemy.orm import Session

from mailforum.config import Config
from mailforum.core import audit, digest_enqueue, digest_schedule
from mailforum.core import topics as tagging
from mailforum.core.digest_content import FREQUENCIES
from mailforum.core.subscriptions import set_topic
from mailforum.db import queries
from mailforum.db.models import DeliveryMode, MailingList, Member, SubscriptionKind
from mailforum.errors import InvalidInput

MODES = tuple(m.value for m in DeliveryMode)
DIGESTS = ("off", *FREQUENCIES)


@cache
def time_zones() -> tuple[str, ...]:
    """The IANA names a member may choose, sorted (UTC first)."""
    return ("UTC", *sorted(z for z in available_timezones() if "/" in z and not z.startswith("Etc/")))


@dataclass(frozen=True, slots=True)
class Settings:
    mode: str
    digest: str  # "off", "daily", "weekly"
    hour: int | None  # None: the list's
    timezone: str | None  # None: the list's


@dataclass(frozen=True, slots=True)
class TopicSetting:
    topic_id: int
    subject: str
    kind: str  # "watch" or "mute"


def current(member: Member) -> Settings:
    return Settings(
        member.delivery_mode, member.digest_frequency or "off", member.digest_hour, member.digest_timezone
    )


def list_schedule(config: Config, mlist: MailingList) -> tuple[int, str]:
    return digest_schedule.list_schedule(config, mlist)


def parse(mode: str, digest: str, hour: str, timezone: str) -> Settings:
    """The form's fields as settings, or InvalidInput naming the field that is wrong."""
    mode, digest, hour, timezone = mode.strip(), digest.strip(), hour.strip(), timezone.strip()
    if mode not in MODES:
        raise InvalidInput(f"delivery mode must be one of {', '.join(MODES)}")
    if digest not in DIGESTS:
        raise InvalidInput(f"digest must be one of {', '.join(DIGESTS)}")
    chosen_hour: int | None = None
    if hour:
        if not hour.isdigit() or not 0 <= int(hour) <= 23:
            raise InvalidInput("the digest hour must be a whole hour from 0 to 23")
        chosen_hour = int(hour)
    if timezone and timezone not in time_zones():
        raise InvalidInput(f"unknown time zone {timezone[:64]!r}")
    return Settings(mode, digest, chosen_hour, timezone or None)


def apply(session: Session, member: Member, wanted: Settings) -> None:
    """Change the member's settings as the mail commands would (see the module's docstring)."""
    before = _shown(member)
    starts_digests = wanted.mode == DeliveryMode.DIGEST.value or (
        wanted.digest != "off" and wanted.mode != DeliveryMode.NONE.value
    )
    had_digests = member.delivery_mode == DeliveryMode.DIGEST.value or member.digest_frequency is not None
    if starts_digests and not had_digests:
        member.digest_mark = digest_enqueue.start_mark(session, member.list_id)
    member.delivery_mode = wanted.mode
    if wanted.mode == DeliveryMode.DIGEST.value:
        member.digest_frequency = wanted.digest if wanted.digest != "off" else "daily"
    elif wanted.mode == DeliveryMode.NONE.value:
        member.digest_frequency = None  # "none" is no mail at all, digests too
    else:
        member.digest_frequency = None if wanted.digest == "off" else wanted.digest
    if (wanted.hour, wanted.timezone) != (member.digest_hour, member.digest_timezone):
        member.digest_hour, member.digest_timezone = wanted.hour, wanted.timezone
        # A new schedule starts with a clean slate: its first hour is not "already run".
        member.digest_last_day = member.digest_last_week = None
    if wanted.timezone is not None:
        ZoneInfo(wanted.timezone)  # checked by parse; a stale name would fail the scheduler
    after = _shown(member)
    changed = {k: v for k, v in after.items() if before[k] != v}
    if changed:
        audit.member_action(
            session,
            actor=member.address,
            action="member.preferences",
            list_id=member.list_id,
            target=member.address,
            detail=changed,
        )


def _shown(member: Member) -> dict[str, object]:
    """The settings a member changes on the preferences page, as the audit log shows them."""
    return {
        "mode": member.delivery_mode,
        "digest": member.digest_frequency,
        "digest_hour": member.digest_hour,
        "digest_timezone": member.digest_timezone,
    }


def topics(session: Session, member: Member) -> list[TopicSetting]:
    """The topics the member watches or muted, with their subjects, newest first."""
    return [
        TopicSetting(tid, subject, kind) for kind, tid, subject in queries.member_topics(session, member.id)
    ]


def set_topic_kind(
    session: Session, member: Member, mlist: MailingList, topic_id: int, kind: str | None, now: dt.datetime
) -> bool:
    """Watch, mute or clear (``None``) a topic of the member's list; False when there is no such topic."""
    topic = queries.resolve_topic(session, mlist, topic_id)
    if topic is None:
        return False
    set_topic(session, member, topic, SubscriptionKind(kind) if kind else None, now)
    return True


# --- tags: follow, mute or neither (the mail commands ``watch #TAG``, ``mute #TAG``, ``unwatch #TAG``)

TAG_FIELD = "tag:"  # the page's field per tag: ``tag:NAME`` = follow | mute | neither
TAG_CHOICES: dict[str, SubscriptionKind | None] = {
    "follow": SubscriptionKind.WATCH,
    "mute": SubscriptionKind.MUTE,
    "neither": None,
}


def tag_settings(session: Session, mlist: MailingList, member: Member) -> list[tuple[str, str]]:
    """The list's vocabulary, each tag with the member's choice: follow, mute or neither."""
    chosen = tagging.tag_settings(session, member)
    follow, mute = set(chosen.get("watch", [])), set(chosen.get("mute", []))
    return [
        (tag.name, "follow" if tag.name in follow else "mute" if tag.name in mute else "neither")
        for tag in tagging.vocabulary(session, mlist)
    ]


def parse_tags(fields: dict[str, str]) -> dict[str, str]:
    """The ``tag:NAME`` fields of a form as {name: choice}; InvalidInput for a choice not offered."""
    wanted = {}
    for key, value in fields.items():
        if key.startswith(TAG_FIELD):
            name = key[len(TAG_FIELD) :]
            if value not in TAG_CHOICES:
                raise InvalidInput(f"choose follow, mute or neither for the tag {name[:64]!r}")
            wanted[name] = value
    return wanted


def apply_tags(
    session: Session, mlist: MailingList, member: Member, wanted: dict[str, str], now: dt.datetime
) -> dict[str, str]:
    """Set the member's choice per tag as the mail commands do (``tagging.set_tag``); returns what
    changed. InvalidInput, changing nothing, when a name is not in the list's vocabulary."""
    before = dict(tag_settings(session, mlist, member))
    unknown = [name for name in wanted if name not in before]
    if unknown:
        raise InvalidInput(f"not a tag of {mlist.name}: {', '.join(n[:64] for n in unknown[:5])}")
    changed = {name: choice for name, choice in wanted.items() if before[name] != choice}
    for name, choice in changed.items():
        tag = tagging.tag_named(session, mlist, name)
        assert tag is not None  # in the vocabulary, checked above
        tagging.set_tag(session, member, tag, TAG_CHOICES[choice], now)
    return changed
