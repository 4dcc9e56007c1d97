"""The pure part of the upload stage: object names, planning, refusals. No store is contacted."""

from __future__ import annotations

import hashlib
from pathlib import Path

import pytest

from ingest.adapters.s3 import ObjectStore
from ingest.errors import IngestError
from ingest.stages.artifacts import CogResult, MetadataFile
from ingest.stages.upload import COG_MEDIA_TYPE, PlannedObject, cog_name, metadata_name, plan_upload, upload_product


def _cog(path: Path, asset_key: str, data: bytes = b"II*\x00cog") -> CogResult:
    path.write_bytes(data)
    return CogResult(asset_key, path, len(data), hashlib.sha256(data).hexdigest(), "uint16", 0, (1, 1), 32633)


def test_names() -> None:
    assert cog_name("B04_10m") == "B04_10m.tif"
    assert metadata_name("safe_manifest", Path("/x/P.SAFE/manifest.safe")) == "metadata/safe_manifest.safe"
    assert metadata_name("granule_metadata", Path("/x/GRANULE/L2A_T/MTD_TL.XML")) == "metadata/granule_metadata.xml"
    assert metadata_name("schema-product-vv", Path("s1a-iw-grd-vv-001.xml")) == "metadata/schema-product-vv.xml"


@pytest.mark.parametrize("bad", ["", "..", ".hidden", "a/b", "../x", "B04 10m", "b\\04"])
def test_unsafe_asset_keys_are_refused(bad: str) -> None:
    with pytest.raises(IngestError, match="refusing asset key"):
        cog_name(bad)
    with pytest.raises(IngestError, match="refusing asset key"):
        metadata_name(bad, Path("m.xml"))


def test_plan_keeps_order_known_digests_and_media_types(tmp_path: Path) -> None:
    b04, scl = _cog(tmp_path / "b04.tif", "B04_10m"), _cog(tmp_path / "scl.tif", "scl_20m", b"other")
    mtd = MetadataFile("product_metadata", tmp_path / "MTD_MSIL2A.xml", "application/xml")
    plan = plan_upload([b04, scl], [mtd])
    assert plan == [
        PlannedObject("B04_10m", b04.path, "B04_10m.tif", COG_MEDIA_TYPE, b04.sha256, b04.size),
        PlannedObject("scl_20m", scl.path, "scl_20m.tif", COG_MEDIA_TYPE, scl.sha256, scl.size),
        PlannedObject("product_metadata", mtd.path, "metadata/product_metadata.xml", "application/xml", None, None),
    ]


def test_duplicate_asset_keys_are_refused(tmp_path: Path) -> None:
    cog = _cog(tmp_path / "a.tif", "thumbnail")
    with pytest.raises(IngestError, match="'thumbnail' is given twice"):
        plan_upload([cog], [MetadataFile("thumbnail", tmp_path / "t.xml", "application/xml")])
    with pytest.raises(IngestError, match="given twice"):
        plan_upload([cog, cog], [])


def test_bad_ids_and_changed_files_fail_before_any_request(tmp_path: Path) -> None:
    # an endpoint where nothing listens: reaching the network would fail with StorageUnavailable instead
    store = ObjectStore(bucket="b", prefix="ingest", endpoint_url="http://127.0.0.1:9")
    cog = _cog(tmp_path / "a.tif", "B04_10m")
    with pytest.raises(IngestError, match="refusing item id"):
        upload_product(store, collection="c", item_id="../other", cogs=[cog], metadata=[])
    with pytest.raises(IngestError, match="refusing collection id"):
        upload_product(store, collection="", item_id="i", cogs=[cog], metadata=[])

    cog.path.write_bytes(b"rewritten after conversion")
    with pytest.raises(IngestError, match="changed since"):
        upload_product(store, collection="c", item_id="i", cogs=[cog], metadata=[])
