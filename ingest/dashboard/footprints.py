"""Where the catalogue has products: footprints aggregated per grid cell, in SQL.

A site holds 100,000s of products; the page gets one row per (collection, cell) instead: how many
products have their footprint's centre in the cell, how many of them are catalogued, failing
(failed, invalid) or on their way, and the newest sensing time of the catalogued ones. A cell with
failures and no catalogued product is a hole with a cause; a cell whose newest product is old is a
hole in time. The footprint is the GeoJSON the provider announced (``ingest.products.footprint``,
kept for every state, where pgstac only has the catalogued ones). Retired products are left out,
and so are footprints that are not a Polygon or MultiPolygon with coordinates, rather than failing
the whole query.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

import psycopg

COLUMNS = ("collection", "west", "south", "products", "catalogued", "failing", "pending", "worst", "newest_age_days")
CELL_DEG = 1.0  # about a Sentinel-2 tile (110 km): the map shows holes of one tile

FAILING = ("failed", "invalid")

_CELLS_SQL = """
WITH shaped AS (
    SELECT collection, state, sensing_at,
           ST_Centroid(ST_Envelope(ST_GeomFromGeoJSON(footprint::text))) AS c
      FROM ingest.products
     WHERE collection = ANY(%(collections)s)
       AND state <> 'retired'  -- removed by retention on purpose: not a hole to chase
       AND footprint->>'type' IN ('Polygon', 'MultiPolygon')
       AND jsonb_typeof(footprint->'coordinates') = 'array'
       AND jsonb_array_length(footprint->'coordinates') > 0
)
SELECT collection,
       floor(ST_X(c) / %(cell)s)::int AS gx,
       floor(ST_Y(c) / %(cell)s)::int AS gy,
       count(*) AS n,
       count(*) FILTER (WHERE state = 'catalogued') AS catalogued,
       count(*) FILTER (WHERE state = ANY(%(failing)s)) AS failing,
       max(sensing_at) FILTER (WHERE state = 'catalogued') AS newest
  FROM shaped
 GROUP BY 1, 2, 3
 ORDER BY 1, 2, 3
"""


@dataclass(frozen=True)
class Cell:
    collection: str
    gx: int  # west edge = gx * CELL_DEG
    gy: int
    products: int
    catalogued: int
    failing: int
    newest: datetime | None  # sensing time of the newest catalogued product

    @property
    def pending(self) -> int:
        return self.products - self.catalogued - self.failing

    @property
    def worst(self) -> str:
        """What the cell is coloured by: failing beats pending beats catalogued."""
        return "failing" if self.failing else "pending" if self.pending else "catalogued"


def cells(conn: psycopg.Connection, collections: Sequence[str], *, cell_deg: float = CELL_DEG) -> list[Cell]:
    rows = conn.execute(
        _CELLS_SQL, {"collections": list(collections), "cell": cell_deg, "failing": list(FAILING)}
    ).fetchall()
    return [Cell(cid, int(gx), int(gy), int(n), int(ok), int(bad), newest) for cid, gx, gy, n, ok, bad, newest in rows]


def as_document(found: Iterable[Cell], now: datetime, *, cell_deg: float = CELL_DEG) -> dict[str, Any]:
    """The map's part of the data endpoint: compact rows (a cell is a list, not an object: 100,000
    products over a few thousand cells stay a small download) with the column names beside them."""
    rows = []
    for c in found:
        age_days = None if c.newest is None else round((now - c.newest).total_seconds() / 86400, 2)
        rows.append(
            [c.collection, c.gx * cell_deg, c.gy * cell_deg, c.products, c.catalogued, c.failing, c.pending,
             c.worst, age_days]
        )  # fmt: skip
    return {
        "cell_deg": cell_deg,
        "columns": list(COLUMNS),
        "cells": rows,
    }
