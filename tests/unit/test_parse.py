"""mail.parse: hostile structure refused fast, charsets that lie, bodies, ids (RELIABILITY B19–B50)."""

from __future__ import annotations

import time

import pytest

from mailforum.mail.parse import (
    Unprocessable,
    addressees,
    check_structure,
    decode_header_value,
    decode_text,
    html_to_text,
    parse,
    unflow,
)

HEAD = b"From: Ann <ann@example.com>\r\nTo: dev@lists.example.org\r\nSubject: x\r\nMessage-ID: <h@x>\r\n"


def nested_multipart(depth: int) -> bytes:
    head = HEAD + b"MIME-Version: 1.0\r\n"
    out = [head]
    for level in range(depth):
        out.append(b'Content-Type: multipart/mixed; boundary="b%d"\r\n\r\n--b%d\r\n' % (level, level))
    out.append(b"Content-Type: text/plain\r\n\r\ndeep\r\n")
    for level in reversed(range(depth)):
        out.append(b"--b%d--\r\n" % level)
    return b"".join(out)


def nested_rfc822(depth: int) -> bytes:
    return HEAD + b"Content-Type: message/rfc822\r\n\r\n" * depth + b"Subject: inner\r\n\r\nbody\r\n"


def many_parts(count: int) -> bytes:
    body = b"--a\r\n\r\nx\r\n" * count + b"--a--\r\n"
    return HEAD + b'Content-Type: multipart/mixed; boundary="a"\r\n\r\n' + body


def _fast(fn, limit: float = 0.5):  # type: ignore[no-untyped-def]
    started = time.process_time()
    result = fn()
    assert time.process_time() - started < limit
    return result


@pytest.mark.parametrize("depth", [21, 200, 1000, 5000])
def test_deep_multipart_is_refused_without_recursion(depth: int) -> None:  # B34
    raw = nested_multipart(depth)
    with pytest.raises(Unprocessable, match="nesting too deep"):
        _fast(lambda: parse(raw))


def test_depth_twenty_is_parsed() -> None:
    parsed = parse(nested_multipart(19))
    assert parsed.text_body.strip() == "deep"


@pytest.mark.parametrize("depth", [25, 10_000])
def test_nested_attached_messages_are_refused(depth: int) -> None:  # B37
    with pytest.raises(Unprocessable, match="nesting too deep"):
        _fast(lambda: parse(nested_rfc822(depth)))


def test_a_hundred_thousand_parts_are_refused_fast() -> None:  # B35
    with pytest.raises(Unprocessable, match="too many MIME parts"):
        _fast(lambda: parse(many_parts(100_000)))
    parsed = parse(many_parts(400))  # within the limit: the first text part is the body
    assert parsed.text_body == "x" and len(parsed.attachments) == 399


# Spellings of a boundary the stdlib parser reads and a naive scan would not (B34, B35).
BOUNDARY_SPELLINGS = [
    b"boundary*=''MARK",  # RFC 2231, charset and language empty
    b"boundary*0=MARK",  # RFC 2231 continuation of one segment
    b"boundary*0*=us-ascii''MARK",
    b'note="; boundary=zz"; boundary=MARK',  # a lookalike inside another quoted parameter
    b"BOUNDARY = MARK",
]


@pytest.mark.parametrize("spelling", BOUNDARY_SPELLINGS)
def test_every_spelling_of_a_boundary_is_counted_by_the_scan(spelling: bytes) -> None:
    body = b"--a\r\n\r\nx\r\n" * 1000 + b"--a--\r\n"
    with pytest.raises(Unprocessable, match="too many MIME parts"):
        check_structure(
            HEAD + b"Content-Type: multipart/mixed; " + spelling.replace(b"MARK", b"a") + b"\r\n\r\n" + body
        )
    nested = HEAD
    for level in range(30):
        mark = b"b%d" % level
        nested += b"Content-Type: multipart/mixed; " + spelling.replace(b"MARK", mark) + b"\r\n\r\n--" + mark
        nested += b"\r\n"
    with pytest.raises(Unprocessable, match="nesting too deep"):
        check_structure(nested + b"x\r\n")


