"""Request rate: at most R requests per second to a provider, across the fleet, one statement each.

The provider's row holds ``next_request_at``, the fleet's next free request time. A request reserves
it and moves it 1/R s on, in one ``INSERT ... ON CONFLICT DO UPDATE`` (the row lock orders concurrent
callers), and is told how long to sleep until its reserved time: ``max(next_request_at, now) - now``.
Nobody is refused and nobody retries, so a request costs exactly one round trip, and reservations
are spaced by 1/R on the database server's clock (the one clock every machine shares); the caller
sleeps on its own clock a relative delay, so clock offsets between machines do not matter. No burst:
an idle provider's clock is not saved up (``greatest(next_request_at, now)``), so any window of one
second holds at most R reservations. A paused provider (``ingest.quota.pause``) gets no reservation:
the same statement returns the pause instead, and the caller waits for it.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

import psycopg

_RESERVE_SQL = """
INSERT INTO ingest.provider_limits AS l (provider, next_request_at)
VALUES (%(provider)s, now() + make_interval(secs => %(spacing)s))
ON CONFLICT (provider) DO UPDATE SET next_request_at = CASE
    WHEN l.paused_until > now() THEN l.next_request_at
    ELSE greatest(l.next_request_at, now()) + make_interval(secs => %(spacing)s) END
RETURNING CASE WHEN l.paused_until > now() THEN 0.0
               ELSE extract(epoch FROM l.next_request_at - now())::float8 - %(spacing)s END,
          CASE WHEN l.paused_until > now() THEN l.paused_until END,
          l.pause_cause, l.pause_status, l.consecutive_pauses, now()
"""


@dataclass(frozen=True)
class Reservation:
    delay_s: float  # sleep this long, then send (0 when paused: nothing was reserved)
    paused_until: datetime | None  # set when the provider is paused (still in the future on the server)
    pause_cause: str | None
    pause_status: int | None
    consecutive_pauses: int
    now: datetime  # the server's clock


def reserve(conn: psycopg.Connection, provider: str, per_s: float) -> Reservation:
    """Reserve the provider's next request time (unless it is paused); ``per_s`` > 0."""
    spacing = 1.0 / per_s
    row = conn.execute(_RESERVE_SQL, {"provider": provider, "spacing": spacing}).fetchone()
    assert row is not None
    delay, until, cause, status, consecutive, now = row
    return Reservation(max(0.0, float(delay)), until, cause, status, int(consecutive), now)
