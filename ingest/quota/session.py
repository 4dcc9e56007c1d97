"""The provider limits' own database session: one connection per process, shared by its threads.

A dedicated connection, never a pooled one: the download slots are session-level advisory locks,
which belong to the session that took them (a pool would hand it to work that resets or closes it).
Autocommit (an idle-in-transaction session would be ended by ``idle_in_transaction_session_timeout``,
and the slots with it), ``idle_session_timeout=0`` for the same reason, a statement timeout so that a
blocked statement cannot hold every thread of the process, and TCP keepalives on both ends: the
server ends the session of a machine that vanished (no FIN ever arrives) within about 25 s, which
frees its slots for the rest of the fleet; a ``kill -9`` closes the socket, which frees them at once.

Its commits do not wait for the WAL flush (``synchronous_commit=off``): what it writes, a request's
turn and a pause, is worth less than a disk flush per request, and a server crash that loses the last
few costs at most one request sent early or one more 429 (locks are never written to disk anyway).

Thread-safe: ``run(op)`` calls ``op(conn)`` under the session's lock, one thread at a time (each
statement is a fraction of a millisecond; nobody sleeps with the lock held). When the connection is
lost, a new one is opened, the hooks given to ``on_reconnect`` run on it first (the slots take their
locks again), and ``op`` is called once more; a second loss is DatabaseUnavailable.
"""

from __future__ import annotations

import contextlib
import logging
import os
import socket
import threading
from collections.abc import Callable
from typing import TypeVar

import psycopg

from ingest import dsn as dsns
from ingest.errors import ConfigError, DatabaseUnavailable
from ingest.settings import scrub
from ingest.state.db import KEEPALIVE_COUNT, KEEPALIVE_IDLE_S, KEEPALIVE_INTERVAL_S, TCP_USER_TIMEOUT_MS

log = logging.getLogger(__name__)

T = TypeVar("T")

STATEMENT_TIMEOUT_MS = 10_000


def _server_options() -> str:
    settings = {
        "tcp_keepalives_idle": KEEPALIVE_IDLE_S,
        "tcp_keepalives_interval": KEEPALIVE_INTERVAL_S,
        "tcp_keepalives_count": KEEPALIVE_COUNT,
        "tcp_user_timeout": TCP_USER_TIMEOUT_MS,
        "idle_session_timeout": 0,
        "idle_in_transaction_session_timeout": STATEMENT_TIMEOUT_MS,
        "statement_timeout": STATEMENT_TIMEOUT_MS,
        "synchronous_commit": "off",
    }
    return " ".join(f"-c {k}={v}" for k, v in settings.items())


class QuotaSession:
    """One autocommit connection, opened on first use, shared by the threads of a process."""

    def __init__(self, dsn: str, *, connect_timeout_s: int = 5) -> None:
        self.dsn = dsn
        self.connect_timeout_s = connect_timeout_s
        self.identity = f"{socket.gethostname()}:{os.getpid()}"
        self._conn: psycopg.Connection | None = None
        self._lock = threading.RLock()
        self._hooks: list[Callable[[psycopg.Connection], None]] = []
        self._opened = 0  # connections opened so far (the first is not a reconnection)
        self._pid = os.getpid()  # the process the connection belongs to

    def on_reconnect(self, hook: Callable[[psycopg.Connection], None]) -> None:
        """``hook(conn)`` runs on every new connection after the first, before any other statement."""
        with self._lock:
            self._hooks.append(hook)

    @property
    def backend_pid(self) -> int | None:
        """The server process of the session (what an operator would ``pg_terminate_backend``)."""
        with self._lock:
            if self._conn is None or self._conn.closed:
                return None
            return int(self._conn.info.backend_pid)

    def run(self, op: Callable[[psycopg.Connection], T]) -> T:
        """``op(conn)`` with the session's lock held; again on a new connection after a loss."""
        with self._lock:
            for attempt in (1, 2):
                conn: psycopg.Connection | None = None
                try:
                    conn = self._connection()
                    return op(conn)
                except psycopg.errors.UndefinedTable:
                    raise ConfigError(
                        "the provider limits' table is missing: migrate the database (`ingest db migrate`)"
                    ) from None
                except psycopg.errors.UndefinedFunction:
                    raise ConfigError(
                        "the provider limits' function is missing: migrate the database (`ingest db migrate`)"
                    ) from None
                except psycopg.Error as exc:
                    gone = conn is None or conn.closed or conn.broken
                    if not gone or attempt == 2:
                        if not gone:
                            self._reset(conn)
                        raise self._unavailable(exc) from None
                    log.warning("provider limits: database session lost (%s); reconnecting", self._detail(exc))
                    self._drop()
            raise AssertionError("unreachable")

    def _connection(self) -> psycopg.Connection:
        self._forget_if_forked()
        if self._conn is not None and not self._conn.closed:
            return self._conn
        target = dsns.parse(self.dsn, setting="INGEST_DATABASE_URL").where
        try:
            conn = psycopg.connect(
                self.dsn,
                autocommit=True,
                connect_timeout=self.connect_timeout_s,
                application_name=f"ingest quota {self.identity}"[:63],
                keepalives=1,
                keepalives_idle=KEEPALIVE_IDLE_S,
                keepalives_interval=KEEPALIVE_INTERVAL_S,
                keepalives_count=KEEPALIVE_COUNT,
                tcp_user_timeout=TCP_USER_TIMEOUT_MS,
                options=_server_options(),
            )
        except psycopg.Error as exc:
            raise DatabaseUnavailable(f"database {target} unreachable: {self._detail(exc)}") from None
        self._opened += 1
        self._conn = conn
        if self._opened > 1:
            for hook in self._hooks:
                hook(conn)
        return conn

    @staticmethod
    def _reset(conn: psycopg.Connection | None) -> None:
        """After a refused statement inside a transaction block: leave the session usable."""
        if conn is not None and not conn.closed and conn.info.transaction_status != psycopg.pq.TransactionStatus.IDLE:
            with contextlib.suppress(psycopg.Error):
                conn.rollback()

    def _detail(self, exc: BaseException) -> str:
        first = (str(exc).strip().splitlines() or [type(exc).__name__])[0]
        return scrub(first, self.dsn, dsns.password_of(self.dsn))

    def _unavailable(self, exc: BaseException) -> DatabaseUnavailable:
        return DatabaseUnavailable(f"provider limits: {self._detail(exc)}")

    def _forget_if_forked(self) -> None:
        """A forked child must never use, nor close, its parent's session (closing it would end the
        parent's session and free the parent's slots): it forgets it and opens its own."""
        if self._pid != os.getpid():
            self._conn, self._pid, self._opened = None, os.getpid(), 0

    def _drop(self) -> None:
        self._forget_if_forked()
        if self._conn is not None:
            with contextlib.suppress(psycopg.Error):
                self._conn.close()
        self._conn = None

    def close(self) -> None:
        """Close the connection: the server frees every slot it held."""
        with self._lock:
            self._drop()
