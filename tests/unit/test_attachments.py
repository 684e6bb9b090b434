"""Attachment N of a raw message is attachment N of the metadata stored with its post."""

from __future__ import annotations

from mailforum.mail.attachments import attachment
from mailforum.mail.parse import parse

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
