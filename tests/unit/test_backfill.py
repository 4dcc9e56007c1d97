"""Backfill arguments, pure: chunking, times, bbox, geometry files, the backfill id."""

from __future__ import annotations

import io
import itertools
import json
from datetime import UTC, datetime, timedelta, timezone
from pathlib import Path
from zoneinfo import ZoneInfo

import pytest

from ingest import backfill as bf
from ingest.collections import load_spec
from ingest.stages.artifacts import ProviderProduct
from ingest.state.backfills import Chunk
from tests.conftest import ROOT

DAY = timedelta(days=1)


def t(day: int, hour: int = 0) -> datetime:
    return datetime(2026, 3, day, hour, tzinfo=UTC)


# ----------------------------------------------------------------------------- chunks


def test_whole_days() -> None:
    assert bf.chunks(t(1), t(4), DAY) == [(t(1), t(2)), (t(2), t(3)), (t(3), t(4))]


def test_partial_last_chunk() -> None:
    assert bf.chunks(t(1), t(3, 6), DAY) == [(t(1), t(2)), (t(2), t(3)), (t(3), t(3, 6))]


def test_range_shorter_than_one_chunk() -> None:
    assert bf.chunks(t(1), t(1, 5), timedelta(days=7)) == [(t(1), t(1, 5))]


def test_chunks_follow_start_not_midnight() -> None:
    assert bf.chunks(t(1, 6), t(2, 18), DAY) == [(t(1, 6), t(2, 6)), (t(2, 6), t(2, 18))]


def test_chunks_are_contiguous_and_cover_the_range() -> None:
    got = bf.chunks(t(1), t(31, 7), timedelta(hours=6))
    assert got[0][0] == t(1) and got[-1][1] == t(31, 7)
    assert all(a[1] == b[0] for a, b in itertools.pairwise(got))
    assert all(b - a <= timedelta(hours=6) for a, b in got)


def test_utc_chunks_have_no_dst_gap() -> None:
    """Europe/Paris skips 02:00-03:00 on 2026-03-29: chunks still last 24 real hours, in UTC."""
    paris = ZoneInfo("Europe/Paris")
    start, end = datetime(2026, 3, 28, tzinfo=paris), datetime(2026, 3, 31, tzinfo=paris)
    got = bf.chunks(start, end, DAY)
    assert all(a.tzinfo is UTC and b.tzinfo is UTC for a, b in got)
    assert [b - a for a, b in got] == [DAY, DAY, DAY - timedelta(hours=1)]  # the range is 71 h long
    assert got[0][0] == datetime(2026, 3, 27, 23, tzinfo=UTC)


def test_offsets_are_converted_to_utc() -> None:
    plus2 = timezone(timedelta(hours=2))
    assert bf.chunks(datetime(2026, 3, 1, 2, tzinfo=plus2), t(2), DAY) == [(t(1), t(2))]


@pytest.mark.parametrize("end", [t(1), t(1) - timedelta(seconds=1)])
def test_end_not_after_start_is_refused(end: datetime) -> None:
    with pytest.raises(bf.UsageError, match="must be after --start") as info:
        bf.chunks(t(1), end, DAY)
    assert info.value.exit_code == 64


@pytest.mark.parametrize("step", [timedelta(0), -DAY])
def test_non_positive_step_is_refused(step: timedelta) -> None:
    with pytest.raises(bf.UsageError, match="positive"):
        bf.chunks(t(1), t(2), step)


def test_absurd_chunk_count_is_refused() -> None:
    with pytest.raises(bf.UsageError, match="at most"):
        bf.chunks(datetime(2016, 1, 1, tzinfo=UTC), t(1), timedelta(seconds=1))


def test_naive_bounds_are_a_programming_error() -> None:
    with pytest.raises(ValueError, match="timezone-aware"):
        bf.chunks(datetime(2026, 3, 1), t(2), DAY)


# ----------------------------------------------------------------------------- times, durations, bbox


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("2026-03-01", t(1)),
        ("2026-03-01T06:00", t(1, 6)),
        ("2026-03-01T06:00:00Z", t(1, 6)),
        ("2026-03-01T08:00:00+02:00", t(1, 6)),
    ],
)
def test_parse_time(text: str, expected: datetime) -> None:
    assert bf.parse_time(text, name="start") == expected


def test_parse_time_names_the_option() -> None:
    with pytest.raises(bf.UsageError, match="--end: not a date"):
        bf.parse_time("yesterday", name="end")


@pytest.mark.parametrize(("text", "hours"), [("6h", 6), ("1d", 24), ("7d", 168), ("P1D", 24), ("PT12H", 12)])
def test_parse_step(text: str, hours: int) -> None:
    assert bf.parse_step(text) == timedelta(hours=hours)


@pytest.mark.parametrize("text", ["0d", "1 fortnight", "", "-1d"])
def test_bad_step(text: str) -> None:
    with pytest.raises(bf.UsageError, match="--chunk"):
        bf.parse_step(text)


