"""Composing notifications: list headers, subject tags, header injection (S12, B23), body safety (S13)."""

from __future__ import annotations

import datetime as dt
import random
import re
from email import policy
from email.message import EmailMessage
from email.parser import BytesParser
from pathlib import Path

import pytest

from mailforum.mail.compose import POLICY, ListIdentity, PostView, canonical_body, notification, references
from mailforum.mail.headers import is_tag, leading_prefixes, looks_like_reply, subject_info
from mailforum.mail.parse import parse
from mailforum.textsafe import BIDI_CONTROLS

IDENT = ListIdentity("dev", "Dev Talk", "lists.example.org", "https://forum.example.org", "[dev]")
EXPECTED = [
    "From",
    "To",
    "Subject",
    "Date",
    "Message-ID",
    "In-Reply-To",
    "References",
    "X-Original-From",
    "List-Id",
    "List-Post",
    "List-Help",
    "List-Archive",
    "List-Unsubscribe-Post",
    "Precedence",
    "Auto-Submitted",
    "X-Loop",
    "MIME-Version",
    "Content-Type",
    "Reply-To",
    "List-Unsubscribe",
]
HOSTILE = [
    "\r\n",
    "\n",
    "\r",
    "\x00",
    "\x0b",
    "\x85",
    "\u2028",
    "=?UTF-8?Q?=0A?=",
    "=?utf-8?b?DQpCY2M6IHZpY3RpbUBleGFtcGxlLm5ldA==?=",
    "Bcc: victim@example.net",
    '"',
    "<",
    ">",
    ",",
    ";",
    ":",
    "\\",
    "é",
    "日本",
    " ",
    "\t",
    "@",
]


def view(**kw):
    base = dict(
        message_id="<t2@example.com>",
        subject="Hello",
        author_name="Ann Author",
        author_address="ann@example.com",
        date=dt.datetime(2026, 11, 26, 10, 0, tzinfo=dt.UTC),
        topic_id=3,
        ancestors=("<t1@example.com>",),
    )
    base.update(kw)
    return PostView(**base)


def build(ident=IDENT, **kw) -> bytes:
    return notification(ident, view(**kw), "Body text\n", "<p>Body</p>").personalise(
        "dev+r-1-2-abc@lists.example.org", ["mailto:dev+unsubscribe@lists.example.org"]
    )


def header_names(data: bytes) -> list[str]:
    msg = BytesParser(policy=policy.default).parsebytes(data)
    return list(msg.keys())


def assert_clean_head(data: bytes) -> None:
    head = data.split(b"\r\n\r\n", 1)[0]
    assert b"\x00" not in head
    for line in head.split(b"\r\n"):
        assert b"\r" not in line and b"\n" not in line
        assert line[:1] in (b" ", b"\t") or re.match(rb"^[!-9;-~]+:", line), line


def test_the_copy_carries_every_list_header_once():
    data = build()
    assert header_names(data) == EXPECTED
    msg = BytesParser(policy=policy.default).parsebytes(data)
    assert msg["Subject"] == "[dev] Hello"
    assert msg["From"].addresses[0].display_name == "Ann Author via Dev Talk"
    assert msg["From"].addresses[0].addr_spec == "dev@lists.example.org"
    assert msg["List-Id"] == '"Dev Talk" <dev.lists.example.org>'
    assert msg["Auto-Submitted"] == "auto-generated" and msg["Precedence"] == "list"
    assert msg["In-Reply-To"] == "<t1@example.com>" and msg["References"] == "<t1@example.com>"


