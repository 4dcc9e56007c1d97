"""The scheduler: harvests per collection and the reconciler, run by exactly one process at a time.

Two parts:

* ``jobs_for(specs, settings)``: pure. What runs, when: one harvest job per collection whose harvest
  is enabled (its cron or interval), a retention, an audit and an upstream job (the reconciliation
  with the provider, ``ingest reconcile``) per collection that enables them (their cron), one
  reconcile job (the queue's reconciler) every ``reconcile_interval_s``.
* ``run_scheduler(settings)``: the process. Any number may run (one per machine, say); they elect a
  leader with a PostgreSQL advisory lock (``ingest.daemon.leader``). The leader runs the jobs in an
  APScheduler ``BackgroundScheduler``; the others wait and try to take over every ``leader_poll_s``.
  The leader checks the lock as often; when it has lost it (its session died), it stops its jobs and
  goes back to waiting. SIGTERM / SIGINT: let a running job finish, release the lock, return.

Jobs live only in memory (APScheduler's default store): the plan comes from the collection files,
and interval harvests resume from each collection's last harvest time (``ingest.watermarks``), so a
restart or a failover neither skips nor repeats a harvest. A cron harvest whose time passed while no
scheduler led is not caught up; the next one re-reads the overlap window, so nothing is lost.
"""

from __future__ import annotations

import logging
import os
import signal
import socket
import threading
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from types import FrameType
from typing import Any, Literal

import psycopg

from ingest import collections as col
from ingest import metrics
from ingest.collections import CollectionSpec
from ingest.daemon import shutdown
from ingest.daemon.leader import LeaderLock
from ingest.dashboard.http import PREFIX as DASHBOARD
from ingest.dashboard.http import Dashboard
from ingest.errors import DatabaseUnavailable, IngestError, first_line
from ingest.settings import Settings, scrub
from ingest.state import repo
from ingest.state.db import connect

log = logging.getLogger(__name__)

LOCK_NAME = "ingest-scheduler"
JobKind = Literal["harvest", "retention", "audit", "upstream", "register", "reconcile"]
TriggerKind = Literal["cron", "interval"]
# A cron run late by less than this (executor busy, VM paused) still runs once (coalesce=True);
# later than that, the next fire is as good. Interval jobs use their own period instead.
CRON_MISFIRE_GRACE_S = 3600

# Harvest enqueues and the reconciler both write the queue. Serialised in the leader so a product
# the reconciler has just released is not enqueued by a harvest before its stalled job is requeued
# (procrastinate allows one waiting job per product: the requeue would then fail).
_QUEUE_WRITES = threading.Lock()


# ============================================================================ plan (pure)


@dataclass(frozen=True)
class PlannedJob:
    id: str  # "harvest:<c>", "retention:<c>", "audit:<c>", "upstream:<c>", "register:<target>", "reconcile"
    kind: JobKind
    trigger: TriggerKind
    trigger_args: Mapping[str, Any]  # cron: {"expr": "0 * * * *"}; interval: {"seconds": 3600.0}
    func: Callable[..., object]  # what runs: func(*args)
    args: tuple[Any, ...] = ()
    collection: str | None = None
    misfire_grace_s: int = CRON_MISFIRE_GRACE_S

    def make_trigger(self, start: datetime | None = None) -> Any:
        """The APScheduler 3 trigger, in UTC; ``start`` anchors an interval (its first fire)."""
        from apscheduler.triggers.cron import CronTrigger
        from apscheduler.triggers.interval import IntervalTrigger

        if self.trigger == "cron":
            return CronTrigger.from_crontab(col.apscheduler_crontab(self.trigger_args["expr"]), timezone=UTC)
        return IntervalTrigger(seconds=self.trigger_args["seconds"], start_date=start, timezone=UTC)

    def describe(self) -> str:
        if self.trigger == "cron":
            return f"cron '{self.trigger_args['expr']}' (UTC)"
        return f"every {_seconds_text(self.trigger_args['seconds'])}"


def _seconds_text(seconds: float) -> str:
    return f"{seconds:g} s" if seconds < 120 else str(timedelta(seconds=seconds))


def _harvest_job(spec: CollectionSpec, settings: Settings) -> PlannedJob:
    h = spec.harvest
    common: dict[str, Any] = {
        "id": f"harvest:{spec.id}",
        "kind": "harvest",
        "func": run_harvest,
        "args": (settings, spec.id),
        "collection": spec.id,
    }
    if h.cron is not None:
        return PlannedJob(trigger="cron", trigger_args={"expr": h.cron}, **common)
    assert h.interval is not None  # the spec guarantees exactly one of cron / interval
    seconds = h.interval.total_seconds()
    return PlannedJob(
        trigger="interval", trigger_args={"seconds": seconds}, misfire_grace_s=max(1, int(seconds)), **common
    )


