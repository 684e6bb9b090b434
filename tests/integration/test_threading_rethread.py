"""`mailforum rethread` and `import-mbox --dry-run`: rebuild topics from raw mail, safely."""

from __future__ import annotations

import mailbox
from pathlib import Path

from sqlalchemy import select, update

from mailforum.core import archive, lists, rethread, threads
from mailforum.db import spool
from mailforum.db.models import Post, PostingPolicy, Topic, utcnow
from tests.helpers import DOMAIN, message, send, wait_for

MESSAGES = Path(__file__).parent.parent / "messages"
CASES = (
    "thunderbird",
    "outlook",
    "merge",
    "was-subject",
    "generic-subject",
    "truncated-references",
    "addressed-reply",
    "unquoted-reply",
    "absent-parent-quoted",
)


def _load(site) -> list[bytes]:  # type: ignore[no-untyped-def]
    raws = [p.read_bytes() for case in CASES for p in sorted((MESSAGES / case).glob("*.eml"))]
    with site.db.read_session() as session:
        mlist = lists.get_list(session, "dev")
    for raw in raws:
        archive.import_messages(site.db, site.config, mlist, [raw], parallel=False)
    return raws


def _shape(site) -> dict[str, tuple[int, str | None]]:  # type: ignore[no-untyped-def]
    return {mid: (p["topic_id"], p["parent_message_id"]) for mid, p in site.posts_by_id().items()}


def test_rethread_of_a_correct_archive_moves_nothing(site):
    site.create_list("dev", policy=PostingPolicy.OPEN)
    _load(site)
    before = _shape(site)
    report = rethread.rethread(site.db, site.config, "dev")
    assert report.moved == [] and report.reparented == 0 and report.posts == len(before)
    assert _shape(site) == before


def test_rethread_repairs_what_an_older_threader_got_wrong(site):
    site.create_list("dev", policy=PostingPolicy.OPEN)
    _load(site)
    before = _shape(site)
    # An "older threader": a reply split into a topic of its own and a parent lost.
    victim, orphan = "<was-headerless@example.org>", "<ooo-c@example.org>"
    with site.db.session() as session:
        mlist = lists.get_list(session, "dev")
        stray = Topic(list_id=mlist.id, subject="stray", subject_key="stray")
        session.add(stray)
        session.flush()
        session.execute(
            update(Post).where(Post.message_id == victim).values(topic_id=stray.id, parent_id=None)
        )
        session.execute(
            update(Post).where(Post.message_id == "<merge-x2@example.net>").values(parent_id=None)
        )
        stray_id = stray.id
    assert _shape(site) != before
    dry = rethread.rethread(site.db, site.config, "dev", dry_run=True)
    assert [m[0] for m in dry.moved] == [victim] and dry.reparented == 2
    assert _shape(site)[victim][0] == stray_id  # a dry run changes nothing
    report = rethread.rethread(site.db, site.config, "dev")
    assert [(m[0], m[1]) for m in report.moved] == [(victim, stray_id)]
    assert _shape(site) == before  # topic ids kept, parents restored
    with site.db.read_session() as session:
        emptied = session.get(Topic, stray_id)
        assert emptied is not None and emptied.merged_into_id == before[victim][0]
    assert orphan not in before


def test_rethread_joins_a_reply_addressed_to_a_participant(site):
    """Issue 14: an archive threaded before the rule kept the web form's reply apart."""
    site.create_list("dev", policy=PostingPolicy.OPEN)
    _load(site)
    before = _shape(site)
    reply, root = "<addressed-form@forum.example.org>", "<addressed-root@example.com>"
    assert before[reply] == (before[root][0], root)
    with site.db.session() as session:  # as the older threader left it: a topic of its own
        mlist = lists.get_list(session, "dev")
        title = "Re: Release planning for the 3.2 branch"
        alone = Topic(list_id=mlist.id, subject=title, subject_key=threads.subject_key(title))
        session.add(alone)
        session.flush()
        session.execute(
            update(Post).where(Post.message_id == reply).values(topic_id=alone.id, parent_id=None)
        )
        alone_id = alone.id
    report = rethread.rethread(site.db, site.config, "dev")
    assert [(m[0], m[1]) for m in report.moved] == [(reply, alone_id)]
    assert _shape(site) == before