@pytest.mark.parametrize(
    ("subject", "expected"),
    [
        ("Hello", "[dev] Hello"),
        ("[dev] Hello", "[dev] Hello"),
        ("Re: [dev] Hello", "Re: [dev] Hello"),
        ("Re: [DEV] Hello", "Re: [dev] Hello"),  # spelled as the list's copies spell it
        ("", "[dev] (no subject)"),
        # Issue 13: a reply whose subject had no tag gets it after its prefixes, not before.
        ("Re: Hello", "Re: [dev] Hello"),
        ("RE: Hello", "RE: [dev] Hello"),
        ("AW: Hello", "AW: [dev] Hello"),
        ("SV: Hello", "SV: [dev] Hello"),
        ("Antw: Hello", "Antw: [dev] Hello"),
        ("Fwd: Hello", "Fwd: [dev] Hello"),
        ("Re[2]: Hello", "Re[2]: [dev] Hello"),
        ("Re(3): Hello", "Re(3): [dev] Hello"),
        ("Re: Re: Hello", "Re: Re: [dev] Hello"),
        ("RE: SV: Hello", "RE: SV: [dev] Hello"),
        ("Re:Hello", "Re: [dev] Hello"),
        ("Re：Hello", "Re： [dev] Hello"),  # a full-width colon
        # The tag already there, in any place among the prefixes, any number of times.
        ("[dev] Re: Hello", "Re: [dev] Hello"),
        ("Re: [dev] Re: [dev] Hello", "Re: Re: [dev] Hello"),
        ("AW: [dev] AW: Re: [DEV] Hello", "AW: AW: Re: [dev] Hello"),
        ("[dev][dev] Hello", "[dev] Hello"),
        ("Re: Fwd: [dev] Hello", "Re: Fwd: [dev] Hello"),
        # Other lists' tags stay after ours; a tag in the subject's own words is text.
        ("Re: [users] Hello", "Re: [dev] [users] Hello"),
        ("New plan (was: Re: [dev] Old plan)", "[dev] New plan (was: Re: [dev] Old plan)"),
        ("Proposal: drop 3.9", "[dev] Proposal: drop 3.9"),
        # Encoded words are decoded first, then tagged the same way.
        ("=?utf-8?q?Re=3A_=C3=9Cberpr=C3=BCfung?=", "Re: [dev] Überprüfung"),
        ("=?utf-8?q?=5Bdev=5D_Re=3A_Gr=C3=BC=C3=9Fe?=", "Re: [dev] Grüße"),
    ],
)
def test_the_subject_tag_goes_after_reply_prefixes_once(subject, expected):
    assert BytesParser(policy=policy.default).parsebytes(build(subject=subject))["Subject"] == expected


@pytest.mark.parametrize(
    "path",
    sorted(p for p in (Path(__file__).parents[1] / "messages").glob("*/*.eml") if "bounces" not in p.parts),
    ids=lambda p: f"{p.parent.name}/{p.name}",
)
def test_every_reply_in_the_corpus_is_tagged_like_its_thread(path):
    """mutt shows a subject in the thread tree when it differs from the parent's, once
    its reply prefixes are stripped: a reply's copy must read ``PREFIXES [dev] TITLE``,
    with the title the root's copy has after its tag."""
    subject = parse(path.read_bytes()).subject
    tagged = IDENT.tagged(subject)
    prefixes, _ = leading_prefixes(tagged)
    if looks_like_reply(subject) and not subject_info(subject).was_key:
        assert "[dev]" in prefixes and prefixes.count("[dev]") == 1, tagged
        after = prefixes[prefixes.index("[dev]") + 1 :]
        assert all(p.startswith("[") for p in after) and not is_tag(prefixes[0]), tagged
        assert IDENT.tagged(tagged) == tagged  # stable: tagging a copy's subject again changes nothing


def test_a_root_post_has_no_threading_headers_and_long_chains_keep_the_root():
    assert "In-Reply-To" not in header_names(build(ancestors=()))
    chain = tuple(f"<p{i}@x>" for i in range(50))
    refs = references(chain)
    assert len(refs) == 20 and refs[0] == "<p0@x>" and refs[-1] == "<p49@x>"


def test_injection_through_every_input_field_is_neutralised():
    """S12/B23: hostile subject, names, title and ids never add or split a header (seeded fuzz)."""
    rng = random.Random(4)
    for _ in range(250):

        def hostile() -> str:
            return "".join(rng.choice([*HOSTILE, "a", "b", "x"]) for _ in range(rng.randint(0, 12)))

        ident = ListIdentity("dev", hostile(), "lists.example.org", "https://forum.example.org", "[dev]")
        data = build(
            ident,
            subject=hostile(),
            author_name=hostile(),
            author_address=hostile() + "@example.com",
            message_id=f"<{rng.randint(0, 9)}{hostile()}@x>",
            ancestors=(f"<a{hostile()}@x>",),
        )
        assert_clean_head(data)
        names = header_names(data)
        assert "Bcc" not in names and names.count("Reply-To") == 1
        assert set(names) <= set(EXPECTED)


