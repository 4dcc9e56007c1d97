"""Tests for ingest.devtools.generator.sentinel3: SEN3 products that stactools-sentinel3 accepts."""

from __future__ import annotations

import gzip
import hashlib
import re
import shutil
import xml.etree.ElementTree as ET
import zipfile
from datetime import UTC, datetime, timedelta
from importlib import resources
from pathlib import Path

import netCDF4
import numpy as np
import pytest
import requests
from click.testing import CliRunner
from shapely.geometry import Point, shape
from stactools.sentinel3.stac import create_item

from ingest.cli import cli
from ingest.devtools import generator as gen
from ingest.devtools.generator.sentinel3 import S3_PRODUCT_TYPES, ProductType, s3_grid
from ingest.devtools.provider import ProviderServer
from ingest.devtools.publish import S3_KINDS, ProductPlan, publish_generated
from ingest.stages.manifest import manifest_entries, verify_manifest
from tests.conftest import FIXTURES

SENSING = datetime(2024, 5, 1, 10, 0, 0, 250000, tzinfo=UTC)
CENTER = (12.5, 41.9)
SIZE = 64
TEMPLATES: dict[ProductType, Path] = {
    pt: next((FIXTURES / "sentinel3" / "safe").glob(f"S3A_{pt}_*.SEN3")) for pt in S3_PRODUCT_TYPES
}
NS = {
    "safe": "http://www.esa.int/safe/sentinel/1.1",
    "s3": "http://www.esa.int/safe/sentinel/sentinel-3/1.0",
    "gml": "http://www.opengis.net/gml",
}


def generate(out: Path, product_type: ProductType, seed: int = 3, size: int | None = SIZE) -> Path:
    return gen.generate_s3(out, product_type=product_type, sensing=SENSING, size=size, seed=seed, center=CENTER)


@pytest.fixture(scope="module")
def products(tmp_path_factory: pytest.TempPathFactory) -> dict[ProductType, Path]:
    out = tmp_path_factory.mktemp("s3")
    return {pt: generate(out, pt) for pt in S3_PRODUCT_TYPES}


def digests(folder: Path) -> dict[str, str]:
    return {f.name: hashlib.sha256(f.read_bytes()).hexdigest() for f in sorted(folder.iterdir())}


def manifest(folder: Path) -> ET.Element:
    return ET.parse(folder / "xfdumanifest.xml").getroot()


@pytest.mark.parametrize("product_type", S3_PRODUCT_TYPES)
def test_packaged_template_is_the_real_manifest(product_type: ProductType) -> None:
    packaged = resources.files("ingest.devtools.generator") / "sentinel3_templates"
    data = gzip.decompress((packaged / f"{product_type.rstrip('_')}.xfdumanifest.xml.gz").read_bytes())
    assert data == (TEMPLATES[product_type] / "xfdumanifest.xml").read_bytes()


@pytest.mark.parametrize("product_type", S3_PRODUCT_TYPES)
def test_stactools_item_has_the_assets_of_the_real_product(
    products: dict[ProductType, Path], product_type: ProductType
) -> None:
    real = create_item(str(TEMPLATES[product_type]), skip_nc=True)  # the fixture has no netCDF files
    item = create_item(str(products[product_type]))  # reads the netCDF files we wrote
    assert sorted(item.assets) == sorted(real.assets)
    assert sorted(item.properties) == sorted(real.properties)
    assert item.datetime is not None
    assert abs(item.datetime.replace(tzinfo=UTC) - SENSING) < timedelta(minutes=1)  # stactools: naive UTC
    assert item.properties["start_datetime"].startswith("2024-05-01T10:00:00.25")
    footprint = shape(item.geometry)
    assert footprint.is_valid
    assert footprint.contains(Point(CENTER))
    for key, asset in item.assets.items():
        if key != "safe-manifest":
            assert asset.extra_fields["file:size"] == (products[product_type] / Path(asset.href).name).stat().st_size


