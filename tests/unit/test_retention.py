"""The pure parts of retention: cutoffs, reasons, what a plan says."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from ingest.collections import Retention
from ingest.retention import Plan, cutoff_for, reason_for
from ingest.state.retirements import Match

NOW = datetime(2026, 11, 27, 12, 0, tzinfo=UTC)


def match(i: int, *, days_old: float, outside: bool = False, size: int = 10) -> Match:
    return Match(f"P{i}", f"I{i}", None, NOW - timedelta(days=days_old), outside, False, size)


def test_cutoff_follows_max_age_and_is_none_without_one() -> None:
    assert cutoff_for(Retention(enabled=True, max_age=timedelta(days=90)), NOW) == NOW - timedelta(days=90)
    area = {"type": "Polygon", "coordinates": [[[0, 0], [1, 0], [1, 1], [0, 1], [0, 0]]]}
    assert cutoff_for(Retention(enabled=True, area=area), NOW) is None


def test_reason_names_the_rule_and_the_time() -> None:
    policy = Retention(enabled=True, max_age=timedelta(days=30), anchor="ingestion")
    cutoff = cutoff_for(policy, NOW)
    assert reason_for(match(1, days_old=40), policy, cutoff) == (
        "ingestion time 2026-10-18T12:00:00+00:00 older than 30 days"
    )
    assert reason_for(match(2, days_old=3, outside=True), policy, cutoff) == "outside the area kept"


def test_plan_totals_and_the_everything_guard() -> None:
    policy = Retention(enabled=True, max_age=timedelta(days=30), keep_latest=2)
    remove = (match(1, days_old=50, size=5), match(2, days_old=40, size=7))
    p = Plan("c", policy, NOW, cutoff_for(policy, NOW), total_items=5, remove=remove, kept_by_minimum=1)
    assert (p.count, p.bytes, p.oldest, p.newest, p.removes_all) == (
        2,
        12,
        remove[0].anchored,
        remove[1].anchored,
        False,
    )
    lines = p.lines(with_ids=True)
    assert lines[0] == "c: 2 of 5 items would go (12 B)"
    assert "  1 more kept by keep_latest" in lines and lines[-2:] == ["  I1", "  I2"]
    everything = Plan("c", policy, NOW, None, total_items=2, remove=remove, kept_by_minimum=0)
    assert everything.removes_all and any("refused unless --force" in line for line in everything.lines())
    empty = Plan("c", policy, NOW, None, total_items=0, remove=(), kept_by_minimum=0)
    assert not empty.removes_all and empty.to_dict()["oldest"] is None