def _collection_cron_job(
    kind: JobKind, spec: CollectionSpec, settings: Settings, expr: str, func: Callable[[Settings, str], None]
) -> PlannedJob:
    """A collection's retention run, audit or upstream reconciliation: ``func(settings, collection id)`` on
    the spec's cron."""
    return PlannedJob(
        id=f"{kind}:{spec.id}",
        kind=kind,
        trigger="cron",
        trigger_args={"expr": expr},
        func=func,
        args=(settings, spec.id),
        collection=spec.id,
    )


def _reconcile_job(specs: Mapping[str, CollectionSpec], settings: Settings) -> PlannedJob:
    seconds = settings.reconcile_interval_s
    return PlannedJob(
        id="reconcile",
        kind="reconcile",
        trigger="interval",
        trigger_args={"seconds": seconds},
        func=run_reconcile,
        args=(settings, dict(specs)),
        misfire_grace_s=max(1, int(seconds)),
    )


def jobs_for(specs: Mapping[str, CollectionSpec], settings: Settings) -> list[PlannedJob]:
    """Every job the leader runs: harvests, retention runs, audits and upstream reconciliations of the
    collections that enable them (by id), a push per registration target, then the queue's reconciler."""
    jobs = [_harvest_job(specs[cid], settings) for cid in sorted(specs) if specs[cid].harvest.enabled]
    for cid in sorted(specs):
        spec = specs[cid]
        if spec.retention.enabled:
            jobs.append(_collection_cron_job("retention", spec, settings, spec.retention.schedule, run_retention))
    for cid in sorted(specs):
        spec = specs[cid]
        if spec.audit.enabled:
            jobs.append(_collection_cron_job("audit", spec, settings, spec.audit.schedule, run_audit))
    for cid in sorted(specs):
        spec = specs[cid]
        if spec.upstream.reconcile is not None:
            jobs.append(_collection_cron_job("upstream", spec, settings, spec.upstream.reconcile, run_upstream))
    for target in settings.register_targets:
        seconds = target.interval_s
        jobs.append(PlannedJob(
            id=f"register:{target.name}", kind="register", trigger="interval", trigger_args={"seconds": seconds},
            func=run_register, args=(settings, target.name), misfire_grace_s=max(1, int(seconds)),
        ))  # fmt: skip
    jobs.append(_reconcile_job(specs, settings))
    return jobs


def first_runs(plan: list[PlannedJob], last_harvest: Mapping[str, datetime], now: datetime) -> dict[str, datetime]:
    """When interval jobs first fire in a new leadership term (cron jobs follow their cron).

    The reconciler runs at once (whatever died with the previous leader is repaired first); an
    interval harvest one period after that collection's last harvest, or at once when that is past
    or unknown, so a failover neither skips a harvest nor repeats one that just ran.
    """
    out: dict[str, datetime] = {}
    for job in plan:
        if job.trigger != "interval":
            continue
        due = now
        last = last_harvest.get(job.collection) if job.kind == "harvest" and job.collection else None
        if last is not None:
            due = max(now, last + timedelta(seconds=job.trigger_args["seconds"]))
        out[job.id] = due
    return out


# ============================================================================ the jobs


def run_harvest(settings: Settings, collection_id: str) -> None:
    """One harvest, then every due product of the collection to the queue."""
    from ingest.adapters.queue import ProductQueue
    from ingest.app import App

    app = App(settings)
    found = app.harvest(collection_id)
    with _QUEUE_WRITES, ProductQueue(settings) as queue:
        added = queue.enqueue(app.due(collection_id))
    log.info("harvest %s: %d seen, %d new, %d enqueued", collection_id, found.seen, len(found.new_ids), added)


def run_retention(settings: Settings, collection_id: str) -> None:
    """The collection's policy, as ``ingest retain COLLECTION --yes`` (never forced); logs what went."""
    from ingest import retention
    from ingest.app import App
    from ingest.state.db import connect

    app = App(settings)
    with connect(settings) as conn, retention.exclusive(conn, collection_id):
        plan = retention.plan(conn, app.spec(collection_id))
        retention.enforce(
            conn, plan, pgstac_dsn=settings.require_database_url(), store=app.store,
            batch_size=settings.retention_batch_size,
        )  # fmt: skip


