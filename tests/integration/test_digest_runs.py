"""Digest runs as processes and parts: the scheduler in serve, two schedulers on one database,
a kill mid-run (RELIABILITY F14), the ``digest send`` command."""

from __future__ import annotations

import asyncio
import datetime as dt
import os
import re
import signal
import subprocess
import sys

import pytest
from sqlalchemy import func, select

from mailforum.core import digest_schedule, lists
from mailforum.db.models import AuditEntry, DeliveryMode, MailingList, OutboxEntry, PostingPolicy, utcnow
from mailforum.runners.scheduler import DigestScheduler
from tests.helpers import ServerThread, message, wait_for
from tests.integration.outbound_helpers import store

DAY1 = dt.datetime(2026, 10, 1, 7, 0, 5, tzinfo=dt.UTC)


def digest_rows(site) -> dict[str, int]:
    with site.db.read_session() as session:
        rows = session.execute(
            select(OutboxEntry.recipient, func.count())
            .where(OutboxEntry.kind == "digest")
            .group_by(OutboxEntry.recipient)
        ).all()
    return {r: n for r, n in rows}


def setup(site, members: int, posts: int = 2) -> None:
    site.create_list("dev", PostingPolicy.OPEN)
    with site.db.session() as session:
        mlist = lists.get_list(session, "dev")
        addresses = [lists.Address(f"m{i:05d}@example.net") for i in range(members)]
        lists.add_members(session, mlist, addresses, DeliveryMode.DIGEST, utcnow() - dt.timedelta(days=1))
    for n in range(posts):
        assert "published" in store(site, message(f"Topic {n}", f"<p{n}@example.com>"))[0]


def test_two_schedulers_on_one_database_queue_each_digest_once(site):
    """Two serve processes' schedulers start together and both catch up the same period."""
    setup(site, 300)

    async def both() -> list[int]:
        one = DigestScheduler(site.db, site.config, clock=lambda: DAY1)
        two = DigestScheduler(site.db, site.config, clock=lambda: DAY1)
        await asyncio.gather(one.start(), two.start())
        await asyncio.gather(one.wait_caught_up(), two.wait_caught_up())
        await one.stop()
        await two.stop()
        return [sum(r.queued for r in s.runs) for s in (one, two)]

    queued = asyncio.run(both())
    assert sum(queued) == 300
    rows = digest_rows(site)
    assert len(rows) == 300 and set(rows.values()) == {1}
    # Started again the same day (a restart, a repeated hour): nothing more.
    assert asyncio.run(both()) == [0, 0]


def test_two_serve_processes_on_one_database_queue_each_digest_once(site):
    """Two real ``serve`` processes (scheduler only) start together on one database; each catches
    up the day's period on start. Every member gets one digest; the two runs' counts add up to the
    members, so the marks' compare-and-set did it, not only the outbox's unique key."""
    setup(site, 1000, posts=3)
    env = dict(os.environ, MAILFORUM_CONFIG=str(site.config_file))
    only_scheduler = ("--no-smtp", "--no-process", "--no-delivery", "--no-web")
    args = [sys.executable, "-m", "mailforum", "serve", *only_scheduler]
    logs = [site.dir / f"serve{n}.log" for n in (1, 2)]
    procs = []
    for path in logs:
        with open(path, "wb") as out:
            procs.append(
                subprocess.Popen(
                    args, env=env, cwd=site.dir, stdout=out, stderr=subprocess.STDOUT, start_new_session=True
                )
            )
    try:
        wait_for(lambda: all(re.search(r"digests for dev \(", p.read_text()) for p in logs), timeout=60)
    finally:
        for proc in procs:
            proc.send_signal(signal.SIGTERM)
        codes = [proc.wait(30) for proc in procs]
    assert codes == [0, 0], [p.read_text()[-2000:] for p in logs]
    rows = digest_rows(site)
    assert len(rows) == 1000 and set(rows.values()) == {1}
    counts = [
        int(re.search(r"digests for dev \([^)]*\): (\d+) queued", p.read_text()).group(1)) for p in logs
    ]
    assert sum(counts) == 1000, counts
    assert not any("Traceback" in p.read_text() for p in logs)


