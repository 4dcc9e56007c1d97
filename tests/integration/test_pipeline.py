"""Processing end to end: provider (HTTP) -> verified SAFE -> COGs -> S3 (SeaweedFS) -> item in pgstac.

Every check goes through the real services: items are read back from pgstac, objects through S3 and
through GDAL's /vsis3/, the history from the events table.
"""

from __future__ import annotations

import contextlib
import hashlib
import socket
import threading
import time
from collections.abc import Iterator
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest
import rasterio
from lxml import etree  # type: ignore[import-untyped]  # no stubs; as in ingest/devtools/complete.py
from rio_cogeo.cogeo import cog_validate

from ingest.adapters import pgstac
from ingest.devtools.catalog import ProviderEntry, add_product
from ingest.devtools.generator import zip_product
from ingest.devtools.publish import ProductPlan, generate, safe_geometry
from ingest.errors import StateConflict
from ingest.harvest import harvest
from ingest.stages import kinds
from ingest.stages.upload import COG_MEDIA_TYPE
from ingest.state import repo
from ingest.state.machine import State
from tests.conftest import free_port
from tests.integration.conftest import START, World, WorldFactory

CHAIN = ["discovered", "claimed", "downloaded", "converted", "uploaded", "catalogued"]


def _key_of(href: str, bucket: str) -> str:
    assert href.startswith(f"s3://{bucket}/"), href
    return href.removeprefix(f"s3://{bucket}/")


def assert_catalogued(world: World, product_id: str) -> dict[str, Any]:
    """The product is catalogued, its item is in pgstac and every asset resolves to its S3 object."""
    row = repo.get_product(world.conn, product_id)
    assert row is not None and row["state"] == "catalogued", row
    item = pgstac.get_item(world.dsn, world.spec.id, row["item_id"])
    assert item is not None
    store = world.store
    assert row["s3_prefix"] == store.href(store.item_prefix(world.spec.id, item["id"]))
    cogs = 0
    with rasterio.Env():
        rasterio.env.setenv(**store.gdal_env())
        for key, asset in item["assets"].items():
            head = store.head(_key_of(asset["href"], store.bucket))
            assert head is not None, f"{key}: {asset['href']} is not in S3"
            assert head.size == asset["file:size"], key
            if asset["type"] == COG_MEDIA_TYPE:
                cogs += 1
                path = f"/vsis3/{store.bucket}/{_key_of(asset['href'], store.bucket)}"
                valid, errors, _ = cog_validate(path)
                assert valid, (key, errors)
                assert_describes_itself(key, asset, path)
    kind = kinds.of_spec(world.spec)
    assert cogs > 0 or (kind is not None and kind.mission == "s3")  # Sentinel-3 keeps its netCDF
    assert not world.work_of(product_id).exists()
    return item


def assert_describes_itself(key: str, asset: dict[str, Any], path: str) -> None:
    """The COG says what the item's raster:bands and eo:bands say: scale, offset, nodata, band names."""
    bands = asset.get("raster:bands") or []
    with rasterio.open(path) as cog:
        assert len(bands) in (0, cog.count), key
        for i, band in enumerate(bands):
            assert cog.scales[i] == pytest.approx(band.get("scale", 1.0)), key
            assert cog.offsets[i] == pytest.approx(band.get("offset", 0.0)), key
            if "nodata" in band:
                assert cog.nodata == band["nodata"], key
        for i, eo in enumerate(asset.get("eo:bands") or []):
            assert eo["name"] in (cog.descriptions[i] or ""), key


def test_generated_s2_l2a_product_is_catalogued(make_world: WorldFactory) -> None:
    world = make_world("S2_MSI_L2A", count=2, size=120)
    harvest(world.conn, world.provider, world.spec)
    pid = world.entries[0].id
    out = world.process(pid)
    assert out.state is State.CATALOGUED, out.error
    item = assert_catalogued(world, pid)
    assert [e["to_state"] for e in repo.events_of(world.conn, pid)] == CHAIN
    props = item["properties"]
    assert props["ingest:upstream_id"] == pid and props["ingest:provider"] == "local"
    assert props["created"] and props["updated"]
    # the collection's asset plan: each band once at its own resolution, ESA's resampled copies dropped,
    # and the store holds exactly the item's objects (nothing converted or uploaded for a dropped asset)
    cog_keys = {k for k, a in item["assets"].items() if a["type"] == COG_MEDIA_TYPE}
    assert cog_keys == set(world.spec.cog.bands)
    assert not any(k.endswith(("_10m", "_20m", "_60m")) for k in item["assets"])
    assert set(item["assets"]) <= set(world.spec.stac_collection()["item_assets"])  # what the collection announces
    store = world.store
    objects = store.list_keys(store.item_prefix(world.spec.id, item["id"]))
    assert sorted(objects) == sorted(_key_of(a["href"], store.bucket) for a in item["assets"].values())
    # rasterio alone gives reflectance: DN * the COG's own scale + offset, as raster:bands says
    red = item["assets"]["red"]
    with rasterio.Env():
        rasterio.env.setenv(**store.gdal_env())
        with rasterio.open(f"/vsis3/{store.bucket}/{_key_of(red['href'], store.bucket)}") as cog:
            dn = cog.read(1, masked=True)
            reflectance = dn.astype("float64") * cog.scales[0] + cog.offsets[0]
    rb = red["raster:bands"][0]
    assert (rb["scale"], rb["offset"]) == (0.0001, -0.1)  # baseline 04.00 and later
    assert float(reflectance.max()) == pytest.approx(float(dn.max()) * 0.0001 - 0.1)
    # the collection's extent now covers exactly this item
    coll = pgstac.get_collection(world.dsn, world.spec.id)
    assert coll is not None
    assert coll["extent"]["spatial"]["bbox"][0] == pytest.approx(item["bbox"], abs=1e-6)
    assert coll["extent"]["temporal"]["interval"][0][0][:19] == props["datetime"][:19]


