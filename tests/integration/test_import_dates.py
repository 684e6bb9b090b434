"""An imported message without a usable Date is dated by its archive, never by the import
(RELIABILITY B51): the mbox From_ line, then the newest Received:, then its neighbours."""

from __future__ import annotations

import datetime as dt

from sqlalchemy import select

from mailforum.db.models import Topic

ENTRIES = [
    # (From_ line, headers): each message has Subject and Message-ID added below.
    ("From ann@example.com Fri Mar  1 09:00:00 2002", "Date: Fri, 01 Mar 2002 09:00:00 +0000\n"),
    ("From bob@example.com Sat Mar  2 10:30:00 2002", ""),  # no Date: the From_ line
    ("From carl@example.com Sun Mar 10 10:00:00 2002 -0500", ""),  # with a zone
    (
        "From MAILER-DAEMON",  # no date in the From_ line: the newest Received
        "Received: from relay.example.net by mx.example.org; Sun, 3 Mar 2002 09:15:00 +0000\n"
        "Received: from client.example.net by relay.example.net; Sun, 3 Mar 2002 09:00:00 +0000\n",
    ),
    (
        "From -",  # a Received without a date, then one with a garbage date, then a good one
        "Received: from a by b\nReceived: from b by c; Sun, 3 Mar 1902 10:00:00 +0000\n"
        "Received: from c by d; Mon, 4 Mar 2002 10:00:00 +0000\n",
    ),
    ("From dora@example.com Tue Mar  5 12:00:00 2002", "Date: Mon, 1 Jan 1900 00:00:00 +0000\n"),
    ("From -", ""),  # nothing at all: its neighbour's (the one before it in the archive)
]
EXPECTED = {
    "<d0@example.com>": dt.datetime(2002, 3, 1, 9, 0, tzinfo=dt.UTC),
    "<d1@example.com>": dt.datetime(2002, 3, 2, 10, 30, tzinfo=dt.UTC),
    "<d2@example.com>": dt.datetime(2002, 3, 10, 15, 0, tzinfo=dt.UTC),
    "<d3@example.com>": dt.datetime(2002, 3, 3, 9, 15, tzinfo=dt.UTC),
    "<d4@example.com>": dt.datetime(2002, 3, 4, 10, 0, tzinfo=dt.UTC),
    "<d5@example.com>": dt.datetime(2002, 3, 5, 12, 0, tzinfo=dt.UTC),
    "<d6@example.com>": dt.datetime(2002, 3, 5, 12, 0, tzinfo=dt.UTC),
}


def mbox_text() -> str:
    out = []
    for i, (line, headers) in enumerate(ENTRIES):
        out.append(
            f"{line}\nFrom: Person {i} <p{i}@example.com>\nSubject: Topic {i}\n"
            f"Message-ID: <d{i}@example.com>\n{headers}\nWords of message {i}.\n\n"
        )
    return "".join(out)


def test_undated_messages_are_dated_by_their_archive_not_by_the_import(site, tmp_path):
    site.create_list("dev")
    path = tmp_path / "2002.mbox"
    path.write_text(mbox_text())
    result = site.cli("import-mbox", str(path), "--list", "dev")
    assert result.returncode == 0, result.stderr
    posts = site.posts_by_id()
    dates = {mid: dt.datetime.fromisoformat(posts[mid]["date"]) for mid in EXPECTED}
    received = {mid: dt.datetime.fromisoformat(posts[mid]["received_at"]) for mid in EXPECTED}
    assert dates == EXPECTED
    assert received == EXPECTED
    with site.db.read_session() as session:
        latest = max(session.scalars(select(Topic.last_post_at)))
    assert latest.replace(tzinfo=dt.UTC) == dt.datetime(2002, 3, 10, 15, 0, tzinfo=dt.UTC)
    # The dry run reads the archive the same way: nothing stored, the same topics planned.
    dry = site.cli("import-mbox", str(path), "--list", "dev", "--dry-run")
    assert dry.returncode == 0 and "Topic 6" in dry.stdout
