"""A federated user's path, end to end: a pipeline item in a collection whose assets need an entitlement;
a real OpenID provider (oidc-provider) issuing client-credentials access tokens; ``ingest serve`` with
the asset gateway on. The user discovers the item with pystac-client, gets a token at the provider and
reads the COG through the gateway with GDAL's ``/vsicurl/`` and with odc-stac; an unentitled token is
refused, and so is every forged or malformed request of the issue's list that needs a real server."""

from __future__ import annotations

import json
import secrets
from collections.abc import Iterator
from contextlib import ExitStack
from pathlib import Path

import numpy as np
import psycopg
import pytest
import rasterio
import requests
from pystac_client import Client

from ingest.access.policy import AccessPolicy
from ingest.catalog.publish import sync_collections
from ingest.harvest import harvest
from ingest.reader import ensure_reader
from ingest.state.machine import State
from tests.integration.api import ApiServer, api_server, with_user
from tests.integration.conftest import World, WorldFactory
from tests.integration.oidc import OpenIdProvider, openid_provider

VO = "urn:mace:egi.eu:group:vo.example.eu:role=member#aai.egi.eu"


@pytest.fixture
def world(make_world: WorldFactory) -> World:
    w = make_world("S2_MSI_L2A", count=1, size=120)
    w.spec = w.spec.model_copy(update={"access": AccessPolicy(policy="entitlements", entitlements=(VO,))})
    sync_collections(w.settings, [w.spec])  # published with its policy
    harvest(w.conn, w.provider, w.spec)
    assert w.process(w.entries[0].id).state is State.CATALOGUED
    return w


@pytest.fixture
def idp(tmp_path: Path) -> Iterator[OpenIdProvider]:
    with openid_provider(tmp_path, {"entitled": [VO, "urn:other"], "plain": None}) as p:
        yield p


def gateway_env(world: World, idp: OpenIdProvider) -> dict[str, str]:
    s = world.settings
    assert s.s3_endpoint_url and s.s3_access_key_id and s.s3_secret_access_key
    return {
        "INGEST_ASSET_GATEWAY": "true",
        "INGEST_OIDC_ISSUERS": json.dumps([{"discovery_url": idp.discovery_url, "audience": idp.audience}]),
        "INGEST_S3_ENDPOINT_URL": s.s3_endpoint_url,
        "INGEST_S3_REGION": s.s3_region,
        "INGEST_S3_BUCKET": s.s3_bucket,
        "INGEST_S3_ACCESS_KEY_ID": s.s3_access_key_id.get_secret_value(),
        "INGEST_S3_SECRET_ACCESS_KEY": s.s3_secret_access_key.get_secret_value(),
    }


@pytest.fixture
def server(world: World, idp: OpenIdProvider, tmp_path: Path) -> Iterator[ApiServer]:
    role = "reader_" + secrets.token_hex(5)
    reader = with_user(world.dsn, role, secrets.token_urlsafe(18))
    ensure_reader(world.dsn, reader)
    try:
        with api_server(reader, tmp_path, **gateway_env(world, idp)) as s:
            yield s
    finally:
        with psycopg.connect(world.dsn, autocommit=True) as conn:
            conn.execute(f"DROP OWNED BY {role}")
            conn.execute(f"DROP ROLE IF EXISTS {role}")


def no_redirect(url: str, token: str | None = None, method: str = "GET") -> requests.Response:
    headers = {"Authorization": f"Bearer {token}"} if token else {}
    return requests.request(method, url, headers=headers, allow_redirects=False, timeout=30)