def test_parse_bbox() -> None:
    assert bf.parse_bbox("2.5,44,4.5,46.25") == (2.5, 44.0, 4.5, 46.25)


@pytest.mark.parametrize(
    "text", ["1,2,3", "a,b,c,d", "1,2,3,4,5", "4,44,2,46", "2,46,4,44", "2,44,200,46", "nan,1,2,3"]
)
def test_bad_bbox(text: str) -> None:
    with pytest.raises(bf.UsageError, match="--bbox"):
        bf.parse_bbox(text)


# ----------------------------------------------------------------------------- geometry files

SQUARE = {"type": "Polygon", "coordinates": [[[2, 44], [4, 44], [4, 46], [2, 46], [2, 44]]]}


def write(tmp_path: Path, doc: object, name: str = "area.geojson") -> Path:
    path = tmp_path / name
    path.write_text(doc if isinstance(doc, str) else json.dumps(doc))
    return path


@pytest.mark.parametrize(
    "doc",
    [
        SQUARE,
        {"type": "Feature", "properties": {}, "geometry": SQUARE},
        {"type": "FeatureCollection", "features": [{"type": "Feature", "properties": {}, "geometry": SQUARE}]},
    ],
)
def test_geometry_file_forms(tmp_path: Path, doc: object) -> None:
    assert bf.read_geometry(write(tmp_path, doc)) == SQUARE


@pytest.mark.parametrize(
    ("doc", "message"),
    [
        ("{not json", "not valid JSON \\(line 1"),
        (b"\xff\xfe", "cannot read the geometry file: not UTF-8"),
        ({"type": "FeatureCollection", "features": []}, "exactly one feature, it has 0"),
        ({"type": "FeatureCollection", "features": [{"type": "Feature", "geometry": SQUARE}] * 2}, "it has 2"),
        ({"type": "Feature", "geometry": None}, "the feature has no geometry"),
        ({"type": "Topology"}, "expected a GeoJSON geometry, Feature or FeatureCollection"),
        ([1, 2], "got type None"),
        ({"type": "Polygon", "coordinates": [[[0, 0], [1]]]}, "bad coordinates in the Polygon"),
        ({"type": "Polygon", "coordinates": []}, "empty"),
        (
            {"type": "Polygon", "coordinates": [[[0, 0], [2, 2], [2, 0], [0, 2], [0, 0]]]},
            "invalid geometry: Self-inter",
        ),
        ({"type": "Point", "coordinates": [500000, 4900000]}, "longitude, latitude in degrees"),
    ],
)
def test_geometry_file_errors_name_the_file(tmp_path: Path, doc: object, message: str) -> None:
    path = tmp_path / "area.geojson"
    if isinstance(doc, bytes):
        path.write_bytes(doc)
    else:
        write(tmp_path, doc)
    with pytest.raises(bf.UsageError, match=message) as info:
        bf.read_geometry(path)
    assert str(info.value).startswith(f"{path}: ")
    assert "\n" not in str(info.value) and info.value.exit_code == 64


def test_missing_geometry_file(tmp_path: Path) -> None:
    with pytest.raises(bf.UsageError, match=r"nowhere\.geojson: cannot read the geometry file: No such file"):
        bf.read_geometry(tmp_path / "nowhere.geojson")


def test_hostile_geometry_files_are_one_line(tmp_path: Path) -> None:
    deep = tmp_path / "deep.geojson"
    deep.write_text("[" * 100_000 + "]" * 100_000)
    with pytest.raises(bf.UsageError, match=r"deep\.geojson: JSON nested too deeply"):
        bf.read_geometry(deep)
    big = tmp_path / "big.geojson"
    with big.open("wb") as f:
        f.truncate(bf.MAX_GEOMETRY_BYTES + 1)
    with pytest.raises(bf.UsageError, match=r"big\.geojson: larger than 16 MiB"):
        bf.read_geometry(big)


def test_directory_as_geometry_file(tmp_path: Path) -> None:
    with pytest.raises(bf.UsageError, match="cannot read the geometry file: Is a directory"):
        bf.read_geometry(tmp_path)


# ----------------------------------------------------------------------------- requests and ids

SPEC = load_spec(ROOT / "collections" / "sentinel-2-l2a.yaml")


def test_request_defaults_to_the_collection_area_and_one_day() -> None:
    req = bf.make_request(SPEC, start="2026-03-01", end="2026-03-03")
    assert req.step == DAY and req.area == bf.Area(bbox=SPEC.source.bbox)
    assert req.id.startswith("sentinel-2-l2a/2026-03-01T00:00:00Z/2026-03-03T00:00:00Z/")


