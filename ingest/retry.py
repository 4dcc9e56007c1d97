"""Retry as a pure decision: given how many attempts were made and what failed, what next?"""

from __future__ import annotations

import random
from dataclasses import dataclass
from datetime import timedelta

from ingest.errors import IngestError


@dataclass(frozen=True)
class RetryPolicy:
    max_attempts: int = 5
    base_delay_s: float = 30.0
    max_delay_s: float = 6 * 3600.0
    jitter: float = 0.2  # +/- share of the delay, so many failed products do not come back at once


@dataclass(frozen=True)
class Decision:
    retry: bool
    delay: timedelta | None
    reason: str


def decide(policy: RetryPolicy, attempts: int, error: BaseException, *, rng: random.Random | None = None) -> Decision:
    """``attempts`` counts the attempt that just failed (1 after the first failure)."""
    retryable = isinstance(error, IngestError) and error.retryable
    if not retryable:
        return Decision(False, None, "not retryable")
    if attempts >= policy.max_attempts:
        return Decision(False, None, f"gave up after {attempts} attempts")
    delay = min(policy.max_delay_s, policy.base_delay_s * 2 ** (attempts - 1))
    r = (rng or random).uniform(-policy.jitter, policy.jitter)
    return Decision(True, timedelta(seconds=delay * (1 + r)), f"attempt {attempts} of {policy.max_attempts}")
