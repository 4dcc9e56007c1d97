"""Sentinel-3 products through the describe stage: every real SEN3 fixture gives a valid item of netCDF
files kept as they are; hostile or mismatched products are refused with the product and the cause."""

from __future__ import annotations

import shutil
from datetime import UTC, datetime
from pathlib import Path

import pytest

from ingest.collections import get
from ingest.devtools.complete import complete_real_safe
from ingest.errors import InvalidProduct
from ingest.stages import describe, kinds
from ingest.stages.acquire import verify_unpacked
from ingest.stages.artifacts import MetadataFile, Provenance, StorageAccess, StoredObject
from ingest.stages.checksums import file_digest, to_multihash
from ingest.stages.manifest import ManifestError, parse_manifest
from tests.conftest import REAL_S3

ROOT = Path(__file__).resolve().parents[2]
COLLECTIONS = ROOT / "collections"
NOW = datetime(2026, 4, 1, 12, tzinfo=UTC)
IDS = [p.name[:16] for p in REAL_S3]


def _kind(folder: Path) -> kinds.Kind:
    kind = kinds.of_name(folder.name)
    assert kind is not None, folder.name
    return kind


def _completed(src: Path, tmp_path: Path) -> Path:
    return complete_real_safe(src, tmp_path / "completed")


def _stored(item_id: str, files: list[MetadataFile]) -> dict[str, StoredObject]:
    out = {}
    for f in files:
        key = f"ingest/c/{item_id}/{f.path.name}"
        digest = to_multihash("sha256", file_digest(f.path, "sha256"))
        out[f.asset_key] = StoredObject(key, f"s3://b/{key}", None, f.path.stat().st_size, digest, f.media_type)
    return out


def test_every_real_sentinel3_product_has_a_collection_of_its_kind() -> None:
    assert len(REAL_S3) == 8
    held = {_kind(p).collection for p in REAL_S3}
    assert held == {k.collection for k in kinds.KINDS if k.mission == "s3"}
    for collection in held:
        spec = get(COLLECTIONS, collection)
        assert kinds.of_spec(spec) == next(k for k in kinds.KINDS if k.collection == collection)


@pytest.mark.parametrize("src", REAL_S3, ids=IDS)
def test_a_real_sentinel3_product_becomes_a_valid_item_of_kept_netcdf(src: Path, tmp_path: Path) -> None:
    kind = _kind(src)
    spec = get(COLLECTIONS, kind.collection)
    sen3 = _completed(src, tmp_path)
    assert verify_unpacked("p", sen3) == len(parse_manifest((sen3 / "xfdumanifest.xml").read_bytes(), "m"))

    item = describe.build_item(sen3, spec)
    assert item.properties["s3:product_type"] == kind.expected
    assert item.properties["processing:level"] == kind.level
    assert item.properties["platform"] in {"sentinel-3a", "sentinel-3b"}  # lower case, as S1 and S2
    assert item.properties["constellation"] == "sentinel-3"
    # every file of the product, not only those stactools-sentinel3 lists (OLCI L1: no geolocation)
    assert {Path(a.href).name for a in item.assets.values()} == {p.name for p in sen3.iterdir()}
    if kind.expected.startswith("OL_1_"):
        assert {"geo-coordinates", "tie-geo-coordinates", "quality-flags"} <= set(item.assets)
    assert describe.raster_sources(item, spec) == []  # nothing converted
    files = describe.metadata_files(item, spec)
    assert {f.asset_key for f in files} == set(item.assets)  # every asset kept
    data = [f for f in files if "data" in (item.assets[f.asset_key].roles or [])]
    assert data and {f.media_type for f in data} == {kinds.NETCDF_MEDIA_TYPE}
    assert set(item.assets) <= set(spec.stac.item_assets)  # the collection advertises what items hold

    doc = describe.finalize_item(
        item,
        stored=_stored(item.id, files),
        cogs={},
        provenance=Provenance("u-1", "local", None, NOW),
        storage=StorageAccess("http://s3.example", "us-east-1"),
        now=NOW,
    )
    assert doc["collection"] == spec.id
    for key, asset in doc["assets"].items():
        assert asset["href"].startswith("s3://b/"), key
        path = sen3 / Path(item.assets[key].href).name
        assert asset["file:size"] == path.stat().st_size
        assert asset["file:checksum"] == to_multihash("sha256", file_digest(path, "sha256"))


def test_a_netcdf_file_that_is_not_netcdf_is_refused_by_name(tmp_path: Path) -> None:
    src = next(p for p in REAL_S3 if "_OL_1_EFR_" in p.name)
    sen3 = _completed(src, tmp_path)
    (sen3 / "Oa07_radiance.nc").write_bytes(b"<html>not a netCDF</html>")
    with pytest.raises(InvalidProduct, match=r"not netCDF .*Oa07_radiance\.nc"):
        describe.build_item(sen3, get(COLLECTIONS, "sentinel-3-olci-l1-efr"))


