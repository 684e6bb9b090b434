"""Start-up cost of the command line: `mailforum --help` and the common read commands, start to exit.

    .venv/bin/python bench/cli.py [--runs 7] [--compile]

Each figure is the median wall time of --runs runs of a fresh process (subprocess,
start to exit), the commands taking turns so a change of load on the machine hits
them alike; `_best_s` is the fastest of them, the figure least touched by other load on a
shared machine; `_cpu_s` is the median user+system CPU of the same runs, which other load
distorts less. The floors, measured in the same run, are the interpreter's own start
(`python -c pass`, which includes the editable install's import hook) and importing
SQLAlchemy, which every command that opens the database needs.

    cli_help_s                    mailforum --help
    cli_lists_list_s              mailforum lists list, on a fresh SQLite database with one list
    cli_lists_show_s              mailforum lists show dev (the list has one member)
    cli_members_list_s            mailforum members list dev
    cli_status_s                  mailforum status
    cli_audit_s                   mailforum audit
    python_startup_s              python -c pass
    python_import_sqlalchemy_s    python -c 'import sqlalchemy'
    python_import_orm_s           python -c 'import sqlalchemy.orm' (the ORM, which the commands use)
    cli_help_over_startup         cli_help_s / python_startup_s
    cli_lists_list_over_sqlalchemy  cli_lists_list_s / python_import_sqlalchemy_s
    cli_lists_list_over_orm       cli_lists_list_s / python_import_orm_s
    mailman_help_s                `mailman --help`, only when GNU Mailman is installed (never installed
                                  by this script; Mailman 3's CLI was measured at 1.9 s on this machine)

It measures the mailforum this Python imports (printed as mailforum_package; from a
second checkout, set PYTHONPATH to it). mailforum_bytecode says whether mailforum's
modules load from cached bytecode. With PYTHONDONTWRITEBYTECODE=1 and a source checkout
that never cached any, every start compiles them again; --compile caches them first
(what installing a wheel does).
"""

from __future__ import annotations

# bench/threading.py (named by the threading issue) would shadow the stdlib module for
# every script run from this folder: drop the folder from the import path first.
import os
import sys

sys.path[:] = [p for p in sys.path if os.path.abspath(p or ".") != os.path.dirname(os.path.abspath(__file__))]

import argparse
import compileall
import importlib.util
import resource
import shutil
import statistics
import subprocess
import tempfile
import time
from pathlib import Path

import mailforum

PACKAGE = Path(mailforum.__file__).parent


def run(argv: list[str], env: dict[str, str], cwd: str) -> tuple[float, float]:
    """Wall and CPU seconds of one process, start to exit; it must succeed."""
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    start = time.perf_counter()
    # Run from the scratch folder: `-m` puts the working directory first on sys.path, and
    # PYTHONPATH (set below) is to decide which mailforum is measured.
    done = subprocess.run(argv, env=env, cwd=cwd, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    wall = time.perf_counter() - start
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    if done.returncode != 0:
        raise SystemExit(f"{' '.join(argv)} failed: {done.stderr.decode(errors='replace').strip()}")
    cpu = (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)
    return wall, cpu


def bytecode_cached() -> bool:
    cached = importlib.util.cache_from_source(str(PACKAGE / "cli.py"))
    return Path(cached).exists() and Path(cached).stat().st_mtime >= (PACKAGE / "cli.py").stat().st_mtime


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=7)
    parser.add_argument("--compile", action="store_true", help="cache mailforum's bytecode first")
    args = parser.parse_args()
    if args.compile:
        compileall.compile_dir(str(PACKAGE), quiet=1)
    py = sys.executable
    with tempfile.TemporaryDirectory(prefix="mf-bench-cli-") as tmp:
        config = Path(tmp) / "mailforum.toml"
        config.write_text(f'[database]\nurl = "sqlite:///{Path(tmp) / "mf.db"}"\n', encoding="utf-8")
        env = dict(os.environ, MAILFORUM_CONFIG=str(config))
        env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(PACKAGE.parent), env.get("PYTHONPATH")]))
        for setup in (["init"], ["lists", "create", "dev"], ["members", "add", "dev", "ann@example.com"]):
            run([py, "-m", "mailforum", *setup], env, tmp)
        commands = {
            "python_startup": [py, "-c", "pass"],
            "python_import_sqlalchemy": [py, "-c", "import sqlalchemy"],
            "python_import_orm": [py, "-c", "import sqlalchemy.orm"],
            "cli_help": [py, "-m", "mailforum", "--help"],
            "cli_lists_list": [py, "-m", "mailforum", "lists", "list"],
            "cli_lists_show": [py, "-m", "mailforum", "lists", "show", "dev"],
            "cli_members_list": [py, "-m", "mailforum", "members", "list", "dev"],
            "cli_status": [py, "-m", "mailforum", "status"],
            "cli_audit": [py, "-m", "mailforum", "audit"],
        }
        mailman = shutil.which("mailman")
        if mailman:
            commands["mailman_help"] = [mailman, "--help"]
        for argv in commands.values():  # warm the page cache (and the bytecode cache, if it is on)
            run(argv, env, tmp)
        walls: dict[str, list[float]] = {name: [] for name in commands}
        cpus: dict[str, list[float]] = {name: [] for name in commands}
        for _ in range(args.runs):
            for name, argv in commands.items():
                wall, cpu = run(argv, env, tmp)
                walls[name].append(wall)
                cpus[name].append(cpu)
    wall = {name: statistics.median(values) for name, values in walls.items()}
    cpu = {name: statistics.median(values) for name, values in cpus.items()}
    print(f"runs: {args.runs}")
    print(f"mailforum_package: {PACKAGE}")
    print(f"mailforum_bytecode: {'cached' if bytecode_cached() else 'compiled on every start'}")
    for name in commands:
        print(f"{name}_s: {wall[name]:.3f}")
        print(f"{name}_best_s: {min(walls[name]):.3f}")
        print(f"{name}_cpu_s: {cpu[name]:.3f}")
    print(f"cli_help_over_startup: {wall['cli_help'] / wall['python_startup']:.1f}")
    print(f"cli_lists_list_over_sqlalchemy: {wall['cli_lists_list'] / wall['python_import_sqlalchemy']:.2f}")
    print(f"cli_lists_list_over_orm: {wall['cli_lists_list'] / wall['python_import_orm']:.2f}")
    if mailman:
        print(f"cli_lists_list_over_mailman_help: {wall['cli_lists_list'] / wall['mailman_help']:.2f}")
    else:
        print("mailman_help_s: not installed")
    print(f"load_average_1min: {os.getloadavg()[0]:.2f}")


if __name__ == "__main__":
    main()
