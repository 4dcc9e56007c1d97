"""The asset plan (ingest.asset_plan) and how a collection file's ``assets`` section is checked."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import yaml

from ingest import asset_plan
from ingest import collections as col
from ingest.errors import CollectionSpecError

ROOT = Path(__file__).resolve().parents[2]
COLLECTIONS = ROOT / "collections"

ITEM_ASSETS: dict[str, dict[str, Any]] = {
    "red": {"roles": ["data"], "type": "image/tiff; application=geotiff; profile=cloud-optimized"},
    "red_20m": {"roles": ["data"], "type": "image/tiff; application=geotiff; profile=cloud-optimized"},
    "visual": {"roles": ["visual"], "type": "image/tiff; application=geotiff; profile=cloud-optimized"},
    "product_metadata": {"roles": ["metadata"], "type": "application/xml"},
    "measurement": {"roles": ["data"], "type": "application/x-netcdf"},
}


def test_an_exact_key_wins_over_globs_and_the_first_matching_glob_over_later_ones() -> None:
    plan: dict[str, asset_plan.Action] = {"*_20m": "drop", "red*": "keep", "red_20m": "cog", "*": "drop"}
    assert asset_plan.rule_for(plan, "red_20m") == "cog"  # named exactly, although two globs match before
    assert asset_plan.rule_for(plan, "blue_20m") == "drop"  # the first glob
    assert asset_plan.rule_for(plan, "red") == "keep"  # "red*" comes before "*"
    assert asset_plan.rule_for(plan, "visual") == "drop"
    assert asset_plan.rule_for({"red": "keep"}, "visual") is None  # no rule: the default treatment


def test_globs_are_case_sensitive_and_plain_keys_are_not_patterns() -> None:
    assert asset_plan.rule_for({"RED*": "drop"}, "red") is None
    assert asset_plan.rule_for({"red": "drop"}, "red_20m") is None


def test_unmatched_rules_are_the_ones_naming_no_asset() -> None:
    plan: dict[str, asset_plan.Action] = {"*_20m": "drop", "*_60m": "drop", "blu": "keep", "red": "cog"}
    assert asset_plan.unmatched(plan, ITEM_ASSETS) == ["*_60m", "blu"]


def test_kept_assets_leave_out_what_the_plan_drops() -> None:
    kept = asset_plan.kept_assets({"*_20m": "drop", "product_metadata": "drop"}, ITEM_ASSETS)
    assert set(kept) == {"red", "visual", "measurement"}


def test_a_plan_dropping_every_data_asset_cannot_stand() -> None:
    wrong = asset_plan.problems({"red*": "drop", "visual": "drop", "measurement": "drop"}, ITEM_ASSETS)
    assert len(wrong) == 1 and "drops every data asset" in wrong[0] and "measurement" in wrong[0]
    assert asset_plan.problems({"red*": "drop", "visual": "drop"}, ITEM_ASSETS) == []  # the netCDF is left


def test_cog_for_an_asset_that_is_not_a_raster_cannot_stand() -> None:
    wrong = asset_plan.problems({"measurement": "cog", "product_*": "cog"}, ITEM_ASSETS)
    assert [w.split(":")[0] for w in wrong] == ["product_metadata", "measurement"]
    assert asset_plan.problems({"red*": "cog", "measurement": "keep"}, ITEM_ASSETS) == []


def test_the_thumbnail_is_the_pipelines_a_plan_can_only_drop_it() -> None:
    assert asset_plan.problems({"thumbnail": "drop"}, ITEM_ASSETS) == []
    wrong = asset_plan.problems({"thumbnail": "keep"}, ITEM_ASSETS)
    assert len(wrong) == 1 and wrong[0].startswith("thumbnail: made by the pipeline")
    assert asset_plan.problems({"*": "keep"}, ITEM_ASSETS) == []  # globs do not reach it


def _write(tmp_path: Path, assets: dict[str, Any], name: str = "sentinel-2-l2a") -> Path:
    doc = yaml.safe_load((COLLECTIONS / f"{name}.yaml").read_text())
    doc["assets"] = assets
    path = tmp_path / f"{name}.yaml"
    path.write_text(yaml.safe_dump(doc, sort_keys=False))
    return path


def test_a_file_whose_plan_drops_every_data_asset_is_refused_naming_file_and_field(tmp_path: Path) -> None:
    path = _write(tmp_path, {"*": "drop"})
    with pytest.raises(CollectionSpecError) as err:
        col.load_spec(path)
    text = str(err.value)
    assert str(path) in text and "assets: drops every data asset" in text


def test_an_unknown_action_is_refused_naming_the_key(tmp_path: Path) -> None:
    path = _write(tmp_path, {"red": "convert"})
    with pytest.raises(CollectionSpecError) as err:
        col.load_spec(path)
    text = str(err.value)
    assert str(path) in text and "assets.red" in text and "'cog', 'keep' or 'drop'" in text


def test_a_rule_naming_no_asset_is_a_warning_not_an_error(tmp_path: Path) -> None:
    spec = col.load_spec(_write(tmp_path, {"*_20m": "drop", "wvp_30m": "drop"}))
    warnings = spec.plan_warnings()
    assert any(w.startswith("assets.wvp_30m: names no asset") for w in warnings)
    assert not any("*_20m" in w.split(":")[0] for w in warnings)
    # band kinds for an asset the plan drops: said too (a leftover of an edit)
    spec = col.load_spec(_write(tmp_path, {"*_20m": "drop", "aot": "drop"}))
    assert spec.plan_warnings() == ["cog.bands: kinds for assets the plan drops: aot"]
    assert col.load_spec(COLLECTIONS / "sentinel-2-l2a.yaml").plan_warnings() == []


def test_the_published_collection_lists_only_the_assets_the_plan_keeps() -> None:
    spec = col.load_spec(COLLECTIONS / "sentinel-2-l2a.yaml")
    published = spec.stac_collection()["item_assets"]
    assert set(published) < set(spec.stac.item_assets)
    assert not any(k.endswith(("_10m", "_20m", "_60m")) for k in published)
    # each band once, at its own resolution; SCL, AOT, WVP and the TCI; the metadata
    native = {"coastal", "blue", "green", "red", "nir", "rededge1", "rededge2", "rededge3", "nir08", "nir09", "swir16"}
    assert native | {"swir22", "scl", "aot", "wvp", "visual", "product_metadata", "granule_metadata"} <= set(published)
    for key in ("aot", "wvp", "scl"):
        assert published[key]["gsd"] == 20, key


def test_the_l2a_plan_keeps_native_resolutions_and_the_other_collections_everything() -> None:
    specs = col.load_all(COLLECTIONS)
    l2a = specs["sentinel-2-l2a"]
    assert [k for k in l2a.stac.item_assets if l2a.asset_rule(k) == "drop"] == sorted(
        k for k in l2a.stac.item_assets if k.endswith(("_10m", "_20m", "_60m"))
    )
    for cid in ("sentinel-2-l1c", "sentinel-1-grd"):
        spec = specs[cid]
        assert spec.stac_collection()["item_assets"] == spec.stac.item_assets, cid
