"""Tests for ingest.stages.describe: real SAFE fixtures (golden items), generated products, no mocks.

Golden files (tests/golden/*.json) hold the final item of each real fixture with its volatile parts
normalised (created/updated, software versions, store hrefs). Regenerate them after a deliberate change:

    UPDATE_GOLDEN=1 .venv/bin/pytest tests/unit/test_describe.py

and review the diff before committing.
"""

from __future__ import annotations

import copy
import dataclasses
import hashlib
import json
import os
import shutil
from datetime import UTC, datetime, timedelta
from functools import cache
from pathlib import Path
from typing import Any

import numpy as np
import pystac
import pytest
import rasterio
from rasterio.transform import from_origin

from ingest.adapters.s3 import ObjectStore
from ingest.collections import CollectionSpec, Source, get
from ingest.devtools import generator as gen
from ingest.errors import ConfigError, IngestError, InvalidProduct
from ingest.stac_validation import InvalidStac, has_schema, validate_item
from ingest.stages import describe
from ingest.stages.artifacts import CogResult, MetadataFile, Provenance, StorageAccess, StoredObject
from ingest.stages.checksums import to_multihash
from ingest.stages.upload import COG_MEDIA_TYPE, plan_upload
from tests.conftest import FIXTURES

# stactools-sentinel2 hands clockwise footprints to antimeridian, which fixes and says so on every item
pytestmark = pytest.mark.filterwarnings("ignore:The exterior ring of this shape is wound clockwise")

ROOT = Path(__file__).resolve().parents[2]
GOLDEN = ROOT / "tests" / "golden"


UPDATE_GOLDEN = os.environ.get("UPDATE_GOLDEN") == "1"  # not INGEST_*: settings refuse unknown ones

S2_SAFE = FIXTURES / "sentinel2" / "safe"
S1_SAFE = FIXTURES / "sentinel1" / "safe"
L2A, L1C, GRD = "sentinel-2-l2a", "sentinel-2-l1c", "sentinel-1-grd"
REAL: dict[str, tuple[Path, str]] = {
    "s2-l2a-n0214": (S2_SAFE / "esa_S2B_MSIL2A_20210122T133229_N0214_R081_T22HBD_20210122T155500.SAFE", L2A),
    "s2-l2a-n0400": (S2_SAFE / "S2B_MSIL2A_20220413T150759_N0400_R025_T33XWJ_20220414T082126.SAFE", L2A),
    "s2-l1c-n0301": (S2_SAFE / "S2A_MSIL1C_20210908T042701_N0301_R133_T46RER_20210908T070248.SAFE", L1C),
    "s1-grd": (S1_SAFE / "S1A_IW_GRDH_1SDV_20210809T173953_20210809T174018_039156_049F13_6FF8.SAFE", GRD),
}
REAL_IDS = {
    "s2-l2a-n0214": "S2B_T22HBD_20210122T133224_L2A",
    "s2-l2a-n0400": "S2B_T33XWJ_20220413T150756_L2A",
    "s2-l1c-n0301": "S2A_T46RER_20210908T043714_L1C",
    "s1-grd": "S1A_IW_GRDH_1SDV_20210809T173953_20210809T174018_039156_049F13",
}
# generated product -> the real fixture of the same kind (same baseline family: see test_generator)
GENERATED_LIKE = {"l1c": "s2-l1c-n0301", "l2a": "s2-l2a-n0400", "l2a_0214": "s2-l2a-n0214", "s1": "s1-grd"}
COLLECTION_OF = {"l1c": L1C, "l2a": L2A, "l2a_0214": L2A, "s1": GRD}

NOW = datetime(2026, 11, 20, 12, 0, tzinfo=UTC)
NOW_TEXT = "2026-11-20T12:00:00Z"
PUBLIC_BASE = "https://data.example.org/eo"
STORE = ObjectStore(bucket="eo-catalogue", prefix="ingest", public_base_url=PUBLIC_BASE)
PRIVATE_STORE = ObjectStore(bucket="eo-catalogue", prefix="ingest")
STORAGE = StorageAccess(endpoint_url="https://s3.example.org", region="eu-central-1")
ADDED_EXTENSIONS = [describe.FILE_EXT, describe.PROCESSING_EXT, describe.RASTER_EXT, describe.PROJECTION_EXT]
S1_LINES, S1_SAMPLES = 60, 80


# --------------------------------------------------------------------------- helpers


@cache
def spec(collection_id: str) -> CollectionSpec:
    return get(ROOT / "collections", collection_id)


def real_item(name: str) -> pystac.Item:
    safe, collection = REAL[name]
    return describe.build_item(safe, spec(collection))


def sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def convertible(item: pystac.Item) -> list[str]:
    return [k for k, a in item.assets.items() if describe.treatment(k, a, spec(str(item.collection_id))) == "convert"]


