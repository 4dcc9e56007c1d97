"""The reconciliation's I/O: the provider searched day by day, our rows read for each day, the pure
comparison (``compare``) between, the repair (``repair``) after each day when asked.

Why day by day: the provider's answer for a day and our rows for it are what one comparison holds in
memory (the ids of the differences are kept for the report), whatever the window's length; a search
is a paging session of its own per day, so a long window is many short sessions. Each day is searched
``MARGIN`` wider on both sides: a product listed with a sensing time a little off ours (rounding, a
start time moved by a reprocessing) is still seen, never called gone; only products sensed in the day
itself are judged.
"""

from __future__ import annotations

import logging
from datetime import UTC, datetime, timedelta

import psycopg

from ingest import backfill, metrics
from ingest.collections import CollectionSpec
from ingest.harvest import Searcher
from ingest.stages.artifacts import ProviderProduct
from ingest.upstream import compare, records
from ingest.upstream.compare import Listed
from ingest.upstream.progress import Progress, Quiet
from ingest.upstream.repair import Repairer
from ingest.upstream.report import Report

log = logging.getLogger(__name__)

BBox = tuple[float, float, float, float]

CHUNK = timedelta(days=1)
MARGIN = timedelta(minutes=30)
PAGE_SIZE = 100


def listed(p: ProviderProduct) -> Listed:
    return Listed(p.id, p.checksum, p.sensing, p.published)


def reconcile(
    conn: psycopg.Connection,
    provider: Searcher,
    spec: CollectionSpec,
    *,
    start: datetime,
    end: datetime,
    bbox: BBox | None = None,
    repairer: Repairer | None = None,
    scheduled: bool = False,
    progress: Progress | None = None,
) -> Report:
    """Compare what the provider lists for products sensed in ``[start, end)`` (over ``bbox``, else the
    collection's ``source.bbox``) with what we hold; repair each day's differences with ``repairer``."""
    area = bbox if bbox is not None else spec.source.bbox
    report = Report(spec.id, start, end, area, spec.upstream.removed, datetime.now(UTC), scheduled=scheduled)
    days = backfill.chunks(start, end, CHUNK)
    shown = progress or Quiet()
    shown.start(spec.id, len(days))
    parts: list[compare.Differences] = []
    try:
        for a, b in days:
            products: dict[str, ProviderProduct] = {}
            for page in provider.search(
                spec.source.eodag_collection, start=a - MARGIN, end=b + MARGIN, bbox=area,
                filters=spec.source.filters, page_size=PAGE_SIZE,
            ):  # fmt: skip
                report.pages += 1
                products.update((p.id, p) for p in page)
                shown.page(len(page))
            ours = records.ours(conn, spec.id, ids=list(products), start=a, end=b, margin=MARGIN, bbox=area)
            diff = compare.compare([listed(p) for p in products.values()], ours, start=a, end=b)
            parts.append(diff)
            report.chunks += 1
            if repairer is not None and diff.found:
                repairer.chunk(diff, products, day=f"{a:%Y-%m-%d}")
            shown.chunk_done(diff.listed + diff.held)
        if repairer is not None:
            report.repair = repairer.finish()
    finally:
        shown.finish()
    report.differences = compare.merge(parts)
    report.finished_at = datetime.now(UTC)
    metrics.upstream_reconciled(spec.id, report.counts())
    counts = report.counts()
    log.log(
        logging.WARNING if report.found else logging.INFO,
        "reconcile %s: %d listed upstream, %d catalogued here in %.1f s: %d missing here, %d gone upstream,"
        " %d superseded, %d checksum changed%s",
        spec.id, report.differences.listed, report.differences.held, report.seconds, counts["missing"],
        counts["gone"], counts["superseded"], counts["checksum"],
        f"; {report.unrepaired} left unrepaired" if report.repair is not None else "",
        extra={"collection": spec.id, **{f"upstream_{k}": n for k, n in counts.items()}},
    )  # fmt: skip
    return report
