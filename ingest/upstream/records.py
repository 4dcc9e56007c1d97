"""The reconciliation's queries on the ingest schema (and pgstac's items, for where a product is)."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime, timedelta

import psycopg

from ingest.upstream.compare import Ours

BBox = tuple[float, float, float, float]

# Our rows for one window: those under the ids the provider listed (any state), and our catalogued
# products sensed around the window (the margin included: a newer processing listed just inside the
# window still finds the product it supersedes). ``in_window``: catalogued, sensed in [start, end) and,
# with an area, the item's footprint (what the catalogue serves) touches it. A catalogued product whose
# item is not in pgstac is not placed: that is the audit's business, not a product gone upstream.
_SENSED = "coalesce(p.sensing_at, i.datetime)"
_OURS = f"""
WITH cand AS (
    SELECT id FROM ingest.products WHERE collection = %(c)s AND id = ANY(%(ids)s)
    UNION
    SELECT p.id FROM ingest.products p JOIN pgstac.items i ON i.collection = p.collection AND i.id = p.item_id
     WHERE p.collection = %(c)s AND p.state = 'catalogued' AND {_SENSED} >= %(from)s AND {_SENSED} < %(until)s
)
SELECT p.id, p.state, p.upstream_checksum, p.published_at,
       p.state = 'catalogued' AND i.id IS NOT NULL AND {_SENSED} >= %(start)s AND {_SENSED} < %(end)s
       AND (%(bbox)s::float8[] IS NULL OR st_intersects(i.geometry, st_makeenvelope(
            (%(bbox)s::float8[])[1], (%(bbox)s::float8[])[2], (%(bbox)s::float8[])[3], (%(bbox)s::float8[])[4],
            4326)))
  FROM cand JOIN ingest.products p ON p.id = cand.id
  LEFT JOIN pgstac.items i ON i.collection = p.collection AND i.id = p.item_id
"""


def ours(
    conn: psycopg.Connection,
    collection: str,
    *,
    ids: Sequence[str],
    start: datetime,
    end: datetime,
    margin: timedelta,
    bbox: BBox | None,
) -> list[Ours]:
    rows = conn.execute(
        _OURS,
        {
            "c": collection, "ids": list(ids), "start": start, "end": end, "from": start - margin,
            "until": end + margin, "bbox": list(bbox) if bbox is not None else None,
        },
    ).fetchall()  # fmt: skip
    return [Ours(r[0], r[1], r[2], r[3], bool(r[4])) for r in rows]


def retirement_details(conn: psycopg.Connection, collection: str, product_ids: Sequence[str]) -> dict[str, int]:
    """product id -> bytes of its item's assets (``file:size``), for the catalogued products asked."""
    rows = conn.execute(
        """
        SELECT p.id, (SELECT coalesce(sum((a ->> 'file:size')::bigint), 0)::bigint
                        FROM jsonb_each(i.content -> 'assets') AS e(k, a)
                       WHERE jsonb_typeof(a -> 'file:size') = 'number')
          FROM ingest.products p JOIN pgstac.items i ON i.collection = p.collection AND i.id = p.item_id
         WHERE p.collection = %s AND p.id = ANY(%s) AND p.state = 'catalogued'
        """,
        [collection, list(product_ids)],
    ).fetchall()
    return {r[0]: int(r[1]) for r in rows}


def item_shared(conn: psycopg.Connection, collection: str, product_ids: Sequence[str]) -> dict[str, str]:
    """product id -> another live product whose item is the same one (two processings of one acquisition
    make the same item id): retiring the first would delete the second's item."""
    rows = conn.execute(
        """
        SELECT DISTINCT ON (p.id) p.id, q.id FROM ingest.products p
          JOIN ingest.products q ON q.collection = p.collection AND q.item_id = p.item_id AND q.id <> p.id
         WHERE p.collection = %s AND p.id = ANY(%s) AND q.state <> 'retired'
         ORDER BY p.id, q.id
        """,
        [collection, list(product_ids)],
    ).fetchall()
    return {r[0]: r[1] for r in rows}