def test_a_scheduler_that_was_down_for_days_catches_up_once(site):
    """The server was down three days: on start, one digest per member with all of it; a restart
    (or the next start the same day) adds nothing."""
    setup(site, 3, posts=1)

    def started_at(now: dt.datetime) -> int:
        async def once() -> int:
            scheduler = DigestScheduler(site.db, site.config, clock=lambda: now)
            await scheduler.start()
            await scheduler.wait_caught_up()
            await scheduler.stop()
            return sum(r.queued for r in scheduler.runs)

        return asyncio.run(once())

    assert started_at(DAY1) == 3
    for n in range(1, 4):  # three days of posts while nobody queues digests
        assert "published" in store(site, message(f"Later {n}", f"<later{n}@example.com>"))[0]
    back = DAY1 + dt.timedelta(days=3, hours=5)
    assert started_at(back) == 3
    assert started_at(back + dt.timedelta(minutes=10)) == 0
    assert digest_rows(site) == {f"m{i:05d}@example.net": 2 for i in range(3)}
    with site.db.read_session() as session:
        spans = {
            (e.payload["from"], e.payload["to"])
            for e in session.scalars(select(OutboxEntry).where(OutboxEntry.kind == "digest"))
        }
    assert len(spans) == 2 and max(spans)[1] - max(spans)[0] == 3  # the three days' posts, in one


def test_the_scheduler_has_a_job_per_list_at_its_hour(site):
    site.create_list("dev")
    site.create_list("ops")
    with site.db.session() as session:
        ops = session.scalars(select(MailingList).where(MailingList.name == "ops")).one()
        ops.digest_hour, ops.digest_timezone = 18, "Europe/Berlin"

    async def jobs() -> dict[str, str]:
        scheduler = DigestScheduler(site.db, site.config, catch_up=False)
        await scheduler.start()
        out = {job.id: f"{job.trigger} {job.trigger.timezone}" for job in scheduler.scheduler.get_jobs()}
        options = {job.id: (job.coalesce, job.max_instances) for job in scheduler.scheduler.get_jobs()}
        await scheduler.stop()
        assert options["digest:dev"] == (True, 1)
        return out

    found = asyncio.run(jobs())
    assert "hour='7'" in found["digest:dev"] and "UTC" in found["digest:dev"]
    assert "hour='18'" in found["digest:ops"] and "Europe/Berlin" in found["digest:ops"]


def test_serve_runs_the_scheduler_unless_switched_off(site):
    site.create_list("dev")
    running = ServerThread(site.config, ingest=False, web=False)
    running.start()
    try:
        assert "scheduler" in [p.name for p in running.parts]
    finally:
        running.stop()
    running = ServerThread(site.config, ingest=False, web=False, scheduler=False)
    running.start()
    try:
        assert "scheduler" not in [p.name for p in running.parts]
    finally:
        running.stop()


