"""The reconciler: makes the queue and the products table agree again after something died.

Run by the leading scheduler every ``reconcile_interval_s`` (and once on taking the lead). Three passes:

1. stalled jobs: a running job whose worker stopped sending heartbeats (kill -9, lost machine).
   Its product is released (in flight -> discovered) *before* the job is put back to waiting, so
   the worker that picks the job up finds the product claimable.
   Then the queue's rows of those silent workers are deleted (after the releases, which name the
   worker): a killed worker never removes its own, and procrastinate prunes only when one starts.
2. orphans: products in flight for longer than ``orphan_after_s`` with no job at all (an
   ``ingest process`` run that was killed); released, and pass 3 enqueues them.
3. due products (discovered, or failed with a retry that is due) with no job: enqueued.

Every change is a guarded transition, so racing a live worker is harmless: if it moved the product
meanwhile, the transition finds another state, raises StateConflict, and we count a conflict.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field

import psycopg

from ingest.adapters.queue import ProductQueue, StalledJob
from ingest.collections import CollectionSpec
from ingest.errors import StateConflict
from ingest.settings import Settings
from ingest.state import repo
from ingest.state.db import connect
from ingest.state.machine import IN_FLIGHT, State

log = logging.getLogger(__name__)

# Per collection per pass: bounds one pass's time; a bigger backlog is taken by the next passes.
DUE_LIMIT = 10_000
ORPHAN_LIMIT = 10_000


@dataclass
class ReconcileReport:
    requeued_jobs: list[int] = field(default_factory=list)
    released_stalled: list[str] = field(default_factory=list)
    pruned_workers: list[int] = field(default_factory=list)  # queue rows of silent workers deleted
    released_orphans: list[str] = field(default_factory=list)
    enqueued: list[str] = field(default_factory=list)
    conflicts: int = 0  # guarded changes another actor won (nothing to do)
    errors: int = 0  # jobs that could not be requeued (logged one by one)
    seconds: float = 0.0

    def summary(self) -> str:
        return (
            f"{len(self.requeued_jobs)} stalled job(s) requeued ({len(self.released_stalled)} product(s) released), "
            f"{len(self.pruned_workers)} silent worker(s) pruned, "
            f"{len(self.released_orphans)} orphan(s) released, {len(self.enqueued)} due product(s) enqueued, "
            f"{self.conflicts} conflict(s), {self.errors} error(s) in {self.seconds:.2f} s"
        )


def reconcile(settings: Settings, specs: Mapping[str, CollectionSpec]) -> ReconcileReport:
    report = ReconcileReport()
    started = time.monotonic()
    with ProductQueue(settings) as queue, connect(settings, autocommit=True) as conn:
        for job in queue.stalled(settings.stall_timeout_s):
            _recover_stalled(conn, queue, job, report)
        # the same timeout the workers prune with at start (ingest.daemon.worker)
        report.pruned_workers = queue.prune_workers(settings.stall_timeout_s)
        _release_orphans(conn, queue.active(), settings.orphan_after_s, report)
        _enqueue_due(conn, queue, specs, report)
    report.seconds = time.monotonic() - started
    log.info("reconcile: %s", report.summary())
    return report


def _release(conn: psycopg.Connection, product_id: str, state: State, message: str, report: ReconcileReport) -> bool:
    try:
        repo.transition(conn, product_id, state, State.DISCOVERED, message=message)
    except StateConflict:
        report.conflicts += 1
        return False
    return True


def _recover_stalled(conn: psycopg.Connection, queue: ProductQueue, job: StalledJob, report: ReconcileReport) -> None:
    row = repo.get_product(conn, job.product_id)
    state = State(row["state"]) if row is not None else None
    worker = job.worker_id if job.worker_id is not None else "(gone)"
    if state in IN_FLIGHT and _release(conn, job.product_id, state, f"released: worker {worker} stalled", report):
        report.released_stalled.append(job.product_id)
    try:
        queue.requeue(job.job_id)
    except Exception as exc:  # procrastinate's errors stay in the adapter; one line, next pass retries
        report.errors += 1
        log.warning("reconcile: job %d (%s) not requeued: %s", job.job_id, job.product_id, exc)
        return
    report.requeued_jobs.append(job.job_id)


def _release_orphans(
    conn: psycopg.Connection, active: Iterable[str], orphan_after_s: float, report: ReconcileReport
) -> None:
    with_job = set(active)
    for product_id, state, since in repo.in_flight_since(conn, orphan_after_s, limit=ORPHAN_LIMIT):
        if product_id in with_job:
            continue  # a job holds it: pass 1 deals with it if its worker is dead
        message = f"released: orphan, {state.value} since {since.isoformat(timespec='seconds')} with no job"
        if _release(conn, product_id, state, message, report):
            report.released_orphans.append(product_id)


def _enqueue_due(
    conn: psycopg.Connection, queue: ProductQueue, specs: Mapping[str, CollectionSpec], report: ReconcileReport
) -> None:
    # taken after the releases above, so released products count as due and are not yet active
    active = queue.active()
    for collection_id in specs:
        for product_id in repo.due_products(conn, collection_id, limit=DUE_LIMIT):
            # one at a time so the report names what was added; the queueing lock makes it idempotent
            if product_id not in active and queue.enqueue([product_id]):
                report.enqueued.append(product_id)
