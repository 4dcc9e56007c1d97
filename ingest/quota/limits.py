"""The provider limits as a caller sees them: one ``Quota`` per process, one ``ProviderLimits`` per provider.

    quota = Quota.from_settings(settings)          # one per process; thread-safe; one DB connection
    limits = quota.provider("cop_dataspace")
    with limits.download_slot(product_id) as slot:  # waits for a slot (and for a pause to end)
        limits.before_request()                     # waits for the fleet's rate limit (and a pause)
        ...                                         # 429/503: limits.pause(status, retry_after_s, cause)
        limits.succeeded()                          # a 2xx: consecutive pauses back to 0

``download_slot`` and ``before_request`` wait at most ``wait_s`` (``INGEST_PROVIDER_SLOT_WAIT_S`` by
default), then raise ``SlotWaitTimeout`` (every slot stayed busy) or ``ProviderPaused`` (the pause
outlasts the wait; raised at once when it is known to), or ``WaitCancelled`` when ``should_stop()``
says the process is stopping. All three are ``ProviderLimited``: not the product's fault, so not an
attempt of it. The rate limit's own sleep is not bounded by ``wait_s``: it is the fleet's demand,
and giving up would not lower it.

The waits are the database server's figures slept on this machine's clock (``ingest.quota.rate``,
``ingest.quota.pause``), in pieces of at most a second when ``should_stop`` is given, so that a
stopping worker is not held by a long pause; the polls of a busy slot are jittered (0.5 to 1.5
``poll_s``). Waiters add a little jitter to a pause's end (``backoff.wake_jitter_s``).

Thread-safety: ``Quota`` and ``ProviderLimits`` are shared by every thread of the process (their
statements go one at a time through the quota session's lock; nobody sleeps holding it); a ``Slot``
belongs to the ``with`` block that took it. Make the ``Quota`` in the process that uses it: a forked
child opens its own session (and never closes its parent's), but does not inherit its parent's slots.
"""

from __future__ import annotations

import logging
import random
import threading
import time
from collections.abc import Callable, Iterable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import TYPE_CHECKING

from ingest.quota import backoff, metrics, rate
from ingest.quota import pause as pause_
from ingest.quota import status as status_
from ingest.quota.errors import ProviderPaused, SlotWaitTimeout, WaitCancelled
from ingest.quota.session import QuotaSession
from ingest.quota.slots import Slots

if TYPE_CHECKING:
    from ingest.settings import Settings

log = logging.getLogger(__name__)

PAUSE_NAP_S = 1.0  # longest single sleep of a wait that asks should_stop


@dataclass(frozen=True)
class LimitsConfig:
    max_downloads: int = 4  # slots per provider, across the fleet
    max_requests_per_s: float = 10.0  # per provider, across the fleet; 0 = unlimited
    slot_wait_s: float = 300.0  # default wait of download_slot and before_request
    pause: backoff.PausePolicy = field(default_factory=backoff.PausePolicy)
    poll_s: float = 0.5  # between tries of a busy slot (jittered)

    def __post_init__(self) -> None:
        if self.max_downloads < 1 or self.max_requests_per_s < 0 or self.slot_wait_s < 0 or self.poll_s <= 0:
            raise ValueError(f"inconsistent provider limits: {self}")

    @classmethod
    def from_settings(cls, settings: Settings) -> LimitsConfig:
        return cls(
            max_downloads=settings.provider_max_downloads,
            max_requests_per_s=settings.provider_max_requests_per_s,
            slot_wait_s=settings.provider_slot_wait_s,
            pause=backoff.PausePolicy(
                base_s=min(settings.provider_pause_base_s, settings.provider_pause_max_s),
                max_s=settings.provider_pause_max_s,
            ),
        )


class Quota:
    """The provider limits of one process: its quota session (one connection, opened on first use)
    and the slots its threads hold. Thread-safe; ``close()`` frees every slot it still holds."""

    def __init__(
        self,
        dsn: str,
        config: LimitsConfig | None = None,
        *,
        connect_timeout_s: int = 5,
        sleep: Callable[[float], None] = time.sleep,
        clock: Callable[[], float] = time.monotonic,
        rng: random.Random | None = None,
    ) -> None:
        self.config = config or LimitsConfig()
        self.session = QuotaSession(dsn, connect_timeout_s=connect_timeout_s)
        self.slots = Slots(self.session, rng=rng)
        self.sleep = sleep
        self.clock = clock
        self.rng = rng or random.Random()  # noqa: S311 - jitter, not cryptography
        self._providers: dict[str, ProviderLimits] = {}
        self._lock = threading.Lock()

    @classmethod
    def from_settings(cls, settings: Settings) -> Quota:
        return cls(
            settings.require_database_url(),
            LimitsConfig.from_settings(settings),
            connect_timeout_s=settings.db_connect_timeout_s,
        )

    def provider(self, name: str) -> ProviderLimits:
        """The limits of provider ``name`` (the same object for the same name)."""
        with self._lock:
            if name not in self._providers:
                self._providers[name] = ProviderLimits(self, name)
            return self._providers[name]

    def status(self, providers: Iterable[str] = ()) -> list[status_.ProviderStatus]:
        """Per provider (those named and those the database knows): slots held, pause, consecutive pauses."""
        with self._lock:
            names = [*providers, *self._providers]
        return self.session.run(
            lambda conn: status_.read(conn, providers=names, max_downloads=self.config.max_downloads)
        )

    def close(self) -> None:
        self.session.close()

    def __enter__(self) -> Quota:
        return self

    def __exit__(self, *_: object) -> None:
        self.close()


