"""Asset access through the API: a product catalogued by the pipeline with ``s3://`` hrefs (no public base
URL), served by ``ingest serve``, carries the storage fields a client needs, and a client that knows
only those fields (and its credentials) reads the asset from the store, with boto3 and with GDAL."""

from __future__ import annotations

import hashlib
import secrets
from collections.abc import Iterator
from pathlib import Path
from typing import Literal, TypedDict
from urllib.parse import urlsplit

import boto3
import psycopg
import pytest
import rasterio
import requests
from botocore.config import Config

from ingest.harvest import harvest
from ingest.reader import ensure_reader
from ingest.stages.describe import ENDPOINT_FIELD, STORAGE_EXT
from ingest.stages.upload import COG_MEDIA_TYPE
from ingest.state import repo
from ingest.state.machine import State
from tests.conftest import Stack
from tests.integration.api import ApiServer, api_server, with_user
from tests.integration.conftest import World, WorldFactory


class _Payer(TypedDict, total=False):
    """The optional part of a ``get_object`` request."""

    RequestPayer: Literal["requester"]


@pytest.fixture
def world(make_world: WorldFactory) -> World:
    world = make_world("S2_MSI_L2A", count=1, size=60)
    assert world.settings.public_base_url is None
    harvest(world.conn, world.provider, world.spec)
    out = world.process(world.entries[0].id)
    assert out.state is State.CATALOGUED, out.error
    return world


@pytest.fixture
def server(world: World, stack: Stack, tmp_path: Path) -> Iterator[ApiServer]:
    role = "reader_" + secrets.token_hex(5)
    reader = with_user(world.dsn, role, secrets.token_urlsafe(18))
    ensure_reader(world.dsn, reader)
    try:
        with api_server(reader, tmp_path) as s:
            yield s
    finally:
        with psycopg.connect(stack.database("postgres"), autocommit=True) as conn:
            conn.execute(f"DROP ROLE IF EXISTS {role}")


def test_served_s3_assets_say_how_to_read_them(world: World, server: ApiServer, stack: Stack) -> None:
    row = repo.get_product(world.conn, world.entries[0].id)
    assert row is not None
    url = f"{server.url}/collections/{world.spec.id}/items/{row['item_id']}"
    item = requests.get(url, timeout=10).json()
    searched = requests.post(server.url + "/search", json={"ids": [row["item_id"]]}, timeout=10).json()
    assert [f["id"] for f in searched["features"]] == [row["item_id"]]
    assert searched["features"][0]["assets"] == item["assets"]  # search answers the same assets

    settings = world.settings
    assert STORAGE_EXT in item["stac_extensions"]
    for key, asset in item["assets"].items():
        assert asset["href"].startswith(f"s3://{settings.s3_bucket}/"), key
        assert asset["storage:platform"] == "OTHER", key  # an S3-compatible store of our own, not AWS
        assert asset["storage:region"] == settings.s3_region, key
        assert asset["storage:requester_pays"] is False, key
        assert asset[ENDPOINT_FIELD] == settings.s3_endpoint_url, key

    # a client that has only the item and its own credentials
    blue = next(a for a in item["assets"].values() if a["type"] == COG_MEDIA_TYPE and "data" in a["roles"])
    bucket, key = blue["href"].removeprefix("s3://").split("/", 1)
    creds = {
        "aws_access_key_id": stack.env["INGEST_S3_ACCESS_KEY_ID"],
        "aws_secret_access_key": stack.env["INGEST_S3_SECRET_ACCESS_KEY"],
    }
    s3 = boto3.client(
        "s3",
        endpoint_url=blue[ENDPOINT_FIELD],
        region_name=blue["storage:region"],
        config=Config(s3={"addressing_style": "path"}),
        aws_access_key_id=creds["aws_access_key_id"],
        aws_secret_access_key=creds["aws_secret_access_key"],
    )
    extra: _Payer = {"RequestPayer": "requester"} if blue["storage:requester_pays"] else {}
    data = s3.get_object(Bucket=bucket, Key=key, **extra)["Body"].read()
    assert len(data) == blue["file:size"]
    assert "1220" + hashlib.sha256(data).hexdigest() == blue["file:checksum"]

    endpoint = urlsplit(blue[ENDPOINT_FIELD])
    gdal = {
        "AWS_S3_ENDPOINT": endpoint.netloc,
        "AWS_HTTPS": "YES" if endpoint.scheme == "https" else "NO",
        "AWS_VIRTUAL_HOSTING": "FALSE",
        "AWS_REGION": blue["storage:region"],
        "AWS_ACCESS_KEY_ID": creds["aws_access_key_id"],
        "AWS_SECRET_ACCESS_KEY": creds["aws_secret_access_key"],
    }
    with rasterio.Env():
        rasterio.env.setenv(**gdal)
        with rasterio.open(f"/vsis3/{bucket}/{key}") as src:
            assert [src.height, src.width] == blue["proj:shape"]
            assert src.read(1, window=((0, 8), (0, 8))).shape == (8, 8)
