"""Connections to PostgreSQL: psycopg for the daemon, a SQLAlchemy URL for alembic.

Connection failures are translated into DatabaseUnavailable with a message that names host, port
and database but never the password.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from urllib.parse import urlsplit

import psycopg

from ingest.errors import DatabaseUnavailable
from ingest.settings import Settings, load_settings, redact_dsn, scrub


def describe_dsn(dsn: str) -> str:
    p = urlsplit(dsn)
    return f"{p.hostname or 'localhost'}:{p.port or 5432}/{p.path.lstrip('/') or '?'}"


def dsn_password(dsn: str) -> str | None:
    return urlsplit(dsn).password


@contextmanager
def connect(
    settings: Settings | None = None, *, dsn: str | None = None, autocommit: bool = True, timeout_s: int = 5
) -> Iterator[psycopg.Connection]:
    """A connection, closed on exit. Autocommit by default: every change in this code base is one
    statement or an explicit ``conn.transaction()``; without autocommit a first read opens an implicit
    transaction, later ``transaction()`` blocks become savepoints inside it, and closing the connection
    throws every change away."""
    if dsn is None:
        settings = settings or load_settings()
        dsn = settings.require_database_url()
        timeout_s = settings.db_connect_timeout_s
    try:
        conn = psycopg.connect(dsn, autocommit=autocommit, connect_timeout=timeout_s)
    except psycopg.OperationalError as exc:
        detail = scrub(
            str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__, dsn, dsn_password(dsn)
        )
        raise DatabaseUnavailable(f"database {describe_dsn(dsn)} unreachable: {detail}") from None
    try:
        yield conn
    finally:
        conn.close()


def sqlalchemy_url(settings: Settings | None = None, *, dsn: str | None = None) -> str:
    if dsn is None:
        dsn = (settings or load_settings()).require_database_url()
    scheme, rest = dsn.split("://", 1)
    if scheme not in {"postgresql", "postgres", "postgresql+psycopg"}:
        raise DatabaseUnavailable(f"unsupported database URL scheme in {redact_dsn(dsn)}")
    return "postgresql+psycopg://" + rest
