"""Tests for ingest.devtools.generator: synthetic Sentinel products that stactools accepts."""

from __future__ import annotations

import hashlib
import json
import struct
import xml.etree.ElementTree as ET
import zipfile
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import rasterio
from rasterio.crs import CRS
from shapely.geometry import Polygon, shape

from ingest.devtools import generator as gen
from ingest.stages.manifest import manifest_checksums, manifest_entries, verify_manifest
from tests.conftest import FIXTURES, REAL_S1_GRD, REAL_S2, REAL_S2_L1C, REAL_S2_L2A_N0214, REAL_S2_L2A_N0400

S2_L1C_FIXTURE, S2_L2A_JP2_FIXTURE, S2_L2A_N0400_FIXTURE = REAL_S2_L1C, REAL_S2_L2A_N0214, REAL_S2_L2A_N0400
S1_FIXTURE = REAL_S1_GRD
B01_FIXTURE = (
    FIXTURES / "sentinel2/eodag_product/S2A_MSIL1C_20180101T105441_N0206_R051_T31TDH_20180101T124911"
    "/GRANULE/L1C_T31TDH_A013204_20180101T105435/IMG_DATA/T31TDH_20180101T105441_B01.jp2"
)

SENSING = datetime(2024, 1, 5, 10, 34, 21, 24000, tzinfo=UTC)
S1_SENSING = datetime(2024, 1, 5, 17, 39, 53, 153776, tzinfo=UTC)
S1_LINES, S1_SAMPLES = 130, 170


def expected_item(safe: Path) -> dict[str, Any]:
    data: dict[str, Any] = json.loads((safe / "expected_output.json").read_text())
    return data


def md5(path: Path) -> str:
    return hashlib.md5(path.read_bytes()).hexdigest()


def files_in(safe: Path) -> set[str]:
    return {p.relative_to(safe).as_posix() for p in safe.rglob("*") if p.is_file()}


# --------------------------------------------------------------------------- generated products