def as_is_files(item: pystac.Item) -> list[MetadataFile]:
    return describe.metadata_files(item, spec(str(item.collection_id)))


def cogs_from_rasters(item: pystac.Item, spec_: CollectionSpec) -> dict[str, CogResult]:
    """What a converter reports, taken from the real source rasters on disk (sizes, digests, grids)."""
    cogs = {}
    for source in describe.raster_sources(item, spec_):
        bands = item.assets[source.asset_key].extra_fields.get("raster:bands") or [{}]
        with rasterio.open(source.path) as src:
            crs = src.crs if src.crs is not None else src.gcps[1]  # as the converter reports GCP rasters
            epsg = crs.to_epsg() if crs is not None else None
            nodata = src.nodata if src.nodata is not None else bands[0].get("nodata")
            cogs[source.asset_key] = CogResult(
                source.asset_key, source.path, source.path.stat().st_size, sha256(source.path),
                src.dtypes[0], nodata, (src.height, src.width), epsg,
            )  # fmt: skip
    return cogs


def cogs_from_metadata(item: pystac.Item) -> dict[str, CogResult]:
    """For the real fixtures, which ship no rasters: what converting the bands their metadata lists gives."""
    cogs = {}
    for key in convertible(item):
        fields = item.assets[key].extra_fields
        band = (fields.get("raster:bands") or [{}])[0]
        if "proj:shape" in fields:  # S2: the tile grid at the band's resolution, in the tile's UTM zone
            shape, epsg = tuple(fields["proj:shape"]), int(item.properties["proj:code"].split(":")[1])
        else:  # S1: the measurement's lines x samples, GCPs kept (the converter reports their CRS)
            samples, lines = item.properties["s1:shape"]
            shape, epsg = (lines, samples), 4326
        digest = hashlib.sha256(f"{item.id}/{key}".encode()).hexdigest()
        size = shape[0] * shape[1] // 3  # a plausible deflated size; only needs to be stable
        cogs[key] = CogResult(key, Path(f"/nonexistent/{key}.tif"), size, digest, band.get("data_type", "uint16"),
                              band.get("nodata"), shape, epsg)  # fmt: skip
    return cogs


def store_objects(
    store: ObjectStore, item: pystac.Item, cogs: dict[str, CogResult], metadata: list[MetadataFile]
) -> dict[str, StoredObject]:
    """The StoredObjects the upload stage would return, named by its own plan, without a server."""
    stored = {}
    for planned in plan_upload(list(cogs.values()), metadata):
        key = store.item_key(item.collection_id or "", item.id, planned.name)
        digest = planned.sha256 or sha256(planned.path)
        size = planned.size if planned.size is not None else planned.path.stat().st_size
        stored[planned.asset_key] = StoredObject(
            key, store.href(key), store.public_href(key), size, to_multihash("sha256", digest), planned.media_type
        )
    return stored


def provenance(item: pystac.Item, upstream_id: str) -> Provenance:
    return Provenance(
        upstream_id=upstream_id,
        provider="local",
        processing_baseline=item.properties.get("s2:processing_baseline"),
        ingested_at=NOW - timedelta(hours=1),
        upstream_checksum=to_multihash("sha256", hashlib.sha256(upstream_id.encode()).hexdigest()),
    )


def finalize(
    item: pystac.Item,
    cogs: dict[str, CogResult],
    *,
    store: ObjectStore = STORE,
    storage: StorageAccess = STORAGE,
    upstream_id: str = "upstream",
) -> tuple[dict[str, Any], dict[str, StoredObject]]:
    stored = store_objects(store, item, cogs, as_is_files(item))
    prov = provenance(item, upstream_id)
    doc = describe.finalize_item(item, stored=stored, cogs=cogs, provenance=prov, storage=storage, now=NOW)
    return doc, stored


def all_hrefs(doc: dict[str, Any]) -> list[str]:
    hrefs = [a["href"] for a in doc["assets"].values()]
    hrefs += [a["alternate"]["s3"]["href"] for a in doc["assets"].values() if "alternate" in a]
    return hrefs + [link["href"] for link in doc["links"]]


def assert_nothing_local(doc: dict[str, Any], safe: Path) -> None:
    for href in all_hrefs(doc):
        assert not href.startswith(("/", "file:")), href
    assert str(safe.parent) not in json.dumps(doc)  # no local path anywhere in the document


# --------------------------------------------------------------------------- golden items


def normalise(doc: dict[str, Any]) -> dict[str, Any]:
    out = copy.deepcopy(doc)
    props = out["properties"]
    props["created"] = props["updated"] = "<now>"
    props["processing:software"] = {name: "<version>" for name in props["processing:software"]}
    for asset in out["assets"].values():
        asset["href"] = _placeholder(asset["href"])
        if "alternate" in asset:
            asset["alternate"]["s3"]["href"] = _placeholder(asset["alternate"]["s3"]["href"])
    return out


