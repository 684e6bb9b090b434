"""Every command pays its imports at start, so a command loads only what it uses.

Each check runs a fresh interpreter and looks at ``sys.modules``: a property of the code,
not a timing.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]

SERVER_PARTS = ("aiosmtpd", "aiosmtplib", "apscheduler", "jinja2", "starlette", "uvicorn", "alembic")


def loaded_after(code: str) -> set[str]:
    """The modules a fresh interpreter holds after running ``code``."""
    script = f"import json, sys\n{code}\nprint(json.dumps(sorted(sys.modules)))"
    done = subprocess.run(
        [sys.executable, "-c", script], cwd=ROOT, capture_output=True, text=True, check=True
    )
    return set(json.loads(done.stdout.splitlines()[-1]))


def test_parsing_a_command_loads_no_server_part_and_no_database_code():
    loaded = loaded_after(
        "from mailforum.cli import cli\n"
        "try:\n"
        "    cli.main(['lists', 'list', '--help'], standalone_mode=False)\n"
        "except SystemExit:\n"
        "    pass"
    )
    assert "mailforum.cli" in loaded
    heavy = {*SERVER_PARTS, "sqlalchemy", "mailforum.db.models", "mailforum.config"}
    assert not {name for name in loaded if name.split(".")[0] in heavy or name in heavy}


def test_the_models_load_no_postgresql_dialect_and_no_mail_code():
    """SQLite commands skip sqlalchemy.dialects.postgresql (every PG driver's dialect and
    asyncio's): its types are picked when a PostgreSQL engine asks for them."""
    loaded = loaded_after("import mailforum.db.models")
    assert "mailforum.db.models" in loaded
    assert "sqlalchemy.dialects.postgresql" not in loaded
    assert not {name for name in loaded if name.startswith(("mailforum.mail", *SERVER_PARTS))}


def test_the_lists_commands_load_no_mail_composer():
    """`lists …` and `members …` read and write rows; composing mail is for the commands that send."""
    loaded = loaded_after("import mailforum.core.lists")
    assert "mailforum.core.lists" in loaded
    assert "mailforum.mail.compose" not in loaded
    assert "sqlalchemy.dialects.postgresql" not in loaded


def test_reading_held_posts_loads_no_sending_code():
    """`held list` and `lists moderators` read rows: the parser, Jinja2 and the outbox come
    with approving and rejecting, not with importing core.moderation."""
    loaded = loaded_after("import mailforum.core.moderation")
    assert "mailforum.core.moderation" in loaded
    ours = {"mailforum.core.fanout", "mailforum.core.notices", "mailforum.mail.parse", "mailforum.db.outbox"}
    assert not loaded & (ours | {"jinja2", "lxml", "prometheus_client"})


def test_the_digest_schedule_loads_no_digest_builder():
    """`members show` and `digest format` check and read schedules; building and enqueueing
    digests (the parser, the outbox) come with a run."""
    loaded = loaded_after("import mailforum.core.digest_schedule")
    assert "mailforum.core.digest_schedule" in loaded
    builders = {"mailforum.core.digest_content", "mailforum.core.digest_enqueue", "mailforum.mail.parse"}
    assert not loaded & builders


def test_the_topic_commands_load_no_mail_parser():
    """core.threads names ParsedMessage in annotations only: `topics …` and `lists tags`
    load no lxml or inscriptis."""
    loaded = loaded_after("import mailforum.core.topics")
    assert "mailforum.core.threads" in loaded
    assert not loaded & {"mailforum.mail.parse", "lxml", "inscriptis"}


def test_export_loads_no_processing_path():
    """core.archive imports and exports; the processing path comes with an import only."""
    loaded = loaded_after("import mailforum.core.archive")
    assert "mailforum.core.archive" in loaded
    assert not loaded & {"mailforum.core.routing", "mailforum.core.posting", "mailforum.core.fanout"}


def test_showing_a_member_loads_no_templates():
    """`members show` reads a member's topics and tags from core.topics; the subscription
    commands (and their answers, rendered with Jinja2) are not needed to read them."""
    loaded = loaded_after("import mailforum.core.topics, mailforum.core.digest_schedule")
    assert "mailforum.core.topics" in loaded
    assert not loaded & {"jinja2", "mailforum.core.answers", "mailforum.core.subscriptions"}
