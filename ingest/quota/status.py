"""What ``ingest status`` shows of the provider limits: per provider, slots held across the fleet and
the limit, the running pause (until when, why) and the consecutive pauses. Read-only, two queries,
on any connection to the database (advisory locks are per database: the same one the workers use).

Slots held are counted in ``pg_locks``, so they are exact at the instant of the query, whoever holds
them; the limit is this process's ``INGEST_PROVIDER_MAX_DOWNLOADS`` (the fleet's is the largest one
configured, see ``ingest.quota.slots``).
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from datetime import datetime
from typing import Any

import psycopg

from ingest.quota.slots import HELD_SQL, lock_classid

_ROWS_SQL = """
SELECT provider, CASE WHEN paused_until > now() THEN paused_until END,
       CASE WHEN paused_until > now() THEN greatest(0, extract(epoch FROM paused_until - now()))::float8 END,
       pause_cause, pause_status, paused_at, consecutive_pauses
  FROM ingest.provider_limits
"""


@dataclass(frozen=True)
class ProviderStatus:
    provider: str
    slots_held: int  # across the fleet, now
    slots_limit: int
    paused_until: datetime | None  # None: not paused now
    remaining_s: float  # of the running pause; 0 when none
    pause_cause: str | None  # of the latest pause (running or not)
    pause_status: int | None
    last_paused_at: datetime | None
    consecutive_pauses: int

    @property
    def paused(self) -> bool:
        return self.paused_until is not None

    def as_dict(self) -> dict[str, Any]:
        """JSON-ready (``ingest status --json``)."""
        return {
            "provider": self.provider,
            "slots_held": self.slots_held,
            "slots_limit": self.slots_limit,
            "paused": self.paused,
            "paused_until": self.paused_until.isoformat() if self.paused_until else None,
            "pause_remaining_s": round(self.remaining_s, 1),
            "pause_cause": self.pause_cause,
            "pause_status": self.pause_status,
            "last_paused_at": self.last_paused_at.isoformat() if self.last_paused_at else None,
            "consecutive_pauses": self.consecutive_pauses,
        }


def read(conn: psycopg.Connection, *, providers: Iterable[str] = (), max_downloads: int) -> list[ProviderStatus]:
    """Every provider named in ``providers`` or known to the table, sorted by name."""
    rows = {r[0]: r for r in conn.execute(_ROWS_SQL).fetchall()}
    names = sorted(set(providers) | set(rows))
    classids = {lock_classid(n): n for n in names}
    held = {classids[int(c)]: int(n) for c, n in conn.execute(HELD_SQL, [list(classids)]).fetchall()}
    out = []
    for name in names:
        row = rows.get(name)
        until, remaining, cause, status, paused_at, consecutive = row[1:] if row else (None,) * 5 + (0,)
        out.append(
            ProviderStatus(
                provider=name,
                slots_held=held.get(name, 0),
                slots_limit=max_downloads,
                paused_until=until,
                remaining_s=float(remaining or 0.0),
                pause_cause=cause,
                pause_status=status,
                last_paused_at=paused_at,
                consecutive_pauses=int(consecutive),
            )
        )
    return out
