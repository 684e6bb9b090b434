"""MIME digests (RFC 1153 / RFC 2046) end to end: posts stored through the real processing
path, digests sent by the real delivery worker to a real SMTP sink, replies sent over real
SMTP into the ingest server, the CLI as a subprocess. A controllable clock (``now``
passed in) drives the digest period.
"""

from __future__ import annotations

import base64
import datetime as dt
import re
import urllib.request
from collections.abc import Iterator
from email.message import EmailMessage

import pytest
from sqlalchemy import select

from mailforum.core import digest_schedule, lists, tokens
from mailforum.db.models import DeliveryMode, Member, Post, PostingPolicy, SubscriptionKind
from tests.helpers import DOMAIN, RecordingSink, ServerThread, message, send, wait_for
from tests.integration.outbound_helpers import as_email, deliver, store, subscribe

DAY1 = dt.datetime(2026, 10, 1, 7, 0, 5, tzinfo=dt.UTC)  # in the past of the real clock
REPLY = re.compile(r"dev\+r-[a-z0-9-]+@" + re.escape(DOMAIN))
LONG = "".join(f"Paragraph {n}: " + "words that go on and on " * 12 + "\n\n" for n in range(12))
QUOTING = "I agree.\n\nOn Thu, Ann wrote:\n> quoted words here\n> more\n\n-- \nCarl's signature\n"
EMBEDDED_HEADERS = sorted(
    [
        "from", "to", "subject", "date", "message-id", "x-original-from", "reply-to",
        "mime-version", "content-type", "content-transfer-encoding",
    ]
)  # fmt: skip


@pytest.fixture
def sink(site) -> Iterator[RecordingSink]:
    """A real SMTP server on the configured relay port, recording what delivery sends."""
    recording = RecordingSink(port=site.config.relay.port)
    recording.start()
    yield recording
    recording.stop()


@pytest.fixture
def ingest(site) -> Iterator[ServerThread]:
    """The real ingest server, spool processor and web archive (delivery is called by hand)."""
    running = ServerThread(site.config, delivery=False, scheduler=False)
    running.start()
    yield running
    running.stop()


def setup_list(site, *digest_members: str, fmt: str = "mime", name: str = "dev") -> None:
    site.create_list(name, PostingPolicy.OPEN)
    site.add_members(name, "carl@example.com", mode=DeliveryMode.ALL)
    site.add_members(name, *digest_members, mode=DeliveryMode.DIGEST)
    with site.db.session() as session:
        lists.get_list(session, name).digest_format = fmt


def post(site, subject: str, mid: str, body: str = "Hello.\n", extra: str = "", to: str = "dev") -> None:
    raw = message(subject, f"<{mid}>", body=body, extra=extra, to=f"{to}@{DOMAIN}")
    out = store(site, raw, rcpt=f"{to}@{DOMAIN}")
    assert "published" in out[0], out


def run(site, name: str = "dev") -> None:
    digest_schedule.run_list(site.db, site.config, name, DAY1, scheduled=True)
    deliver(site.config, site.db)


def digest_of(sink: RecordingSink, address: str) -> tuple[EmailMessage, bytes]:
    (data,) = [
        t.data for t in sink.transactions if address in t.rcpt_tos and b"Message-ID: <digest." in t.data
    ]
    return as_email(data), data


def copy_of(sink: RecordingSink, address: str, message_id: str) -> EmailMessage:
    (copy,) = [
        as_email(t.data)
        for t in sink.transactions
        if address in t.rcpt_tos and as_email(t.data)["Message-ID"] == message_id
    ]
    return copy


def parts(msg: EmailMessage) -> tuple[str, list[EmailMessage], str]:
    """The contents text, the embedded messages, the footer text; checks the structure."""
    assert msg.get_content_type() == "multipart/mixed"
    contents, digest, footer = msg.iter_parts()
    assert contents.get_content_type() == footer.get_content_type() == "text/plain"
    assert digest.get_content_type() == "multipart/digest"
    embedded = list(digest.iter_parts())
    assert {p.get_content_type() for p in embedded} == {"message/rfc822"}
    return lf(contents), [p.get_content() for p in embedded], lf(footer)


def lf(part: EmailMessage) -> str:
    return part.get_content().replace("\r\n", "\n")


def ids(embedded: list[EmailMessage]) -> list[str]:
    return [m["Message-ID"] for m in embedded]


def member_id(site, address: str) -> int:
    with site.db.read_session() as session:
        return session.scalars(select(Member.id).where(Member.address == address)).one()


