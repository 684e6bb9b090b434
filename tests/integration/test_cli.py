"""The command line as a user drives it: the real `mailforum` process, its output and exit codes."""

from __future__ import annotations

import json
import mailbox
import os
import subprocess
import sys
import time

import pytest

from tests.helpers import DOMAIN, message


def test_init_twice_is_a_no_op(site):
    first = site.cli("init")
    assert first.returncode == 0, first.stderr
    assert "already at" in first.stdout  # the fixture database is migrated already
    assert site.cli("init").returncode == 0


def test_lists_create_list_show(site):
    assert site.cli("lists", "create", "dev", "--title", "Developers").returncode == 0
    assert site.cli("lists", "create", "users").returncode == 0
    assert site.cli("lists", "list").stdout.splitlines() == ["dev", "users"]
    shown = site.cli("lists", "show", "dev").stdout
    assert "Developers" in shown and f"dev@{DOMAIN}" in shown and "members:" in shown


@pytest.mark.parametrize(
    ("args", "fragment"),
    [
        (("lists", "create", "Bad Name"), "bad list name"),
        (("lists", "create", "dev-request"), "bad list name"),
        (("lists", "show", "nope"), "no list named 'nope'"),
        (("members", "add", "nope", "a@example.com"), "no list named 'nope'"),
        (("members", "add", "dev"), "no addresses given"),
        (("export", "--list", "nope"), "no list named 'nope'"),
        (("spool", "retry"), "name the entries"),
        (("spool", "show", "999"), "no spool entry 999"),
        (("import-mbox", "/nonexistent.mbox", "--list", "dev"), "no such file"),
    ],
)
def test_user_errors_are_one_line_and_non_zero(site, args, fragment):
    site.cli("lists", "create", "dev")
    result = site.cli(*args)
    assert result.returncode != 0
    assert fragment in result.stderr
    assert "Traceback" not in result.stderr
    assert len(result.stderr.strip().splitlines()) == 1


@pytest.mark.parametrize(
    "args",
    [
        ("spool", "show", "1" + "0" * 20),
        ("outbox", "retry", "99999999999999999999"),
        ("held", "approve", "dev", "0"),
        ("topics", "lock", "dev", "1" + "0" * 19),
        ("posts", "remove", "dev", "--", "-5"),
    ],
)
def test_row_ids_out_of_range_are_usage_errors(site, args):
    """A number no row can have (0, negative, beyond a BIGINT) is refused by the command line
    itself, with click's usage error, before the database sees it."""
    site.cli("lists", "create", "dev")
    result = site.cli(*args)
    assert result.returncode == 2, result.stderr
    assert "range" in result.stderr
    assert "Traceback" not in result.stderr


def test_config_errors_are_one_line(site, tmp_path):
    bad = tmp_path / "bad.toml"
    for text, fragment in [
        ("[database\n", "not valid TOML"),
        ("[smtp]\nport = 'x'\n", "[smtp] port: expected an integer"),
        ("[nonsense]\n", "unknown section [nonsense]"),
        ("[smtp]\nprot = 25\n", "unknown key [smtp] prot"),
    ]:
        bad.write_text(text)
        result = site.cli("--config", str(bad), "lists", "list")
        assert result.returncode == 1 and fragment in result.stderr and "Traceback" not in result.stderr
    missing = site.cli("--config", str(tmp_path / "missing.toml"), "lists", "list")
    assert "does not exist" in missing.stderr


def test_unreachable_or_uninitialised_database_is_one_line(site, tmp_path):
    conf = tmp_path / "pg.toml"
    conf.write_text('[database]\nurl = "postgresql+psycopg://nobody@127.0.0.1:1/none"\nbusy_timeout = 1.0\n')
    result = site.cli("--config", str(conf), "lists", "list")
    assert result.returncode == 1 and "cannot reach the database" in result.stderr
    conf.write_text(f'[database]\nurl = "sqlite:///{tmp_path}/empty.db"\n')
    result = site.cli("--config", str(conf), "lists", "list")
    assert result.returncode == 1 and "run `mailforum init`" in result.stderr


