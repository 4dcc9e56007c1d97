"""Discovery: ask the provider for products and record the new ones (state ``discovered``), once.

Incremental harvest reads from the collection's watermark minus the overlap window, on the
provider's *publication* time (L2A products appear days after sensing), oldest first. Inserts are
``ON CONFLICT DO NOTHING``: re-reading the overlap costs a search page, never a duplicate. The
watermark only moves forward, to the newest publication time actually seen.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, Protocol

import psycopg

from ingest import metrics
from ingest.collections import CollectionSpec
from ingest.stages.artifacts import ProviderProduct
from ingest.state import repo

log = logging.getLogger(__name__)


class Searcher(Protocol):
    name: str

    def search(
        self,
        collection: str,
        *,
        published_after: datetime | None = None,
        published_before: datetime | None = None,
        start: datetime | None = None,
        end: datetime | None = None,
        bbox: tuple[float, float, float, float] | None = None,
        geometry: dict[str, Any] | None = None,
        filters: dict[str, Any] | None = None,
        page_size: int = ...,
    ) -> Iterable[list[ProviderProduct]]: ...


@dataclass
class Discovery:
    collection: str
    seen: int = 0
    new_ids: list[str] = field(default_factory=list)
    newest_published: datetime | None = None
    complete: bool = True  # False when max_new stopped the scan before the provider ran out
    seconds: float = 0.0


def to_discovered(spec: CollectionSpec, p: ProviderProduct) -> repo.DiscoveredProduct:
    return repo.DiscoveredProduct(
        id=p.id,
        collection=spec.id,
        provider=p.provider,
        download_url=p.download_url,
        upstream_checksum=p.checksum,
        size_bytes=p.size,
        published_at=p.published,
        sensing_at=p.sensing,
        footprint=p.geometry,
        online=p.online,
    )


def discover(
    conn: psycopg.Connection,
    provider: Searcher,
    spec: CollectionSpec,
    *,
    published_after: datetime | None = None,
    start: datetime | None = None,
    end: datetime | None = None,
    geometry: dict[str, Any] | None = None,
    max_new: int | None = None,
    page_size: int = 100,
) -> Discovery:
    """Page through the provider's answer, inserting new products page by page."""
    started = time.monotonic()
    out = Discovery(spec.id)
    pages = provider.search(
        spec.source.eodag_collection,
        published_after=published_after,
        start=start,
        end=end,
        bbox=spec.source.bbox if geometry is None else None,
        geometry=geometry,
        filters=spec.source.filters,
        page_size=min(page_size, max_new) if max_new else page_size,  # the cap holds to the page
    )
    for page in pages:
        out.seen += len(page)
        out.new_ids += repo.insert_discovered(conn, [to_discovered(spec, p) for p in page])
        conn.commit()
        stamps = [p.published for p in page if p.published is not None]
        if stamps:
            newest = max(stamps)
            out.newest_published = max(out.newest_published or newest, newest)
        if max_new is not None and len(out.new_ids) >= max_new:
            out.complete = False
            break
    out.seconds = time.monotonic() - started
    return out


def harvest(conn: psycopg.Connection, provider: Searcher, spec: CollectionSpec) -> Discovery:
    """One incremental harvest of a collection: from the watermark minus the overlap, forward."""
    watermark = repo.get_watermark(conn, spec.id)
    after = watermark - spec.harvest.overlap if watermark is not None else None
    try:
        found = discover(conn, provider, spec, published_after=after, max_new=spec.harvest.max_products)
    except Exception:
        metrics.harvested(spec.id, ok=False)
        raise
    metrics.harvested(spec.id, new=len(found.new_ids))
    if found.newest_published is not None:
        repo.advance_watermark(conn, spec.id, provider.name, found.newest_published, len(found.new_ids))
    else:
        repo.touch_harvest(conn, spec.id, 0)
    conn.commit()
    log.info(
        "harvest %s: %d seen, %d new since %s (%.1f s)%s",
        spec.id,
        found.seen,
        len(found.new_ids),
        after.isoformat() if after else "the beginning",
        found.seconds,
        "" if found.complete else f"; stopped at max_products={spec.harvest.max_products}, more next run",
    )
    return found
