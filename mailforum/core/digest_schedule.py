"""When a list's digests are due, and the run that enqueues them (``run_list``).

A scheduled run is the run of the list's digest hour (in the list's time zone). Runs
commit every ``BATCH`` members: a run killed half-way is finished by the next one,
which finds only the remaining members behind the end mark (RELIABILITY F14; the
marks and what moves them are ``core.digest_enqueue``). A scheduled run records its
period and end mark on the list first, so a restart, a repeated hour or a second
scheduler finishes that period with the same end mark; a new period is never started
twice (F15). A clock that steps back (an hour, or the day it had jumped ahead) finds
its period already run and sends nothing; one that ran days ahead and was then
corrected (``MAX_CLOCK_LEAD``) starts new periods again at once, with a warning,
instead of leaving the list without digests until the calendar catches up.

The runs import ``core.digest_content`` and ``core.digest_enqueue`` (and with them the
mail parser and the outbox) themselves: the schedule's checks and look-ups serve
``members show`` and ``digest format``, which need none of it.
"""

from __future__ import annotations

import datetime as dt
import logging
from contextlib import AbstractContextManager
from dataclasses import dataclass
from typing import TYPE_CHECKING, Protocol
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from sqlalchemy import select
from sqlalchemy.orm import Session

from mailforum.batching import chunks
from mailforum.config import WEEKDAYS, Config
from mailforum.db.enums import DigestFormat
from mailforum.db.models import MailingList
from mailforum.db.queries import list_named
from mailforum.errors import InvalidInput, MailforumError

if TYPE_CHECKING:
    from mailforum.core.digest_enqueue import DueMember

log = logging.getLogger(__name__)

BATCH = 200  # members per transaction


class Sessions(Protocol):
    """What a run needs of ``db.session.Database``: a fresh transaction per batch."""

    def session(self) -> AbstractContextManager[Session]: ...


# ---------------------------------------------------------------------------
# A list's digest settings: one rule for the CLI (`digest schedule`, `digest format`)
# and the owner's settings page.

MAX_ZONE = 64  # lists.digest_timezone is a String(64)


def check_zone(text: str) -> str:
    """An IANA time-zone name as stored; ``InvalidInput`` saying why not."""
    name = text.strip()
    bad = not name or len(name) > MAX_ZONE or any(ord(c) < 33 or c == "\x7f" for c in name)
    if not bad:
        try:
            ZoneInfo(name)
        except (ZoneInfoNotFoundError, ValueError):
            bad = True
    if bad:
        raise InvalidInput(f"unknown time zone {text[:80]!r} (use an IANA name like Europe/Berlin)")
    return name


def check_hour(text: str | int) -> int:
    """An hour of the day, 0-23; ``InvalidInput`` otherwise."""
    value = text.strip() if isinstance(text, str) else str(text)
    if not value.isascii() or not value.isdigit() or not 0 <= int(value) <= 23:
        raise InvalidInput(f"bad digest hour {str(text)[:20]!r}: give a whole hour from 0 to 23")
    return int(value)


def check_format(text: str) -> str:
    """``standard`` or ``mime``; ``InvalidInput`` otherwise."""
    try:
        return DigestFormat(text.strip().lower()).value
    except ValueError:
        raise InvalidInput(f"unknown digest format {text[:40]!r} (use mime or standard)") from None


def set_list_digest(
    mlist: MailingList,
    *,
    hour: str | int | None = None,
    timezone: str | None = None,
    digest_format: str | None = None,
) -> dict[str, object]:
    """Check and apply a list's digest hour, time zone and format, all or nothing.

    None leaves a setting as it is; an empty hour or zone goes back to the site's
    [digest] default. Returns what changed, for the audit log. A running scheduler
    picks a new hour up within the hour, a new format applies from the next digest.
    """
    wanted: dict[str, object] = {}
    if hour is not None:
        wanted["digest_hour"] = None if hour == "" else check_hour(hour)
    if timezone is not None:
        wanted["digest_timezone"] = check_zone(timezone) if timezone.strip() else None
    if digest_format is not None:
        wanted["digest_format"] = check_format(digest_format)
    changed = {k: v for k, v in wanted.items() if getattr(mlist, k) != v}
    for key, value in changed.items():
        setattr(mlist, key, value)
    return changed


# ---------------------------------------------------------------------------
# Periods and schedules


def list_zone(config: Config, mlist: MailingList) -> ZoneInfo:
    return ZoneInfo(mlist.digest_timezone or config.digest.timezone)


