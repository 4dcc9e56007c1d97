"""Auditing a collection, and repairing what the audit found: the I/O around ``ingest.audit.plan``.

``audit``: items come from pgstac a page at a time (sorted as the store lists keys), objects from one
paginated listing of the collection's prefix (sizes included: no HEAD per object), products and
owners from the ingest schema. What the merge finds is confirmed against a fresh read before it
counts (an item reloaded or retired meanwhile, a prefix that found an owner), so a catalogue changing
under the audit gives no false finding. The result is recorded in ``ingest.audits``.

``repair``: under the collection's retention lock (the one lock for deleting in a collection), the
products of broken items go back to the queue, and orphan prefixes are deleted with the retention
machinery's object deletion, each only after a re-listing shows exactly the orphans the audit saw.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime
from typing import Protocol

import psycopg

from ingest import ops, retention
from ingest.adapters import pgstac
from ingest.adapters.queue import ProductQueue
from ingest.adapters.s3 import ListedObject, ObjectStore
from ingest.audit import plan, records
from ingest.audit.plan import Expected, ItemAssets, Problem, Unowned
from ingest.audit.report import BrokenItem, Repair, Report
from ingest.collections import CollectionSpec
from ingest.errors import IngestError
from ingest.settings import Settings
from ingest.state import retirements as rt

log = logging.getLogger(__name__)

ITEM_PAGE = 500  # items per pgstac page (a few MB of assets for Sentinel-2 items)
CONFIRM_BATCH = 1000  # findings confirmed per round trip
HEAD_THREADS = 8  # --deep: HEADs in flight


class Progress(Protocol):
    def start(self, collection: str, items: int) -> None: ...
    def update(self, items: int, objects: int) -> None: ...
    def finish(self) -> None: ...


class _Quiet:
    def start(self, collection: str, items: int) -> None:
        pass

    def update(self, items: int, objects: int) -> None:
        pass

    def finish(self) -> None:
        pass


def audit(
    conn: psycopg.Connection,
    settings: Settings,
    store: ObjectStore,
    spec: CollectionSpec,
    *,
    deep: bool = False,
    scheduled: bool = False,
    progress: Progress | None = None,
) -> Report:
    """Check every item of the collection against the store, and the store's objects against the items."""
    run = _Run(conn, settings.require_database_url(), store, spec, deep=deep, scheduled=scheduled)
    shown = progress or _Quiet()
    shown.start(spec.id, rt.item_count(conn, spec.id))
    try:
        run.check(shown)
    except ValueError as exc:  # a stream out of order: matching it would give wrong answers
        raise IngestError(f"audit of {spec.id}: {exc}") from None
    finally:
        shown.finish()
    report = run.report
    report.finished_at = datetime.now(UTC)
    report.audit_id = records.save(conn, report)
    log.log(
        logging.WARNING if report.found else logging.INFO,
        "audit %s: %d items, %d objects checked in %.1f s: %d broken items, %d orphan objects",
        spec.id, report.items, report.objects, report.seconds, report.broken_count, report.orphan_count,
        extra={"collection": spec.id, "broken_items": report.broken_count, "orphan_objects": report.orphan_count},
    )  # fmt: skip
    return report


