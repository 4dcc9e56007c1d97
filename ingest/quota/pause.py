"""The fleet-wide pause of a provider after a 429/503: recorded by one worker, obeyed by all.

``record`` reads the provider's row under a row lock, lets the pure ``backoff.decide`` choose the
pause, and writes it, in one transaction: two workers that get a 429 in the same instant record one
pause, the second joining the first (see ``ingest.quota.backoff``). ``read`` is what a waiter polls;
``succeeded`` resets the consecutive count after a success (unless a pause still runs: the SQL is
``backoff.on_success``). Times are the database server's: ``paused_until`` means the same instant to
every machine, and waiters sleep the remaining seconds the server tells them.
"""

from __future__ import annotations

import random
from dataclasses import dataclass
from datetime import datetime

import psycopg

from ingest.quota import backoff

_ENSURE_SQL = "INSERT INTO ingest.provider_limits (provider) VALUES (%s) ON CONFLICT (provider) DO NOTHING"
_LOCK_SQL = """
SELECT greatest(0, extract(epoch FROM paused_until - now()))::float8, consecutive_pauses
  FROM ingest.provider_limits WHERE provider = %s FOR UPDATE
"""
_WRITE_SQL = """
UPDATE ingest.provider_limits
   SET paused_until = now() + make_interval(secs => %(seconds)s), pause_status = %(status)s,
       pause_cause = %(cause)s, paused_at = now(), paused_by = %(by)s, consecutive_pauses = %(consecutive)s
 WHERE provider = %(provider)s
RETURNING paused_until, now()
"""
_READ_SQL = """
SELECT CASE WHEN l.paused_until > now() THEN l.paused_until END, l.pause_cause, l.pause_status,
       coalesce(l.consecutive_pauses, 0), now()
  FROM (VALUES (1)) AS one (x) LEFT JOIN ingest.provider_limits AS l ON l.provider = %s
"""
# backoff.on_success: reset, unless a pause still runs
_SUCCEEDED_SQL = """
UPDATE ingest.provider_limits SET consecutive_pauses = 0
 WHERE provider = %s AND consecutive_pauses > 0 AND (paused_until IS NULL OR paused_until <= now())
"""
CAUSE_MAX_CHARS = 500


@dataclass(frozen=True)
class Pause:
    """A provider's pause as the server sees it now (``until`` None: not paused)."""

    until: datetime | None
    cause: str | None
    status: int | None
    consecutive: int
    now: datetime  # the server's clock

    @property
    def remaining_s(self) -> float:
        return 0.0 if self.until is None else max(0.0, (self.until - self.now).total_seconds())


@dataclass(frozen=True)
class Recorded:
    pause: Pause
    decision: backoff.PauseDecision


def record(
    conn: psycopg.Connection,
    provider: str,
    *,
    status: int | None,
    retry_after_s: float | None,
    cause: str,
    policy: backoff.PausePolicy,
    by: str,
    rng: random.Random | None = None,
) -> Recorded:
    """Pause the provider for the fleet (or join its running pause)."""
    cause = " ".join(cause.split())[:CAUSE_MAX_CHARS]
    with conn.transaction():
        conn.execute(_ENSURE_SQL, [provider])
        row = conn.execute(_LOCK_SQL, [provider]).fetchone()
        assert row is not None
        remaining, consecutive = float(row[0] or 0.0), int(row[1])
        decision = backoff.decide(
            policy, consecutive=consecutive, remaining_s=remaining, retry_after_s=retry_after_s, rng=rng
        )
        if decision.joined and decision.seconds <= remaining:
            pause = read(conn, provider)  # the running pause stands as it is
            return Recorded(pause, decision)
        written = conn.execute(
            _WRITE_SQL,
            {
                "provider": provider,
                "seconds": decision.seconds,
                "status": status,
                "cause": cause,
                "by": by,
                "consecutive": decision.consecutive,
            },
        ).fetchone()
        assert written is not None
    return Recorded(Pause(written[0], cause, status, decision.consecutive, written[1]), decision)


def read(conn: psycopg.Connection, provider: str) -> Pause:
    row = conn.execute(_READ_SQL, [provider]).fetchone()
    assert row is not None
    return Pause(row[0], row[1], row[2], int(row[3]), row[4])


def succeeded(conn: psycopg.Connection, provider: str) -> None:
    conn.execute(_SUCCEEDED_SQL, [provider])
