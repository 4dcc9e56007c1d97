"""What the operator commands read and change: status, hand retries, audit repairs, a product's history."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import asdict, dataclass, field
from datetime import datetime
from typing import Any

import psycopg
from psycopg.rows import dict_row

from ingest.audit.records import LastAudit, last_audits
from ingest.errors import StateConflict
from ingest.state import repo, retirements
from ingest.state.machine import IN_FLIGHT, State

RECENT_FAILURES = 10


@dataclass
class CollectionStatus:
    collection: str
    states: dict[str, int] = field(default_factory=dict)
    oldest_pending: datetime | None = None  # publication time of the oldest product not yet done
    watermark: datetime | None = None
    last_harvest_at: datetime | None = None
    last_harvest_found: int | None = None
    recent_failures: list[dict[str, Any]] = field(default_factory=list)
    retirements_pending: int = 0  # retired products whose item or objects a retention run left
    last_audit: LastAudit | None = None  # the newest `ingest audit` of the collection (ingest.audits)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def status(conn: psycopg.Connection, collections: list[str]) -> list[CollectionStatus]:
    """Per collection: products per state, oldest pending, watermark, last harvest, recent failures,
    unfinished retirements."""
    out = {c: CollectionStatus(c) for c in collections}
    with conn.cursor(row_factory=dict_row) as cur:
        for r in cur.execute(
            "SELECT collection, state, count(*) AS n FROM ingest.products WHERE collection = ANY(%s) GROUP BY 1, 2",
            [collections],
        ):
            out[r["collection"]].states[r["state"]] = int(r["n"])
        pending = [State.DISCOVERED.value, State.FAILED.value, State.OFFLINE.value, *(s.value for s in IN_FLIGHT)]
        for r in cur.execute(
            "SELECT collection, min(published_at) AS oldest FROM ingest.products"
            " WHERE collection = ANY(%s) AND state = ANY(%s) GROUP BY 1",
            [collections, pending],
        ):
            out[r["collection"]].oldest_pending = r["oldest"]
        for r in cur.execute(
            "SELECT collection, published_until, last_harvest_at, last_harvest_found FROM ingest.watermarks"
            " WHERE collection = ANY(%s)",
            [collections],
        ):
            s = out[r["collection"]]
            s.watermark, s.last_harvest_at, s.last_harvest_found = (
                r["published_until"],
                r["last_harvest_at"],
                r["last_harvest_found"],
            )
        for r in cur.execute(
            """
            SELECT collection, id, state, attempts, last_error, next_attempt_at, updated_at FROM (
                SELECT *, row_number() OVER (PARTITION BY collection ORDER BY updated_at DESC) AS rank
                  FROM ingest.products WHERE collection = ANY(%s) AND state IN ('failed', 'invalid')
            ) ranked WHERE rank <= %s ORDER BY updated_at DESC
            """,
            [collections, RECENT_FAILURES],
        ):
            out[r.pop("collection")].recent_failures.append(r)
    for cid, n in retirements.pending_counts(conn).items():
        if cid in out:
            out[cid].retirements_pending = n
    for cid, audit in last_audits(conn, collections).items():
        out[cid].last_audit = audit
    return [out[c] for c in collections]


def retry(
    conn: psycopg.Connection, collection: str, states: list[State], *, since: datetime | None = None
) -> list[str]:
    """Give failed/invalid products of a collection back to the pipeline (``discovered``, attempts reset).

    ``since``: only products whose last change is at or after it. Guarded per product: one that moved
    meanwhile is left alone.
    """
    rows = conn.execute(
        "SELECT id, state FROM ingest.products WHERE collection = %s AND state = ANY(%s)"
        " AND (%s::timestamptz IS NULL OR updated_at >= %s) ORDER BY published_at NULLS LAST, id",
        [collection, [s.value for s in states], since, since],
    ).fetchall()
    moved = []
    for pid, state in rows:
        try:
            repo.transition(
                conn,
                pid,
                State(state),
                State.DISCOVERED,
                message="retry requested by an operator",
                set_fields={"attempts": 0, "next_attempt_at": None},
            )
        except StateConflict:
            continue
        moved.append(pid)
    return moved


def requeue_for_repair(
    conn: psycopg.Connection,
    broken: list[tuple[str, str]],
    *,
    by: str = "audit",
    states: tuple[State, ...] = (State.CATALOGUED,),
    fields: Mapping[str, Mapping[str, Any]] | None = None,
) -> list[str]:
    """Give catalogued products whose item an audit found broken back to the pipeline; returns the ids moved.

    ``broken``: (product id, what is wrong). The queue's task takes discovered products only, and the
    state machine leaves catalogued only by a claim (as ``ingest process --force`` does), so each goes
    catalogued -> claimed -> discovered in one transaction, with its two events; a product that moved
    meanwhile is left alone. Its item stays served until a worker has processed it again, which
    uploads what the store lacks or holds in another size and reloads the item.

    ``by`` names who asks, in the events (``audit``, ``reconcile``); ``states``: where the products may
    be (``reconcile`` takes discovered ones the same way); ``fields``: per product id, columns set as
    it goes back (the upstream checksum and download link a provider changed).
    """
    moved = []
    for pid, why in broken:
        try:
            with conn.transaction():
                repo.transition(conn, pid, states, State.CLAIMED, message=f"{by}: {why}")
                repo.transition(
                    conn,
                    pid,
                    State.CLAIMED,
                    State.DISCOVERED,
                    message=f"{by} repair: queued to be processed again",
                    set_fields={"attempts": 0, "next_attempt_at": None, **((fields or {}).get(pid) or {})},
                )
        except StateConflict:
            continue
        moved.append(pid)
    return moved


def history(conn: psycopg.Connection, product_id: str) -> tuple[dict[str, Any], list[dict[str, Any]]] | None:
    row = repo.get_product(conn, product_id)
    if row is None:
        return None
    return row, repo.events_of(conn, product_id)
