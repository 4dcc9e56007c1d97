"""Connections to PostgreSQL: psycopg for the daemon, a SQLAlchemy URL for alembic.

Connection failures are translated into DatabaseUnavailable with a message that names host, port
and database but never the password; a malformed DSN is a ConfigError before libpq sees it.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

import psycopg

from ingest.dsn import parse, password_of, where
from ingest.errors import DatabaseUnavailable
from ingest.settings import Settings, load_settings, scrub

# the old names, still imported by ingest/daemon/leader.py and ingest/adapters/pgstac.py
describe_dsn = where
dsn_password = password_of


@contextmanager
def connect(
    settings: Settings | None = None,
    *,
    dsn: str | None = None,
    autocommit: bool = True,
    timeout_s: int = 5,
    setting: str = "INGEST_DATABASE_URL",
) -> Iterator[psycopg.Connection]:
    """A connection, closed on exit. Autocommit by default: every change in this code base is one
    statement or an explicit ``conn.transaction()``; without autocommit a first read opens an implicit
    transaction, later ``transaction()`` blocks become savepoints inside it, and closing the connection
    throws every change away. ``setting`` names the DSN's origin in a ConfigError."""
    if dsn is None:
        settings = settings or load_settings()
        dsn = settings.require_database_url()
        timeout_s = settings.db_connect_timeout_s
    # libpq's own message about a malformed string would quote it, password included
    target = parse(dsn, setting=setting).where
    try:
        conn = psycopg.connect(dsn, autocommit=autocommit, connect_timeout=timeout_s)
    except psycopg.OperationalError as exc:
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        detail = scrub(first, dsn, password_of(dsn))
        raise DatabaseUnavailable(f"database {target} unreachable: {detail}") from None
    try:
        yield conn
    finally:
        conn.close()


def sqlalchemy_url(settings: Settings | None = None, *, dsn: str | None = None) -> str:
    """The DSN, in either libpq form, as a SQLAlchemy URL for psycopg."""
    from sqlalchemy.engine import URL

    if dsn is None:
        dsn = (settings or load_settings()).require_database_url()
    params = dict(parse(dsn).params)
    host = params.pop("host", None)
    port = params.pop("port", None)
    if host and host.startswith("/"):
        params["host"] = host  # a Unix socket directory: a query parameter, as libpq takes it there too
        host = None
    url = URL.create(
        "postgresql+psycopg",
        username=params.pop("user", None),
        password=params.pop("password", None),
        host=host,
        port=int(port) if port else None,
        database=params.pop("dbname", None),
        query=params,  # the psycopg dialect passes the rest to psycopg.connect as they are
    )
    return url.render_as_string(hide_password=False)