def post_id(site, message_id: str) -> int:
    with site.db.read_session() as session:
        return session.scalars(select(Post.id).where(Post.message_id == message_id)).one()


def four_posts(site) -> None:
    post(site, "Alpha topic", "a1@example.com", body=LONG)
    post(site, "Beta topic", "b1@example.com", body="beta body\n")
    post(site, "Re: Alpha topic", "a2@example.com", body=QUOTING, extra="In-Reply-To: <a1@example.com>")
    post(site, "Gamma topic", "g1@example.com", body="gamma body\n")


def test_a_mime_digest_holds_every_post_whole_as_a_message_of_its_own(site, sink):
    setup_list(site, "dora@example.com", "dan@example.com", "dina@example.com")
    four_posts(site)
    subscribe(site, "dora@example.com", "<g1@example.com>", SubscriptionKind.MUTE.value)
    subscribe(site, "dina@example.com", "<g1@example.com>", SubscriptionKind.MUTE.value)
    run(site)

    msg, data = digest_of(sink, "dora@example.com")
    assert msg["Subject"] == "[dev] Daily digest, 1 Oct 2026: 3 new posts in 2 topics"
    assert msg["Message-ID"].startswith("<digest.dev.") and msg["List-Unsubscribe"]
    contents, embedded, footer = parts(msg)
    # The contents' order (new topics first, then the most active); the muted topic left out.
    assert ids(embedded) == ["<a1@example.com>", "<a2@example.com>", "<b1@example.com>"]
    assert "Gamma" not in data.decode("ascii")
    assert contents.index("Alpha topic") < contents.index("Beta topic")
    assert f"/lists/dev/posts/{post_id(site, '<b1@example.com>')}" in contents
    assert len(REPLY.findall(contents)) == 3
    assert "Unsubscribe: mailto:dev+unsubscribe@" in footer and "dev-request@" in footer
    assert f"{site.config.site.base_url}/lists/dev/preferences" in footer
    # Whole bodies: not cut at [digest] max_post_chars, quotes and signature kept.
    a1, a2, b1 = embedded
    assert len(LONG) > site.config.digest.max_post_chars
    assert lf(a1).strip() == LONG.strip() and lf(a2).strip() == QUOTING.strip()
    assert lf(b1) == "beta body\n"
    for m in embedded:
        assert m.get_content_type() == "text/plain" and m.get_content_charset() == "utf-8"
        assert m["Content-Transfer-Encoding"] == "quoted-printable"
    # The headers are the post copies' (carl gets every post): DMARC-safe From, the thread.
    copy = copy_of(sink, "carl@example.com", "<a2@example.com>")
    for name in ("From", "To", "Subject", "Date", "In-Reply-To", "References", "X-Original-From"):
        assert a2[name] == copy[name], name
    assert a2["From"].addresses[0].addr_spec == f"dev@{DOMAIN}"
    assert a2["In-Reply-To"] == "<a1@example.com>" and a1["In-Reply-To"] is None
    assert all(len(line) <= 998 for line in data.split(b"\r\n"))

    # dan muted nothing: the fourth post too. dina muted what dora muted: the same shared
    # render (its random MIME boundaries), only the personal parts differ.
    _, dan_embedded, _ = parts(digest_of(sink, "dan@example.com")[0])
    assert ids(dan_embedded) == [
        "<a1@example.com>",
        "<a2@example.com>",
        "<g1@example.com>",
        "<b1@example.com>",
    ]
    dina, dina_data = digest_of(sink, "dina@example.com")
    assert dina.get_boundary() == msg.get_boundary() and dina_data != data
    assert dina.get_boundary() != digest_of(sink, "dan@example.com")[0].get_boundary()


def test_each_embedded_reply_to_is_that_members_signed_address_for_that_post(site, sink):
    setup_list(site, "dora@example.com", "dan@example.com")
    four_posts(site)
    run(site)
    key = tokens.derive_key(site.config.site.secret_key)
    seen: set[str] = set()
    for who in ("dora@example.com", "dan@example.com"):
        contents, embedded, _ = parts(digest_of(sink, who)[0])
        in_contents = REPLY.findall(contents)
        for at, m in enumerate(embedded):
            reply_to = m["Reply-To"].addresses[0].addr_spec
            token = reply_to.split("+r-", 1)[1].split("@")[0]
            fields = tokens.verify(key, tokens.REPLY, token, dt.datetime.now(dt.UTC), fields=2)
            assert fields == (member_id(site, who), post_id(site, m["Message-ID"]))
            assert reply_to == in_contents[at]  # the contents list the same address for the post
            seen.add(reply_to)
    assert len(seen) == 8  # one per member and post