def _placeholder(href: str) -> str:
    return href.replace(f"{PUBLIC_BASE}/", "<public>/").replace(f"s3://{STORE.bucket}/", "<s3>/")


def golden(name: str) -> dict[str, Any]:
    path = GOLDEN / f"{name}.json"
    if not path.exists():
        pytest.fail(f"{path} is missing: run UPDATE_GOLDEN=1 .venv/bin/pytest {Path(__file__).name}")
    data: dict[str, Any] = json.loads(path.read_text(encoding="utf-8"))
    return data


def check_golden(name: str, doc: dict[str, Any]) -> None:
    got = normalise(doc)
    if UPDATE_GOLDEN:
        GOLDEN.mkdir(exist_ok=True)
        text = json.dumps(got, indent=2, sort_keys=True, ensure_ascii=False) + "\n"
        (GOLDEN / f"{name}.json").write_text(text, encoding="utf-8")
    want = golden(name)
    # the parts that matter most first, for readable failures; then the whole document
    assert got["id"] == want["id"]
    assert sorted(got["assets"]) == sorted(want["assets"])
    assert got["stac_extensions"] == want["stac_extensions"]
    for key in ("datetime", "proj:code", "processing:level", "ingest:upstream_id", "s2:processing_baseline",
                "sar:polarizations", "sat:relative_orbit", "created", "updated"):  # fmt: skip
        assert got["properties"].get(key) == want["properties"].get(key), key
    assert got == want


@pytest.mark.parametrize("name", sorted(REAL))
def test_real_fixture_item_matches_golden(name: str) -> None:
    safe, collection = REAL[name]
    item = real_item(name)
    doc, stored = finalize(item, cogs_from_metadata(item), upstream_id=safe.name.removesuffix(".SAFE"))
    check_golden(name, doc)
    assert doc["id"] == REAL_IDS[name]
    assert doc["collection"] == collection
    assert set(doc["assets"]) == set(stored)
    assert set(ADDED_EXTENSIONS) <= set(doc["stac_extensions"])
    assert_nothing_local(doc, safe)


def test_real_fixtures_drop_what_the_product_lacks() -> None:
    # stactools links these by convention; the fixtures lack them (MANIFEST.md), so they are not in the item
    for name in ("s2-l2a-n0214", "s2-l2a-n0400", "s2-l1c-n0301"):
        item, assets = real_item(name), golden(name)["assets"]
        assert {"inspire_metadata", "datastrip_metadata", "preview"} <= set(item.assets)
        assert {"inspire_metadata", "datastrip_metadata", "preview"}.isdisjoint(assets), name
        assert {"safe_manifest", "product_metadata", "granule_metadata", "blue", "visual"} <= set(assets), name
    assert "thumbnail" in real_item("s1-grd").assets
    assert set(golden("s1-grd")["assets"]) == {
        "vv", "vh", "safe-manifest", "schema-product-vv", "schema-product-vh", "schema-calibration-vv",
        "schema-calibration-vh", "schema-noise-vv", "schema-noise-vh",
    }  # fmt: skip


# --------------------------------------------------------------------------- generated products


