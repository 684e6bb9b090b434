"""`mailforum serve` runs the web archive on [web] host:port; `--no-web` leaves it out."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
from collections.abc import Iterator
from contextlib import contextmanager

import httpx

from tests.helpers import wait_for


@contextmanager
def serving(site, *args: str) -> Iterator[subprocess.Popen[bytes]]:
    """`mailforum serve` as a real process; SIGTERM at the end must stop it with status 0."""
    env = dict(os.environ, MAILFORUM_CONFIG=str(site.config_file))
    with open(site.dir / "serve.log", "ab") as log:
        proc = subprocess.Popen(
            [sys.executable, "-m", "mailforum", "serve", *args], env=env, cwd=site.dir, stdout=log, stderr=log
        )
    try:
        wait_for(lambda: port_open(site.config.smtp.port) or proc.poll() is not None, 30)
        assert proc.poll() is None, (site.dir / "serve.log").read_text()[-2000:]
        yield proc
    finally:
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(30) == 0


def port_open(port: int) -> bool:
    try:
        with socket.create_connection(("127.0.0.1", port), 0.2):
            return True
    except OSError:
        return False


def test_serve_answers_http_and_stops_cleanly(site) -> None:
    with serving(site, "--no-process"):
        wait_for(lambda: port_open(site.config.web.port), 30)
        page = httpx.get(f"http://127.0.0.1:{site.config.web.port}/", timeout=10)
        assert page.status_code == 200 and 'href="/lists/dev"' in page.text


def test_no_web_switches_it_off(site) -> None:
    with serving(site, "--no-process", "--no-web"):
        assert not port_open(site.config.web.port)


def test_a_taken_web_port_is_one_clear_error(site) -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", site.config.web.port))
        taken.listen()
        result = site.cli("serve", "--no-process", timeout=60)
    assert result.returncode == 1
    lines = result.stderr.strip().splitlines()
    assert lines[-1].startswith("mailforum: error: [web] cannot listen on 127.0.0.1:")
    assert "Traceback" not in result.stderr