@pytest.fixture(scope="module")
def products(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    out = tmp_path_factory.mktemp("products")
    return {
        "l1c": gen.generate_s2(out, level="L1C", sensing=SENSING, size=60, seed=3),
        "l2a": gen.generate_s2(out, level="L2A", sensing=SENSING, size=120, seed=5),
        "l2a_0214": gen.generate_s2(
            out,
            level="L2A",
            tile="22HBD",
            sensing=SENSING,
            satellite="S2B",
            relative_orbit=81,
            baseline="02.14",
            size=60,
        ),
        "s1": gen.generate_s1_grd(out, sensing=S1_SENSING, lines=S1_LINES, samples=S1_SAMPLES, seed=2),
    }


def s2_item(safe: Path) -> Any:
    from stactools.sentinel2.stac import create_item

    return create_item(str(safe))


def s1_item(safe: Path) -> Any:
    from stactools.sentinel1.formats import Format
    from stactools.sentinel1.grd.stac import create_item

    return create_item(str(safe), archive_format=Format.SAFE)


# --------------------------------------------------------------------------- S2 metadata + stactools


@pytest.mark.parametrize(
    "tile,epsg,ulx,uly",
    [("31TDH", 32631, 399960, 4800000), ("T46RER", 32646, 499980, 3100020), ("22HBD", 32722, 199980, 5900020),
     ("33XWJ", 32633, 499980, 8900040)],
)  # fmt: skip
def test_s2_tile_grid_matches_real_tiles(tile: str, epsg: int, ulx: float, uly: float) -> None:
    # the ULX/ULY of the real products in the fixtures (MTD_TL.xml)
    grid = gen.s2_tile_grid(tile)
    assert (grid.epsg, grid.ulx, grid.uly) == (epsg, ulx, uly)


def test_s2_tile_grid_agrees_with_fixture_metadata() -> None:
    for mtd in [
        *REAL_S2.glob("*/GRANULE/*/MTD_TL.xml"),
        *FIXTURES.glob("sentinel2/eodag_product/*/GRANULE/*/MTD_TL.xml"),
    ]:
        root = ET.parse(mtd).getroot()
        tile = root.findtext(".//TILE_ID", "").split("_T")[-1][:5]
        grid = gen.s2_tile_grid(tile)
        assert f"EPSG:{grid.epsg}" == root.findtext(".//HORIZONTAL_CS_CODE")
        assert (grid.ulx, grid.uly) == (float(root.findtext(".//ULX", "")), float(root.findtext(".//ULY", ""))), tile


@pytest.mark.parametrize("bad", ["31TDI", "31IDH", "99TDH", "31TZH", "hello"])
def test_s2_tile_grid_rejects_bad_ids(bad: str) -> None:
    with pytest.raises(ValueError):
        gen.s2_tile_grid(bad)


def test_s2_l1c_accepted_by_stactools(products: dict[str, Path]) -> None:
    item = s2_item(products["l1c"])
    assert item.id == "S2A_T31TDH_20240105T103421_L1C"
    assert item.datetime == SENSING
    assert item.properties["proj:code"] == "EPSG:32631"
    assert item.properties["sat:relative_orbit"] == 51
    assert item.properties["s2:processing_baseline"] == "05.10"
    expected = expected_item(S2_L1C_FIXTURE)
    assert set(item.assets) == set(expected["assets"])
    assert set(item.stac_extensions) == set(expected["stac_extensions"])


def test_s2_l2a_accepted_by_stactools(products: dict[str, Path]) -> None:
    item = s2_item(products["l2a"])
    assert item.id == "S2A_T31TDH_20240105T103421_L2A"
    assert item.datetime == SENSING
    assert item.properties["proj:code"] == "EPSG:32631"
    reference = expected_item(S2_L2A_JP2_FIXTURE)  # the L2A JPEG 2000 fixture (baseline 02.14)
    assert set(item.stac_extensions) == set(reference["stac_extensions"])
    # from baseline 04.00 on, real L2A products also carry B01 at 20 m (see the N04.00 fixture)
    assert set(item.assets) == set(reference["assets"]) | {"coastal_20m"}
    assert set(item.assets) == set(expected_item(S2_L2A_N0400_FIXTURE)["assets"])
    assert item.assets["visual"].media_type == reference["assets"]["visual"]["type"]
    assert item.assets["scl"].extra_fields["raster:bands"][0]["data_type"] == "uint8"


def test_s2_l2a_baseline_0214_matches_fixture_exactly(products: dict[str, Path]) -> None:
    item = s2_item(products["l2a_0214"])
    reference = expected_item(S2_L2A_JP2_FIXTURE)
    assert item.id == "S2B_T22HBD_20240105T103421_L2A"
    assert item.properties["proj:code"] == reference["properties"]["proj:code"] == "EPSG:32722"
    assert set(item.assets) == set(reference["assets"])
    assert set(item.stac_extensions) == set(reference["stac_extensions"])
    # before 04.00 there is no BOA offset: stactools then reports offset 0
    assert item.assets["blue"].extra_fields["raster:bands"][0]["offset"] == 0


@pytest.mark.parametrize("key", ["l1c", "l2a"])
def test_s2_geometry_and_asset_hrefs(products: dict[str, Path], key: str) -> None:
    safe = products[key]
    item = s2_item(safe)
    size = 60 if key == "l1c" else 120
    expected = Polygon(gen.s2_footprint("31TDH", size))
    geometry = shape(item.geometry)
    # stactools rounds to 1e-6 degrees (~0.1 m), which is ~1e-4 of these tiny footprints
    assert geometry.symmetric_difference(expected).area < 1e-3 * expected.area
    assert len(geometry.exterior.coords) == len(expected.exterior.coords) == 5
    # the footprint is the valid-data part of the tile: 600 m x 600 m (or 1.2 km) minus the west strip
    assert item.bbox == pytest.approx(list(expected.bounds), abs=2e-6)
    for asset in item.assets.values():  # every asset stactools links exists in the product
        assert Path(asset.href).is_file(), asset.href


def test_s2_metadata_shapes_match_rasters(products: dict[str, Path]) -> None:
    item = s2_item(products["l2a"])
    for key, res in (("blue", 10), ("blue_20m", 20), ("scl", 20), ("aot_60m", 60), ("visual", 10)):
        asset = item.assets[key]
        with rasterio.open(asset.href) as src:
            assert list(asset.extra_fields["proj:shape"]) == [src.height, src.width] == [1200 // res] * 2
            assert list(asset.extra_fields["proj:transform"])[:6] == list(src.transform)[:6]


# --------------------------------------------------------------------------- S2 rasters


def test_s2_rasters_dtype_crs_nodata_and_lossless(products: dict[str, Path]) -> None:
    safe = products["l2a"]
    grid = gen.s2_tile_grid("31TDH")
    img = next(safe.glob("GRANULE/*/IMG_DATA"))
    cases = [("B02", 10, "uint16", 1), ("B8A", 20, "uint16", 1), ("SCL", 20, "uint8", 1), ("AOT", 60, "uint16", 1),
             ("WVP", 20, "uint16", 1), ("TCI", 10, "uint8", 3), ("B01", 60, "uint16", 1)]  # fmt: skip
    for band, res, dtype, count in cases:
        (path,) = img.glob(f"R{res}m/*_{band}_{res}m.jp2")
        with rasterio.open(path) as src:
            assert src.driver == "JP2OpenJPEG"
            assert (src.dtypes[0], src.count, src.width, src.height) == (dtype, count, 1200 // res, 1200 // res)
            assert src.crs == CRS.from_epsg(32631)
            assert src.transform == grid.transform(res)
            assert src.nodata is None  # like real S2 JP2s: nodata (0) is only declared in the metadata
            assert src.tags(ns="IMAGE_STRUCTURE")["COMPRESSION_REVERSIBILITY"] == "LOSSLESS"
            data = src.read() if count == 3 else src.read(1)
        expected = gen.s2_band_pixels(band, res, size=120, level="L2A", seed=5)
        np.testing.assert_array_equal(data, expected)  # lossless: read back == generated
        plane = data[0] if count == 3 else data
        assert plane[0, 0] == 0 and plane[-1, -1] != 0  # nodata strip on the west edge
        assert 0.05 < float((plane == 0).mean()) < 0.25
        if band == "SCL":
            assert set(np.unique(data)) <= set(range(12)) and len(np.unique(data)) > 2
        else:
            assert float(plane[plane > 0].std()) > 0  # not constant
    b02 = gen.s2_band_pixels("B02", 10, size=120, seed=5)
    assert b02.max() < 2**15 and int(b02[b02 > 0].min()) >= 1  # 15-bit reflectances with +1000 offset


def test_s2_l1c_rasters(products: dict[str, Path]) -> None:
    safe = products["l1c"]
    names = sorted(p.name.split("_")[-1] for p in safe.glob("GRANULE/*/IMG_DATA/*.jp2"))
    assert names == sorted(f"{b}.jp2" for b in [*gen._S2_BAND_ORDER, "TCI"])
    (b10,) = safe.glob("GRANULE/*/IMG_DATA/*_B10.jp2")
    with rasterio.open(b10) as src:
        assert (src.width, src.height) == (10, 10)
        np.testing.assert_array_equal(src.read(1), gen.s2_band_pixels("B10", 60, size=60, level="L1C", seed=3))
    (pvi,) = safe.glob("GRANULE/*/QI_DATA/*_PVI.jp2")
    with rasterio.open(pvi) as src:
        assert (src.count, src.dtypes[0], src.width) == (3, "uint8", 1)
        assert src.transform == gen.s2_tile_grid("31TDH").transform(320)
        np.testing.assert_array_equal(src.read(), gen.s2_band_pixels("TCI", 320, size=60, level="L1C", seed=3))


def test_s2_band_pixels_rows_are_independent_of_slicing() -> None:
    full = gen.s2_band_pixels("B04", 10, size=600, seed=9)
    np.testing.assert_array_equal(gen.s2_band_pixels("B04", 10, size=600, seed=9, rows=(250, 530)), full[250:530])
    assert not np.array_equal(full, gen.s2_band_pixels("B04", 10, size=600, seed=10))


def test_jp2_layout_matches_real_b01(tmp_path: Path) -> None:
    """A full-size 60 m band is encoded like the real fixture band (tiles, levels, boxes, precision)."""
    real = B01_FIXTURE
    grid = gen.s2_tile_grid("31TDH")
    model = gen._S2Model(10980, 0, "L1C", "05.10")
    ours = tmp_path / "B01.jp2"
    gen._write_jp2_group(
        [gen._Jp2Spec(ours, 1, "uint16", 15, gen._S2_JP2_BLOCK[60], gen._S2_JP2_LEVELS)],
        scratch=tmp_path, width=1830, height=1830, transform=grid.transform(60), crs=CRS.from_epsg(grid.epsg),
        strips=lambda r0, r1: [model.band(model.strip_at(60, r0, r1), "B01", 60, r0, r1)],
    )  # fmt: skip
    described = []
    for path in (real, ours):
        with rasterio.open(path) as src:
            described.append((
                src.width, src.height, src.dtypes, src.block_shapes, src.overviews(1), src.crs, src.transform,
                src.nodata, src.tags(ns="IMAGE_STRUCTURE"), src.tags(1, ns="IMAGE_STRUCTURE").get("NBITS"),
                "xml:gml.root-instance" in src.tag_namespaces(),
            ))  # fmt: skip
    assert described[0] == described[1]
    assert jp2_boxes(real.read_bytes()) == jp2_boxes(ours.read_bytes()) == ["jP  ", "ftyp", "jp2h", "asoc", "jp2c"]
    assert gen._jp2_layout(10980, 10980, gen._S2_JP2_BLOCK[10], 5) == (1024, 1024, 5)
    assert gen._jp2_layout(5490, 5490, gen._S2_JP2_BLOCK[20], 5) == (640, 640, 5)


def jp2_boxes(data: bytes) -> list[str]:
    boxes, offset = [], 0
    while offset < len(data):
        length, kind = struct.unpack(">I4s", data[offset : offset + 8])
        if length == 1:
            length = struct.unpack(">Q", data[offset + 8 : offset + 16])[0]
        boxes.append(kind.decode("latin1"))
        offset += length if length else len(data)
    return boxes


# --------------------------------------------------------------------------- manifests


@pytest.mark.parametrize("key", ["l1c", "l2a", "s1"])
def test_generated_manifest_lists_every_file_with_its_md5(products: dict[str, Path], key: str) -> None:
    safe = products[key]
    checksums = manifest_checksums(safe)
    assert set(checksums) == files_in(safe) - {"manifest.safe"}  # nothing missing, nothing extra
    for rel, checksum in checksums.items():
        assert checksum.algorithm == "md5" and md5(safe / rel) == checksum.hexdigest, rel
    assert verify_manifest(safe) == (len(checksums), [])
    for entry in manifest_entries(safe):
        assert entry.size == (safe / entry.path).stat().st_size
    assert not list(safe.rglob("*.aux.xml"))


# --------------------------------------------------------------------------- S1


def test_s1_grd_accepted_by_stactools(products: dict[str, Path]) -> None:
    safe = products["s1"]
    item = s1_item(safe)
    assert safe.name.startswith("S1A_IW_GRDH_1SDV_20240105T173953_20240105T173953_039156_")
    assert item.id == safe.name[: -len("_XXXX.SAFE")]
    start = S1_SENSING.replace(tzinfo=None)
    duration = timedelta(microseconds=round(S1_LINES * 10.0 / gen._S1_GROUND_SPEED * 1e6))
    assert item.properties["start_datetime"] == S1_SENSING.strftime("%Y-%m-%dT%H:%M:%S.%fZ")
    assert item.datetime == start + duration / 2  # stactools uses the middle of the acquisition
    assert item.properties["proj:code"] == "EPSG:4326"
    assert item.properties["s1:shape"] == [S1_SAMPLES, S1_LINES]
    assert item.properties["sat:absolute_orbit"] == 39156
    assert item.properties["sar:polarizations"] == ["VV", "VH"]
    reference = s1_item(S1_FIXTURE)
    assert set(item.assets) == set(reference.assets)
    assert set(item.stac_extensions) == set(reference.stac_extensions)
    assert item.properties["sat:relative_orbit"] == reference.properties["sat:relative_orbit"] == 59
    for key in ("vv", "vh", "safe-manifest", "thumbnail", "schema-noise-vv"):
        assert Path(item.assets[key].href).is_file()


def test_s1_measurement_gcps_match_annotation(products: dict[str, Path]) -> None:
    safe = products["s1"]
    (tiff,) = safe.glob("measurement/s1a-iw-grd-vv-*-001.tiff")
    (annotation,) = safe.glob("annotation/s1a-iw-grd-vv-*-001.xml")
    root = ET.parse(annotation).getroot()
    grid = {
        (int(p.findtext("line", "")), int(p.findtext("pixel", ""))): (
            float(p.findtext("longitude", "")), float(p.findtext("latitude", "")))
        for p in root.iter("geolocationGridPoint")
    }  # fmt: skip
    assert int(root.findtext(".//numberOfLines", "")) == S1_LINES
    assert int(root.findtext(".//numberOfSamples", "")) == S1_SAMPLES
    with rasterio.open(tiff) as src:
        gcps, crs = src.gcps
        assert crs == CRS.from_epsg(4326)
        assert src.transform.is_identity  # GCPs only, no geotransform, as in real GRDs
        assert (src.dtypes[0], src.width, src.height, src.block_shapes) == ("uint16", S1_SAMPLES, S1_LINES,
                                                                            [(1, S1_SAMPLES)])  # fmt: skip
        assert src.compression is None and src.tags()["TIFFTAG_IMAGEDESCRIPTION"] == "Sentinel-1A IW GRD HR L1"
        data = src.read(1)
    assert tiff.read_bytes()[2:4] == b"\x2b\x00"  # BigTIFF, like the real measurement files
    assert len(gcps) == len(grid) and {(0, 0), (S1_LINES - 1, S1_SAMPLES - 1)} <= set(grid)
    for gcp in gcps:
        assert grid[(int(gcp.row), int(gcp.col))] == pytest.approx((gcp.x, gcp.y), abs=1e-9)
    np.testing.assert_array_equal(data, gen.s1_measurement_pixels("VV", lines=S1_LINES, samples=S1_SAMPLES, seed=2))
    assert (data[:, 0] == 0).all() and (data[:, 1:-1] > 0).mean() > 0.9  # zero near-range border
    # the footprint (item geometry) is spanned by the corner GCPs
    item = s1_item(safe)
    corners = [grid[(S1_LINES - 1, 0)], grid[(S1_LINES - 1, S1_SAMPLES - 1)], grid[(0, S1_SAMPLES - 1)], grid[(0, 0)]]
    footprint = Polygon(corners)  # the manifest has 6 decimals, like real ones
    assert shape(item.geometry).symmetric_difference(footprint).area < 1e-3 * footprint.area
    assert shape(item.geometry).contains(shape({"type": "Point", "coordinates": (3.37, 45.49)}))


# --------------------------------------------------------------------------- zip + determinism


def test_zip_product_is_deterministic(products: dict[str, Path], tmp_path: Path) -> None:
    safe = products["l2a"]
    first = gen.zip_product(safe, tmp_path / "a.zip")
    second = gen.zip_product(safe, tmp_path / "b" / "b.zip")
    assert first.read_bytes() == second.read_bytes()
    with zipfile.ZipFile(first) as zf:
        infos = zf.infolist()
        names = [i.filename for i in infos]
        assert names[0] == f"{safe.name}/" and names == sorted(names)
        assert all(n.startswith(f"{safe.name}/") for n in names)
        assert {n[len(safe.name) + 1 :] for n in names if not n.endswith("/")} == files_in(safe)
        assert {i.date_time for i in infos} == {(1980, 1, 1, 0, 0, 0)}
        for info in infos:
            if info.filename.endswith(".jp2"):
                assert info.compress_type == zipfile.ZIP_STORED
            elif info.filename.endswith((".xml", ".safe")):
                assert info.compress_type == zipfile.ZIP_DEFLATED
        assert zf.read(f"{safe.name}/manifest.safe") == (safe / "manifest.safe").read_bytes()
        assert zf.testzip() is None


def test_generation_is_deterministic_and_atomic(products: dict[str, Path], tmp_path: Path) -> None:
    again = gen.generate_s2(tmp_path, level="L1C", sensing=SENSING, size=60, seed=3)
    assert again.name == products["l1c"].name
    assert manifest_checksums(again) == manifest_checksums(products["l1c"])
    assert (again / "manifest.safe").read_bytes() == (products["l1c"] / "manifest.safe").read_bytes()
    other = gen.generate_s2(tmp_path / "seed4", level="L1C", sensing=SENSING, size=60, seed=4)
    differing = {k for k, v in manifest_checksums(other).items() if manifest_checksums(again)[k] != v}
    assert any(k.endswith("_B04.jp2") for k in differing) and "INSPIRE.xml" not in differing
    with pytest.raises(FileExistsError):
        gen.generate_s2(tmp_path, level="L1C", sensing=SENSING, size=60, seed=3)
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted([again.name, "seed4"])  # no leftovers


@pytest.mark.parametrize(
    "kwargs",
    [{"size": 100}, {"size": 30}, {"tile": "31TDI"}, {"baseline": "5.10"}, {"relative_orbit": 144},
     {"satellite": "S2X"}, {"level": "L3"}],
)  # fmt: skip
def test_generate_s2_validates_arguments(tmp_path: Path, kwargs: dict[str, Any]) -> None:
    with pytest.raises(ValueError):
        gen.generate_s2(tmp_path, sensing=SENSING, **{"size": 60, **kwargs})
    assert list(tmp_path.iterdir()) == []


@pytest.mark.parametrize("kwargs", [{"polarisations": ("VH",)}, {"mode": "WV"}, {"satellite": "S2A"}])
def test_generate_s1_validates_arguments(tmp_path: Path, kwargs: dict[str, Any]) -> None:
    with pytest.raises(ValueError):
        gen.generate_s1_grd(tmp_path, sensing=S1_SENSING, lines=20, samples=20, **kwargs)


def test_sha3_manifest_option(tmp_path: Path) -> None:
    safe = gen.generate_s2(tmp_path, level="L1C", sensing=SENSING, size=60, manifest_checksum="SHA3-256")
    digests = manifest_checksums(safe)
    assert set(digests) == files_in(safe) - {"manifest.safe"}
    assert {c.algorithm for c in digests.values()} == {"sha3_256"}
    assert all(hashlib.sha3_256((safe / r).read_bytes()).hexdigest() == c.hexdigest for r, c in digests.items())
    assert verify_manifest(safe) == (len(digests), [])


def test_s1_ew_single_pol_descending(tmp_path: Path) -> None:
    safe = gen.generate_s1_grd(
        tmp_path, sensing=S1_SENSING, satellite="S1B", absolute_orbit=25000, mode="EW", polarisations=("HH",),
        lines=40, samples=50, center=(-60.0, -10.0), orbit_direction="DESCENDING",
    )  # fmt: skip
    assert safe.name.startswith("S1B_EW_GRDM_1SSH_")
    item = s1_item(safe)
    assert set(item.assets) == {"hh", "safe-manifest", "schema-product-hh", "schema-calibration-hh",
                                "schema-noise-hh", "thumbnail"}  # fmt: skip
    assert item.properties["sat:orbit_state"] == "descending"
    assert item.properties["sar:instrument_mode"] == "EW" and item.properties["sar:polarizations"] == ["HH"]
    assert item.properties["sat:relative_orbit"] == (25000 - 27) % 175 + 1
    assert shape(item.geometry).contains(shape({"type": "Point", "coordinates": (-60.0, -10.0)}))
    assert verify_manifest(safe)[1] == []
