"""The real Sentinel products of the vendored fixtures (tests/fixtures), end to end through the provider, S3 and pgstac.

The fixtures carry real metadata but no rasters: ``complete_real_safe`` adds generated rasters on the
grids the metadata describes and a manifest that agrees, keeping every metadata file byte-identical.
The item loaded into pgstac must then equal the item stactools made upstream (``expected_output.json``)
in id, geometry, datetime, properties and asset keys, with hrefs pointing at our S3 copies.
"""

from __future__ import annotations

import json
from datetime import datetime
from pathlib import Path
from typing import Any

import pytest
from shapely.geometry import shape

from ingest.asset_plan import THUMBNAIL_KEY
from ingest.collections import CollectionSpec
from ingest.devtools.complete import complete_real_safe
from ingest.devtools.publish import publish_safe
from ingest.harvest import harvest
from ingest.stages import kinds
from ingest.stages.checksums import file_digest, to_multihash
from ingest.state.machine import State
from tests.conftest import REAL_S1_GRD, REAL_S2_L1C, REAL_S2_L2A_N0214, REAL_S2_L2A_N0400, REAL_S3
from tests.integration.conftest import START, WorldFactory
from tests.integration.test_pipeline import assert_catalogued

pytestmark = pytest.mark.filterwarnings("ignore::UserWarning")  # antimeridian's FixWindingWarning on every S2 item

S2 = [REAL_S2_L1C, REAL_S2_L2A_N0214, REAL_S2_L2A_N0400]
S1 = [REAL_S1_GRD]
# properties we add or that name the moment of ingestion, not the product
OURS = ("created", "updated", "processing:", "ingest:")


def _kind(safe: Path) -> str:
    kind = kinds.of_name(safe.name)
    assert kind is not None, safe.name
    return kind.eodag


def _same_value(a: Any, b: Any) -> bool:
    if isinstance(a, float) or isinstance(b, float):
        return bool(a == pytest.approx(b, rel=1e-9, abs=1e-9))
    if isinstance(a, list) and isinstance(b, list):
        return len(a) == len(b) and all(_same_value(x, y) for x, y in zip(a, b, strict=True))
    if isinstance(a, dict) and isinstance(b, dict):
        return a.keys() == b.keys() and all(_same_value(a[k], b[k]) for k in a)
    return bool(a == b)


def _ingest_real(make_world: WorldFactory, safe: Path, tmp_path: Path) -> tuple[dict[str, Any], CollectionSpec]:
    world = make_world(_kind(safe), count=0)
    completed = complete_real_safe(safe, tmp_path / "completed", size=64)
    entry = publish_safe(world.root, completed, collection=_kind(safe), sensing=START, published=START)
    found = harvest(world.conn, world.provider, world.spec)
    assert found.new_ids == [entry.id]
    out = world.process(entry.id)
    assert out.state is State.CATALOGUED, out.error
    return assert_catalogued(world, entry.id), world.spec


@pytest.mark.parametrize("safe", S2, ids=[p.name[:26] for p in S2])
def test_real_s2_product_loads_as_stactools_describes_it(make_world: WorldFactory, safe: Path, tmp_path: Path) -> None:
    expected = json.loads((safe / "expected_output.json").read_text())
    item, spec = _ingest_real(make_world, safe, tmp_path)

    assert item["id"] == expected["id"]
    assert shape(item["geometry"]).equals_exact(shape(expected["geometry"]), tolerance=1e-7)
    assert datetime.fromisoformat(item["properties"]["datetime"]) == datetime.fromisoformat(
        expected["properties"]["datetime"]
    )
    for key, value in expected["properties"].items():
        if key.startswith(OURS):
            continue
        assert key in item["properties"], key
        assert _same_value(item["properties"][key], value), (key, item["properties"][key], value)
    # stactools' assets less what the collection's asset plan drops, plus the pipeline's thumbnail
    planned = {key for key in expected["assets"] if spec.asset_rule(key) != "drop"}
    assert set(item["assets"]) == planned | {THUMBNAIL_KEY}
    assert planned != set(expected["assets"]) or "MSIL2A" not in safe.name  # the L2A plan drops resampled copies
    for key in planned:
        asset = item["assets"][key]
        assert asset["href"].startswith("s3://"), key
        assert asset["roles"] == expected["assets"][key]["roles"], key
    assert item["assets"][THUMBNAIL_KEY]["roles"] == ["thumbnail"]


@pytest.mark.parametrize("safe", S1, ids=[p.name[:26] for p in S1])
def test_real_s1_grd_product_is_catalogued(make_world: WorldFactory, safe: Path, tmp_path: Path) -> None:
    item, _ = _ingest_real(make_world, safe, tmp_path)
    assert item["id"] == safe.name.removesuffix(".SAFE").rsplit("_", 1)[0]  # stactools drops the unique id
    assert {"vv", "vh"} <= set(item["assets"])
    for key in ("vv", "vh"):
        asset = item["assets"][key]
        assert asset["raster:bands"][0]["data_type"] == "uint16"
        assert asset["href"].endswith(f"/{key}.tif")
    assert item["properties"]["sar:polarizations"] == ["VV", "VH"]


@pytest.mark.parametrize("sen3", REAL_S3, ids=[p.name[:16] for p in REAL_S3])
def test_real_sentinel3_product_is_catalogued_with_its_netcdf_kept(
    make_world: WorldFactory, sen3: Path, tmp_path: Path
) -> None:
    item, spec = _ingest_real(make_world, sen3, tmp_path)
    kind = kinds.of_name(sen3.name)
    assert kind is not None
    assert item["properties"]["s3:product_type"] == kind.expected
    assert item["properties"]["processing:level"] == kind.level
    assert item["id"].startswith(sen3.name[:12])  # stactools shortens the name: S3A_OL_1_EFR_<start>_<stop>_...
    # every asset is one of the product's files, byte for byte (objects are named by asset key)
    files = {
        to_multihash("sha256", file_digest(p, "sha256")): p for p in (tmp_path / "completed" / sen3.name).iterdir()
    }
    assert THUMBNAIL_KEY not in item["assets"]  # a SEN3 folder carries no quick-look
    kept = set()
    for key, asset in item["assets"].items():
        source = files.get(asset["file:checksum"])
        assert source is not None and asset["file:size"] == source.stat().st_size, key
        assert asset["href"].startswith("s3://") and asset["href"].endswith(f"/{key}{source.suffix}"), key
        assert asset["type"] == (kinds.NETCDF_MEDIA_TYPE if source.suffix == ".nc" else "application/xml"), key
        kept.add(source.name)
    assert "xfdumanifest.xml" in kept and any(name.endswith(".nc") for name in kept)
    assert set(item["assets"]) <= set(spec.stac.item_assets)
