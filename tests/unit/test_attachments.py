"""Attachment N of a raw message is attachment N of the metadata stored with its post."""

from __future__ import annotations

import re
import unicodedata
from urllib.parse import quote

import pytest

from mailforum.mail.attachments import attachment
from mailforum.mail.parse import parse
from mailforum.textsafe import safe_filename, url_filename

RAW = (
    b"From: a@example.com\r\nSubject: files\r\nMIME-Version: 1.0\r\n"
    b"Content-Type: multipart/mixed; boundary=OUT\r\n\r\n"
    b"--OUT\r\nContent-Type: multipart/alternative; boundary=IN\r\n\r\n"
    b"--IN\r\nContent-Type: text/plain\r\n\r\nbody\r\n"
    b"--IN\r\nContent-Type: text/html\r\n\r\n<p>body</p>\r\n--IN--\r\n"
    b"--OUT\r\nContent-Type: image/png\r\nContent-Disposition: inline\r\n"
    b"Content-Transfer-Encoding: base64\r\n\r\n"
    b"iVBORw0KGgo=\r\n"
    b'--OUT\r\nContent-Type: text/plain; name="notes.txt"\r\nContent-Disposition: attachment; '
    b"filename*=UTF-8''n%C3%B6tes.txt\r\n\r\nsome notes\r\n"
    b"--OUT\r\nContent-Type: application/x-msdownload\r\n"
    b"Content-Disposition: attachment; filename=run.exe\r\n\r\n"
    b"MZ\r\n--OUT--\r\n"
)


def test_attachments_match_the_stored_metadata() -> None:
    stored = parse(RAW).attachments
    assert [a.filename for a in stored] == ["", "nötes.txt", "run.exe"]
    for index, meta in enumerate(stored):
        found = attachment(RAW, index)
        assert found is not None
        assert (found.filename, found.content_type) == (meta.filename, meta.content_type)
        assert len(found.data) == meta.size
    assert attachment(RAW, len(stored)) is None


def test_only_safe_types_are_named() -> None:
    assert attachment(RAW, 0).safe_type == "image/png"
    assert attachment(RAW, 1).safe_type == "text/plain; charset=utf-8"
    assert attachment(RAW, 2).safe_type == "application/octet-stream"


HOSTILE_NAMES = [
    "../../etc/passwd",
    "..\\..\\windows\\system32\\evil.dll",
    "C:\\Users\\ann\\report.pdf",
    "dir/sub/..",
    "a....b..txt",
    "evil\u202egnp.exe",
    "tab\there\x7f\x85.txt",
    "\u2066zero\u200bwidth\u2069.txt",
    "é" * 300 + ".pdf",  # 604 bytes of UTF-8
    "😀" * 80,
    '"quoted" <name>?.txt',
    " . . ",
]


def with_attachment(name: str) -> bytes:
    encoded = quote(name, safe="")
    return (
        "From: a@example.com\r\nSubject: files\r\nMIME-Version: 1.0\r\n"
        "Content-Type: multipart/mixed; boundary=B\r\n\r\n--B\r\nContent-Type: text/plain\r\n\r\nbody\r\n"
        "--B\r\nContent-Type: application/octet-stream\r\n"
        f"Content-Disposition: attachment; filename*=UTF-8''{encoded}\r\n\r\ndata\r\n--B--\r\n"
    ).encode()


@pytest.mark.parametrize("name", HOSTILE_NAMES)
def test_attachment_names_are_safe_to_show_and_save(name: str) -> None:
    """Issue 12 item 5: no separators, no "..", no controls, at most 255 bytes, by bytes."""
    raw = with_attachment(name)
    [stored] = parse(raw).attachments
    assert attachment(raw, 0).filename == stored.filename
    shown = stored.filename
    assert "/" not in shown and "\\" not in shown and ".." not in shown
    assert not any(unicodedata.category(c) in ("Cc", "Cf", "Zl", "Zp") for c in shown)
    assert len(shown.encode()) <= 255 and shown == shown.strip(" .")
    if len(name.encode()) > 255 and name.endswith(".pdf"):
        assert shown.endswith(".pdf") and len(shown.encode()) > 250  # cut by bytes, extension kept
    url_name = url_filename(name, 0)
    assert re.fullmatch(r"[A-Za-z0-9._-]+", url_name) and ".." not in url_name


def test_names_keep_what_is_harmless() -> None:
    assert safe_filename("Résumé 2026 (final).pdf") == "Résumé 2026 (final).pdf"
    assert safe_filename("../../etc/passwd") == "passwd"
    assert url_filename("отчёт.pdf", 2) == "attachment-3.pdf"