@pytest.mark.parametrize(
    ("header", "part"),
    [
        (b"X-A: b\rContent-Type: multipart/mixed; boundary=a\r\n\r\n", b"--a\r\n\r\nx\r\n"),  # hidden header
        (b"Content-Type: multipart/mixed; boundary=a\r\n\r\n", b"--a\r\rx\r"),  # bare CR line ends
        (b"Content-Type: multipart/mixed; boundary=a\r\n\r\n", b"x\r--a\r\n\r\n"),  # a CR before the dashes
    ],
)
def test_bare_cr_line_ends_do_not_hide_parts_from_the_scan(header: bytes, part: bytes) -> None:
    # The stdlib parser ends a line at a bare CR; the scan must see the lines it sees (B35).
    with pytest.raises(Unprocessable, match="too many MIME parts"):
        check_structure(HEAD + header + part * 1000 + b"--a--\r\n")


@pytest.mark.parametrize("kind", [b"message/partial", b"message/x-anything", b"message/global"])
def test_every_attached_message_type_counts_as_a_level(kind: bytes) -> None:
    # The parser reads every message/* but delivery-status as a message inside (B37).
    with pytest.raises(Unprocessable, match="nesting too deep"):
        check_structure(HEAD + (b"Content-Type: " + kind + b"\r\n\r\n") * 25 + b"Subject: in\r\n\r\nx\r\n")


@pytest.mark.parametrize(
    "markup",
    [
        "<table><tr>" + "<td>cell</td>" * 200_000 + "</tr></table>",  # 2.8 MB: 13 s to lay out
        "<p>hello world</p>" * 300_000,
        "<" * 2_000_000 + "<b>end &amp; done</b>",  # no ">" for a while: a naive tag regex is quadratic
    ],
)
def test_huge_html_is_stripped_not_laid_out(markup: str) -> None:
    # An HTML-only mail within the size limit costs well under the per-message budget (B35,
    # L8), here and on every web view, which converts the HTML again.
    raw = HEAD + b"Content-Type: text/html; charset=utf-8\r\n\r\n" + markup.encode()
    parsed = _fast(lambda: parse(raw), limit=3.0)
    assert parsed.text_body.split()[-2:] in (["cell", "cell"], ["hello", "world"], ["&", "done"])


def test_digest_parts_default_to_attached_messages() -> None:
    parts = b"".join(b"--d\r\n\r\nSubject: m%d\r\n\r\nbody\r\n" % n for n in range(3))
    raw = HEAD + b'Content-Type: multipart/digest; boundary="d"\r\n\r\n' + parts + b"--d--\r\n"
    check_structure(raw, max_depth=2)  # digest part (1) holding a message (2)
    with pytest.raises(Unprocessable):
        check_structure(raw, max_depth=1)
    with pytest.raises(Unprocessable):
        check_structure(raw, max_parts=5)  # three parts, three messages


def test_huge_header_block_is_refused_and_huge_subject_truncated() -> None:  # B25
    with pytest.raises(Unprocessable, match="header block too large"):
        parse(HEAD + b"X-Junk: " + b"a" * 300_000 + b"\r\n\r\nbody")
    parsed = _fast(lambda: parse(b"Subject: " + b"s" * 100_000 + b"\r\nMessage-ID: <l@x>\r\n\r\nbody"), 1.0)
    assert len(parsed.subject) == 998


def test_encoded_newline_in_subject_is_neutralised() -> None:  # B23
    parsed = parse(b"Subject: hi=?UTF-8?Q?=0A?=Bcc: victim@example.net\r\nMessage-ID: <n@x>\r\n\r\nbody")
    assert "\n" not in parsed.subject and "\r" not in parsed.subject
    assert parsed.subject.replace(" ", "") == "hiBcc:victim@example.net"


