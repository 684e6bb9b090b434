"""Threading quality and import speed on a generated mailing-list archive.

    .venv/bin/python bench/threading.py [--messages 20000] [--seed 1] [--keep DIR]
    .venv/bin/python bench/threading.py --corpus clients --corpus ham [--seed 1] [--misses]

Generates an archive with known true threads, written the way real clients write
mail, in realistic proportions:

- Thunderbird, Gmail, Apple Mail, mutt: full References and In-Reply-To;
- clients that truncate References to the root and the last few ids;
- Outlook: In-Reply-To only or no threading headers at all, ``RE:``/``AW:``/``SV:``/
  ``Antw:`` prefixes, ``Thread-Index`` (a new conversation when it replies to a
  non-Outlook message, as Exchange assigns one) and ``Thread-Topic``;
- webmail replies with a ``Re:`` subject and nothing else;
- list tags added by the list, doubled and mixed with prefixes; encoded-word subjects
  in several charsets; subject changes "New (was: Old)";
- generic subjects ("Question", "Help") shared by unrelated threads, and specific
  subjects reused months apart;
- arrival out of order (delayed deliveries), parents that never arrive, the same
  message delivered twice.

It imports the archive with the real CLI (``mailforum import-mbox``) into a fresh
SQLite database, exports it, and prints pairwise precision, recall and F1 of the
topics against the true threads, and the import throughput (whole command, wall clock):

    threading_precision, threading_recall, threading_f1, import_msgs_per_s, …
"""

from __future__ import annotations

import os
import sys

# This file is called threading.py: keep its directory off the path, or it shadows the stdlib module.
_HERE = os.path.dirname(os.path.abspath(__file__))
sys.path[:] = [p for p in sys.path if os.path.abspath(p or ".") != _HERE]

import argparse
import base64
import datetime as dt
import email
import email.policy
import json
import random
import re
import resource
import shutil
import subprocess
import sys
import tempfile
import time
from collections import Counter
from dataclasses import dataclass, field
from email.header import Header
from pathlib import Path
from typing import Any

LIST = "dev"
DOMAIN = "lists.example.org"
WORDS = [
    "build",
    "fails",
    "arm64",
    "gcc",
    "release",
    "planning",
    "memory",
    "leak",
    "parser",
    "timeout",
    "config",
    "option",
    "docs",
    "typo",
    "segfault",
    "startup",
    "windows",
    "macos",
    "linux",
    "install",
    "pip",
    "wheel",
    "python",
    "upgrade",
    "database",
    "migration",
    "postgres",
    "sqlite",
    "index",
    "slow",
    "query",
    "cache",
    "invalidation",
    "race",
    "condition",
    "deadlock",
    "thread",
    "pool",
    "logging",
    "format",
    "unicode",
    "error",
    "encoding",
    "locale",
    "test",
    "flaky",
    "ci",
    "pipeline",
    "coverage",
    "benchmark",
    "regression",
    "performance",
    "api",
    "breaking",
    "change",
    "deprecation",
    "warning",
    "plugin",
    "loader",
    "path",
    "import",
    "packaging",
    "version",
    "pinning",
    "security",
    "advisory",
    "token",
    "expiry",
    "session",
    "cookie",
    "header",
    "proxy",
    "tls",
    "certificate",
    "renewal",
    "mirror",
    "download",
    "checksum",
    "signature",
    "roadmap",
    "meeting",
    "notes",
    "proposal",
    "vote",
]
GENERIC = ("Question", "Help", "Hello", "Quick question", "Problem", "Help needed", "Hi all", "Issue")
FOREIGN = (
    "Überprüfung der Konfiguration",
    "Ошибка сборки на сервере",
    "日本語の設定について",
    "Problème de démarrage après mise à jour",
    "Błąd kompilacji modułu",
    "配置文件的问题",
    "Ερώτηση για την εγκατάσταση",
)
# (name, weight, references, in-reply-to, reply prefix, Thread-Index, body style)
CLIENTS = (
    ("thunderbird", 22, "full", True, "Re: ", False, "flowed"),
    ("gmail", 24, "full", True, "Re: ", False, "alternative"),
    ("apple", 9, "full", True, "Re: ", False, "plain"),
    ("mutt", 7, "full", True, "Re: ", False, "plain"),
    ("truncating", 6, "truncated", True, "Re: ", False, "plain"),
    ("outlook", 12, "none", True, "RE: ", True, "alternative"),
    ("outlook-old", 6, "none", False, "RE: ", True, "alternative"),
    ("outlook-de", 4, "none", True, "AW: ", True, "alternative"),
    ("outlook-sv", 2, "none", False, "SV: ", True, "alternative"),
    ("outlook-nl", 2, "none", True, "Antw: ", True, "alternative"),
    ("webmail", 4, "none", False, "Re: ", False, "html"),
    ("exchange-full", 2, "full", True, "RE: ", True, "alternative"),
)

