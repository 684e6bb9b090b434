"""Alembic environment: migrations run on the connection `mailforum init` hands in."""

from alembic import context

from mailforum.db import models  # noqa: F401  (registers the tables)
from mailforum.db.base import Base

config = context.config
connection = config.attributes.get("connection")

if connection is None:  # `alembic` run by hand, e.g. to autogenerate a revision
    from sqlalchemy import create_engine

    url = config.get_main_option("sqlalchemy.url")
    if url is None:
        raise SystemExit("set sqlalchemy.url in alembic.ini, or run `mailforum init`")
    engine = create_engine(url)
    with engine.begin() as connection:
        context.configure(connection=connection, target_metadata=Base.metadata, render_as_batch=True)
        with context.begin_transaction():
            context.run_migrations()
else:
    context.configure(connection=connection, target_metadata=Base.metadata, render_as_batch=True)
    with context.begin_transaction():
        context.run_migrations()
