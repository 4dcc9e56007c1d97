"""Tests for ingest.devtools.complete: the real SAFE fixtures completed into ingestible products."""

from __future__ import annotations

import hashlib
import json
import math
import os
import xml.etree.ElementTree as ET
from collections.abc import Callable
from pathlib import Path

import pytest
import rasterio
import shapely
from pyproj import Transformer
from shapely.geometry import box, shape

from ingest.devtools.complete import complete_real_safe
from ingest.stages.manifest import manifest_entries, verify_manifest
from tests.conftest import FIXTURES, REAL_S1_GRD, REAL_S2_L1C, REAL_S2_L2A_N0214, REAL_S2_L2A_N0400

S2_L1C, S2_L2A_JP2, S2_L2A_TIF, S1_GRD = REAL_S2_L1C, REAL_S2_L2A_N0214, REAL_S2_L2A_N0400, REAL_S1_GRD
S2_PRODUCTS = [S2_L1C, S2_L2A_JP2, S2_L2A_TIF]
ALL_PRODUCTS = [*S2_PRODUCTS, S1_GRD]
SIZE = 64


def short(path: Path) -> str:
    return {S2_L1C: "s2-l1c", S2_L2A_JP2: "s2-l2a-jp2", S2_L2A_TIF: "s2-l2a-geotiff", S1_GRD: "s1-grd"}[path]


CompleteFn = Callable[[Path], Path]


@pytest.fixture(scope="module")
def completed(tmp_path_factory: pytest.TempPathFactory) -> CompleteFn:
    """Each product completed once for the module (seed 0)."""
    cache: dict[Path, Path] = {}

    def get(src: Path) -> Path:
        if src not in cache:
            cache[src] = complete_real_safe(src, tmp_path_factory.mktemp("completed"), size=SIZE, seed=0)
        return cache[src]

    return get


def files_in(safe: Path) -> dict[str, Path]:
    return {p.relative_to(safe).as_posix(): p for p in sorted(safe.rglob("*")) if p.is_file()}


def digests(safe: Path) -> dict[str, str]:
    return {rel: hashlib.md5(p.read_bytes()).hexdigest() for rel, p in files_in(safe).items()}


def local(tag: str) -> str:
    return tag.rsplit("}", 1)[-1]


def product_metadata(safe: Path) -> ET.Element:
    path = next(p for p in (safe / "MTD_MSIL1C.xml", safe / "MTD_MSIL2A.xml") if p.is_file())
    return ET.parse(path).getroot()


def find_text(root: ET.Element, name: str) -> str:
    return next(el.text or "" for el in root.iter() if local(el.tag) == name).strip()


# --------------------------------------------------------------------------- every product


@pytest.mark.parametrize("src", ALL_PRODUCTS, ids=short)
def test_completed_product_verifies_against_its_manifest(completed: CompleteFn, src: Path) -> None:
    safe = completed(src)
    checked, problems = verify_manifest(safe)
    assert problems == []
    listed = [entry.path for entry in manifest_entries(safe)]
    assert checked == len(listed) > 0  # every listed file carries a checksum that was verified
    # ... and the manifest lists exactly what the folder holds (no side-car files, nothing unlisted)
    assert sorted(listed) == sorted(rel for rel in files_in(safe) if rel != "manifest.safe")


@pytest.mark.parametrize("src", ALL_PRODUCTS, ids=short)
def test_real_metadata_stays_byte_identical(completed: CompleteFn, src: Path) -> None:
    safe = completed(src)
    out = files_in(safe)
    kept = {
        rel: path
        for rel, path in files_in(src).items()
        if rel not in ("expected_output.json", "manifest.safe") and path.stat().st_size > 0
    }
    assert kept
    for rel, path in kept.items():
        assert out[rel].read_bytes() == path.read_bytes(), rel
    assert "expected_output.json" not in out  # test data beside the fixture, not part of the product


@pytest.mark.parametrize("src", ALL_PRODUCTS, ids=short)
def test_manifest_drops_only_what_is_missing_and_leaves_no_dangling_pointer(completed: CompleteFn, src: Path) -> None:
    safe = completed(src)
    before = {entry.path: entry for entry in manifest_entries(src)}
    after = {entry.path: entry for entry in manifest_entries(safe)}
    assert set(after) <= set(before)
    for rel in set(before) - set(after):
        assert not (safe / rel).exists(), rel
    for rel, entry in after.items():  # the real algorithm is kept (SHA3-256 for the 03.01 L1C)
        assert entry.checksum_name == before[rel].checksum_name, rel
        assert entry.object_id == before[rel].object_id, rel
    root = ET.parse(safe / "manifest.safe").getroot()
    objects = {el.get("ID") for el in root.iter() if local(el.tag) == "dataObject"}
    pointers = {el.get("dataObjectID") for el in root.iter() if local(el.tag) == "dataObjectPointer"}
    assert pointers <= objects
    # the XML declaration is the real one
    assert (safe / "manifest.safe").read_bytes().split(b"\n")[0] == (src / "manifest.safe").read_bytes().split(b"\n")[0]


