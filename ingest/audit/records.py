"""The audit's queries on the ingest schema: who owns a prefix, which product made an item, and the
audit records (``ingest.audits``, ``ingest.audit_deletions``) that status and the metrics read."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime

import psycopg

from ingest.audit.plan import Listed
from ingest.audit.report import Report
from ingest.state.machine import IN_FLIGHT, State

# A product on its way owns its item prefix even without an item: its next run reuses (or replaces)
# what it stored. Catalogued products own what their item names; invalid and retired ones nothing.
_ON_ITS_WAY = sorted({State.DISCOVERED.value, State.FAILED.value, *(s.value for s in IN_FLIGHT)})
_IN_FLIGHT = sorted(s.value for s in IN_FLIGHT)


def claimed(conn: psycopg.Connection, collection: str, groups: Sequence[str] | None = None) -> frozenset[str]:
    """Item prefixes of the collection (only ``groups`` when given) that a pending retirement or a
    product on its way owns besides the items."""
    rows = conn.execute(
        "SELECT item_id FROM ingest.retirements WHERE collection = %(c)s AND objects_deleted_at IS NULL"
        " AND (%(g)s::text[] IS NULL OR item_id = ANY(%(g)s))"
        " UNION SELECT item_id FROM ingest.products WHERE collection = %(c)s AND state = ANY(%(s)s)"
        " AND item_id IS NOT NULL AND (%(g)s::text[] IS NULL OR item_id = ANY(%(g)s))",
        {"c": collection, "s": _ON_ITS_WAY, "g": list(groups) if groups is not None else None},
    ).fetchall()
    return frozenset(r[0] for r in rows)


def uploading_unknown(conn: psycopg.Connection, collection: str) -> int:
    """Products in flight with no item id recorded yet: where they upload is not known."""
    row = conn.execute(
        "SELECT count(*) FROM ingest.products WHERE collection = %s AND state = ANY(%s) AND item_id IS NULL",
        [collection, _IN_FLIGHT],
    ).fetchone()
    return int(row[0]) if row else 0


def products_of(conn: psycopg.Connection, collection: str, item_ids: Sequence[str]) -> dict[str, tuple[str, str]]:
    """item id -> (product id, state) of the product that made it (the catalogued one, else the newest)."""
    rows = conn.execute(
        "SELECT DISTINCT ON (item_id) item_id, id, state FROM ingest.products"
        " WHERE collection = %s AND item_id = ANY(%s) ORDER BY item_id, state = 'catalogued' DESC, updated_at DESC",
        [collection, list(item_ids)],
    ).fetchall()
    return {r[0]: (r[1], r[2]) for r in rows}


def in_flight(state: str | None) -> bool:
    return state in _IN_FLIGHT


def save(conn: psycopg.Connection, report: Report) -> int:
    row = conn.execute(
        "INSERT INTO ingest.audits (collection, started_at, finished_at, deep, scheduled, items, assets, objects,"
        " unchecked_assets, broken_items, orphan_objects, orphan_bytes) VALUES"
        " (%s, %s, coalesce(%s, now()), %s, %s, %s, %s, %s, %s, %s, %s, %s) RETURNING id",
        [
            report.collection, report.started_at, report.finished_at, report.deep, report.scheduled, report.items,
            report.assets, report.objects, report.unchecked_assets, report.broken_count, report.orphan_count,
            report.orphan_bytes,
        ],
    ).fetchone()  # fmt: skip
    assert row is not None
    return int(row[0])


def save_repair(conn: psycopg.Connection, audit_id: int, *, requeued: int, deleted: int) -> None:
    conn.execute(
        "UPDATE ingest.audits SET requeued = %s, orphans_deleted = %s WHERE id = %s", [requeued, deleted, audit_id]
    )


def deletion_asked(conn: psycopg.Connection, audit_id: int, collection: str, objects: Sequence[Listed]) -> None:
    with conn.cursor() as cur:
        cur.executemany(
            "INSERT INTO ingest.audit_deletions (audit_id, collection, key, size, last_modified)"
            " VALUES (%s, %s, %s, %s, %s)",
            [(audit_id, collection, o.key, o.size, o.last_modified) for o in objects],
        )


def deletion_done(conn: psycopg.Connection, audit_id: int, keys: Sequence[str]) -> None:
    conn.execute(
        "UPDATE ingest.audit_deletions SET deleted_at = now() WHERE audit_id = %s AND key = ANY(%s)",
        [audit_id, list(keys)],
    )


@dataclass(frozen=True)
class LastAudit:
    """The newest audit of a collection, as status and the metrics show it."""

    finished_at: datetime
    deep: bool
    scheduled: bool
    items: int
    objects: int
    broken_items: int
    orphan_objects: int
    unchecked_assets: int
    requeued: int | None
    orphans_deleted: int | None


def last_audits(conn: psycopg.Connection, collections: Sequence[str] | None = None) -> dict[str, LastAudit]:
    rows = conn.execute(
        "SELECT DISTINCT ON (collection) collection, finished_at, deep, scheduled, items, objects, broken_items,"
        " orphan_objects, unchecked_assets, requeued, orphans_deleted FROM ingest.audits"
        " WHERE %(c)s::text[] IS NULL OR collection = ANY(%(c)s) ORDER BY collection, finished_at DESC, id DESC",
        {"c": list(collections) if collections is not None else None},
    ).fetchall()
    return {r[0]: LastAudit(*r[1:]) for r in rows}
