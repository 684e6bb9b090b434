"""``mailforum serve`` as processes: one supervisor, a child per role, restarted when it dies.

One interpreter runs one core's worth of Python at a time; ingest, processing and
delivery each want a core under load. So ``serve`` starts each role as a child
process (``serve --child NAME``, the one-process server with only that role switched
on), and the children coordinate only through the database, exactly as several
nodes do: the spool and the outbox are claimed with leases, so a child killed with
SIGKILL loses nothing (its claims come back when they expire, or at once when its
successor, which has the same node name, starts). Wake-ups between them go over
runners/wakeup.py.

The supervisor itself holds no state: it starts the children, restarts one that
exits unasked (after 1 s, doubling to 30 s while it keeps failing), and on SIGTERM
or SIGINT stops them in order: ingest first (new sessions get 421, messages in DATA
are finished and committed), then processing, delivery and the web, each given its
time, so in-flight work ends as in the one-process server. Each child asks the
kernel to SIGKILL it if the supervisor dies, so a supervisor killed with -9 leaves
no orphan holding the ports.
"""

from __future__ import annotations

import contextlib
import ctypes
import logging
import os
import select
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time
from dataclasses import dataclass, field

log = logging.getLogger(__name__)

READY_FD = "MAILFORUM_READY_FD"  # in a child: where to say "ready", or why it could not start
SUPERVISOR_PID = "MAILFORUM_SUPERVISOR_PID"  # in a child: its supervisor, whose death ends it
METRICS_DIR = "PROMETHEUS_MULTIPROC_DIR"  # prometheus_client's multi-process mode (metrics.py)
START_TIMEOUT = 120.0
RESTART_FIRST = 1.0
RESTART_MAX = 30.0
STABLE_AFTER = 60.0  # a child that ran this long starts again at the first delay
STOP_TIMEOUT = 60.0  # per stage of the shutdown; then SIGKILL

# The parts of the one-process server, each with the switch that turns it off.
PARTS = {
    "smtp": "--no-smtp",
    "process": "--no-process",
    "delivery": "--no-delivery",
    "web": "--no-web",
    "scheduler": "--no-scheduler",
}
# The roles in stop order, and the parts each child runs. The digest scheduler is light:
# it rides with delivery, and has a child of its own only when delivery is off.
ROLES = {
    "ingest": ("smtp",),
    "process": ("process",),
    "delivery": ("delivery", "scheduler"),
    "scheduler": ("scheduler",),
    "web": ("web",),
}


@dataclass(frozen=True, slots=True)
class Plan:
    """How many children of each role (0: that role is off)."""

    ingest: int = 1
    process: int = 1
    delivery: int = 1
    web: int = 1
    scheduler: bool = True

    def children(self) -> list[tuple[str, str, list[str]]]:
        """(child name, role, the switches that turn its other parts off), in start order:
        the workers first, so ingest finds them ready."""
        counts = {
            "process": self.process,
            "delivery": self.delivery,
            "scheduler": int(self.scheduler and not self.delivery),
            "web": self.web,
            "ingest": self.ingest,
        }
        out = []
        for role, count in counts.items():
            for i in range(1, count + 1):
                # One scheduler: it rides with the first delivery child only.
                parts = [p for p in ROLES[role] if p != "scheduler" or (self.scheduler and i == 1)]
                off = [switch for part, switch in PARTS.items() if part not in parts]
                if role == "delivery" and count > 1:  # [relay] max_connections is shared out
                    off += ["--relay-share", str(count)]
                out.append((f"{role}{i}", role, off))
        return out


def processes_by_default(database_url: str) -> bool:
    """Processes pay off where writers run in parallel: PostgreSQL. SQLite has one writer
    at a time, and processes contending for its file lock (which waits by sleeping) ingest
    several times slower than one process whose parts take turns (bench/ingest.py)."""
    return database_url.startswith("postgresql")


def default_delivery_workers(cores: int | None = None) -> int:
    """Delivery children: two from two cores on. One delivery process is one core of Python
    at most (its threads share the GIL); when processing has drained a burst, a second one
    sends on the other core (bench/posts.py: 200 posts to 20 members)."""
    return 2 if (cores or os.cpu_count() or 1) >= 2 else 1


def default_workers(cores: int | None = None) -> int:
    """Processing children: every core but the one ingest and delivery share, at least one."""
    return max(1, (cores or os.cpu_count() or 1) - 1)


def die_with_parent() -> None:
    """In a child: have the kernel SIGKILL this process when the supervisor dies (Linux)."""
    if not sys.platform.startswith("linux"):
        return
    with contextlib.suppress(OSError, AttributeError):
        libc = ctypes.CDLL("libc.so.6", use_errno=True)
        pr_set_pdeathsig = 1
        libc.prctl(pr_set_pdeathsig, signal.SIGKILL)
    # The supervisor may have died before the call, and then no signal will come. Its pid
    # is compared, not pid 1: in a container the supervisor may itself be pid 1.
    supervisor = os.environ.get(SUPERVISOR_PID)
    if supervisor and os.getppid() != int(supervisor):
        os._exit(1)