# The "client behaviours" corpus (--corpus clients) adds the clients real archives hold and
# the first table lacks: MH/exmh write In-Reply-To as free text around the id and no
# References; web forms send a "Re:" subject and nothing else, sometimes without a quote.
BEHAVIOURS = (
    *CLIENTS,
    ("exmh", 10, "none", "free-text", "Re: ", False, "plain"),
    ("mh", 5, "none", "your-message", "Re: ", False, "plain"),
    ("webform", 6, "none", False, "Re: ", False, "plain"),
    ("webform-noquote", 3, "none", False, "Re: ", False, "plain"),
)


@dataclass
class Behaviour:
    """How often the hard cases happen: the generated default, or the client-behaviour corpus."""

    clients: tuple = CLIENTS
    generic: float = 0.07  # share of threads with a generic subject ("Question")
    retitle: float = 0.015  # share of replies that retitle "New (was: Old)"
    lost: float = 0.01  # share of messages that never arrive
    late: float = 0.04  # share delayed by hours to days
    late_days: float = 3.0


CLIENT_BEHAVIOURS = Behaviour(BEHAVIOURS, generic=0.15, retitle=0.05, lost=0.04, late=0.10, late_days=10.0)


@dataclass
class Msg:
    mid: str
    thread: int
    parent: Msg | None
    author: str
    client: tuple
    sent: dt.datetime
    subject: str
    base_subject: str
    thread_index: bytes | None = None
    refs: list[str] = field(default_factory=list)
    arrival: dt.datetime | None = None
    body: str = ""


