"""The object store adapter and the upload stage against a real S3 endpoint (the stack's SeaweedFS, over HTTP).

boto3 and GDAL really talk to the server; nothing is mocked. Every test gets its own bucket.
"""

from __future__ import annotations

import hashlib
import logging
import shutil
import socket
import time
import uuid
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import rasterio
from rasterio.transform import from_origin

from ingest.adapters.s3 import ObjectStore, StoreOptions
from ingest.errors import ConfigError, IngestError, StorageUnavailable
from ingest.settings import Settings
from ingest.stages.artifacts import CogResult, MetadataFile
from ingest.stages.checksums import to_multihash
from ingest.stages.upload import COG_MEDIA_TYPE, upload_product
from tests.conftest import FIXTURES, Stack, free_port

L2A_SAFE = FIXTURES / "sentinel2/safe/esa_S2B_MSIL2A_20210122T133229_N0214_R081_T22HBD_20210122T155500.SAFE"
COLLECTION = "sentinel-2-l2a"
ITEM = "S2B_MSIL2A_20210122T133229_R081_T22HBD_20210122T155500"
MiB = 1024**2
StoreFactory = Callable[..., ObjectStore]


def _settings(stack: Stack, **overrides: Any) -> Settings:
    env = stack.env
    values: dict[str, Any] = {
        "s3_endpoint_url": env["INGEST_S3_ENDPOINT_URL"],
        "s3_region": env["INGEST_S3_REGION"],
        "s3_access_key_id": env["INGEST_S3_ACCESS_KEY_ID"],
        "s3_secret_access_key": env["INGEST_S3_SECRET_ACCESS_KEY"],
        "s3_bucket": f"t-{uuid.uuid4().hex[:12]}",
        "s3_prefix": "ingest",
    }
    return Settings(_env_file=None, **{**values, **overrides})  # type: ignore[call-arg]


@pytest.fixture
def make_store(stack: Stack) -> StoreFactory:
    """A store on a fresh bucket of the test server; keyword arguments override settings."""

    def make(options: StoreOptions | None = None, **overrides: Any) -> ObjectStore:
        store = ObjectStore.from_settings(_settings(stack, **overrides), options)
        assert store.ensure_bucket() is True
        return store

    return make


def _cog_bytes(path: Path, data: bytes, asset_key: str) -> CogResult:
    """Any bytes stand in for a COG where the test is about transport, not raster content."""
    path.write_bytes(data)
    return CogResult(asset_key, path, len(data), hashlib.sha256(data).hexdigest(), "uint16", 0, (1, 1), 32722)


def _product(tmp_path: Path) -> tuple[list[CogResult], list[MetadataFile]]:
    """Two small COG stand-ins and the real metadata files of an L2A product (copied: tests edit them)."""
    tmp_path.mkdir(parents=True, exist_ok=True)
    cogs = [
        _cog_bytes(tmp_path / "b04.tif", b"II*\x00" + b"4" * 5000, "B04_10m"),
        _cog_bytes(tmp_path / "scl.tif", b"II*\x00" + b"s" * 3000, "scl_20m"),
    ]
    sources = {
        "safe_manifest": L2A_SAFE / "manifest.safe",
        "product_metadata": L2A_SAFE / "MTD_MSIL2A.xml",
        "granule_metadata": next(L2A_SAFE.glob("GRANULE/*/MTD_TL.xml")),
    }
    metadata = []
    for key, src in sources.items():
        dst = tmp_path / f"{key}-{src.name}"
        shutil.copyfile(src, dst)
        metadata.append(MetadataFile(key, dst, "application/xml"))
    return cogs, metadata


def _item_prefix(item: str = ITEM) -> str:
    return f"ingest/{COLLECTION}/{item}/"


