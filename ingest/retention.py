"""Retention: which catalogued products a collection's policy removes, and removing them safely.

Enforcement is three steps, each recorded before the next starts, so a crash anywhere leaves a
state the next run finishes and never one a reader can trip on:

1. retire: the products move to ``retired`` (event + a ``retirements`` row each), in one
   transaction per batch. Their items and objects are still there and still consistent.
2. items: deleted from pgstac, the retirement rows marked and the collection's extent recomputed,
   all in one transaction. From here on nothing points at the objects.
3. objects: deleted under the item's own prefix, then the rows marked. A crash before the mark
   just deletes again (nothing there) on the next run.

Every run starts by finishing the retirements an earlier run left pending, and callers hold the
collection's lock (``exclusive``) from the plan to the end, so two runs never race. Objects are
deleted only under ``{store prefix}/{collection}/{item id}/`` of the configured store, and only when
that is where the product recorded them; anything else is left and reported.
"""

from __future__ import annotations

import json
import logging
import time
import uuid
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from contextlib import AbstractContextManager
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta

import psycopg

from ingest import metrics
from ingest.adapters import pgstac
from ingest.adapters.s3 import ObjectStore
from ingest.collections import CollectionSpec, Retention
from ingest.errors import IngestError
from ingest.state import locks
from ingest.state import retirements as rt
from ingest.units import human_size

log = logging.getLogger(__name__)

OBJECT_DELETE_THREADS = 8
ANALYZE_AFTER = 10_000  # retirements in one run that call for fresh table statistics


class RetentionRefused(IngestError):
    """The policy would leave the collection empty; an operator must say so (--force)."""

    exit_code = 65


class RetentionRunning(IngestError):
    """Another process enforces the collection's policy right now."""

    exit_code = 75  # EX_TEMPFAIL: it can be run once the other one ends


def exclusive(conn: psycopg.Connection, collection: str) -> AbstractContextManager[None]:
    """Hold the collection's retention lock (scheduler and operator alike): a second run would
    select the same products and race for the same items and objects."""
    busy = RetentionRunning(f"{collection}: a retention run is already in progress in another process")
    return locks.exclusive(conn, rt.lock_key(collection), busy)


# ============================================================================ plan (pure parts)


def cutoff_for(policy: Retention, now: datetime) -> datetime | None:
    return now - policy.max_age if policy.max_age is not None else None


def reason_for(match: rt.Match, policy: Retention, cutoff: datetime | None) -> str:
    if cutoff is not None and match.anchored < cutoff:
        assert policy.max_age is not None
        what = "sensing time" if policy.anchor == "sensing" else "ingestion time"
        return f"{what} {_iso(match.anchored)} older than {_days(policy.max_age)}"
    return "outside the area kept"


def _iso(when: datetime) -> str:
    return when.astimezone(UTC).isoformat(timespec="seconds")


def _days(delta: timedelta) -> str:
    if delta.seconds == 0 and delta.microseconds == 0:
        return f"{delta.days} days"
    return str(delta)


@dataclass(frozen=True)
class Plan:
    collection: str
    policy: Retention
    now: datetime
    cutoff: datetime | None
    total_items: int
    remove: tuple[rt.Match, ...]
    kept_by_minimum: int

    @property
    def count(self) -> int:
        return len(self.remove)

    @property
    def bytes(self) -> int:
        return sum(m.bytes for m in self.remove)

    @property
    def oldest(self) -> datetime | None:
        return self.remove[0].anchored if self.remove else None

    @property
    def newest(self) -> datetime | None:
        return self.remove[-1].anchored if self.remove else None

    @property
    def removes_all(self) -> bool:
        return self.count > 0 and self.count >= self.total_items

    def lines(self, *, with_ids: bool = False) -> list[str]:
        """The dry run as an operator reads it."""
        p = self.policy
        rules = [f"max_age {_days(p.max_age)} on {p.anchor} time" if p.max_age else "", "area" if p.area else ""]
        head = f"{self.collection}: {self.count} of {self.total_items} items would go ({human_size(self.bytes)})"
        out = [head, f"  policy: {', '.join(r for r in rules if r)}, keep_latest {p.keep_latest}"]
        if self.oldest and self.newest:
            out.append(f"  affected {p.anchor} times: {_iso(self.oldest)} .. {_iso(self.newest)}")
        if self.kept_by_minimum:
            out.append(f"  {self.kept_by_minimum} more kept by keep_latest")
        if self.removes_all:
            out.append("  this removes every item of the collection: refused unless --force")
        if with_ids:
            out.extend(f"  {m.item_id}" for m in self.remove)
        return out

    def to_dict(self, *, with_ids: bool = False) -> dict[str, object]:
        doc: dict[str, object] = {
            "collection": self.collection,
            "policy": self.policy.published(),
            "cutoff": self.cutoff.isoformat() if self.cutoff else None,
            "items": self.total_items,
            "remove": self.count,
            "bytes": self.bytes,
            "oldest": self.oldest.isoformat() if self.oldest else None,
            "newest": self.newest.isoformat() if self.newest else None,
            "kept_by_keep_latest": self.kept_by_minimum,
            "removes_all": self.removes_all,
        }
        if with_ids:
            doc["ids"] = [m.item_id for m in self.remove]
        return doc


def plan(conn: psycopg.Connection, spec: CollectionSpec, *, now: datetime | None = None) -> Plan:
    """What the collection's policy removes now. Reads only."""
    policy = spec.retention
    now = now or datetime.now(UTC)
    cutoff = cutoff_for(policy, now)
    area = json.dumps(policy.area) if policy.area is not None else None
    found = rt.matches(conn, spec.id, anchor=policy.anchor, cutoff=cutoff, area=area, keep_latest=policy.keep_latest)
    return Plan(
        collection=spec.id,
        policy=policy,
        now=now,
        cutoff=cutoff,
        total_items=rt.item_count(conn, spec.id),
        remove=tuple(m for m in found if not m.kept),
        kept_by_minimum=sum(1 for m in found if m.kept),
    )