# --------------------------------------------------------------------------- Sentinel-2


def tile_geometry(safe: Path, granule: str) -> tuple[int, float, float]:
    root = ET.parse(safe / granule / "MTD_TL.xml").getroot()
    epsg = int(find_text(root, "HORIZONTAL_CS_CODE").split(":")[1])
    return epsg, float(find_text(root, "ULX")), float(find_text(root, "ULY"))


def expected_pixels(rel: str) -> tuple[int, str, int]:
    """(count, dtype, resolution) that a real product has for this image file."""
    stem = rel.rsplit("/", 1)[-1].rsplit(".", 1)[0]
    parts = stem.split("_")
    band = parts[2]
    if band == "PVI":
        return 3, "uint8", 320
    if len(parts) > 3:
        resolution = int(parts[3].removesuffix("m"))
    else:
        resolution = {"B01": 60, "B09": 60, "B10": 60, "B05": 20, "B06": 20, "B07": 20, "B8A": 20, "B11": 20,
                      "B12": 20}.get(band, 10)  # fmt: skip
    count = 3 if band == "TCI" else 1
    return count, "uint8" if band in ("TCI", "SCL") else "uint16", resolution


@pytest.mark.parametrize("src", S2_PRODUCTS, ids=short)
def test_s2_image_files_are_rasters_on_the_tile_grid(completed: CompleteFn, src: Path) -> None:
    safe = completed(src)
    mtd = product_metadata(safe)
    granule_el = next(el for el in mtd.iter() if local(el.tag) == "Granule")
    geotiff = granule_el.get("imageFormat") == "GeoTIFF"
    rels = [f"{el.text}{'.tif' if geotiff else '.jp2'}" for el in mtd.iter() if local(el.tag) == "IMAGE_FILE"]
    assert len(rels) > 10
    granule = "/".join(rels[0].split("/")[:2])
    rels.append(find_text(ET.parse(safe / granule / "MTD_TL.xml").getroot(), "PVI_FILENAME"))
    epsg, ulx, uly = tile_geometry(safe, granule)
    for rel in rels:
        count, dtype, resolution = expected_pixels(rel)
        n = max(1, math.ceil(SIZE * 10 / resolution))
        with rasterio.open(safe / rel) as ds:
            assert ds.driver == ("GTiff" if geotiff else "JP2OpenJPEG"), rel
            assert ds.crs.to_epsg() == epsg, rel
            assert (ds.width, ds.height, ds.count, ds.dtypes[0]) == (n, n, count, dtype), rel
            pixel = 109_800.0 / n
            for got, want in zip(ds.bounds, (ulx, uly - 109_800.0, ulx + 109_800.0, uly), strict=True):
                assert abs(got - want) <= pixel, rel
            ds.read()  # decodes


@pytest.mark.parametrize("src", S2_PRODUCTS, ids=short)
def test_s2_rasters_hold_data_only_inside_the_real_footprint(completed: CompleteFn, src: Path) -> None:
    expected = json.loads((src / "expected_output.json").read_text())
    safe = completed(src)
    epsg = expected["properties"]["proj:code"].split(":")[1]
    to_utm = Transformer.from_crs(4326, int(epsg), always_xy=True)
    footprint = shapely.transform(shape(expected["geometry"]), to_utm.transform, interleaved=False)
    _, ulx, uly = tile_geometry(safe, "/".join(expected["assets"]["blue"]["href"].lstrip("./").split("/")[:2]))
    coverage = footprint.intersection(box(ulx, uly - 109_800, ulx + 109_800, uly)).area / 109_800**2
    with rasterio.open(safe / expected["assets"]["blue"]["href"]) as ds:
        valid = float((ds.read(1) > 0).mean())
    assert abs(valid - coverage) < 0.05  # e.g. the N0400 product covers only a 6 km strip of its tile


@pytest.mark.parametrize("src", S2_PRODUCTS, ids=short)
def test_stactools_s2_item_has_the_fixture_assets(completed: CompleteFn, src: Path) -> None:
    from stactools.sentinel2.stac import create_item

    expected = json.loads((src / "expected_output.json").read_text())
    item = create_item(str(completed(src)))
    assert item.id == expected["id"]
    assert set(item.assets) == set(expected["assets"])
    missing = [key for key, asset in item.assets.items() if not os.path.isfile(asset.href)]
    assert missing == []  # every asset the pipeline will convert or upload is there


