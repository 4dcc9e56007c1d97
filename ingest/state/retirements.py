"""Queries of retention: which catalogued products a policy selects, and the retirement records.

A retirement row is written in the transaction that moves its product to ``retired``; it then says
what is left to do (the pgstac item, then the S3 objects) until both are done. The listing of
deleted items that harvesters read comes from the same rows.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime

import psycopg

from ingest.state.machine import State, can_transition
from ingest.state.repo import WORKER

# Selected by the policy: too old (anchored before the cutoff) or outside the area. The N most recent
# catalogued items (by the anchor) are returned too, flagged, so the caller can say what they saved.
_MATCHES = """
WITH owned AS (
    SELECT p.id AS product_id, p.item_id, p.s3_prefix,
           CASE WHEN %(anchor)s = 'sensing' THEN i.datetime
                ELSE coalesce((i.content -> 'properties' ->> 'created')::timestamptz, p.updated_at) END AS anchored,
           CASE WHEN %(area)s::text IS NULL THEN false
                ELSE NOT st_intersects(i.geometry, st_setsrid(st_geomfromgeojson(%(area)s::text), 4326)) END
               AS outside
    FROM ingest.products p
    JOIN pgstac.items i ON i.collection = p.collection AND i.id = p.item_id
    WHERE p.collection = %(collection)s AND p.state = 'catalogued'
), ranked AS (
    SELECT *, row_number() OVER (ORDER BY anchored DESC, item_id DESC) AS recency FROM owned
)
SELECT r.product_id, r.item_id, r.s3_prefix, r.anchored, r.outside, r.recency <= %(keep)s AS kept,
       (SELECT coalesce(sum((a ->> 'file:size')::bigint), 0) FROM jsonb_each(i.content -> 'assets') AS e(k, a)
         WHERE jsonb_typeof(a -> 'file:size') = 'number') AS bytes
FROM ranked r
JOIN pgstac.items i ON i.collection = %(collection)s AND i.id = r.item_id
WHERE (%(cutoff)s::timestamptz IS NOT NULL AND r.anchored < %(cutoff)s::timestamptz) OR r.outside
ORDER BY r.anchored, r.item_id
"""


@dataclass(frozen=True)
class Match:
    product_id: str
    item_id: str
    s3_prefix: str | None
    anchored: datetime
    outside: bool
    kept: bool  # saved by keep_latest
    bytes: int


@dataclass(frozen=True)
class Pending:
    product_id: str
    item_id: str
    s3_prefix: str | None
    item_deleted: bool
    objects_deleted: bool


def matches(
    conn: psycopg.Connection,
    collection: str,
    *,
    anchor: str,
    cutoff: datetime | None,
    area: str | None,
    keep_latest: int,
) -> list[Match]:
    params = {"collection": collection, "anchor": anchor, "cutoff": cutoff, "area": area, "keep": keep_latest}
    return [Match(*row) for row in conn.execute(_MATCHES, params).fetchall()]


def item_count(conn: psycopg.Connection, collection: str) -> int:
    row = conn.execute("SELECT count(*) FROM pgstac.items WHERE collection = %s", [collection]).fetchone()
    return int(row[0]) if row else 0


def retire(conn: psycopg.Connection, collection: str, run_id: str, chosen: Sequence[tuple[str, str, int]]) -> list[str]:
    """Move (product id, reason, bytes) from catalogued to retired, with their events and retirement rows,
    in one transaction; returns the ids moved (a product no longer catalogued is left alone)."""
    assert can_transition(State.CATALOGUED, State.RETIRED)
    if not chosen:
        return []
    ids, reasons, sizes = (list(col) for col in zip(*chosen, strict=True))
    with conn.transaction():
        rows = conn.execute(
            """
            WITH chosen AS (SELECT * FROM unnest(%(ids)s::text[], %(reasons)s::text[], %(sizes)s::bigint[])
                            AS c(product_id, reason, bytes)),
            moved AS (
                UPDATE ingest.products p SET state = 'retired', updated_at = now()
                FROM chosen c
                WHERE p.id = c.product_id AND p.collection = %(collection)s AND p.state = 'catalogued'
                RETURNING p.id, p.item_id, p.s3_prefix, c.reason, c.bytes
            ), logged AS (
                INSERT INTO ingest.events (product_id, from_state, to_state, worker, message, details)
                SELECT id, 'catalogued', 'retired', %(worker)s, 'retention: ' || reason,
                       jsonb_build_object('run', %(run)s::text) FROM moved
            )
            INSERT INTO ingest.retirements (product_id, collection, item_id, s3_prefix, run_id, reason, bytes)
            SELECT id, %(collection)s, item_id, s3_prefix, %(run)s, reason, bytes FROM moved
            RETURNING product_id
            """,
            {"ids": ids, "reasons": reasons, "sizes": sizes, "collection": collection, "run": run_id, "worker": WORKER},
        ).fetchall()
    return [r[0] for r in rows]


def pending(conn: psycopg.Connection, collection: str) -> list[Pending]:
    """Retirements whose item or objects are not deleted yet (a crashed or failed run's leftovers)."""
    rows = conn.execute(
        "SELECT product_id, item_id, s3_prefix, item_deleted_at IS NOT NULL, objects_deleted_at IS NOT NULL"
        " FROM ingest.retirements WHERE collection = %s AND (item_deleted_at IS NULL OR objects_deleted_at IS NULL)"
        " ORDER BY retired_at, product_id",
        [collection],
    ).fetchall()
    return [Pending(*row) for row in rows]


def mark_items_deleted(conn: psycopg.Connection, collection: str, item_ids: Sequence[str]) -> None:
    """Runs in the transaction that deleted the items from pgstac (see pgstac.delete_items)."""
    conn.execute(
        "UPDATE ingest.retirements SET item_deleted_at = now(), last_error = NULL"
        " WHERE collection = %s AND item_id = ANY(%s) AND item_deleted_at IS NULL",
        [collection, list(item_ids)],
    )


def mark_objects_deleted(conn: psycopg.Connection, product_ids: Sequence[str], counts: Sequence[int]) -> None:
    conn.execute(
        """
        UPDATE ingest.retirements r SET objects_deleted_at = now(), objects_deleted = d.n, last_error = NULL
        FROM unnest(%s::text[], %s::int[]) AS d(product_id, n)
        WHERE r.product_id = d.product_id AND r.objects_deleted_at IS NULL
        """,
        [list(product_ids), list(counts)],
    )


def mark_error(conn: psycopg.Connection, product_id: str, error: str) -> None:
    conn.execute("UPDATE ingest.retirements SET last_error = %s WHERE product_id = %s", [error, product_id])