def test_netcdf_signatures() -> None:
    assert all(kinds.is_netcdf(p) for p in REAL_S3[0].glob("*.nc"))


@pytest.mark.parametrize(
    "head", [b"CDF\x01rest", b"CDF\x02rest", b"\x89HDF\r\n\x1a\n", b"\0" * 512 + b"\x89HDF\r\n\x1a\n"]
)
def test_netcdf_classic_and_hdf5_signatures_are_recognised(head: bytes, tmp_path: Path) -> None:
    (tmp_path / "f.nc").write_bytes(head)
    assert kinds.is_netcdf(tmp_path / "f.nc")


@pytest.mark.parametrize("head", [b"", b"CDF\x03", b"PK\x03\x04", b"\0" * 100 + b"\x89HDF\r\n\x1a\n"])
def test_other_files_are_not_netcdf(head: bytes, tmp_path: Path) -> None:
    (tmp_path / "f.nc").write_bytes(head)
    assert not kinds.is_netcdf(tmp_path / "f.nc")


def test_a_manifest_md5_that_disagrees_names_the_file(tmp_path: Path) -> None:
    src = next(p for p in REAL_S3 if "_SL_2_LST_" in p.name or "_OL_1_EFR_" in p.name)
    sen3 = _completed(src, tmp_path)
    victim = sorted(sen3.glob("*.nc"))[0]
    data = bytearray(victim.read_bytes())
    data[-1] ^= 0xFF  # same size, other bytes
    victim.write_bytes(bytes(data))
    with pytest.raises(InvalidProduct, match=rf"disagree with xfdumanifest\.xml: {victim.name}: MD5 mismatch"):
        verify_unpacked("p", sen3)


@pytest.mark.parametrize(
    "prolog",
    [
        '<!DOCTYPE xfdu:XFDU [<!ENTITY e SYSTEM "file:///etc/passwd">]>',
        '<!DOCTYPE xfdu:XFDU [<!ENTITY a "aaaa"><!ENTITY b "&a;&a;&a;&a;">]>',
    ],
    ids=["external entity", "entity expansion"],
)
def test_an_xfdumanifest_with_a_dtd_or_entities_is_refused(prolog: str, tmp_path: Path) -> None:
    src = REAL_S3[0]
    sen3 = _completed(src, tmp_path)
    manifest = sen3 / "xfdumanifest.xml"
    text = manifest.read_text()
    body = text.split("?>", 1)[1] if text.startswith("<?xml") else text
    manifest.write_text('<?xml version="1.0" encoding="UTF-8"?>\n' + prolog + body)
    with pytest.raises(ManifestError, match="DTD"):
        parse_manifest(manifest.read_bytes(), manifest.name)
    with pytest.raises(InvalidProduct, match="manifest"):
        verify_unpacked("p", sen3)


def test_a_sentinel3_product_in_a_collection_of_another_kind_is_refused(tmp_path: Path) -> None:
    efr = _completed(next(p for p in REAL_S3 if "_OL_1_EFR_" in p.name), tmp_path)
    expected = "a Sentinel-3 OLCI L1 EFR product, but collection sentinel-3-slstr-l2-lst"
    with pytest.raises(InvalidProduct, match=expected):
        describe.build_item(efr, get(COLLECTIONS, "sentinel-3-slstr-l2-lst"))


def test_a_sen3_folder_whose_manifest_says_another_product_type_is_refused(tmp_path: Path) -> None:
    efr = _completed(next(p for p in REAL_S3 if "_OL_1_EFR_" in p.name), tmp_path)
    renamed = efr.with_name(efr.name.replace("_OL_1_EFR_", "_OL_1_ERR_"))
    shutil.move(efr, renamed)
    with pytest.raises(InvalidProduct, match="its metadata says OL_1_EFR___, expected a Sentinel-3 OLCI L1 ERR"):
        describe.build_item(renamed, get(COLLECTIONS, "sentinel-3-olci-l1-err"))


def test_a_sentinel3_product_must_be_a_sen3_folder(tmp_path: Path) -> None:
    efr = _completed(next(p for p in REAL_S3 if "_OL_1_EFR_" in p.name), tmp_path)
    safe = efr.with_suffix(".SAFE")
    shutil.move(efr, safe)
    with pytest.raises(InvalidProduct, match=r"not an unpacked \.SEN3 folder"):
        describe.build_item(safe, get(COLLECTIONS, "sentinel-3-olci-l1-efr"))
