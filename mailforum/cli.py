"""The ``mailforum`` command line.

Every error a user can cause ends in one line on stderr and a non-zero exit:
``MailforumError`` subclasses carry their message; database driver errors are
turned into one line naming the database.
"""

from __future__ import annotations

import asyncio
import logging
import mailbox
import sys
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any, TypeVar

import click
import sqlalchemy.exc

from mailforum import __version__
from mailforum import config as config_mod
from mailforum.config import Config
from mailforum.core import archive, lists
from mailforum.db import migrate, spool
from mailforum.db.models import DeliveryMode, PostingPolicy, SpoolEntry, SpoolState, Visibility, utcnow
from mailforum.db.session import Database
from mailforum.errors import InvalidInput, MailforumError, NotFound

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
            self._config = config_mod.load(self._config_path)
        return self._config

    def db(self, require_schema: bool = True) -> Database:
        if self._db is None:
            cfg = self.config.database
            self._db = Database(cfg.url, cfg.busy_timeout)
            if require_schema:
                migrate.require_current(self._db)
            else:
                self._db.ping()
        return self._db


pass_state = click.make_pass_decorator(State)


def setup_logging(verbosity: int, default: int = logging.WARNING) -> None:
    level = logging.DEBUG if verbosity > 1 else logging.INFO if verbosity == 1 else default
    logging.basicConfig(
        level=level, format="%(asctime)s %(levelname)s %(name)s: %(message)s", stream=sys.stderr
    )
    # aiosmtpd logs every command at INFO; keep that for -vv.
    logging.getLogger("mail.log").setLevel(logging.DEBUG if verbosity > 1 else logging.WARNING)
    logging.getLogger("alembic").setLevel(logging.INFO if verbosity > 1 else logging.WARNING)