@dataclass
class Slot:
    """A download slot held by the ``with`` block that took it."""

    provider: str
    index: int
    product_id: str | None
    waited_s: float  # how long the take waited (0.0 when a slot was free)
    _slots: Slots = field(repr=False)

    @property
    def held(self) -> bool:
        """False once released, or when the lock was lost with a database session (see ingest.quota.slots)."""
        return self._slots.holds(self.provider, self.index)


class ProviderLimits:
    """The fleet-wide limits of one provider. Thread-safe: share it between a process's threads."""

    def __init__(self, quota: Quota, name: str) -> None:
        self.quota = quota
        self.name = name
        self._seen_consecutive = -1  # consecutive pauses as last read; -1 unknown (succeeded() asks)

    @property
    def config(self) -> LimitsConfig:
        return self.quota.config

    # -- download slots

    @contextmanager
    def download_slot(
        self,
        product_id: str | None = None,
        *,
        wait_s: float | None = None,
        should_stop: Callable[[], bool] | None = None,
    ) -> Iterator[Slot]:
        """Hold one of the provider's download slots for the block; released on every way out of it."""
        slot = self._take(product_id, self.config.slot_wait_s if wait_s is None else wait_s, should_stop)
        try:
            yield slot
        finally:
            self.quota.slots.release(self.name, slot.index)
            metrics.slot_released(self.name)

    def _take(self, product_id: str | None, budget: float, should_stop: Callable[[], bool] | None) -> Slot:
        try:
            return self._wait_for_slot(product_id, budget, should_stop)
        except WaitCancelled as exc:
            metrics.slot_not_taken(self.name, exc.waited_s, "stopped")
            raise

    def _wait_for_slot(self, product_id: str | None, budget: float, should_stop: Callable[[], bool] | None) -> Slot:
        q, limit = self.quota, self.config.max_downloads
        started = q.clock()
        tries = 0
        while True:
            tries += 1
            taken = q.slots.try_take(self.name, limit)
            self._seen_consecutive = taken.consecutive_pauses
            waited = q.clock() - started
            if taken.index is not None:
                metrics.slot_taken(self.name, waited, waited=tries > 1)
                if tries > 1:
                    log.debug("%s: download slot %d of %s after %.1f s", product_id, taken.index, self.name, waited)
                return Slot(self.name, taken.index, product_id, waited, q.slots)
            if taken.paused_until is not None:
                remaining = (taken.paused_until - taken.now).total_seconds()
                if waited + remaining > budget:
                    metrics.slot_not_taken(self.name, waited, "paused")
                    raise self._paused(taken.paused_until, remaining, taken.pause_cause, taken.pause_status, product_id)
                self._nap(remaining + backoff.wake_jitter_s(remaining, rng=q.rng), started, should_stop, product_id)
                continue
            if waited >= budget:
                metrics.slot_not_taken(self.name, waited, "timeout")
                retry_in = q.rng.uniform(0.5, 1.5) * min(60.0, max(1.0, budget))
                raise SlotWaitTimeout(
                    self.name, waited_s=waited, limit=limit, retry_in_s=retry_in, product_id=product_id
                )
            poll = self.config.poll_s * q.rng.uniform(0.5, 1.5)
            self._nap(min(poll, budget - waited), started, should_stop, product_id)

    # -- request rate

    def before_request(
        self,
        *,
        wait_s: float | None = None,
        should_stop: Callable[[], bool] | None = None,
        product_id: str | None = None,
    ) -> float:
        """Call before each request to the provider: returns once it may be sent, with the seconds waited.

        Waits for the fleet's rate limit (one statement reserves this request's turn) and for a pause
        to end; raises ProviderPaused when the pause outlasts ``wait_s``."""
        q = self.quota
        budget = self.config.slot_wait_s if wait_s is None else wait_s
        per_s = self.config.max_requests_per_s
        started = q.clock()
        while True:
            if per_s > 0:
                r = q.session.run(lambda conn: rate.reserve(conn, self.name, per_s))
                until, cause, status, consecutive, now, delay = (
                    r.paused_until, r.pause_cause, r.pause_status, r.consecutive_pauses, r.now, r.delay_s,
                )  # fmt: skip
            else:
                p = q.session.run(lambda conn: pause_.read(conn, self.name))
                until, cause, status, consecutive, now, delay = p.until, p.cause, p.status, p.consecutive, p.now, 0.0
            self._seen_consecutive = consecutive
            if until is None:
                if delay > 0:
                    self._nap(delay, started, should_stop, product_id)
                waited = q.clock() - started
                metrics.request_waited(self.name, waited)
                return waited
            remaining = (until - now).total_seconds()
            waited = q.clock() - started
            if waited + remaining > budget:
                metrics.request_waited(self.name, waited)
                raise self._paused(until, remaining, cause, status, product_id)
            self._nap(remaining + backoff.wake_jitter_s(remaining, rng=q.rng), started, should_stop, product_id)

    # -- pauses

    def pause(self, status: int | None, retry_after_s: float | None, cause: str) -> pause_.Pause:
        """Record that the provider refused a request (429/503): the whole fleet waits until the pause
        ends. ``retry_after_s``: the answer's Retry-After in seconds (``retry_after_s(header)``), None
        when it had none: then backoff, growing with consecutive pauses. Returns the running pause.
        Not an attempt of the product: the caller decides what its request does next."""
        q = self.quota
        recorded = q.session.run(
            lambda conn: pause_.record(
                conn, self.name, status=status, retry_after_s=retry_after_s, cause=cause,
                policy=self.config.pause, by=q.session.identity, rng=q.rng,
            )
        )  # fmt: skip
        metrics.paused(self.name, status)
        self._seen_consecutive = recorded.pause.consecutive
        d = recorded.decision
        log.log(
            logging.INFO if d.joined else logging.WARNING,
            "provider %s paused for the fleet for %.0f s (%s) after %s: %s",
            self.name, recorded.pause.remaining_s, d.reason, f"HTTP {status}" if status else "a refusal", cause,
        )  # fmt: skip
        return recorded.pause

    def refused(
        self, status: int | None, retry_after_s: float | None, cause: str, *, product_id: str | None = None
    ) -> ProviderPaused:
        """``pause(...)``, and the ProviderPaused to raise so that the product goes back to the queue
        until the pause ends (``raise limits.refused(...) from None``)."""
        p = self.pause(status, retry_after_s, cause)
        return ProviderPaused(
            self.name, until=p.until or p.now, cause=p.cause or cause, status=p.status, remaining_s=p.remaining_s,
            product_id=product_id,
        )  # fmt: skip

    def succeeded(self) -> None:
        """A request to the provider succeeded: its consecutive pauses go back to 0 (no round trip
        when they are 0 as last seen)."""
        if self._seen_consecutive == 0:
            return
        self.quota.session.run(lambda conn: pause_.succeeded(conn, self.name))
        self._seen_consecutive = -1  # unknown again: a pause may still run, which keeps the count

    def current_pause(self) -> pause_.Pause:
        """The provider's pause now, as the database says (``until`` None: not paused)."""
        p = self.quota.session.run(lambda conn: pause_.read(conn, self.name))
        self._seen_consecutive = p.consecutive
        return p

    def status(self) -> status_.ProviderStatus:
        return next(s for s in self.quota.status([self.name]) if s.provider == self.name)

    # -- waiting

    def _paused(
        self, until: datetime, remaining: float, cause: str | None, status: int | None, product_id: str | None
    ) -> ProviderPaused:
        return ProviderPaused(
            self.name, until=until, cause=cause or "paused", status=status, remaining_s=max(0.0, remaining),
            product_id=product_id,
        )  # fmt: skip

    def _nap(
        self, seconds: float, started: float, should_stop: Callable[[], bool] | None, product_id: str | None
    ) -> None:
        """Sleep ``seconds`` in pieces, asking ``should_stop`` before each."""
        q = self.quota
        end = q.clock() + max(0.0, seconds)
        while True:
            if should_stop is not None and should_stop():
                raise WaitCancelled(self.name, waited_s=q.clock() - started, product_id=product_id)
            left = end - q.clock()
            if left <= 0:
                return
            q.sleep(min(left, PAUSE_NAP_S) if should_stop is not None else left)


def retry_after_s(header: str | None, *, now: datetime | None = None) -> float | None:
    """A response's Retry-After header (either form) as seconds from now, for ``ProviderLimits.pause``."""
    return backoff.parse_retry_after(header, now=now or datetime.now(UTC))
