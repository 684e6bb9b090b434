#!/usr/bin/env python3
"""Import benchmark (issue 16): ``import-mbox`` of SpamAssassin's 2,403 easy-ham messages.

The messages are the ham set bench/threading.py uses (Debian's
golang-github-gatherstars-com-jwz-dev ships it as test data; downloaded with ``apt-get
download`` and unpacked once into ``--cache``). They are written to one mbox, imported
with the real CLI (``mailforum import-mbox``, a subprocess, into a fresh SQLite file and a
fresh PostgreSQL database on 127.0.0.1:5432), and the same messages are parsed by the
standard library's ``compat32`` parser in this process: the floor. Interleaved, each
``--repeat`` times, the best kept. Prints ``name: value`` lines:

    {db}_import_msgs_per_s       the whole command, start to exit, wall clock
    {db}_import_cpu_s            its CPU time (user + system, its parser process included)
    compat32_parse_msgs_per_s    ``email.message_from_bytes(raw, policy=compat32)`` of each
    {db}_ratio                   import / parse (issue 16's target: at least 0.35)

    PYTHONPATH=$PWD .venv/bin/python bench/archive.py [--backends sqlite,postgresql] [--repeat 3]
"""

from __future__ import annotations

import os
import sys

# bench/threading.py would shadow the stdlib module: drop this folder from the import path.
sys.path[:] = [p for p in sys.path if os.path.abspath(p or ".") != os.path.dirname(os.path.abspath(__file__))]

import argparse
import email
import email.policy
import importlib.util
import re
import resource
import subprocess
import tempfile
import time
from pathlib import Path
from types import ModuleType

ROOT = Path(__file__).resolve().parent.parent


def _load(name: str) -> ModuleType:
    spec = importlib.util.spec_from_file_location(f"bench_{name}", Path(__file__).with_name(f"{name}.py"))
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module
    spec.loader.exec_module(module)
    return module


fanout = _load("fanout")  # database()
bench_threading = _load("threading")  # ham_files(), CACHE


def out(name: str, value: float | int | str) -> None:
    print(f"{name}: {value:.4f}" if isinstance(value, float) else f"{name}: {value}", flush=True)


def write_mbox(raws: list[bytes], path: Path) -> None:
    with open(path, "wb") as mbox:
        for raw in raws:
            body = re.sub(rb"^(>*From )", rb">\1", raw.replace(b"\r\n", b"\n"), flags=re.MULTILINE)
            mbox.write(b"From bench@example.org Mon Jan  1 00:00:00 2024\n")
            mbox.write(body if body.endswith(b"\n") else body + b"\n")
            mbox.write(b"\n")


def parse_floor(raws: list[bytes]) -> float:
    started = time.perf_counter()
    for raw in raws:
        email.message_from_bytes(raw, policy=email.policy.compat32)
    return time.perf_counter() - started


def import_once(url: str, mbox: Path, workdir: Path) -> tuple[float, float, str]:
    """(wall seconds, CPU seconds, last line) of ``import-mbox`` into a fresh list."""
    config = workdir / "mailforum.toml"
    config.write_text(f'[database]\nurl = "{url}"\n[site]\ndomain = "lists.example.org"\n')
    env = dict(os.environ, MAILFORUM_CONFIG=str(config), PYTHONPATH=str(ROOT))

    def cli(*argv: str) -> subprocess.CompletedProcess[bytes]:
        done = subprocess.run([sys.executable, "-m", "mailforum", *argv], env=env, capture_output=True)
        if done.returncode != 0:
            sys.exit(f"mailforum {' '.join(argv)} failed: {done.stderr.decode()[-2000:]}")
        return done

    cli("init")
    cli("lists", "create", "dev")
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    started = time.perf_counter()
    done = cli("import-mbox", str(mbox), "--list", "dev")
    wall = time.perf_counter() - started
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    cpu = (after.ru_utime + after.ru_stime) - (before.ru_utime + before.ru_stime)
    return wall, cpu, done.stdout.decode().strip().splitlines()[-1]


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--backends", default="sqlite,postgresql")
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--cache", type=Path, default=bench_threading.CACHE)
    args = parser.parse_args()
    raws = [p.read_bytes() for p in bench_threading.ham_files(args.cache)]
    out("load_average_1min", os.getloadavg()[0])
    out("messages", len(raws))
    with tempfile.TemporaryDirectory(prefix="mf-archive-") as folder:
        mbox = Path(folder) / "ham.mbox"
        write_mbox(raws, mbox)
        floors: list[float] = []
        for backend in args.backends.split(","):
            runs: list[tuple[float, float, str]] = []
            for number in range(args.repeat):  # interleaved with the floor: noise hits both alike
                floors.append(parse_floor(raws))
                with fanout.database(backend) as url:
                    workdir = Path(folder) / f"{backend}{number}"
                    workdir.mkdir()
                    runs.append(import_once(url, mbox, workdir))
            wall, cpu, said = min(runs)
            out(f"{backend}_import_said", said)
            out(f"{backend}_import_msgs_per_s", len(raws) / wall)
            out(f"{backend}_import_runs_s", " ".join(f"{r[0]:.2f}" for r in runs))
            out(f"{backend}_import_cpu_s", cpu)
            out(f"{backend}_ratio", (len(raws) / wall) / (len(raws) / min(floors)))
        out("compat32_parse_msgs_per_s", len(raws) / min(floors))
    out("load_average_1min_end", os.getloadavg()[0])


if __name__ == "__main__":
    main()
