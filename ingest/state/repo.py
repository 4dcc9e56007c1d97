"""Queries on the ingest schema. SQL lives here and nowhere else.

Every state change is ``UPDATE ... WHERE id = %s AND state = ANY(expected)`` plus an event row in
the same transaction; a change that finds the product elsewhere raises StateConflict and changes
nothing. ``resumed=True`` (a retry after a lost connection, ``ingest.state.db.Database``): a change
that finds the product already where it was going, with this process's event the newest, is the
lost call's own change, committed after all: done, not a conflict and not made twice.
"""

from __future__ import annotations

import os
import socket
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

import psycopg
from psycopg.rows import dict_row
from psycopg.types.json import Jsonb

from ingest.errors import StateConflict
from ingest.state.machine import IN_FLIGHT, State, can_transition

WORKER = f"{socket.gethostname()}:{os.getpid()}"


@dataclass(frozen=True)
class DiscoveredProduct:
    id: str
    collection: str
    provider: str
    download_url: str | None
    upstream_checksum: str | None
    size_bytes: int | None
    published_at: datetime | None
    sensing_at: datetime | None
    footprint: dict[str, Any] | None
    online: bool = True


def insert_discovered(conn: psycopg.Connection, products: Sequence[DiscoveredProduct]) -> list[str]:
    """Insert products not seen before (state discovered, with an event); returns the new ids.

    One round trip per batch: cost follows the batch, not the size of the table.
    """
    if not products:
        return []
    cols = (
        "id",
        "collection",
        "provider",
        "download_url",
        "upstream_checksum",
        "size_bytes",
        "published_at",
        "sensing_at",
        "footprint",
        "online",
    )
    rows = [
        (
            p.id,
            p.collection,
            p.provider,
            p.download_url,
            p.upstream_checksum,
            p.size_bytes,
            p.published_at,
            p.sensing_at,
            Jsonb(p.footprint) if p.footprint is not None else None,
            p.online,
        )
        for p in products
    ]
    with conn.transaction(), conn.cursor() as cur:
        placeholders = ", ".join(["(" + ", ".join(["%s"] * len(cols)) + ")"] * len(rows))
        flat = [v for row in rows for v in row]
        cur.execute(
            f"""
            WITH new AS (
                INSERT INTO ingest.products ({", ".join(cols)}) VALUES {placeholders}
                ON CONFLICT (id) DO NOTHING
                RETURNING id
            ), ev AS (
                INSERT INTO ingest.events (product_id, from_state, to_state, worker, message)
                SELECT id, NULL, 'discovered', %s, 'discovered' FROM new
            )
            SELECT id FROM new
            """,
            [*flat, WORKER],
        )
        return [r[0] for r in cur.fetchall()]


def transition(
    conn: psycopg.Connection,
    product_id: str,
    expected: State | Iterable[State],
    new: State,
    *,
    message: str | None = None,
    details: dict[str, Any] | None = None,
    set_fields: dict[str, Any] | None = None,
    resumed: bool = False,
) -> None:
    """Guarded state change with its event, in one transaction."""
    exp = [expected] if isinstance(expected, State) else list(expected)
    for src in exp:
        if not can_transition(src, new):
            raise ValueError(f"transition {src} -> {new} is not in the state machine")
    fields = dict(set_fields or {})
    assignments = ", ".join(f"{k} = %s" for k in fields)
    extra = (", " + assignments) if assignments else ""
    with conn.transaction(), conn.cursor() as cur:
        cur.execute(
            f"""
            WITH old AS (SELECT state FROM ingest.products WHERE id = %s FOR UPDATE)
            UPDATE ingest.products p SET state = %s, updated_at = now(){extra}
            FROM old WHERE p.id = %s AND old.state = ANY(%s)
            RETURNING old.state
            """,
            [product_id, new.value, *fields.values(), product_id, [s.value for s in exp]],
        )
        row = cur.fetchone()
        if row is None:
            if resumed and _applied(conn, product_id, exp, new):
                return
            current = cur.execute("SELECT state FROM ingest.products WHERE id = %s", [product_id]).fetchone()
            found = current[0] if current else "no such product"
            raise StateConflict(
                f"cannot move to {new.value}: expected {'/'.join(s.value for s in exp)}, found {found}",
                product_id=product_id,
            )
        cur.execute(
            "INSERT INTO ingest.events (product_id, from_state, to_state, worker, message, details) "
            "VALUES (%s, %s, %s, %s, %s, %s)",
            [product_id, row[0], new.value, WORKER, message, Jsonb(details) if details is not None else None],
        )


def _applied(conn: psycopg.Connection, product_id: str, expected: Sequence[State], new: State) -> bool:
    """Whether the product is in ``new`` by this process's own change from ``expected``: its newest
    event says so (events are written with the state, in the same transaction). The guard held the
    product in ``expected`` for us until that change, so nobody else can have made it."""
    last = conn.execute(
        "SELECT e.from_state, e.to_state, e.worker, p.state FROM ingest.products p"
        " JOIN ingest.events e ON e.product_id = p.id WHERE p.id = %s ORDER BY e.id DESC LIMIT 1",
        [product_id],
    ).fetchone()
    if last is None:
        return False
    from_state, to_state, worker, state = last
    return bool(state == to_state == new.value and worker == WORKER and from_state in {s.value for s in expected})


def get_product(conn: psycopg.Connection, product_id: str) -> dict[str, Any] | None:
    with conn.cursor(row_factory=dict_row) as cur:
        return cur.execute("SELECT * FROM ingest.products WHERE id = %s", [product_id]).fetchone()