def test_keys_content_types_and_checksums(make_store: StoreFactory, tmp_path: Path) -> None:
    store = make_store()
    cogs, metadata = _product(tmp_path)
    stored = upload_product(store, collection=COLLECTION, item_id=ITEM, cogs=cogs, metadata=metadata)

    p = _item_prefix()
    expected_keys = {
        "B04_10m": p + "B04_10m.tif",
        "scl_20m": p + "scl_20m.tif",
        "safe_manifest": p + "metadata/safe_manifest.safe",
        "product_metadata": p + "metadata/product_metadata.xml",
        "granule_metadata": p + "metadata/granule_metadata.xml",
    }
    assert {k: s.key for k, s in stored.items()} == expected_keys
    assert store.list_keys(p) == sorted(expected_keys.values())
    files = {c.asset_key: c.path for c in cogs} | {m.asset_key: m.path for m in metadata}
    for asset, s in stored.items():
        data = files[asset].read_bytes()
        expected_type = COG_MEDIA_TYPE if asset in ("B04_10m", "scl_20m") else "application/xml"
        assert s.uploaded is True
        assert s.href == f"s3://{store.bucket}/{s.key}"
        assert s.public_href is None  # no public base URL configured
        assert (s.size, s.media_type) == (len(data), expected_type)
        assert s.checksum == to_multihash("sha256", hashlib.sha256(data).hexdigest())
        assert s.checksum.startswith("1220")
        info = store.head(s.key)
        assert info is not None
        assert (info.size, info.content_type) == (len(data), expected_type)
        assert info.sha256 == hashlib.sha256(data).hexdigest()
    assert store.head(p + "nothing-here.tif") is None


def test_public_href_when_a_public_base_is_configured(make_store: StoreFactory, tmp_path: Path) -> None:
    store = make_store(public_base_url="https://data.example.org/eo/")
    cogs, metadata = _product(tmp_path)
    stored = upload_product(store, collection=COLLECTION, item_id=ITEM, cogs=cogs, metadata=metadata)

    assert stored["B04_10m"].public_href == f"https://data.example.org/eo/ingest/{COLLECTION}/{ITEM}/B04_10m.tif"
    assert all(s.public_href == f"https://data.example.org/eo/{s.key}" for s in stored.values())
    # the public form is also returned for objects that were already there
    again = upload_product(store, collection=COLLECTION, item_id=ITEM, cogs=cogs, metadata=metadata)
    assert {k: (s.uploaded, s.public_href) for k, s in again.items()} == {
        k: (False, s.public_href) for k, s in stored.items()
    }


def test_multipart_above_threshold_keeps_checksum_metadata(make_store: StoreFactory, tmp_path: Path) -> None:
    # SeaweedFS, like S3, refuses parts below 5 MiB (except the last): 11 MiB in 5 MiB parts is 3 parts
    store = make_store(StoreOptions(multipart_threshold=5 * MiB, multipart_chunksize=5 * MiB))
    big = _cog_bytes(tmp_path / "big.tif", np.random.default_rng(1).bytes(11 * MiB), "B02_10m")
    small = _cog_bytes(tmp_path / "small.tif", b"small" * 100, "AOT_20m")
    stored = upload_product(store, collection=COLLECTION, item_id=ITEM, cogs=[big, small], metadata=[])

    big_info, small_info = store.head(stored["B02_10m"].key), store.head(stored["AOT_20m"].key)
    assert big_info is not None and small_info is not None
    assert big_info.etag.strip('"').endswith("-3")  # S3's multipart ETag: md5 of part md5s, dash, part count
    assert "-" not in small_info.etag
    assert (big_info.size, big_info.sha256) == (11 * MiB, big.sha256)
    assert big_info.content_type == COG_MEDIA_TYPE

    again = upload_product(store, collection=COLLECTION, item_id=ITEM, cogs=[big, small], metadata=[])
    assert [s.uploaded for s in again.values()] == [False, False]


def test_reupload_skips_unchanged_and_force_resends(make_store: StoreFactory, tmp_path: Path) -> None:
    store = make_store()
    cogs, metadata = _product(tmp_path)

    def upload(force: bool = False) -> dict[str, bool]:
        stored = upload_product(store, collection=COLLECTION, item_id=ITEM, cogs=cogs, metadata=metadata, force=force)
        return {k: s.uploaded for k, s in stored.items()}

    def modified() -> dict[str, Any]:
        return {k: store.head(k).last_modified for k in store.list_keys(_item_prefix())}  # type: ignore[union-attr]

    assert all(upload().values())
    before = modified()
    time.sleep(1.1)  # Last-Modified has one-second resolution

    assert not any(upload().values())
    assert modified() == before

    metadata[1].path.write_bytes(metadata[1].path.read_bytes() + b"\n<!-- reprocessed -->\n")
    assert [k for k, sent in upload().items() if sent] == ["product_metadata"]
    changed = modified()
    assert [k for k in before if changed[k] != before[k]] == [f"{_item_prefix()}metadata/product_metadata.xml"]

    time.sleep(1.1)
    assert all(upload(force=True).values())
    assert all(t > changed[k] for k, t in modified().items())


