"""Download slots: session-level advisory locks ``(provider key, slot index)``, held on the process's
quota session (``ingest.quota.session``).

Why advisory locks: the database is the one thing every worker on every machine already shares, and
the server frees a session's locks by itself when the session ends: a holder killed with ``kill -9``
(its socket closes) or a machine lost (keepalives, about 25 s) gives its slots back without anybody
cleaning up, and there is no lease to renew, no clock to compare between machines, no table to
sweep. Slot ``i`` of provider ``p`` is the lock ``(key(p), i)`` for ``i < limit``: whoever holds it
holds the slot. Processes configured with different limits share the low indices, so the fleet's
limit is the largest one configured.

Why one session per process rather than one per held slot: a worker with four threads holds at most
one extra database connection instead of four (a fleet of 50 workers would otherwise add hundreds
of backends against PostgreSQL's default ``max_connections`` of 100), and taking a slot costs one
round trip instead of a new authenticated connection. The price is bookkeeping: session locks are
re-entrant within their session, so this process remembers which indices its threads hold and never
asks for those again; and a lost session frees all of the process's slots at once. Then, on the new
connection, the session takes the same locks again (``_retake``); one that another process took in
between is reported lost (a warning: for that moment the fleet may run one download too many, which
a 429 and the shared pause correct).

Taking: ``ingest.take_provider_slot(key, indices)`` (migration 0005) tries the indices in the given
order and takes the first free one: one round trip however many are busy, and never more than one
lock (``pg_try_advisory_lock`` in a WHERE clause may be evaluated for more rows than are returned).
The indices start at a random offset so that waiters do not all compete for slot 0 first. The same
statement reads the provider's pause, so a slot is never handed out while the provider is paused.

Waiting (``ingest.quota.limits``) is polling with jittered sleeps: a ``kill -9`` sends no NOTIFY, so
polling would be needed anyway, and against downloads of minutes a poll of half a second costs
nothing that matters. There is no queue: no first-come-first-served order among waiters.
"""

from __future__ import annotations

import contextlib
import hashlib
import logging
import random
import threading
from dataclasses import dataclass
from datetime import datetime

import psycopg

from ingest.quota.session import QuotaSession

log = logging.getLogger(__name__)

_TAKE_SQL = """
SELECT ingest.take_provider_slot(%(key)s, %(indices)s::integer[]),
       CASE WHEN l.paused_until > now() THEN l.paused_until END, l.pause_cause, l.pause_status,
       coalesce(l.consecutive_pauses, 0), now()
  FROM (VALUES (1)) AS one (x) LEFT JOIN ingest.provider_limits AS l ON l.provider = %(provider)s
"""
_UNLOCK_SQL = "SELECT pg_advisory_unlock(%s, %s)"
_RETAKE_SQL = "SELECT pg_try_advisory_lock(%s, %s)"

# locks taken with two int4 keys show in pg_locks as classid = key1 (as an oid), objid = key2, objsubid 2
HELD_SQL = """
SELECT l.classid::bigint, count(*) FROM pg_locks l
 WHERE l.locktype = 'advisory' AND l.granted AND l.objsubid = 2
   AND l.database = (SELECT oid FROM pg_database WHERE datname = current_database())
   AND l.classid::bigint = ANY(%s::bigint[])
 GROUP BY 1
"""


def slot_key(provider: str) -> int:
    """The signed 32-bit first advisory-lock key of a provider's slots.

    sha256, not ``hashtext``: hashtext is an internal function whose result may change between
    PostgreSQL versions, and every worker must agree. The prefix keeps it apart from other users of
    the two-key form; single-key (bigint) locks, such as the scheduler's, live in another space.
    """
    return int.from_bytes(
        hashlib.sha256(b"ingest.quota.download-slot:" + provider.encode()).digest()[:4], "big", signed=True
    )


def lock_classid(provider: str) -> int:
    """``slot_key`` as pg_locks shows it (an unsigned oid)."""
    return slot_key(provider) & 0xFFFFFFFF