# ============================================================================ enforcement


@dataclass
class Report:
    collection: str
    run_id: str
    retired: int = 0
    items_deleted: int = 0
    objects_deleted: int = 0
    bytes: int = 0
    finished_earlier: int = 0  # retirements of an earlier run completed by this one
    errors: list[str] = field(default_factory=list)
    seconds: dict[str, float] = field(default_factory=dict)  # per phase: retire, items, objects

    def to_dict(self) -> dict[str, object]:
        return dict(self.__dict__)


def enforce(
    conn: psycopg.Connection,
    the_plan: Plan,
    *,
    pgstac_dsn: str,
    store: ObjectStore,
    force: bool = False,
    batch_size: int = 1000,
) -> Report:
    """Finish what earlier runs left (refused or not), then retire, unlist and delete what ``the_plan``
    selected."""
    c = the_plan.collection
    report = Report(c, run_id=f"{datetime.now(UTC):%Y%m%dT%H%M%SZ}-{uuid.uuid4().hex[:8]}")
    report.finished_earlier = finish(conn, c, pgstac_dsn=pgstac_dsn, store=store, report=report, batch_size=batch_size)
    if the_plan.removes_all and not force:
        raise RetentionRefused(
            f"{c}: the retention policy would remove all {the_plan.total_items} items; nothing retired"
            " (check max_age/area, set keep_latest, or pass --force)"
        )
    chosen = [(m.product_id, reason_for(m, the_plan.policy, the_plan.cutoff), m.bytes) for m in the_plan.remove]
    started = time.perf_counter()
    for start in range(0, len(chosen), batch_size):
        moved = rt.retire(conn, c, report.run_id, chosen[start : start + batch_size])
        report.retired += len(moved)
        log.info("retention %s: %d products retired (%d of %d)", c, len(moved), report.retired, len(chosen))
    report.bytes = the_plan.bytes
    if report.retired >= ANALYZE_AFTER:
        rt.analyze(conn)
    report.seconds["retire"] = time.perf_counter() - started
    finish(conn, c, pgstac_dsn=pgstac_dsn, store=store, report=report, batch_size=batch_size)
    log.info(
        "retention %s: run %s retired %d products, deleted %d items and %d objects (%d bytes); %d left by an earlier"
        " run finished; %d errors",
        c,
        report.run_id,
        report.retired,
        report.items_deleted,
        report.objects_deleted,
        report.bytes,
        report.finished_earlier,
        len(report.errors),
    )
    return report


def finish(
    conn: psycopg.Connection,
    collection: str,
    *,
    pgstac_dsn: str,
    store: ObjectStore,
    report: Report,
    batch_size: int = 1000,
) -> int:
    """Delete the items, then the objects, of every retirement of the collection still pending;
    returns how many retirements were pending."""
    started = time.perf_counter()
    todo = rt.pending(conn, collection)
    pending = len(todo)
    product_of = {p.item_id: p.product_id for p in todo if not p.item_deleted}
    if product_of:

        def record(tx: psycopg.Connection, ids: list[str]) -> None:
            rt.mark_items_deleted(tx, [product_of[i] for i in ids])

        ids = list(product_of)
        deleted = pgstac.delete_items(pgstac_dsn, collection, ids, batch_size=batch_size, on_deleted=record)
        report.items_deleted += deleted
        metrics.retention_removed(collection, deleted)
        log.info("retention %s: %d items deleted from pgstac, extent refreshed", collection, deleted)
        todo = rt.pending(conn, collection)  # those without objects are done now
    report.seconds["items"] = report.seconds.get("items", 0.0) + time.perf_counter() - started
    started = time.perf_counter()
    for start in range(0, len(todo), batch_size):
        _delete_objects(conn, collection, todo[start : start + batch_size], store, report)
    report.seconds["objects"] = report.seconds.get("objects", 0.0) + time.perf_counter() - started
    return pending


def _delete_objects(
    conn: psycopg.Connection, collection: str, batch: Sequence[rt.Pending], store: ObjectStore, report: Report
) -> None:
    def one(p: rt.Pending) -> int | str:
        if p.s3_prefix is None:
            return 0  # the pipeline records the prefix before uploading: nothing was ever stored
        try:
            expected = store.href(store.item_prefix(collection, p.item_id))
            if p.s3_prefix != expected:
                return f"objects at {p.s3_prefix} are not this store's prefix for the item ({expected}): left in place"
            return store.delete_item_objects(collection, p.item_id)
        except IngestError as exc:
            return exc.message

    with ThreadPoolExecutor(max_workers=OBJECT_DELETE_THREADS, thread_name_prefix="retain") as pool:
        results = list(pool.map(one, batch))
    done = [(p.product_id, n) for p, n in zip(batch, results, strict=True) if isinstance(n, int)]
    with conn.transaction():
        if done:
            rt.mark_objects_deleted(conn, [d[0] for d in done], [d[1] for d in done])
        for p, n in zip(batch, results, strict=True):
            if isinstance(n, str):
                rt.mark_error(conn, p.product_id, n)
                report.errors.append(f"{p.product_id}: {n}")
                log.error("retention %s: %s: %s", collection, p.product_id, n)
    report.objects_deleted += sum(d[1] for d in done)
    log.info("retention %s: objects of %d products deleted", collection, len(done))