@pytest.mark.parametrize("kind", ["S2_MSI_L1C", "S1_SAR_GRD"])
def test_generated_l1c_and_grd_products_are_catalogued(make_world: WorldFactory, kind: str) -> None:
    world = make_world(kind, count=1, size=120)
    harvest(world.conn, world.provider, world.spec)
    out = world.process(world.entries[0].id)
    assert out.state is State.CATALOGUED, out.error
    assert_catalogued(world, world.entries[0].id)


def test_rerun_changes_nothing_and_force_reuploads_nothing(make_world: WorldFactory) -> None:
    world = make_world("S2_MSI_L2A", count=1, size=60)
    harvest(world.conn, world.provider, world.spec)
    pid = world.entries[0].id
    assert world.process(pid).state is State.CATALOGUED
    first = assert_catalogued(world, pid)
    keys = world.store.list_keys(world.store.collection_prefix(world.spec.id))
    n_events = len(repo.events_of(world.conn, pid))

    with pytest.raises(StateConflict, match="found catalogued"):
        world.process(pid)  # not forced: refused, nothing recorded
    assert len(repo.events_of(world.conn, pid)) == n_events

    time.sleep(0.01)
    out = world.process(pid, allowed=(State.CATALOGUED,))
    assert out.state is State.CATALOGUED
    again = assert_catalogued(world, pid)
    uploaded = [e for e in repo.events_of(world.conn, pid) if e["to_state"] == "uploaded"][-1]
    assert uploaded["details"]["sent"] == 0  # identical objects are confirmed, not sent again
    assert world.store.list_keys(world.store.collection_prefix(world.spec.id)) == keys
    assert pgstac.item_ids(world.dsn, world.spec.id) == [first["id"]]
    assert again["properties"]["created"] == first["properties"]["created"]
    assert again["properties"]["updated"] > first["properties"]["updated"]


# ----------------------------------------------------------------------------- bad input


def _refresh_manifest(safe: Path, changed: Path) -> None:
    """Make manifest.safe agree with a file we altered, as a provider that produced it broken would."""
    manifest = safe / "manifest.safe"
    tree = etree.parse(str(manifest))
    rel = "./" + changed.relative_to(safe).as_posix()
    data = changed.read_bytes()
    for loc in tree.iter("fileLocation"):
        if loc.get("href") == rel:
            stream = loc.getparent()
            stream.set("size", str(len(data)))
            stream.find("checksum").text = hashlib.md5(data).hexdigest()
            break
    else:
        raise AssertionError(f"{rel} not in the manifest")
    manifest.write_bytes(etree.tostring(tree, xml_declaration=True, encoding="UTF-8"))


def _publish_altered(world: World, seed: int, alter: Any) -> ProviderEntry:
    """A generated product altered by ``alter(safe)`` with a manifest that agrees: it passes acquisition."""
    plan = ProductPlan("S2_MSI_L2A", START + timedelta(days=9), START + timedelta(days=10), seed=seed)
    safe = generate(plan, world.settings.work_dir.parent / f"altered-{seed}", size=60)
    geometry = safe_geometry(safe)  # before the alteration: the provider announces a sound footprint
    _refresh_manifest(safe, alter(safe))
    zipped = zip_product(safe, world.settings.work_dir.parent / f"{safe.stem}.zip")
    return add_product(
        world.root, zipped, collection="S2_MSI_L2A", geometry=geometry, datetime=plan.sensing, published=plan.published
    )


def _garbage_band(safe: Path) -> Path:
    band = next(safe.rglob("*_B03_10m.jp2"))
    band.write_bytes(b"\x00\x00\x00\x0cjP  \r\n\x87\n" + b"\x17" * 5000)  # a JP2 signature, then nothing valid
    return band