@pytest.mark.parametrize("product_type", S3_PRODUCT_TYPES)
def test_manifest_lists_and_verifies_every_file(products: dict[ProductType, Path], product_type: ProductType) -> None:
    folder = products[product_type]
    entries = manifest_entries(folder)
    real_entries = manifest_entries(TEMPLATES[product_type])
    assert [e.path for e in entries] == [e.path for e in real_entries]
    assert {e.path for e in entries} == {f.name for f in folder.iterdir()} - {"xfdumanifest.xml"}
    assert all(e.checksum_name == "MD5" for e in entries)
    checked, problems = verify_manifest(folder)
    assert problems == []
    assert checked == len(entries)


def test_manifest_problems_name_a_changed_file(tmp_path: Path, products: dict[ProductType, Path]) -> None:
    copy = Path(shutil.copytree(products["SL_2_LST___"], tmp_path / products["SL_2_LST___"].name))
    (copy / "LST_in.nc").write_bytes(b"tampered")
    _, problems = verify_manifest(copy)
    assert [p.path for p in problems] == ["LST_in.nc"]


@pytest.mark.parametrize("product_type", S3_PRODUCT_TYPES)
def test_manifest_describes_the_generated_product(products: dict[ProductType, Path], product_type: ProductType) -> None:
    folder = products[product_type]
    root = manifest(folder)
    name = folder.name
    assert re.fullmatch(
        rf"S3A_{product_type}_20240501T100000_20240501T\d{{6}}_\d{{8}}T\d{{6}}_\d{{4}}_\d{{3}}_\d{{3}}_\d{{4}}_[A-Z0-9]{{3}}"
        r"_O_N[RT]_\d{3}\.SEN3",
        name,
    )
    assert root.findtext(".//s3:productName", namespaces=NS) == name
    assert root.findtext(".//safe:startTime", namespaces=NS) == "2024-05-01T10:00:00.250000Z"
    relative = int(name.split("_")[-6])
    assert int(root.findtext(".//safe:relativeOrbitNumber", namespaces=NS) or 0) == relative
    orbit = int(root.findtext(".//safe:orbitNumber", namespaces=NS) or 0)
    assert orbit > 40_000  # S3A passed orbit 29,567 in October 2021, 14 orbits a day
    total = sum(f.stat().st_size for f in folder.iterdir() if f.name != "xfdumanifest.xml")
    assert int(root.findtext(".//s3:productSize", namespaces=NS) or 0) == total
    pos = [float(v) for v in (root.findtext(".//gml:posList", namespaces=NS) or "").split()]
    lats, lons = pos[0::2], pos[1::2]
    assert (lats[0], lons[0]) == (lats[-1], lons[-1])
    assert min(lons) < CENTER[0] < max(lons) and min(lats) < CENTER[1] < max(lats)
    # every element the generator does not own is the real one
    real = manifest(TEMPLATES[product_type])
    assert [el.tag for el in root.iter()] == [el.tag for el in real.iter()]


def test_netcdf_olci_efr_variables(products: dict[ProductType, Path]) -> None:
    folder = products["OL_1_EFR___"]
    columns, rows = s3_grid("OL_1_EFR___", SIZE)
    with netCDF4.Dataset(folder / "Oa01_radiance.nc") as ds:
        assert ds.data_model == "NETCDF4"
        assert {d: len(v) for d, v in ds.dimensions.items()} == {"rows": rows, "columns": columns}
        var = ds["Oa01_radiance"]
        assert var.dtype == np.uint16 and var.dimensions == ("rows", "columns")
        assert var.filters()["zlib"] is True
        assert var.getncattr("_FillValue") == 65535
        assert var.scale_factor > 0 and var.add_offset == 0
        assert var.units == "mW.m-2.sr-1.nm-1"
        radiance = var[:]
        assert 0 < float(radiance.min()) < float(radiance.max()) < 800
        assert ds.product_name == folder.name
        assert ds.start_time == "2024-05-01T10:00:00.250000Z"
    assert {f.name for f in folder.glob("Oa*_radiance.nc")} == {f"Oa{b:02d}_radiance.nc" for b in range(1, 22)}
    with netCDF4.Dataset(folder / "geo_coordinates.nc") as ds:
        for name, dtype in (("latitude", np.int32), ("longitude", np.int32), ("altitude", np.int16)):
            assert ds[name].dtype == dtype and ds[name].dimensions == ("rows", "columns")
        assert ds["latitude"].scale_factor == pytest.approx(1e-6)
        lat, lon = ds["latitude"][:], ds["longitude"][:]
        assert abs(float(lat.mean()) - CENTER[1]) < 0.5 and abs(float(lon.mean()) - CENTER[0]) < 0.5
    with netCDF4.Dataset(folder / "qualityFlags.nc") as ds:
        assert ds["quality_flags"].dtype == np.uint32
        assert len(ds["quality_flags"].flag_masks) == len(ds["quality_flags"].flag_meanings.split())
    with netCDF4.Dataset(folder / "tie_geo_coordinates.nc") as ds:
        assert dict(ds.dimensions.items()).keys() == {"tie_rows", "tie_columns"}
        assert len(ds.dimensions["tie_columns"]) == (columns - 1) // 64 + 1
    with netCDF4.Dataset(folder / "time_coordinates.nc") as ds:
        stamps = ds["time_stamp"][:]
        assert ds["time_stamp"].dtype == np.int64 and np.all(np.diff(stamps) > 0)