def test_rethread_keeps_a_parent_given_by_a_reply_token(site):
    site.create_list("dev", policy=PostingPolicy.OPEN)
    with site.db.read_session() as session:
        mlist = lists.get_list(session, "dev")
    archive.import_messages(site.db, site.config, mlist, [message("Plans", "<root@x>")], parallel=False)
    archive.import_messages(
        site.db, site.config, mlist, [message("My answer", "<token-reply@y>")], parallel=False
    )
    with site.db.session() as session:  # as the reply-token route stores it: parent from the token
        [entry_id] = spool.insert_batch(
            session,
            [
                spool.NewMessage(
                    message("My answer", "<token-reply@y>"), "ann@example.com", (f"dev+r-T0K3N@{DOMAIN}",)
                )
            ],
            utcnow(),
        )
        root = session.scalars(select(Post).where(Post.message_id == "<root@x>")).one()
        session.execute(
            update(Post)
            .where(Post.message_id == "<token-reply@y>")
            .values(parent_id=root.id, topic_id=root.topic_id, spool_id=entry_id)
        )
    before = _shape(site)
    report = rethread.rethread(site.db, site.config, "dev")
    assert report.moved == [] and _shape(site) == before


def test_posts_arriving_during_rethread_stay_where_the_live_threader_put_them(site, server, monkeypatch):
    site.create_list("dev", policy=PostingPolicy.OPEN)
    send(site.config, message("Cache design", "<a@x>"))
    send(site.config, message("Re: Cache design", "<b@x>", extra="In-Reply-To: <a@x>"))
    wait_for(lambda: len(site.posts_by_id()) == 2)
    real_replay = rethread.replay

    def replay_while_mail_arrives(*args, **kwargs):  # type: ignore[no-untyped-def]
        send(site.config, message("Re: Cache design", "<c@x>", extra="In-Reply-To: <b@x>"))
        wait_for(lambda: len(site.posts_by_id()) == 3)
        return real_replay(*args, **kwargs)

    monkeypatch.setattr(rethread, "replay", replay_while_mail_arrives)
    report = rethread.rethread(site.db, site.config, "dev")
    assert report.arrived_during == 1 and report.moved == []
    posts = site.posts_by_id()
    assert {p["topic_id"] for p in posts.values()} == {posts["<a@x>"]["topic_id"]}
    assert posts["<c@x>"]["parent_message_id"] == "<b@x>"


def test_cli_rethread_and_import_dry_run(site, tmp_path):
    site.create_list("dev", policy=PostingPolicy.OPEN)
    box = mailbox.mbox(tmp_path / "archive.mbox")
    for case in ("thunderbird", "gmail", "generic-subject"):
        for path in sorted((MESSAGES / case).glob("*.eml")):
            box.add(path.read_bytes())
    box.flush()
    box.close()
    first = site.cli("import-mbox", str(tmp_path / "archive.mbox"), "--list", "dev", "--dry-run")
    assert first.returncode == 0, first.stderr
    lines = first.stdout.splitlines()
    assert "3\tBuild fails on ARM64 with gcc 13" in lines
    assert "2\tProposal: drop Python 3.9 support" in lines
    assert lines.count("1\tQuestion") == 1 and "2\tQuestion" in lines  # strangers' "Question" apart
    assert "1\tRe: Question" in lines and "1\tRe: question" in lines
    assert "would make 6 new topic(s)" in first.stderr
    assert site.export() == []  # nothing stored
    imported = site.cli("import-mbox", str(tmp_path / "archive.mbox"), "--list", "dev")
    assert imported.returncode == 0, imported.stderr
    again = site.cli("import-mbox", str(tmp_path / "archive.mbox"), "--list", "dev", "--dry-run")
    assert all("\tjoins topic " in line for line in again.stdout.splitlines())
    done = site.cli("rethread", "--list", "dev")
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip().endswith(
        "0 moved to another topic, 0 with a new parent; topics 6 -> 6 (0 new, 0 emptied)"
    )
    missing = site.cli("rethread", "--list", "nope")
    assert missing.returncode == 1 and missing.stderr.startswith("mailforum: error: no list named 'nope'")