def _broken_tile_metadata(safe: Path) -> Path:
    mtd = next(safe.rglob("MTD_TL.xml"))
    mtd.write_bytes(mtd.read_bytes()[: len(mtd.read_bytes()) // 2])
    return mtd


@pytest.mark.parametrize(
    ("alter", "cause"),
    [(_garbage_band, r"cannot read raster .*_B03_10m\.jp2"), (_broken_tile_metadata, "cannot describe")],
)
def test_product_that_cannot_be_converted_or_described_is_invalid(
    make_world: WorldFactory, alter: Any, cause: str
) -> None:
    world = make_world("S2_MSI_L2A", count=1, size=60)
    bad = _publish_altered(world, 91, alter)
    harvest(world.conn, world.provider, world.spec)
    out = world.process(bad.id)
    assert out.state is State.INVALID
    assert __import__("re").search(cause, out.error or ""), out.error
    row = repo.get_product(world.conn, bad.id)
    assert row is not None and row["state"] == "invalid" and row["last_error"] == out.error
    assert pgstac.item_ids(world.dsn, world.spec.id) == []
    assert world.store.list_keys(world.store.collection_prefix(world.spec.id)) == []  # nothing left behind
    assert not world.work_of(bad.id).exists()
    # the other product is not affected
    assert world.process(world.entries[0].id).state is State.CATALOGUED


class CuttingProxy:
    """A TCP proxy to the S3 server that vanishes (closes every connection, refuses new ones) once
    ``cut_after`` bytes went upstream: the store disappearing in the middle of an upload."""

    def __init__(self, upstream_port: int, cut_after: int) -> None:
        self.upstream_port, self.cut_after, self.sent = upstream_port, cut_after, 0
        self.cut = threading.Event()
        self.server = socket.create_server(("127.0.0.1", 0))
        self.port = self.server.getsockname()[1]
        self.sockets: list[socket.socket] = []
        threading.Thread(target=self._accept, daemon=True).start()

    def _accept(self) -> None:
        while not self.cut.is_set():
            try:
                client, _ = self.server.accept()
            except OSError:
                return
            upstream = socket.create_connection(("127.0.0.1", self.upstream_port))
            self.sockets += [client, upstream]
            threading.Thread(target=self._pipe, args=(client, upstream, True), daemon=True).start()
            threading.Thread(target=self._pipe, args=(upstream, client, False), daemon=True).start()

    def _pipe(self, src: socket.socket, dst: socket.socket, counts: bool) -> None:
        try:
            while data := src.recv(65536):
                if counts:
                    self.sent += len(data)
                    if self.sent > self.cut_after:
                        self.vanish()
                        return
                dst.sendall(data)
        except OSError:
            pass
        finally:
            for s in (src, dst):
                with contextlib.suppress(OSError):
                    s.shutdown(socket.SHUT_RDWR)

    def vanish(self) -> None:
        self.cut.set()
        self.server.close()
        for s in self.sockets:
            with contextlib.suppress(OSError):
                s.shutdown(socket.SHUT_RDWR)


@pytest.fixture
def world_one(make_world: WorldFactory) -> Iterator[World]:
    world = make_world("S2_MSI_L2A", count=1, size=240)
    harvest(world.conn, world.provider, world.spec)
    yield world


def test_store_refusing_then_vanishing_mid_upload_fails_then_a_retry_completes(world_one: World) -> None:
    world, pid = world_one, world_one.entries[0].id
    s3_port = int(world.settings.s3_endpoint_url.rsplit(":", 1)[1])  # type: ignore[union-attr]
    refused = world.settings.model_copy(
        update={"s3_endpoint_url": f"http://127.0.0.1:{free_port()}", "s3_max_attempts": 1}
    )
    out = world.process(pid, settings=refused)
    assert out.state is State.FAILED and "127.0.0.1" in (out.error or "")
    proxy = CuttingProxy(s3_port, cut_after=300_000)
    vanishing = world.settings.model_copy(
        update={"s3_endpoint_url": f"http://127.0.0.1:{proxy.port}", "s3_max_attempts": 1}
    )
    out = world.process(pid, settings=vanishing)
    assert proxy.cut.is_set(), "the proxy never cut: the product is too small to test this"
    assert out.state is State.FAILED, out.error
    row = repo.get_product(world.conn, pid)
    assert row is not None and row["next_attempt_at"] is not None and row["attempts"] == 2
    assert pgstac.item_ids(world.dsn, world.spec.id) == []  # nothing half-loaded is visible
    out = world.process(pid)  # the store is back
    assert out.state is State.CATALOGUED, out.error
    assert_catalogued(world, pid)


def test_database_down_at_load_time_fails_then_a_retry_completes(world_one: World) -> None:
    world, pid = world_one, world_one.entries[0].id
    services = world.services()
    dead = services.pgstac_dsn.replace(f":{services.pgstac_dsn.split(':')[3].split('/')[0]}/", f":{free_port()}/")
    from ingest.pipeline import Services, process

    out = process(
        world.conn, world.settings, pid, spec=world.spec,
        services=Services(services.downloader, services.store, dead),
    )  # fmt: skip
    assert out.state is State.FAILED and "database" in (out.error or "").lower(), out.error
    events = repo.events_of(world.conn, pid)
    assert events[-1]["from_state"] == "uploaded" and events[-1]["details"]["retry"] is True
    assert pgstac.item_ids(world.dsn, world.spec.id) == []
    assert world.process(pid).state is State.CATALOGUED
    assert_catalogued(world, pid)