@pytest.mark.parametrize(
    ("raw", "expected"),
    [
        (b"Subject: caf\xe9\r\n", "café"),  # raw Latin-1, no encoded-word (B30)
        (b"Subject: caf\xc3\xa9\r\n", "café"),  # raw UTF-8
        (b"Subject: \x93quoted\x94\r\n", "“quoted”"),  # Windows-1252 smart quotes
        (b"Subject: =?x-unknown?Q?caf=C3=A9?=\r\n", "café"),  # unknown charset: UTF-8
        (b"Subject: =?utf-8?B?!!!notbase64?=\r\n", None),  # malformed: never raises
        (b"Subject: =?utf-7?Q?+ADw-script+AD4-?=\r\n", "+ADw-script+AD4-"),  # never decoded as UTF-7
    ],
)
def test_header_charsets(raw: bytes, expected: str | None) -> None:
    parsed = parse(raw + b"Message-ID: <c@x>\r\n\r\nbody")
    if expected is not None:
        assert parsed.subject == expected


def test_body_charsets_never_raise() -> None:  # B32
    for charset in ("utf-7", "x-bogus", "zlib", "rot13", "undefined", "unicode-escape", "", "idna"):
        assert decode_text(b"+ADw-script+AD4- caf\xe9 \\u0041", charset).startswith("+ADw-script+AD4-")
    assert decode_text(b"\x82\xa0", "shift_jis") == "あ"
    assert decode_text(b"\xc4\xe3\xba\xc3", "gb2312") == "你好"
    assert decode_text(b"a\x00b", "utf-8") == "ab"  # B9
    assert decode_header_value("=?ks_c_5601-1987?B?vsiz58fPvLy/5A==?=") == "안녕하세요"


def test_rfc2231_with_bad_charset_and_missing_segments() -> None:  # B32
    raw = (
        HEAD + b'MIME-Version: 1.0\r\nContent-Type: multipart/mixed; boundary="b"\r\n\r\n'
        b"--b\r\nContent-Type: text/plain\r\n\r\nsee attached\r\n"
        b"--b\r\nContent-Type: application/pdf\r\n"
        b"Content-Disposition: attachment; filename*0*=x-bogus''r%E9sum; "
        b"filename*3=\"e.pdf\"; filename*=''\r\n"
        b"Content-Transfer-Encoding: base64\r\n\r\nJVBERi0xLjQK\r\n--b--\r\n"
    )
    parsed = parse(raw)
    assert parsed.text_body.strip() == "see attached"
    [attachment] = parsed.attachments
    assert attachment.content_type == "application/pdf" and attachment.size == 9


@pytest.mark.parametrize(
    "value", ["", "Garbage", "Thu, 26 Nov 9999 10:00:00 +0000", "Mon, 1 Jan 1900 00:00:00 +0000"]
)
def test_bad_dates_are_none(value: str) -> None:  # B43
    raw = f"Date: {value}\r\nMessage-ID: <d@x>\r\n\r\nbody".encode()
    assert parse(raw).date is None


def test_missing_message_id_is_synthesised_stably() -> None:  # B19
    raw = b"From: a@example.com\r\nSubject: s\r\nDate: Thu, 26 Nov 2026 10:00:00 +0000\r\n\r\nbody\r\n"
    first, second = parse(raw), parse(b"Received: from elsewhere\r\n" + raw)
    assert first.synthesized_id and first.message_id == second.message_id
    assert first.message_id.endswith("@mailforum.invalid>")
    assert parse(raw.replace(b"body", b"other")).message_id != first.message_id


def test_empty_and_attachment_only_bodies() -> None:  # B44
    assert parse(b"Message-ID: <e@x>\r\n\r\n").text_body == ""
    assert parse(b"Message-ID: <e@x>").text_body == ""
    raw = (
        HEAD + b'Content-Type: multipart/mixed; boundary="b"\r\n\r\n'
        b'--b\r\nContent-Type: image/png\r\nContent-Disposition: attachment; filename="a.png"\r\n'
        b"Content-Transfer-Encoding: base64\r\n\r\niVBORw0KGgo=\r\n--b--\r\n"
    )
    parsed = parse(raw)
    assert parsed.text_body == "" and parsed.attachments[0].filename == "a.png"
    assert parsed.attachments[0].size == 8


