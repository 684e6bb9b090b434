"""The ``mailforum`` command line.

Every error a user can cause ends in one line on stderr and a non-zero exit:
``MailforumError`` subclasses carry their message; database driver errors are
turned into one line naming the database.
"""

from __future__ import annotations

import datetime as dt
import gc
import json
import sys
from collections.abc import Callable, Iterable, Iterator, Sequence
from typing import TYPE_CHECKING, Any, TypeVar

import click

from mailforum import __version__
from mailforum.db.enums import (
    ConfirmAction,
    DeliveryMode,
    DigestFormat,
    PostingPolicy,
    SpoolState,
    Visibility,
)
from mailforum.errors import InvalidInput, MailforumError, NotFound

if TYPE_CHECKING:
    import mailbox

    from mailforum.app import Switches
    from mailforum.config import Config
    from mailforum.core.lists import Address
    from mailforum.db.models import MailingList
    from mailforum.db.session import Database

F = TypeVar("F", bound=Callable[..., Any])


class State:
    """What every command gets: the loaded config, and the database opened on demand."""

    def __init__(self, config_path: str | None) -> None:
        self._config_path = config_path
        self._config: Config | None = None
        self._db: Database | None = None

    @property
    def config(self) -> Config:
        if self._config is None:
            from mailforum.config import load

            self._config = load(self._config_path)
        return self._config

    def db(self, require_schema: bool = True) -> Database:
        if self._db is None:
            from mailforum.db import migrate
            from mailforum.db.session import Database

            cfg = self.config.database
            # Only `init` (require_schema=False) may create a SQLite file.
            self._db = Database(cfg.url, cfg.busy_timeout, create=not require_schema)
            if require_schema:
                migrate.require_current(self._db)
            else:
                self._db.ping()
            started()
        return self._db

    def close(self) -> None:
        """Close the database's connections when the command ends, rather than leave them to
        the interpreter's exit (which ``started`` keeps from collecting them): closing the
        last connection to a SQLite file checkpoints and removes its -wal and -shm files."""
        if self._db is not None:
            self._db.dispose()
            self._db = None


def started() -> None:
    """Start-up is over: keep what it built out of the garbage collector's way, and collect again.

    ``main`` turns the cyclic collector off while a command loads its code: SQLAlchemy, the
    models and click build some 100,000 objects that live until exit. The collector's passes
    over them cost ~30 ms while they load, and ~70 ms more when the interpreter collects over
    everything at exit. ``gc.freeze`` moves them to the permanent generation,
    which no collection scans again. Called when the command is about to work
    (``State.db``, ``serve``); a command that never gets there is one that ends soon.
    """
    if not gc.isenabled():
        gc.freeze()
        gc.enable()


pass_state = click.make_pass_decorator(State)

# A row id on the command line (a post, topic, spool or outbox entry): a BIGINT, so a number
# no row can have is refused by click with a clear message instead of failing in the database.
ROW_ID = click.IntRange(1, 2**63 - 1)

json_option = click.option(
    "--json", "as_json", is_flag=True, help="Print a JSON array of objects (for scripts)."
)

Row = tuple[dict[str, Any], Sequence[str]]  # (the JSON object, the cells of the text line)


def print_rows(
    header: Sequence[str],
    rows: Iterable[Row],
    as_json: bool,
    terminal: Callable[[Sequence[str]], Sequence[str]] | None = None,
) -> int:
    """Print listing rows; returns how many.

    ``--json``: one JSON array. On a terminal: the cells (through ``terminal``, when
    given) in aligned columns under ``header``. Otherwise (a pipe, a file): one
    TAB-separated line per row and no header, so scripts and ``cut -f1`` see only data.
    """
    if as_json:
        objects = [obj for obj, _ in rows]
        click.echo(json.dumps(objects, ensure_ascii=False, default=_json_value, indent=1))
        return len(objects)
    if not sys.stdout.isatty():
        count = 0
        for _, cells in rows:
            click.echo("\t".join(cells))
            count += 1
        return count
    table = [list(terminal(cells) if terminal else cells) for _, cells in rows]
    if table:
        widths = [
            max(len(line[i]) for line in [list(header), *table] if i < len(line)) for i in range(len(header))
        ]
        for line in [list(header), *table]:
            click.echo(
                "  ".join(cell.ljust(width) for cell, width in zip(line, widths, strict=False)).rstrip()
            )
    return len(table)


def _json_value(value: Any) -> Any:
    if isinstance(value, dt.datetime):
        return value.isoformat()
    raise TypeError(f"not JSON: {type(value).__name__}")


def _when(value: dt.datetime | None) -> str:
    return f"{value:%Y-%m-%d %H:%M:%S}" if value else ""


def setup_logging(verbosity: int, serving: bool = False) -> None:
    """Log to stderr: warnings (info for `serve`), info with -v, debug with -vv."""
    import logging

    from mailforum import logsafe

    default = logging.INFO if serving else logging.WARNING
    level = logging.DEBUG if verbosity > 1 else logging.INFO if verbosity == 1 else default
    logging.basicConfig(
        level=level, format="%(asctime)s %(levelname)s %(name)s: %(message)s", stream=sys.stderr
    )
    # aiosmtpd logs every command at INFO; keep that for -vv.
    logging.getLogger("mail.log").setLevel(logging.DEBUG if verbosity > 1 else logging.WARNING)
    logging.getLogger("alembic").setLevel(logging.INFO if verbosity > 1 else logging.WARNING)
    logsafe.install()  # no signed tokens in the SMTP command log (RELIABILITY S25)


@click.group(context_settings={"help_option_names": ["-h", "--help"], "max_content_width": 100})
@click.option(
    "--config",
    "config_path",
    metavar="FILE",
    envvar="MAILFORUM_CONFIG",  # config.ENV_VAR, spelled out so that --help loads no config code
    help="TOML configuration file (default: $MAILFORUM_CONFIG, else ./mailforum.toml, else defaults).",
)
@click.option("-v", "--verbose", count=True, help="More logging: -v for info, -vv for debug.")
@click.version_option(__version__, prog_name="mailforum")
@click.pass_context
def cli(ctx: click.Context, config_path: str | None, verbose: int) -> None:
    """mailforum: a forum people use by email.

    Every list is a forum, every thread of mail a topic, every message a post.
    Start with `mailforum init`, create a list with `mailforum lists create NAME`,
    add members, then run `mailforum serve`.
    """
    ctx.obj = State(config_path)
    ctx.call_on_close(ctx.obj.close)
    setup_logging(verbose, serving=ctx.invoked_subcommand == "serve")


# --- init and serve -----------------------------------------------------------


@cli.command()
@pass_state
def init(state: State) -> None:
    """Create the database schema, or upgrade it to this version (safe to run again)."""
    from mailforum.db import migrate

    db = state.db(require_schema=False)
    before, after = migrate.upgrade(db)
    if before == after:
        click.echo(f"schema already at {after} ({db.safe_url})")
    else:
        click.echo(f"schema {before or 'empty'} -> {after} ({db.safe_url})")