def test_members_add_from_a_file_reports_the_bad_line_and_adds_nothing(site, tmp_path):
    site.cli("lists", "create", "dev")
    listing = tmp_path / "members.txt"
    listing.write_text("ann@example.com\n# a comment\n\nBob <bob@example.com>\nnot-an-address\n")
    result = site.cli("members", "add", "dev", "--file", str(listing))
    assert result.returncode == 1
    assert "line 5" in result.stderr and "not-an-address" in result.stderr
    assert site.cli("members", "list", "dev").stdout == ""


def test_members_add_list_remove(site):
    site.cli("lists", "create", "dev")
    added = site.cli("members", "add", "dev", "Ann <ANN@Example.com>", "bob@example.com", "--mode", "digest")
    assert added.returncode == 0, added.stderr
    again = site.cli("members", "add", "dev", "ann@example.com")
    assert "1 already members" in again.stdout
    lines = site.cli("members", "list", "dev").stdout.splitlines()
    assert lines == ["ann@example.com\tdigest\tAnn", "bob@example.com\tdigest"]
    removed = site.cli("members", "remove", "dev", "bob@example.com", "carl@example.com")
    assert "removed 1" in removed.stdout and "not a member: carl@example.com" in removed.stderr
    assert site.cli("members", "list", "dev").stdout.splitlines() == ["ann@example.com\tdigest\tAnn"]


def test_ten_thousand_members_from_stdin(site):
    site.cli("lists", "create", "big")
    addresses = "".join(f"member{i}@example.com\n" for i in range(10_000)).encode()
    started = time.monotonic()
    result = site.cli("members", "add", "big", "--file", "-", input=addresses)
    elapsed = time.monotonic() - started
    assert result.returncode == 0, result.stderr
    assert "added 10000" in result.stdout
    assert len(site.cli("members", "list", "big").stdout.splitlines()) == 10_000
    print(f"members add 10000: {elapsed:.2f} s")  # reported, not asserted: timing belongs to bench/


def test_import_mbox_is_idempotent_and_export_round_trips(site, tmp_path):
    site.cli("lists", "create", "dev")
    box_path = tmp_path / "archive.mbox"
    box = mailbox.mbox(box_path)
    box.add(message("Start", "<s1@example.com>", body="From the start\nline two\n"))
    box.add(message("Re: Start", "<s2@example.com>", extra="In-Reply-To: <s1@example.com>", body="reply\n"))
    box.add(message("Other", "<o1@example.com>", sender="stranger@example.net"))
    box.flush()
    box.close()
    first = site.cli("import-mbox", str(box_path), "--list", "dev")
    assert first.returncode == 0, first.stderr
    assert "imported 3 post(s)" in first.stdout
    second = site.cli("import-mbox", str(box_path), "--list", "dev")
    assert "imported 0 post(s); 3 already stored" in second.stdout
    records = [json.loads(line) for line in site.cli("export", "--list", "dev").stdout.splitlines()]
    by_id = {r["message_id"]: r for r in records}
    assert set(by_id) == {"<s1@example.com>", "<s2@example.com>", "<o1@example.com>"}
    assert by_id["<s2@example.com>"]["parent_message_id"] == "<s1@example.com>"
    assert by_id["<s2@example.com>"]["topic_id"] == by_id["<s1@example.com>"]["topic_id"]
    for key in ("message_id", "topic_id", "parent_message_id", "list", "author", "subject", "date"):
        assert key in records[0]
    out = tmp_path / "out.mbox"
    assert site.cli("export", "--list", "dev", "--format", "mbox", "-o", str(out)).returncode == 0
    exported = mailbox.mbox(out)
    bodies = {m["Message-ID"]: m.get_payload() for m in exported}
    exported.close()
    # mboxrd: the "From " line is quoted once in the file and unquoted on import.
    assert bodies["<s1@example.com>"].replace("\r\n", "\n") == ">From the start\nline two\n"
    assert site.cli("lists", "create", "copy").returncode == 0
    assert "imported 3 post(s)" in site.cli("import-mbox", str(out), "--list", "copy").stdout
    again = {
        json.loads(line)["message_id"]: json.loads(line)
        for line in site.cli("export", "--list", "copy").stdout.splitlines()
    }
    assert again["<s1@example.com>"]["text"] == "From the start\nline two\n"