class Generator:
    def __init__(self, seed: int, behaviour: Behaviour | None = None) -> None:
        self.behaviour = behaviour or Behaviour()
        self.rng = random.Random(seed)
        self.people = [f"user{i}@example{self.rng.randint(1, 40)}.org" for i in range(600)]
        self.client_of = {p: self._pick_client() for p in self.people}
        self.counter = 0
        self.start = dt.datetime(2024, 1, 1, tzinfo=dt.UTC)
        self.used_subjects: list[str] = []
        self.rendered: dict[str, bytes] = {}

    def _pick_client(self) -> tuple:
        clients = self.behaviour.clients
        return self.rng.choices(clients, weights=[c[1] for c in clients])[0]

    def _mid(self, client: str) -> str:
        self.counter += 1
        token = f"{self.counter:x}.{self.rng.getrandbits(40):x}"
        host = {"gmail": "mail.gmail.com", "outlook": "EXCH01.corp.example.com"}.get(
            client.split("-")[0], f"{client}.example.net"
        )
        return f"<{token}@{host}>"

    def _subject(self) -> str:
        roll = self.rng.random()
        generic = self.behaviour.generic
        if roll < generic:
            return self.rng.choice(GENERIC)
        if roll < generic + 0.03:
            return self.rng.choice(FOREIGN)
        if roll < generic + 0.05 and self.used_subjects:
            return self.rng.choice(self.used_subjects)  # the same words, another thread, later
        words = self.rng.sample(WORDS, self.rng.randint(3, 7))
        subject = " ".join(words).capitalize()
        self.used_subjects.append(subject)
        return subject

    def _size(self) -> int:
        if self.rng.random() < 0.30:
            return 1
        return min(120, 1 + int(self.rng.expovariate(1 / 6.0)) + 1)

    def threads(self, total: int, max_threads: int | None = None) -> list[Msg]:
        messages: list[Msg] = []
        thread = 0
        span = dt.timedelta(days=730).total_seconds()
        while len(messages) < total and (max_threads is None or thread < max_threads):
            thread += 1
            base = self._subject()
            root_time = self.start + dt.timedelta(seconds=self.rng.uniform(0, span))
            members: list[Msg] = []
            for n in range(self._size()):
                author = self.rng.choice(self.people)
                client = self.client_of[author]
                if n == 0:
                    msg = Msg(self._mid(client[0]), thread, None, author, client, root_time, base, base)
                else:
                    recent = members[-8:]
                    parent = self.rng.choice(recent if self.rng.random() < 0.8 else members)
                    sent = parent.sent + dt.timedelta(seconds=60 + self.rng.expovariate(1 / (8 * 3600)))
                    base_subject = parent.base_subject
                    if self.rng.random() < self.behaviour.retitle and not base_subject.endswith(")"):
                        new = " ".join(self.rng.sample(WORDS, 3)).capitalize()
                        base_subject = f"{new} (was: {base_subject})"
                    msg = Msg(self._mid(client[0]), thread, parent, author, client, sent, "", base_subject)
                self._headers_for(msg)
                members.append(msg)
            messages.extend(members)
        return messages[: total + 200]

    def _headers_for(self, msg: Msg) -> None:
        client = msg.client
        parent = msg.parent
        tagged = f"[{LIST}] "
        if parent is None:
            msg.subject = tagged + msg.base_subject
        else:
            seen = parent.subject if msg.base_subject == parent.base_subject else tagged + msg.base_subject
            prefix = client[4]
            if self.rng.random() < 0.05:
                msg.subject = f"{prefix}{seen}".replace(tagged, "", 1)  # a client that drops the tag
            elif seen.lower().startswith(("re:", "aw:", "sv:", "antw:")) and self.rng.random() < 0.8:
                msg.subject = seen  # most clients do not stack prefixes
            else:
                msg.subject = f"{prefix}{seen}"
            if self.rng.random() < 0.03:
                msg.subject = f"{tagged}{msg.subject}"  # the list tags a reply whose tag was dropped
        if parent is not None:
            full = [*parent.refs, parent.mid]
            if client[2] == "full":
                msg.refs = full
            elif client[2] == "truncated" and len(full) > 4:
                msg.refs = full[:1] + full[-3:]
            else:
                msg.refs = full
        if client[5]:
            if parent is not None and parent.thread_index is not None:
                msg.thread_index = parent.thread_index + self.rng.randbytes(5)
            else:
                stamp = int(msg.sent.timestamp() * 1e7).to_bytes(8, "big")[:6]
                head = stamp + self.rng.randbytes(16)
                msg.thread_index = head if parent is None else head + self.rng.randbytes(5)

    def render(self, msg: Msg, extra_received: bool = False) -> bytes:
        """The message as its author's client sent it; a second delivery adds a Received line only."""
        if msg.mid not in self.rendered:
            self.rendered[msg.mid] = self._render(msg)
        raw = self.rendered[msg.mid]
        if extra_received:
            raw = f"Received: from backup-mx by {DOMAIN}; {_date(msg.arrival or msg.sent)}\r\n".encode() + raw
        return raw

    def _render(self, msg: Msg) -> bytes:
        client = msg.client
        parent = msg.parent
        lines = [
            f"Received: from mx.example.net by {DOMAIN} with ESMTPS; {_date(msg.arrival or msg.sent)}",
            f"Received: from {client[0]}.example.net by mx.example.net; {_date(msg.sent)}",
        ]
        lines += [
            f"From: {msg.author.split('@')[0].title()} <{msg.author}>",
            f"To: {LIST}@{DOMAIN}",
        ]
        if parent is not None and self.rng.random() < 0.6:
            lines.append(f"Cc: {parent.author}")
        lines.append("Subject: " + _encode_subject(msg.subject, self.rng))
        lines.append(f"Date: {_date(msg.sent)}")
        lines.append(f"Message-ID: {msg.mid}")
        if parent is not None:
            if client[3] == "free-text":  # exmh: the author's address, the date, then the id
                name = parent.author.split("@")[0].title()
                lines.append(f"In-Reply-To: Message from {name} <{parent.author}> ")
                lines.append(f'   of "{_date(parent.sent)}." <{parent.mid[1:-1]}>')
            elif client[3] == "your-message":
                lines.append(
                    f'In-Reply-To: Your message of "{_date(parent.sent)}."\r\n             {parent.mid}'
                )
            elif client[3]:
                lines.append(f"In-Reply-To: {parent.mid}")
            if client[2] in ("full", "truncated") and msg.refs:
                lines.append("References: " + "\r\n ".join(msg.refs))
        if msg.thread_index is not None:
            topic = msg.base_subject.split(" (was: ")[0]
            lines.append("Thread-Topic: " + _encode_subject(topic, self.rng))
            lines.append("Thread-Index: " + base64.b64encode(msg.thread_index).decode())
        lines.append("MIME-Version: 1.0")
        text = self._body(msg)
        style = client[6]
        if style == "flowed":
            lines.append("Content-Type: text/plain; charset=UTF-8; format=flowed")
            lines.append("Content-Transfer-Encoding: 8bit")
            body = text
        elif style == "plain":
            lines.append("Content-Type: text/plain; charset=utf-8")
            lines.append("Content-Transfer-Encoding: quoted-printable")
            body = _qp(text)
        else:
            html = "<html><body>" + "".join(f"<p>{line}</p>" for line in text.splitlines()) + "</body></html>"
            if style == "html":
                lines.append("Content-Type: text/html; charset=utf-8")
                lines.append("Content-Transfer-Encoding: quoted-printable")
                body = _qp(html)
            else:
                b = f"----=_Part_{self.rng.getrandbits(48):x}"
                lines.append(f'Content-Type: multipart/alternative; boundary="{b}"')
                body = (
                    f"--{b}\r\nContent-Type: text/plain; charset=utf-8\r\n"
                    f"Content-Transfer-Encoding: quoted-printable\r\n\r\n{_qp(text)}\r\n"
                    f"--{b}\r\nContent-Type: text/html; charset=utf-8\r\n"
                    f"Content-Transfer-Encoding: quoted-printable\r\n\r\n{_qp(html)}\r\n--{b}--\r\n"
                )
        return ("\r\n".join(lines) + "\r\n\r\n" + body.replace("\r\n", "\n").replace("\n", "\r\n")).encode()

    def _body(self, msg: Msg) -> str:
        if not msg.body:
            words = [self.rng.choice(WORDS) for _ in range(self.rng.randint(30, 200))]
            own = "\n".join(" ".join(words[i : i + 12]) for i in range(0, len(words), 12))
            if msg.parent is not None and msg.client[0] != "webform-noquote":
                quoted = "\n".join("> " + line for line in self._body(msg.parent).splitlines()[:15])
                own = f"{own}\n\nOn {_date(msg.parent.sent)}, {msg.parent.author} wrote:\n{quoted}"
            msg.body = own + "\n\n-- \n" + msg.author.split("@")[0] + "\n"
        return msg.body


