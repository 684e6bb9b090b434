"""The CLI side of the archive: private lists and shown addresses."""

from __future__ import annotations

from tests.helpers import message
from tests.web.kit import seed


def test_lists_create_private_and_set_public_and_addresses(site, web) -> None:
    created = site.cli("lists", "create", "hidden", "--visibility", "private")
    assert created.returncode == 0, created.stderr
    seed(
        site.config, site.db, [message("Quiet", "<q@example.com>", sender="Ann <ann@example.com>")], "hidden"
    )
    with web.client() as http:
        assert http.get("/lists/hidden").status_code == 404
        changed = site.cli("lists", "set", "hidden", "--visibility", "public", "--show-addresses")
        assert changed.returncode == 0 and "visibility public, addresses shown" in changed.stdout
        assert "Quiet" in http.get("/lists/hidden").text
        topic = http.get("/lists/hidden").text.split('href="/lists/hidden/topics/')[1].split('"')[0]
        assert "Ann (ann at example.com)" in http.get(f"/lists/hidden/topics/{topic}").text
    shown = site.cli("lists", "show", "hidden")
    assert "visibility:       public" in shown.stdout and "web addresses:    shown" in shown.stdout
    nothing = site.cli("lists", "set", "hidden")
    assert nothing.returncode == 1 and nothing.stderr.strip().startswith(
        "mailforum: error: nothing to change"
    )
    bad = site.cli("lists", "create", "x", "--visibility", "secret")
    assert bad.returncode != 0 and "Traceback" not in bad.stderr
