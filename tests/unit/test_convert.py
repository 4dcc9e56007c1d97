"""Tests for ingest.stages.convert: real rasters (generated SAFE products and the vendored fixtures), no mocks."""

from __future__ import annotations

import os
import shutil
from datetime import UTC, datetime
from pathlib import Path

import numpy as np
import pytest
import rasterio
from rasterio.crs import CRS
from rasterio.transform import from_origin
from rasterio.vrt import WarpedVRT
from rio_cogeo.cogeo import cog_validate

from ingest.collections import BandKind, CogProfile
from ingest.devtools import generator as gen
from ingest.errors import ConfigError, IngestError, InvalidProduct
from ingest.stages.artifacts import BandMeta, CogResult, CogSource
from ingest.stages.checksums import file_digest
from ingest.stages.convert import convert_band, convert_product
from ingest.stages.describe import band_meta
from tests.conftest import FIXTURES

B01_FIXTURE = (
    FIXTURES / "sentinel2/eodag_product/S2A_MSIL1C_20180101T105441_N0206_R051_T31TDH_20180101T124911"
    "/GRANULE/L1C_T31TDH_A013204_20180101T105435/IMG_DATA/T31TDH_20180101T105441_B01.jp2"
)
S1_FIXTURES = {p.name: p for p in FIXTURES.glob("sentinel1/rasters/*/measurement/*.tiff")}

SIZE = 600  # 10 m bands 600 px, 20 m 300 px, 60 m 100 px
SEED = 5
S1_LINES, S1_SAMPLES, S1_CENTER = 500, 700, (3.37, 45.49)
PROFILE = CogProfile(blocksize=128, bands={"scl": "classification", "visual": "visual", "red": "reflectance"})