def _date(when: dt.datetime) -> str:
    return when.strftime("%a, %d %b %Y %H:%M:%S +0000")


def _qp(text: str) -> str:
    import quopri

    return quopri.encodestring(text.encode("utf-8")).decode("ascii")


def _encode_subject(subject: str, rng: random.Random) -> str:
    if subject.isascii():
        return subject
    charset = rng.choice(("utf-8", "utf-8", "iso-8859-1", "koi8-r", "iso-2022-jp", "gb18030", "iso-8859-7"))
    try:
        subject.encode(_py(charset))
    except UnicodeEncodeError:
        charset = "utf-8"
    return Header(subject, charset).encode()


def _py(charset: str) -> str:
    return {"iso-2022-jp": "iso2022_jp"}.get(charset, charset)


def arrange(gen: Generator, messages: list[Msg]) -> list[tuple[Msg, bool]]:
    """Arrival order: delays (some long), lost parents, duplicate deliveries."""
    rng = gen.rng
    delivered: list[tuple[dt.datetime, Msg, bool]] = []
    behaviour = gen.behaviour
    for msg in messages:
        roll = rng.random()
        if roll < behaviour.lost:
            continue  # never arrives (its replies still do)
        delay = rng.expovariate(1 / 30.0)
        if rng.random() < behaviour.late:
            delay += rng.uniform(3600, behaviour.late_days * 86400)  # a queue somewhere held it
        msg.arrival = msg.sent + dt.timedelta(seconds=delay)
        delivered.append((msg.arrival, msg, False))
        if rng.random() < 0.01:
            delivered.append((msg.arrival + dt.timedelta(seconds=rng.uniform(60, 86400)), msg, True))
    delivered.sort(key=lambda x: x[0])
    return [(m, dup) for _, m, dup in delivered]


def write_mbox(path: Path, gen: Generator, arrivals: list[tuple[Msg, bool]]) -> int:
    size = 0
    with open(path, "wb") as out:
        for msg, dup in arrivals:
            raw = gen.render(msg, extra_received=dup).replace(b"\r\n", b"\n")
            stamp = (msg.arrival or msg.sent).strftime("%a %b %d %H:%M:%S %Y")
            out.write(_mbox_entry(raw, msg.author, stamp))
            size += len(raw)
    return size


