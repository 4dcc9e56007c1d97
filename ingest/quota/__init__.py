"""Provider limits held by the whole fleet (issue 16), shared through the PostgreSQL every worker uses.

A provider such as the Copernicus Data Space allows a user 4 concurrent downloads, limits sessions,
and answers 429 when asked too much. Every worker process on every machine downloads as the same
user, so the limits must be the fleet's, not each process's:

* ``slots``: at most ``INGEST_PROVIDER_MAX_DOWNLOADS`` downloads per provider at once, as
  session-level advisory locks the server frees by itself when a holder dies;
* ``rate``: at most ``INGEST_PROVIDER_MAX_REQUESTS_PER_S`` requests per second, as one reservation
  statement per request on the provider's row;
* ``pause`` (decisions in the pure ``backoff``): a 429/503 pauses the provider for the fleet, for its
  Retry-After or an exponential, jittered, capped backoff;
* ``status``: what ``ingest status`` shows; ``metrics``: the Prometheus side;
* ``session``: the one database connection per process all of it goes through;
* ``limits``: ``Quota`` (one per process) and ``ProviderLimits`` (one per provider), the API;
* ``tables``: the table for the migration drift test (migration 0005 creates it and the slot function).
"""

from __future__ import annotations

from ingest.quota.backoff import PausePolicy, parse_retry_after
from ingest.quota.errors import ProviderLimited, ProviderPaused, SlotWaitTimeout, WaitCancelled
from ingest.quota.limits import LimitsConfig, ProviderLimits, Quota, Slot, retry_after_s
from ingest.quota.pause import Pause
from ingest.quota.status import ProviderStatus

__all__ = [
    "LimitsConfig",
    "Pause",
    "PausePolicy",
    "ProviderLimited",
    "ProviderLimits",
    "ProviderPaused",
    "ProviderStatus",
    "Quota",
    "Slot",
    "SlotWaitTimeout",
    "WaitCancelled",
    "parse_retry_after",
    "retry_after_s",
]
