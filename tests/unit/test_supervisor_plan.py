"""Which children `serve` starts for which switches (runners/supervisor.Plan)."""

from __future__ import annotations

from mailforum.runners.supervisor import Plan, default_workers


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


def test_processing_children_leave_one_core() -> None:
    assert [default_workers(n) for n in (1, 2, 4, 8)] == [1, 1, 3, 7]