def _mbox_entry(raw: bytes, sender: str, stamp: str) -> bytes:
    """One mboxrd entry: a From_ line, the message with its "From " lines quoted, a blank line."""
    raw = b"\n".join(
        b">" + line if line.lstrip(b">").startswith(b"From ") else line for line in raw.split(b"\n")
    )
    return f"From {sender} {stamp}\n".encode() + raw.rstrip(b"\n") + b"\n\n"


def pairwise(predicted: dict[str, int], truth: dict[str, int]) -> tuple[float, float, float]:
    """Pairwise precision, recall and F1 of the predicted clustering against the true one."""
    keys = [k for k in truth if k in predicted]

    def pairs(counts: Counter) -> int:
        return sum(n * (n - 1) // 2 for n in counts.values())

    both = pairs(Counter((predicted[k], truth[k]) for k in keys))
    pred = pairs(Counter(predicted[k] for k in keys))
    true = pairs(Counter(truth[k] for k in keys))
    precision = both / pred if pred else 1.0
    recall = both / true if true else 1.0
    f1 = 2 * precision * recall / (precision + recall) if precision + recall else 0.0
    return precision, recall, f1


def exact_threads(predicted: dict[str, int], truth: dict[str, int]) -> float:
    """The share of true threads that are exactly one predicted topic (no message missing, none extra)."""
    keys = [k for k in truth if k in predicted]
    true_groups: dict[int, set[str]] = {}
    topics: dict[int, set[str]] = {}
    for k in keys:
        true_groups.setdefault(truth[k], set()).add(k)
        topics.setdefault(predicted[k], set()).add(k)
    exact = sum(1 for group in true_groups.values() if topics[predicted[next(iter(group))]] == group)
    return exact / len(true_groups) if true_groups else 1.0


@dataclass
class Imported:
    predicted: dict[str, int]  # message id → topic id, from ``mailforum export``
    seconds: float
    cpu_seconds: float
    report: str


def import_mbox(workdir: Path, mbox: Path) -> Imported:
    """Import ``mbox`` into a fresh SQLite database with the real CLI, and export the topics."""
    config = workdir / "mailforum.toml"
    config.write_text(f'[database]\nurl = "sqlite:///{workdir / "bench.db"}"\n[site]\ndomain = "{DOMAIN}"\n')
    (workdir / "bench.db").unlink(missing_ok=True)
    env = dict(os.environ, MAILFORUM_CONFIG=str(config))

    def cli(*argv: str) -> subprocess.CompletedProcess[bytes]:
        done = subprocess.run(
            [sys.executable, "-m", "mailforum", *argv], env=env, capture_output=True, cwd=workdir
        )
        if done.returncode not in (0, 3):
            sys.exit(f"mailforum {' '.join(argv)} failed: {done.stderr.decode()[-2000:]}")
        return done

    cli("init")
    cli("lists", "create", LIST)
    cpu_before = resource.getrusage(resource.RUSAGE_CHILDREN)
    started = time.perf_counter()
    imported = cli("import-mbox", str(mbox), "--list", LIST)
    elapsed = time.perf_counter() - started
    cpu_after = resource.getrusage(resource.RUSAGE_CHILDREN)
    cpu = (cpu_after.ru_utime + cpu_after.ru_stime) - (cpu_before.ru_utime + cpu_before.ru_stime)
    exported = cli("export", "--list", LIST, "--format", "jsonl")
    predicted = {}
    for line in exported.stdout.decode().splitlines():
        record = json.loads(line)
        predicted[record["message_id"]] = record["topic_id"]
    return Imported(predicted, elapsed, cpu, imported.stdout.decode().strip())


def run(args: argparse.Namespace, workdir: Path) -> None:
    """The generated archive: ``args.messages`` messages in realistic proportions."""
    gen = Generator(args.seed)
    messages = gen.threads(args.messages)
    measure(gen, messages, workdir, args.misses, "")


def run_clients(args: argparse.Namespace, workdir: Path) -> None:
    """The client-behaviour corpus: ``args.threads`` threads, the hard cases frequent."""
    gen = Generator(args.seed, CLIENT_BEHAVIOURS)
    messages = gen.threads(10**9, max_threads=args.threads)
    measure(gen, messages, workdir, args.misses, "clients_")


def measure(gen: Generator, messages: list[Msg], workdir: Path, misses: bool, prefix: str) -> None:
    arrivals = arrange(gen, messages)
    mbox = workdir / "archive.mbox"
    size = write_mbox(mbox, gen, arrivals)
    count = len(arrivals)
    result = import_mbox(workdir, mbox)
    predicted, elapsed, cpu = result.predicted, result.seconds, result.cpu_seconds
    truth = {m.mid: m.thread for m, _ in arrivals}
    precision, recall, f1 = pairwise(predicted, truth)
    out_of_order = sum(
        1
        for m, _ in arrivals
        if m.parent is not None and m.parent.arrival and m.parent.arrival > (m.arrival or m.sent)
    )
    print(f"{prefix}messages: {count}")
    print(f"{prefix}unique_messages: {len(truth)}")
    print(f"{prefix}true_threads: {len(set(truth.values()))}")
    print(f"{prefix}topics: {len(set(predicted.values()))}")
    print(f"{prefix}out_of_order_replies: {out_of_order}")
    print(f"{prefix}mbox_bytes: {size}")
    print(f"{prefix}threading_precision: {precision:.4f}")
    print(f"{prefix}threading_recall: {recall:.4f}")
    print(f"{prefix}threading_f1: {f1:.4f}")
    print(f"{prefix}threading_exact_threads: {exact_threads(predicted, truth):.4f}")
    print(f"{prefix}import_seconds: {elapsed:.2f}")
    print(f"{prefix}import_msgs_per_s: {count / elapsed:.0f}")
    # CPU seconds of the import (both of its processes): the same on a busy machine.
    print(f"{prefix}import_cpu_seconds: {cpu:.2f}")
    print(f"{prefix}import_msgs_per_cpu_s: {count / cpu:.0f}")
    print(f"{prefix}load_average_1min: {os.getloadavg()[0]:.2f}")
    print(f"{prefix}import_report: {result.report}")
    if misses:
        _misses(predicted, truth, arrivals)


# --- real corpora: SpamAssassin's easy ham, notmuch's test corpora ------------------------------

CACHE = Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache") / "mailforum-bench"
HAM_PACKAGE = "golang-github-gatherstars-com-jwz-dev"  # ships SpamAssassin's easy ham as test data
_BRACKETED = re.compile(r"<([^<>]+)>")
_WHITESPACE = re.compile(r"\s+")


def debian_package(name: str, cache: Path) -> Path:
    """The files of a Debian package, downloaded (``apt-get download``) and unpacked once into ``cache``."""
    root = cache / name
    if not root.is_dir():
        download = cache / "download"
        download.mkdir(parents=True, exist_ok=True)
        subprocess.run(["apt-get", "download", name], cwd=download, check=True, capture_output=True)
        deb = max(download.glob(f"{name}_*.deb"))
        subprocess.run(["dpkg-deb", "-x", str(deb), str(root.with_suffix(".tmp"))], check=True)
        root.with_suffix(".tmp").rename(root)
    return root


def ham_files(cache: Path) -> list[Path]:
    return sorted(debian_package(HAM_PACKAGE, cache).rglob("testdata/ham/*.eml"))


def corpus_files(directory: Path) -> list[Path]:
    """Every file under ``directory`` that starts like a mail message (notmuch's corpora are Maildirs)."""
    found = []
    for path in sorted(directory.rglob("*")):
        if path.is_file() and re.match(rb"^[A-Za-z-]+:", path.read_bytes()[:200]):
            found.append(path)
    return found


def notmuch_threads(files: list[Path], workdir: Path) -> dict[int, str]:
    """notmuch's threads (file index → thread id): ``notmuch new`` on a Maildir of the files."""
    maildir = workdir / "maildir"
    shutil.rmtree(maildir, ignore_errors=True)
    for sub in ("cur", "new", "tmp"):
        (maildir / sub).mkdir(parents=True)
    for number, path in enumerate(files):
        shutil.copyfile(path, maildir / "cur" / f"{number:06d}.bench:2,")
    config = workdir / "notmuch-config"
    config.write_text(f"[database]\npath={maildir}\n[new]\ntags=\n[maildir]\nsynchronize_flags=false\n")
    env = dict(os.environ, NOTMUCH_CONFIG=str(config))
    subprocess.run(["notmuch", "new", "--quiet"], env=env, check=True, capture_output=True)
    shown = subprocess.run(
        ["notmuch", "show", "--format=json", "--body=false", "--entire-thread=true", "*"],
        env=env,
        check=True,
        capture_output=True,
    )
    threads: dict[int, str] = {}

    def walk(nodes: list, thread: str) -> None:
        for message, replies in nodes:
            if message:
                names = (
                    message["filename"] if isinstance(message["filename"], list) else [message["filename"]]
                )
                for name in names:
                    threads[int(Path(name).name.split(".")[0])] = thread
            walk(replies, thread)

    for number, thread in enumerate(json.loads(shown.stdout)):
        walk(thread, f"nm{number}")
    return threads


def _header_ids(value: str | None) -> list[str]:
    return ["<" + _WHITESPACE.sub("", m) + ">" for m in _BRACKETED.findall(value or "")]


def jwz_threads(raws: list[bytes]) -> dict[int, str]:
    """Textbook JWZ from headers alone (no subjects): References, plus In-Reply-To's first id; the
    connected components of the parent links (placeholders join siblings)."""
    parent: dict[str, str] = {}

    def find(node: str) -> str:
        while parent.setdefault(node, node) != node:
            parent[node] = parent[parent[node]]
            node = parent[node]
        return node

    own: list[str] = []
    for number, raw in enumerate(raws):
        heads = email.message_from_bytes(raw.split(b"\n\n", 1)[0] + b"\n\n", policy=email.policy.compat32)
        mid = (_header_ids(str(heads.get("message-id") or "")) or [f"<file{number}@bench>"])[0]
        refs = _header_ids(str(heads.get("references") or ""))
        reply = _header_ids(str(heads.get("in-reply-to") or ""))[:1]
        if reply and reply[0] not in refs:
            refs.append(reply[0])
        own.append(mid)
        for node in [*refs, mid]:
            parent[find(node)] = find(refs[0] if refs else mid)
    return {number: find(mid) for number, mid in enumerate(own)}


def our_ids(raws: list[bytes]) -> list[str]:
    """The Message-ID mailforum stores for each file (the key of its export)."""
    from mailforum.mail.parse import parse

    return [parse(raw).message_id for raw in raws]


def real_corpus(name: str, files: list[Path], workdir: Path, misses: bool) -> None:
    """Import ``files`` into one list; compare with notmuch and with links notmuch and JWZ both make."""
    raws = [p.read_bytes() for p in files]
    mbox = workdir / f"{name}.mbox"
    with open(mbox, "wb") as out:
        for raw in raws:
            out.write(
                _mbox_entry(raw.replace(b"\r\n", b"\n"), "bench@example.org", "Mon Jan  1 00:00:00 2024")
            )
    imported = import_mbox(workdir, mbox)
    ids = our_ids(raws)
    notmuch = {ids[n]: t for n, t in notmuch_threads(files, workdir).items()}
    jwz = jwz_threads(raws)
    both = {ids[n]: f"{notmuch[ids[n]]} {t}" for n, t in jwz.items() if ids[n] in notmuch}
    predicted = {k: v for k, v in imported.predicted.items() if k in notmuch}
    precision, recall, f1 = pairwise(predicted, notmuch)
    print(f"{name}_messages: {len(raws)}")
    print(f"{name}_notmuch_threads: {len(set(notmuch.values()))}")
    print(f"{name}_topics: {len(set(predicted.values()))}")
    print(f"{name}_precision_vs_notmuch: {precision:.4f}")
    print(f"{name}_recall_vs_notmuch: {recall:.4f}")
    print(f"{name}_f1_vs_notmuch: {f1:.4f}")
    print(f"{name}_recall_vs_notmuch_and_jwz: {pairwise(predicted, both)[1]:.4f}")
    print(f"{name}_exact_threads_vs_notmuch: {exact_threads(predicted, notmuch):.4f}")
    reference = notmuch
    if name == "ham":
        # notmuch never threads by subject: the joins a person read and found right count too.
        reference = with_links(notmuch, read_joins(HAM_READ_JOINS))
        print(f"{name}_precision_vs_notmuch_and_read_joins: {pairwise(predicted, reference)[0]:.4f}")
        print(f"{name}_false_pairs_vs_notmuch: {false_pairs(predicted, notmuch)}")
        print(f"{name}_false_pairs_vs_notmuch_and_read_joins: {false_pairs(predicted, reference)}")
    if misses:
        subjects = {ids[n]: _subject_of(raw) for n, raw in enumerate(raws)}
        _groups_apart("split", both, predicted, subjects)
        _groups_apart("merged", predicted, reference, subjects)


HAM_READ_JOINS = Path(__file__).with_name("ham-read-joins.tsv")


def read_joins(path: Path) -> list[tuple[str, str]]:
    """The (reply, joined to) pairs of ``path`` judged "right" (rule, reply, joined, verdict, why)."""
    links = []
    for line in path.read_text().splitlines():
        if line and not line.startswith("#"):
            _rule, reply, joined, verdict, _why = line.split("\t")
            if verdict == "right":
                links.append((reply, joined))
    return links


def with_links(groups: dict[str, str], links: list[tuple[str, str]]) -> dict[str, str]:
    """``groups`` with the groups of each linked pair made one."""
    parent: dict[str, str] = {}

    def find(node: str) -> str:
        while parent.setdefault(node, node) != node:
            parent[node] = parent[parent[node]]
            node = parent[node]
        return node

    for a, b in links:
        if a in groups and b in groups:
            parent[find(groups[a])] = find(groups[b])
    return {key: find(group) for key, group in groups.items()}


def false_pairs(predicted: dict[str, Any], truth: dict[str, Any]) -> int:
    """Pairs of messages in one topic that ``truth`` puts apart."""
    together: Counter = Counter()
    both: Counter = Counter()
    for key, group in predicted.items():
        if key in truth:
            together[group] += 1
            both[(group, truth[key])] += 1
    return sum(n * (n - 1) // 2 for n in together.values()) - sum(n * (n - 1) // 2 for n in both.values())


def _subject_of(raw: bytes) -> str:
    heads = email.message_from_bytes(raw.split(b"\n\n", 1)[0] + b"\n\n", policy=email.policy.compat32)
    return str(heads.get("subject") or "")[:70]


def _groups_apart(
    label: str, groups: dict[str, Any], other: dict[str, Any], subjects: dict[str, str]
) -> None:
    """Print each group of ``groups`` that ``other`` splits (to stderr, for debugging)."""
    members: dict[Any, list[str]] = {}
    for key, group in groups.items():
        if key in other:
            members.setdefault(group, []).append(key)
    for keys in members.values():
        parts = Counter(other[k] for k in keys)
        if len(parts) > 1:
            print(f"{label}: {len(keys)} messages in {len(parts)} groups", file=sys.stderr)
            for key in keys[:12]:
                print(f"    {other[key]!s:>12} {key[:50]:50} {subjects[key]!r}", file=sys.stderr)


def _misses(predicted: dict[str, int], truth: dict[str, int], arrivals: list[tuple[Msg, bool]]) -> None:
    """Print the messages split from or wrongly joined to their threads (for debugging)."""
    by_mid = {m.mid: m for m, _ in arrivals}
    main_topic: dict[int, int] = {}
    for thread in set(truth.values()):
        counts = Counter(predicted[k] for k, t in truth.items() if t == thread and k in predicted)
        if counts:
            main_topic[thread] = counts.most_common(1)[0][0]
    shown = 0
    for mid, thread in truth.items():
        if mid in predicted and predicted[mid] != main_topic.get(thread) and shown < 30:
            m = by_mid[mid]
            print(
                f"split: {m.client[0]} {m.subject!r} parent={m.parent.client[0] if m.parent else None}",
                file=sys.stderr,
            )
            shown += 1


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--messages", type=int, default=20000)
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--threads", type=int, default=400, help="Threads of the client-behaviour corpus.")
    parser.add_argument("--keep", metavar="DIR", help="Work in DIR and keep the mbox and the database.")
    parser.add_argument("--misses", action="store_true", help="Print misthreaded messages to stderr.")
    parser.add_argument(
        "--corpus",
        choices=("generated", "clients", "ham", "notmuch"),
        action="append",
        help="What to measure (repeatable; default: generated).",
    )
    parser.add_argument("--cache", type=Path, default=CACHE, help="Where Debian packages are unpacked.")
    parser.add_argument(
        "--notmuch-corpus",
        type=Path,
        action="append",
        default=[],
        metavar="DIR",
        help="A directory of mail (e.g. notmuch's test/corpora/lkml) for --corpus notmuch.",
    )
    args = parser.parse_args()
    for corpus in args.corpus or ["generated"]:
        workdir = Path(args.keep or tempfile.mkdtemp(prefix=f"mf-bench-threading-{corpus}-"))
        workdir.mkdir(parents=True, exist_ok=True)
        if corpus == "generated":
            run(args, workdir)
        elif corpus == "clients":
            run_clients(args, workdir)
        elif corpus == "ham":
            real_corpus("ham", ham_files(args.cache), workdir, args.misses)
        else:
            if not args.notmuch_corpus:
                sys.exit(
                    "--corpus notmuch needs --notmuch-corpus DIR (no Debian package ships notmuch's corpora)"
                )
            for directory in args.notmuch_corpus:
                real_corpus(f"notmuch_{directory.name}", corpus_files(directory), workdir, args.misses)


if __name__ == "__main__":
    main()
