from __future__ import annotations

import random

from ingest.errors import InvalidProduct, TransientProductError
from ingest.retry import RetryPolicy, decide

P = RetryPolicy(max_attempts=4, base_delay_s=10, max_delay_s=50, jitter=0.0)


def test_backoff_doubles_then_caps() -> None:
    delays = [decide(P, n, TransientProductError("x")).delay for n in (1, 2, 3)]
    assert [d.total_seconds() for d in delays if d] == [10, 20, 40]
    capped = decide(
        RetryPolicy(max_attempts=10, base_delay_s=10, max_delay_s=50, jitter=0), 5, TransientProductError("x")
    )
    assert capped.delay is not None and capped.delay.total_seconds() == 50


def test_gives_up_after_max_attempts() -> None:
    d = decide(P, 4, TransientProductError("x"))
    assert not d.retry and "4 attempts" in d.reason


def test_bad_input_and_unknown_errors_are_not_retried() -> None:
    assert not decide(P, 1, InvalidProduct("bad zip")).retry
    assert not decide(P, 1, RuntimeError("bug")).retry


def test_jitter_stays_within_bounds_and_varies() -> None:
    policy = RetryPolicy(max_attempts=5, base_delay_s=100, jitter=0.2)
    rng = random.Random(7)
    seconds = {decide(policy, 1, TransientProductError("x"), rng=rng).delay.total_seconds() for _ in range(50)}  # type: ignore[union-attr]
    assert all(80 <= s <= 120 for s in seconds) and len(seconds) > 10
