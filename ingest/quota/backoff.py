"""How long the fleet pauses a provider after a 429/503: pure decisions, no I/O, no clock of their own.

* ``parse_retry_after(value, now=...)``: an HTTP ``Retry-After`` header (RFC 9110 section 10.2.3) in
  either form, delay-seconds (``120``) or HTTP-date (IMF-fixdate ``Wed, 21 Oct 2015 07:28:00 GMT``, and
  the obsolete RFC 850 and asctime forms every recipient must accept), as seconds from ``now``; None
  when absent or unreadable (the caller then backs off on its own). A date in the past is 0.
* ``decide(policy, consecutive=..., remaining_s=..., retry_after_s=...)``: the pause to record.
  Retry-After is honoured when given (capped at ``policy.max_s``: a broken clock or header must not
  stop a site for days); otherwise exponential backoff, ``base_s * factor ** (n - 1)`` for the n-th
  consecutive pause, with +/- ``jitter`` and capped at ``max_s``. A 429 that arrives while the
  provider is already paused is the same overload seen by another worker (every worker in flight
  gets one): it joins the running pause (extended only by a longer Retry-After) and does not count
  as another consecutive pause, or a fleet of 40 workers would reach the cap on the first overload.
* ``on_success(consecutive, remaining_s)``: a success resets the count, except during a pause (an
  answer to a request sent before the pause says nothing about the provider now).
* ``wake_jitter_s(remaining_s)``: what each waiter adds to the shared pause, so the fleet does not
  send its requests in the same millisecond when the pause ends.

In the style of procrastinate's ``RetryStrategy`` and of ``ingest.retry``: the state goes in, the
decision comes out; ``ingest.quota.pause`` reads and writes the state in one transaction.
"""

from __future__ import annotations

import random
import re
from dataclasses import dataclass
from datetime import UTC, datetime
from email.utils import parsedate_to_datetime

# factor ** (n - 1) overflows a float long before n gets that large; past the cap it no longer matters
_MAX_EXPONENT = 64
_DELAY_SECONDS = re.compile(r"[0-9]+")


@dataclass(frozen=True)
class PausePolicy:
    base_s: float = 10.0  # first pause without Retry-After
    max_s: float = 900.0  # longest pause, Retry-After included
    factor: float = 2.0
    jitter: float = 0.25  # +/- share of the backoff

    def __post_init__(self) -> None:
        if not (0 < self.base_s <= self.max_s) or self.factor < 1 or not 0 <= self.jitter < 1:
            raise ValueError(f"inconsistent pause policy: {self}")


@dataclass(frozen=True)
class PauseDecision:
    seconds: float  # how long from now the provider stays paused
    consecutive: int  # the provider's consecutive pauses once this one is recorded
    joined: bool  # the provider was paused already: this 429 joined that pause
    reason: str


def parse_retry_after(value: str | None, *, now: datetime) -> float | None:
    """Seconds to wait from ``now`` (timezone-aware) that a Retry-After header asks for, or None."""
    if value is None:
        return None
    text = value.strip()
    if not text:
        return None
    if _DELAY_SECONDS.fullmatch(text):
        return float(int(text))
    try:
        when = parsedate_to_datetime(text)
    except (TypeError, ValueError, IndexError):
        return None
    if when.tzinfo is None:
        when = when.replace(tzinfo=UTC)  # asctime has no zone; HTTP dates are always GMT
    return max(0.0, (when - now).total_seconds())


def backoff_s(policy: PausePolicy, n: int, *, rng: random.Random | None = None) -> float:
    """The n-th consecutive pause (n >= 1) when the provider did not say how long: jittered, capped."""
    if n < 1:
        raise ValueError(f"n counts pauses from 1, got {n}")
    exponent = min(n - 1, _MAX_EXPONENT)
    plain = min(policy.max_s, policy.base_s * policy.factor**exponent)
    share = (rng or random).uniform(-policy.jitter, policy.jitter)
    return min(policy.max_s, plain * (1 + share))


def decide(
    policy: PausePolicy,
    *,
    consecutive: int,
    remaining_s: float,
    retry_after_s: float | None,
    rng: random.Random | None = None,
) -> PauseDecision:
    """The pause to record after a 429/503.

    ``consecutive``: the provider's consecutive pauses so far (0 after a success); ``remaining_s``: how
    much of a running pause is left (0 when none); ``retry_after_s``: the provider's Retry-After, if any.
    """
    asked = None if retry_after_s is None else min(policy.max_s, max(0.0, retry_after_s))
    if remaining_s > 0:
        if asked is not None and asked > remaining_s:
            return PauseDecision(asked, consecutive, True, f"already paused; Retry-After {asked:g} s extends it")
        return PauseDecision(remaining_s, consecutive, True, "already paused")
    n = consecutive + 1
    if asked is not None:
        return PauseDecision(asked, n, False, f"Retry-After {asked:g} s")
    return PauseDecision(backoff_s(policy, n, rng=rng), n, False, f"backoff, consecutive pause {n}")


def on_success(consecutive: int, remaining_s: float) -> int:
    """The consecutive count after a successful request: reset, unless a pause is still running."""
    return consecutive if remaining_s > 0 else 0


def wake_jitter_s(remaining_s: float, *, rng: random.Random | None = None) -> float:
    """Extra sleep of one waiter past a shared pause: up to a tenth of it, at most 2 s."""
    return (rng or random).uniform(0.0, min(2.0, max(0.0, remaining_s) / 10))