@pytest.mark.slow  # a kill -9 crash test
def test_a_run_killed_mid_loop_is_finished_by_the_next_once_per_member(site):
    """F14: SIGKILL at 40 % of 1,000 members; the rerun queues only the rest; one digest each."""
    setup(site, 1000)
    env = dict(
        os.environ, MAILFORUM_CONFIG=str(site.config_file), MAILFORUM_CRASH_AT="mid_digest_recipient_loop:400"
    )
    killed = subprocess.run(
        [sys.executable, "-m", "mailforum", "digest", "send", "--list", "dev"],
        env=env,
        cwd=site.dir,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert killed.returncode == -signal.SIGKILL
    before = sum(digest_rows(site).values())
    assert 0 < before < 400
    done = site.cli("digest", "send", "--list", "dev")
    assert done.returncode == 0, done.stderr
    rows = digest_rows(site)
    assert len(rows) == 1000 and set(rows.values()) == {1}
    assert f"dev: {1000 - before} digests queued" in done.stdout


class Interrupted(Exception):
    pass


class FailingSessions:
    """The database, failing from the ``fail_at``-th transaction on (a crash as the run sees it)."""

    def __init__(self, db, fail_at: int) -> None:
        self.db, self.left = db, fail_at

    def session(self):
        self.left -= 1
        if self.left <= 0:
            raise Interrupted("the process died here")
        return self.db.session()


def test_a_scheduled_period_cut_short_is_finished_with_its_own_end_mark(site):
    """F14 for the scheduled run: posts arriving after the run began wait for the next period."""
    setup(site, 1000)
    with pytest.raises(Interrupted):
        digest_schedule.run_list(FailingSessions(site.db, 4), site.config, "dev", DAY1, scheduled=True)
    before = sum(digest_rows(site).values())
    assert before == 2 * digest_schedule.BATCH
    assert "published" in store(site, message("Late topic", "<late@example.com>"))[0]
    result = digest_schedule.run_list(
        site.db, site.config, "dev", DAY1 + dt.timedelta(minutes=5), scheduled=True
    )
    assert result.queued == 1000 - before
    rows = digest_rows(site)
    assert len(rows) == 1000 and set(rows.values()) == {1}
    with site.db.read_session() as session:
        ends = {
            e.payload["to"] for e in session.scalars(select(OutboxEntry).where(OutboxEntry.kind == "digest"))
        }
    assert len(ends) == 1  # one period, one end mark: the late post is not in it
    nxt = digest_schedule.run_list(site.db, site.config, "dev", DAY1 + dt.timedelta(days=1), scheduled=True)
    assert nxt.queued == 1000


def test_digest_send_cli(site):
    setup(site, 3)
    dry = site.cli("digest", "send", "--list", "dev", "--dry-run")
    assert dry.returncode == 0, dry.stderr
    assert "Topic 0" in dry.stdout and "3 digests would be queued (dry run)" in dry.stdout
    assert digest_rows(site) == {}
    one = site.cli("digest", "send", "--member", "m00001@example.net")
    assert "dev: 1 digest queued" in one.stdout, one.stdout + one.stderr
    rest = site.cli("digest", "send")
    assert "dev: 2 digests queued" in rest.stdout
    again = site.cli("digest", "send", "--list", "dev")
    assert again.returncode == 0 and "nothing new: no digest queued" in again.stdout
    missing = site.cli("digest", "send", "--list", "nope")
    assert missing.returncode == 1 and missing.stderr.strip() == "mailforum: error: no list named 'nope'"


def test_digest_schedule_cli(site):
    site.create_list("dev")
    out = site.cli("digest", "schedule", "dev", "--hour", "6", "--timezone", "Europe/Berlin")
    assert out.returncode == 0 and out.stdout.strip() == "dev: digests at 06:00 Europe/Berlin"
    bad = site.cli("digest", "schedule", "dev", "--timezone", "Mars/Olympus")
    assert bad.returncode == 1 and "unknown time zone 'Mars/Olympus'" in bad.stderr
    back = site.cli("digest", "schedule", "dev", "--default")
    assert back.stdout.strip() == "dev: digests at 07:00 UTC"
    assert site.cli("digest", "format", "dev", "mime").returncode == 0
    with site.db.read_session() as session:
        rows = session.scalars(select(AuditEntry).order_by(AuditEntry.id)).all()
    assert [(e.actor, e.action, e.detail) for e in rows] == [
        ("cli", "list.digest", {"digest_hour": 6, "digest_timezone": "Europe/Berlin", "list": "dev"}),
        ("cli", "list.digest", {"digest_hour": None, "digest_timezone": None, "list": "dev"}),
        ("cli", "list.digest", {"digest_format": "mime", "list": "dev"}),
    ]


def test_a_member_with_their_own_hour_gets_their_digest_at_their_local_hour_once(site):
    """Issue 17: m00001 chose 08:00 Asia/Tokyo (23:00 UTC); the list's 07:00 UTC run leaves them out,
    their own slot sends theirs once, and the scheduler has a job for that slot."""
    setup(site, 3, posts=1)
    with site.db.session() as session:
        mlist = lists.get_list(session, "dev")
        member = lists.find_member(session, mlist.id, "m00001@example.net")
        member.digest_hour, member.digest_timezone = 8, "Asia/Tokyo"
    listed = digest_schedule.run_list(site.db, site.config, "dev", DAY1, scheduled=True)
    assert listed.queued == 2 and "m00001@example.net" not in digest_rows(site)
    tokyo_morning = dt.datetime(2026, 10, 1, 23, 0, 5, tzinfo=dt.UTC)  # 08:00:05 on 2 Oct in Tokyo
    own = digest_schedule.run_member_slot(site.db, site.config, "dev", 8, "Asia/Tokyo", tokyo_morning)
    assert (own.queued, own.period) == (1, "2026-10-02")
    assert digest_rows(site) == {f"m{i:05d}@example.net": 1 for i in range(3)}
    # A post later the same Tokyo day: a repeated fire or a restart sends nothing (F15); the next day does.
    assert "published" in store(site, message("Later", "<later@example.com>"))[0]
    for later in (dt.timedelta(minutes=20), dt.timedelta(hours=5)):
        assert (
            digest_schedule.run_member_slot(
                site.db, site.config, "dev", 8, "Asia/Tokyo", tokyo_morning + later
            ).queued
            == 0
        )
    nxt = digest_schedule.run_member_slot(
        site.db, site.config, "dev", 8, "Asia/Tokyo", tokyo_morning + dt.timedelta(days=1)
    )
    assert (nxt.queued, nxt.period) == (1, "2026-10-03")
    assert digest_rows(site)["m00001@example.net"] == 2

    async def jobs() -> list[str]:
        scheduler = DigestScheduler(site.db, site.config, catch_up=False)
        await scheduler.start()
        found = [f"{job.id} {job.trigger}" for job in scheduler.scheduler.get_jobs()]
        await scheduler.stop()
        return found

    found = asyncio.run(jobs())
    assert any(j.startswith("digest:dev@8:Asia/Tokyo ") and "hour='8'" in j for j in found), found