def test_netcdf_other_product_types(products: dict[ProductType, Path]) -> None:
    columns, rows = s3_grid("OL_2_LFR___", SIZE)
    with netCDF4.Dataset(products["OL_2_LFR___"] / "ogvi.nc") as ds:
        assert ds["OGVI"].dtype == np.uint8 and ds["OGVI"].shape == (rows, columns)
    with netCDF4.Dataset(products["OL_2_LFR___"] / "lqsf.nc") as ds:
        assert ds["LQSF"].dtype == np.uint32
    columns, rows = s3_grid("SL_1_RBT___", SIZE)
    rbt = products["SL_1_RBT___"]
    with netCDF4.Dataset(rbt / "S1_radiance_an.nc") as ds:  # 0.5 km grid: twice the 1 km one
        assert ds["S1_radiance_an"].dtype == np.int16 and ds["S1_radiance_an"].shape == (2 * rows, 2 * columns)
        assert ds["S1_exception_an"].dtype == np.uint8
    with netCDF4.Dataset(rbt / "S8_BT_in.nc") as ds:
        bt = ds["S8_BT_in"]
        assert bt.dtype == np.int16 and bt.shape == (rows, columns) and bt.units == "K"
        assert 230 < float(bt[:].min()) < float(bt[:].max()) < 330
    with netCDF4.Dataset(rbt / "geodetic_in.nc") as ds:
        assert ds["latitude_in"].dtype == np.int32 and ds["latitude_in"].shape == (rows, columns)
    with netCDF4.Dataset(rbt / "S8_BT_io.nc") as ds:  # oblique view: 900 of 1500 columns
        assert ds["S8_BT_io"].shape == (rows, columns * 900 // 1500)
    columns, rows = s3_grid("SL_2_LST___", SIZE)
    with netCDF4.Dataset(products["SL_2_LST___"] / "LST_in.nc") as ds:
        lst = ds["LST"]
        assert lst.dtype == np.float32 and lst.dimensions == ("rows", "columns") and lst.shape == (rows, columns)
        assert 240 < float(lst[:].min()) < float(lst[:].max()) < 340


@pytest.mark.parametrize("product_type", S3_PRODUCT_TYPES)
def test_orbit_numbers_follow_the_real_phasing(tmp_path: Path, product_type: ProductType) -> None:
    """Sensed when the real product was, the generated one gets its orbit, relative orbit and cycle."""
    real = manifest(TEMPLATES[product_type])
    start = datetime.strptime(real.findtext(".//safe:startTime", namespaces=NS) or "", "%Y-%m-%dT%H:%M:%S.%fZ")
    folder = gen.generate_s3(tmp_path, product_type=product_type, sensing=start, size=16)
    ours = manifest(folder)
    for tag in ("safe:orbitNumber", "safe:relativeOrbitNumber", "safe:cycleNumber", "safe:passNumber"):
        assert ours.findtext(f".//{tag}", namespaces=NS) == real.findtext(f".//{tag}", namespaces=NS)
    # cycle, relative orbit and frame in the name, after the (shorter) duration
    assert folder.name.split("_")[-7:] == TEMPLATES[product_type].name.split("_")[-7:]


def test_full_size_grids_are_those_of_real_products() -> None:
    assert s3_grid("OL_1_EFR___") == (4865, 3749)  # the EFR template's imageSize
    assert s3_grid("OL_2_LFR___") == (4865, 4090)
    assert s3_grid("SL_1_RBT___") == (1500, 1200)  # 1 km nadir grid (0.5 km: 3000 x 2400)
    assert s3_grid("SL_2_LST___") == (1500, 1200)
    assert s3_grid("OL_1_EFR___", 100) == (100, round(100 * 3749 / 4865))


def test_deterministic_and_seeded(tmp_path: Path, products: dict[ProductType, Path]) -> None:
    for product_type in S3_PRODUCT_TYPES:
        again = generate(tmp_path / "again", product_type)
        assert again.name == products[product_type].name
        assert digests(again) == digests(products[product_type])
    other = generate(tmp_path / "other", "OL_1_EFR___", seed=4)
    changed = {k for k, v in digests(other).items() if digests(products["OL_1_EFR___"])[k] != v}
    assert {"Oa01_radiance.nc", "geo_coordinates.nc", "xfdumanifest.xml"} <= changed
    with (
        netCDF4.Dataset(other / "Oa01_radiance.nc") as a,
        netCDF4.Dataset(products["OL_1_EFR___"] / "Oa01_radiance.nc") as b,
    ):
        assert not np.array_equal(a["Oa01_radiance"][:], b["Oa01_radiance"][:])


def test_bad_arguments_are_refused(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="product_type"):
        gen.generate_s3(tmp_path, product_type="OL_1_ERR___", sensing=SENSING, size=SIZE)  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="size"):
        gen.generate_s3(tmp_path, sensing=SENSING, size=4)
    with pytest.raises(ValueError, match="launch"):
        gen.generate_s3(tmp_path, sensing=datetime(2015, 1, 1), size=SIZE)
    assert list(tmp_path.iterdir()) == []


