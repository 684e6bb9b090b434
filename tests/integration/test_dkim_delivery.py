"""With [dkim] key_file set, every copy the relay receives carries a DKIM signature that verifies."""

from __future__ import annotations

import base64
import subprocess
from dataclasses import replace

import dkim

from mailforum.config import DkimConfig
from mailforum.db.models import utcnow
from tests.helpers import DOMAIN, message
from tests.integration.outbound_helpers import deliver, settled
from tests.integration.test_bounces import process
from tests.relay import fake_relay


def test_copies_are_signed_through_the_delivery_worker(site, tmp_path):
    private = tmp_path / "dkim.pem"
    subprocess.run(["openssl", "genrsa", "-out", str(private), "2048"], check=True, capture_output=True)
    der = subprocess.run(
        ["openssl", "rsa", "-in", str(private), "-pubout", "-outform", "DER"], check=True, capture_output=True
    ).stdout
    record = b"v=DKIM1; k=rsa; p=" + base64.b64encode(der)
    config = replace(site.config, dkim=DkimConfig(key_file=str(private), selector="s1"))
    site.create_list("dev")
    site.add_members("dev", "ann@example.com", "bob@example.com")
    process(site, message("Signed", "<d1@example.com>"), f"dev@{DOMAIN}", "ann@example.com", utcnow())
    with fake_relay(site.config.relay.port) as relay:
        deliver(config, site.db)
        assert settled(site)
        (copy,) = relay.messages_for("bob@example.com")
    assert copy.data.startswith(b"DKIM-Signature:") and f"d={DOMAIN}".encode() in copy.data
    assert dkim.verify(copy.data, dnsfunc=lambda name, timeout=5: record)