def test_s2_product_is_named_after_its_product_uri(completed: CompleteFn) -> None:
    safe = completed(S2_L2A_JP2)
    assert safe.name == find_text(product_metadata(S2_L2A_JP2), "PRODUCT_URI")
    assert not safe.name.startswith("esa_")


def test_missing_metadata_assets_get_labelled_stand_ins(completed: CompleteFn) -> None:
    safe = completed(S2_L1C)
    for rel in ("INSPIRE.xml", "DATASTRIP/DS_VGS4_20210908T070248_S20210908T043714/MTD_DS.xml"):
        assert not (S2_L1C / rel).exists()
        text = (safe / rel).read_text()
        assert "Stand-in written by ingest.devtools.complete" in text
    assert "S2A_OPER_MSI_L1C_DS_VGS4_20210908T070248_S20210908T043714_N03.01" in text


# --------------------------------------------------------------------------- Sentinel-1


@pytest.mark.filterwarnings("ignore::rasterio.errors.NotGeoreferencedWarning")  # the quick-look, as real ones
def test_s1_measurements_carry_the_annotation_gcps(completed: CompleteFn) -> None:
    safe = completed(S1_GRD)
    measurements = sorted((safe / "measurement").glob("*.tiff"))
    assert len(measurements) == 2
    for path in measurements:
        annotation = ET.parse(safe / "annotation" / f"{path.stem}.xml").getroot()
        points = annotation.findall("geolocationGrid/geolocationGridPointList/geolocationGridPoint")
        with rasterio.open(path) as ds:
            gcps, crs = ds.gcps
            assert crs is not None and crs.to_epsg() == 4326
            assert len(gcps) == len(points) > 0
            first = points[0]
            assert (gcps[0].x, gcps[0].y) == (
                float(first.findtext("longitude", "")),
                float(first.findtext("latitude", "")),
            )
            assert (ds.count, ds.dtypes[0], max(ds.width, ds.height)) == (1, "uint16", SIZE)
            # GCP rows/cols scaled with the image: the last grid point sits at the far corner
            assert gcps[-1].row == pytest.approx(ds.height, abs=1) and gcps[-1].col == pytest.approx(ds.width, abs=1)
            assert ds.read(1).max() > 0
    with rasterio.open(safe / "preview" / "quick-look.png") as ql:
        assert (ql.count, ql.dtypes[0]) == (3, "uint8")


def test_stactools_s1_item_links_only_files_that_exist(completed: CompleteFn) -> None:
    from stactools.sentinel1.formats import Format
    from stactools.sentinel1.grd.stac import create_item

    item = create_item(str(completed(S1_GRD)), archive_format=Format.SAFE)
    assert item.id == "S1A_IW_GRDH_1SDV_20210809T173953_20210809T174018_039156_049F13"
    assert set(item.assets) == {
        "vv", "vh", "safe-manifest", "thumbnail", "schema-product-vv", "schema-product-vh",
        "schema-calibration-vv", "schema-calibration-vh", "schema-noise-vv", "schema-noise-vh",
    }  # fmt: skip
    assert [key for key, asset in item.assets.items() if not os.path.isfile(asset.href)] == []
    assert item.properties["s1:shape"] == [26144, 16676]  # from the real annotation, untouched


# --------------------------------------------------------------------------- determinism and errors


@pytest.mark.parametrize("src", [S2_L2A_JP2, S2_L2A_TIF, S1_GRD], ids=short)
def test_same_seed_gives_the_same_bytes(completed: CompleteFn, src: Path, tmp_path: Path) -> None:
    first = completed(src)
    again = complete_real_safe(src, tmp_path / "again", size=SIZE, seed=0)
    assert digests(again) == digests(first)
    other = complete_real_safe(src, tmp_path / "other", size=SIZE, seed=1)
    raster = next(rel for rel in digests(first) if rel.endswith(("B02_10m.jp2", "B02_10m.tif", "-001.tiff")))
    assert digests(other)[raster] != digests(first)[raster]


def test_refuses_to_overwrite_and_rejects_what_it_cannot_complete(completed: CompleteFn, tmp_path: Path) -> None:
    safe = completed(S1_GRD)
    with pytest.raises(FileExistsError):
        complete_real_safe(S1_GRD, safe.parent)
    eodag_product = next((FIXTURES / "sentinel2" / "eodag_product").iterdir())  # no manifest.safe
    with pytest.raises(ValueError, match="manifest"):
        complete_real_safe(eodag_product, tmp_path)
    with pytest.raises(ValueError, match="size"):
        complete_real_safe(S1_GRD, tmp_path, size=2)
    assert list(tmp_path.iterdir()) == []  # nothing half-written left behind
