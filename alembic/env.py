"""Alembic environment for the ``ingest`` schema (pgstac owns its own schema and migrations)."""

from __future__ import annotations

from logging.config import fileConfig

from sqlalchemy import create_engine, text

import ingest.quota.tables  # noqa: F401 - its table joins the models autogenerate compares
from alembic import context
from ingest.state.db import sqlalchemy_url
from ingest.state.tables import SCHEMA, metadata

config = context.config
if config.config_file_name is not None and config.attributes.get("configure_logger", True):
    fileConfig(config.config_file_name, disable_existing_loggers=False)


def _include_name(name: str | None, type_: str, parent_names: object) -> bool:
    # compare only our schema: pgstac, public (PostGIS) and procrastinate are not ours
    if type_ == "schema":
        return name == SCHEMA
    return True


def run_migrations_online() -> None:
    url = config.attributes.get("url") or sqlalchemy_url()
    engine = create_engine(url)
    with engine.connect() as connection:
        connection.execute(text(f"CREATE SCHEMA IF NOT EXISTS {SCHEMA}"))
        connection.commit()
        context.configure(
            connection=connection,
            target_metadata=metadata,
            version_table_schema=SCHEMA,
            include_schemas=True,
            include_name=_include_name,
            compare_type=True,
            compare_server_default=True,
        )
        with context.begin_transaction():
            context.run_migrations()
    engine.dispose()


if context.is_offline_mode():
    raise SystemExit("offline (--sql) mode is not supported; run against a database")
run_migrations_online()
