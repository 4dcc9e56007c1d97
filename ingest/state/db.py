"""Connections to PostgreSQL: psycopg for the daemon, a SQLAlchemy URL for alembic.

Connection failures are translated into DatabaseUnavailable with a message that names host, port
and database but never the password; a malformed DSN is a ConfigError before libpq sees it.
``Database`` is the connection of a long run of state changes (one product through the pipeline):
opened again when the server restarts under it.
"""

from __future__ import annotations

import contextlib
import logging
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any, TypeVar

import psycopg

from ingest.dsn import parse, password_of
from ingest.errors import DatabaseUnavailable
from ingest.settings import Settings, load_settings, scrub

log = logging.getLogger(__name__)

T = TypeVar("T")
# Backoff between tries after a lost connection: a restart's crash recovery takes about a second.
RETRY_FIRST_S = 0.1
RETRY_MAX_S = 1.0
# A server that vanished without closing the connection (machine lost, network cut) must not hang a
# state change for the kernel's TCP timeout (minutes): unacknowledged data gives up after this long.
TCP_USER_TIMEOUT_MS = 10_000


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
    conn = _open(dsn, setting=setting, autocommit=autocommit, timeout_s=timeout_s)
    try:
        yield conn
    finally:
        conn.close()


# Connections whose session holds something (the leader lock, download slots): a dead peer is
# detected after about IDLE + INTERVAL * COUNT seconds of silence (25 s), and unacknowledged data
# (a check sent into a black hole) gives up after TCP_USER_TIMEOUT_MS.
KEEPALIVE_IDLE_S = 10
KEEPALIVE_INTERVAL_S = 5
KEEPALIVE_COUNT = 3
TCP_USER_TIMEOUT_MS = 20_000


def _open(dsn: str, *, setting: str, autocommit: bool, timeout_s: int, **options: Any) -> psycopg.Connection:
    # libpq's own message about a malformed string would quote it, password included
    target = parse(dsn, setting=setting).where
    try:
        return psycopg.connect(dsn, autocommit=autocommit, connect_timeout=timeout_s, **options)
    except psycopg.OperationalError as exc:
        raise DatabaseUnavailable(f"database {target} unreachable: {_detail(exc, dsn)}") from None


def _detail(exc: BaseException, dsn: str | None) -> str:
    """An error's first line, with the DSN and its password removed."""
    first = (str(exc).strip().splitlines() or [type(exc).__name__])[0]
    return scrub(first, dsn, password_of(dsn)) if dsn else first


def lost(exc: BaseException, conn: psycopg.Connection | None) -> bool:
    """Whether ``exc`` means the connection is gone (server restarted or killed the session, network
    cut), not that the server refused a statement on a live session."""
    return isinstance(exc, psycopg.OperationalError) and (conn is None or conn.closed or conn.broken)


class Database:
    """The connection of a long run of state changes, opened again when it breaks.

    ``run(op)`` calls ``op(conn, resumed)``. When the connection is lost (the server restarted, the
    session was killed, the network cut), a new one is opened and ``op`` called again, backing off
    from 0.1 s to 1 s, for ``retry_for_s`` at most; then DatabaseUnavailable("database connection
    lost: ..."). ``resumed`` is True on every call after a loss: the lost call may have committed (its
    COMMIT sent, the answer lost), so ``op`` must recognise its own change rather than make it twice
    or refuse it (``repo.transition(..., resumed=True)`` does). Other errors are the caller's.

    Not thread-safe: one product run owns it.
    """

    def __init__(
        self,
        dsn: str | None,
        *,
        retry_for_s: float,
        connect_timeout_s: int = 5,
        conn: psycopg.Connection | None = None,
        sleep: Callable[[float], None] = time.sleep,
    ) -> None:
        self._dsn = dsn  # None: the caller's ``conn``, never reopened
        self.retry_for_s = retry_for_s
        self._timeout_s = connect_timeout_s
        self._conn = conn
        self._sleep = sleep

    @classmethod
    def from_settings(cls, settings: Settings, *, retry_for_s: float | None = None) -> Database:
        """Retrying for one heartbeat interval by default: a worker silent for longer is in trouble."""
        return cls(
            settings.require_database_url(),
            retry_for_s=settings.worker_heartbeat_s if retry_for_s is None else retry_for_s,
            connect_timeout_s=settings.db_connect_timeout_s,
        )

    @classmethod
    def of(cls, conn: psycopg.Connection) -> Database:
        """A caller's connection: used as it is, not reopened, not closed here."""
        return cls(None, retry_for_s=0.0, conn=conn)

    def connection(self) -> psycopg.Connection:
        """The current connection, opened if there is none or it is closed."""
        if self._conn is None or self._conn.closed:
            if self._dsn is None:
                raise DatabaseUnavailable("the connection is closed")
            self._conn = _open(
                self._dsn, setting="INGEST_DATABASE_URL", autocommit=True, timeout_s=self._timeout_s,
                keepalives=1, tcp_user_timeout=TCP_USER_TIMEOUT_MS,
            )  # fmt: skip
        return self._conn

    def run(
        self,
        op: Callable[[psycopg.Connection, bool], T],
        *,
        retry_for_s: float | None = None,
        give_up: Callable[[], bool] = lambda: False,
    ) -> T:
        """``op(conn, resumed)``, again on a new connection after a loss, for ``retry_for_s`` (default
        the instance's) or until ``give_up()`` says so."""
        bound = self.retry_for_s if retry_for_s is None else retry_for_s
        first: str | None = None  # the loss itself (what follows is mostly "connection refused")
        started = 0.0
        resumed = False
        delay = RETRY_FIRST_S
        while True:
            conn: psycopg.Connection | None = None
            try:
                conn = self.connection()
                return op(conn, resumed)
            except (psycopg.OperationalError, DatabaseUnavailable) as exc:
                if isinstance(exc, psycopg.OperationalError) and not lost(exc, conn):
                    raise
                cause = exc.message if isinstance(exc, DatabaseUnavailable) else _detail(exc, self._dsn)
                resumed = resumed or conn is not None  # a call went out: it may have been applied
                self.close()
                if first is None:
                    first, started = cause, time.monotonic()
                left = started + bound - time.monotonic()
                if self._dsn is None or left <= 0 or give_up():
                    waited = f"; not back after {time.monotonic() - started:.1f} s" if self._dsn is not None else ""
                    raise DatabaseUnavailable(f"database connection lost: {first}{waited}") from None
                log.debug("database connection lost (%s); trying again in %.1f s", cause, delay)
                self._sleep(min(delay, left))
                delay = min(delay * 2, RETRY_MAX_S)

    def close(self) -> None:
        if self._dsn is None:
            return  # the caller's connection: theirs to close
        if self._conn is not None:
            with contextlib.suppress(psycopg.Error):  # broken already: nothing to close cleanly
                self._conn.close()
        self._conn = None

    def __enter__(self) -> Database:
        return self

    def __exit__(self, *_: object) -> None:
        self.close()


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