def test_discover_authenticate_and_read_the_cog_through_the_gateway(
    world: World, idp: OpenIdProvider, server: ApiServer
) -> None:
    token = idp.token("entitled")
    item = next(Client.open(server.url).search(collections=[world.spec.id], max_items=1).items())
    red = item.assets["red"]
    assert red.href == f"{server.url}/collections/{world.spec.id}/items/{item.id}/assets/red"
    assert red.extra_fields["auth:refs"] == ["oidc"]
    assert red.extra_fields["alternate"]["s3"]["href"].startswith(f"s3://{world.settings.s3_bucket}/")
    assert item.properties["auth:schemes"]["oidc"]["openIdConnectUrl"] == idp.discovery_url
    collection = requests.get(f"{server.url}/collections/{world.spec.id}", timeout=30).json()
    assert collection["auth:schemes"]["oidc"]["type"] == "openIdConnect"
    assert collection["ingest:access"] == {"policy": "entitlements", "entitlements": [VO]}

    redirect = no_redirect(red.href, token)
    assert redirect.status_code == 307 and redirect.headers["cache-control"] == "private, no-store"
    assert "X-Amz-Signature=" in redirect.headers["location"]
    head = no_redirect(red.href, token, "HEAD")
    assert head.status_code == 200 and int(head.headers["content-length"]) == red.extra_fields["file:size"]
    assert head.headers["accept-ranges"] == "bytes" and "location" not in head.headers
    ranged = requests.get(redirect.headers["location"], headers={"Range": "bytes=0-3"}, timeout=30)
    assert ranged.status_code == 206 and ranged.content[:2] in (b"II", b"MM")  # a TIFF, by ranges

    store_key = red.extra_fields["alternate"]["s3"]["href"].replace("s3://", "/vsis3/", 1)
    with rasterio.Env():
        rasterio.env.setenv(**world.store.gdal_env())
        with rasterio.open(store_key) as src:
            direct, crs, transform, shape = src.read(1), src.crs, src.transform, src.shape
    with rasterio.Env(GDAL_HTTP_HEADERS=f"Authorization: Bearer {token}", GDAL_DISABLE_READDIR_ON_OPEN="EMPTY_DIR"):
        with rasterio.open(f"/vsicurl/{red.href}") as src:
            assert np.array_equal(src.read(1), direct)

        import odc.stac
        from odc.geo.geobox import GeoBox

        ds = odc.stac.load([item], bands=["red"], geobox=GeoBox(shape, transform, crs), resampling="nearest")
        assert np.array_equal(ds["red"].isel(time=0).values, direct)
    logged = server.output()
    assert token not in logged and "X-Amz-Signature" not in logged and "Bearer" not in logged


def test_tokens_that_do_not_entitle_and_requests_that_are_not_right_are_refused(
    world: World, idp: OpenIdProvider, server: ApiServer
) -> None:
    item = next(Client.open(server.url).search(collections=[world.spec.id], max_items=1).items())
    url = item.assets["red"].href
    missing = no_redirect(url)
    assert missing.status_code == 401 and missing.headers["www-authenticate"] == 'Bearer realm="eo-ingest"'
    plain = no_redirect(url, idp.token("plain"))
    assert plain.status_code == 403 and "entitlement" in plain.json()["description"]
    malformed = requests.get(url, headers={"Authorization": "Basic dXNlcjpwYXNz"}, allow_redirects=False, timeout=30)
    assert malformed.status_code == 401 and 'error="invalid_token"' in malformed.headers["www-authenticate"]
    garbage = no_redirect(url, "not.a.token")
    assert garbage.status_code == 401
    token = idp.token("entitled")
    base = f"{server.url}/collections/{world.spec.id}/items"
    for path, status in (
        (f"{base}/{item.id}/assets/nope", 404),
        (f"{base}/nope/assets/red", 404),
        (f"{base}/{item.id}/assets/..%2F..%2Fsecret", 404),
        (f"{base}/..%2F{item.id}/assets/red", 404),
        (f"{server.url}/collections/nope/items/{item.id}/assets/red", 404),
    ):
        got = no_redirect(path, token)
        assert got.status_code == status, (path, got.status_code, got.text)
        assert "location" not in got.headers


def test_the_issuers_keys_kept_verify_while_it_is_down_and_none_kept_is_a_503(world: World, tmp_path: Path) -> None:
    row = world.conn.execute("SELECT item_id FROM ingest.products").fetchone()
    assert row is not None
    role = "reader_" + secrets.token_hex(5)
    reader = with_user(world.dsn, role, secrets.token_urlsafe(18))
    ensure_reader(world.dsn, reader)
    path = f"/collections/{world.spec.id}/items/{row[0]}/assets/red"
    try:
        with ExitStack() as provider_up:
            idp = provider_up.enter_context(openid_provider(tmp_path, {"entitled": [VO]}))
            token, env = idp.token("entitled"), gateway_env(world, idp)
            # one worker: the keys are kept per API process, and this one must be the one that fetched them
            with api_server(reader, tmp_path, "--workers", "1", **env) as warm:
                assert no_redirect(warm.url + path, token).status_code == 307  # keys fetched and kept
                provider_up.close()  # the issuer goes away
                with pytest.raises(requests.ConnectionError):
                    requests.get(idp.discovery_url, timeout=5)
                assert no_redirect(warm.url + path, token).status_code == 307  # the kept keys verify
                with api_server(reader, tmp_path, **env) as cold:  # nothing kept: a clear 503
                    got = no_redirect(cold.url + path, token)
                    assert got.status_code == 503 and got.headers["retry-after"] == "30", got.text
                    assert "issuer can be reached" in got.json()["description"]
    finally:
        with psycopg.connect(world.dsn, autocommit=True) as conn:
            conn.execute(f"DROP OWNED BY {role}")
            conn.execute(f"DROP ROLE IF EXISTS {role}")