def test_reply_to_an_embedded_message_lands_under_that_post(site, sink, ingest):
    setup_list(site, "dora@example.com")
    four_posts(site)
    run(site)
    _, embedded, _ = parts(digest_of(sink, "dora@example.com")[0])
    by_id = {m["Message-ID"]: m for m in embedded}
    # Replying in an old mail program: To the Reply-To, In-Reply-To/References of the message.
    for parent, mid in (("<a1@example.com>", "<r1@example.com>"), ("<b1@example.com>", "<r2@example.com>")):
        original = by_id[parent]
        reply_to = original["Reply-To"].addresses[0].addr_spec
        extra = f"In-Reply-To: {parent}\nReferences: {original['References'] or ''} {parent}"
        raw = message(f"Re: {original['Subject']}", mid, "dora@example.com", reply_to, "Agreed.\n", extra)
        assert send(site.config, raw, [reply_to], "dora@example.com") == {}
    wait_for(lambda: {"<r1@example.com>", "<r2@example.com>"} <= set(site.posts_by_id()))
    posts = site.posts_by_id()
    assert posts["<r1@example.com>"]["parent_message_id"] == "<a1@example.com>"  # not a2, its sibling
    assert posts["<r2@example.com>"]["parent_message_id"] == "<b1@example.com>"
    assert posts["<r2@example.com>"]["topic_id"] == posts["<b1@example.com>"]["topic_id"]


def test_subjects_and_names_cannot_inject_headers_into_embedded_messages(site, sink):
    """RELIABILITY S12/B23 (CVE-2024-6923) for the embedded messages' headers."""
    setup_list(site, "dora@example.com")
    post(site, "hi=?UTF-8?Q?=0A?=Bcc: victim@example.net", "x1@example.com")
    post(site, "=?utf-8?b?DQpCY2M6IHZpY3RpbUBleGFtcGxlLm5ldA==?=", "x2@example.com")
    post(site, "plain", "x3@example.com")
    with site.db.session() as session:  # stored values with raw CR/LF (an import, an old bug)
        x3 = session.scalars(select(Post).where(Post.message_id == "<x3@example.com>")).one()
        x3.subject = "x\r\nBcc: victim@example.net\r\nReply-To: evil@example.net"
        x3.author_name = "Mallory\nBcc: victim@example.net"
    run(site)
    msg, data = digest_of(sink, "dora@example.com")
    _, embedded, _ = parts(msg)
    assert ids(embedded) == ["<x3@example.com>", "<x2@example.com>", "<x1@example.com>"]
    for m in embedded:
        assert sorted(k.lower() for k in m) == EMBEDDED_HEADERS
        assert REPLY.fullmatch(m["Reply-To"].addresses[0].addr_spec)
    assert "Bcc: victim" in embedded[2]["Subject"] and "Bcc: victim" in embedded[0]["Subject"]
    # The raw bytes: every header line of every embedded message is a field we wrote or a fold.
    boundary = list(msg.iter_parts())[1].get_boundary().encode()
    for chunk in data.split(b"--" + boundary)[1:-1]:
        head = chunk.split(b"\r\n\r\n")[1]
        for line in head.split(b"\r\n"):
            assert line.startswith((b" ", b"\t")) or line.split(b":")[0].lower().decode() in EMBEDDED_HEADERS
        assert not re.search(rb"\r(?!\n)|(?<!\r)\n|\x00", head)


