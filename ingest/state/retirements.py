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

# The anchor of an item's age: its sensing time (pgstac's indexed datetime column) or its ``created``
# property (first catalogued; an item without one never counts as old).
_ANCHOR = {
    "sensing": "i.datetime",
    "ingestion": "(i.content -> 'properties' ->> 'created')::timestamptz",
}
# Selected by the policy: too old (anchored before the cutoff) or outside the area; catalogued
# products of ours only. Candidates come from the items first (the datetime index serves a sensing
# cutoff), the keep_latest newest owned items by an ordered LIMIT, so the cost follows what is
# selected rather than the collection's size. Kept matches are returned too, flagged.
_MATCHES = """
WITH cand AS (
    SELECT i.id AS item_id, {anchor} AS anchored, {outside} AS outside,
           (SELECT coalesce(sum((a ->> 'file:size')::bigint), 0)::bigint
              FROM jsonb_each(i.content -> 'assets') AS e(k, a)
             WHERE jsonb_typeof(a -> 'file:size') = 'number') AS bytes
    FROM pgstac.items i
    WHERE i.collection = %(collection)s AND ({selected})
), keep AS (
    SELECT i.id AS item_id FROM pgstac.items i
    JOIN ingest.products p ON p.collection = i.collection AND p.item_id = i.id AND p.state = 'catalogued'
    WHERE i.collection = %(collection)s AND {anchor} IS NOT NULL
    ORDER BY {anchor} DESC, i.id DESC
    LIMIT %(keep)s
)
SELECT p.id, c.item_id, p.s3_prefix, c.anchored, c.outside, k.item_id IS NOT NULL, c.bytes
FROM cand c
JOIN ingest.products p ON p.collection = %(collection)s AND p.item_id = c.item_id AND p.state = 'catalogued'
LEFT JOIN keep k ON k.item_id = c.item_id
ORDER BY c.anchored, c.item_id
"""


# Unfinished: the item or the objects are still there (the predicate of retirements_pending_idx).
_PENDING = "item_deleted_at IS NULL OR objects_deleted_at IS NULL"


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
    params = {"collection": collection, "cutoff": cutoff, "area": area, "keep": keep_latest}
    outside = "NOT st_intersects(i.geometry, st_setsrid(st_geomfromgeojson(%(area)s::text), 4326))"
    rules = ([f"{_ANCHOR[anchor]} < %(cutoff)s::timestamptz"] if cutoff is not None else []) + (
        [outside] if area is not None else []
    )
    if not rules:
        return []
    query = _MATCHES.format(anchor=_ANCHOR[anchor], outside=outside if area else "false", selected=" OR ".join(rules))
    return [Match(*row) for row in conn.execute(query, params).fetchall()]


def item_count(conn: psycopg.Connection, collection: str) -> int:
    row = conn.execute("SELECT count(*) FROM pgstac.items WHERE collection = %s", [collection]).fetchone()
    return int(row[0]) if row else 0


def retire(
    conn: psycopg.Connection,
    collection: str,
    run_id: str,
    chosen: Sequence[tuple[str, str, int | None]],
    *,
    cause: str = "retention",
) -> list[str]:
    """Move (product id, reason, bytes) from catalogued to retired, with their events and retirement rows,
    in one transaction; returns the ids moved (a product no longer catalogued is left alone). ``cause``
    begins each event's message: ``retention``, or ``upstream`` for a product the provider withdrew."""
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
                SELECT id, 'catalogued', 'retired', %(worker)s, %(cause)s::text || ': ' || reason,
                       jsonb_build_object('run', %(run)s::text) FROM moved
            )
            INSERT INTO ingest.retirements (product_id, collection, item_id, s3_prefix, run_id, reason, bytes)
            SELECT id, %(collection)s, item_id, s3_prefix, %(run)s, reason, bytes FROM moved
            RETURNING product_id
            """,
            {
                "ids": ids,
                "reasons": reasons,
                "sizes": sizes,
                "collection": collection,
                "run": run_id,
                "worker": WORKER,
                "cause": cause,
            },
        ).fetchall()
    return [r[0] for r in rows]


def lock_key(collection: str) -> str:
    """The advisory lock of the collection's enforcement (``ingest.state.locks``)."""
    return f"ingest-retention:{collection}"


def pending(conn: psycopg.Connection, collection: str) -> list[Pending]:
    """Retirements whose item or objects are not deleted yet (a crashed or failed run's leftovers)."""
    rows = conn.execute(
        "SELECT product_id, item_id, s3_prefix, item_deleted_at IS NOT NULL, objects_deleted_at IS NOT NULL"
        f" FROM ingest.retirements WHERE collection = %s AND ({_PENDING}) ORDER BY retired_at, product_id",
        [collection],
    ).fetchall()
    return [Pending(*row) for row in rows]


def pending_counts(conn: psycopg.Connection) -> dict[str, int]:
    """Pending retirements per collection (served by the partial index on the same predicate)."""
    rows = conn.execute(f"SELECT collection, count(*) FROM ingest.retirements WHERE {_PENDING} GROUP BY 1")
    return {collection: int(n) for collection, n in rows}


def mark_items_deleted(conn: psycopg.Connection, product_ids: Sequence[str]) -> None:
    """Runs in the transaction that deleted the items from pgstac (see pgstac.delete_items). A product
    that never stored objects (no prefix recorded) is done with it."""
    conn.execute(
        "UPDATE ingest.retirements r SET item_deleted_at = now(), last_error = NULL,"
        " objects_deleted_at = CASE WHEN r.s3_prefix IS NULL THEN now() END,"
        " objects_deleted = CASE WHEN r.s3_prefix IS NULL THEN 0 END"
        " FROM unnest(%s::text[]) AS d(product_id)"
        " WHERE r.product_id = d.product_id AND r.item_deleted_at IS NULL",
        [list(product_ids)],
    )


def analyze(conn: psycopg.Connection) -> None:
    """Fresh statistics after a large retirement: planned on an empty table's statistics, the
    batched updates that follow would scan the whole table once per batch (measured: 30 s instead of
    1 s for 100,000 products)."""
    conn.execute("ANALYZE ingest.retirements")


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
