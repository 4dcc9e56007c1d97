from __future__ import annotations

from datetime import timedelta
from pathlib import Path

import pytest
import yaml

from ingest import collections as col
from ingest.errors import CollectionSpecError
from ingest.stac_validation import InvalidStac, validate_collection

ROOT = Path(__file__).resolve().parents[2]
COLLECTIONS = ROOT / "collections"


@pytest.mark.parametrize(
    "text,expected",
    [
        ("90d", timedelta(days=90)),
        ("12h", timedelta(hours=12)),
        ("2w", timedelta(weeks=2)),
        ("P90D", timedelta(days=90)),
        ("PT6H", timedelta(hours=6)),
        ("P1W2D", timedelta(days=9)),
    ],
)
def test_parse_duration(text: str, expected: timedelta) -> None:
    assert col.parse_duration(text) == expected


@pytest.mark.parametrize("bad", ["", "P", "ninety days", "90", "-3d", "P1Y"])
def test_parse_duration_rejects(bad: str) -> None:
    with pytest.raises(ValueError):
        col.parse_duration(bad)


def test_shipped_collections_load_and_validate() -> None:
    specs = col.load_all(COLLECTIONS)
    sentinel3 = {
        "sentinel-3-olci-l1-efr", "sentinel-3-olci-l1-err", "sentinel-3-olci-l2-lfr", "sentinel-3-olci-l2-wfr",
        "sentinel-3-slstr-l1-rbt", "sentinel-3-slstr-l2-lst", "sentinel-3-slstr-l2-frp", "sentinel-3-slstr-l2-wst",
    }  # fmt: skip
    assert set(specs) == {"sentinel-2-l2a", "sentinel-2-l1c", "sentinel-1-grd"} | sentinel3
    for spec in specs.values():
        doc = spec.stac_collection()
        report = validate_collection(doc)
        assert "https://schemas.stacspec.org/v1.1.0/collection-spec/json-schema/collection.json" in report.checked
        assert doc["item_assets"] and all(a["roles"] for a in doc["item_assets"].values())
    l2a = specs["sentinel-2-l2a"]
    assert l2a.source.eodag_collection == "S2_MSI_L2A"
    assert l2a.cog.resampling_for("scl") == "nearest"
    assert l2a.cog.resampling_for("red") == "average"
    assert {"scl", "red", "nir", "visual", "aot"} <= set(l2a.stac.item_assets)
    names = {b["name"] for b in l2a.stac.summaries["eo:bands"]}
    assert {"B02", "B03", "B04", "B08", "B8A", "B12"} <= names
    for s3 in sentinel3:  # netCDF on the swath: kept as they are, nothing converted
        assert specs[s3].assets == {"*": "keep"} and specs[s3].asset_rule("Oa01_radiance") == "keep"
    s1 = specs["sentinel-1-grd"]
    assert s1.cog.resampling_for("vv") == "average"
    assert s1.stac.summaries["sar:frequency_band"] == ["C"]


def _write(tmp_path: Path, name: str, mutate) -> Path:  # type: ignore[no-untyped-def]
    doc = yaml.safe_load((COLLECTIONS / "sentinel-2-l2a.yaml").read_text())
    mutate(doc)
    path = tmp_path / f"{name}.yaml"
    path.write_text(yaml.safe_dump(doc))
    return path


def test_error_names_file_and_field(tmp_path: Path) -> None:
    path = _write(tmp_path, "sentinel-2-l2a", lambda d: d["retention"].update(max_age="ninety days"))
    with pytest.raises(CollectionSpecError) as err:
        col.load_spec(path)
    assert str(path) in str(err.value) and "retention.max_age" in str(err.value)


def test_unknown_field_is_rejected(tmp_path: Path) -> None:
    path = _write(tmp_path, "sentinel-2-l2a", lambda d: d["harvest"].update(intervall="1h"))
    with pytest.raises(CollectionSpecError, match=r"harvest.intervall: Extra inputs"):
        col.load_spec(path)


def test_harvest_needs_exactly_one_trigger(tmp_path: Path) -> None:
    path = _write(tmp_path, "sentinel-2-l2a", lambda d: d["harvest"].update(cron="0 * * * *"))
    with pytest.raises(CollectionSpecError, match=r"exactly one of 'cron' or 'interval'"):
        col.load_spec(path)


def test_bad_cron_is_rejected(tmp_path: Path) -> None:
    def mutate(d):  # type: ignore[no-untyped-def]
        d["harvest"].pop("interval")
        d["harvest"]["cron"] = "99 * * * *"

    path = _write(tmp_path, "sentinel-2-l2a", mutate)
    with pytest.raises(CollectionSpecError, match=r"harvest\.cron"):
        col.load_spec(path)


def test_id_must_match_file_name(tmp_path: Path) -> None:
    path = _write(tmp_path, "other-name", lambda d: None)
    with pytest.raises(CollectionSpecError, match="must equal the file name"):
        col.load_spec(path)


def test_retention_area_must_be_a_polygon(tmp_path: Path) -> None:
    path = _write(
        tmp_path, "sentinel-2-l2a", lambda d: d["retention"].update(area={"type": "Point", "coordinates": [1, 2]})
    )
    with pytest.raises(CollectionSpecError, match=r"retention\.area"):
        col.load_spec(path)


