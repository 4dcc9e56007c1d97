"""The reconciliation's report: counts first, a few examples per kind, every id in JSON, the exit code."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta

from ingest.upstream.compare import ChecksumChanged, Differences, Superseded
from ingest.upstream.report import EXAMPLES, Repair, Report

START = datetime(2026, 3, 1, tzinfo=UTC)
CHANGED = "S2A_MSIL1C_20260304T103021_N0511_R051_T31TDH_20260304T120000"


def report(d: Differences, repair: Repair | None = None) -> Report:
    r = Report("sentinel-2-l1c", START, START + timedelta(days=7), (1.0, 43.0, 3.5, 46.0), "keep", START)
    r.finished_at, r.pages, r.chunks, r.differences, r.repair = START + timedelta(seconds=2), 9, 7, d, repair
    return r


def findings() -> Differences:
    return Differences(
        missing=[f"S2A_MSIL1C_20260301T{i:06d}_N0511_R051_T31TDH_20260301T120000" for i in range(EXAMPLES + 5)],
        gone=["S2A_MSIL1C_20260302T103021_N0511_R051_T31TCJ_20260302T120000"],
        superseded=[
            Superseded(
                "S2A_MSIL1C_20260303T103021_N0510_R051_T31TDH_20260303T120000",
                "S2A_MSIL1C_20260303T103021_N0511_R051_T31TDH_20260303T120000",
                None,
                old_listed=False,
            )
        ],
        checksum=[ChecksumChanged(CHANGED, "catalogued", "1220aa", "1220bb")],
        listed=40,
        held=30,
        pending=2,
    )


def test_no_difference_is_one_line_of_figures_and_exit_0() -> None:
    r = report(Differences(listed=12, held=12, matched=12))
    text = "\n".join(r.lines())
    assert "12 listed upstream, 12 catalogued here (9 page(s) in 7 day(s), 2.0 s)" in text
    assert text.endswith("sentinel-2-l1c: no difference with upstream")
    assert r.exit_code == 0 and r.to_dict()["exit_code"] == 0


def test_counts_then_examples_capped_per_kind_and_exit_1() -> None:
    r = report(findings())
    lines = r.lines()
    assert lines[0].startswith("sentinel-2-l1c: sensed 2026-03-01T00:00:00Z .. 2026-03-08T00:00:00Z over 1,43,3.5,46:")
    assert [line.split()[:2] for line in lines[1:5]] == [["missing", "here"], ["gone", "upstream"],
                                                        ["superseded", "1"], ["checksum", "changed"]]  # fmt: skip
    assert sum(1 for line in lines if line.startswith("  missing    S2A_")) == EXAMPLES
    assert "  missing    ... and 5 more (--json lists them all)" in lines
    assert any("(upstream.removed: keep)" in line for line in lines if line.startswith("  gone"))
    assert any("N0510" in line and "-> " in line and "not recorded here" in line for line in lines)
    assert "  not differences: 2 recorded and on their way" in lines
    assert (
        lines[-1]
        == "sentinel-2-l1c: 18 difference(s): 15 missing here, 1 gone upstream, 1 superseded, 1 checksum changed"
    )
    assert r.exit_code == 1


def test_json_lists_every_id() -> None:
    doc = json.loads(json.dumps(report(findings()).to_dict()))
    assert doc["counts"] == {"missing": 15, "gone": 1, "superseded": 1, "checksum": 1}
    assert len(doc["missing"]) == 15 and doc["gone"] == findings().gone
    assert doc["superseded"][0]["new_state"] is None and doc["checksum"][0]["upstream"] == "1220bb"
    assert doc["bbox"] == [1.0, 43.0, 3.5, 46.0] and doc["repair"] is None and doc["exit_code"] == 1


def test_a_repair_that_left_something_exits_1_and_one_that_left_nothing_0() -> None:
    d = findings()
    left = Repair(queued=d.missing, reprocess=[d.checksum[0].id], left=[("gone", d.gone[0], "kept")])
    assert report(d, left).exit_code == 1
    assert "  left gone S2A_MSIL1C_20260302T103021_N0511_R051_T31TCJ_20260302T120000: kept" in report(d, left).lines()
    assert report(d, Repair(queued=d.missing, retired=d.gone)).exit_code == 0
