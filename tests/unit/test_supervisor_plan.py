"""Which children `serve` starts for which switches (runners/supervisor.Plan)."""

from __future__ import annotations

import os
import subprocess
import sys

from mailforum.runners.supervisor import Plan, default_delivery_workers, default_workers


def test_every_role_by_default_with_the_scheduler_beside_delivery() -> None:
    children = {name: (role, off) for name, role, off in Plan().children()}
    assert list(children) == ["process1", "delivery1", "web1", "ingest1"]  # workers first, ingest last
    assert children["delivery1"][1] == ["--no-smtp", "--no-process", "--no-web"]
    assert children["ingest1"][1] == ["--no-process", "--no-delivery", "--no-web", "--no-scheduler"]


def test_the_scheduler_gets_a_child_of_its_own_when_delivery_is_off() -> None:
    children = Plan(ingest=0, process=0, delivery=0, web=0).children()
    off = ["--no-smtp", "--no-process", "--no-delivery", "--no-web"]
    assert children == [("scheduler1", "scheduler", off)]


def test_no_scheduler_anywhere_when_switched_off() -> None:
    children = Plan(scheduler=False).children()
    assert all("--no-scheduler" in off for _, _, off in children)
    assert Plan(ingest=0, process=0, delivery=0, web=0, scheduler=False).children() == []


def test_counts_per_role() -> None:
    names = [name for name, _, _ in Plan(ingest=2, process=3).children()]
    assert names == ["process1", "process2", "process3", "delivery1", "web1", "ingest1", "ingest2"]


def test_several_delivery_children_share_the_relay_connections_and_one_runs_the_scheduler() -> None:
    children = {name: off for name, _, off in Plan(delivery=2).children()}
    assert children["delivery1"] == ["--no-smtp", "--no-process", "--no-web", "--relay-share", "2"]
    assert children["delivery2"] == [
        "--no-smtp",
        "--no-process",
        "--no-web",
        "--no-scheduler",
        "--relay-share",
        "2",
    ]
    assert sum("--no-scheduler" not in off for off in children.values()) == 1
    assert [default_delivery_workers(n) for n in (1, 2, 8)] == [1, 2, 2]


def test_processing_children_leave_one_core() -> None:
    assert [default_workers(n) for n in (1, 2, 4, 8)] == [1, 1, 3, 7]


def _child_that_checks_its_parent(supervisor_pid: int) -> subprocess.CompletedProcess[str]:
    code = "from mailforum.runners.supervisor import die_with_parent; die_with_parent(); print('alive')"
    env = dict(os.environ, MAILFORUM_SUPERVISOR_PID=str(supervisor_pid))
    return subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, timeout=30)


def test_a_child_of_its_supervisor_lives_whatever_the_supervisor_pid() -> None:
    """Compared with the supervisor's pid, not 1: in a container the supervisor may be pid 1."""
    assert _child_that_checks_its_parent(os.getpid()).stdout == "alive\n"


def test_a_child_whose_supervisor_is_already_gone_exits() -> None:
    result = _child_that_checks_its_parent(os.getpid() + 1_000_000)
    assert result.returncode == 1 and result.stdout == ""