@cli.command()
@click.option("--no-smtp", is_flag=True, help="Do not listen for SMTP/LMTP (process the spool only).")
@click.option("--no-process", is_flag=True, help="Accept and spool mail, but do not process it.")
@click.option("--no-delivery", is_flag=True, help="Do not send outgoing mail (the outbox keeps it).")
@click.option("--no-web", is_flag=True, help="Do not serve the web archive.")
@click.option("--no-scheduler", is_flag=True, help="Do not queue digests at [digest] hour.")
@click.option(
    "--workers",
    type=click.IntRange(min=1),
    default=None,
    help="Spool-processing processes (default: the number of cores minus one, at least 1).",
)
@click.option(
    "--ingest-workers",
    type=click.IntRange(min=1),
    default=1,
    show_default=True,
    help="SMTP/LMTP processes, sharing the ports (SO_REUSEPORT; connection limits count per process).",
)
@click.option(
    "--delivery-workers",
    type=click.IntRange(min=1),
    default=None,
    help="Delivery processes, sharing [relay] max_connections (default: 2 from two cores on).",
)
@click.option(
    "--processes/--single-process",
    default=None,
    help="A supervisor and a child process per role, or every part in this one process. Default: "
    "processes on PostgreSQL; one process on SQLite, whose single writer gains nothing from more.",
)
@click.option("--child", hidden=True, default=None, help="Internal: run as the supervisor's child NAME.")
@click.option("--reuse-port", hidden=True, is_flag=True, help="Internal: share the SMTP ports with siblings.")
@click.option(
    "--relay-share",
    hidden=True,
    type=click.IntRange(min=1),
    default=1,
    help="Internal: this delivery child's siblings, [relay] max_connections is shared among.",
)
@click.pass_context
def serve(
    ctx: click.Context,
    no_smtp: bool,
    no_process: bool,
    no_delivery: bool,
    no_web: bool,
    no_scheduler: bool,
    workers: int | None,
    ingest_workers: int,
    delivery_workers: int | None,
    processes: bool | None,
    child: str | None,
    reuse_port: bool,
    relay_share: int,
) -> None:
    """Run the server: SMTP/LMTP ingest, the spool processor, delivery, the web archive, digests.

    Listens on [smtp] host:port (SMTP), [smtp] lmtp_port (LMTP) and [web] host:port
    (HTTP). With --processes each part runs as its own process under a supervisor
    that restarts a child that dies. Stops cleanly on SIGTERM or Ctrl-C: new sessions
    get 421, messages in flight are finished.
    """
    import dataclasses
    import socket

    from mailforum.app import Switches
    from mailforum.app import serve as run
    from mailforum.runners import supervisor

    state: State = ctx.obj
    config = state.config
    from mailforum import logjson

    logjson.use(config.logging.format)
    switches = Switches(
        ingest=not no_smtp,
        process=not no_process,
        delivery=not no_delivery,
        web=not no_web,
        scheduler=not no_scheduler,
        reuse_port=reuse_port,
    )
    if processes is None:  # --workers, --ingest-workers or --delivery-workers asks for processes
        asked = workers is not None or ingest_workers > 1 or delivery_workers is not None
        processes = asked or supervisor.processes_by_default(config.database.url)
    if child is None and processes:
        _supervise(ctx, state, switches, workers, ingest_workers, delivery_workers)
        return
    if child is not None:
        supervisor.die_with_parent()
        # Each child claims spool rows under a name of its own, so a restarted child takes
        # back exactly what its dead predecessor held.
        base = config.processing.node_name or socket.gethostname()
        processing = dataclasses.replace(config.processing, node_name=f"{base}/{child}"[-64:])
        relay = dataclasses.replace(
            config.relay, max_connections=max(1, config.relay.max_connections // relay_share)
        )
        config = dataclasses.replace(config, processing=processing, relay=relay)
    started()
    _run_async(run(config, switches))


def _supervise(
    ctx: click.Context,
    state: State,
    switches: Switches,
    workers: int | None,
    ingest_workers: int,
    delivery_workers: int | None,
) -> None:
    import os

    from mailforum.runners import supervisor

    db = state.db()  # refuses a database without the current schema before any child starts
    db.check_durability()
    db.dispose()
    plan = supervisor.Plan(
        ingest=ingest_workers if switches.ingest else 0,
        process=(workers or supervisor.default_workers()) if switches.process else 0,
        delivery=(delivery_workers or supervisor.default_delivery_workers()) if switches.delivery else 0,
        web=int(switches.web),
        scheduler=switches.scheduler,
    )
    root = ctx.find_root()
    argv = [sys.executable, "-m", "mailforum"]
    if root.params.get("config_path"):
        argv += ["--config", os.path.abspath(root.params["config_path"])]
    argv += ["-v"] * (root.params.get("verbose") or 0)
    argv.append("serve")
    try:
        supervisor.Supervisor(argv, plan).run()
    except supervisor.StartFailed as exc:
        raise MailforumError(str(exc)) from None


def _run_async(main: Any) -> None:
    """asyncio.run, on uvloop's faster event loop when it is installed."""
    import asyncio

    try:
        import uvloop
    except ImportError:
        asyncio.run(main)
        return
    with asyncio.Runner(loop_factory=uvloop.new_event_loop) as runner:
        runner.run(main)


# --- outbound ----------------------------------------------------------------------


@cli.command()
@click.option("--once", is_flag=True, help="Send what is due now, then exit (else run until Ctrl-C).")
@pass_state
def deliver(state: State, once: bool) -> None:
    """Send outgoing mail from the outbox through [relay].

    Copies the relay defers (4xx, no connection) stay in the outbox with a retry
    time; `mailforum outbox status` shows them.
    """
    import asyncio

    from mailforum.runners.delivery import DeliveryWorker

    db = state.db()
    worker = DeliveryWorker(db, state.config)

    async def go() -> None:
        if not once:
            import signal

            loop = asyncio.get_running_loop()
            for sig in (signal.SIGTERM, signal.SIGINT):
                loop.add_signal_handler(sig, worker.stop)
        await worker.run(once=once)

    asyncio.run(go())
    stats = worker.stats
    click.echo(f"sent {stats.sent}, deferred {stats.deferred}, failed {stats.failed}")


@cli.group(name="outbox")
def outbox_group() -> None:
    """Inspect outgoing mail and retry copies that failed."""


@outbox_group.command("status")
@pass_state
def outbox_status(state: State) -> None:
    """Counts by state (pending, sent, failed), copies being sent now, and the oldest pending age."""
    from mailforum.db import outbox
    from mailforum.db.models import utcnow

    now = utcnow()
    with state.db().read_session() as session:
        status = outbox.status(session, now)
    for name in ("pending", "sent", "failed"):
        click.echo(f"{name + ':':9} {status.counts.get(name, 0)}")
    click.echo(f"{'sending:':9} {status.in_flight}")
    if status.oldest_pending is None:
        click.echo("oldest pending: none")
    else:
        age = int((now - status.oldest_pending).total_seconds())
        click.echo(f"oldest pending: {age} s (queued {status.oldest_pending:%Y-%m-%d %H:%M:%S} UTC)")


@outbox_group.command("list")
@click.option(
    "--state",
    "state_filter",
    type=click.Choice(["pending", "sent", "failed", "all"]),
    default="failed",
    show_default=True,
)
@click.option("--limit", default=100, show_default=True, help="Show at most this many (newest first).")
@json_option
@pass_state
def outbox_list(state: State, state_filter: str, limit: int, as_json: bool) -> None:
    """List outbox rows: id, state, failed attempts, recipient, next attempt, last error.

    A sent copy shows no error, even if an earlier attempt failed."""
    from mailforum.db import outbox
    from mailforum.db.models import OutboxState

    with state.db().read_session() as session:
        entries = outbox.newest(session, None if state_filter == "all" else state_filter, limit)
    rows: list[Row] = []
    for e in entries:
        error = e.last_reply if e.state != OutboxState.SENT.value and e.last_reply else None
        obj = {
            "id": e.id,
            "kind": e.kind,
            "state": e.state,
            "attempts": e.attempts,
            "recipient": e.recipient,
            "next_attempt_at": e.next_attempt_at,
            "sent_at": e.sent_at,
            "last_reply": error,
        }
        line = (error or "").splitlines()
        cells = [
            str(e.id),
            e.state,
            str(e.attempts),
            e.recipient,
            _when(e.next_attempt_at),
            line[0] if line else "",
        ]
        rows.append((obj, cells))
    header = ("ID", "STATE", "ATTEMPTS", "RECIPIENT", "NEXT ATTEMPT", "LAST ERROR")
    print_rows(header, rows, as_json)


@outbox_group.command("retry")
@click.argument("ids", nargs=-1, type=ROW_ID)
@click.option("--all", "retry_all", is_flag=True, help="Retry every failed copy.")
@pass_state
def outbox_retry(state: State, ids: tuple[int, ...], retry_all: bool) -> None:
    """Queue failed copies (IDS, or --all) for delivery again."""
    from mailforum.db import outbox
    from mailforum.db.models import utcnow

    if not ids and not retry_all:
        raise InvalidInput("name the copies to retry (IDS) or use --all")
    with state.db().session() as session:
        count = outbox.retry(session, None if retry_all else ids, utcnow())
    click.echo(f"{count} cop{'y' if count == 1 else 'ies'} queued for delivery")


@outbox_group.command("purge")
@click.option(
    "--older-than",
    "days",
    type=click.IntRange(min=7),
    default=30,
    show_default=True,
    metavar="DAYS",
    help="Delete copies sent more than DAYS days ago (at least 7).",
)
@pass_state
def outbox_purge(state: State, days: int) -> None:
    """Delete long-sent copies so the outbox stays small; failed and pending ones are kept."""
    from mailforum.db import outbox
    from mailforum.db.models import utcnow

    with state.db().session() as session:
        count = outbox.purge(session, utcnow() - dt.timedelta(days=days))
    click.echo(f"deleted {count} sent cop{'y' if count == 1 else 'ies'} older than {days} days")


@cli.command()
@click.option("--dry-run", is_flag=True, help="Change nothing; print what the retention purge would remove.")
@pass_state
def housekeeping(state: State, dry_run: bool) -> None:
    """Run one round of what serve does every [bounces] housekeeping_interval.

    Bounce warnings and removals, expiry of held posts, and the retention purge ([spool]
    keep_days): raw bytes of processed spool entries, sent outbox copies, expired
    confirmations; expired sign-in links and web sessions. Prints one COUNT<TAB>WHAT line each.
    """
    from mailforum.core import retention
    from mailforum.db.models import utcnow
    from mailforum.runners.housekeeping import Housekeeper

    db = state.db()
    counts = retention.due(db, state.config, utcnow()) if dry_run else Housekeeper(db, state.config).once()
    for what, count in counts.items():
        click.echo(f"{count}\t{'would purge ' if dry_run else ''}{what}")


@cli.command()
@pass_state
def status(state: State) -> None:
    """Summarise lists, members, held posts, the spool and how senders are checked."""
    from mailforum.core.status import gather
    from mailforum.db.models import utcnow

    with state.db().read_session() as session:
        sections = gather(session, state.config, utcnow())
    for title, lines in sections:
        click.echo(f"{title}:")
        for line in lines:
            click.echo(f"  {line}")


# --- lists -------------------------------------------------------------------------


@cli.group(name="lists")
def lists_group() -> None:
    """Create, list and inspect mailing lists."""


@lists_group.command("create")
@click.argument("name")
@click.option("--title", default="", help="Human title, shown in From: and the archive.")
@click.option("--description", default="", help="One paragraph about the list.")
@click.option(
    "--policy",
    type=click.Choice([p.value for p in PostingPolicy]),
    default=PostingPolicy.MEMBERS.value,
    show_default=True,
    help="Who may post: anyone, members (others are held), or nobody without a moderator.",
)
@click.option(
    "--visibility",
    type=click.Choice([v.value for v in Visibility]),
    default=Visibility.PUBLIC.value,
    show_default=True,
    help="Who may read the web archive: everyone, or nobody (every page of it answers 404).",
)
@pass_state
def lists_create(state: State, name: str, title: str, description: str, policy: str, visibility: str) -> None:
    """Create the list NAME; it receives mail at NAME@[site] domain."""
    from mailforum.core import lists

    with state.db().session() as session:
        mlist = lists.create_list(
            session, name, title, description, PostingPolicy(policy), Visibility(visibility)
        )
        click.echo(f"created list {mlist.name} <{mlist.name}@{state.config.site.domain}>")


@lists_group.command("list")
@pass_state
def lists_list(state: State) -> None:
    """Print every list name, one per line."""
    from mailforum.core import lists

    with state.db().read_session() as session:
        for name in lists.list_names(session):
            click.echo(name)


@lists_group.command("set")
@click.argument("name")
@click.option(
    "--visibility",
    type=click.Choice([v.value for v in Visibility]),
    help="Who may read the web archive: everyone, or nobody (every page of it answers 404).",
)
@click.option(
    "--show-addresses/--hide-addresses",
    default=None,
    help="Whether the web archive shows authors' addresses (spelled out as 'ann at example.com').",
)
@click.option(
    "--moderate-first-post/--no-moderate-first-post",
    default=None,
    help="Hold each member's first post for a moderator.",
)
@click.option(
    "--unverified",
    type=click.Choice(["hold", "confirm"]),
    default=None,
    help="A post from a member that fails authentication: hold it, or ask the real member to confirm.",
)
@click.option(
    "--policy", type=click.Choice([p.value for p in PostingPolicy]), default=None, help="Who may post."
)
@click.option(
    "--author-delete-minutes",
    type=click.IntRange(0, 525_600),
    default=None,
    help="Minutes after posting during which authors may delete their own posts on the web (0: never).",
)
@pass_state
def lists_set(
    state: State,
    name: str,
    visibility: str | None,
    show_addresses: bool | None,
    moderate_first_post: bool | None,
    unverified: str | None,
    policy: str | None,
    author_delete_minutes: int | None,
) -> None:
    """Change the list NAME's archive display and posting settings."""
    from mailforum.core import lists

    changes = (visibility, show_addresses, moderate_first_post, unverified, policy, author_delete_minutes)
    if all(c is None for c in changes):
        raise InvalidInput(
            "nothing to change: give --visibility, --show-addresses/--hide-addresses, "
            "--moderate-first-post, --unverified, --policy or --author-delete-minutes"
        )
    with state.db().session() as session:
        mlist = lists.get_list(session, name)
        if visibility is not None:
            mlist.visibility = visibility
        if show_addresses is not None:
            mlist.show_addresses = show_addresses
        if moderate_first_post is not None:
            mlist.moderate_first_post = moderate_first_post
        if unverified is not None:
            mlist.unverified_action = unverified
        if policy is not None:
            mlist.posting_policy = policy
        if author_delete_minutes is not None:
            mlist.author_delete_minutes = author_delete_minutes
        shown = "shown" if mlist.show_addresses else "hidden"
        click.echo(f"{mlist.name}: visibility {mlist.visibility}, addresses {shown}")


@lists_group.command("delete")
@click.argument("name")
@click.option("--yes", is_flag=True, help="Do not ask: delete at once.")
@pass_state
def lists_delete(state: State, name: str, yes: bool) -> None:
    """Delete the list NAME with its members, archive, tags and pending copies (no undo).

    Prints what goes first and asks (unless --yes). Pending copies of its posts and
    digests are never sent; the audit log keeps its entries."""
    from mailforum.core import audit, lists

    with state.db().read_session() as session:
        counts = lists.deletion_counts(session, lists.get_list(session, name)).as_dict()
    shown = ", ".join(f"{key.replace('_', ' ')} {value}" for key, value in counts.items())
    click.echo(f"{name.strip().lower()}: {shown}")
    if not yes:
        click.confirm(f"delete the list {name.strip().lower()} and all of the above?", abort=True)
    with state.db().session() as session:
        mlist = lists.get_list(session, name)
        done = lists.delete_list(session, mlist).as_dict()
        audit.by_cli(
            session,
            action="list.delete",
            target=mlist.name,
            detail={"list": mlist.name, **done},
        )
    click.echo(f"deleted list {mlist.name}")


@lists_group.command("show")
@click.argument("name")
@pass_state
def lists_show(state: State, name: str) -> None:
    """Show a list's settings, addresses and counts."""
    from mailforum.core import lists

    domain = state.config.site.domain
    with state.db().read_session() as session:
        mlist = lists.get_list(session, name)
        stats = lists.list_stats(session, mlist)
    rows = [
        ("name", mlist.name),
        ("title", mlist.display_title),
        ("description", mlist.description),
        ("posting policy", mlist.posting_policy),
        ("first post held", "yes" if mlist.moderate_first_post else "no"),
        ("unverified posts", mlist.unverified_action),
        ("visibility", mlist.visibility),
        ("web addresses", "shown" if mlist.show_addresses else "hidden"),
        ("digest format", mlist.digest_format),
        ("author delete", f"{mlist.author_delete_minutes} minutes" if mlist.author_delete_minutes else "off"),
        ("post address", f"{mlist.name}@{domain}"),
        ("command address", f"{mlist.name}-request@{domain}"),
        ("members", stats["members"]),
        ("topics", stats["topics"]),
        ("posts", stats["posts"]),
        ("held posts", stats["held"]),
        ("last post", stats["last_post"] or "never"),
    ]
    for key, value in rows:
        click.echo(f"{key + ':':17} {value}")


# --- members ----------------------------------------------------------------------


def _read_addresses(args: tuple[str, ...], file: str | None) -> Iterator[tuple[str, str]]:
    """(text, where) for each address from the arguments and from FILE ('-' is stdin)."""
    for arg in args:
        yield arg, ""
    if file is None:
        return
    if file == "-":
        stream, label = sys.stdin, "stdin"
    else:
        try:
            stream, label = open(file, encoding="utf-8"), file  # noqa: SIM115
        except OSError as exc:
            raise InvalidInput(f"cannot read {file}: {exc.strerror}") from None
    with stream:
        try:
            for number, line in enumerate(stream, 1):
                text = line.split("#", 1)[0].strip() if not line.lstrip().startswith('"') else line.strip()
                if text:
                    yield text, f"{label} line {number}: "
        except UnicodeDecodeError:
            raise InvalidInput(f"{label} is not UTF-8 text") from None


def _checked_addresses(state: State, args: tuple[str, ...], file: str | None) -> list[Address]:
    from mailforum.core import lists

    local = state.config.site.allow_local_domains
    checked = [
        lists.check_address(text, where, local_domains=local) for text, where in _read_addresses(args, file)
    ]
    if not checked:
        raise InvalidInput("no addresses given (as arguments, or --file PATH with one per line)")
    return checked


address_file = click.option(
    "--file", "file", metavar="PATH", help="Read addresses from PATH, one per line ('-' for stdin)."
)


@cli.group()
def members() -> None:
    """Add, invite, show, list and remove members of a list.

    add and remove are an operator's direct acts (no confirmation); invite mails confirmations."""


@members.command("add")
@click.argument("list_name", metavar="LIST")
@click.argument("addresses", nargs=-1, metavar="[ADDR]...")
@address_file
@click.option(
    "--mode",
    type=click.Choice([m.value for m in DeliveryMode]),
    default=DeliveryMode.ALL.value,
    show_default=True,
    help="Delivery: every post, first posts of topics, a daily digest, or nothing.",
)
@click.option("--welcome", is_flag=True, help="Send each new member the welcome mail.")
@pass_state
def members_add(
    state: State, list_name: str, addresses: tuple[str, ...], file: str | None, mode: str, welcome: bool
) -> None:
    """Add ADDR... (e.g. 'Ann <ann@example.com>') to LIST. Nothing is added if any address is bad.

    An operator's direct act: no confirmation, and no mail unless --welcome is given."""
    from mailforum.core import lists, subscriptions
    from mailforum.db.models import utcnow

    checked = _checked_addresses(state, addresses, file)
    config = state.config
    with state.db().session() as session:
        mlist = lists.get_list(session, list_name)
        now = utcnow()
        new = [a for a in checked if lists.find_member(session, mlist.id, a.address) is None]
        added, existing = lists.add_members(session, mlist, checked, DeliveryMode(mode), now)
        welcomed = subscriptions.welcome(session, config, mlist, new, now) if welcome else 0
    click.echo(
        f"added {added} member(s) to {mlist.name}"
        + (f"; {existing} already members" if existing else "")
        + (f"; {welcomed} welcome mail(s) queued" if welcome else "")
    )


@members.command("invite")
@click.argument("list_name", metavar="LIST")
@click.argument("addresses", nargs=-1, metavar="[ADDR]...")
@address_file
@pass_state
def members_invite(state: State, list_name: str, addresses: tuple[str, ...], file: str | None) -> None:
    """Mail ADDR... an invitation to LIST; each joins when they confirm it (double opt-in).

    The caps of mail requests apply: one pending invitation per address and list, and at most
    [subscriptions] confirmations_per_day confirmation mails per address."""
    from mailforum.core import lists, subscriptions
    from mailforum.db.models import utcnow

    checked = _checked_addresses(state, addresses, file)
    config = state.config
    sent = 0
    with state.db().session() as session:
        mlist = lists.get_list(session, list_name)
        now = utcnow()
        unique = {a.address: a for a in checked}
        for who in unique.values():
            sent += subscriptions.request(
                session, config, mlist, who, ConfirmAction.SUBSCRIBE, now, source="invite"
            )
    held = len(unique) - sent
    click.echo(
        f"queued {sent} invitation(s) to {mlist.name}"
        + (f"; {held} not sent (one already pending, or the address's daily cap)" if held else "")
    )


@members.command("show")
@click.argument("list_name", metavar="LIST")
@click.argument("address", metavar="ADDR")
@pass_state
def members_show(state: State, list_name: str, address: str) -> None:
    """Show one member of LIST: delivery mode, digest and its hour, watched or muted topics, tags."""
    from mailforum.core import digest_schedule, lists
    from mailforum.core.topics import tag_settings, topic_settings

    who = lists.check_address(address, local_domains=state.config.site.allow_local_domains)
    with state.db().read_session() as session:
        mlist = lists.get_list(session, list_name)
        member = lists.find_member(session, mlist.id, who.address)
        if member is None:
            raise NotFound(f"{who.address} is not a member of {mlist.name}")
        topics = topic_settings(session, member)
        hour, zone = digest_schedule.member_schedule(
            digest_schedule.list_schedule(state.config, mlist), member.digest_hour, member.digest_timezone
        )
        own = member.digest_hour is not None or bool(member.digest_timezone)
        tags = tag_settings(session, member)
    rows = [
        ("address", member.address),
        ("name", member.display_name or "-"),
        ("mode", member.delivery_mode),
        ("digest", member.digest_frequency or "off"),
        ("digest at", f"{hour:02d}:00 {zone}" + ("" if own else " (the list's)")),
        ("nodupes", "on" if member.avoid_duplicates else "off"),
        ("joined", member.created_at.strftime("%Y-%m-%d %H:%M UTC")),
        ("watching", ", ".join(str(t) for t in topics["watch"]) or "-"),
        ("muted", ", ".join(str(t) for t in topics["mute"]) or "-"),
        (
            "tags",
            ", ".join([f"#{t}" for t in tags["watch"]] + [f"#{t} (muted)" for t in tags["mute"]]) or "-",
        ),
    ]
    for key, value in rows:
        click.echo(f"{key + ':':10} {value}")


@members.command("list")
@click.argument("list_name", metavar="LIST")
@json_option
@pass_state
def members_list(state: State, list_name: str, as_json: bool) -> None:
    """Print LIST's members, one per line: address, delivery mode, display name.

    Address first and no header when the output is not a terminal, so `cut -f1` gives
    the addresses; --json gives address, mode, name and joined for each."""
    from mailforum.core import lists

    with state.db().read_session() as session:
        mlist = lists.get_list(session, list_name)
        members = lists.members(session, mlist)
    rows: list[Row] = [
        (
            {"address": m.address, "mode": m.delivery_mode, "name": m.display_name, "joined": m.created_at},
            [x for x in (m.address, m.delivery_mode, m.display_name) if x],
        )
        for m in members
    ]
    print_rows(("ADDRESS", "MODE", "NAME"), rows, as_json)


@members.command("data")
@click.argument("address", metavar="ADDR")
@pass_state
def members_data(state: State, address: str) -> None:
    """Print as JSON everything stored about ADDR, in every list: each table's rows that name it.

    Raw messages are given by size; `mailforum export` gives the posts themselves."""
    from mailforum.core import privacy

    with state.db().read_session() as session:
        found = privacy.data(session, address)
    click.echo(json.dumps(found, ensure_ascii=False, indent=1, default=_json_value))


@members.command("forget")
@click.argument("address", metavar="ADDR")
@click.option("--remove-posts", is_flag=True, help="Remove their posts too (tombstones with no text).")
@pass_state
def members_forget(state: State, address: str, remove_posts: bool) -> None:
    """Erase ADDR from every list: memberships, settings, tokens, confirmations, bounce records.

    Their posts stay, shown as a former member's (no name, no address, also in the stored
    raw message), unless --remove-posts. Any other stored value naming ADDR (a quote, the
    spool, the audit log) is rewritten to former-member@invalid. See docs/privacy.md for
    what backups and mail already sent still hold."""
    from mailforum.core import privacy, topics

    with state.db().session() as session:
        done = privacy.forget(session, address, state.config.site.secret_key, remove_posts)
        topics.audit(
            session,
            topics.Actor(),
            "members.forget",
            None,
            privacy.FORMER_NAME,
            {"memberships": done.memberships, "posts": done.posts, "removed_posts": done.posts_removed},
        )
    deleted = ", ".join(f"{t} {n}" for t, n in sorted(done.rows_deleted.items())) or "none"
    rewritten = ", ".join(f"{t} {n}" for t, n in sorted(done.rewritten.items())) or "none"
    click.echo(
        f"forgotten: {done.memberships} membership(s); rows deleted: {deleted}; "
        f"{done.posts} post(s) now a former member's"
        + (f", {done.posts_removed} removed" if remove_posts else "")
        + f"; values rewritten: {rewritten}"
    )


@members.command("remove")
@click.argument("list_name", metavar="LIST")
@click.argument("addresses", nargs=-1, metavar="[ADDR]...")
@address_file
@pass_state
def members_remove(state: State, list_name: str, addresses: tuple[str, ...], file: str | None) -> None:
    """Remove ADDR... from LIST (no goodbye mail)."""
    from mailforum.core import lists

    checked = _checked_addresses(state, addresses, file)
    with state.db().session() as session:
        mlist = lists.get_list(session, list_name)
        removed, absent = lists.remove_members(session, mlist, checked)
    click.echo(f"removed {removed} member(s) from {mlist.name}")
    for address in absent:
        click.echo(f"not a member: {address}", err=True)


@members.command("bounces")
@click.argument("list_name", metavar="LIST")
@json_option
@pass_state
def members_bounces(state: State, list_name: str, as_json: bool) -> None:
    """Print LIST's members with a bounce score: address, score, state, warnings sent."""
    from mailforum.core import lists

    with state.db().read_session() as session:
        mlist = lists.get_list(session, list_name)
        members = [
            m
            for m in lists.members(session, mlist)
            if m.bounce_score > 0 or m.delivery_disabled_at is not None
        ]
    rows: list[Row] = []
    for member in members:
        since = member.delivery_disabled_at
        where = f"disabled since {since:%Y-%m-%d %H:%M}" if since else "enabled"
        last = f"{member.bounce_last_at:%Y-%m-%d %H:%M}" if member.bounce_last_at else "-"
        obj = {
            "address": member.address,
            "score": member.bounce_score,
            "delivery": "disabled" if since else "enabled",
            "disabled_since": since,
            "warnings": member.bounce_warnings,
            "last_bounce": member.bounce_last_at,
        }
        cells = [
            member.address,
            f"score {member.bounce_score:g}",
            where,
            f"warnings {member.bounce_warnings}",
            f"last bounce {last}",
        ]
        rows.append((obj, cells))
    header = ("ADDRESS", "SCORE", "DELIVERY", "WARNINGS", "LAST BOUNCE")
    print_rows(header, rows, as_json, _unlabelled)
    if not rows:
        click.echo(f"no bounces on {mlist.name}", err=True)


def _unlabelled(cells: Sequence[str]) -> list[str]:
    """A `members bounces` line under its header: 'score 2.5' shows as '2.5'."""
    address, score, where, warnings, last = cells
    labels = ("score ", "warnings ", "last bounce ")
    return [
        address,
        score.removeprefix(labels[0]),
        where,
        warnings.removeprefix(labels[1]),
        last.removeprefix(labels[2]),
    ]


@members.command("set")
@click.argument("list_name", metavar="LIST")
@click.argument("addresses", nargs=-1, required=True, metavar="ADDR...")
@click.option(
    "--nodupes",
    type=click.Choice(["on", "off"]),
    help="on: no list copy of a post whose To or Cc names the member (the default); off: always one.",
)
@click.option(
    "--digest-hour",
    metavar="HOUR|list",
    help="The hour (0-23) of the member's digest, in their time zone; 'list' for the list's hour.",
)
@click.option(
    "--digest-timezone",
    metavar="ZONE|list",
    help="The member's time zone for their digest (IANA name, such as Asia/Tokyo); 'list' for the list's.",
)
@pass_state
def members_set(
    state: State,
    list_name: str,
    addresses: tuple[str, ...],
    nodupes: str | None,
    digest_hour: str | None,
    digest_timezone: str | None,
) -> None:
    """Change a setting of ADDR... in LIST: "nodupes on|off" as by mail, and the hour and time
    zone of their digest as on their preferences page."""
    from mailforum.core import lists, preferences

    if nodupes is None and digest_hour is None and digest_timezone is None:
        raise InvalidInput("say what to set: --nodupes, --digest-hour or --digest-timezone")
    with state.db().session() as session:
        mlist = lists.get_list(session, list_name)
        for address in addresses:
            member = lists.find_member(session, mlist.id, lists.check_address(address).address)
            if member is None:
                raise InvalidInput(f"not a member of {mlist.name}: {address}")
            done = []
            if nodupes is not None:
                member.avoid_duplicates = nodupes == "on"
                done.append(f"nodupes {nodupes}")
            if digest_hour is not None or digest_timezone is not None:
                now = preferences.current(member)
                hour = "" if digest_hour == "list" else digest_hour
                zone = "" if digest_timezone == "list" else digest_timezone
                wanted = preferences.parse(
                    now.mode,
                    now.digest,
                    str(now.hour if now.hour is not None else "") if hour is None else hour,
                    (now.timezone or "") if zone is None else zone,
                )
                preferences.apply(session, member, wanted)
                hour_shown = "list" if wanted.hour is None else f"{wanted.hour:02d}:00"
                zone_shown = wanted.timezone or "(the list's time zone)"
                done.append(f"digest at {hour_shown} {zone_shown}")
            click.echo(f"{member.address}: {', '.join(done)}")


@members.command("enable")
@click.argument("list_name", metavar="LIST")
@click.argument("addresses", nargs=-1, required=True, metavar="ADDR...")
@pass_state
def members_enable(state: State, list_name: str, addresses: tuple[str, ...]) -> None:
    """Deliver to ADDR... again after bounces disabled it; their scores start from zero."""
    from mailforum.core import bounces, lists

    with state.db().session() as session:
        mlist = lists.get_list(session, list_name)
        for address in addresses:
            member = lists.find_member(session, mlist.id, address.strip().lower())
            if member is None:
                raise InvalidInput(f"not a member of {mlist.name}: {address}")
            bounces.enable(member)
            click.echo(f"{member.address}: delivery enabled")


# --- moderation -------------------------------------------------------------------


@lists_group.command("moderators")
@click.argument("list_name", metavar="LIST")
@click.argument("action", type=click.Choice(["list", "add", "remove"]), default="list")
@click.argument("addresses", nargs=-1, metavar="[ADDR]...")
@pass_state
def lists_moderators(state: State, list_name: str, action: str, addresses: tuple[str, ...]) -> None:
    """Show LIST's moderators, or add or remove ADDR... (they get held-post notices)."""
    from mailforum.core import audit, lists, moderation

    if action != "list" and not addresses:
        raise InvalidInput(f"give the address(es) to {action}")
    checked = _checked_addresses(state, addresses, None) if addresses else []
    with state.db().session() as session:
        mlist = lists.get_list(session, list_name)
        for entry in checked:
            if action == "add":
                added = moderation.add_moderator(session, mlist, entry.address)
                if added:
                    audit.by_cli(
                        session,
                        action="moderators.add",
                        mailing_list=mlist,
                        target=entry.address,
                    )
                click.echo(f"{entry.address}: {'added' if added else 'already a moderator'}")
            else:
                removed = moderation.remove_moderator(session, mlist, entry.address)
                if removed:
                    audit.by_cli(
                        session,
                        action="moderators.remove",
                        mailing_list=mlist,
                        target=entry.address,
                    )
                click.echo(f"{entry.address}: {'removed' if removed else 'not a moderator'}")
        if action == "list":
            for address in moderation.moderators(session, mlist.id):
                click.echo(address)


@lists_group.command("owners")
@click.argument("list_name", metavar="LIST")
@click.argument("action", type=click.Choice(["list", "add", "remove"]), default="list")
@click.argument("addresses", nargs=-1, metavar="[ADDR]...")
@pass_state
def lists_owners(state: State, list_name: str, action: str, addresses: tuple[str, ...]) -> None:
    """Show LIST's owners, or add or remove ADDR... (owners run the list from the web and API)."""
    from mailforum.core import audit, lists, roles

    if action != "list" and not addresses:
        raise InvalidInput(f"give the address(es) to {action}")
    checked = [a.address for a in _checked_addresses(state, addresses, None)] if addresses else []
    with state.db().session() as session:
        mlist = lists.get_list(session, list_name)
        if action == "list":
            for address in roles.owners(session, mlist):
                click.echo(address)
            return
        change = roles.add_owners if action == "add" else roles.remove_owners
        done = change(session, mlist, checked)
        for address in done:
            audit.by_cli(
                session,
                action=f"owners.{action}",
                mailing_list=mlist,
                target=address,
            )
    for address in checked:
        if action == "add":
            click.echo(f"{address}: {'added' if address in done else 'already an owner'}")
        else:
            click.echo(f"{address}: {'removed' if address in done else 'not an owner'}")


@cli.command("admins")
@click.argument("action", type=click.Choice(["list", "add", "remove"]), default="list")
@click.argument("addresses", nargs=-1, metavar="[ADDR]...")
@pass_state
def admins_command(state: State, action: str, addresses: tuple[str, ...]) -> None:
    """Show the site admins, or add or remove ADDR... (a site admin runs every list)."""
    from mailforum.core import audit, roles

    if action != "list" and not addresses:
        raise InvalidInput(f"give the address(es) to {action}")
    checked = [a.address for a in _checked_addresses(state, addresses, None)] if addresses else []
    with state.db().session() as session:
        if action == "list":
            for address in roles.admins(session):
                click.echo(address)
            return
        change = roles.add_admins if action == "add" else roles.remove_admins
        done = change(session, checked)
        for address in done:
            audit.by_cli(session, action=f"admins.{action}", target=address)
    for address in checked:
        if action == "add":
            click.echo(f"{address}: {'added' if address in done else 'already an admin'}")
        else:
            click.echo(f"{address}: {'removed' if address in done else 'not an admin'}")


@cli.command("audit")
@click.option("--list", "list_name", metavar="LIST", help="Only the changes to LIST.")
@click.option("--limit", default=50, show_default=True, type=click.IntRange(1, 10_000), help="How many.")
@click.option("--actor", default=None, help="Only changes by ACTOR (cli, api:TOKEN, an address).")
@click.option("--action", default=None, help="Only this action (members.add), or a group (members).")
@click.option(
    "--since", default=None, metavar="WHEN", help="Only changes from WHEN on (ISO 8601; UTC if no offset)."
)
@json_option
@pass_state
def audit_command(
    state: State,
    list_name: str | None,
    limit: int,
    actor: str | None,
    action: str | None,
    since: str | None,
    as_json: bool,
) -> None:
    """Show the audit log, newest first: who changed what, when and from where."""
    from mailforum.core import audit, lists

    when = audit.parse_since(since) if since is not None else None
    with state.db().read_session() as session:
        mlist = lists.get_list(session, list_name) if list_name else None
        found = audit.entries(
            session, mailing_list=mlist, limit=limit, actor=actor, action=action, since=when
        )
        rows: list[Row] = [
            (
                {
                    "id": e.id,
                    "at": e.at,
                    "actor": e.actor,
                    "origin": e.origin,
                    "action": e.action,
                    "target": e.target,
                    "detail": e.detail,
                },
                [
                    _when(e.at),
                    e.actor,
                    e.origin,
                    e.action,
                    e.target,
                    json.dumps(e.detail, ensure_ascii=False, sort_keys=True),
                ],
            )
            for e in found
        ]
    print_rows(("at", "actor", "origin", "action", "target", "detail"), rows, as_json)


@cli.group(name="held")
def held_group() -> None:
    """Posts held for a moderator: list them, approve, reject or discard."""


@held_group.command("list")
@click.option("--list", "list_name", default=None, help="Only this list.")
@pass_state
def held_list(state: State, list_name: str | None) -> None:
    """Print held posts: id, list, author, subject, why held."""
    from mailforum.core import lists, moderation

    with state.db().read_session() as session:
        mlist = lists.get_list(session, list_name) if list_name else None
        for held in moderation.held_posts(session, mlist):
            click.echo(f"{held.id}\t{held.list_name}\t{held.author}\t{held.subject}\t{held.reason}")


def _decide(
    state: State, post_ids: tuple[int, ...], action: str, reason: str = "", allow: bool = False
) -> None:
    from mailforum.core import moderation
    from mailforum.db.models import utcnow
    from mailforum.db.queries import list_by_id

    with state.db().session() as session:
        for post_id in post_ids:
            post = moderation.held_post(session, post_id)
            if post is None:
                raise InvalidInput(f"post {post_id} is not held")
            mlist = list_by_id(session, post.list_id)
            click.echo(
                moderation.act(
                    session,
                    state.config,
                    mlist,
                    post,
                    moderation.ACTIONS[action],
                    utcnow(),
                    reason=reason,
                    allow_sender=allow,
                )
            )


@held_group.command("approve")
@click.argument("post_ids", nargs=-1, type=ROW_ID, required=True, metavar="ID...")
@click.option("--allow-sender", is_flag=True, help="Let a non-member author post from now on.")
@pass_state
def held_approve(state: State, post_ids: tuple[int, ...], allow_sender: bool) -> None:
    """Publish held posts ID... and send them to the members."""
    _decide(state, post_ids, "approve", allow=allow_sender)


@held_group.command("reject")
@click.argument("post_ids", nargs=-1, type=ROW_ID, required=True, metavar="ID...")
@click.option("--reason", default="", help="Told to the author, if their mail was authenticated.")
@pass_state
def held_reject(state: State, post_ids: tuple[int, ...], reason: str) -> None:
    """Remove held posts ID...; an authenticated author is told why (never a forged one)."""
    _decide(state, post_ids, "reject", reason=reason)


@held_group.command("discard")
@click.argument("post_ids", nargs=-1, type=ROW_ID, required=True, metavar="ID...")
@pass_state
def held_discard(state: State, post_ids: tuple[int, ...]) -> None:
    """Remove held posts ID... silently (the raw mail stays in the spool)."""
    _decide(state, post_ids, "discard")


# --- archive ----------------------------------------------------------------------


@cli.command("import-mbox")
@click.argument("path", type=click.Path(dir_okay=False))
@click.option("--list", "list_name", required=True, metavar="NAME", help="The list to import into.")
@click.option(
    "--dry-run", is_flag=True, help="Store nothing; print the topics the import would create, one per line."
)
@pass_state
def import_mbox(state: State, path: str, list_name: str, dry_run: bool) -> None:
    """Import an mbox archive into a list, threading it as live mail.

    Safe to run twice: messages already stored are recognised and skipped. Messages
    that cannot be processed are parked in the spool (see `mailforum spool list`).

    With --dry-run the archive is threaded in a scratch database and each topic it
    would create is printed as "POSTS<TAB>SUBJECT" (or "POSTS<TAB>SUBJECT<TAB>joins
    topic N" when it continues a topic the list already has); nothing is stored.
    """
    import mailbox
    from pathlib import Path

    from mailforum.core import archive, lists

    if not Path(path).is_file():
        raise InvalidInput(f"{path}: no such file")
    db = state.db()
    with db.read_session() as session:
        mlist = lists.get_list(session, list_name)
    if dry_run:
        box = mailbox.mbox(path, create=False)
        try:
            _dry_run_import(state, db, mlist, box)
        finally:
            box.close()
        return
    with archive.Mbox(path) as entries:  # mailbox.mbox's split, in one scan of the mapped file
        keys = archive.written_order(range(len(entries)), (entries[k] for k in range(len(entries))))
        with click.progressbar(
            length=len(keys), label=f"importing into {mlist.name}", file=sys.stderr
        ) as bar:
            report = archive.import_messages(
                db,
                state.config,
                mlist,
                (archive.unquote_mbox(entries[k]) for k in keys),
                on_progress=bar.update,
            )
    click.echo(f"imported {report.posts} post(s); {report.duplicates} already stored; {report.failed} failed")
    for error in report.errors[:10]:
        click.echo(f"failed: {error}", err=True)
    if report.failed:
        sys.exit(3)


def _in_written_order(box: mailbox.mbox) -> list[Any]:
    """The mbox's keys in the order its messages were written, ties in file order.

    The order is archive.archive_date's: the Date, else the From_ line, else Received.

    Archives are often concatenated out of order; threading them as they were written
    lets parents come before replies (placeholders cover the rest).
    """
    from mailforum.core import archive

    keys = box.keys()
    return archive.written_order(keys, (box.get_bytes(k, from_=True) for k in keys))


def _dry_run_import(state: State, db: Database, mlist: MailingList, box: mailbox.mbox) -> None:
    from mailforum.core.rethread import dry_run_import

    keys = _in_written_order(box)
    plan = dry_run_import(db, state.config, mlist, (box.get_bytes(k, from_=True) for k in keys))
    joining = 0
    for topic in plan.topics:
        subject = " ".join(topic.subject.split()) or "(no subject)"
        if topic.joins is None:
            click.echo(f"{topic.posts}\t{subject}")
        else:
            joining += 1
            click.echo(f"{topic.posts}\t{subject}\tjoins topic {topic.joins}")
    report = plan.report
    click.echo(
        f"dry run: {len(keys)} message(s) would make {len(plan.topics) - joining} new topic(s)"
        f" and continue {joining} existing; {report.duplicates} duplicate(s); {report.failed} unprocessable",
        err=True,
    )


@cli.command()
@click.option("--list", "list_name", required=True, metavar="NAME", help="The list to rethread.")
@click.option("--dry-run", is_flag=True, help="Report what would move; change nothing.")
@pass_state
def rethread(state: State, list_name: str, dry_run: bool) -> None:
    """Rebuild LIST's topics from the stored raw messages with the current threading rules.

    Prints one line per post that moves ("moved MESSAGE-ID: topic OLD -> NEW"), then a
    summary. Topic ids are kept where possible; an emptied topic forwards to the one
    that took its posts. Safe while `serve` runs: mail arriving meanwhile stays put.
    """
    from mailforum.core.rethread import rethread as run

    report = run(state.db(), state.config, list_name, dry_run=dry_run)
    for mid, old, new in report.moved:
        new_text = str(new) if new > 0 else "(new)"
        click.echo(f"{'would move' if dry_run else 'moved'} {mid}: topic {old} -> {new_text}")
    click.echo(
        f"{list_name}: {report.posts} post(s) rethreaded; {len(report.moved)} moved to another topic, "
        f"{report.reparented} with a new parent; topics {report.topics_before} -> {report.topics_after} "
        f"({report.new_topics} new, {report.emptied_topics} emptied)"
        + (f"; {report.arrived_during} arrived meanwhile and stayed" if report.arrived_during else "")
        + (f"; {report.failed} unprocessable" if report.failed else "")
        + ("; dry run, nothing changed" if dry_run else "")
    )


@cli.command()
@click.option("--list", "list_name", required=True, metavar="NAME", help="The list to export.")
@click.option("--format", "fmt", type=click.Choice(["jsonl", "mbox"]), default="jsonl", show_default=True)
@click.option("--output", "-o", metavar="FILE", help="Write to FILE instead of standard output.")
@pass_state
def export(state: State, list_name: str, fmt: str, output: str | None) -> None:
    """Export a list's posts: JSON lines (one object per post) or an mbox of the raw messages.

    JSON fields: id, message_id, topic_id, tags (the topic's), parent_message_id, list, author,
    author_name, title, subject, date, received_at, status, attachments, text.
    """
    from mailforum.core import archive, lists

    db = state.db()
    with db.read_session() as session:
        mlist = lists.get_list(session, list_name)
    out = open(output, "wb") if output else sys.stdout.buffer  # noqa: SIM115
    try:
        if fmt == "jsonl":
            for line in archive.export_jsonl(db, mlist):
                out.write(line.encode("utf-8") + b"\n")
        else:
            for chunk in archive.export_mbox(db, mlist):
                out.write(chunk)
        out.flush()
    finally:
        if output:
            out.close()


# --- spool -----------------------------------------------------------------------------


@cli.group(name="spool")
def spool_group() -> None:
    """Inspect accepted messages and retry the ones whose processing failed."""


@spool_group.command("list")
@click.option(
    "--state",
    "state_filter",
    type=click.Choice([*(s.value for s in SpoolState), "all"]),
    default="failed",
    show_default=True,
    help="Which entries to show.",
)
@click.option("--limit", default=100, show_default=True, help="Show at most this many (newest first).")
@json_option
@pass_state
def spool_list(state: State, state_filter: str, limit: int, as_json: bool) -> None:
    """List spool entries: id, state, attempts, received, sender, recipients, error."""
    from mailforum.db import spool

    with state.db().read_session() as session:
        entries = spool.newest(session, None if state_filter == "all" else state_filter, limit)
        counts = spool.counts(session)
    rows: list[Row] = []
    for e in entries:
        error = (e.error or e.outcome or "").strip().splitlines()
        obj = {
            "id": e.id,
            "state": e.state,
            "attempts": e.attempts,
            "received_at": e.received_at,
            "mail_from": e.mail_from or "",
            "rcpt_tos": list(e.rcpt_tos),
            "error": error[-1] if error else "",
        }
        cells = [
            str(e.id),
            e.state,
            str(e.attempts),
            _when(e.received_at),
            e.mail_from or "<>",
            ",".join(e.rcpt_tos),
            error[-1] if error else "",
        ]
        rows.append((obj, cells))
    print_rows(("ID", "STATE", "ATTEMPTS", "RECEIVED", "SENDER", "RECIPIENTS", "ERROR"), rows, as_json)
    summary = ", ".join(f"{n} {s}" for s, n in sorted(counts.items())) or "empty"
    click.echo(f"spool: {summary}", err=True)


@spool_group.command("retry")
@click.argument("ids", nargs=-1, type=ROW_ID)
@click.option("--all", "retry_all", is_flag=True, help="Retry every failed entry.")
@click.option("--now", "process_now", is_flag=True, help="Process them here and now, not by the server.")
@pass_state
def spool_retry(state: State, ids: tuple[int, ...], retry_all: bool, process_now: bool) -> None:
    """Send failed entries (IDS, or --all) through processing again."""
    from mailforum.db import spool
    from mailforum.db.models import utcnow

    if not ids and not retry_all:
        raise InvalidInput("name the entries to retry (IDS) or use --all")
    db = state.db()
    with db.session() as session:
        count = spool.retry(session, None if retry_all else ids, utcnow())
    if ids and count < len(ids):
        click.echo(f"{len(ids) - count} of the given entries were not in state 'failed'", err=True)
    click.echo(f"{count} entr{'y' if count == 1 else 'ies'} queued for processing")
    if process_now and count:
        from mailforum.runners.worker import SpoolProcessor

        processed = SpoolProcessor(db, state.config).drain()
        click.echo(f"processed {processed}")


@spool_group.command("show")
@click.argument("entry_id", type=ROW_ID)
@click.option("--raw", is_flag=True, help="Print the raw message instead of the summary.")
@pass_state
def spool_show(state: State, entry_id: int, raw: bool) -> None:
    """Show one spool entry: envelope, state, outcome and the full error."""
    from mailforum.db import spool

    with state.db().read_session() as session:
        entry = spool.entry_with_raw(session, entry_id)
        if entry is None:
            raise NotFound(f"no spool entry {entry_id}")
    if raw:
        sys.stdout.buffer.write(entry.raw)
        return
    for key in (
        "id",
        "state",
        "attempts",
        "received_at",
        "protocol",
        "peer",
        "mail_from",
        "rcpt_tos",
        "size",
    ):
        click.echo(f"{key + ':':13} {getattr(entry, key)}")
    click.echo(f"outcome:      {entry.outcome or ''}")
    if entry.error:
        click.echo("error:\n" + entry.error)


# --- digests ---------------------------------------------------------------------------


@cli.group(name="digest")
def digest_group() -> None:
    """Daily and weekly digests (`serve` queues them at [digest] hour), standard or MIME per list."""


@digest_group.command("send")
@click.option("--list", "list_name", default=None, help="Only this list (default: every list).")
@click.option("--member", "address", default=None, help="Only this member's digest.")
@click.option("--dry-run", is_flag=True, help="Print the digests that would be sent; change nothing.")
@pass_state
def digest_send(state: State, list_name: str | None, address: str | None, dry_run: bool) -> None:
    """Queue every due digest now: each member gets what is new since their own last digest.

    A second run with nothing new queues nothing. `serve` (or `deliver --once`) sends them.
    """
    from mailforum.core import digest_schedule
    from mailforum.core.digest_render import preview_digests
    from mailforum.db.models import utcnow
    from mailforum.render import Renderer

    db = state.db()
    names = [list_name] if list_name else digest_schedule.list_names(db)
    with db.read_session() as session:
        for name in names:
            if lists_by_name(session, name) is None:
                raise NotFound(f"no list named {name!r}")
    now = utcnow()
    if dry_run:
        renderer = Renderer(state.config.outbound.templates or None)
        shown = 0
        with db.read_session() as session:
            for name in names:
                mlist = lists_by_name(session, name)
                assert mlist is not None
                for item in preview_digests(session, state.config, renderer, mlist, now, address):
                    click.echo(f"To: {item.address}\nSubject: {item.subject}\nFormat: {item.format}\n")
                    click.echo(item.text)
                    click.echo("=" * 72)
                    shown += 1
        click.echo(f"{shown} digest{'s' if shown != 1 else ''} would be queued (dry run)")
        return
    total = 0
    for name in names:
        result = digest_schedule.run_list(db, state.config, name, now, address=address)
        total += result.queued
        line = f"{name}: {result.queued} digest{'s' if result.queued != 1 else ''} queued"
        if result.paused:
            members = f"{result.paused} member{'s' if result.paused != 1 else ''}"
            line += f" ({members} paused by bounces passed over)"
        click.echo(line)
    if not total:
        click.echo("nothing new: no digest queued")


@digest_group.command("schedule")
@click.argument("list_name", metavar="LIST")
@click.option("--hour", type=click.IntRange(0, 23), default=None, help="Hour of the day (0-23) for LIST.")
@click.option("--timezone", "zone", default=None, help="Time zone (IANA name) for LIST, e.g. Europe/Berlin.")
@click.option("--default", "use_default", is_flag=True, help="Use [digest] hour and timezone again.")
@pass_state
def digest_schedule(
    state: State, list_name: str, hour: int | None, zone: str | None, use_default: bool
) -> None:
    """Set when LIST's digests go out (a running `serve` picks it up within the hour)."""
    from mailforum.core import audit, lists
    from mailforum.core.digest_schedule import check_zone, set_list_digest

    if zone is not None:
        check_zone(zone)
    if hour is None and zone is None and not use_default:
        raise InvalidInput("nothing to change: give --hour, --timezone or --default")
    with state.db().session() as session:
        mlist = lists.get_list(session, list_name)
        changed = set_list_digest(
            mlist,
            hour="" if use_default and hour is None else hour,
            timezone="" if use_default and zone is None else zone,
        )
        if changed:
            audit.by_cli(
                session,
                action="list.digest",
                mailing_list=mlist,
                target=mlist.name,
                detail=changed,
            )
        cfg = state.config.digest
        shown_hour = cfg.hour if mlist.digest_hour is None else mlist.digest_hour
        click.echo(f"{mlist.name}: digests at {shown_hour:02d}:00 {mlist.digest_timezone or cfg.timezone}")


_FORMATS = {
    DigestFormat.STANDARD.value: "text and HTML in one mail, each post trimmed, a reply address under each",
    DigestFormat.MIME.value: "RFC 1153: contents, then every post whole as an attached message/rfc822",
}


@digest_group.command("format", short_help="Show or set LIST's digest format: standard or mime.")
@click.argument("list_name", metavar="LIST")
@click.argument("value", metavar="[mime|standard]", required=False)
@pass_state
def digest_format(state: State, list_name: str, value: str | None) -> None:
    """Show or set how LIST's digests are built; without a value, show it.

    \b
    standard  one multipart/alternative mail (text and HTML): a table of
              contents, each post's new text (quotes and signatures trimmed,
              long posts cut with a link), a reply address under each post.
    mime      for old-school readers (RFC 1153 / RFC 2046): multipart/mixed
              of a text table of contents (with the reply addresses and
              links), a multipart/digest with every post whole as a
              message/rfc822 part (its own Message-ID, threading headers and
              a Reply-To that lands the answer under that post; attachments
              listed with their links), and a footer.

    It applies to every member of LIST from the next digest on (a running `serve`
    needs no restart).
    """
    from mailforum.core import audit, lists
    from mailforum.core.digest_schedule import check_format, set_list_digest

    if value is not None:
        check_format(value)
    with state.db().session() as session:
        mlist = lists.get_list(session, list_name)
        changed = set_list_digest(mlist, digest_format=value)
        if changed:
            audit.by_cli(
                session,
                action="list.digest",
                mailing_list=mlist,
                target=mlist.name,
                detail=changed,
            )
        shown = mlist.digest_format
        click.echo(f"{mlist.name}: digest format {shown} ({_FORMATS.get(shown, 'unknown')})")


@lists_group.command("templates")
@click.argument("list_name", metavar="LIST")
@click.argument("action", type=click.Choice(["list", "show", "set", "reset"]), default="list")
@click.argument("name", required=False, metavar="[NAME]")
@click.argument("file", required=False, type=click.File("rb"), metavar="[FILE]")
@pass_state
def lists_templates(state: State, list_name: str, action: str, name: str | None, file: Any) -> None:
    """LIST's own mail templates: list them, show NAME (the list's or the built-in one), set
    NAME from FILE ('-' for standard input), or reset NAME to the built-in one.

    The names are those of templates/ for mail (notification/, digest/, command/,
    _partials/). A template runs in Jinja2's sandbox; one that does not compile is
    refused with its line; one that fails when a mail is rendered is logged and the
    built-in one is used. The owner pages edit the same templates."""
    from mailforum.core import audit, list_templates, lists

    if action != "list" and not name:
        raise InvalidInput(f"give the template's NAME to {action}")
    if action == "set" and file is None:
        raise InvalidInput("give the FILE to read the template from ('-' for standard input)")
    source = None
    if action == "set":
        data = file.read(MAX_TEMPLATE_READ)
        if len(data) >= MAX_TEMPLATE_READ:
            raise InvalidInput(
                f"{file.name}: over {MAX_TEMPLATE_READ - 1} bytes, the most a template may have"
            )
        try:
            source = data.decode("utf-8")
        except UnicodeDecodeError:
            raise InvalidInput(f"{file.name}: not UTF-8 text") from None
    with state.db().session() as session:
        mlist = lists.get_list(session, list_name)
        if action == "list":
            for item in list_templates.templates(session, mlist):
                own = f"own (by {item.updated_by or 'cli'})" if item.source is not None else "built-in"
                click.echo(f"{item.name}  {own}")
        elif action == "show":
            assert name is not None
            text = list_templates.stored(session, mlist, name)
            click.echo(list_templates.builtin_source(name) if text is None else text, nl=False)
        elif action == "set":
            assert name is not None and source is not None
            changed = list_templates.set_template(session, mlist, name, source, "cli")
            if changed:
                audit.by_cli(
                    session,
                    action="templates.set",
                    mailing_list=mlist,
                    target=name,
                    detail={"bytes": len(source.encode())},
                )
            click.echo(f"{mlist.name}: {name} {'set' if changed else 'unchanged'}")
        else:
            assert name is not None
            done = list_templates.reset_template(session, mlist, name)
            if done:
                audit.by_cli(
                    session,
                    action="templates.reset",
                    mailing_list=mlist,
                    target=name,
                )
            click.echo(
                f"{mlist.name}: {name} {'reset to the built-in one' if done else 'was the built-in one'}"
            )


MAX_TEMPLATE_READ = 64 * 1024 + 1  # one byte over render.MAX_SOURCE, so the check can name the size


# --- tags and moderators' tools ------------------------------------------------


@lists_group.command("tags")
@click.argument("list_name", metavar="LIST")
@click.argument("action", type=click.Choice(["list", "add", "remove"]), default="list")
@click.argument("names", nargs=-1, metavar="[TAG]...")
@pass_state
def lists_tags(state: State, list_name: str, action: str, names: tuple[str, ...]) -> None:
    """Show LIST's tag vocabulary, or add or remove TAG... (letters, digits, '-', '_').

    A new topic takes the vocabulary's tags named as [tag] in its subject or #tag on
    its first body line; members follow or mute a tag with `watch #TAG` / `mute #TAG`."""
    from mailforum.core import lists, topics
    from mailforum.db.models import utcnow

    if action != "list" and not names:
        raise InvalidInput(f"give the tag(s) to {action}")
    with state.db().session() as session:
        mlist = lists.get_list(session, list_name)
        actor = topics.Actor()
        if action == "add":
            wanted = [topics.tag_name(n) for n in names]
            added = topics.add_tags(session, mlist, wanted, utcnow())
            for name in wanted:
                click.echo(f"{name}: {'added' if name in added else 'already a tag'}")
            if added:
                topics.audit(session, actor, "tags.add", mlist, ",".join(added)[:200], {"tags": added})
        elif action == "remove":
            wanted = [topics.tag_name(n) for n in names]
            removed = topics.remove_tags(session, mlist, wanted)
            for name in wanted:
                click.echo(f"{name}: {'removed' if name in removed else 'not a tag'}")
            if removed:
                topics.audit(session, actor, "tags.remove", mlist, ",".join(removed)[:200], {"tags": removed})
        else:
            for tag in topics.vocabulary(session, mlist):
                click.echo(tag.name)


@cli.group(name="topics")
def topics_group() -> None:
    """Moderators' tools for published topics: tag, lock, pin, split, merge, move, retitle.

    TOPIC is the number in the topic's web address (/lists/LIST/topics/TOPIC); every
    change is written to the audit log. Split, merge and retitle survive `rethread`."""


@topics_group.command("tag")
@click.argument("list_name", metavar="LIST")
@click.argument("topic_id", type=ROW_ID, metavar="TOPIC")
@click.argument("names", nargs=-1, required=True, metavar="TAG...")
@click.option("--remove", is_flag=True, help="Take the tags off instead.")
@pass_state
def topics_tag(state: State, list_name: str, topic_id: int, names: tuple[str, ...], remove: bool) -> None:
    """File TOPIC of LIST under TAG... (words of the list's vocabulary), or --remove them."""
    from mailforum.core import lists, topics

    with state.db().session() as session:
        mlist = lists.get_list(session, list_name)
        topic, _ = topics.set_tags_by_hand(session, mlist, topic_id, names, topics.Actor(), remove)
        now = topics.tags_of(session, [topic.id]).get(topic.id, [])
        click.echo(f"topic {topic.id}: tags {', '.join(now) or '(none)'}")


PAST = {"lock": "locked", "unlock": "unlocked", "pin": "pinned", "unpin": "unpinned"}


def _marker(what: str, help_text: str) -> None:
    @topics_group.command(what, help=help_text)
    @click.argument("list_name", metavar="LIST")
    @click.argument("topic_id", type=ROW_ID, metavar="TOPIC")
    @pass_state
    def command(state: State, list_name: str, topic_id: int) -> None:
        from mailforum.core import lists, topics
        from mailforum.db.models import utcnow

        with state.db().session() as session:
            mlist = lists.get_list(session, list_name)
            topic = topics.mark(session, mlist, topic_id, what, topics.Actor(), utcnow())
            click.echo(f"topic {topic.id}: {PAST[what]}")


_marker("lock", "Lock TOPIC of LIST: replies to it are held for a moderator (rule topic-locked).")
_marker("unlock", "Unlock TOPIC of LIST: replies are published again.")
_marker("pin", "Pin TOPIC of LIST: it is listed first on the list's page.")
_marker("unpin", "Unpin TOPIC of LIST.")


@topics_group.command("split")
@click.argument("list_name", metavar="LIST")
@click.argument("post_id", type=ROW_ID, metavar="POST")
@pass_state
def topics_split(state: State, list_name: str, post_id: int) -> None:
    """POST of LIST and its replies become a new topic (export's `id`, the post's web address)."""
    from mailforum.core import lists, topics
    from mailforum.db.models import utcnow

    with state.db().session() as session:
        mlist = lists.get_list(session, list_name)
        topic = topics.split(session, mlist, post_id, topics.Actor(), utcnow())
        click.echo(f"post {post_id} and its replies are topic {topic.id} now ({topic.post_count} post(s))")


@topics_group.command("merge")
@click.argument("list_name", metavar="LIST")
@click.argument("topic_id", type=ROW_ID, metavar="TOPIC")
@click.argument("into_id", type=ROW_ID, metavar="INTO")
@pass_state
def topics_merge(state: State, list_name: str, topic_id: int, into_id: int) -> None:
    """Merge TOPIC of LIST into topic INTO; links to TOPIC lead to INTO."""
    from mailforum.core import lists, topics
    from mailforum.db.models import utcnow

    with state.db().session() as session:
        mlist = lists.get_list(session, list_name)
        topic = topics.merge(session, mlist, topic_id, into_id, topics.Actor(), utcnow())
        click.echo(f"topic {topic_id} merged into topic {topic.id} ({topic.post_count} post(s))")


@topics_group.command("move")
@click.argument("list_name", metavar="LIST")
@click.argument("topic_id", type=ROW_ID, metavar="TOPIC")
@click.argument("other_name", metavar="OTHERLIST")
@pass_state
def topics_move(state: State, list_name: str, topic_id: int, other_name: str) -> None:
    """Move TOPIC of LIST to OTHERLIST (its tags map to OTHERLIST's words of the same name)."""
    from mailforum.core import lists, topics
    from mailforum.db.models import utcnow

    with state.db().session() as session:
        mlist = lists.get_list(session, list_name)
        other = lists.get_list(session, other_name)
        topic = topics.move(session, mlist, topic_id, other, topics.Actor(), utcnow())
        click.echo(f"topic {topic.id} moved to {other.name}")


@topics_group.command("retitle")
@click.argument("list_name", metavar="LIST")
@click.argument("topic_id", type=ROW_ID, metavar="TOPIC")
@click.argument("title", metavar="TITLE")
@pass_state
def topics_retitle(state: State, list_name: str, topic_id: int, title: str) -> None:
    """Give TOPIC of LIST the title TITLE (the posts keep their subjects)."""
    from mailforum.core import lists, topics
    from mailforum.db.models import utcnow

    with state.db().session() as session:
        mlist = lists.get_list(session, list_name)
        topic = topics.retitle(session, mlist, topic_id, title, topics.Actor(), utcnow())
        click.echo(f"topic {topic.id}: {topic.subject}")


@cli.group(name="posts")
def posts_group() -> None:
    """Moderators' tools for published posts."""


@posts_group.command("remove")
@click.argument("list_name", metavar="LIST")
@click.argument("post_id", type=ROW_ID, metavar="POST")
@click.option("--reason", default="", help="Why (kept in the audit log and with the post).")
@pass_state
def posts_remove(state: State, list_name: str, post_id: int, reason: str) -> None:
    """Remove POST of LIST: its thread shows "removed by a moderator"; copies sent stay sent."""
    from mailforum.core import lists, topics
    from mailforum.db.models import utcnow

    with state.db().session() as session:
        mlist = lists.get_list(session, list_name)
        post = topics.remove_post(session, mlist, post_id, reason, topics.Actor(), utcnow())
        click.echo(f"post {post.id} removed")


def lists_by_name(session: Any, name: str) -> Any:
    from mailforum.core.lists import list_by_name

    return list_by_name(session, name)


# --- API tokens and bans -------------------------------------------------------------------


@cli.group(name="api-tokens")
def api_tokens_group() -> None:
    """Bearer tokens of the JSON API under /api/v1: create, list, revoke.

    Scopes nest: read (GET) < write (members, held posts, bans) < admin (list settings,
    and creating lists with a token not bound to one list)."""


@api_tokens_group.command("create")
@click.option(
    "--name", required=True, help="A name for the token (letters, digits, . _ -); shown in the audit log."
)
@click.option(
    "--list", "list_name", default=None, metavar="LIST", help="Only this list; others are 404 to it."
)
@click.option(
    "--scope",
    type=click.Choice(["read", "write", "admin"]),
    default="read",
    show_default=True,
    help="What the token may do.",
)
@pass_state
def api_tokens_create(state: State, name: str, list_name: str | None, scope: str) -> None:
    """Create a token and print it, once, as the last line (only a hash of it is stored)."""
    from mailforum.core import api_tokens, audit, lists

    with state.db().session() as session:
        mlist = lists.get_list(session, list_name) if list_name else None
        token = api_tokens.create(session, name, scope, mlist)
        audit.by_cli(
            session,
            action="api-token.create",
            mailing_list=mlist,
            target=name,
            detail={"scope": scope},
        )
    where = f"list {mlist.name}" if mlist else "every list"
    click.echo(f"token {name}: scope {scope}, {where}; shown once, keep it secret:")
    click.echo(token)


@api_tokens_group.command("list")
@json_option
@pass_state
def api_tokens_list(state: State, as_json: bool) -> None:
    """Print the tokens: name, scope, list, created (never the token itself)."""
    from mailforum.core import api_tokens

    with state.db().read_session() as session:
        found = api_tokens.tokens(session)
    rows: list[Row] = [
        (
            {"name": t.name, "scope": t.scope, "list": list_name, "created": t.created_at},
            [t.name, t.scope, list_name or "*", _when(t.created_at)],
        )
        for t, list_name in found
    ]
    print_rows(("NAME", "SCOPE", "LIST", "CREATED"), rows, as_json)


@api_tokens_group.command("revoke")
@click.argument("name")
@pass_state
def api_tokens_revoke(state: State, name: str) -> None:
    """Revoke the token NAME: its next request is refused (401)."""
    from mailforum.core import api_tokens, audit

    with state.db().session() as session:
        if not api_tokens.revoke(session, name):
            raise NotFound(f"no token named {name!r} (see `mailforum api-tokens list`)")
        audit.by_cli(session, action="api-token.revoke", target=name)
    click.echo(f"token {name} revoked")


@cli.command("bans")
@click.argument("list_name", metavar="LIST")
@click.argument("action", type=click.Choice(["list", "add", "remove"]), default="list")
@click.argument("patterns", nargs=-1, metavar="[PATTERN]...")
@pass_state
def bans_command(state: State, list_name: str, action: str, patterns: tuple[str, ...]) -> None:
    """Show LIST's banned senders, or ban or lift PATTERN...; LIST '*' means every list.

    A PATTERN is an address (ann@example.com), a domain with its subdomains (@example.com)
    or a regular expression over the whole address (^.*@spam\\.example$). Posts from a
    banned sender are discarded (kept in the spool with the reason) and joins refused."""
    from mailforum.core import audit, bans, lists

    if action != "list" and not patterns:
        raise InvalidInput(f"give the pattern(s) to {action}")
    with state.db().session() as session:
        mlist = None if list_name == "*" else lists.get_list(session, list_name)
        if action == "list":
            for pattern in bans.patterns(session, mlist):
                click.echo(pattern)
            return
        change = bans.add if action == "add" else bans.remove
        changed = change(session, mlist, list(patterns))
        for pattern in changed:
            audit.by_cli(
                session,
                action=f"bans.{action}",
                mailing_list=mlist,
                target=pattern,
            )
    done = "banned" if action == "add" else "lifted"
    where = mlist.name if mlist else "every list"
    click.echo(f"{done} {len(changed)} pattern(s) on {where}")
    for pattern in changed:
        click.echo(f"  {pattern}")


# --- entry point -------------------------------------------------------------------------


def main(argv: list[str] | None = None) -> None:
    gc.disable()  # until the command has loaded its code: see started()
    try:
        cli.main(args=argv, prog_name="mailforum", standalone_mode=False)
    except click.exceptions.Abort:
        click.echo("aborted", err=True)
        sys.exit(130)
    except click.ClickException as exc:
        exc.show()
        sys.exit(exc.exit_code)
    except MailforumError as exc:
        from mailforum.runners import supervisor

        if not supervisor.report_failure(str(exc)):  # a child: its supervisor prints it
            click.echo(f"mailforum: error: {exc}", err=True)
        sys.exit(1)
    except (BrokenPipeError, KeyboardInterrupt):
        sys.exit(130)
    except Exception as exc:
        if not _is_database_error(exc):
            raise
        detail = str(getattr(exc, "orig", None) or exc).strip().splitlines()
        click.echo(f"mailforum: database error: {detail[0] if detail else type(exc).__name__}", err=True)
        sys.exit(1)


def _is_database_error(exc: Exception) -> bool:
    """A SQLAlchemy error; a command that never loaded SQLAlchemy cannot have raised one."""
    sqlalchemy_exc = sys.modules.get("sqlalchemy.exc")
    return sqlalchemy_exc is not None and isinstance(exc, sqlalchemy_exc.SQLAlchemyError)
