"""`mailforum serve` as a supervisor and one process per role (issue 16).

The children coordinate only through the database; these tests drive the real
command over real SMTP into a real relay: every role runs in its own process, a child
killed with SIGKILL is started again and nothing it held is lost, SIGTERM stops them
all with status 0, and a supervisor killed with SIGKILL takes its children with it.
"""

from __future__ import annotations

import os
import signal
import subprocess
from pathlib import Path

import pytest

from tests.helpers import Site, message, send, wait_for

pytestmark = pytest.mark.slow
ROLES = {"ingest1", "process1", "delivery1", "web1"}


def children(pid: int) -> dict[str, int]:
    """The supervisor's children by name (their ``--child NAME``), from /proc."""
    found: dict[str, int] = {}
    for proc in Path("/proc").iterdir():
        try:
            if not proc.name.isdigit() or _parent(proc) != pid:
                continue
            argv = (proc / "cmdline").read_bytes().split(b"\0")
        except (OSError, IndexError, ValueError):
            continue
        if b"--child" in argv:
            found[argv[argv.index(b"--child") + 1].decode()] = int(proc.name)
    return found


def _parent(proc: Path) -> int:
    return int((proc / "stat").read_text().rsplit(")", 1)[1].split()[1])


def alive(pid: int) -> bool:
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except OSError:
        return False
    return state != "Z"


def supervised(site: Site, *members: str) -> subprocess.Popen[bytes]:
    """The list dev with ``members``, and `serve --processes` on it."""
    site.create_list("dev")
    if members:
        site.add_members("dev", *members)
    return site.popen_server("--processes", single=False)


def all_children(proc: subprocess.Popen[bytes]) -> dict[str, int]:
    """Once every role has its child: {name: pid}."""
    return wait_for(lambda: (found := children(proc.pid)).keys() >= ROLES and found, 30)


def stop(proc: subprocess.Popen[bytes]) -> None:
    proc.send_signal(signal.SIGTERM)
    assert proc.wait(60) == 0


def test_each_role_runs_in_its_own_process_and_mail_flows(site: Site, relay) -> None:
    proc = supervised(site, "ann@example.com", "bob@example.com")
    try:
        kids = all_children(proc)
        assert len(set(kids.values())) == len(kids)
        send(site.config, message("Hello from a supervised node"), ["dev@lists.example.org"])
        wait_for(lambda: relay.messages_for("bob@example.com"), 30)
    finally:
        stop(proc)
    assert not any(alive(pid) for pid in kids.values())


def test_a_child_killed_with_sigkill_is_restarted_and_loses_nothing(site: Site, relay) -> None:
    proc = supervised(site, "ann@example.com", "bob@example.com")
    try:
        before = all_children(proc)
        for name in ("process1", "delivery1"):
            os.kill(before[name], signal.SIGKILL)
        after = wait_for(
            lambda: (
                (found := children(proc.pid)).keys() >= ROLES
                and all(found[n] != before[n] for n in ("process1", "delivery1"))
                and found
            ),
            30,
        )
        assert after["ingest1"] == before["ingest1"]  # the others were left alone
        for i in range(3):
            raw = message(f"After the kill {i}", f"<k{i}@example.com>")
            send(site.config, raw, ["dev@lists.example.org"])
        wait_for(lambda: len(relay.messages_for("bob@example.com")) == 3, 60)
    finally:
        stop(proc)
    assert relay.copies()["bob@example.com"] == 3


def test_the_supervisor_killed_with_sigkill_takes_its_children(site: Site) -> None:
    proc = supervised(site)
    kids = all_children(proc)
    proc.kill()
    proc.wait()
    wait_for(lambda: not any(alive(pid) for pid in kids.values()), 10)


def test_a_child_that_cannot_start_is_one_clear_error(site: Site) -> None:
    """The web child's port is taken: serve stops the others and says why, last."""
    import socket

    with socket.socket() as taken:
        taken.bind(("127.0.0.1", site.config.web.port))
        taken.listen()
        result = site.cli("serve", "--processes", timeout=120)
    assert result.returncode == 1
    last = result.stderr.strip().splitlines()[-1]
    assert last.startswith("mailforum: error: [web] cannot listen on 127.0.0.1:")
    assert "Traceback" not in result.stderr


def test_the_default_is_processes_on_postgresql_and_one_process_on_sqlite(site: Site) -> None:
    site.create_list("dev")
    proc = site.popen_server(single=False)
    try:
        if site.config.database.url.startswith("postgresql"):
            wait_for(lambda: children(proc.pid).keys() >= ROLES, 30)
        else:
            assert children(proc.pid) == {}
    finally:
        stop(proc)


def test_metrics_of_every_child_are_summed_on_the_web_child_and_survive_a_restart(site: Site, relay) -> None:
    """prometheus_client's multi-process mode: the ingest, process and delivery children count,
    the web child shows their sums at /metrics; a killed child's counts are not lost."""
    import re

    import httpx

    def value(name: str) -> float:
        text = httpx.get(f"http://127.0.0.1:{site.config.web.port}/metrics", timeout=10).text
        found = re.search(rf"^{name} (\S+)$", text, re.M)
        return float(found.group(1)) if found else 0.0

    proc = supervised(site, "ann@example.com", "bob@example.com")
    try:
        kids = all_children(proc)
        send(site.config, message("Counted"), ["dev@lists.example.org"])
        wait_for(lambda: relay.messages_for("bob@example.com"), 30)
        wait_for(lambda: value("mailforum_copies_sent_total") >= 1, 30)  # the delivery child's count
        assert value("mailforum_ingest_seconds_count") == 1  # the ingest child's
        assert value("mailforum_processing_seconds_count") == 1  # the process child's
        os.kill(kids["ingest1"], signal.SIGKILL)
        wait_for(lambda: (new := children(proc.pid).get("ingest1")) and new != kids["ingest1"], 30)
        assert value("mailforum_ingest_seconds_count") == 1
    finally:
        stop(proc)
