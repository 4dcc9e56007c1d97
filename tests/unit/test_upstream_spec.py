"""The optional ``upstream:`` block of a collection file, and the scheduled reconciliation it plans."""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
import yaml

from ingest import collections as col
from ingest.daemon.scheduler import jobs_for, run_upstream
from ingest.errors import CollectionSpecError
from ingest.settings import Settings
from tests.conftest import ROOT


def write(tmp_path: Path, upstream: Any, name: str = "sentinel-2-l2a") -> Path:
    doc = yaml.safe_load((ROOT / "collections" / f"{name}.yaml").read_text())
    doc["upstream"] = upstream
    path = tmp_path / f"{name}.yaml"
    path.write_text(yaml.safe_dump(doc, sort_keys=False))
    return path


def test_without_the_block_removed_products_are_kept_and_nothing_is_scheduled() -> None:
    for spec in col.load_all(ROOT / "collections").values():
        assert (spec.upstream.removed, spec.upstream.reconcile, spec.upstream.repair) == ("keep", None, False)
        assert spec.upstream.window_days == 30
        assert "upstream" not in spec.stac_collection()


def test_the_block_sets_the_policy_and_the_schedule(tmp_path: Path) -> None:
    spec = col.load_spec(
        write(tmp_path, {"removed": "retire", "reconcile": "0 5 * * 1", "window_days": 7, "repair": True})
    )
    assert spec.upstream.model_dump() == {
        "removed": "retire",
        "reconcile": "0 5 * * 1",
        "window_days": 7,
        "repair": True,
        "reprocessing": "replace",
    }


def test_reprocessing_replaces_by_default_keeps_when_told_and_refuses_anything_else(tmp_path: Path) -> None:
    for spec in col.load_all(ROOT / "collections").values():
        assert spec.upstream.reprocessing == "replace"
    assert col.load_spec(write(tmp_path, {"reprocessing": "keep"})).upstream.reprocessing == "keep"
    with pytest.raises(CollectionSpecError, match=r"upstream\.reprocessing"):
        col.load_spec(write(tmp_path, {"reprocessing": "retire"}))


@pytest.mark.parametrize(
    ("upstream", "field"),
    [
        ({"removed": "delete"}, "upstream.removed"),
        ({"reconcile": "daily"}, "upstream.reconcile"),
        ({"reconcile": "0 5 * * *", "window_days": 0}, "upstream.window_days"),
        ({"repair": True}, "upstream: Value error, 'repair' is for the scheduled reconcile"),
        ({"retire": True}, "upstream.retire"),  # not a setting: a typo must not pass for "keep"
    ],
)
def test_a_wrong_block_names_the_file_and_field(tmp_path: Path, upstream: dict[str, Any], field: str) -> None:
    with pytest.raises(CollectionSpecError, match=rf"sentinel-2-l2a.yaml: {field}"):
        col.load_spec(write(tmp_path, upstream))


def test_a_reconcile_cron_gets_an_upstream_job_before_the_queue_reconciler(tmp_path: Path) -> None:
    settings = Settings(_env_file=None)  # type: ignore[call-arg]
    specs = col.load_all(ROOT / "collections")
    specs["sentinel-2-l1c"] = col.load_spec(write(tmp_path, {"reconcile": "30 5 * * sun"}, "sentinel-2-l1c"))
    jobs = jobs_for(specs, settings)
    assert [j.id for j in jobs][-2:] == ["upstream:sentinel-2-l1c", "reconcile"]
    job = jobs[-2]
    assert (job.kind, job.trigger, dict(job.trigger_args), job.collection) == (
        "upstream", "cron", {"expr": "30 5 * * sun"}, "sentinel-2-l1c",
    )  # fmt: skip
    assert job.func is run_upstream and job.args == (settings, "sentinel-2-l1c")
    fire = job.make_trigger().get_next_fire_time(None, datetime(2026, 3, 2, tzinfo=UTC))  # a Monday
    assert (fire.weekday(), fire.hour, fire.minute) == (6, 5, 30)
