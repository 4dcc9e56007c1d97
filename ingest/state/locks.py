"""Session advisory locks named by text: one run of a kind of work at a time, across processes and
machines. Held by the connection's session, so a process that dies (``kill -9`` included) drops them."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager, suppress

import psycopg

from ingest.errors import IngestError


def try_lock(conn: psycopg.Connection, key: str) -> bool:
    row = conn.execute("SELECT pg_try_advisory_lock(hashtextextended(%s, 0))", [key]).fetchone()
    return bool(row and row[0])


def unlock(conn: psycopg.Connection, key: str) -> None:
    conn.execute("SELECT pg_advisory_unlock(hashtextextended(%s, 0))", [key])


@contextmanager
def exclusive(conn: psycopg.Connection, key: str, busy: IngestError) -> Iterator[None]:
    """Hold ``key`` while inside; ``busy`` is raised when another session holds it."""
    if not try_lock(conn, key):
        raise busy
    try:
        yield
    finally:
        with suppress(psycopg.Error):  # a broken connection has dropped the lock with itself
            unlock(conn, key)
