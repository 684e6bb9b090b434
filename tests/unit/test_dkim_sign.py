"""Our DKIM signature verifies, and covers List-Unsubscribe and List-Unsubscribe-Post (RFC 8058 §4)."""

from __future__ import annotations

import datetime as dt
import subprocess

import dkim
import pytest

from mailforum.errors import ConfigError
from mailforum.mail.compose import ListIdentity, PostView, notification
from mailforum.mail.dkim_sign import Signer


@pytest.fixture(scope="module")
def key(tmp_path_factory) -> tuple[str, bytes]:
    folder = tmp_path_factory.mktemp("dkim")
    private = folder / "key.pem"
    subprocess.run(["openssl", "genrsa", "-out", str(private), "2048"], check=True, capture_output=True)
    public = subprocess.run(
        ["openssl", "rsa", "-in", str(private), "-pubout", "-outform", "DER"], check=True, capture_output=True
    ).stdout
    import base64

    return str(private), b"v=DKIM1; k=rsa; p=" + base64.b64encode(public)


def copy() -> bytes:
    ident = ListIdentity("dev", "Dev", "lists.example.org", "http://127.0.0.1:1", "[dev]")
    view = PostView("<m1@example.com>", "Hello", "Ann", "ann@example.com", dt.datetime.now(dt.UTC), 1, ())
    shared = notification(ident, view, "Hello.\n", "<p>Hello.</p>")
    return shared.personalise(
        "dev+r-1-2-3-abc@lists.example.org", ("https://x/u/1", "mailto:dev+unsubscribe@x")
    )


def test_signed_copies_verify_and_cover_the_unsubscribe_headers(key):
    path, record = key
    signed = Signer(path, "s1", "lists.example.org").sign(copy())
    assert signed.startswith(b"DKIM-Signature:")
    header = signed.split(b"\r\n\r\n")[0].decode()
    h = header.split(" h=")[1].split(";")[0].replace("\r\n", "").replace(" ", "").replace("\t", "").lower()
    assert {"from", "subject", "message-id", "list-unsubscribe", "list-unsubscribe-post", "list-id"} <= set(
        h.split(":")
    )
    assert dkim.verify(signed, dnsfunc=lambda name, timeout=5: record)
    tampered = signed.replace(b"https://x/u/1", b"https://evil/u/1")
    assert not dkim.verify(tampered, dnsfunc=lambda name, timeout=5: record)


def test_a_bad_key_is_a_clear_config_error(tmp_path):
    with pytest.raises(ConfigError, match="cannot read"):
        Signer(str(tmp_path / "missing.pem"), "s1", "lists.example.org")
    bad = tmp_path / "bad.pem"
    bad.write_text("not a key")
    with pytest.raises(ConfigError, match="not a usable private key"):
        Signer(str(bad), "s1", "lists.example.org")
    with pytest.raises(ConfigError, match="selector"):
        Signer(str(bad), "", "lists.example.org")
