"""Our schema's record of each target: the cursor per collection and the items it holds (digests)."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime
from typing import Any

import psycopg


def cursor(conn: psycopg.Connection[Any], target: str, collection: str) -> datetime | None:
    row = conn.execute(
        "SELECT since FROM ingest.registration_cursors WHERE target = %s AND collection = %s", [target, collection]
    ).fetchone()
    return row[0] if row else None


def save_cursor(conn: psycopg.Connection[Any], target: str, collection: str, since: datetime) -> None:
    conn.execute(
        "INSERT INTO ingest.registration_cursors (target, collection, since) VALUES (%s, %s, %s)"
        " ON CONFLICT (target, collection) DO UPDATE SET since = excluded.since, updated_at = now()",
        [target, collection, since],
    )


def held(conn: psycopg.Connection[Any], target: str, collection: str, item_ids: Sequence[str]) -> dict[str, str]:
    """The digests the target holds of these items."""
    rows = conn.execute(
        "SELECT item_id, digest FROM ingest.registered_items WHERE target = %s AND collection = %s"
        " AND item_id = ANY(%s)",
        [target, collection, list(item_ids)],
    ).fetchall()
    return {r[0]: r[1] for r in rows}


def record_many(conn: psycopg.Connection[Any], target: str, collection: str, pushed: Sequence[tuple[str, str]]) -> None:
    """The target accepted these (item id, digest): one transaction."""
    with conn.transaction(), conn.cursor() as cur:
        cur.executemany(
            "INSERT INTO ingest.registered_items (target, collection, item_id, digest) VALUES (%s, %s, %s, %s)"
            " ON CONFLICT (target, collection, item_id) DO UPDATE SET digest = excluded.digest, pushed_at = now()",
            [(target, collection, item_id, digest) for item_id, digest in pushed],
        )


def forget(conn: psycopg.Connection[Any], target: str, collection: str, item_id: str) -> None:
    conn.execute(
        "DELETE FROM ingest.registered_items WHERE target = %s AND collection = %s AND item_id = %s",
        [target, collection, item_id],
    )


def gone(conn: psycopg.Connection[Any], target: str, collection: str) -> list[str]:
    """Items the target holds that our catalogue no longer has (retention, a replaced processing)."""
    rows = conn.execute(
        "SELECT r.item_id FROM ingest.registered_items r WHERE r.target = %s AND r.collection = %s"
        " AND NOT EXISTS (SELECT 1 FROM pgstac.items i WHERE i.collection = r.collection AND i.id = r.item_id)"
        " ORDER BY r.item_id",
        [target, collection],
    ).fetchall()
    return [r[0] for r in rows]
