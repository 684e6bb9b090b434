"""Threading and hostile MIME through the real server (SMTP/LMTP in, the spool worker, export out)."""

from __future__ import annotations

import base64
import time

from sqlalchemy import select

from mailforum.db.models import PostingPolicy, SpoolEntry, SpoolState
from tests.helpers import DOMAIN, message, send, wait_for
from tests.unit.test_parse import many_parts, nested_multipart, nested_rfc822

ROOT_INDEX = bytes.fromhex("01db3f9a2b11") + bytes(range(16, 32))


def _index(*children: bytes) -> str:
    return base64.b64encode(ROOT_INDEX + b"".join(children)).decode()


def test_hostile_mime_is_parked_at_once_with_its_reason(site, server):  # B34, B35, B37, L8
    site.create_list("dev", policy=PostingPolicy.OPEN)
    started = time.monotonic()
    for raw in (nested_multipart(25), nested_rfc822(10_000), many_parts(100_000)):
        send(site.config, raw.replace(b"Message-ID: <h@x>", f"Message-ID: <{len(raw)}@x>".encode()))
    send(site.config, message(message_id="<fine@example.com>"))
    posts = wait_for(lambda: site.posts_by_id() or None)
    assert list(posts) == ["<fine@example.com>"]

    def parked() -> list[SpoolEntry]:
        with site.db.read_session() as session:
            return list(
                session.scalars(select(SpoolEntry).where(SpoolEntry.state == SpoolState.FAILED.value))
            )

    entries = wait_for(lambda: len(parked()) == 3 and parked())
    assert time.monotonic() - started < 15
    reasons = sorted((e.error or "").splitlines()[-1] for e in entries)
    assert reasons == [
        "unprocessable: MIME nesting too deep (more than 20 levels)",
        "unprocessable: MIME nesting too deep (more than 20 levels)",
        "unprocessable: too many MIME parts (more than 500)",
    ]
    assert all(e.attempts == 1 for e in entries)  # parked at once, not retried


def test_outlook_conversation_out_of_order_over_smtp_and_lmtp(site, server):
    site.create_list("dev", policy=PostingPolicy.OPEN)
    child, grandchild = b"\x00\x00\xa1\xb2\xc3", b"\x00\x01\x4d\x5e\x6f"
    outlook = "Thread-Topic: Capacity\r\nThread-Index: {}"
    send(site.config, message("Capacity", "<root@corp>", extra=outlook.format(_index())))
    wait_for(lambda: len(site.posts_by_id()) == 1)
    send(
        site.config,
        message("RE: Capacity", "<gc@corp>", extra=outlook.format(_index(child, grandchild))),
        lmtp=True,
    )
    wait_for(lambda: len(site.posts_by_id()) == 2)
    send(site.config, message("AW: Capacity", "<c@corp>", extra=outlook.format(_index(child))))
    posts = wait_for(lambda: (p := site.posts_by_id()) and len(p) == 3 and p)
    assert posts["<c@corp>"]["parent_message_id"] == "<root@corp>"
    assert posts["<gc@corp>"]["parent_message_id"] == "<c@corp>"
    assert len({p["topic_id"] for p in posts.values()}) == 1


def test_generic_subjects_stay_apart_and_headers_win(site, server):
    site.create_list("dev", policy=PostingPolicy.OPEN)
    send(site.config, message("Question", "<q1@a>", sender="Ann <ann@a.example>"))
    send(site.config, message("Question", "<q2@b>", sender="Zoe <zoe@b.example>"))
    wait_for(lambda: len(site.posts_by_id()) == 2)
    send(site.config, message("Re: Question", "<r1@c>", sender="Walt <walt@c.example>"))
    send(
        site.config,
        message("Re: Question", "<r2@d>", sender="Bob <bob@d.example>", extra="Cc: zoe@b.example"),
    )
    send(site.config, message("Re: Question", "<r3@e>", extra="In-Reply-To: <q1@a>"))
    posts = wait_for(lambda: (p := site.posts_by_id()) and len(p) == 5 and p)
    topic = {mid: p["topic_id"] for mid, p in posts.items()}
    assert topic["<q1@a>"] != topic["<q2@b>"]
    assert topic["<r1@c>"] not in (topic["<q1@a>"], topic["<q2@b>"])
    assert topic["<r2@d>"] == topic["<q2@b>"]
    assert topic["<r3@e>"] == topic["<q1@a>"] and posts["<r3@e>"]["parent_message_id"] == "<q1@a>"