def test_help_explains_every_command(site):
    top = site.cli("--help").stdout
    for command in ("init", "serve", "lists", "members", "import-mbox", "export", "spool"):
        assert command in top
    for group, subs in {
        "lists": ("create", "list", "show"),
        "members": ("add", "list", "remove"),
        "spool": ("list", "retry", "show"),
    }.items():
        text = site.cli(group, "--help").stdout
        for sub in subs:
            assert sub in text


SERVER_PARTS = {"aiosmtpd", "aiosmtplib", "uvicorn", "starlette", "jinja2", "apscheduler", "dkim", "nh3"}


@pytest.mark.parametrize(
    ("args", "not_loaded"),
    [
        (("--help",), SERVER_PARTS | {"sqlalchemy", "alembic", "email_validator", "mailforum.config"}),
        (("lists", "--help"), SERVER_PARTS | {"sqlalchemy", "alembic", "email_validator"}),
        (("lists", "list"), SERVER_PARTS | {"alembic", "email_validator", "mailforum.core.posting"}),
    ],
)
def test_a_command_loads_only_what_it_uses(site, args, not_loaded):
    """Start-up is paid by every command: --help needs no database code, no command the server."""
    env = dict(os.environ, MAILFORUM_CONFIG=str(site.config_file))
    argv = [sys.executable, "-X", "importtime", "-m", "mailforum", *args]
    result = subprocess.run(argv, env=env, capture_output=True, text=True)
    assert result.returncode == 0, result.stderr[-2000:]
    lines = [line for line in result.stderr.splitlines() if line.startswith("import time:")]
    loaded = {line.rsplit("|", 1)[1].strip() for line in lines}
    loaded |= {name.split(".")[0] for name in loaded}
    assert not loaded & not_loaded


def test_a_command_collects_garbage_again_once_started(site):
    """main() keeps the cyclic collector off while a command loads its code; once
    the command opens the database, start-up's objects are frozen and collection resumes."""
    site.cli("lists", "create", "dev")
    report = "print('collecting', gc.isenabled(), gc.get_freeze_count() > 0, file=sys.stderr)"
    code = (
        "import atexit, gc, sys\n"
        f"atexit.register(lambda: {report})\n"
        "from mailforum.cli import main\n"
        "main(['lists', 'list'])"
    )
    env = dict(os.environ, MAILFORUM_CONFIG=str(site.config_file))
    result = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True)
    assert result.returncode == 0, result.stderr
    assert result.stdout.splitlines() == ["dev"]
    assert "collecting True True" in result.stderr


def test_a_command_closes_its_sqlite_database(site):
    """The last connection to close checkpoints the WAL: after a command (and none open in this
    test) the database is one file again, as before start-up's objects were frozen."""
    if not site.config.database.url.startswith("sqlite"):
        pytest.skip("SQLite's -wal file")
    site.db.dispose()
    path = site.config.database.url.removeprefix("sqlite:///")
    for args in (("lists", "create", "dev"), ("lists", "list")):
        assert site.cli(*args).returncode == 0
        assert not os.path.exists(path + "-wal")


def test_config_env_var_is_the_one_config_reads():
    from mailforum.cli import cli
    from mailforum.config import ENV_VAR

    (option,) = [p for p in cli.params if p.name == "config_path"]
    assert option.envvar == ENV_VAR


def test_serve_on_an_empty_database_says_run_init(site, tmp_path):
    conf = tmp_path / "empty.toml"
    conf.write_text(f'[database]\nurl = "sqlite:///{tmp_path}/empty.db"\n[smtp]\nport = 0\nlmtp_port = 0\n')
    result = site.cli("--config", str(conf), "serve", timeout=30)
    assert result.returncode == 1
    assert "run `mailforum init`" in result.stderr
    assert "Traceback" not in result.stderr


