"""Queries of backfills: the chunk table (``ingest.backfill_chunks``), the run lock, progress counts."""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

import psycopg

from ingest.state import locks


@dataclass
class Chunk:
    start: datetime
    end: datetime
    done: bool = False
    found: int | None = None
    enqueued: int | None = None


def load_chunks(conn: psycopg.Connection, backfill_id: str) -> list[Chunk]:
    rows = conn.execute(
        "SELECT chunk_start, chunk_end, status, products_found, enqueued FROM ingest.backfill_chunks "
        "WHERE backfill_id = %s ORDER BY chunk_start",
        [backfill_id],
    ).fetchall()
    return [Chunk(r[0], r[1], r[2] == "done", r[3], r[4]) for r in rows]


def save_chunks(conn: psycopg.Connection, backfill_id: str, collection: str, chunks: Sequence[Chunk]) -> None:
    with conn.cursor() as cur:
        cur.executemany(
            "INSERT INTO ingest.backfill_chunks (backfill_id, chunk_start, chunk_end, collection) "
            "VALUES (%s, %s, %s, %s) ON CONFLICT DO NOTHING",
            [(backfill_id, c.start, c.end, collection) for c in chunks],
        )
    conn.commit()


def mark_done(conn: psycopg.Connection, backfill_id: str, chunk: Chunk) -> None:
    conn.execute(
        "UPDATE ingest.backfill_chunks SET status = 'done', products_found = %s, enqueued = %s, finished_at = now() "
        "WHERE backfill_id = %s AND chunk_start = %s",
        [chunk.found, chunk.enqueued, backfill_id, chunk.start],
    )
    conn.commit()


def try_lock(conn: psycopg.Connection, backfill_id: str) -> bool:
    """Session advisory lock (released when the connection closes, also when the process dies):
    two runs of one backfill would search every chunk twice for nothing."""
    held = locks.try_lock(conn, backfill_id)
    conn.commit()
    return held


def _area_sql(bbox: Sequence[float] | None, geometry: dict[str, Any] | None) -> tuple[str, list[Any]]:
    """A PostGIS filter on the announced footprint. Bounding boxes only (``&&``): exact enough for
    progress counts, and it never raises on the odd invalid footprint halfway through a backfill."""
    if bbox is not None:
        return (
            " AND (footprint IS NULL OR ST_GeomFromGeoJSON(footprint::text) && ST_MakeEnvelope(%s, %s, %s, %s, 4326))",
            [*bbox],
        )
    if geometry is not None:
        return " AND (footprint IS NULL OR ST_GeomFromGeoJSON(footprint::text) && ST_GeomFromGeoJSON(%s))", [
            json.dumps(geometry)
        ]
    return "", []


def product_counts(
    conn: psycopg.Connection,
    collection: str,
    start: datetime,
    end: datetime,
    *,
    bbox: Sequence[float] | None = None,
    geometry: dict[str, Any] | None = None,
) -> dict[str, int]:
    """Products of a collection sensed in ``[start, end)`` (footprint touching the area) per state."""
    where, params = _area_sql(bbox, geometry)
    rows = conn.execute(
        "SELECT state, count(*) FROM ingest.products WHERE collection = %s AND sensing_at >= %s AND sensing_at < %s"
        + where
        + " GROUP BY state",
        [collection, start, end, *params],
    ).fetchall()
    conn.commit()  # end the read transaction: a long backfill must not hold a snapshot open
    return {r[0]: int(r[1]) for r in rows}
