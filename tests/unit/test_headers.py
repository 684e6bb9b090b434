"""mail.headers: Message-ID lists, subject normalisation, Thread-Index."""

from __future__ import annotations

import base64

import pytest

from mailforum.mail.headers import (
    ancestry,
    canonical_msgid,
    is_generic,
    msgid_list,
    parent_id,
    reply_subject,
    subject_info,
    subject_key,
    thread_evidence,
    thread_index,
)


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        ("<a@b>", "<a@b>"),
        ("  <a@b>  (comment)", "<a@b>"),
        ("a@b", "<a@b>"),
        ('"a@b"', "<a@b>"),
        ("< spaced @ example.com >", "<spaced@example.com>"),
        ("<folded\r\n id@example.com>", "<foldedid@example.com>"),
        ("<<doubled@example.com>>", "<doubled@example.com>"),
        ("<1234>", "<1234>"),
        ("", None),
        ("<>", None),
        ("no id here", None),
        ("<> <real@example.com>", "<real@example.com>"),
        ("bare@example.com (Ann's id)", "<bare@example.com>"),
        ("<@> <@>", None),
    ],
)
def test_canonical_msgid(value: str, expected: str | None) -> None:
    assert canonical_msgid(value) == expected


def test_long_ids_become_the_same_digest_wherever_they_appear() -> None:
    long = "x" * 600 + "@example.com"
    own = canonical_msgid(f"<{long}>")
    assert own is not None and len(own) < 100
    assert msgid_list(f"<a@b> <{long}>") == ["<a@b>", own]


def test_msgid_list_drops_comments_quotes_and_repeats() -> None:
    value = '"Ann <ann@example.com>"\'s message of Thu <x@y> (from <bob@example.com>) <x@y> <z@w>'
    assert msgid_list(value) == ["<x@y>", "<z@w>"]


def test_msgid_list_is_bounded() -> None:
    value = " ".join(f"<{n}@x>" for n in range(5000))
    assert len(msgid_list(value)) == 1000


def test_ancestry_keeps_root_of_truncated_references_and_puts_parent_last() -> None:
    refs = " ".join(f"<{n}@x>" for n in range(40))
    chain = ancestry("<me@x>", "<39@x>", refs)
    assert chain[0] == "<0@x>" and chain[-1] == "<39@x>" and len(chain) == 21
    assert ancestry("<me@x>", "<p@x>", "<a@x> <p@x> <b@x>") == ["<a@x>", "<b@x>", "<p@x>"]
    assert ancestry("<me@x>", None, "<me@x>") == []
    assert thread_evidence("<p@x>", "<a@x> <b@x>") == ["<p@x>", "<b@x>", "<a@x>"]


@pytest.mark.parametrize(
    ("subject", "key", "is_reply"),
    [
        ("Re: Hello world", "hello world", True),
        ("RE: RE: hello   world", "hello world", True),
        ("AW: Hello world", "hello world", True),
        ("SV: Hello world", "hello world", True),
        ("Antw: Hello world", "hello world", True),
        ("Re[2]: Hello world", "hello world", True),
        ("Re: [dev] Re: [dev] Hello world", "hello world", True),
        ("[dev] Re: Hello world", "hello world", True),
        ("Fwd: Hello world", "hello world", False),
        ("WG: AW: Hello world", "hello world", False),
        ("回复: Hello world", "hello world", True),
        ("Hello world (fwd)", "hello world", False),
        ("[dev] Hello world", "hello world", False),
        ("Ｒｅ： Hello world", "hello world", True),  # full-width, as some East Asian clients write
        ("Regarding the release", "regarding the release", False),
        ("Re:", "", True),
    ],
)
def test_subject_prefixes_and_tags(subject: str, key: str, is_reply: bool) -> None:
    info = subject_info(subject)
    assert (info.key, info.is_reply) == (key, is_reply)


def test_was_subject_names_both_topics() -> None:
    info = subject_info("Re: [dev] New plan (was: Re: [dev] Old plan)")
    assert (info.key, info.was_key, info.title, info.is_reply) == ("new plan", "old plan", "New plan", True)
    assert subject_info("New plan [was Old plan]").was_key == "old plan"
    assert subject_key("Re: New plan (was: Old plan)") == "new plan"


def test_encoded_subjects_normalise_alike() -> None:
    assert subject_key("Re: Überprüfung") == subject_key("ÜBERPRÜFUNG") == subject_key("Überprüfung")