def list_hour(config: Config, mlist: MailingList) -> int:
    return config.digest.hour if mlist.digest_hour is None else mlist.digest_hour


def list_schedule(config: Config, mlist: MailingList) -> tuple[int, str]:
    """The list's digest hour and time-zone name (its own, else the site's)."""
    return list_hour(config, mlist), mlist.digest_timezone or config.digest.timezone


def member_schedule(
    list_schedule: tuple[int, str], hour: int | None, timezone: str | None
) -> tuple[int, str]:
    """A member's digest hour and time zone: their own where they set one, else the list's."""
    return (list_schedule[0] if hour is None else hour, timezone or list_schedule[1])


def fire_before(now: dt.datetime, hour: int, zone: ZoneInfo) -> dt.datetime:
    """The most recent time (≤ now) ``hour`` struck in ``zone``."""
    local = now.astimezone(zone)
    fire = local.replace(hour=hour, minute=0, second=0, microsecond=0)
    if fire > local:
        fire -= dt.timedelta(days=1)
    return fire


def day_key(local: dt.datetime) -> str:
    return local.strftime("%Y-%m-%d")


def week_key(local: dt.datetime) -> str:
    year, week, _ = local.isocalendar()
    return f"{year}-W{week:02d}"


def label(local: dt.datetime) -> str:
    """The date as the subject shows it: 26 Nov 2026."""
    return f"{local.day} {local.strftime('%b %Y')}"


def weekly_due(config: Config, mlist: MailingList, local: dt.datetime) -> bool:
    """The week's digest is due on or after the weekly day, once per ISO week."""
    if local.weekday() < WEEKDAYS.index(config.digest.weekly_day):
        return False
    return not (mlist.digest_last_week or "").startswith(week_key(local))


# A claimed period this far ahead of the clock means the clock ran days ahead and was then
# corrected: runs start new periods again instead of waiting days for it to catch up. Within
# this, the clock stepping back (an hour, or a day it had jumped forward) sends nothing (F15).
MAX_CLOCK_LEAD = dt.timedelta(days=2)


def _far_ahead(claimed: str | None, fire: dt.datetime) -> bool:
    """The claimed period (a ``day_key``) lies more than ``MAX_CLOCK_LEAD`` after ``fire``'s day."""
    try:
        day = dt.date.fromisoformat(claimed or "")
    except ValueError:
        return False
    return day - fire.date() > MAX_CLOCK_LEAD


def last_fire(config: Config, mlist: MailingList, now: dt.datetime) -> dt.datetime:
    """The most recent time (≤ now) the list's digest hour struck, in the list's zone."""
    return fire_before(now, list_hour(config, mlist), list_zone(config, mlist))


# ---------------------------------------------------------------------------
# Runs


@dataclass(frozen=True, slots=True)
class RunResult:
    """What one run did for one list."""

    list_name: str
    end_mark: int
    queued: int  # digests enqueued
    skipped: int  # members whose mark moved without mail (nothing new outside muted topics)
    period: str  # "2026-11-26" for a scheduled run, "manual" for `digest send`
    paused: int = 0  # members whose delivery bounces paused: their mark moved, no mail


