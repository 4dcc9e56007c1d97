"""Leader election for the scheduler: a PostgreSQL session advisory lock on a connection of its own.

Why an advisory lock: the database is the one thing every scheduler already shares, the lock lives
exactly as long as the session that took it, and the server frees it by itself when that session
ends (process killed, machine gone). No lease table, no clock comparisons between machines.

Why a dedicated connection: a session lock belongs to the session, so the connection must never be
returned to a pool or shared with work that might close or reset it. It runs in autocommit (an
idle-in-transaction session would be killed by ``idle_in_transaction_session_timeout``) and with
TCP keepalives on both ends: the client notices a lost server, and the *server* notices a lost
client machine (no FIN ever arrives) and ends the session, which frees the lock for a standby.

Advisory locks are scoped to one database, and need a direct connection or a session-mode pooler
(a transaction-mode pgbouncer hands the session to others).

Failover is not instantaneous: between the server dropping a lost leader's session (a database
restart drops every session) and that leader noticing (its next ``still_held``), another scheduler
may take the lock. So the scheduler asks ``still_held`` again before each job starts
(``ingest.daemon.scheduler``): no job starts without the lock, and only a job already running when
the session ended can overlap the next leader's. Every scheduled job is idempotent (guarded state
changes, inserts ON CONFLICT DO NOTHING, queueing locks), so that overlap costs a duplicate provider
search at worst.
"""

from __future__ import annotations

import contextlib
import hashlib
import logging
import os
import socket
import threading

import psycopg

from ingest import dsn
from ingest.errors import DatabaseUnavailable
from ingest.settings import scrub
from ingest.state.db import KEEPALIVE_COUNT, KEEPALIVE_IDLE_S, KEEPALIVE_INTERVAL_S, TCP_USER_TIMEOUT_MS

log = logging.getLogger(__name__)

# A lock check that cannot finish in this time means the session is not healthy.
STATEMENT_TIMEOUT_MS = 10_000


# a bigint advisory key shows in pg_locks as classid (high 32 bits), objid (low 32 bits), objsubid 1
_HELD_SQL = """
SELECT EXISTS (SELECT 1 FROM pg_locks
                WHERE locktype = 'advisory' AND granted AND pid = pg_backend_pid()
                  AND classid::bigint = %s AND objid::bigint = %s AND objsubid = 1)
"""
_HOLDER_SQL = """
SELECT a.application_name
  FROM pg_locks l JOIN pg_stat_activity a ON a.pid = l.pid
 WHERE l.locktype = 'advisory' AND l.granted
   AND l.database = (SELECT oid FROM pg_database WHERE datname = current_database())
   AND l.classid::bigint = %s AND l.objid::bigint = %s AND l.objsubid = 1
"""


def lock_key(name: str) -> int:
    """A signed 64-bit advisory-lock key from a name.

    sha256, not ``hashtext``: hashtext is an internal function whose result may change between
    PostgreSQL major versions, and two schedulers on different client versions must agree.
    """
    return int.from_bytes(hashlib.sha256(name.encode()).digest()[:8], "big", signed=True)


def _split_key(key: int) -> tuple[int, int]:
    """pg_locks shows a bigint advisory key as classid (high 32 bits) and objid (low 32 bits)."""
    unsigned = key & 0xFFFFFFFFFFFFFFFF
    return unsigned >> 32, unsigned & 0xFFFFFFFF


def _session_options() -> str:
    # server side: these make the server probe an idle client and drop a vanished one;
    # idle_session_timeout=0 because a site-wide idle timeout would silently end our leadership
    settings = {
        "tcp_keepalives_idle": KEEPALIVE_IDLE_S,
        "tcp_keepalives_interval": KEEPALIVE_INTERVAL_S,
        "tcp_keepalives_count": KEEPALIVE_COUNT,
        "tcp_user_timeout": TCP_USER_TIMEOUT_MS,
        "idle_session_timeout": 0,
        "statement_timeout": STATEMENT_TIMEOUT_MS,
    }
    return " ".join(f"-c {k}={v}" for k, v in settings.items())


# whether anyone holds the lock, and who (application_name is hidden from other roles: may be NULL)
_ANY_HOLDER_SQL = """
SELECT l.pid, a.application_name, a.backend_start
  FROM pg_locks l LEFT JOIN pg_stat_activity a ON a.pid = l.pid
 WHERE l.locktype = 'advisory' AND l.granted
   AND l.database = (SELECT oid FROM pg_database WHERE datname = current_database())
   AND l.classid::bigint = %s AND l.objid::bigint = %s AND l.objsubid = 1
"""