def run_audit(settings: Settings, collection_id: str) -> None:
    """The collection's audit, as ``ingest audit COLLECTION`` without --repair (recorded, logged)."""
    from ingest.app import App
    from ingest.audit.run import audit

    app = App(settings)
    spec = app.spec(collection_id)
    with connect(settings) as conn:
        audit(conn, settings, app.store, spec, deep=spec.audit.deep, scheduled=True)


def run_upstream(settings: Settings, collection_id: str) -> None:
    """The collection's reconciliation with the provider over its last ``upstream.window_days`` days of
    sensing time, as ``ingest reconcile`` (with ``--repair`` only when ``upstream.repair``); logs and
    sets ``ingest_upstream_differences``."""
    from ingest.app import App
    from ingest.upstream.repair import Repairer
    from ingest.upstream.run import reconcile

    app = App(settings)
    spec = app.spec(collection_id)
    end = datetime.now(UTC).replace(microsecond=0)
    start = end - timedelta(days=spec.upstream.window_days)
    with connect(settings) as conn:
        repairer = Repairer(conn, settings, app.store, spec, queue_lock=_QUEUE_WRITES) if spec.upstream.repair else None
        reconcile(conn, app.provider(spec), spec, start=start, end=end, repairer=repairer, scheduled=True)


def run_register(settings: Settings, target: str) -> None:
    """A push to the target, as ``ingest register TARGET``: each collection's line logged (by the push)."""
    from ingest.federation import push

    (found,) = push.targets(settings, target)
    push.raise_for([push.push(settings, found)])


def run_reconcile(settings: Settings, specs: Mapping[str, CollectionSpec]) -> None:
    from ingest.daemon.reconcile import reconcile

    with _QUEUE_WRITES:
        reconcile(settings, specs)  # logs its own line


def _guarded(job: PlannedJob, settings: Settings, leading: Callable[[], bool]) -> Callable[[], None]:
    """The job as APScheduler runs it: an error is one log line, never the scheduler's end. It starts only
    while ``leading()``: a database restart ends the lock's session at once, the leader's loop notices
    only at its next poll, and meanwhile another scheduler may have taken the lock."""

    def run() -> None:
        if not leading():
            log.warning("%s not run: leadership lost (the lock's database session ended)", job.id)
            return
        try:
            job.func(*job.args)
        except Exception as exc:
            first = scrub(first_line(exc), *settings.secrets())
            log.error("%s failed: %s", job.id, first, exc_info=log.isEnabledFor(logging.DEBUG))

    return run


# ============================================================================ the process


def identity() -> str:
    return f"{socket.gethostname()}:{os.getpid()}"


def last_harvests(settings: Settings) -> dict[str, datetime]:
    """Each collection's last harvest time; empty when unknown (then every harvest runs at once)."""
    try:
        with connect(settings) as conn:
            return repo.last_harvests(conn)
    except (IngestError, psycopg.Error) as exc:
        log.warning("last harvest times unknown (%s): every interval harvest runs now", exc)
        return {}


def _start_jobs(plan: list[PlannedJob], settings: Settings, leading: Callable[[], bool]) -> Any:
    from apscheduler.schedulers.background import BackgroundScheduler

    sched = BackgroundScheduler(timezone=UTC, job_defaults={"coalesce": True, "max_instances": 1})
    now = datetime.now(UTC)
    starts = first_runs(plan, last_harvests(settings), now)
    for job in plan:
        start = starts.get(job.id)
        trigger = job.make_trigger(start)
        first = start or trigger.get_next_fire_time(None, now)
        timing: dict[str, Any] = {"next_run_time": start} if start is not None else {}
        sched.add_job(
            _guarded(job, settings, leading), trigger=trigger, id=job.id, name=job.id,
            misfire_grace_time=job.misfire_grace_s, **timing,
        )  # fmt: skip
        log.info("job %s: %s, first run %s", job.id, job.describe(), "now" if first <= now else _utc(first))
    sched.start()
    return sched


def _utc(when: datetime) -> str:
    return when.astimezone(UTC).isoformat(timespec="seconds").replace("+00:00", "Z")


def _lead(lock: LeaderLock, plan: list[PlannedJob], settings: Settings, stop: threading.Event) -> None:
    """Run the jobs while the lock holds; return on stop or when leadership is lost."""
    from ingest.adapters.queue import ensure_schema

    log.info("leader: %s leads (lock session pid %s); starting %d job(s)", identity(), lock.backend_pid, len(plan))
    ensure_schema(settings.require_database_url())  # a fresh site: the first leader creates the queue
    sched = _start_jobs(plan, settings, lock.still_held)
    try:
        while not stop.wait(settings.leader_poll_s):
            if not lock.still_held():
                log.error("leadership lost (the lock's database session ended): stopping jobs, back to standby")
                return
    finally:
        sched.shutdown(wait=True)  # a running job finishes: no overlap with our own next term
        log.info("scheduler jobs stopped")