def events_of(conn: psycopg.Connection, product_id: str) -> list[dict[str, Any]]:
    with conn.cursor(row_factory=dict_row) as cur:
        return cur.execute("SELECT * FROM ingest.events WHERE product_id = %s ORDER BY id", [product_id]).fetchall()


def get_watermark(conn: psycopg.Connection, collection: str) -> datetime | None:
    row = conn.execute("SELECT published_until FROM ingest.watermarks WHERE collection = %s", [collection]).fetchone()
    return row[0] if row else None


def advance_watermark(
    conn: psycopg.Connection, collection: str, provider: str, published_until: datetime, found: int
) -> None:
    """Move the watermark forward only (GREATEST): a late harvest never moves it back."""
    conn.execute(
        """
        INSERT INTO ingest.watermarks (collection, provider, published_until, last_harvest_at, last_harvest_found)
        VALUES (%s, %s, %s, now(), %s)
        ON CONFLICT (collection) DO UPDATE SET
            published_until = GREATEST(ingest.watermarks.published_until, EXCLUDED.published_until),
            provider = EXCLUDED.provider, last_harvest_at = now(),
            last_harvest_found = EXCLUDED.last_harvest_found, updated_at = now()
        """,
        [collection, provider, published_until, found],
    )


def touch_harvest(conn: psycopg.Connection, collection: str, found: int) -> None:
    conn.execute(
        "UPDATE ingest.watermarks SET last_harvest_at = now(), last_harvest_found = %s, updated_at = now() "
        "WHERE collection = %s",
        [found, collection],
    )


def claim(
    conn: psycopg.Connection,
    product_id: str,
    *,
    allowed: Iterable[State] = (State.DISCOVERED, State.FAILED),
    resumed: bool = False,
) -> dict[str, Any]:
    """Take a product for processing: guarded move to ``claimed``, one more attempt counted."""
    states = list(allowed)
    exp = [s.value for s in states]
    with conn.transaction(), conn.cursor(row_factory=dict_row) as cur:
        row = cur.execute(
            """
            WITH old AS (SELECT state FROM ingest.products WHERE id = %s FOR UPDATE)
            UPDATE ingest.products p
               SET state = 'claimed', attempts = p.attempts + 1, next_attempt_at = NULL, updated_at = now()
              FROM old WHERE p.id = %s AND old.state = ANY(%s)
            RETURNING p.*, old.state AS from_state
            """,
            [product_id, product_id, exp],
        ).fetchone()
        if row is None:
            if resumed and _applied(conn, product_id, states, State.CLAIMED):
                claimed = cur.execute("SELECT * FROM ingest.products WHERE id = %s", [product_id]).fetchone()
                assert claimed is not None  # _applied found it
                return claimed
            current = cur.execute("SELECT state FROM ingest.products WHERE id = %s", [product_id]).fetchone()
            found = current["state"] if current else "no such product"
            raise StateConflict(f"cannot claim: expected {'/'.join(exp)}, found {found}", product_id=product_id)
        cur.execute(
            "INSERT INTO ingest.events (product_id, from_state, to_state, worker, message, details) "
            "VALUES (%s, %s, 'claimed', %s, %s, %s)",
            [product_id, row["from_state"], WORKER, f"attempt {row['attempts']}", None],
        )
        return row


# Due for processing: discovered, or failed with its retry due. Invalid products stay out (terminal
# until an operator forces them), and so do products in flight (a worker holds them) and retired ones
# (retention removed them on purpose). The one definition, for harvests and backfills alike.
# A discovered product with a next attempt time was given back while its provider was paused.
# An offline one is looked at again when its next attempt time comes.
_DUE = (
    "((state = 'discovered' AND (next_attempt_at IS NULL OR next_attempt_at <= now()))"
    " OR (state IN ('failed', 'offline') AND next_attempt_at <= now()))"
)


def due_products(conn: psycopg.Connection, collection: str, *, limit: int) -> list[str]:
    """Products of a collection due for processing now, oldest publication first (a backlog drains
    in the order the provider published it)."""
    rows = conn.execute(
        f"SELECT id FROM ingest.products WHERE collection = %s AND {_DUE}"
        " ORDER BY published_at NULLS LAST, id LIMIT %s",
        [collection, limit],
    ).fetchall()
    return [r[0] for r in rows]


def states_of(conn: psycopg.Connection, ids: Sequence[str]) -> dict[str, tuple[str, bool]]:
    """id -> (state, due for processing now) for the ids already known."""
    rows = conn.execute(
        f"SELECT id, state, coalesce({_DUE}, false) FROM ingest.products WHERE id = ANY(%s)", [list(ids)]
    ).fetchall()
    return {r[0]: (r[1], bool(r[2])) for r in rows}


def in_flight_since(conn: psycopg.Connection, older_than_s: float, *, limit: int) -> list[tuple[str, State, datetime]]:
    """Products in flight whose last change is older than ``older_than_s``: (id, state, updated_at)."""
    rows: list[tuple[Any, ...]] = conn.execute(
        """
        SELECT id, state, updated_at FROM ingest.products
         WHERE state = ANY(%s) AND updated_at < now() - make_interval(secs => %s)
         ORDER BY updated_at LIMIT %s
        """,
        [sorted(s.value for s in IN_FLIGHT), older_than_s, limit],
    ).fetchall()
    return [(r[0], State(r[1]), r[2]) for r in rows]


def last_harvests(conn: psycopg.Connection) -> dict[str, datetime]:
    """Each collection's last harvest time, for the collections that have one."""
    rows = conn.execute(
        "SELECT collection, last_harvest_at FROM ingest.watermarks WHERE last_harvest_at IS NOT NULL"
    ).fetchall()
    return {r[0]: r[1] for r in rows}