def test_personal_values_must_be_plain_ascii():
    copy = notification(IDENT, view(), "x", "y")
    for bad in ("a@b\r\nBcc: v@x", "a b@c", "é@x", ""):
        with pytest.raises(ValueError):
            copy.personalise(bad, [])


def test_bodies_are_canonical_crlf_and_keep_their_dot_lines():
    """S13: stray CR/LF become line ends; lines of only "." survive (the relay client dot-stuffs them)."""
    text = "a\r\n.\r\nb\n.\r\nc\r.\r\nd\re\nf\n.\n..\n.hidden\n\x00end"
    data = notification(IDENT, view(), text, "<p>x</p>").personalise("dev+r-x@lists.example.org", [])
    assert re.search(rb"\r(?!\n)", data) is None and re.search(rb"(?<!\r)\n", data) is None
    body = BytesParser(policy=policy.default).parsebytes(data).get_body(("plain",)).get_content()
    assert body.splitlines() == ["a", ".", "b", ".", "c", ".", "d", "e", "f", ".", "..", ".hidden", "end"]
    assert canonical_body("x\r\ny\rz") == "x\ny\nz"


@pytest.mark.parametrize(
    "name",
    [
        "Ann\u202e gnp.exe",  # RIGHT-TO-LEFT OVERRIDE
        "\u2067Ann\u2069 \u202bAuthor",  # isolates and an embedding
        "=?utf-8?q?Ann=E2=80=AE_Author?=",  # an encoded-word that decodes to one
        "=\u202e?utf-8?q?Ann=0D=0ABcc:_x?=",  # stripping must not make an encoded-word
    ],
)
def test_display_names_lose_bidi_controls(name):
    """Issue 12: the name before "via list" cannot reverse the list's name (or anything after it)."""
    ident = ListIdentity("dev", "Dev\u202e Talk", "lists.example.org", "https://forum.example.org", "[dev]")
    data = build(ident, author_name=name)
    assert_clean_head(data)
    msg = BytesParser(policy=policy.default).parsebytes(data)
    for header in ("From", "To"):
        shown = msg[header].addresses[0].display_name
        assert not BIDI_CONTROLS.search(shown), (header, shown)
    assert msg["From"].addresses[0].display_name.endswith(" via Dev Talk")


@pytest.mark.parametrize(
    "text",
    [
        "plain ascii\n",
        "é日本 and a trailing space \nand a tab\t\n",
        ".a dot line\nFrom the start\n--===============1== a boundary look-alike\n",
        "a long line " * 40 + "\n" + "x" * 200,
        "bare\rCR and\r\nCRLF and = signs =3D\n\n\n",
        "",
    ],
)
def test_the_hand_written_alternative_reads_as_the_email_package_writes_it(text):
    """``alternative`` replaces set_content/add_alternative (for speed): a reader finds the
    same two parts, the same decoded text, line lengths within RFC 5322's 78."""
    html = "<p>" + text + "</p>"
    ours = BytesParser(policy=policy.default).parsebytes(
        notification(IDENT, view(), text, html).personalise("a@b", [])
    )
    theirs = EmailMessage(policy=POLICY)
    theirs.set_content(canonical_body(text), cte="quoted-printable")
    theirs.add_alternative(canonical_body(html), subtype="html", cte="quoted-printable")
    theirs = BytesParser(policy=policy.default).parsebytes(theirs.as_bytes())
    assert ours.get_content_type() == "multipart/alternative"
    for mine, stdlib in zip(ours.iter_parts(), theirs.iter_parts(), strict=True):
        assert mine.get_content_type() == stdlib.get_content_type()
        assert (
            mine.get_content_charset() == "utf-8" and mine["Content-Transfer-Encoding"] == "quoted-printable"
        )
        assert mine.get_content() == stdlib.get_content()
        assert mine.get_payload() == stdlib.get_payload()  # the same encoded lines too
    raw = notification(IDENT, view(), text, html).body
    assert all(len(line) <= 78 for line in raw.split(b"\r\n"))
    assert b"\n" not in raw.replace(b"\r\n", b"") and b"\r" not in raw.replace(b"\r\n", b"")
