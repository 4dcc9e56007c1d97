"""Loading items so that a harvester's ``updated`` watermark can never pass one.

The rule harvesters follow (published on the landing page, ``ingest:harvesting``): search
``updated >= W - S`` where ``W`` is the newest ``updated`` seen so far and ``S`` is
``INGEST_UPDATED_SETTLE_S``. It is safe if every item becomes visible (its load commits) at most ``S``
after the ``updated`` it carries: an item stamped ``t`` and committed at ``c <= t + S`` was not there at
the poll that saw ``W`` (that poll ran before ``c``, and ``W`` was committed before it), so ``W < c <= t + S``
and the next poll, from ``W - S < t``, finds it.

This module makes the bound hold by construction: items are stamped with the database's clock (one
clock for every worker of the fleet, whatever their own say), and after the load the database's clock
is read again; a load that committed more than ``S`` after its stamp (a slow disk, a lock, a paused
worker) is stamped anew and loaded again, until one commits within ``S``. The re-load replaces the
item with itself plus a newer ``updated``: idempotent for pgstac and for harvesters (they drop
duplicates by id).
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Sequence
from datetime import UTC, datetime, timedelta
from typing import Any

import psycopg

from ingest.adapters import pgstac

log = logging.getLogger(__name__)

MAX_RESTAMPS = 5  # each one waits a whole load: past this the database is too slow for any bound


def server_now(conn: psycopg.Connection) -> datetime:
    """The database's clock (``clock_timestamp()``: not frozen by an open transaction)."""
    with conn.transaction():  # on a caller's connection that is not autocommit, leave no transaction open
        row = conn.execute("SELECT clock_timestamp()").fetchone()
    assert row is not None
    return row[0].astimezone(UTC)  # type: ignore[no-any-return]


def rfc3339(when: datetime) -> str:
    return when.astimezone(UTC).isoformat().replace("+00:00", "Z")


def late(stamped: datetime, committed: datetime, settle_s: float) -> bool:
    """Pure. Whether a load committed too long after its stamp for the harvesting rule."""
    return committed - stamped > timedelta(seconds=settle_s)


def restamped(docs: Sequence[dict[str, Any]], stamp: datetime) -> list[dict[str, Any]]:
    """Pure. ``docs`` with ``updated`` set to ``stamp`` (``created`` is left as it is)."""
    value = rfc3339(stamp)
    return [{**d, "properties": {**d["properties"], "updated": value}} for d in docs]


def load_settled(
    dsn: str,
    docs: Sequence[dict[str, Any]],
    *,
    stamped: datetime,
    clock: Callable[[], datetime],
    settle_s: float,
) -> int:
    """Load ``docs`` (stamped ``updated`` = ``stamped`` by the database's ``clock``) so that each is
    visible within ``settle_s`` of the ``updated`` it carries; returns how many times they were stamped
    anew. Raises what ``pgstac.load_items`` raises."""
    restamps = 0
    batch = list(docs)
    while True:
        pgstac.load_items(dsn, batch)
        committed = clock()
        if not late(stamped, committed, settle_s) or restamps >= MAX_RESTAMPS:
            if restamps >= MAX_RESTAMPS and late(stamped, committed, settle_s):
                log.error(
                    "items %s: committed %.1f s after their updated stamp, past INGEST_UPDATED_SETTLE_S=%s,"
                    " %d times: a harvester may miss them until they change again",
                    ", ".join(d["id"] for d in batch), (committed - stamped).total_seconds(), settle_s, restamps,
                )  # fmt: skip
            return restamps
        log.warning(
            "items %s: committed %.1f s after their updated stamp (INGEST_UPDATED_SETTLE_S=%s): stamped anew",
            ", ".join(d["id"] for d in batch), (committed - stamped).total_seconds(), settle_s,
        )  # fmt: skip
        restamps += 1
        stamped = clock()
        batch = restamped(batch, stamped)
