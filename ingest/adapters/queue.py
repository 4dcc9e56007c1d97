"""The work queue: one procrastinate job per product, in the PostgreSQL the catalogue already uses.

Why these locks: ``queueing_lock = product id`` keeps at most one waiting job per product (enqueueing
it again is a no-op, so harvests, backfills and the reconciler can all enqueue freely), and
``lock = product id`` keeps two jobs of one product from running at once. The product state machine's
guarded claim is the last line: even a job run by hand cannot take a product someone else holds.

Only this module imports procrastinate; the task itself lives in ``ingest.jobs``.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import datetime
from typing import Any

import procrastinate
import psycopg
from procrastinate import sql
from procrastinate.exceptions import AlreadyEnqueued, UniqueViolation

from ingest.settings import Settings
from ingest.state.db import connect

log = logging.getLogger(__name__)

QUEUE = "products"
TASK = "ingest:process_product"


@dataclass(frozen=True)
class StalledJob:
    job_id: int
    product_id: str
    worker_id: int | None


def make_app(settings: Settings, *, sync: bool = False) -> procrastinate.App:
    """A procrastinate app on our database with the product task registered.

    ``sync``: for deferring and inspecting from ordinary code; the worker needs the async connector.
    """
    from ingest.jobs import blueprint

    dsn = settings.require_database_url()
    connector: Any = (
        procrastinate.SyncPsycopgConnector(conninfo=dsn, min_size=1, max_size=2)
        if sync
        else procrastinate.PsycopgConnector(conninfo=dsn, min_size=1, max_size=4)
    )
    app = procrastinate.App(connector=connector)
    app.add_tasks_from(blueprint, namespace="ingest")
    return app


def ensure_schema(dsn: str) -> bool:
    """Create procrastinate's tables when missing (first migration); True when it did.

    procrastinate ships one schema file per release plus migrations between releases; we pin the
    version in the lock file and apply the schema once. An upgrade of procrastinate must add its
    migration files as an alembic revision (see README, 'Upgrading').
    """
    from procrastinate.schema import SchemaManager

    with connect(dsn=dsn, autocommit=True) as conn:
        if has_schema(conn):
            return False
        conn.execute(SchemaManager.get_schema())
    return True


def has_schema(conn: psycopg.Connection) -> bool:
    row = conn.execute("SELECT to_regclass('procrastinate_jobs') IS NOT NULL").fetchone()
    return bool(row and row[0])


def job_counts(conn: psycopg.Connection, statuses: Iterable[str] | None = None) -> dict[str, int]:
    """Product jobs per status (todo, doing, succeeded, failed, ...), only ``statuses`` when given
    (the finished ones pile up: a frequent reader asks for todo and doing only); empty before the
    queue's schema exists."""
    if not has_schema(conn):
        return {}
    wanted = list(statuses) if statuses is not None else None
    rows = conn.execute(
        "SELECT status::text, count(*) FROM procrastinate_jobs WHERE task_name = %s"
        " AND (%s::text[] IS NULL OR status::text = ANY(%s::text[])) GROUP BY 1",
        [TASK, wanted, wanted],
    )
    return {status: int(n) for status, n in rows}


class ProductQueue:
    """Enqueue and inspect product jobs (synchronous; the worker runs its own async app)."""

    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self.dsn = settings.require_database_url()
        self._app = make_app(settings, sync=True)

    def __enter__(self) -> ProductQueue:
        with connect(dsn=self.dsn, timeout_s=self.settings.db_connect_timeout_s):
            pass  # a clear DatabaseUnavailable (host, port, db; no password) before the pool retries quietly
        self._app.open()
        return self

    def __exit__(self, *_: object) -> None:
        self._app.close()

    def enqueue(self, product_ids: Iterable[str], *, schedule_at: datetime | None = None) -> int:
        """One job per product unless one is already waiting; returns how many were added."""
        added = 0
        for pid in product_ids:
            deferrer = self._app.configure_task(TASK, queue=QUEUE, lock=pid, queueing_lock=pid, schedule_at=schedule_at)
            try:
                deferrer.defer(product_id=pid)
            except AlreadyEnqueued:
                continue
            added += 1
        return added

    def _rows(self, sql: str, params: list[Any]) -> list[tuple[Any, ...]]:
        with connect(dsn=self.dsn, autocommit=True, timeout_s=self.settings.db_connect_timeout_s) as conn:
            return conn.execute(sql, params).fetchall()

    def active(self) -> set[str]:
        """Products with a job waiting or running."""
        rows = self._rows(
            "SELECT args->>'product_id' FROM procrastinate_jobs WHERE task_name = %s AND status IN ('todo', 'doing')",
            [TASK],
        )
        return {r[0] for r in rows}

    def stalled(self, seconds_since_heartbeat: float) -> list[StalledJob]:
        """Running jobs whose worker stopped sending heartbeats (killed, machine lost)."""
        rows = self._rows(
            """
            SELECT j.id, j.args->>'product_id', j.worker_id
              FROM procrastinate_jobs j
              LEFT JOIN procrastinate_workers w ON w.id = j.worker_id
             WHERE j.status = 'doing' AND j.task_name = %s
               AND (w.id IS NULL OR w.last_heartbeat < now() - make_interval(secs => %s))
            """,
            [TASK, seconds_since_heartbeat],
        )
        return [StalledJob(r[0], r[1], r[2]) for r in rows]

    def prune_workers(self, seconds_since_heartbeat: float) -> list[int]:
        """Delete the rows of workers silent for longer than this; returns their ids.

        procrastinate's own query, which its workers run only when they start: a killed worker never
        unregisters, so its row stays until then. Its running jobs are left with ``worker_id`` NULL,
        which ``stalled`` counts as stalled.
        """
        rows = self._app.connector.execute_query_all(
            query=sql.queries["prune_stalled_workers"], seconds_since_heartbeat=seconds_since_heartbeat
        )
        return sorted(int(r["worker_id"]) for r in rows)

    def requeue(self, job_id: int) -> bool:
        """Put a stalled job back to waiting (same id, same attempt count); True when it was.

        When another job of the product is already waiting (a harvest or backfill enqueued it), the
        stalled one is closed as failed instead: that waiting job does the work, and a job left
        'doing' would hold the product's lock forever.
        """
        try:
            self._app.job_manager.retry_job_by_id(job_id=job_id, retry_at=datetime.now().astimezone())
            return True
        except UniqueViolation:
            self._rows(
                "UPDATE procrastinate_jobs SET status = 'failed' WHERE id = %s AND status = 'doing' RETURNING id",
                [job_id],
            )
            return False

    def depth(self) -> dict[str, int]:
        """Jobs per status (todo, doing, succeeded, failed, ...)."""
        with connect(dsn=self.dsn, autocommit=True, timeout_s=self.settings.db_connect_timeout_s) as conn:
            return job_counts(conn)
