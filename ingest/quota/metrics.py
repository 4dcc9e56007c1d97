"""Prometheus metrics of the provider limits, counted by each process (Prometheus adds them up).

* ``ingest_provider_downloads_in_flight{provider}``: download slots this process holds;
  ``sum by (provider)`` is the fleet's, never above ``INGEST_PROVIDER_MAX_DOWNLOADS``.
* ``ingest_provider_slot_wait_seconds{provider}``: time each take of a slot waited (0 when one was
  free), including waits that ended without a slot.
* ``ingest_provider_slot_waits_total{provider,outcome}``: takes that found every slot busy (or the
  provider paused) and had to wait, by how the wait ended: ``taken``, ``timeout``, ``paused`` (the
  pause outlasted the wait), ``stopped`` (the process was stopping).
* ``ingest_provider_request_wait_seconds{provider}``: time ``before_request`` held a request back
  (rate limit and pause).
* ``ingest_provider_pauses_total{provider,status}``: 429/503 answers this process recorded as a
  fleet-wide pause (joining a running pause counts too: it is another refused request).
"""

from __future__ import annotations

from prometheus_client import Counter, Gauge, Histogram

# a slot is usually free (0) or frees within a download's time (minutes)
WAIT_BUCKETS = (0.01, 0.1, 0.5, 1, 2.5, 5, 10, 30, 60, 120, 300, 600, 1800)
REQUEST_WAIT_BUCKETS = (0.001, 0.01, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 300)

DOWNLOADS_IN_FLIGHT = Gauge(
    "ingest_provider_downloads_in_flight",
    "Download slots of a provider this process holds (sum over processes: the fleet's downloads).",
    ["provider"],
)
SLOT_WAIT_SECONDS = Histogram(
    "ingest_provider_slot_wait_seconds",
    "Time a download waited for a slot of its provider (0 when one was free), taken or not.",
    ["provider"],
    buckets=WAIT_BUCKETS,
)
SLOT_WAITS = Counter(
    "ingest_provider_slot_waits",
    "Downloads that found every slot of their provider busy, or the provider paused, and waited; "
    "by outcome: taken, timeout, paused, stopped.",
    ["provider", "outcome"],
)
REQUEST_WAIT_SECONDS = Histogram(
    "ingest_provider_request_wait_seconds",
    "Time a request to a provider was held back by the fleet's rate limit or a pause.",
    ["provider"],
    buckets=REQUEST_WAIT_BUCKETS,
)
PAUSES = Counter(
    "ingest_provider_pauses",
    "429/503 answers of a provider recorded as a fleet-wide pause, by HTTP status.",
    ["provider", "status"],
)


def slot_taken(provider: str, waited_s: float, *, waited: bool) -> None:
    DOWNLOADS_IN_FLIGHT.labels(provider).inc()
    SLOT_WAIT_SECONDS.labels(provider).observe(waited_s)
    if waited:
        SLOT_WAITS.labels(provider, "taken").inc()


def slot_not_taken(provider: str, waited_s: float, outcome: str) -> None:
    SLOT_WAIT_SECONDS.labels(provider).observe(waited_s)
    SLOT_WAITS.labels(provider, outcome).inc()


def slot_released(provider: str) -> None:
    DOWNLOADS_IN_FLIGHT.labels(provider).dec()


def request_waited(provider: str, waited_s: float) -> None:
    REQUEST_WAIT_SECONDS.labels(provider).observe(waited_s)


def paused(provider: str, status: int | None) -> None:
    PAUSES.labels(provider, str(status) if status is not None else "none").inc()