def test_attached_message_is_an_attachment_not_the_body() -> None:
    raw = (
        HEAD + b'Content-Type: multipart/mixed; boundary="b"\r\n\r\n'
        b"--b\r\nContent-Type: text/plain\r\n\r\nsee the forwarded mail\r\n"
        b"--b\r\nContent-Type: message/rfc822\r\n\r\nSubject: Inner\r\n\r\ninner body\r\n--b--\r\n"
    )
    parsed = parse(raw)
    assert parsed.text_body.strip() == "see the forwarded mail"
    assert [(a.filename, a.content_type) for a in parsed.attachments] == [("Inner", "message/rfc822")]


def test_html_only_mail_gets_a_text_body() -> None:  # B41, B44
    raw = (
        HEAD
        + b"Content-Type: text/html; charset=utf-8\r\n\r\n<p>Hello <b>there</b></p><script>evil()</script>"
    )
    parsed = parse(raw)
    assert parsed.text_body == "Hello there"
    assert parsed.html_body is not None and "<script>" in parsed.html_body  # kept raw; sanitised when shown
    assert html_to_text("<ul><li>a</li><li>b</li></ul>") == "* a\n* b"
    assert "evil" not in html_to_text("<style>x{}</style><script>evil()</script><p>ok</p>")
    assert html_to_text("") == "" and html_to_text("<<<>>>") == "<<<>>>"


def test_format_flowed() -> None:  # B50
    assert unflow("one \ntwo\n", delsp=False) == "one two\n"
    assert unflow("wrap  \nped\n", delsp=True) == "wrap ped\n"
    assert unflow("> quoted \n> more\nnot\n", delsp=False) == "> quoted more\nnot\n"
    assert unflow("-- \nsig\n", delsp=False) == "-- \nsig\n"
    assert unflow(" From stuffed\n", delsp=False) == "From stuffed\n"


def test_recipients_and_sender() -> None:
    raw = (
        b"From: =?utf-8?q?J=C3=BCrgen?= <Juergen@Example.DE>\r\n"
        b"To: dev@lists.example.org, Ann <ann@x.org>\r\n"
        b"Cc: bob@y.org\r\nMessage-ID: <r@x>\r\n\r\nbody"
    )
    parsed = parse(raw)
    assert (parsed.from_address, parsed.from_name) == ("juergen@example.de", "Jürgen")
    assert parsed.recipients == ("dev@lists.example.org", "ann@x.org", "bob@y.org")
    assert parse(b"From: undisclosed-recipients:;\r\n\r\nx").from_address == ""  # B21


@pytest.mark.parametrize(
    "to",
    [
        b"=?utf-8?q?bob=40example.org?= <ann@example.org>",
        b"=?utf-8?q?x=2C_bob=40example.org?= <ann@example.org>",
        b"=?utf-8?b?Ym9iQGV4YW1wbGUub3JnLCA=?= <ann@example.org>",
    ],
)
def test_recipients_are_parsed_before_decoding(to: bytes) -> None:
    """An encoded-word never becomes an address: the same reading as ``addressees``."""
    raw = b"From: eve@example.net\r\nTo: " + to + b"\r\nMessage-ID: <e@x>\r\n\r\nbody"
    assert parse(raw).recipients == ("ann@example.org",)
    assert parse(raw).addressees == addressees(raw)


def test_single_part_fast_path_equals_the_full_parse() -> None:
    from email import message_from_bytes
    from email.policy import compat32
    from pathlib import Path

    from mailforum.mail import parse as module

    corpus = sorted((Path(__file__).parent.parent / "messages").glob("*/*.eml"))
    assert len(corpus) > 50
    for path in corpus:
        raw = path.read_bytes()
        fast = module._parsed(raw, module._message(raw))
        assert fast == module._parsed(raw, message_from_bytes(raw, policy=compat32)), path.name