class _Run:
    """One audit of one collection: the merge's findings, confirmed in batches as they come."""

    def __init__(
        self,
        conn: psycopg.Connection,
        dsn: str,
        store: ObjectStore,
        spec: CollectionSpec,
        *,
        deep: bool,
        scheduled: bool,
    ) -> None:
        self.conn, self.dsn, self.store, self.deep = conn, dsn, store, deep
        self.collection = spec.id
        self.prefix = store.collection_prefix(spec.id)
        self.layout = plan.Layout(store.bucket, self.prefix, store.public_base_url)
        self.report = Report(spec.id, datetime.now(UTC), deep=deep, scheduled=scheduled)
        self.cutoff = self.report.started_at - spec.audit.orphan_grace
        self.claimed = records.claimed(conn, spec.id)
        self.products: dict[str, tuple[str, str]] = {}  # of the items of the current page
        self.referenced: set[str] = set()  # keys named by an item from outside its own prefix
        self.suspects: list[tuple[BrokenItem, str | None]] = []
        self.candidates: list[Unowned] = []

    def _items(self) -> Iterator[ItemAssets]:
        for page in pgstac.item_pages(self.dsn, self.collection, page_size=ITEM_PAGE):
            self.products = records.products_of(self.conn, self.collection, [i for i, _, _ in page])
            for item_id, assets, updated in page:
                yield plan.item_assets(item_id, assets, updated, self.layout)

    def _objects(self) -> Iterator[ListedObject]:
        for obj in self.store.iter_objects(self.prefix):
            self.report.objects += 1
            yield obj

    def check(self, progress: Progress) -> None:
        r = self.report
        with ThreadPoolExecutor(max_workers=HEAD_THREADS, thread_name_prefix="audit") as pool:
            for found in plan.match(self._items(), self._objects(), self.prefix):
                if isinstance(found, Unowned):
                    verdict = plan.judge(found, claimed=self.claimed, cutoff=self.cutoff)
                    r.recent += verdict == "recent"
                    if verdict == "orphan":
                        self._suspect_orphan(found)
                    continue
                item = found.item
                product_id, state = self.products.get(item.item_id, (None, None))
                r.items += 1
                progress.update(r.items, r.objects)
                if records.in_flight(state):  # a worker rewrites its objects right now
                    r.in_flight += 1
                    continue
                r.unchecked_assets += item.unchecked
                r.assets += len(item.expected) + len(item.elsewhere)
                r.present += len(found.present)
                self.referenced.update(e.key for e in item.elsewhere)
                problems = [*found.problems, *self._elsewhere(item.elsewhere)]
                if self.deep:
                    problems += self._deep(pool, [e for e, _ in found.present])
                if problems:
                    self._suspect_item(BrokenItem(item.item_id, product_id, state, tuple(problems)), item.updated)
        self._confirm_items()
        self._confirm_orphans()
        named_elsewhere = [u for u in r.orphans if u.obj.key in self.referenced]
        for u in named_elsewhere:  # rare: an item names an object under another item's prefix
            r.orphans.remove(u)
            r.orphan_count -= 1
            r.orphan_bytes -= u.obj.size
        progress.update(r.items, r.objects)

    def _elsewhere(self, expected: Sequence[Expected]) -> list[Problem]:
        problems = []
        for e in expected:
            info = self.store.head(e.key)
            problem = plan.compare_size(e, info)
            if problem is None and self.deep and info is not None:
                self.report.without_checksum += e.sha256 is None
                problem = plan.compare_sha256(e, info.sha256)
            if problem is not None:
                problems.append(problem)
        return problems

    def _deep(self, pool: ThreadPoolExecutor, present: Sequence[Expected]) -> list[Problem]:
        """The SHA-256 the upload stored in each object's metadata, by a HEAD, against file:checksum.

        Not a read of the bytes: that would download the whole catalogue. The metadata says which bytes
        our upload confirmed there; a size-preserving overwrite by anyone else loses or changes it."""
        problems = []
        for e, info in zip(present, pool.map(lambda e: self.store.head(e.key), present), strict=True):
            self.report.without_checksum += e.sha256 is None
            problem = plan.compare_size(e, info) or plan.compare_sha256(e, info.sha256 if info else None)
            if problem is not None:
                problems.append(problem)
        return problems

    def _suspect_item(self, item: BrokenItem, updated: str | None) -> None:
        self.suspects.append((item, updated))
        if len(self.suspects) >= CONFIRM_BATCH:
            self._confirm_items()

    def _suspect_orphan(self, u: Unowned) -> None:
        self.candidates.append(u)
        if len(self.candidates) >= CONFIRM_BATCH:
            self._confirm_orphans()

    def _confirm_items(self) -> None:
        """Broken only if the item is still there as it was read and its product is not being processed:
        a reload or a retention run between the page and the listing is not a finding."""
        batch, self.suspects = self.suspects, []
        if not batch:
            return
        ids = [b.item_id for b, _ in batch]
        now = pgstac.item_updates(self.dsn, self.collection, ids)
        products = records.products_of(self.conn, self.collection, ids)
        for b, updated in batch:
            product_id, state = products.get(b.item_id, (None, None))
            if b.item_id in now and now[b.item_id] == updated and not records.in_flight(state):
                self.report.add_broken(BrokenItem(b.item_id, product_id, state, b.problems))

    def _confirm_orphans(self) -> None:
        """Orphan only if its prefix still has no owner and no item appeared there (nor its item changed)."""
        batch, self.candidates = self.candidates, []
        groups = sorted({u.group for u in batch if u.group is not None})
        claimed = records.claimed(self.conn, self.collection, groups) if groups else frozenset()
        items = pgstac.item_updates(self.dsn, self.collection, groups) if groups else {}
        for u in batch:
            if u.group is None:
                self.report.add_orphan(u)
            elif u.group in claimed:
                continue
            elif (items.get(u.group, "gone") == u.item_updated) if u.in_item else (u.group not in items):
                self.report.add_orphan(u)


# ============================================================================ repair