@pytest.fixture(scope="module")
def products(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    out = tmp_path_factory.mktemp("products")
    sensing = datetime(2024, 1, 5, 10, 34, 21, tzinfo=UTC)
    return {
        "l1c": gen.generate_s2(out, level="L1C", sensing=sensing, size=60, seed=3),
        "l2a": gen.generate_s2(out, level="L2A", sensing=sensing, size=60, seed=5),
        "l2a_0214": gen.generate_s2(out, level="L2A", tile="22HBD", sensing=sensing, satellite="S2B",
                                    relative_orbit=81, baseline="02.14", size=60),
        "s1": gen.generate_s1_grd(out, sensing=datetime(2024, 1, 5, 17, 39, 53, tzinfo=UTC), lines=S1_LINES,
                                  samples=S1_SAMPLES, seed=2),
    }  # fmt: skip


def generated(products: dict[str, Path], kind: str) -> tuple[pystac.Item, CollectionSpec]:
    spec_ = spec(COLLECTION_OF[kind])
    return describe.build_item(products[kind], spec_), spec_


@pytest.mark.parametrize("kind", sorted(GENERATED_LIKE))
def test_generated_product_is_equivalent_in_shape_to_the_real_one(products: dict[str, Path], kind: str) -> None:
    item, spec_ = generated(products, kind)
    real = real_item(GENERATED_LIKE[kind])
    assert set(item.assets) == set(real.assets)
    assert set(item.stac_extensions) == set(real.stac_extensions)

    doc, _ = finalize(item, cogs_from_rasters(item, spec_))
    want = golden(GENERATED_LIKE[kind])
    # a complete product: nothing left out but what the collection's asset plan drops and stactools'
    # thumbnail, which ingest.stages.preview replaces
    assert set(doc["assets"]) == {k for k in item.assets if spec_.asset_rule(k) != "drop"} - {"thumbnail"}
    assert set(doc["assets"]) >= set(want["assets"])  # everything the real item has, with the same type and roles
    for key, asset in want["assets"].items():
        assert (doc["assets"][key]["type"], doc["assets"][key]["roles"]) == (asset["type"], asset["roles"]), key
    assert doc["stac_extensions"] == want["stac_extensions"]
    # every field the real item has (newer baselines add some, e.g. L1C s2:nodata_pixel_percentage)
    assert set(doc["properties"]) >= set(want["properties"])
    assert_nothing_local(doc, products[kind])


# --------------------------------------------------------------------------- raster_sources / metadata_files


def test_raster_sources_l2a_bands_and_kinds(products: dict[str, Path]) -> None:
    item, spec_ = generated(products, "l2a")
    sources = {s.asset_key: s for s in describe.raster_sources(item, spec_)}
    # every band asset of the collection once, at its own resolution: the plan drops ESA's resampled copies
    # (coastal_20m, which baselines >= 04.00 add, among them)
    assert set(sources) == set(spec_.cog.bands)
    assert "coastal_20m" in item.assets and not any(k.endswith(("_10m", "_20m", "_60m")) for k in sources)
    assert "preview" not in sources and not any(k.endswith("_metadata") for k in sources)
    kinds = {key: s.kind for key, s in sources.items()}
    assert kinds["scl"] == "classification"
    assert kinds["visual"] == "visual"
    assert kinds["aot"] == kinds["wvp"] == "atmosphere"
    assert kinds["blue"] == kinds["nir08"] == kinds["coastal"] == "reflectance"
    assert sources["blue"].path.name.endswith("_B02_10m.jp2")
    assert sources["scl"].path.name.endswith("_SCL_20m.jp2")
    assert sources["aot"].path.name.endswith("_AOT_20m.jp2") and sources["wvp"].path.name.endswith("_WVP_20m.jp2")
    assert sources["coastal"].path.name.endswith("_B01_60m.jp2") and sources["nir09"].path.name.endswith("_B09_60m.jp2")
    assert sources["visual"].path.name.endswith("_TCI_10m.jp2")
    for source in sources.values():
        assert source.path.is_file() and source.path.is_relative_to(products["l2a"]), source


def test_raster_sources_l1c_and_s1(products: dict[str, Path]) -> None:
    item, spec_ = generated(products, "l1c")
    l1c = {s.asset_key: s.kind for s in describe.raster_sources(item, spec_)}
    assert set(l1c) == set(spec_.cog.bands) and len(l1c) == 14  # 13 bands + TCI
    assert l1c["visual"] == "visual" and l1c["cirrus"] == l1c["coastal"] == "reflectance"

    item, spec_ = generated(products, "s1")
    s1 = describe.raster_sources(item, spec_)
    assert sorted((s.asset_key, s.kind) for s in s1) == [("vh", "backscatter"), ("vv", "backscatter")]
    assert all(s.path.parent.name == "measurement" and s.path.suffix == ".tiff" for s in s1)
    # stactools' quick-look link: ingest.stages.preview makes the thumbnail from it, the pipeline uploads that
    assert describe.treatment("thumbnail", item.assets["thumbnail"], spec(GRD)) == "drop"


def test_raster_sources_refuses_a_product_missing_its_bands() -> None:
    item = real_item("s2-l2a-n0214")  # the fixture has metadata only
    with pytest.raises(InvalidProduct) as err:
        describe.raster_sources(item, spec("sentinel-2-l2a"))
    assert "S2B_MSIL2A_20210122T133229_N0214_R081_T22HBD_20210122T155500" in str(err.value)
    assert "missing" in str(err.value) and "blue" in str(err.value) and "scl" in str(err.value)


def by_key(files: list[MetadataFile], safe: Path) -> dict[str, tuple[str, str]]:
    return {f.asset_key: (f.path.relative_to(safe).as_posix(), f.media_type) for f in files}


def test_metadata_files_s2(products: dict[str, Path]) -> None:
    safe = REAL["s2-l2a-n0214"][0]
    real = by_key(as_is_files(real_item("s2-l2a-n0214")), safe)
    assert real == {
        "safe_manifest": ("manifest.safe", "application/xml"),
        "product_metadata": ("MTD_MSIL2A.xml", "application/xml"),
        "granule_metadata": ("GRANULE/L2A_T22HBD_A020270_20210122T133224/MTD_TL.xml", "application/xml"),
    }
    item, _ = generated(products, "l2a")
    files = by_key(as_is_files(item), products["l2a"])
    assert set(files) == set(real) | {"inspire_metadata", "datastrip_metadata", "preview"}
    assert files["product_metadata"] == ("MTD_MSIL2A.xml", "application/xml")
    assert files["inspire_metadata"] == ("INSPIRE.xml", "application/xml")
    datastrip = files["datastrip_metadata"][0]
    assert datastrip.startswith("DATASTRIP/") and datastrip.endswith("/MTD_DS.xml")
    assert files["granule_metadata"][0].endswith("/MTD_TL.xml")
    assert files["preview"][0].endswith("_PVI.jp2") and files["preview"][1] == "image/jp2"


def test_metadata_files_s1(products: dict[str, Path]) -> None:
    safe = REAL["s1-grd"][0]
    real = by_key(as_is_files(real_item("s1-grd")), safe)
    assert real["safe-manifest"] == ("manifest.safe", "application/xml")
    for pol in ("vv", "vh"):
        assert real[f"schema-product-{pol}"][0].startswith("annotation/s1a-iw-grd-" + pol)
        assert real[f"schema-calibration-{pol}"][0].startswith("annotation/calibration/calibration-")
        assert real[f"schema-noise-{pol}"][0].startswith("annotation/calibration/noise-")
    assert {media for _, media in real.values()} == {"application/xml"} and len(real) == 7
    item, _ = generated(products, "s1")
    files = by_key(as_is_files(item), products["s1"])
    assert set(files) == set(real)  # the quick-look is not uploaded as it is (ingest.stages.preview)


# --------------------------------------------------------------------------- finalize_item


def test_finalize_rewrites_hrefs_and_describes_every_asset(products: dict[str, Path]) -> None:
    item, spec_ = generated(products, "l2a")
    local_blue = item.assets["blue"].href
    cogs = cogs_from_rasters(item, spec_)
    doc, stored = finalize(item, cogs, upstream_id=products["l2a"].name.removesuffix(".SAFE"))

    prefix = f"ingest/sentinel-2-l2a/{item.id}/"
    for key, asset in doc["assets"].items():
        obj = stored[key]
        assert obj.key.startswith(prefix)
        assert asset["href"] == f"{PUBLIC_BASE}/{obj.key}" == obj.public_href
        assert asset["alternate"] == {"s3": {"href": f"s3://eo-catalogue/{obj.key}"}}
        path = cogs[key].path if key in cogs else Path(item.assets[key].href)
        assert asset["file:size"] == path.stat().st_size
        assert asset["file:checksum"] == "1220" + sha256(path)
    assert stored["blue"].key == prefix + "blue.tif"
    assert stored["product_metadata"].key == prefix + "metadata/product_metadata.xml"

    for key, cog in cogs.items():
        asset = doc["assets"][key]
        assert asset["type"] == COG_MEDIA_TYPE
        assert {b["data_type"] for b in asset["raster:bands"]} == {cog.dtype}
        assert asset["proj:shape"] == list(cog.shape)
        assert asset["proj:transform"] == item.assets[key].extra_fields["proj:transform"]  # same grid: kept
        assert "proj:code" not in asset  # the item's EPSG:32631
    blue = doc["assets"]["blue"]["raster:bands"][0]
    assert (blue["scale"], blue["offset"], blue["spatial_resolution"], blue["nodata"]) == (0.0001, -0.1, 10, 0)
    assert len(doc["assets"]["scl"]["raster:bands"][0]["classification:classes"]) == 12
    assert len(doc["assets"]["visual"]["raster:bands"]) == 3
    assert doc["assets"]["product_metadata"]["type"] == "application/xml"
    assert doc["assets"]["preview"]["type"] == "image/jp2" and "raster:bands" not in doc["assets"]["preview"]

    props = doc["properties"]
    assert props["created"] == props["updated"] == NOW_TEXT
    assert props["ingest:upstream_id"] == products["l2a"].name.removesuffix(".SAFE")
    assert props["ingest:provider"] == "local"
    assert props["ingest:processing_baseline"] == props["s2:processing_baseline"] == "05.10"
    assert props["ingest:upstream_checksum"].startswith("1220")
    assert props["ingest:ingested_at"] == "2026-11-20T11:00:00Z"
    assert props["processing:level"] == "L2A"
    assert set(props["processing:software"]) == {"eo-ingest", "stactools-sentinel2"}
    assert props["proj:code"] == "EPSG:32631"

    for uri in ADDED_EXTENSIONS:
        assert uri in doc["stac_extensions"] and has_schema(uri), uri  # declared, and really validated
    assert set(ADDED_EXTENSIONS) <= set(validate_item(doc).checked)
    assert {"rel": "collection", "href": "../collection.json", "type": "application/json"} in doc["links"]
    assert_nothing_local(doc, products["l2a"])
    assert item.assets["blue"].href == local_blue  # the input item is left alone


def test_finalize_without_public_url_uses_s3_hrefs(products: dict[str, Path]) -> None:
    item, spec_ = generated(products, "l1c")
    doc, stored = finalize(item, cogs_from_rasters(item, spec_), store=PRIVATE_STORE)
    for key, asset in doc["assets"].items():
        assert asset["href"] == stored[key].href
        assert asset["href"].startswith(f"s3://eo-catalogue/ingest/sentinel-2-l1c/{item.id}/")
        assert "alternate" not in asset
    assert "ingest:processing_baseline" in doc["properties"] and doc["properties"]["processing:level"] == "L1C"


STORAGE_FIELDS = ("storage:platform", "storage:region", "storage:requester_pays", describe.ENDPOINT_FIELD)


def test_s3_hrefs_carry_the_storage_fields_a_client_needs(products: dict[str, Path]) -> None:
    item, spec_ = generated(products, "l2a")
    minio = StorageAccess(endpoint_url="https://s3.site.example.org:9000", region="eu-west-3", requester_pays=True)
    doc, _ = finalize(item, cogs_from_rasters(item, spec_), store=PRIVATE_STORE, storage=minio)
    assert len(doc["assets"]) >= 20  # every asset, COG or metadata, says where it lives
    for key, asset in doc["assets"].items():
        assert asset["href"].startswith("s3://eo-catalogue/"), key
        assert {f: asset[f] for f in STORAGE_FIELDS} == {
            "storage:platform": "OTHER",
            "storage:region": "eu-west-3",
            "storage:requester_pays": True,
            "ingest:s3_endpoint": "https://s3.site.example.org:9000",
        }, key
    assert not any(f.startswith("storage:") for f in doc["properties"])  # per asset, not item-wide
    assert doc["stac_extensions"].count(describe.STORAGE_EXT) == 1
    # declared and really checked offline: v1.0.0's schema is complete (v2.0.0's is not, module docstring)
    assert describe.STORAGE_EXT in validate_item(doc).checked

    broken = copy.deepcopy(doc)
    broken["assets"]["blue"]["storage:platform"] = "MINIO"  # not in v1.0.0's list of platforms
    with pytest.raises(InvalidStac, match="storage"):
        validate_item(broken)


def test_s3_hrefs_on_aws_name_no_endpoint(products: dict[str, Path]) -> None:
    item, spec_ = generated(products, "s1")
    aws = StorageAccess(endpoint_url=None, region="eu-central-1")
    doc, _ = finalize(item, cogs_from_rasters(item, spec_), store=PRIVATE_STORE, storage=aws)
    for key, asset in doc["assets"].items():
        assert (asset["storage:platform"], asset["storage:region"]) == ("AWS", "eu-central-1"), key
        assert asset["storage:requester_pays"] is False, key
        assert describe.ENDPOINT_FIELD not in asset, key
    assert describe.STORAGE_EXT in validate_item(doc).checked


def test_https_hrefs_carry_no_storage_fields(products: dict[str, Path]) -> None:
    item, spec_ = generated(products, "l1c")
    doc, _ = finalize(item, cogs_from_rasters(item, spec_), store=STORE, storage=STORAGE)
    for key, asset in doc["assets"].items():
        assert asset["href"].startswith(f"{PUBLIC_BASE}/"), key
        assert not any(f in asset for f in STORAGE_FIELDS), key
    assert describe.STORAGE_EXT not in doc["stac_extensions"]


def test_storage_v2_is_reported_not_checked_rather_than_crashing() -> None:
    # why items use v1.0.0: v2.0.0's schema $refs files that are not shipped
    doc = normalise_back(golden("s2-l2a-n0400"))
    doc["stac_extensions"].append("https://stac-extensions.github.io/storage/v2.0.0/schema.json")
    doc["properties"]["storage:schemes"] = {
        "main": {"type": "custom-s3", "platform": "https://s3.example.org/{bucket}", "bucket": "eo-catalogue"}
    }
    report = validate_item(doc)
    assert any(u.startswith("https://stac-extensions.github.io/storage/v2.0.0/") for u in report.not_checked)
    assert not any("storage/v2.0.0" in u for u in report.checked)


def normalise_back(doc: dict[str, Any]) -> dict[str, Any]:
    """A golden document made valid again (its placeholders replaced by real values)."""
    out: dict[str, Any] = json.loads(
        json.dumps(doc).replace("<public>/", f"{PUBLIC_BASE}/").replace("<s3>/", f"s3://{STORE.bucket}/")
    )
    out["properties"]["created"] = out["properties"]["updated"] = NOW_TEXT
    out["properties"]["processing:software"] = {name: "1.0" for name in out["properties"]["processing:software"]}
    return out


def test_finalize_drops_assets_that_were_not_stored(products: dict[str, Path]) -> None:
    item, spec_ = generated(products, "l2a")
    cogs = cogs_from_rasters(item, spec_)
    stored = store_objects(STORE, item, cogs, as_is_files(item))
    del stored["aot"], stored["inspire_metadata"], stored["wvp"]  # aot and wvp were converted, but not uploaded
    prov = provenance(item, "up")
    doc = describe.finalize_item(item, stored=stored, cogs=cogs, provenance=prov, storage=STORAGE, now=NOW)
    assert {"aot", "inspire_metadata", "wvp"}.isdisjoint(doc["assets"])
    planned = {k for k in item.assets if spec_.asset_rule(k) != "drop"}
    assert set(doc["assets"]) == planned - {"aot", "inspire_metadata", "wvp"}
    assert_nothing_local(doc, products["l2a"])
    validate_item(doc)


def test_finalize_s1_gcp_cogs_carry_their_own_grid(products: dict[str, Path]) -> None:
    item, spec_ = generated(products, "s1")
    # what stactools writes: [samples, lines] and an axis-aligned lon/lat grid the measurement does not have
    assert item.properties["proj:shape"] == [S1_SAMPLES, S1_LINES]
    assert "proj:transform" in item.properties
    cogs = cogs_from_rasters(item, spec_)
    assert {c.epsg for c in cogs.values()} == {4326}  # the GCPs' CRS: GCPs only, like real GRD measurements
    doc, _ = finalize(item, cogs)
    props = doc["properties"]
    assert "proj:shape" not in props and "proj:transform" not in props
    assert props["proj:code"] == "EPSG:4326" and props["proj:bbox"] == item.properties["proj:bbox"]
    for key in ("vv", "vh"):
        asset = doc["assets"][key]
        assert asset["proj:shape"] == [S1_LINES, S1_SAMPLES]
        assert "proj:transform" not in asset and "proj:bbox" not in asset and "proj:code" not in asset
        assert asset["raster:bands"] == [{"data_type": "uint16"}]
        assert asset["eo:bands"][0]["name"] == key.upper()
    assert "thumbnail" not in doc["assets"]  # made and stored by the pipeline (ingest.stages.preview)
    assert props["processing:level"] == "L1" and "ingest:processing_baseline" not in props
    assert describe.RASTER_EXT in doc["stac_extensions"]


def test_finalize_warped_s1_cog_is_described_by_its_own_grid(products: dict[str, Path], tmp_path: Path) -> None:
    item, spec_ = generated(products, "s1")
    cogs = cogs_from_rasters(item, spec_)
    warped = tmp_path / "vv.tif"
    transform = from_origin(500000.0, 5000000.0, 20.0, 20.0)
    with rasterio.open(warped, "w", driver="GTiff", width=50, height=40, count=1, dtype="uint16", crs="EPSG:32631",
                       transform=transform, nodata=0) as dst:  # fmt: skip
        dst.write(np.ones((1, 40, 50), dtype="uint16"))
    cogs["vv"] = CogResult("vv", warped, warped.stat().st_size, sha256(warped), "uint16", 0.0, (40, 50), 32631)
    doc, _ = finalize(item, cogs)
    vv = doc["assets"]["vv"]
    assert vv["proj:code"] == "EPSG:32631"
    assert vv["proj:shape"] == [40, 50]
    assert vv["proj:transform"] == [20.0, 0.0, 500000.0, 0.0, -20.0, 5000000.0]
    assert vv["proj:bbox"] == [500000.0, 5000000.0 - 800.0, 501000.0, 5000000.0]
    assert vv["raster:bands"] == [{"data_type": "uint16", "nodata": 0}]
    assert "proj:transform" not in doc["assets"]["vh"]  # still the GCP one
    validate_item(doc)


def test_finalize_refuses_inconsistent_inputs(products: dict[str, Path]) -> None:
    item, spec_ = generated(products, "l1c")
    cogs = cogs_from_rasters(item, spec_)
    stored = store_objects(STORE, item, cogs, as_is_files(item))
    prov = provenance(item, "up")

    other = dict(stored, blue=dataclasses.replace(stored["blue"], checksum="1220" + "0" * 64))
    with pytest.raises(IngestError, match="stored object for blue is not the converted COG"):
        describe.finalize_item(item, stored=other, cogs=cogs, provenance=prov, storage=STORAGE, now=NOW)

    with pytest.raises(IngestError, match="assets the item does not have: B99"):
        describe.finalize_item(
            item, stored={**stored, "B99": stored["blue"]}, cogs=cogs, provenance=prov, storage=STORAGE, now=NOW
        )

    only_metadata = {k: v for k, v in stored.items() if k not in cogs}
    with pytest.raises(IngestError, match="no data asset"):
        describe.finalize_item(item, stored=only_metadata, cogs={}, provenance=prov, storage=STORAGE, now=NOW)

    with pytest.raises(ValueError, match="timezone-aware"):
        naive = NOW.replace(tzinfo=None)
        describe.finalize_item(item, stored=stored, cogs=cogs, provenance=prov, storage=STORAGE, now=naive)


def test_finalize_validates_the_result_and_names_the_item(products: dict[str, Path]) -> None:
    item, spec_ = generated(products, "l1c")
    cogs = cogs_from_rasters(item, spec_)
    cogs["blue"] = dataclasses.replace(cogs["blue"], dtype="uint17")  # not a raster:bands data type
    with pytest.raises(InvalidStac) as err:
        finalize(item, cogs)
    assert item.id in str(err.value) and "raster" in str(err.value)


# --------------------------------------------------------------------------- build_item refusals


@pytest.mark.parametrize(
    "name,relative",
    [("s2-l2a-n0214", "MTD_MSIL2A.xml"), ("s2-l1c-n0301", "GRANULE/*/MTD_TL.xml"), ("s2-l1c-n0301", "manifest.safe"),
     ("s1-grd", "manifest.safe"), ("s1-grd", "annotation/s1a-iw-grd-vh-*.xml")],
)  # fmt: skip
def test_malformed_metadata_is_an_invalid_product(tmp_path: Path, name: str, relative: str) -> None:
    source, collection = REAL[name]
    safe = tmp_path / source.name
    shutil.copytree(source, safe)
    (target,) = safe.glob(relative)
    data = target.read_bytes()
    target.write_bytes(data[: len(data) // 2])  # a truncated download that slipped through
    with pytest.raises(InvalidProduct) as err:
        describe.build_item(safe, spec(collection))
    assert str(err.value).startswith(f"{safe.name}: cannot describe: ")
    assert err.value.exit_code == 65 and not err.value.retryable


def test_hrefs_leading_out_of_the_product_are_refused(tmp_path: Path) -> None:
    source, collection = REAL["s2-l2a-n0214"]
    safe = tmp_path / source.name
    shutil.copytree(source, safe)
    mtd = safe / "MTD_MSIL2A.xml"
    text = mtd.read_text(encoding="utf-8")
    assert "<IMAGE_FILE>GRANULE/" in text
    mtd.write_text(text.replace("<IMAGE_FILE>GRANULE/", "<IMAGE_FILE>../../GRANULE/", 1), encoding="utf-8")
    with pytest.raises(InvalidProduct, match=r"points outside the product for blue$"):
        describe.build_item(safe, spec(collection))


def test_product_of_another_kind_is_refused(tmp_path: Path) -> None:
    l1c, _ = REAL["s2-l1c-n0301"]
    with pytest.raises(InvalidProduct, match="a Sentinel-2 L1C product, but collection sentinel-2-l2a holds"):
        describe.build_item(l1c, spec("sentinel-2-l2a"))
    # a folder named like an L2A whose metadata says L1C
    disguised = tmp_path / l1c.name.replace("MSIL1C", "MSIL2A")
    shutil.copytree(l1c, disguised)
    with pytest.raises(InvalidProduct, match="metadata says L1C, expected a Sentinel-2 L2A product"):
        describe.build_item(disguised, spec("sentinel-2-l2a"))


def test_not_a_safe_folder_or_unknown_collection(tmp_path: Path) -> None:
    unsafe = tmp_path / "S2A_MSIL2A_20240105T103421_N0510_R051_T31TDH_20240105T130934"
    unsafe.mkdir()
    with pytest.raises(InvalidProduct, match=r"not an unpacked \.SAFE folder"):
        describe.build_item(unsafe, spec("sentinel-2-l2a"))
    sral = spec(L2A).model_copy(update={"id": "sentinel-3-sral", "source": Source(eodag_collection="S3_SRA")})
    with pytest.raises(ConfigError, match="collection sentinel-3-sral: cannot describe"):
        describe.build_item(tmp_path / "S3A_SR_1_SRA____20211021T073827.SEN3", sral)


def test_real_items_as_stactools_makes_them() -> None:
    for name, (safe, collection) in REAL.items():
        item = real_item(name)
        assert item.id == REAL_IDS[name]
        assert item.collection_id == collection
        for key, asset in item.assets.items():
            assert Path(asset.href).is_absolute() and Path(asset.href).is_relative_to(safe), (name, key)