def test_malformed_yaml_names_the_line(tmp_path: Path) -> None:
    path = tmp_path / "x.yaml"
    path.write_text("id: x\nstac: [unclosed\n")
    with pytest.raises(CollectionSpecError, match=r"x.yaml: line \d+ not valid YAML"):
        col.load_spec(path)


def test_missing_file_and_unknown_collection(tmp_path: Path) -> None:
    with pytest.raises(CollectionSpecError, match="no such collection file"):
        col.load_spec(tmp_path / "nope.yaml")
    with pytest.raises(CollectionSpecError, match="unknown collection 'nope'"):
        col.get(COLLECTIONS, "nope")
    with pytest.raises(CollectionSpecError, match="no collection files"):
        col.load_all(tmp_path)


def test_stac_validation_catches_a_broken_collection() -> None:
    doc = col.load_all(COLLECTIONS)["sentinel-2-l1c"].stac_collection()
    doc["extent"]["spatial"]["bbox"] = [[0, 0]]
    with pytest.raises(InvalidStac, match="extent/spatial/bbox"):
        validate_collection(doc)


def test_missing_extension_schema_is_reported_not_passed() -> None:
    doc = col.load_all(COLLECTIONS)["sentinel-2-l1c"].stac_collection()
    doc["stac_extensions"].append("https://stac-extensions.github.io/classification/v2.0.0/schema.json")
    report = validate_collection(doc)
    assert "https://stac-extensions.github.io/classification/v2.0.0/schema.json" in report.not_checked
    assert "https://stac-extensions.github.io/classification/v2.0.0/schema.json" not in report.checked


@pytest.mark.parametrize(
    ("expr", "expected"),
    [
        ("30 3 * * *", "30 3 * * *"),
        ("0 3 * * 0", "0 3 * * sun"),  # APScheduler 3 alone would read 0 as Monday
        ("0 3 * * 7", "0 3 * * sun"),
        ("0 3 * * 1-5", "0 3 * * mon,tue,wed,thu,fri"),
        ("0 3 * * */2", "0 3 * * sun,tue,thu,sat"),  # steps count from Sunday, as in cron
        ("0 3 * * 5-7", "0 3 * * sun,fri,sat"),
        ("0 3 * * 1/3", "0 3 * * mon,thu"),
        ("0 3 * * sat,SUN", "0 3 * * sun,sat"),
    ],
)
def test_day_of_week_means_what_cron_means(expr: str, expected: str) -> None:
    assert col.apscheduler_crontab(expr) == expected


def test_bad_day_of_week_names_the_field(tmp_path: Path) -> None:
    path = _write(tmp_path, "sentinel-2-l2a", lambda d: d["retention"].update(schedule="0 3 * * 9"))
    with pytest.raises(CollectionSpecError, match=r"retention\.schedule.*day-of-week"):
        col.load_spec(path)


def test_enabled_retention_needs_something_to_enforce(tmp_path: Path) -> None:
    def mutate(d):  # type: ignore[no-untyped-def]
        d["retention"].update(enabled=True, max_age=None)

    path = _write(tmp_path, "sentinel-2-l2a", mutate)
    with pytest.raises(CollectionSpecError, match=r"max_age.*area"):
        col.load_spec(path)


def test_retention_policy_is_published_in_the_collection_document(tmp_path: Path) -> None:
    area = {"type": "Polygon", "coordinates": [[[10, 40], [20, 40], [20, 50], [10, 50], [10, 40]]]}

    def mutate(d):  # type: ignore[no-untyped-def]
        d["retention"].update(enabled=True, max_age="P1DT12H", anchor="ingestion", keep_latest=3, area=area)

    doc = col.load_spec(_write(tmp_path, "sentinel-2-l2a", mutate)).stac_collection()
    assert doc["ingest:retention"] == {
        "max_age": "P1DT12H",
        "anchor": "created",
        "area": area,
        "keep_latest": 3,
        "schedule": "30 3 * * *",
    }
    validate_collection(doc, source="test")
    off = col.load_spec(_write(tmp_path, "sentinel-2-l2a", lambda d: None)).stac_collection()
    assert "ingest:retention" not in off  # a disabled policy keeps everything: nothing to announce


@pytest.mark.parametrize(
    ("delta", "iso"),
    [(timedelta(days=90), "P90D"), (timedelta(hours=6), "PT6H"), (timedelta(days=2, minutes=5), "P2DT5M")],
)
def test_iso_duration(delta: timedelta, iso: str) -> None:
    assert col.iso_duration(delta) == iso
    assert col.parse_duration(iso) == delta


def test_a_resampling_override_changes_only_the_kinds_it_names() -> None:
    from ingest.collections import DEFAULT_RESAMPLING, CogProfile

    profile = CogProfile.model_validate({"resampling": {"visual": "bilinear"}, "bands": {"tci": "visual"}})
    assert profile.resampling_for("tci") == "bilinear"
    assert profile.resampling_for("red") == "average"  # reflectance keeps its default
    assert profile.resampling == {**DEFAULT_RESAMPLING, "visual": "bilinear"}
