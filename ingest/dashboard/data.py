"""The status document: what ``ingest status --json`` prints and the dashboard's data endpoint serves.

One function for both, so the page's figures are the command's. Ages are taken against the
database's clock (as the metrics' gauges), next runs from the collection YAML's cron with APScheduler's
``CronTrigger`` (the trigger the scheduler runs).
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import UTC, datetime
from typing import Any

import psycopg

from ingest import collections as col
from ingest import ops
from ingest.adapters.queue import TASK, has_schema, job_counts
from ingest.collections import CollectionSpec, Retention
from ingest.quota import status as quota
from ingest.settings import Settings

QUEUE_STATUSES = ("todo", "doing")


def age_s(now: datetime, then: datetime | None) -> float | None:
    """Seconds from ``then`` to ``now`` (None when there is no ``then``), to a tenth of a second."""
    return None if then is None else round((now - then).total_seconds(), 1)


def next_run(expr: str, now: datetime) -> datetime | None:
    """When a 5-field cron expression (the collection YAML's meaning: Sunday = 0) fires next after ``now``, UTC."""
    from apscheduler.triggers.cron import CronTrigger

    trigger = CronTrigger.from_crontab(col.apscheduler_crontab(expr), timezone=UTC)
    fire: datetime | None = trigger.get_next_fire_time(None, now)
    return fire


def retention_doc(policy: Retention, now: datetime) -> dict[str, Any]:
    """The policy as the YAML says it, with the next scheduled run (None when retention is off)."""
    return {
        "enabled": policy.enabled,
        "max_age": col.iso_duration(policy.max_age) if policy.max_age is not None else None,
        "max_age_s": policy.max_age.total_seconds() if policy.max_age is not None else None,
        "anchor": policy.anchor,
        "keep_latest": policy.keep_latest,
        "area": policy.area is not None,
        "schedule": policy.schedule,
        "next_run": next_run(policy.schedule, now) if policy.enabled else None,
    }


def queue_per_collection(conn: psycopg.Connection, collections: Sequence[str]) -> dict[str, dict[str, int]]:
    """Product jobs waiting (todo) and running (doing) per collection: a job's lock is its product id."""
    out = {c: dict.fromkeys(QUEUE_STATUSES, 0) for c in collections}
    if not has_schema(conn):
        return out
    rows = conn.execute(
        "SELECT p.collection, j.status::text, count(*) FROM procrastinate_jobs j"
        " JOIN ingest.products p ON p.id = j.args->>'product_id'"
        " WHERE j.task_name = %s AND j.status::text = ANY(%s) AND p.collection = ANY(%s) GROUP BY 1, 2",
        [TASK, list(QUEUE_STATUSES), list(collections)],
    )
    for cid, status, n in rows:
        out[cid][status] = int(n)
    return out


def status_document(conn: psycopg.Connection, specs: Sequence[CollectionSpec], settings: Settings) -> dict[str, Any]:
    """``ingest status --json``: per collection its states, watermark, harvest lag, last harvest,
    queue, latest failures, retention with its next run and unfinished retirements; the providers'
    download slots and pauses; the queue's jobs per status."""
    row = conn.execute("SELECT now()").fetchone()
    assert row is not None
    now: datetime = row[0]
    ids = [s.id for s in specs]
    report = ops.status(conn, ids)
    queues = queue_per_collection(conn, ids)
    names = sorted({s.source.provider or settings.provider for s in specs})
    providers = quota.read(conn, providers=names, max_downloads=settings.provider_max_downloads)
    collections = []
    for spec, r in zip(specs, report, strict=True):
        doc = r.to_dict()
        doc.update(
            products=sum(r.states.values()),
            lag_s=age_s(now, r.watermark),  # how far behind the provider's publications the harvest is
            last_harvest_age_s=age_s(now, r.last_harvest_at),
            queue=queues[spec.id],
            retention=retention_doc(spec.retention, now),
        )
        collections.append(doc)
    return {
        "now": now,
        "collections": collections,
        "providers": [p.as_dict() for p in providers],
        "queue": job_counts(conn),
    }