def test_attachments_are_listed_with_working_links_and_the_raw_is_never_embedded(site, sink, ingest):
    setup_list(site, "dora@example.com")
    pdf = b"%PDF-1.4 attachment bytes " * 200
    encoded = base64.encodebytes(pdf).decode()
    raw = (
        f"Authentication-Results: {DOMAIN}; dmarc=pass header.from=example.com\r\n"
        f"From: Ann <ann@example.com>\r\nTo: dev@{DOMAIN}\r\nSubject: Report\r\n"
        "Message-ID: <att@example.com>\r\nMIME-Version: 1.0\r\n"
        'Content-Type: multipart/mixed; boundary="b1"\r\n\r\n'
        '--b1\r\nContent-Type: multipart/alternative; boundary="b2"\r\n\r\n'
        "--b2\r\nContent-Type: text/plain\r\n\r\nThe report is attached.\r\n"
        '--b2\r\nContent-Type: text/html\r\n\r\n<p onclick="x()">The report</p><script>alert(1)</script>\r\n'
        "--b2--\r\n"
        "--b1\r\nContent-Type: application/pdf\r\n"
        'Content-Disposition: attachment; filename="Q3 report.pdf"\r\n'
        f"Content-Transfer-Encoding: base64\r\n\r\n{encoded}\r\n--b1--\r\n"
    ).encode()
    assert "published" in store(site, raw)[0]
    run(site)
    msg, data = digest_of(sink, "dora@example.com")
    (embedded,) = parts(msg)[1]
    assert embedded.get_content_type() == "text/plain"  # the attachment is not in it
    body = lf(embedded)
    assert body.startswith("The report is attached.\n") and "Q3 report.pdf (application/pdf" in body
    link = re.search(r"http\S+/attachments/0/\S+", body)
    assert link and link.group(0).endswith("/Q3_report.pdf")  # a generated, URL-safe name (issue 12)
    with urllib.request.urlopen(link.group(0), timeout=10) as answer:
        assert answer.status == 200 and answer.read() == pdf
    for needle in (
        b"Authentication-Results",
        b"<script",
        b"alert(1)",
        b"onclick",
        encoded.splitlines()[0].encode(),
    ):
        assert needle not in data


def test_standard_lists_keep_the_standard_digest(site, sink):
    setup_list(site, "dora@example.com", fmt="mime")
    setup_list(site, "dora@example.com", fmt="standard", name="ops")
    post(site, "Alpha topic", "a1@example.com")
    post(site, "Ops topic", "o1@example.com", to="ops")
    run(site)
    run(site, "ops")
    with site.db.read_session() as session:
        assert lists.get_list(session, "ops").digest_format == "standard"
    mime = [as_email(t.data) for t in sink.transactions if b"Message-ID: <digest.dev." in t.data]
    standard = [as_email(t.data) for t in sink.transactions if b"Message-ID: <digest.ops." in t.data]
    assert [m.get_content_type() for m in mime] == ["multipart/mixed"]
    (ops,) = standard
    assert ops.get_content_type() == "multipart/alternative"
    assert [p.get_content_type() for p in ops.iter_parts()] == ["text/plain", "text/html"]
    text = lf(next(iter(ops.iter_parts())))
    assert "Ops topic" in text and "ops+r-" in text
    # A list made now starts standard.
    site.create_list("new")
    with site.db.read_session() as session:
        assert lists.get_list(session, "new").digest_format == "standard"


def test_digest_format_cli_sets_shows_refuses_and_dry_runs(site):
    site.create_list("dev", PostingPolicy.OPEN)
    site.add_members("dev", "dora@example.com", mode=DeliveryMode.DIGEST)
    shown = site.cli("digest", "format", "dev")
    assert shown.returncode == 0 and shown.stdout.startswith("dev: digest format standard ("), shown.stderr
    changed = site.cli("digest", "format", "dev", "MIME")
    assert changed.returncode == 0 and changed.stdout.startswith("dev: digest format mime ("), changed.stderr
    assert site.cli("digest", "format", "dev").stdout.startswith("dev: digest format mime (")
    assert "digest format:    mime" in site.cli("lists", "show", "dev").stdout
    bad = site.cli("digest", "format", "dev", "rtf")
    assert bad.returncode == 1
    assert bad.stderr.strip() == "mailforum: error: unknown digest format 'rtf' (use mime or standard)"
    missing = site.cli("digest", "format", "nope", "mime")
    assert missing.returncode == 1 and len(missing.stderr.strip().splitlines()) == 1
    assert "no list named 'nope'" in missing.stderr
    assert "message/rfc822" in site.cli("digest", "format", "--help").stdout

    post(site, "Alpha topic", "a1@example.com", body=LONG)
    dry = site.cli("digest", "send", "--list", "dev", "--dry-run")
    assert dry.returncode == 0, dry.stderr
    out = dry.stdout
    assert "Format: mime" in out and "=== digest: multipart/mixed, 3 parts" in out
    assert "=== 2.1: message/rfc822" in out and "Message-ID: <a1@example.com>" in out
    assert "Reply-To: dev+r-SIGNED-FOR-EACH-MEMBER-AND-POST@" in out
    assert LONG.strip().splitlines()[-1] in out  # the whole post
    assert "1 digest would be queued (dry run)" in out
    back = site.cli("digest", "format", "dev", "standard")
    assert back.stdout.startswith("dev: digest format standard (")
    dry = site.cli("digest", "send", "--list", "dev", "--dry-run")
    assert "Format: standard" in dry.stdout and "message/rfc822" not in dry.stdout
