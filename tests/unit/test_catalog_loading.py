"""The pure parts of the harvesting rule's loader (``ingest.catalog.loading``)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

from ingest.catalog.loading import late, restamped, rfc3339

T = datetime(2026, 12, 2, 10, 0, 0, 123456, tzinfo=UTC)


def test_a_commit_is_late_only_past_the_settle_time() -> None:
    assert not late(T, T + timedelta(seconds=60), 60)
    assert late(T, T + timedelta(seconds=60, microseconds=1), 60)
    assert not late(T, T - timedelta(seconds=5), 60)  # a clock read before the stamp: never late


def test_restamped_changes_updated_only_and_leaves_the_input_alone() -> None:
    doc: dict[str, Any] = {
        "id": "a",
        "properties": {"created": "2026-01-01T00:00:00Z", "updated": "2026-01-01T00:00:00Z"},
    }
    (out,) = restamped([doc], T)
    assert out["properties"] == {"created": "2026-01-01T00:00:00Z", "updated": "2026-12-02T10:00:00.123456Z"}
    assert doc["properties"]["updated"] == "2026-01-01T00:00:00Z"
    assert rfc3339(T.astimezone(datetime.now().astimezone().tzinfo)) == "2026-12-02T10:00:00.123456Z"
