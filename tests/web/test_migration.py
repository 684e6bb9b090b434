"""Migration 0004 goes down and up again, and search works on what was stored before it."""

from __future__ import annotations

from alembic import command

from mailforum.db import migrate, queries
from mailforum.db.session import Database
from tests.helpers import message
from tests.web.kit import seed


def test_down_and_up_again_keeps_search_working(site) -> None:
    seed(site.config, site.db, [message("Before", "<b@example.com>", body="stored before the upgrade\n")])
    db: Database = site.db
    cfg = migrate._alembic_config(db)
    with db.engine.begin() as conn:
        cfg.attributes["connection"] = conn
        command.downgrade(cfg, "0001")
    assert migrate.current_revision(db) == "0001"
    migrate.upgrade(db)
    assert migrate.current_revision(db) == migrate.head_revision()
    with db.read_session() as session:
        mlist = queries.list_named(session, "dev", public=True)
        assert mlist is not None and mlist.visibility == "public" and mlist.show_addresses is False
        hits, more = queries.search(session, mlist, "UPGRADE stored", 1, 10)
    assert [h.subject for h in hits] == ["Before"] and not more