def test_generic_subjects() -> None:
    for subject in ("Question", "Re: [dev] HELP", "Hello", "hi", "", "Quick question?"):
        assert is_generic(subject_key(subject)), subject
    assert not is_generic(subject_key("Question about the importer"))


def test_pathological_subjects() -> None:
    assert subject_key("Re: " * 400 + "x") == "x"
    assert subject_key("Re: [dev] " * 100 + "x") == "x"
    assert len(subject_key("Re: " * 100_000 + "x")) <= 255  # bounded work, bounded key


def _ti(data: bytes) -> str:
    return base64.b64encode(data).decode()


def test_thread_index() -> None:
    root = bytes(range(1, 23))
    parsed = thread_index(_ti(root))
    assert parsed is not None and parsed.depth == 0 and parsed.parent_index is None
    child = thread_index(_ti(root + b"\x00\x01\x02\x03\x04"))
    assert child is not None and child.depth == 1
    assert child.conversation == parsed.conversation and child.parent_index == parsed.index
    assert thread_index(_ti(root[:20])) is None  # too short
    assert thread_index(_ti(root + b"\x01\x02")) is None  # not whole child blocks
    assert thread_index("not base64 at all!") is None
    assert thread_index(_ti(bytes(22))) is None  # no conversation GUID
    assert thread_index("A" * 100_000) is None
    assert thread_index(None) is None


@pytest.mark.parametrize(
    ("subject", "answer"),
    [
        ("Hello", "Re: Hello"),
        ("Re: Hello", "Re: Hello"),
        ("RE: Hello", "RE: Hello"),
        ("AW: Hallo", "AW: Hallo"),
        ("Re[2]: Hello", "Re[2]: Hello"),
        ("[dev] Re: Hello", "[dev] Re: Hello"),
        ("Fwd: Hello", "Re: Fwd: Hello"),
        ("Regarding the release", "Re: Regarding the release"),
    ],
)
def test_reply_subject_adds_one_re(subject: str, answer: str) -> None:
    assert reply_subject(subject) == answer


@pytest.mark.parametrize(
    ("in_reply_to", "references", "parent"),
    [
        # exmh / MH: the author's address, a quoted date, then the id.
        (
            'Message from Chris Garrigues <cwg-dated-1030377287.06fa6d@DeepEddy.Com> \r\n of "Tue, 27 Aug'
            ' 2002 11:39:41 -0500." <1030377260.1711.TMDA@deepeddy.vircio.com>',
            None,
            "<1030377260.1711.TMDA@deepeddy.vircio.com>",
        ),
        ('Your message of "Mon, 26 Aug 2002 15:32:12 CDT." <3D6A9D4C.2@x.org>', None, "<3D6A9D4C.2@x.org>"),
        ('<elm.1@x.org> from "Joe Bloggs" <joe@example.com> at "Aug 27, 2002"', None, "<elm.1@x.org>"),
        ('Message from Joe <joe@example.com> of "Tue, 27 Aug 2002"', None, None),  # no id at all
        ("<old@x> <new@x>", None, "<new@x>"),  # several: the last wins
        ("<new@x> <old@x>", "<root@x> <new@x>", "<new@x>"),  # unless References names one
        ("<a@x>; from ann@example.com on Tue, 27 Aug 2002", None, "<a@x>"),
        ("bare.id.1@example.com", None, "<bare.id.1@example.com>"),
        ("", None, None),
    ],
)
def test_parent_id_reads_free_text(in_reply_to: str, references: str | None, parent: str | None) -> None:
    assert parent_id(in_reply_to, references) == parent


def test_references_with_comments_folding_and_bare_ids() -> None:
    assert msgid_list('<a@x> (Ann\'s post)\r\n\t<b@\r\n x> ("Bob")  <c@x>') == ["<a@x>", "<b@x>", "<c@x>"]
    assert msgid_list("a.1@example.com b.2@example.com,c.3@example.com") == [
        "<a.1@example.com>",
        "<b.2@example.com>",
        "<c.3@example.com>",
    ]
    assert ancestry("<me@x>", 'Message from Ann <ann@x> of "Tue." <p@x>', None) == ["<p@x>"]


def test_an_address_in_free_text_is_not_an_id() -> None:
    gnus = 'yyyy@example.com\'s message of "Fri, 30 Aug 2002 11:32:16 +0100"'
    assert msgid_list(gnus) == []
    assert parent_id(gnus, None) is None
