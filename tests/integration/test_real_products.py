"""The real Sentinel products of the vendored fixtures (tests/fixtures), end to end through the provider, S3 and pgstac.

The fixtures carry real metadata but no rasters: ``complete_real_safe`` adds generated rasters on the
grids the metadata describes and a manifest that agrees, keeping every metadata file byte-identical.
The item loaded into pgstac must then equal the item stactools made upstream (``expected_output.json``)
in id, geometry, datetime, properties and asset keys, with hrefs pointing at our S3 copies.
"""

from __future__ import annotations

import json
import shutil
from datetime import datetime
from pathlib import Path
from typing import Any

import pytest
from shapely.geometry import shape

from ingest.adapters import pgstac
from ingest.asset_plan import THUMBNAIL_KEY
from ingest.collections import CollectionSpec
from ingest.devtools.catalog import add_product
from ingest.devtools.complete import complete_real_safe, rewrite_manifest
from ingest.devtools.generator import zip_product
from ingest.devtools.publish import publish_safe, safe_geometry
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
    assert kept == {p.name for p in files.values()}  # the whole product, geolocation and flags included
    assert set(item["assets"]) <= set(spec.stac.item_assets)


def _variant(efr: Path, out: Path, stamp: str) -> Path:
    """The completed EFR under another creation time: another product id."""
    target = out / efr.name.replace("20211021T091357", stamp)
    shutil.copytree(efr, target)
    return target


def _offer(root: Path, sen3: Path, geometry: dict[str, Any], tmp_path: Path) -> str:
    zipped = zip_product(sen3, tmp_path / f"{sen3.name.removesuffix('.SEN3')}.zip")
    return add_product(root, zipped, collection="S3_EFR", geometry=geometry, datetime=START, published=START).id


def test_hostile_sentinel3_products_are_invalid_with_the_cause_and_nothing_is_uploaded(
    make_world: WorldFactory, tmp_path: Path
) -> None:
    world = make_world("S3_EFR", count=0)
    src = next(p for p in REAL_S3 if "_OL_1_EFR_" in p.name)
    efr = complete_real_safe(src, tmp_path / "completed")
    hostile = tmp_path / "hostile"
    hostile.mkdir()
    # a netCDF changed after its manifest was written
    md5 = _variant(efr, hostile, "20211021T100000")
    (md5 / "Oa01_radiance.nc").write_bytes((md5 / "Oa01_radiance.nc").read_bytes()[:-1] + b"\x01")
    # a ".nc" that is not netCDF, with a manifest that agrees with it
    not_nc = _variant(efr, hostile, "20211021T110000")
    (not_nc / "Oa07_radiance.nc").write_bytes(b"<html><body>login required</body></html>")
    rewrite_manifest(not_nc / "xfdumanifest.xml")
    # an xfdumanifest with a DTD declaring an entity
    dtd = _variant(efr, hostile, "20211021T120000")
    text = (dtd / "xfdumanifest.xml").read_text()
    head, body = text.split("?>", 1)
    (dtd / "xfdumanifest.xml").write_text(f'{head}?><!DOCTYPE x [<!ENTITY e SYSTEM "file:///etc/hostname">]>{body}')
    causes = {
        md5: "disagree with xfdumanifest.xml: Oa01_radiance.nc: MD5 mismatch",
        not_nc: "not netCDF (no netCDF or HDF5 signature): Oa07_radiance.nc",
        dtd: "DTD",
    }
    where = safe_geometry(efr)  # the hostile ones are offered with the footprint of the real one
    ids = {folder: _offer(world.root, folder, where, tmp_path) for folder in causes}
    assert set(harvest(world.conn, world.provider, world.spec).new_ids) == set(ids.values())
    for folder, cause in causes.items():
        out = world.process(ids[folder])
        assert out.state is State.INVALID, (folder.name, out.error)
        assert cause in (out.error or ""), (folder.name, out.error)
    assert world.store.list_keys(world.store.collection_prefix(world.spec.id)) == []  # nothing uploaded
    assert (
        pgstac.get_item(world.dsn, world.spec.id, "S3A_OL_1_EFR_20211021T073827_20211021T074112_0164_077_334_4320")
        is None
    )