def current_holder(conn: psycopg.Connection, name: str) -> tuple[int, str | None] | None:
    """(server pid, application name) of the session holding lock ``name``, None when nobody does.

    For `ingest healthcheck`: asks any connection, takes nothing."""
    classid, objid = _split_key(lock_key(name))
    row = conn.execute(_ANY_HOLDER_SQL, [classid, objid]).fetchone()
    if row is None:
        return None
    return int(row[0]), (str(row[1]) if row[1] else None)


class LeaderLock:
    """``try_acquire`` / ``still_held`` / ``release`` of one named lock; only one holder anywhere.

    Thread-safe: the scheduler's loop and its jobs' threads share it (one connection, one user at a time).
    """

    def __init__(self, dsn: str, name: str, *, connect_timeout_s: int = 5) -> None:
        self.dsn = dsn
        self.name = name
        self.key = lock_key(name)
        self.connect_timeout_s = connect_timeout_s
        self.identity = f"{socket.gethostname()}:{os.getpid()}"
        self._conn: psycopg.Connection | None = None
        self._held = False
        self._use = threading.RLock()  # the public methods call one another

    # -- connection

    def _connect(self) -> psycopg.Connection:
        if self._conn is not None and not self._conn.closed:
            return self._conn
        try:
            self._conn = psycopg.connect(
                self.dsn,
                autocommit=True,
                connect_timeout=self.connect_timeout_s,
                application_name=f"{self.name} {self.identity}"[:63],  # what holder() reports
                keepalives=1,
                keepalives_idle=KEEPALIVE_IDLE_S,
                keepalives_interval=KEEPALIVE_INTERVAL_S,
                keepalives_count=KEEPALIVE_COUNT,
                tcp_user_timeout=TCP_USER_TIMEOUT_MS,
                options=_session_options(),
            )
        except psycopg.Error as exc:
            raise self._unavailable(exc) from None
        return self._conn

    def _unavailable(self, exc: psycopg.Error) -> DatabaseUnavailable:
        first = (str(exc).strip().splitlines() or [type(exc).__name__])[0]
        detail = scrub(first, self.dsn, dsn.password_of(self.dsn))
        return DatabaseUnavailable(f"database {dsn.where(self.dsn)} unreachable: {detail}")

    def _drop(self) -> None:
        """Forget the connection (closing it ends the session, which frees the lock if we had it)."""
        self._held = False
        if self._conn is not None:
            with contextlib.suppress(psycopg.Error):  # already broken: nothing left to free
                self._conn.close()
        self._conn = None

    @property
    def held(self) -> bool:
        """True while this object believes it holds the lock (as of its last check)."""
        return self._held

    @property
    def backend_pid(self) -> int | None:
        """The server process of the lock's session (what an operator would pg_terminate_backend)."""
        if self._conn is None or self._conn.closed:
            return None
        return int(self._conn.info.backend_pid)

    # -- the lock

    def try_acquire(self) -> bool:
        """Take the lock if it is free; True when this object holds it (now or already).

        Raises DatabaseUnavailable when the database cannot be reached.
        """
        with self._use:
            if self._held and self.still_held():
                return True  # session locks stack: taking it twice would need two unlocks
            conn = self._connect()
            try:
                row = conn.execute("SELECT pg_try_advisory_lock(%s)", [self.key]).fetchone()
            except psycopg.Error as exc:
                self._drop()
                raise self._unavailable(exc) from None
            self._held = bool(row and row[0])
            return self._held

    def still_held(self) -> bool:
        """A cheap check on the lock's own session; False (and leadership is lost) when it is gone."""
        with self._use:
            if not self._held or self._conn is None or self._conn.closed:
                self._held = False
                return False
            classid, objid = _split_key(self.key)
            try:
                row = self._conn.execute(_HELD_SQL, [classid, objid]).fetchone()
            except psycopg.Error as exc:
                log.warning("leader lock %s: session lost: %s", self.name, self._unavailable(exc).message)
                self._drop()
                return False
            self._held = bool(row and row[0])
            return self._held

    def holder(self) -> str | None:
        """Who holds the lock now (the holder's application_name), None if nobody or unknown."""
        with self._use:
            classid, objid = _split_key(self.key)
            try:
                row = self._connect().execute(_HOLDER_SQL, [classid, objid]).fetchone()
            except (psycopg.Error, DatabaseUnavailable):
                return None  # only used to say who leads; never worth failing for
            return str(row[0]) if row and row[0] else None

    def release(self) -> None:
        """Give the lock up and close its connection (either alone would free it; both say so clearly)."""
        with self._use:
            if self._held and self._conn is not None and not self._conn.closed:
                with contextlib.suppress(psycopg.Error):  # the session is gone, and the lock with it
                    self._conn.execute("SELECT pg_advisory_unlock(%s)", [self.key])
            self._drop()

    def __enter__(self) -> LeaderLock:
        return self

    def __exit__(self, *_: object) -> None:
        self.release()