def test_the_id_follows_collection_range_and_area_not_spelling() -> None:
    a = bf.make_request(SPEC, start="2026-03-01", end="2026-03-03", bbox="2,44,4,46")
    same = bf.make_request(SPEC, start="2026-03-01T01:00+01:00", end="2026-03-03T00:00Z", bbox="2.0,44,4,46.0")
    assert a.id == same.id
    assert a.id != bf.make_request(SPEC, start="2026-03-01", end="2026-03-04", bbox="2,44,4,46").id
    assert a.id != bf.make_request(SPEC, start="2026-03-01", end="2026-03-03", bbox="2,44,4,47").id
    assert a.id != bf.make_request(SPEC, start="2026-03-01", end="2026-03-03").id


def test_request_refuses_both_areas(tmp_path: Path) -> None:
    with pytest.raises(bf.UsageError, match="not both"):
        bf.make_request(
            SPEC, start="2026-03-01", end="2026-03-02", bbox="2,44,4,46", geometry_file=write(tmp_path, SQUARE)
        )


def test_request_refuses_start_equal_end() -> None:
    with pytest.raises(bf.UsageError, match="must be after --start"):
        bf.make_request(SPEC, start="2026-03-01", end="2026-03-01T00:00Z")


# ----------------------------------------------------------------------------- chunk membership and eligibility


def product(sensing: datetime | None) -> ProviderProduct:
    return ProviderProduct("p", "S2_MSI_L2A", "local", None, None, None, None, sensing, None)


def test_a_product_on_a_boundary_belongs_to_the_later_chunk() -> None:
    assert not bf.in_chunk(product(t(2)), t(1), t(2))
    assert bf.in_chunk(product(t(2)), t(2), t(3))
    assert bf.in_chunk(product(None), t(1), t(2))  # no sensing time: trust the provider's filter


@pytest.mark.parametrize(
    ("state", "due", "wanted"),
    [(None, False, True), ("discovered", True, True), ("failed", True, True), ("failed", False, False)],
)
def test_wants_ingest(state: str | None, due: bool, wanted: bool) -> None:
    assert bf.wants_ingest(state, due) is wanted


def test_dry_run_lines() -> None:
    big = ProviderProduct("A", "S2", "local", None, None, 1_500_000_000, None, t(1), None)
    small = ProviderProduct("B", "S2", "local", None, None, None, None, t(1, 1), None)
    report = bf.DryRun(bf.Plan("x", []), [small, big], catalogued=2, skipped={"invalid": 1})
    lines = report.lines()
    assert lines[0].split() == ["A", "2026-03-01T00:00:00Z", "1.5", "GB"]
    assert lines[1].split()[:2] == ["B", "2026-03-01T01:00:00Z"] and lines[1].endswith("size unknown")
    assert lines[-1] == (
        "would ingest 2 products, 1.50 GB (+ 1 without a size from the provider); 2 already catalogued; "
        "not ingested: 1 invalid"
    )


# ----------------------------------------------------------------------------- progress


def _plan(total: int, done: int) -> bf.Plan:
    return bf.Plan("x", [Chunk(t(1) + i * DAY, t(2) + i * DAY, done=i < done) for i in range(total)])


def test_progress_is_a_bar_on_a_terminal_and_log_lines_otherwise() -> None:
    class Tty(io.StringIO):
        def isatty(self) -> bool:
            return True

    assert isinstance(bf.progress_for(_plan(2, 0), io.StringIO()), bf.LogProgress)
    assert isinstance(bf.progress_for(_plan(2, 0), Tty()), bf.RichProgress)


def test_rich_progress_shows_chunks_and_products() -> None:
    stream = io.StringIO()
    plan = _plan(4, 1)
    summary = bf.Summary("x", 4, 1)
    with bf.RichProgress(plan, stream) as progress:
        for chunk in plan.pending:
            summary.chunks_done, summary.found, summary.enqueued = summary.chunks_done + 1, summary.found + 5, 4
            summary.catalogued, summary.failed = 2, 1
            progress.chunk_done(chunk, summary)
    bar, products = stream.getvalue().splitlines()[-2:]
    assert bar.startswith("chunks ") and " 4/4 " in bar and "ETA" in bar
    assert products.startswith("products: 15 found · 4 enqueued · 2 catalogued · 1 failed · ")


def test_log_progress_is_one_line_per_chunk(caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level("INFO", logger="ingest.backfill")
    plan = _plan(3, 1)
    summary = bf.Summary("x", 3, 1, chunks_done=1, found=7, enqueued=6)
    chunk = plan.pending[0]
    chunk.found, chunk.enqueued = 7, 6
    bf.LogProgress().chunk_done(chunk, summary)
    (record,) = caplog.records
    assert record.getMessage().startswith(
        "backfill chunk 2/3 [2026-03-02T00:00:00Z, 2026-03-03T00:00:00Z): 7 found, 6 enqueued; in all 7 found"
    )
    assert "ETA 0:00:" in record.getMessage()
    assert record.__dict__["backfill"] == "x" and record.__dict__["chunk"] == 2