def test_zip_and_provider_serve_a_sen3_folder(tmp_path: Path) -> None:
    root = tmp_path / "provider"
    entries = [
        publish_generated(
            root,
            ProductPlan(kind=kind, sensing=SENSING + timedelta(hours=i), published=SENSING + timedelta(days=1), seed=i),
            size=32,
        )
        for i, kind in enumerate(S3_KINDS)
    ]
    assert [e.collection for e in entries] == list(S3_KINDS)
    with ProviderServer(root) as server:
        for entry in entries:
            found = requests.get(f"{server.url}/collections/{entry.collection}/items/{entry.id}", timeout=10).json()
            assert shape(found["geometry"]).contains(Point(3.37, 45.49))
            data = requests.get(f"{server.url}/download/{entry.id}.zip", timeout=30).content
            (tmp_path / f"{entry.id}.zip").write_bytes(data)
            with zipfile.ZipFile(tmp_path / f"{entry.id}.zip") as zf:
                names = zf.namelist()
                assert names[0] == f"{entry.id}.SEN3/"
                assert all(n.startswith(f"{entry.id}.SEN3/") for n in names)
                nc = [i for i in zf.infolist() if i.filename.endswith(".nc")]
                assert nc and all(i.compress_type == zipfile.ZIP_STORED for i in nc)
                zf.extractall(tmp_path / "unpacked")
            checked, problems = verify_manifest(tmp_path / "unpacked" / f"{entry.id}.SEN3")
            assert problems == [] and checked > 0


def test_dev_generate_takes_the_s3_kinds(tmp_path: Path) -> None:
    args = ["dev", "generate", "--root", str(tmp_path), "--kind", "S3_SLSTR_L1RBT", "--count", "1", "--size", "16"]
    done = CliRunner().invoke(cli, args)
    assert done.exit_code == 0, done.output
    assert "(S3_SLSTR_L1RBT, " in done.output
    [zipped] = (tmp_path / "products").glob("S3A_SL_1_RBT____*.zip")
    with zipfile.ZipFile(zipped) as zf:
        assert f"{zipped.stem}.SEN3/xfdumanifest.xml" in zf.namelist()
    assert CliRunner().invoke(cli, ["dev", "generate", "--root", str(tmp_path), "--kind", "S3_OL_1_ERR"]).exit_code == 2
