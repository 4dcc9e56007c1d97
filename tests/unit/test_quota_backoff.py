"""The fleet-wide pause as pure decisions: Retry-After in both forms, backoff growth, cap, jitter, reset."""

from __future__ import annotations

import random
from datetime import UTC, datetime, timedelta

import pytest

from ingest.quota.backoff import (
    PauseDecision,
    PausePolicy,
    backoff_s,
    decide,
    on_success,
    parse_retry_after,
    wake_jitter_s,
)

NOW = datetime(2015, 10, 21, 7, 27, 0, tzinfo=UTC)
NO_JITTER = PausePolicy(base_s=10, max_s=900, factor=2, jitter=0)


@pytest.mark.parametrize(
    ("value", "seconds"),
    [
        ("120", 120.0),
        (" 0 ", 0.0),
        ("Wed, 21 Oct 2015 07:28:00 GMT", 60.0),  # IMF-fixdate
        ("Wednesday, 21-Oct-15 07:28:00 GMT", 60.0),  # obsolete RFC 850
        ("Wed Oct 21 07:28:00 2015", 60.0),  # obsolete asctime (no zone: GMT)
        ("Wed, 21 Oct 2015 09:28:00 +0200", 60.0),  # a zone offset (not HTTP, but unambiguous)
        ("Wed, 21 Oct 2015 07:00:00 GMT", 0.0),  # in the past: go now
    ],
)
def test_retry_after_is_read_in_every_form(value: str, seconds: float) -> None:
    assert parse_retry_after(value, now=NOW) == seconds


@pytest.mark.parametrize("value", [None, "", "   ", "-5", "1.5", "soon", "Wed, 99 Foo 2015 07:28:00 GMT", "12 s"])
def test_unreadable_retry_after_is_none(value: str | None) -> None:
    assert parse_retry_after(value, now=NOW) is None


def test_backoff_doubles_from_the_base_up_to_the_cap() -> None:
    assert [backoff_s(NO_JITTER, n) for n in range(1, 10)] == [10, 20, 40, 80, 160, 320, 640, 900, 900]
    assert backoff_s(NO_JITTER, 10_000) == 900  # no overflow however long the trouble lasts


def test_jitter_stays_within_its_share_and_under_the_cap() -> None:
    policy = PausePolicy(base_s=10, max_s=100, factor=2, jitter=0.25)
    rng = random.Random(1)
    for n, plain in ((1, 10), (2, 20), (3, 40)):
        values = [backoff_s(policy, n, rng=rng) for _ in range(500)]
        assert all(plain * 0.75 <= v <= plain * 1.25 for v in values)
        assert max(values) - min(values) > plain * 0.4  # it does spread
    capped = [backoff_s(policy, 8, rng=rng) for _ in range(500)]
    assert all(75 <= v <= 100 for v in capped)


def test_first_pause_without_retry_after_is_the_base() -> None:
    d = decide(NO_JITTER, consecutive=0, remaining_s=0, retry_after_s=None)
    assert d == PauseDecision(10, 1, False, "backoff, consecutive pause 1")


def test_consecutive_pauses_grow_and_a_success_resets_them() -> None:
    consecutive, seconds = 0, list[float]()
    for _ in range(4):
        d = decide(NO_JITTER, consecutive=consecutive, remaining_s=0, retry_after_s=None)
        consecutive, seconds = d.consecutive, [*seconds, d.seconds]
    assert seconds == [10, 20, 40, 80] and consecutive == 4
    consecutive = on_success(consecutive, remaining_s=0)
    assert consecutive == 0
    assert decide(NO_JITTER, consecutive=consecutive, remaining_s=0, retry_after_s=None).seconds == 10


def test_a_success_during_a_pause_does_not_reset() -> None:
    # an answer to a request sent before the pause says nothing about the provider now
    assert on_success(3, remaining_s=5) == 3


def test_retry_after_is_honoured_and_counts_as_a_pause() -> None:
    d = decide(NO_JITTER, consecutive=2, remaining_s=0, retry_after_s=30)
    assert (d.seconds, d.consecutive, d.joined) == (30, 3, False)
    assert decide(NO_JITTER, consecutive=0, remaining_s=0, retry_after_s=0).seconds == 0


def test_retry_after_is_capped() -> None:
    assert decide(NO_JITTER, consecutive=0, remaining_s=0, retry_after_s=86_400).seconds == 900
    assert decide(NO_JITTER, consecutive=0, remaining_s=0, retry_after_s=-3).seconds == 0


def test_a_429_during_a_pause_joins_it_without_growing_the_backoff() -> None:
    # forty workers in flight all get a 429 from the same overload: one pause, not forty
    d = decide(NO_JITTER, consecutive=1, remaining_s=7, retry_after_s=None)
    assert (d.seconds, d.consecutive, d.joined) == (7, 1, True)
    shorter = decide(NO_JITTER, consecutive=1, remaining_s=7, retry_after_s=3)
    assert (shorter.seconds, shorter.consecutive) == (7, 1)


def test_a_longer_retry_after_extends_a_running_pause() -> None:
    d = decide(NO_JITTER, consecutive=1, remaining_s=7, retry_after_s=60)
    assert (d.seconds, d.consecutive, d.joined) == (60, 1, True)


def test_wake_jitter_is_small_and_bounded() -> None:
    rng = random.Random(2)
    assert all(0 <= wake_jitter_s(5, rng=rng) <= 0.5 for _ in range(200))
    assert all(0 <= wake_jitter_s(3600, rng=rng) <= 2 for _ in range(200))
    assert wake_jitter_s(0, rng=rng) == 0


def test_inconsistent_policies_are_refused() -> None:
    for kw in ({"base_s": 0}, {"base_s": 10, "max_s": 5}, {"factor": 0.5}, {"jitter": 1.0}):
        with pytest.raises(ValueError, match="inconsistent"):
            PausePolicy(**kw)


def test_the_decision_takes_no_clock() -> None:
    """The same inputs give the same pause: nothing reads the time (the server's clock is the database's)."""
    a = decide(PausePolicy(), consecutive=3, remaining_s=0, retry_after_s=None, rng=random.Random(5))
    b = decide(PausePolicy(), consecutive=3, remaining_s=0, retry_after_s=None, rng=random.Random(5))
    assert a == b
    assert timedelta(seconds=a.seconds) <= timedelta(seconds=900)