@click.group(context_settings={"help_option_names": ["-h", "--help"], "max_content_width": 100})
@click.option(
    "--config",
    "config_path",
    metavar="FILE",
    envvar=config_mod.ENV_VAR,
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
    setup_logging(verbose, logging.INFO if ctx.invoked_subcommand == "serve" else logging.WARNING)


# --- init and serve -----------------------------------------------------------


@cli.command()
@pass_state
def init(state: State) -> None:
    """Create the database schema, or upgrade it to this version (safe to run again)."""
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
@pass_state
def serve(state: State, no_smtp: bool, no_process: bool, no_delivery: bool, no_web: bool) -> None:
    """Run the server: SMTP and LMTP ingest, the spool processor, outbound delivery and the web archive.

    Listens on [smtp] host:port (SMTP), [smtp] lmtp_port (LMTP) and [web] host:port
    (HTTP). Stops cleanly on SIGTERM or Ctrl-C: new sessions get 421, messages in
    flight are finished.
    """
    from mailforum.app import Switches
    from mailforum.app import serve as run

    asyncio.run(
        run(
            state.config,
            Switches(ingest=not no_smtp, process=not no_process, delivery=not no_delivery, web=not no_web),
        )
    )


# --- outbound ----------------------------------------------------------------------


@cli.command()
@click.option("--once", is_flag=True, help="Send what is due now, then exit (else run until Ctrl-C).")
@pass_state
def deliver(state: State, once: bool) -> None:
    """Send outgoing mail from the outbox through [relay].

    Copies the relay defers (4xx, no connection) stay in the outbox with a retry
    time; `mailforum outbox status` shows them.
    """
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
@pass_state
def outbox_list(state: State, state_filter: str, limit: int) -> None:
    """List outbox rows: id, state, attempts, recipient, next attempt, last reply."""
    from sqlalchemy import select

    from mailforum.db.models import OutboxEntry

    with state.db().read_session() as session:
        stmt = select(OutboxEntry).order_by(OutboxEntry.id.desc()).limit(limit)
        if state_filter != "all":
            stmt = stmt.where(OutboxEntry.state == state_filter)
        for e in session.scalars(stmt):
            click.echo(
                f"{e.id}\t{e.state}\t{e.attempts}\t{e.recipient}\t{e.next_attempt_at:%Y-%m-%d %H:%M:%S}\t"
                f"{(e.last_reply or '').splitlines()[0] if e.last_reply else ''}"
            )


@outbox_group.command("retry")
@click.argument("ids", nargs=-1, type=int)
@click.option("--all", "retry_all", is_flag=True, help="Retry every failed copy.")
@pass_state
def outbox_retry(state: State, ids: tuple[int, ...], retry_all: bool) -> None:
    """Queue failed copies (IDS, or --all) for delivery again."""
    from mailforum.db import outbox

    if not ids and not retry_all:
        raise InvalidInput("name the copies to retry (IDS) or use --all")
    with state.db().session() as session:
        count = outbox.retry(session, None if retry_all else ids, utcnow())
    click.echo(f"{count} cop{'y' if count == 1 else 'ies'} queued for delivery")


@cli.command()
@pass_state
def status(state: State) -> None:
    """Summarise lists, members, held posts, the spool and how senders are checked."""
    from mailforum.core.status import gather

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
    with state.db().session() as session:
        mlist = lists.create_list(
            session, name, title, description, PostingPolicy(policy), Visibility(visibility)
        )
        click.echo(f"created list {mlist.name} <{mlist.name}@{state.config.site.domain}>")


@lists_group.command("list")
@pass_state
def lists_list(state: State) -> None:
    """Print every list name, one per line."""
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
@pass_state
def lists_set(state: State, name: str, visibility: str | None, show_addresses: bool | None) -> None:
    """Change how the web archive shows the list NAME."""
    if visibility is None and show_addresses is None:
        raise InvalidInput("nothing to change: give --visibility or --show-addresses/--hide-addresses")
    with state.db().session() as session:
        mlist = lists.get_list(session, name)
        if visibility is not None:
            mlist.visibility = visibility
        if show_addresses is not None:
            mlist.show_addresses = show_addresses
        shown = "shown" if mlist.show_addresses else "hidden"
        click.echo(f"{mlist.name}: visibility {mlist.visibility}, addresses {shown}")


@lists_group.command("show")
@click.argument("name")
@pass_state
def lists_show(state: State, name: str) -> None:
    """Show a list's settings, addresses and counts."""
    domain = state.config.site.domain
    with state.db().read_session() as session:
        mlist = lists.get_list(session, name)
        stats = lists.list_stats(session, mlist)
    rows = [
        ("name", mlist.name),
        ("title", mlist.display_title),
        ("description", mlist.description),
        ("posting policy", mlist.posting_policy),
        ("visibility", mlist.visibility),
        ("web addresses", "shown" if mlist.show_addresses else "hidden"),
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


def _checked_addresses(args: tuple[str, ...], file: str | None) -> list[lists.Address]:
    checked = [lists.check_address(text, where) for text, where in _read_addresses(args, file)]
    if not checked:
        raise InvalidInput("no addresses given (as arguments, or --file PATH with one per line)")
    return checked


address_file = click.option(
    "--file", "file", metavar="PATH", help="Read addresses from PATH, one per line ('-' for stdin)."
)


@cli.group()
def members() -> None:
    """Add, list and remove members of a list (an operator's direct act: no confirmation mail)."""


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
@pass_state
def members_add(
    state: State, list_name: str, addresses: tuple[str, ...], file: str | None, mode: str
) -> None:
    """Add ADDR... (e.g. 'Ann <ann@example.com>') to LIST. Nothing is added if any address is bad."""
    checked = _checked_addresses(addresses, file)
    with state.db().session() as session:
        mlist = lists.get_list(session, list_name)
        added, existing = lists.add_members(session, mlist, checked, DeliveryMode(mode), utcnow())
    click.echo(
        f"added {added} member(s) to {mlist.name}" + (f"; {existing} already members" if existing else "")
    )


@members.command("list")
@click.argument("list_name", metavar="LIST")
@pass_state
def members_list(state: State, list_name: str) -> None:
    """Print LIST's members, one per line: address, delivery mode, display name."""
    with state.db().read_session() as session:
        mlist = lists.get_list(session, list_name)
        for member in lists.members(session, mlist):
            click.echo("\t".join(x for x in (member.address, member.delivery_mode, member.display_name) if x))


@members.command("remove")
@click.argument("list_name", metavar="LIST")
@click.argument("addresses", nargs=-1, metavar="[ADDR]...")
@address_file
@pass_state
def members_remove(state: State, list_name: str, addresses: tuple[str, ...], file: str | None) -> None:
    """Remove ADDR... from LIST (no goodbye mail)."""
    checked = _checked_addresses(addresses, file)
    with state.db().session() as session:
        mlist = lists.get_list(session, list_name)
        removed, absent = lists.remove_members(session, mlist, checked)
    click.echo(f"removed {removed} member(s) from {mlist.name}")
    for address in absent:
        click.echo(f"not a member: {address}", err=True)


# --- archive ----------------------------------------------------------------------


@cli.command("import-mbox")
@click.argument("path", type=click.Path(dir_okay=False))
@click.option("--list", "list_name", required=True, metavar="NAME", help="The list to import into.")
@pass_state
def import_mbox(state: State, path: str, list_name: str) -> None:
    """Import an mbox archive into a list, threading it as live mail.

    Safe to run twice: messages already stored are recognised and skipped. Messages
    that cannot be processed are parked in the spool (see `mailforum spool list`).
    """
    if not Path(path).is_file():
        raise InvalidInput(f"{path}: no such file")
    db = state.db()
    with db.read_session() as session:
        mlist = lists.get_list(session, list_name)
    box = mailbox.mbox(path, create=False)
    try:
        keys = box.keys()
        with click.progressbar(
            length=len(keys), label=f"importing into {mlist.name}", file=sys.stderr
        ) as bar:
            report = archive.import_messages(
                db,
                state.config,
                mlist,
                (archive.unquote_mbox(box.get_bytes(k)) for k in keys),
                on_progress=bar.update,
            )
    finally:
        box.close()
    click.echo(f"imported {report.posts} post(s); {report.duplicates} already stored; {report.failed} failed")
    for error in report.errors[:10]:
        click.echo(f"failed: {error}", err=True)
    if report.failed:
        sys.exit(3)


@cli.command()
@click.option("--list", "list_name", required=True, metavar="NAME", help="The list to export.")
@click.option("--format", "fmt", type=click.Choice(["jsonl", "mbox"]), default="jsonl", show_default=True)
@click.option("--output", "-o", metavar="FILE", help="Write to FILE instead of standard output.")
@pass_state
def export(state: State, list_name: str, fmt: str, output: str | None) -> None:
    """Export a list's posts: JSON lines (one object per post) or an mbox of the raw messages.

    JSON fields: message_id, topic_id, parent_message_id, list, author, author_name,
    subject, date, received_at, status, attachments, text.
    """
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
@pass_state
def spool_list(state: State, state_filter: str, limit: int) -> None:
    """List spool entries: id, state, attempts, received, sender, recipients, error."""
    from sqlalchemy import select

    with state.db().read_session() as session:
        stmt = select(SpoolEntry).order_by(SpoolEntry.id.desc()).limit(limit)
        if state_filter != "all":
            stmt = stmt.where(SpoolEntry.state == state_filter)
        entries = list(session.scalars(stmt))
        counts = spool.counts(session)
    for e in entries:
        error = (e.error or e.outcome or "").strip().splitlines()
        click.echo(
            f"{e.id}\t{e.state}\t{e.attempts}\t{e.received_at:%Y-%m-%d %H:%M:%S}\t{e.mail_from or '<>'}\t"
            f"{','.join(e.rcpt_tos)}\t{error[-1] if error else ''}"
        )
    summary = ", ".join(f"{n} {s}" for s, n in sorted(counts.items())) or "empty"
    click.echo(f"spool: {summary}", err=True)


@spool_group.command("retry")
@click.argument("ids", nargs=-1, type=int)
@click.option("--all", "retry_all", is_flag=True, help="Retry every failed entry.")
@click.option("--now", "process_now", is_flag=True, help="Process them here and now, not by the server.")
@pass_state
def spool_retry(state: State, ids: tuple[int, ...], retry_all: bool, process_now: bool) -> None:
    """Send failed entries (IDS, or --all) through processing again."""
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
@click.argument("entry_id", type=int)
@click.option("--raw", is_flag=True, help="Print the raw message instead of the summary.")
@pass_state
def spool_show(state: State, entry_id: int, raw: bool) -> None:
    """Show one spool entry: envelope, state, outcome and the full error."""
    from sqlalchemy.orm import undefer

    with state.db().read_session() as session:
        entry = session.get(SpoolEntry, entry_id, options=[undefer(SpoolEntry.raw)])
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


# --- entry point -------------------------------------------------------------------------


def main(argv: list[str] | None = None) -> None:
    try:
        cli.main(args=argv, prog_name="mailforum", standalone_mode=False)
    except click.exceptions.Abort:
        click.echo("aborted", err=True)
        sys.exit(130)
    except click.ClickException as exc:
        exc.show()
        sys.exit(exc.exit_code)
    except MailforumError as exc:
        click.echo(f"mailforum: error: {exc}", err=True)
        sys.exit(1)
    except sqlalchemy.exc.SQLAlchemyError as exc:
        detail = str(getattr(exc, "orig", None) or exc).strip().splitlines()
        click.echo(f"mailforum: database error: {detail[0] if detail else type(exc).__name__}", err=True)
        sys.exit(1)
    except (BrokenPipeError, KeyboardInterrupt):
        sys.exit(130)