def test_status_summarises_lists_spool_and_trust(site):
    site.create_list("dev")
    site.add_members("dev", "ann@example.com")
    out = site.cli("status").stdout
    assert "dev: 1 members, 0 posts, 0 held, policy members" in out
    assert "0 new, 0 done" in out
    assert "the From header is trusted" in out


def run_in(cwd, *args: str) -> subprocess.CompletedProcess[str]:
    """`mailforum ARGS` from the directory ``cwd``, with no config from the environment."""
    env = {k: v for k, v in os.environ.items() if k != "MAILFORUM_CONFIG"}
    return subprocess.run(
        [sys.executable, "-m", "mailforum", *args],
        cwd=cwd,
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
    )


@pytest.mark.parametrize("url", ["sqlite:///forum.db", "sqlite:///data/../forum.db"])
def test_a_relative_database_path_is_taken_from_the_config_folder(tmp_path, url):
    """Issue 13: `--config /srv/mf/mailforum.toml status` from elsewhere is that forum's status."""
    forum, elsewhere = tmp_path / "srv" / "mf", tmp_path / "home"
    (forum / "data").mkdir(parents=True)
    elsewhere.mkdir()
    config = forum / "mailforum.toml"
    config.write_text(f'[database]\nurl = "{url}"\n')
    assert run_in(elsewhere, "--config", str(config), "init").returncode == 0
    assert run_in(tmp_path, "--config", "srv/mf/mailforum.toml", "lists", "create", "dev").returncode == 0
    listed = run_in(elsewhere, "--config", str(config), "lists", "list")
    assert listed.returncode == 0 and listed.stdout.split() == ["dev"]
    assert (forum / "forum.db").is_file()
    assert not list(elsewhere.iterdir()) and not (tmp_path / "forum.db").exists()


@pytest.mark.parametrize(
    "args",
    [("status",), ("lists", "list"), ("members", "list", "dev"), ("outbox", "status"), ("deliver", "--once")],
)
def test_only_init_creates_a_database(tmp_path, args):
    config = tmp_path / "mailforum.toml"
    config.write_text('[database]\nurl = "sqlite:///missing.db"\n')
    result = run_in(tmp_path, "--config", str(config), *args)
    assert result.returncode == 1 and "Traceback" not in result.stderr
    assert len(result.stderr.strip().splitlines()) == 1
    assert f"no SQLite database at {tmp_path / 'missing.db'}" in result.stderr
    assert not (tmp_path / "missing.db").exists()
    assert sorted(p.name for p in tmp_path.iterdir()) == ["mailforum.toml"]


LOCAL_ADDRESSES = [
    "alice@localhost",
    "Bob <bob@host.local>",
    "carol@box.test",
    "dave@nas.home.arpa",
    "erin@mailhost",
]


def test_special_use_domains_are_refused_by_default_and_the_error_names_the_setting(site):
    site.cli("lists", "create", "dev")
    for address in LOCAL_ADDRESSES:
        result = site.cli("members", "add", "dev", address)
        assert result.returncode == 1 and len(result.stderr.strip().splitlines()) == 1
        assert "[site] allow_local_domains = true" in result.stderr
    assert site.cli("members", "list", "dev").stdout == ""


def test_an_intranet_install_accepts_special_use_domains(site):
    text = site.config_file.read_text()
    site.config_file.write_text(text.replace("allow_local_domains = false", "allow_local_domains = true"))
    site.cli("lists", "create", "dev")
    added = site.cli("members", "add", "dev", *LOCAL_ADDRESSES, "FRANK@Example.COM")
    assert added.returncode == 0, added.stderr
    listed = sorted(line.split("\t")[0] for line in site.cli("members", "list", "dev").stdout.splitlines())
    assert listed == sorted(
        [
            "alice@localhost",
            "bob@host.local",
            "carol@box.test",
            "dave@nas.home.arpa",
            "erin@mailhost",
            "frank@example.com",
        ]
    )
    for bad in ("x@host.invalid", "y@z.onion", "bad..dots@localhost"):
        refused = site.cli("members", "add", "dev", bad)
        assert refused.returncode == 1 and "allow_local_domains" not in refused.stderr