def run_list(
    db: Sessions,
    config: Config,
    list_name: str,
    now: dt.datetime,
    *,
    scheduled: bool = False,
    address: str | None = None,
) -> RunResult:
    """Enqueue every due digest of one list, a transaction per ``BATCH`` members.

    ``scheduled``: the run of the list's digest hour. It claims its period (the list-local
    day of the last time the hour struck) on the list with an end mark, or resumes that
    period with the stored end mark if it was claimed already — so a repeated hour, a
    second scheduler or a restart after a crash adds nothing new. Weekly members are in
    the run that claims the week. Unscheduled (``digest send``): the end mark is the
    newest post; weekly members only when their week is due.
    """
    from mailforum.core.digest_content import DAILY, WEEKLY  # see the module docstring
    from mailforum.core.digest_enqueue import due_members, end_mark, enqueue_batch, starts

    with db.session() as session:
        mlist = list_named(session, list_name, lock=True)
        if mlist is None:
            raise MailforumError(f"no list named {list_name!r}")
        fire = last_fire(config, mlist, now)
        local = now.astimezone(list_zone(config, mlist))
        frequencies = [DAILY]
        if scheduled:
            period = day_key(fire)
            if mlist.digest_last_day == period and mlist.digest_run_mark is not None:
                end = mlist.digest_run_mark  # resume (or repeat) the claimed period
                if (mlist.digest_last_week or "").endswith(" " + period):
                    frequencies.append(WEEKLY)
            elif (mlist.digest_last_day or "") > period and not _far_ahead(mlist.digest_last_day, fire):
                # The clock went back past a period already run: nothing to do (F15).
                return RunResult(mlist.name, mlist.digest_run_mark or 0, 0, 0, period)
            else:
                if (mlist.digest_last_day or "") > period:
                    log.warning(
                        "digests for %s: the last run was for %s, but the clock says %s; the clock "
                        "was wrong by days and has been corrected: starting a new period",
                        mlist.name,
                        mlist.digest_last_day,
                        period,
                    )
                end = end_mark(session, mlist.id)
                mlist.digest_last_day = period
                mlist.digest_run_mark = end
                if weekly_due(config, mlist, fire):
                    mlist.digest_last_week = f"{week_key(fire)} {period}"
                    frequencies.append(WEEKLY)
            day_label = label(fire)
        else:
            period = "manual"
            end = end_mark(session, mlist.id)
            if weekly_due(config, mlist, local):
                mlist.digest_last_week = f"{week_key(local)} manual"
                frequencies.append(WEEKLY)
            day_label = label(local)
        members = due_members(session, mlist.id, end, frequencies, address, paused=True)
        if scheduled:  # members with a schedule of their own get theirs from ``run_member_slot``
            own = list_schedule(config, mlist)
            members = [m for m in members if member_schedule(own, m.hour, m.timezone) == own]
        begins = starts(session, mlist.id, members)
        list_id, name = mlist.id, mlist.name
    queued = skipped = paused = 0
    for batch in chunks(members, BATCH):
        with db.session() as session:
            mlist = session.get(MailingList, list_id)
            assert mlist is not None
            q, s, p = enqueue_batch(session, config, mlist, batch, end, day_label, now, begins)
            queued += q
            skipped += s
            paused += p
    log.info(
        "digests for %s (%s): %d queued, %d without news, %d paused by bounces (passed over)",
        name,
        period,
        queued,
        skipped,
        paused,
    )
    return RunResult(name, end, queued, skipped, period, paused)


def run_member_slot(
    db: Sessions, config: Config, list_name: str, hour: int, timezone: str, now: dt.datetime
) -> RunResult:
    """The digests of the list's members whose own schedule is ``hour`` in ``timezone``.

    Each member's period (their local day of the last time the hour struck, and the
    week when it is due) is claimed on the member in the transaction that enqueues
    their digest (``digest_enqueue.claim_periods``): a repeated fire, a restart or a
    second scheduler finds it claimed and sends nothing twice (F15); a run killed
    half-way is finished by the next, which finds the rest unclaimed (F14).
    """
    from mailforum.core.digest_content import DAILY, WEEKLY  # see the module docstring
    from mailforum.core.digest_enqueue import claim_periods, due_members, end_mark, enqueue_batch, starts

    fire = fire_before(now, hour, ZoneInfo(timezone))
    period = day_key(fire)
    week = week_key(fire) if fire.weekday() >= WEEKDAYS.index(config.digest.weekly_day) else None
    slot = (hour, timezone)
    with db.session() as session:
        mlist = list_named(session, list_name)
        if mlist is None:
            raise MailforumError(f"no list named {list_name!r}")
        own = list_schedule(config, mlist)
        end = end_mark(session, mlist.id)
        members: list[DueMember] = [
            m
            for m in due_members(session, mlist.id, end, (DAILY, WEEKLY), paused=True)
            if (m.hour is not None or m.timezone) and member_schedule(own, m.hour, m.timezone) == slot != own
        ]
        begins = starts(session, mlist.id, members)
        list_id, name = mlist.id, mlist.name
    queued = skipped = paused = 0
    for batch in chunks(members, BATCH):
        with db.session() as session:
            mlist = session.get(MailingList, list_id)
            assert mlist is not None
            claimed = claim_periods(session, batch, period, week)
            mine = [m for m in batch if m.id in claimed]
            q, s, p = enqueue_batch(session, config, mlist, mine, end, label(fire), now, begins)
            queued += q
            skipped += s
            paused += p
    log.info("digests for %s at %02d:00 %s (%s): %d queued", name, hour, timezone, period, queued)
    return RunResult(name, end, queued, skipped, period, paused)


def list_names(db: Sessions) -> list[str]:
    with db.session() as session:
        return list(session.scalars(select(MailingList.name).order_by(MailingList.name)))