def _why(b: BrokenItem) -> str:
    shown = "; ".join(p.text() for p in b.problems[:3])
    more = f" and {len(b.problems) - 3} more" if len(b.problems) > 3 else ""
    return f"item {b.item_id}: {shown}{more}"


def repair(
    conn: psycopg.Connection,
    settings: Settings,
    store: ObjectStore,
    report: Report,
    *,
    queue: Callable[[Settings], ProductQueue] = ProductQueue,
) -> Repair:
    """Re-queue the products of the broken items and delete the orphans the audit found (see module doc)."""
    assert report.audit_id is not None, "repair what a recorded audit found"
    result = Repair()
    with retention.exclusive(conn, report.collection):
        _requeue(conn, settings, report, result, queue)
        _delete_orphans(conn, settings.require_database_url(), store, report, result)
    records.save_repair(conn, report.audit_id, requeued=len(result.requeued), deleted=len(result.deleted))
    report.repair = result
    log.info(
        "audit %s: repair re-queued %d products, deleted %d orphan objects; %d items and %d orphans left",
        report.collection, len(result.requeued), len(result.deleted), len(result.items_left),
        len(result.orphans_left), extra={"collection": report.collection},
    )  # fmt: skip
    return result


def _requeue(
    conn: psycopg.Connection,
    settings: Settings,
    report: Report,
    result: Repair,
    queue: Callable[[Settings], ProductQueue],
) -> None:
    catalogued = [(b.product_id, _why(b)) for b in report.broken if b.product_id and b.state == "catalogued"]
    moved = ops.requeue_for_repair(conn, catalogued)
    # discovered or failed: on their way already (an earlier repair, a retry); a job now does no harm
    waiting = [b.product_id for b in report.broken if b.product_id and b.state in ("discovered", "failed")]
    for b in report.broken:
        if b.product_id is None:
            result.items_left.append((b.item_id, "no product of ours made it: reload or delete the item by hand"))
        elif b.state == "catalogued" and b.product_id not in moved:
            result.items_left.append((b.item_id, f"product {b.product_id} changed state meanwhile"))
        elif b.state not in ("catalogued", "discovered", "failed"):
            result.items_left.append((b.item_id, f"product {b.product_id} is {b.state}"))
    if moved or waiting:
        with queue(settings) as q:
            q.enqueue([*moved, *waiting])
    result.requeued = [*moved, *waiting]


def _delete_orphans(conn: psycopg.Connection, dsn: str, store: ObjectStore, report: Report, result: Repair) -> None:
    c, audit_id = report.collection, report.audit_id
    assert audit_id is not None
    groups, stay = plan.by_prefix(report.orphans)
    result.orphans_left += [(u.obj.key, why) for u, why in stay]
    if not groups:
        return
    refused = plan.refuse_deletion(report.orphan_count, report.present)
    if refused is None and (busy := records.uploading_unknown(conn, c)):
        # one of them may be writing under an orphan prefix as it is deleted
        refused = f"{busy} product(s) being processed have no item recorded yet: run --repair again when done"
    if refused is not None:
        result.orphans_left += [(u.obj.key, refused) for us in groups.values() for u in us]
        return
    owned = records.claimed(conn, c, sorted(groups)) | set(pgstac.item_updates(dsn, c, sorted(groups)))
    for group, orphans in sorted(groups.items()):
        why: str | None = f"prefix {group} has an owner now" if group in owned else None
        listed: list[ListedObject] = []
        if why is None:
            try:
                listed = list(store.iter_objects(store.item_prefix(c, group)))  # refuses a group that is no segment
            except IngestError as exc:
                why = exc.message
        if why is None and not plan.unchanged(orphans, listed):
            why = f"objects under {group} changed since the audit"
        if why is None:
            why = _delete(conn, store, c, audit_id, group, listed)
        if why is None:
            result.deleted += [o.key for o in listed]
        else:
            result.orphans_left += [(u.obj.key, why) for u in orphans]


def _delete(
    conn: psycopg.Connection, store: ObjectStore, collection: str, audit_id: int, group: str, listed: list[ListedObject]
) -> str | None:
    """Delete one orphan prefix, recorded before and after; None when done, else why not."""
    records.deletion_asked(conn, audit_id, collection, listed)
    try:
        deleted = store.delete_item_objects(collection, group)
    except IngestError as exc:
        return exc.message
    records.deletion_done(conn, audit_id, [o.key for o in listed])
    log.info(
        "audit %s: deleted %d orphan objects under %s", collection, deleted, store.item_prefix(collection, group),
        extra={"collection": collection, "objects": deleted},
    )  # fmt: skip
    return None