def _standby_reason(lock: LeaderLock) -> str | None:
    """None when this process now leads; otherwise why it waits."""
    try:
        if lock.try_acquire():
            return None
    except DatabaseUnavailable as exc:
        return exc.message
    holder = lock.holder()
    return "another scheduler leads" + (f" ({holder})" if holder else "")


def _install_signals(stop: threading.Event) -> Callable[[], None]:
    """SIGTERM / SIGINT set ``stop``; returns what puts the previous handlers back."""
    if threading.current_thread() is not threading.main_thread():
        log.warning("not the main thread: no signal handlers; stop through the stop event")
        return lambda: None

    def on_signal(signum: int, _frame: FrameType | None) -> None:
        log.info("%s received: stopping after the running job", signal.Signals(signum).name)
        stop.set()

    previous = {sig: signal.signal(sig, on_signal) for sig in (signal.SIGTERM, signal.SIGINT)}

    def restore() -> None:
        for sig, handler in previous.items():
            signal.signal(sig, handler)

    return restore


def _publish_changed(settings: Settings, specs: list[col.CollectionSpec]) -> None:
    """At start: the collection documents follow their files (a policy edited, then the daemon restarted)."""
    from ingest.catalog.publish import publish_changed

    try:
        for cid in publish_changed(settings, specs):
            log.info("published %s: its collection file changed since it was last published", cid)
    except IngestError as exc:  # the database away at start: the leader loop waits for it anyway
        log.warning("collections not published at start: %s", exc)


def run_scheduler(settings: Settings, *, stop: threading.Event | None = None, install_signals: bool = True) -> None:
    """Lead or stand by until stopped (SIGTERM / SIGINT when ``install_signals``, or ``stop``)."""
    stop = stop or threading.Event()
    # APScheduler says "running job"/"executed successfully" at INFO for every run; we log the
    # outcome ourselves. Its warnings (missed runs, a run skipped because the last one still runs) stay.
    if logging.getLogger().getEffectiveLevel() > logging.DEBUG:  # --debug shows everything
        logging.getLogger("apscheduler").setLevel(logging.WARNING)
    specs = col.load_all(settings.collections_dir)
    plan = jobs_for(specs, settings)
    log.info("scheduler %s: %d job(s) planned: %s", identity(), len(plan), ", ".join(j.id for j in plan))
    _publish_changed(settings, list(specs.values()))
    lock = LeaderLock(settings.require_database_url(), LOCK_NAME, connect_timeout_s=settings.db_connect_timeout_s)
    # --- operating (issue 8): /metrics with the site gauges, /livez, /readyz; off when INGEST_METRICS_PORT=0
    # and the operator dashboard beside the site gauges (scheduler only, as they are: ingest.dashboard)
    endpoint = metrics.serve(
        settings,
        "scheduler",
        live={"loop": metrics.thread_alive(threading.current_thread())},
        ready={"database": metrics.database_check(settings)},
        routes={DASHBOARD: Dashboard(settings, ttl_s=settings.dashboard_cache_s).route},
    )
    metrics.leader_gauge(lambda: lock.held)
    # ---
    restore = _install_signals(stop) if install_signals else (lambda: None)
    if shutdown.requested():  # SIGTERM while starting
        stop.set()
    said: str | None = None  # the standby reason last logged: said once, not at every poll
    try:
        while not stop.is_set():
            reason = _standby_reason(lock)
            if reason is None:
                said = None
                _lead_safely(lock, plan, settings, stop)
                continue
            if reason != said:
                log.info("standby: %s; trying again every %g s", reason, settings.leader_poll_s)
                said = reason
            stop.wait(settings.leader_poll_s)
    finally:
        lock.release()
        restore()
        metrics.stop(endpoint)  # issue 8
        log.info("scheduler %s: stopped", identity())


def _lead_safely(lock: LeaderLock, plan: list[PlannedJob], settings: Settings, stop: threading.Event) -> None:
    try:
        _lead(lock, plan, settings, stop)
    except DatabaseUnavailable as exc:  # e.g. the queue schema could not be checked: let another try
        log.error("leader: %s; giving the lead up", exc.message)
        lock.release()
        stop.wait(settings.leader_poll_s)