def test_the_spool_says_what_threaded_each_post(site, server):
    """Each post's outcome names its evidence: headers, the subject rule that joined it, or new."""
    site.create_list("dev", policy=PostingPolicy.OPEN)
    root = "The installer asks for a licence key on the second screen of the wizard.\n"
    send(site.config, message("Installer licence key", "<root@a>", sender="Ann <ann@a.example>", body=root))
    wait_for(lambda: len(site.posts_by_id()) == 1)
    send(site.config, message("Re: Installer licence key", "<byid@b>", extra="In-Reply-To: <root@a>"))
    quoted = "Leave it empty.\n\n-----Original Message-----\nFrom: Ann\n\n" + root
    send(
        site.config,
        message("RE: Installer licence key", "<quote@c>", sender="Carl <carl@c.example>", body=quoted),
    )
    send(
        site.config,
        message(
            "Re: Installer licence key", "<form@d>", sender="Dee <dee@d.example>", extra="Cc: ann@a.example"
        ),
    )
    send(site.config, message("Question", "<new@e>", sender="Eve <eve@e.example>"))
    wait_for(lambda: len(site.posts_by_id()) == 5)
    evidence = {
        "<root@a>": "(new)",
        "<byid@b>": "(headers)",
        "<quote@c>": "(subject:quoted-reply)",
        "<form@d>": "(subject:participant)",  # Ann, whom it copies, wrote there within 3 h
        "<new@e>": "(new)",
    }
    for mid, expected in evidence.items():
        state, outcome = site.outcome_of(mid)
        assert state == "done" and outcome.endswith(expected), (mid, outcome)


def test_reply_into_another_list_is_not_attached(site, server):  # B28, S21
    site.create_list("dev", policy=PostingPolicy.OPEN)
    site.create_list("private", policy=PostingPolicy.OPEN)
    send(site.config, message("Salaries", "<secret@x>", to=f"private@{DOMAIN}"), [f"private@{DOMAIN}"])
    wait_for(lambda: len(site.posts_by_id("private")) == 1)
    send(site.config, message("Re: Salaries", "<leak@y>", extra="In-Reply-To: <secret@x>"))
    posts = wait_for(lambda: site.posts_by_id("dev") or None)
    private = site.posts_by_id("private")
    assert posts["<leak@y>"]["topic_id"] != private["<secret@x>"]["topic_id"]
    assert "<secret@x>" not in posts  # no placeholder or copy is exported


def test_message_id_squatter_never_swallows_the_genuine_post(site, server):  # S20
    site.create_list("dev", policy=PostingPolicy.OPEN)
    send(site.config, message("Cheap watches", "<release@x>", sender="Mallory <m@evil.example>"))
    wait_for(lambda: len(site.posts_by_id()) == 1)
    genuine = message("Release 2.4 is out", "<release@x>", sender="Erin <erin@example.org>")
    send(site.config, genuine)
    send(site.config, b"Received: from backup-mx\r\n" + genuine)  # redelivered: the same message
    posts = wait_for(lambda: (p := site.export()) and len(p) == 2 and p)
    by_subject = {p["subject"]: p for p in posts}
    assert by_subject["Cheap watches"]["message_id"] == "<release@x>"
    kept = by_subject["Release 2.4 is out"]
    assert kept["message_id"].endswith(".release@x>") and kept["status"] == "held"
    send(site.config, message("Re: Release", "<reply@y>", extra="In-Reply-To: <release@x>"))
    assert wait_for(lambda: len(site.export()) == 3)