@pytest.fixture(scope="module")
def l2a(tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("s2")
    return gen.generate_s2(out, level="L2A", sensing=datetime(2024, 1, 5, 10, 34, tzinfo=UTC), size=SIZE, seed=SEED)


@pytest.fixture(scope="module")
def s1(tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("s1")
    when = datetime(2024, 1, 5, 17, 39, 53, tzinfo=UTC)
    return gen.generate_s1_grd(out, sensing=when, lines=S1_LINES, samples=S1_SAMPLES, seed=2, center=S1_CENTER)


def band(safe: Path, name: str) -> Path:
    return next(safe.rglob(f"IMG_DATA/*/*_{name}.jp2"))


def source(safe: Path, name: str, key: str, kind: BandKind = "reflectance") -> CogSource:
    return CogSource(asset_key=key, path=band(safe, name), kind=kind)


def read(path: Path, overview: int | None = None) -> np.ndarray:
    options = {} if overview is None else {"OVERVIEW_LEVEL": overview}
    with rasterio.open(path, **options) as ds:
        pixels: np.ndarray = ds.read()
    return pixels


def assert_valid(result: CogResult) -> None:
    valid, errors, _ = cog_validate(result.path, quiet=True)
    assert valid, errors
    assert result.size == result.path.stat().st_size
    assert result.sha256 == file_digest(result.path)


def leftovers(folder: Path) -> list[str]:
    """Anything in the folder but finished COGs: temporary names, partial directories."""
    return sorted(p.name for p in folder.iterdir() if not (p.is_file() and p.name.endswith(".tif")))


# --------------------------------------------------------------------------- Sentinel-2


def test_real_b01_fixture_converts_and_validates(tmp_path: Path) -> None:
    # A real ESA JPEG 2000: rio-cogeo on the file itself fails with "Cannot invert geotransform"
    jp2 = B01_FIXTURE
    result = convert_band(CogSource("coastal", jp2, "reflectance"), tmp_path, PROFILE)
    assert_valid(result)
    with rasterio.open(jp2) as src, rasterio.open(result.path) as out:
        assert (out.crs, out.transform, out.shape) == (src.crs, src.transform, src.shape)
        assert np.array_equal(out.read(), src.read())
    assert (result.epsg, result.dtype, result.shape) == (32631, "uint16", (1830, 1830))
    assert result.nodata == 0  # from the product's MTD_MSIL1C.xml: the JPEG 2000 has no nodata flag


def test_s2_band_keeps_dtype_nodata_georeferencing_and_pixels(l2a: Path, tmp_path: Path) -> None:
    src_path = band(l2a, "B04_10m")
    result = convert_band(CogSource("red", src_path, "reflectance"), tmp_path, PROFILE)
    assert_valid(result)
    assert result.path == tmp_path / "red.tif"
    with rasterio.open(src_path) as src, rasterio.open(result.path) as out:
        assert src.nodata is None  # like real products: nodata is declared in the metadata only
        assert (out.dtypes, out.nodata, out.count) == (("uint16",), 0, 1)
        assert out.crs == src.crs == CRS.from_epsg(32631)
        assert out.transform == src.transform
        pixels = out.read(1)
        assert np.array_equal(pixels, src.read(1))
    assert np.array_equal(pixels, gen.s2_band_pixels("B04", 10, size=SIZE, seed=SEED))
    assert (pixels == 0).any()  # the nodata strip of the generator is there to be masked
    assert (result.dtype, result.nodata, result.shape, result.epsg) == ("uint16", 0, (SIZE, SIZE), 32631)
    assert result.seconds > 0


def test_nodata_comes_from_the_product_metadata(l2a: Path, tmp_path: Path) -> None:
    loose = tmp_path / "loose" / "B04.jp2"  # the same file outside its product: nothing declares nodata
    loose.parent.mkdir()
    shutil.copy(band(l2a, "B04_10m"), loose)
    result = convert_band(CogSource("red", loose, "reflectance"), tmp_path / "out", PROFILE)
    assert result.nodata is None
    assert convert_band(source(l2a, "B04_10m", "red"), tmp_path / "out2", PROFILE).nodata == 0


def test_scale_offset_and_description_are_kept(tmp_path: Path) -> None:
    src_path = tmp_path / "scaled.tif"
    with rasterio.open(
        src_path, "w", driver="GTiff", width=300, height=200, count=1, dtype="int16", nodata=-9999,
        crs="EPSG:32631", transform=from_origin(399960, 4800000, 20, 20),
    ) as dst:  # fmt: skip
        dst.write(np.arange(60000, dtype=np.int16).reshape(1, 200, 300) % 3000)
        dst.scales, dst.offsets = (0.0001,), (-0.1,)
        dst.set_band_description(1, "B05 red edge")
    result = convert_band(CogSource("rededge1", src_path, "reflectance"), tmp_path / "out", PROFILE)
    with rasterio.open(result.path) as out:
        assert (out.scales, out.offsets, out.descriptions, out.nodata) == ((0.0001,), (-0.1,), ("B05 red edge",), -9999)
    assert result.nodata == -9999


def test_classes_overviews_use_nearest_reflectance_average(l2a: Path, tmp_path: Path) -> None:
    scl = convert_band(source(l2a, "SCL_20m", "scl", "classification"), tmp_path, PROFILE)
    red = convert_band(source(l2a, "B04_10m", "red"), tmp_path, PROFILE)
    scl_src, scl_ovr = read(scl.path)[0], read(scl.path, overview=0)[0]
    assert set(np.unique(scl_ovr)) <= set(np.unique(scl_src))
    assert np.array_equal(scl_ovr, scl_src[::2, ::2])  # GDAL's nearest takes the top-left pixel of each 2x2

    red_src, red_ovr = read(red.path)[0].astype(float), read(red.path, overview=0)[0].astype(float)
    h, w = red_ovr.shape
    blocks = red_src[: 2 * h, : 2 * w].reshape(h, 2, w, 2)
    full = (blocks > 0).all(axis=(1, 3))  # blocks without nodata: a plain mean of 4 pixels
    mean = blocks.mean(axis=(1, 3))
    assert np.abs(red_ovr[full] - mean[full]).max() <= 1
    assert (red_ovr != red_src[::2, ::2]).mean() > 0.5
    with rasterio.open(scl.path) as a, rasterio.open(red.path) as b:
        assert (a.tags()["OVERVIEW_RESAMPLING"], b.tags()["OVERVIEW_RESAMPLING"]) == ("NEAREST", "AVERAGE")


@pytest.mark.parametrize(
    ("compress", "level", "blocksize", "tag"),
    [("deflate", 6, 256, "DEFLATE"), ("zstd", 9, 128, "ZSTD"), ("lzw", None, 512, "LZW")],
)
def test_output_follows_the_profile(
    l2a: Path, tmp_path: Path, compress: str, level: int | None, blocksize: int, tag: str
) -> None:
    profile = CogProfile.model_validate({"compress": compress, "level": level, "blocksize": blocksize})
    result = convert_band(source(l2a, "B04_10m", "red"), tmp_path, profile)
    assert_valid(result)
    with rasterio.open(result.path) as out:
        structure = out.tags(ns="IMAGE_STRUCTURE")
        assert (structure["COMPRESSION"], structure["PREDICTOR"], structure["LAYOUT"]) == (tag, "2", "COG")
        assert out.block_shapes == [(blocksize, blocksize)]
    with rasterio.open(result.path, OVERVIEW_LEVEL=0) as ovr:
        assert ovr.block_shapes == [(blocksize, blocksize)]


@pytest.mark.parametrize("compress", ["deflate", "zstd"])
def test_compression_level_reaches_the_writer(l2a: Path, tmp_path: Path, compress: str) -> None:
    # sizes need not be monotonic in the level on noisy data (libdeflate), but an ignored level
    # would give byte-identical files
    digests = {
        level: convert_band(
            source(l2a, "B04_10m", "red"),
            tmp_path / str(level),
            CogProfile.model_validate({"compress": compress, "level": level}),
        ).sha256
        for level in (1, 12)
    }
    assert digests[1] != digests[12]


def test_deflate_level_beyond_libdeflate_is_a_config_error(l2a: Path, tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match=r"deflate accepts 1\.\.12"):
        convert_band(source(l2a, "B04_10m", "red"), tmp_path, CogProfile(compress="deflate", level=15))
    assert leftovers(tmp_path) == []


def predictor_of(path: Path) -> str:
    with rasterio.open(path) as out:
        return str(out.tags(ns="IMAGE_STRUCTURE").get("PREDICTOR", "1"))


def test_predictor_policy(l2a: Path, tmp_path: Path) -> None:
    profile3 = CogProfile(predictor=3)
    # classes and masks: no differencing whatever the profile says
    assert predictor_of(convert_band(source(l2a, "SCL_20m", "scl", "classification"), tmp_path, PROFILE).path) == "1"
    # 8-bit colour composites of real scenes do gain from it: the profile's predictor
    visual = convert_band(source(l2a, "TCI_10m", "visual", "visual"), tmp_path, PROFILE)
    assert predictor_of(visual.path) == "2"
    assert read(visual.path).shape == (3, SIZE, SIZE)
    # the floating-point predictor only for floats: integers asked for 3 get 2
    assert predictor_of(convert_band(source(l2a, "B04_10m", "red"), tmp_path, profile3).path) == "2"
    floats = tmp_path / "float.tif"
    with rasterio.open(
        floats, "w", driver="GTiff", width=256, height=256, count=1, dtype="float32",
        crs="EPSG:4326", transform=from_origin(3, 46, 0.001, 0.001),
    ) as dst:  # fmt: skip
        dst.write(np.linspace(0, 1, 65536, dtype=np.float32).reshape(1, 256, 256))
    assert predictor_of(convert_band(CogSource("sigma0", floats, "backscatter"), tmp_path, profile3).path) == "3"


@pytest.mark.parametrize(("levels", "expected"), [(0, []), (2, [2, 4]), (None, [2, 4, 8])])
def test_overview_count_follows_the_profile(l2a: Path, tmp_path: Path, levels: int | None, expected: list[int]) -> None:
    # None: halve until the image fits one block (600 px, 128 px blocks: 300, 150, 75)
    result = convert_band(source(l2a, "B04_10m", "red"), tmp_path, CogProfile(blocksize=128, overview_levels=levels))
    assert_valid(result)
    with rasterio.open(result.path) as out:
        assert out.overviews(1) == expected


# --------------------------------------------------------------------------- Sentinel-1 (GCPs)


def assert_gcps_kept(src_path: Path, result: CogResult) -> None:
    assert_valid(result)
    with rasterio.open(src_path) as src, rasterio.open(result.path) as out:
        assert np.array_equal(out.read(), src.read())  # original line/pixel geometry, nothing resampled
        (src_gcps, src_crs), (out_gcps, out_crs) = src.gcps, out.gcps
        assert out_crs == src_crs == CRS.from_epsg(4326)
        assert [(g.row, g.col, g.x, g.y, g.z) for g in out_gcps] == [(g.row, g.col, g.x, g.y, g.z) for g in src_gcps]
        assert out.transform.is_identity  # the stand-in affine given to rio-cogeo did not leak out
    assert result.epsg == 4326
    assert result.nodata == 0


def test_generated_s1_measurement_keeps_its_gcps(s1: Path, tmp_path: Path) -> None:
    vv = next(s1.glob("measurement/*-vv-*.tiff"))
    result = convert_band(CogSource("vv", vv, "backscatter"), tmp_path, PROFILE)
    assert_gcps_kept(vv, result)
    assert result.shape == (S1_LINES, S1_SAMPLES)
    # usable by a client: GDAL warps it through the GCPs onto a map grid around the scene centre.
    # Thin-plate spline: a small generated scene has GCPs on two lines only (real ones have ~10),
    # too few rows for GDAL's default polynomial fit.
    with rasterio.open(result.path) as out, WarpedVRT(out, crs="EPSG:4326", SRC_METHOD="GCP_TPS") as warped:
        west, south, east, north = warped.bounds
        assert west < S1_CENTER[0] < east and south < S1_CENTER[1] < north
        assert warped.read(1).max() > 0


@pytest.mark.parametrize("name", ["iw-vv.tiff", "s1-vh.tiff"])
def test_real_s1_measurement_keeps_its_gcps(tmp_path: Path, name: str) -> None:
    tiff = S1_FIXTURES[name]
    result = convert_band(CogSource("vv", tiff, "backscatter"), tmp_path, PROFILE)
    assert_gcps_kept(tiff, result)
    # a client (GDAL's default GCP warp) puts the COG exactly where it puts the source
    with (
        rasterio.open(tiff) as src,
        rasterio.open(result.path) as out,
        WarpedVRT(src, crs="EPSG:4326") as a,
        WarpedVRT(out, crs="EPSG:4326") as b,
    ):
        assert (b.bounds, b.shape) == (a.bounds, a.shape)
        assert np.array_equal(b.read(), a.read())


# --------------------------------------------------------------------------- errors


@pytest.mark.parametrize("damage", ["truncated", "garbage", "empty"])
def test_unreadable_source_is_an_invalid_product(l2a: Path, tmp_path: Path, damage: str) -> None:
    good = band(l2a, "B04_10m").read_bytes()
    bad = tmp_path / "src" / "T31TDH_B04_10m.jp2"
    bad.parent.mkdir()
    content = {"truncated": good[: len(good) * 2 // 3], "garbage": os.urandom(4096), "empty": b""}[damage]
    bad.write_bytes(content)
    out = tmp_path / "out"
    with pytest.raises(InvalidProduct) as info:
        convert_band(CogSource("red", bad, "reflectance"), out, PROFILE)
    message = str(info.value)
    assert message.startswith("red: cannot read raster T31TDH_B04_10m.jp2: ")
    assert len(message) > len("red: cannot read raster T31TDH_B04_10m.jp2: ") + 5
    assert "\n" not in message and str(bad.parent) not in message
    assert leftovers(out) == [] and not list(out.glob("*.tif"))


def test_missing_source_is_an_invalid_product(tmp_path: Path) -> None:
    with pytest.raises(InvalidProduct, match=r"^blue: cannot read raster B02\.jp2: "):
        convert_band(CogSource("blue", tmp_path / "B02.jp2", "reflectance"), tmp_path / "out", PROFILE)


def test_an_output_that_is_not_a_cog_is_refused(tmp_path: Path) -> None:
    # rio-cogeo does not write such files; the check is the stage's guarantee to the uploader
    from ingest.stages.convert import _validate

    striped = tmp_path / "striped.tif"
    with rasterio.open(
        striped, "w", driver="GTiff", width=1024, height=1024, count=1, dtype="uint8",
        crs="EPSG:32631", transform=from_origin(399960, 4800000, 10, 10),
    ) as dst:  # fmt: skip
        dst.write(np.zeros((1, 1024, 1024), dtype=np.uint8))
    with pytest.raises(IngestError, match=r"^red: output is not a valid COG: .*not tiled"):
        _validate("red", striped)


def test_asset_key_must_be_a_plain_file_name(l2a: Path, tmp_path: Path) -> None:
    with pytest.raises(IngestError, match="cannot name a file"):
        convert_band(source(l2a, "B04_10m", "../red"), tmp_path / "out", PROFILE)
    assert not (tmp_path / "red.tif").exists()


# --------------------------------------------------------------------------- products, atomicity


def product_sources(l2a: Path) -> list[CogSource]:
    return [
        source(l2a, "B04_10m", "red"),
        source(l2a, "SCL_20m", "scl", "classification"),
        source(l2a, "B02_10m", "blue"),
        source(l2a, "AOT_60m", "aot_60m", "atmosphere"),
        source(l2a, "TCI_10m", "visual", "visual"),
    ]


def test_convert_product_returns_results_in_input_order(l2a: Path, tmp_path: Path) -> None:
    sources = product_sources(l2a)
    results = convert_product(sources, tmp_path, PROFILE, workers=2)
    assert [r.asset_key for r in results] == [s.asset_key for s in sources]
    assert [r.path for r in results] == [tmp_path / f"{s.asset_key}.tif" for s in sources]
    for s, r in zip(sources, results, strict=True):
        assert_valid(r)
        with rasterio.open(s.path) as src:
            assert np.array_equal(read(r.path), src.read())
    assert leftovers(tmp_path) == []


def test_convert_product_default_workers_and_empty(l2a: Path, tmp_path: Path) -> None:
    assert convert_product([], tmp_path, PROFILE) == []
    results = convert_product(product_sources(l2a)[:2], tmp_path, PROFILE)
    assert [r.asset_key for r in results] == ["red", "scl"]


@pytest.mark.parametrize("workers", [1, 2])
def test_failed_product_leaves_nothing_behind(l2a: Path, tmp_path: Path, workers: int) -> None:
    corrupt = tmp_path / "src" / "B03_10m.jp2"
    corrupt.parent.mkdir()
    data = band(l2a, "B03_10m").read_bytes()
    corrupt.write_bytes(data[: len(data) // 2])
    out = tmp_path / "out"
    out.mkdir()
    (out / "unrelated.txt").write_text("not ours")
    sources = product_sources(l2a)
    sources.insert(2, CogSource("green", corrupt, "reflectance"))
    with pytest.raises(InvalidProduct, match=r"^green: cannot read raster B03_10m\.jp2: "):
        convert_product(sources, out, PROFILE, workers=workers)
    assert sorted(p.name for p in out.iterdir()) == ["unrelated.txt"]


def test_the_first_failure_in_input_order_is_raised(tmp_path: Path) -> None:
    from concurrent.futures import Future
    from concurrent.futures.process import BrokenProcessPool

    from ingest.stages.convert import _first_error

    sources = [CogSource(key, tmp_path / f"{key}.jp2", "reflectance") for key in ("red", "green", "blue")]
    futures: list[Future[CogResult | None]] = [Future() for _ in sources]
    futures[0].set_result(None)
    futures[1].set_exception(InvalidProduct("green: cannot read raster"))
    futures[2].set_exception(IngestError("blue: disk full"))
    assert str(_first_error(sources, futures)) == "green: cannot read raster"
    # a dead worker breaks every band it had not finished: the message names them
    futures = [Future() for _ in sources]
    futures[0].set_result(None)
    for f in futures[1:]:
        f.set_exception(BrokenProcessPool("terminated abruptly"))
    error = _first_error(sources, futures)
    assert type(error) is IngestError and str(error) == "a conversion worker died converting one of green, blue"


def test_duplicate_asset_keys_are_refused(l2a: Path, tmp_path: Path) -> None:
    with pytest.raises(IngestError, match="duplicate asset keys"):
        convert_product([source(l2a, "B04_10m", "red"), source(l2a, "B03_10m", "red")], tmp_path, PROFILE)


def test_rerun_replaces_the_cog_atomically(l2a: Path, tmp_path: Path) -> None:
    first = convert_band(source(l2a, "B04_10m", "red"), tmp_path, CogProfile(compress="deflate"))
    with first.path.open("rb") as reader:  # a reader (an upload, say) holding the old file
        second = convert_band(source(l2a, "B04_10m", "red"), tmp_path, CogProfile(compress="zstd"))
        old_bytes = reader.read()
    assert second.path == first.path and second.sha256 != first.sha256
    assert len(old_bytes) == first.size  # the old file was replaced, never rewritten in place
    assert file_digest(second.path) == second.sha256
    assert_valid(second)
    assert leftovers(tmp_path) == []


SHRUNK_L2A = sorted(FIXTURES.glob("sentinel2/rasters/S2A_29RKH_20200219_0_L2A/*.tif"))
_SHRUNK_KIND: dict[str, BandKind] = {"SCL": "classification", "L2A_PVI": "visual", "AOT": "atmosphere"}


@pytest.mark.parametrize("path", SHRUNK_L2A, ids=[p.stem for p in SHRUNK_L2A])
def test_real_shrunk_l2a_cogs_convert_with_equal_pixels(tmp_path: Path, path: Path) -> None:
    kind = _SHRUNK_KIND.get(path.stem, "reflectance")
    out = convert_band(CogSource(path.stem.lower(), path, kind), tmp_path, PROFILE)
    assert_valid(out)
    with rasterio.open(path) as src, rasterio.open(out.path) as dst:
        assert (dst.crs, dst.transform, dst.count, dst.dtypes) == (src.crs, src.transform, src.count, src.dtypes)
        assert dst.nodata == src.nodata
        assert np.array_equal(dst.read(), src.read())


def test_the_cog_carries_the_items_scale_offset_and_band_names(tmp_path: Path) -> None:
    """What raster:bands / eo:bands say of a band is written into the COG (GDAL readers unscale by
    themselves); bands the item does not describe keep the source's own metadata."""
    src = tmp_path / "b04.tif"
    profile = {"driver": "GTiff", "width": 300, "height": 300, "count": 1, "dtype": "uint16", "nodata": 0}
    with rasterio.open(src, "w", crs="EPSG:32632", transform=from_origin(300000, 5000000, 10, 10), **profile) as d:
        d.write((np.arange(300 * 300, dtype="uint16").reshape(1, 300, 300) % 9000) + 1000)
    meta = (BandMeta(scale=0.0001, offset=-0.1, unit="1", description="B04 red"),)
    result = convert_band(CogSource("red", src, "reflectance", meta), tmp_path / "out", PROFILE)
    assert cog_validate(str(result.path))[0]
    with rasterio.open(result.path) as cog:
        assert (cog.scales, cog.offsets, cog.descriptions, cog.nodata) == ((0.0001,), (-0.1,), ("B04 red",), 0)
        dn = cog.read(1)
        assert float(dn.max() * cog.scales[0] + cog.offsets[0]) == pytest.approx(9999 * 0.0001 - 0.1)
    plain = convert_band(CogSource("red", src, "reflectance"), tmp_path / "plain", PROFILE)
    with rasterio.open(plain.path) as cog:
        assert (cog.scales, cog.offsets, cog.descriptions) == ((1.0,), (0.0,), (None,))


def test_band_meta_reads_raster_and_eo_bands_of_an_item_asset() -> None:
    import pystac

    asset = pystac.Asset(
        "x.jp2",
        title="Red - 10m",
        extra_fields={
            "raster:bands": [{"data_type": "uint16", "nodata": 0, "offset": -0.1, "scale": 0.0001}],
            "eo:bands": [{"name": "B04", "common_name": "red"}],
        },
    )
    assert band_meta(asset) == (BandMeta(0.0001, -0.1, None, "B04 red"),)
    wvp = pystac.Asset(
        "w.jp2", title="Water Vapour (WVP)", extra_fields={"raster:bands": [{"scale": 0.001, "unit": "cm"}]}
    )
    assert band_meta(wvp) == (BandMeta(0.001, None, "cm", "Water Vapour (WVP)"),)
    assert band_meta(pystac.Asset("m.xml")) == ()