def on_a_terminal(site, *args: str) -> str:
    """`mailforum ARGS` with its standard output on a pseudo-terminal, as an operator sees it."""
    import pty

    master, slave = pty.openpty()
    env = dict(os.environ, MAILFORUM_CONFIG=str(site.config_file))
    proc = subprocess.Popen(
        [sys.executable, "-m", "mailforum", *args],
        stdout=slave,
        stderr=subprocess.DEVNULL,
        cwd=site.dir,
        env=env,
    )
    os.close(slave)
    out = b""
    while True:
        try:
            chunk = os.read(master, 65536)
        except OSError:  # EIO: the child closed the terminal
            break
        if not chunk:
            break
        out += chunk
    os.close(master)
    assert proc.wait(60) == 0
    return out.decode().replace("\r\n", "\n")


@pytest.fixture
def listed(site):
    """A list with two members (one bouncing), a spool entry and an outbox copy."""
    from mailforum.db import spool
    from mailforum.db.models import Member, utcnow
    from tests.integration.outbound_helpers import store

    site.create_list("dev")
    site.add_members("dev", "Ann <ann@example.com>", "bob@example.com")
    store(site, message("Hello", "<t1@example.com>"))  # from ann: a copy for bob
    with site.db.session() as session:
        spool.insert_batch(
            session, [spool.NewMessage(b"Subject: x\r\n\r\nx\r\n", "", (f"dev@{DOMAIN}",))], utcnow()
        )
        bob = session.query(Member).filter_by(address="bob@example.com").one()
        bob.bounce_score, bob.bounce_warnings = 2.5, 1
    return site


LISTINGS = [
    (("members", "list", "dev"), "ADDRESS", "ann@example.com"),
    (("members", "bounces", "dev"), "ADDRESS", "bob@example.com"),
    (("spool", "list", "--state", "all"), "ID", f"dev@{DOMAIN}"),
    (("outbox", "list", "--state", "all"), "ID", "bob@example.com"),
]


@pytest.mark.parametrize(("args", "first_heading", "value"), LISTINGS)
def test_listings_have_a_header_on_a_terminal_only(listed, args, first_heading, value):
    shown = on_a_terminal(listed, *args).splitlines()
    assert shown[0].split()[0] == first_heading and value in "\n".join(shown[1:])
    piped = listed.cli(*args).stdout.splitlines()
    assert piped and not any(line.startswith(first_heading) for line in piped)
    assert all("\t" in line for line in piped)


@pytest.mark.parametrize(("args", "first_heading", "value"), LISTINGS)
def test_listings_as_json_for_scripts(listed, args, first_heading, value):
    result = listed.cli(*args, "--json")
    assert result.returncode == 0, result.stderr
    objects = json.loads(result.stdout)
    assert isinstance(objects, list) and objects and all(isinstance(o, dict) for o in objects)
    assert value in json.dumps(objects)


def test_members_list_stays_address_first_for_scripts(listed):
    assert listed.cli("members", "list", "dev").stdout.splitlines() == [
        "ann@example.com\tall\tAnn",
        "bob@example.com\tall",
    ]
    members = json.loads(listed.cli("members", "list", "dev", "--json").stdout)
    assert [(m["address"], m["mode"], m["name"]) for m in members] == [
        ("ann@example.com", "all", "Ann"),
        ("bob@example.com", "all", ""),
    ]
    bounces = json.loads(listed.cli("members", "bounces", "dev", "--json").stdout)
    assert [(b["address"], b["score"], b["delivery"], b["warnings"]) for b in bounces] == [
        ("bob@example.com", 2.5, "enabled", 1)
    ]


def test_spool_show_prints_the_envelope_or_the_raw_bytes(listed):
    (entry,) = json.loads(listed.cli("spool", "list", "--state", "all", "--json").stdout)
    shown = listed.cli("spool", "show", str(entry["id"]))
    assert shown.returncode == 0, shown.stderr
    assert f"rcpt_tos:     ['dev@{DOMAIN}']" in shown.stdout and "state:" in shown.stdout
    assert listed.cli("spool", "show", str(entry["id"]), "--raw").stdout == "Subject: x\n\nx\n"
