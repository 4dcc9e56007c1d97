"""What a data user's loaders make of a pipeline item: found with pystac-client through ``ingest serve``,
its ``red`` band read by rasterio through ``/vsis3/`` (the reference), by odc-stac and by stackstac from
the item alone. Each array must equal the reference, pixel for pixel, on the band's own grid.

stackstac 0.5 reads only ``proj:epsg`` (projection v1); our items carry ``proj:code`` (projection
v2.0.0, whose schema refuses any other ``proj:`` field, so ``proj:epsg`` cannot be added and stay
valid). A stackstac user passes ``epsg=`` and the asset's bounds and resolution with
``snap_bounds=False`` (README, "Loading items").
"""

from __future__ import annotations

import secrets
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import psycopg
import pystac
import pytest
import rasterio
from pystac_client import Client

from ingest.harvest import harvest
from ingest.reader import ensure_reader
from ingest.state.machine import State
from tests.integration.api import api_server, with_user
from tests.integration.conftest import World, WorldFactory


@pytest.fixture
def world(make_world: WorldFactory) -> World:
    w = make_world("S2_MSI_L2A", count=1, size=120)
    harvest(w.conn, w.provider, w.spec)
    assert w.process(w.entries[0].id).state is State.CATALOGUED
    return w


@pytest.fixture
def found(world: World, tmp_path: Path) -> Iterator[pystac.Item]:
    """The item as pystac-client finds it through a real ``ingest serve`` on the world's database."""
    role = "reader_" + secrets.token_hex(5)
    reader = with_user(world.dsn, role, secrets.token_urlsafe(18))
    ensure_reader(world.dsn, reader)
    try:
        with api_server(reader, tmp_path) as server:
            (item,) = Client.open(server.url).search(collections=[world.spec.id], max_items=10).items()
            yield item
    finally:
        with psycopg.connect(world.dsn, autocommit=True) as conn:
            conn.execute(f"DROP OWNED BY {role}")
            conn.execute(f"DROP ROLE IF EXISTS {role}")


@pytest.fixture
def s3_env(world: World, monkeypatch: pytest.MonkeyPatch) -> dict[str, str]:
    """GDAL reads the store's address and keys from the environment, as a user's session would."""
    env = world.store.gdal_env()
    for k, v in env.items():
        monkeypatch.setenv(k, v)
    return env


def test_pystac_client_odc_stac_and_stackstac_read_what_rasterio_reads(
    found: pystac.Item, s3_env: dict[str, str]
) -> None:
    red = found.assets["red"]
    assert red.href.startswith("s3://")
    with rasterio.Env(), rasterio.open(red.href.replace("s3://", "/vsis3/", 1)) as src:
        direct, crs, transform, shape, bounds = src.read(1), src.crs, src.transform, src.shape, src.bounds
        scale, offset = src.scales[0], src.offsets[0]
    assert direct.any() and (scale, offset) == (0.0001, -0.1)
    assert found.properties["proj:code"] == f"EPSG:{crs.to_epsg()}" and "proj:epsg" not in found.properties

    import odc.stac
    from odc.geo.geobox import GeoBox

    geobox = GeoBox(shape, transform, crs)
    ds = odc.stac.load([found], bands=["red"], geobox=geobox, resampling="nearest")
    loaded = ds["red"].isel(time=0).values
    assert loaded.dtype == direct.dtype and np.array_equal(loaded, direct)

    import stackstac

    with pytest.raises(ValueError, match="CRS"):  # what a default call does with projection v2 items
        stackstac.stack([found.to_dict()], assets=["red"]).compute()
    arr = stackstac.stack(
        [found.to_dict()], assets=["red"], epsg=crs.to_epsg(), resolution=transform.a,
        bounds=(bounds.left, bounds.bottom, bounds.right, bounds.top), snap_bounds=False,
        dtype="uint16", fill_value=np.uint16(0), rescale=False, resampling=rasterio.enums.Resampling.nearest,
    )  # fmt: skip
    stacked = arr.isel(time=0, band=0).values
    assert stacked.shape == direct.shape and np.array_equal(stacked, direct)
