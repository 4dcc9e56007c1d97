"""The optional ``audit:`` block of a collection file: defaults, what it accepts, how it refuses."""

from __future__ import annotations

from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest
import yaml

from ingest import collections as col
from ingest.errors import CollectionSpecError
from tests.conftest import ROOT


def write(tmp_path: Path, audit: Any) -> Path:
    doc = yaml.safe_load((ROOT / "collections" / "sentinel-2-l2a.yaml").read_text())
    doc["audit"] = audit
    path = tmp_path / "sentinel-2-l2a.yaml"
    path.write_text(yaml.safe_dump(doc, sort_keys=False))
    return path


def test_a_file_without_the_block_is_audited_daily_without_repair_or_deep() -> None:
    spec = col.load_spec(ROOT / "collections" / "sentinel-2-l2a.yaml")
    assert (spec.audit.enabled, spec.audit.schedule, spec.audit.deep) == (True, "15 4 * * *", False)
    assert spec.audit.orphan_grace == timedelta(hours=1)
    assert "audit" not in spec.stac_collection()  # nothing about it is published


def test_the_block_sets_schedule_deep_grace_and_off(tmp_path: Path) -> None:
    spec = col.load_spec(write(tmp_path, {"schedule": "0 2 * * sun", "deep": True, "orphan_grace": "30m"}))
    assert (spec.audit.schedule, spec.audit.deep, spec.audit.orphan_grace) == (
        "0 2 * * sun",
        True,
        timedelta(minutes=30),
    )
    assert not col.load_spec(write(tmp_path, {"enabled": False})).audit.enabled


@pytest.mark.parametrize(
    "audit,field",
    [
        ({"schedule": "every day"}, "audit.schedule"),
        ({"orphan_grace": "soon"}, "audit.orphan_grace"),
        ({"repair": True}, "audit.repair"),  # the scheduler never repairs: not a setting
    ],
)
def test_a_wrong_block_names_the_file_and_field(tmp_path: Path, audit: dict[str, Any], field: str) -> None:
    with pytest.raises(CollectionSpecError, match=rf"sentinel-2-l2a.yaml: {field}"):
        col.load_spec(write(tmp_path, audit))