@dataclass(frozen=True)
class Taken:
    """What one take attempt found: the slot taken (or None) and the provider's running pause."""

    index: int | None
    paused_until: datetime | None  # only when still in the future on the server's clock
    pause_cause: str | None
    pause_status: int | None
    consecutive_pauses: int
    now: datetime  # the server's clock


class Slots:
    """The slots this process's session holds, for every provider. Thread-safe."""

    def __init__(self, session: QuotaSession, *, rng: random.Random | None = None) -> None:
        self._session = session
        self._rng = rng or random.Random()  # noqa: S311 - spreading waiters, not cryptography
        self._lock = threading.Lock()
        self._held: set[tuple[str, int]] = set()  # locks this session holds on the server
        self._lost: set[tuple[str, int]] = set()  # held by a thread here, lost with an old session
        session.on_reconnect(self._retake)

    def held(self, provider: str) -> int:
        """Slots of ``provider`` this process's threads hold (lost ones included: still downloading)."""
        with self._lock:
            return sum(1 for p, _ in self._held | self._lost if p == provider)

    def holds(self, provider: str, index: int) -> bool:
        """Whether this process still holds that slot's lock (False after a lost session took it)."""
        with self._lock:
            return (provider, index) in self._held

    def try_take(self, provider: str, limit: int) -> Taken:
        """One attempt, one round trip: a free slot below ``limit`` is taken unless the provider is paused."""
        key = slot_key(provider)

        def take(conn: psycopg.Connection) -> Taken:
            with self._lock:
                busy = {i for p, i in self._held | self._lost if p == provider}
            start = self._rng.randrange(limit)
            indices = [i for i in (*range(start, limit), *range(start)) if i not in busy]
            row = conn.execute(_TAKE_SQL, {"key": key, "indices": indices, "provider": provider}).fetchone()
            assert row is not None
            index, until, cause, status, consecutive, now = row
            if index is not None and until is not None:
                conn.execute(_UNLOCK_SQL, [key, index])  # paused: not now
                index = None
            if index is not None:
                with self._lock:
                    self._held.add((provider, int(index)))
            return Taken(None if index is None else int(index), until, cause, status, int(consecutive), now)

        return self._session.run(take)

    def release(self, provider: str, index: int) -> bool:
        """Give the slot back; False when its lock had been lost with an earlier session. Never raises:
        it runs on every exit path of a download, where the download's own error is the one to see."""
        with self._lock:
            if (provider, index) in self._lost:
                self._lost.discard((provider, index))
                return False
            if (provider, index) not in self._held:
                return False
        key = slot_key(provider)

        def unlock(conn: psycopg.Connection) -> bool:
            with self._lock:
                if (provider, index) not in self._held:
                    return False  # lost with the session while this thread waited for it
                self._held.discard((provider, index))
            row = conn.execute(_UNLOCK_SQL, [key, index]).fetchone()
            return bool(row and row[0])

        try:
            return self._session.run(unlock)
        except Exception as exc:  # whatever it was, the lock must not outlive it
            # The unlock did not happen, or not knowingly: end the session, which frees the lock on the
            # server (or the server ends it when it never hears from us again). The other slots of this
            # process are taken again on the next connection (_retake).
            with self._lock:
                self._held.discard((provider, index))
            self._session.close()
            log.warning("provider %s: download slot %d released by closing the session: %s", provider, index, exc)
            with contextlib.suppress(Exception):  # the others' locks back at once, if the database answers
                self._session.run(lambda conn: None)
            return False

    def _retake(self, conn: psycopg.Connection) -> None:
        """On a new session (the old one was lost, and its locks with it): take the held slots again.
        A failure part way leaves the rest for the next connection."""
        with self._lock:
            held = sorted(self._held)
        for provider, index in held:
            row = conn.execute(_RETAKE_SQL, [slot_key(provider), index]).fetchone()
            if row and row[0]:
                continue
            with self._lock:
                self._held.discard((provider, index))
                self._lost.add((provider, index))
            log.warning(
                "provider %s: download slot %d lost with the database session and taken by another process "
                "meanwhile; one download too many runs until it ends",
                provider,
                index,
            )