def test_gdal_reads_the_cog_through_vsis3(make_store: StoreFactory, stack: Stack, tmp_path: Path) -> None:
    store = make_store()
    data = (np.arange(300 * 260, dtype="uint16").reshape(300, 260) * 7) % 10000
    path = tmp_path / "b04.tif"
    profile = {"driver": "COG", "width": 260, "height": 300, "count": 1, "dtype": "uint16", "nodata": 0}
    with rasterio.open(path, "w", crs="EPSG:32722", transform=from_origin(300000, 6200000, 10, 10), **profile) as dst:
        dst.write(data, 1)
    cog = CogResult(
        "B04_10m",
        path,
        path.stat().st_size,
        hashlib.sha256(path.read_bytes()).hexdigest(),
        "uint16",
        0,
        (300, 260),
        32722,
    )
    stored = upload_product(store, collection=COLLECTION, item_id=ITEM, cogs=[cog], metadata=[])

    env = store.gdal_env()
    assert env["AWS_S3_ENDPOINT"] == f"127.0.0.1:{stack.s3_port}" and env["AWS_HTTPS"] == "NO"
    assert env["AWS_SECRET_ACCESS_KEY"] == stack.env["INGEST_S3_SECRET_ACCESS_KEY"]
    with rasterio.Env():
        rasterio.env.setenv(**env)  # rasterio.Env(**env) refuses AWS keys; setenv hands them to GDAL as-is
        with rasterio.open(f"/vsis3/{store.bucket}/{stored['B04_10m'].key}") as src:
            assert (src.width, src.height, src.crs.to_epsg()) == (260, 300, 32722)
            assert np.array_equal(src.read(1), data)
            assert np.array_equal(src.read(1, window=((100, 110), (50, 60))), data[100:110, 50:60])


def test_delete_item_objects_removes_exactly_one_item(make_store: StoreFactory, tmp_path: Path) -> None:
    store = make_store()
    cogs, metadata = _product(tmp_path)
    # neighbours that a careless prefix would catch: a longer item id, the same id in another collection
    for collection, item in [(COLLECTION, ITEM), (COLLECTION, ITEM + "0"), ("sentinel-2-l1c", ITEM)]:
        upload_product(store, collection=collection, item_id=item, cogs=cogs, metadata=metadata)
    everything = store.list_keys("ingest/")
    assert len(everything) == 15

    for collection, item in [
        (COLLECTION, ""),
        (COLLECTION, ".."),
        (COLLECTION, f"../sentinel-2-l1c/{ITEM}"),
        (COLLECTION, "a/b"),
        ("", ITEM),
        ("..", "sentinel-2-l1c"),
    ]:
        with pytest.raises(IngestError, match="refusing"):
            store.delete_item_objects(collection, item)
    assert store.list_keys("ingest/") == everything

    assert store.delete_item_objects(COLLECTION, ITEM) == 5
    assert store.list_keys("ingest/") == [k for k in everything if not k.startswith(_item_prefix())]
    assert store.delete_item_objects(COLLECTION, ITEM) == 0