def test_large_attachment_is_recorded_and_memory_bounded() -> None:  # B39, B40
    import base64
    import tracemalloc

    payload = bytes(range(256)) * (9_900_000 // 256)
    encoded = base64.encodebytes(payload)
    raw = (
        HEAD + b'MIME-Version: 1.0\r\nContent-Type: multipart/mixed; boundary="b"\r\n\r\n'
        b"--b\r\nContent-Type: text/plain\r\n\r\nthe archive is attached\r\n"
        b"--b\r\nContent-Type: application/gzip\r\n"
        b'Content-Disposition: attachment; filename="bomb.tar.gz"\r\n'
        b"Content-Transfer-Encoding: base64\r\n\r\n" + encoded + b"--b--\r\n"
    )
    tracemalloc.start()
    try:
        parsed = parse(raw)
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    [attachment] = parsed.attachments
    assert (attachment.filename, attachment.content_type, attachment.size) == (
        "bomb.tar.gz",
        "application/gzip",
        len(payload),
    )
    assert peak < 4 * len(raw) + 8_000_000  # never decompressed; a few copies at most


def test_header_date_and_written_order() -> None:
    from mailforum.core.archive import written_order
    from mailforum.mail.parse import header_date

    def msg(date: str) -> bytes:
        return (f"Date: {date}\r\n" if date else "").encode() + b"Subject: s\r\n\r\nDate: not this one\r\n"

    assert header_date(msg("Thu, 26 Nov 2026 10:00:00 +0100")).isoformat() == "2026-11-26T09:00:00+00:00"
    assert header_date(msg("")) is None and header_date(msg("garbage")) is None
    raws = [
        msg("Thu, 26 Nov 2026 12:00:00 +0000"),
        msg(""),  # undated: stays right after the message before it
        msg("Thu, 26 Nov 2026 10:00:00 +0000"),
        msg("Thu, 26 Nov 2026 11:00:00 +0000"),
        msg("Thu, 26 Nov 2026 11:00:00 +0000"),  # same time: file order
    ]
    assert written_order(["a", "b", "c", "d", "e"], raws) == ["c", "d", "e", "a", "b"]


def test_attachment_download_matches_metadata_for_every_corpus_message() -> None:
    from pathlib import Path

    from mailforum.mail.attachments import attachment

    extra = (
        HEAD + b'Content-Type: multipart/mixed; boundary="b"\r\n\r\n'
        b"--b\r\nContent-Type: text/plain\r\n\r\nfirst\r\n"
        b"--b\r\nContent-Type: text/plain\r\n\r\nsecond inline text\r\n"
        b"--b\r\nContent-Type: message/rfc822\r\n\r\nSubject: Inner\r\n\r\ninner\r\n"
        b"--b\r\nContent-Type: application/pdf\r\nContent-Transfer-Encoding: base64\r\n\r\n"
        b"JVBERi0xLjQK\r\n--b--\r\n"
    )
    corpus = [p.read_bytes() for p in sorted((Path(__file__).parent.parent / "messages").glob("*/*.eml"))]
    for raw in [*corpus, extra]:
        stored = parse(raw).attachments
        for index, meta in enumerate(stored):
            found = attachment(raw, index)
            assert found is not None and (found.filename, found.content_type) == (
                meta.filename,
                meta.content_type,
            )
            assert len(found.data) == meta.size
        assert attachment(raw, len(stored)) is None
    assert [a.content_type for a in parse(extra).attachments] == [
        "text/plain",
        "message/rfc822",
        "application/pdf",
    ]


@pytest.mark.parametrize("header", ["Message-ID", "In-Reply-To", "References"])
@pytest.mark.parametrize("empty", [b"<>", b"", b"< >", b"(none)"])
def test_first_valid_id_header_wins(header: str, empty: bytes) -> None:  # issue 12 item 6
    name = header.encode()
    raw = (
        b"From: Ann <ann@example.com>\r\nSubject: x\r\n"
        + name
        + b": "
        + empty
        + b"\r\n"
        + name
        + b": <real@example.com>\r\n"
        + name
        + b": <later@example.com>\r\n\r\nbody\r\n"
    )
    parsed = parse(raw)
    value = {
        "Message-ID": parsed.message_id,
        "In-Reply-To": parsed.in_reply_to,
        "References": parsed.references,
    }
    assert value[header] == "<real@example.com>"
    assert not parsed.synthesized_id or header != "Message-ID"