def _tell_parent(text: str) -> bool:
    fd = os.environ.get(READY_FD)
    if not fd:
        return False
    with contextlib.suppress(OSError, ValueError):
        os.write(int(fd), text.encode("utf-8", "replace")[:4000] + b"\n")
        os.close(int(fd))
        del os.environ[READY_FD]
        return True
    return False


def report_ready() -> None:
    """In a child: every part started (the supervisor starts the next child)."""
    _tell_parent("ready")


def report_failure(message: str) -> bool:
    """In a child that could not start: hand the error to the supervisor, which prints it
    once the other children are stopped. False when not a child (print it yourself)."""
    return _tell_parent("error: " + message.replace("\n", " "))


class StartFailed(Exception):
    pass


@dataclass
class Child:
    name: str
    role: str
    argv: list[str]
    proc: subprocess.Popen[bytes] | None = None
    started: float = 0.0
    delay: float = RESTART_FIRST
    restart_at: float | None = None

    def start(self, pass_fd: int | None = None) -> None:
        env = {**os.environ, SUPERVISOR_PID: str(os.getpid())}
        if pass_fd is not None:
            env[READY_FD] = str(pass_fd)
        fds = () if pass_fd is None else (pass_fd,)
        self.proc = subprocess.Popen(self.argv, pass_fds=fds, env=env)
        self.started = time.monotonic()
        self.restart_at = None

    def start_and_wait(self) -> None:
        """Start, and wait for the child to say it is serving; StartFailed with its reason."""
        read, write = os.pipe()
        try:
            self.start(pass_fd=write)
        finally:
            os.close(write)
        assert self.proc is not None
        with os.fdopen(read, "rb") as pipe:
            answer = ""  # when it died first, or never answered
            if select.select([pipe], [], [], START_TIMEOUT)[0]:
                answer = pipe.readline().decode("utf-8", "replace").strip()
        if answer == "ready":
            log.info("started %s (pid %s)", self.name, self.proc.pid)
            return
        if self.proc.poll() is None:
            self.proc.kill()
        code = self.proc.wait()
        reason = answer.removeprefix("error: ") or f"{self.name} exited with status {code} while starting"
        raise StartFailed(reason)


@dataclass
class Supervisor:
    base_argv: list[str]  # the command that runs ``mailforum serve``, global options included
    plan: Plan
    children: list[Child] = field(default_factory=list)
    _stop: threading.Event = field(default_factory=threading.Event)

    def __post_init__(self) -> None:
        for name, role, off in self.plan.children():
            argv = [*self.base_argv, "--child", name, *off]
            if role == "ingest" and self.plan.ingest > 1:
                argv.append("--reuse-port")
            self.children.append(Child(name, role, argv))

    def stop(self, *_: object) -> None:
        self._stop.set()

    def run(self) -> None:
        """Until SIGTERM or SIGINT; then every child is stopped. StartFailed if one could not start."""
        for sig in (signal.SIGTERM, signal.SIGINT):
            signal.signal(sig, self.stop)
        # The children's metrics (mailforum/metrics.py): each writes its counters to files here,
        # and the web child adds them up for /metrics. New for each run, removed at the end.
        metrics_dir = None
        if not os.environ.get(METRICS_DIR):
            metrics_dir = tempfile.mkdtemp(prefix="mailforum-metrics-")
            os.environ[METRICS_DIR] = metrics_dir
        try:
            for child in self.children:
                if self._stop.is_set():
                    break
                child.start_and_wait()
            names = ", ".join(c.name for c in self.children)
            log.info("mailforum serving as %s processes (%s)", len(self.children), names)
            while not self._stop.wait(0.2):
                self._watch()
        finally:
            self._shutdown()
            if metrics_dir is not None:
                shutil.rmtree(metrics_dir, ignore_errors=True)
                os.environ.pop(METRICS_DIR, None)

    def _watch(self) -> None:
        now = time.monotonic()
        for child in self.children:
            if child.proc is None:
                continue
            if child.restart_at is not None:
                if now >= child.restart_at:
                    child.start()
                    log.info("started %s again (pid %s)", child.name, child.proc.pid)
                continue
            code = child.proc.poll()
            if code is None:
                continue
            if now - child.started > STABLE_AFTER:
                child.delay = RESTART_FIRST
            log.error(
                "%s (pid %s) exited with %s; restarting in %.0f s",
                child.name,
                child.proc.pid,
                code,
                child.delay,
            )
            child.restart_at = now + child.delay
            child.delay = min(RESTART_MAX, child.delay * 2)

    def _shutdown(self) -> None:
        """Stop the children role by role: ingest, processing, delivery, web."""
        signal.signal(signal.SIGINT, signal.SIG_IGN)  # a second Ctrl-C does not cut the shutdown short
        for role in ROLES:
            stopping = [c for c in self.children if c.role == role and c.proc and c.proc.poll() is None]
            for child in stopping:
                assert child.proc is not None
                child.proc.send_signal(signal.SIGTERM)
            deadline = time.monotonic() + STOP_TIMEOUT
            for child in stopping:
                assert child.proc is not None
                try:
                    child.proc.wait(max(0.1, deadline - time.monotonic()))
                except subprocess.TimeoutExpired:
                    log.error("%s did not stop in %.0f s; killing it", child.name, STOP_TIMEOUT)
                    child.proc.kill()
                    child.proc.wait()
        log.info("all children stopped")