def test_unreachable_endpoint_fails_fast_without_secrets(
    stack: Stack, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    port = free_port()  # nothing listens there
    settings = _settings(stack, s3_endpoint_url=f"http://127.0.0.1:{port}")
    store = ObjectStore.from_settings(settings)
    cogs, metadata = _product(tmp_path)
    secret = stack.env["INGEST_S3_SECRET_ACCESS_KEY"]
    key_id = stack.env["INGEST_S3_ACCESS_KEY_ID"]

    caplog.set_level(logging.DEBUG, logger="ingest")
    started = time.monotonic()
    with pytest.raises(StorageUnavailable) as err:
        upload_product(store, collection=COLLECTION, item_id=ITEM, cogs=cogs, metadata=metadata)
    assert time.monotonic() - started < 10
    message = str(err.value)
    assert f"127.0.0.1:{port}" in message and settings.s3_bucket in message
    assert err.value.retryable is True
    ingest_logs = " ".join(r.getMessage() for r in caplog.records if r.name.startswith("ingest"))
    for text in (message, ingest_logs):
        assert secret not in text and key_id not in text

    with pytest.raises(StorageUnavailable, match=f"127.0.0.1:{port}"):
        store.delete_item_objects(COLLECTION, ITEM)


@pytest.mark.parametrize("kind", ["silent", "blackhole"])
def test_hung_endpoint_times_out_as_unavailable(stack: Stack, kind: str) -> None:
    """silent: the kernel completes connections nobody reads (read timeout); blackhole: the accept queue
    is full, so new connection attempts go unanswered (connect timeout)."""
    with socket.socket() as srv:
        srv.bind(("127.0.0.1", 0))
        srv.listen(16 if kind == "silent" else 0)
        port = srv.getsockname()[1]
        fillers = []
        if kind == "blackhole":
            for _ in range(4):
                c = socket.socket()
                c.setblocking(False)
                c.connect_ex(("127.0.0.1", port))
                fillers.append(c)
            time.sleep(0.1)
        options = StoreOptions(connect_timeout_s=0.5, read_timeout_s=0.5, max_attempts=2)
        store = ObjectStore.from_settings(_settings(stack, s3_endpoint_url=f"http://127.0.0.1:{port}"), options)
        started = time.monotonic()
        with pytest.raises(StorageUnavailable, match=f"cannot reach http://127.0.0.1:{port} .*timeout"):
            store.head("ingest/x.tif")
        elapsed = time.monotonic() - started
        for c in fillers:
            c.close()
    assert 0.9 < elapsed < 5  # two attempts of 0.5 s each, plus a short backoff


def test_missing_bucket_is_a_config_error_naming_it(stack: Stack, tmp_path: Path) -> None:
    settings = _settings(stack, s3_bucket="no-such-bucket-here")
    store = ObjectStore.from_settings(settings)  # no ensure_bucket: the bucket does not exist
    cogs, metadata = _product(tmp_path)

    with pytest.raises(ConfigError, match="bucket 'no-such-bucket-here' does not exist") as err:
        upload_product(store, collection=COLLECTION, item_id=ITEM, cogs=cogs, metadata=metadata)
    assert err.value.retryable is False
    assert stack.env["INGEST_S3_SECRET_ACCESS_KEY"] not in str(err.value)
    with pytest.raises(ConfigError, match="no-such-bucket-here"):
        store.list_keys("ingest/")


def test_gdal_env_and_layout_need_no_server() -> None:
    """The client is created lazily: nothing here may open a connection (no server at those hosts)."""
    plain = ObjectStore(
        bucket="b",
        prefix="/a/b/",
        endpoint_url="http://minio.local:9000/",
        region="eu-central-1",
        access_key_id=None,
        secret_access_key=None,
        public_base_url="https://data.example.org/eo/",
    )
    assert plain.gdal_env() == {
        "AWS_REGION": "eu-central-1",
        "AWS_S3_ENDPOINT": "minio.local:9000",
        "AWS_HTTPS": "NO",
        "AWS_VIRTUAL_HOSTING": "FALSE",
    }
    key = plain.item_key("c", "i", "metadata/x.xml")
    assert key == "a/b/c/i/metadata/x.xml"
    assert plain.public_href(key) == "https://data.example.org/eo/a/b/c/i/metadata/x.xml"
    with pytest.raises(IngestError, match="refusing"):
        plain.item_key("c", "i", "metadata/../../x.xml")

    aws = ObjectStore(bucket="b", prefix="", access_key_id=None, secret_access_key=None)
    assert aws.gdal_env() == {"AWS_REGION": "us-east-1"}
    assert aws.item_prefix("c", "i") == "c/i/"
    https = ObjectStore(bucket="b", endpoint_url="https://s3.example.org", access_key_id=None, secret_access_key=None)
    assert https.gdal_env()["AWS_HTTPS"] == "YES"

    with pytest.raises(ConfigError, match="prefix"):
        ObjectStore(bucket="b", prefix="ingest/../x")
    with pytest.raises(ConfigError, match="http"):
        ObjectStore(bucket="b", endpoint_url="127.0.0.1:9000")
