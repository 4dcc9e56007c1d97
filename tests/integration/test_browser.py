"""STAC Browser at /browser/ on the real ``ingest serve``, in headless Chromium (tests/browser.py),
against a catalogue the real pipeline filled: one product of each shipped collection kind.

What a person sees: the collection list with our three collections, an item with its footprint on the
map and its thumbnail; no console error, no failed request on the way. And an empty catalogue.
Screenshots go under test-artifacts/screenshots/.
"""

from __future__ import annotations

import secrets
import warnings
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import psycopg
import pytest
import requests
from rasterio.errors import NotGeoreferencedWarning
from rasterio.io import MemoryFile

from ingest.adapters import pgstac
from ingest.collections import load_spec
from ingest.harvest import harvest
from ingest.reader import ensure_reader
from ingest.state.machine import State
from ingest.web.browser import DEFAULT_DIR
from tests.browser import Tab, chromium, tab
from tests.conftest import ROOT, Stack
from tests.integration.api import ApiServer, api_server, with_user
from tests.integration.conftest import World, WorldFactory

KINDS = ("S2_MSI_L2A", "S2_MSI_L1C", "S1_SAR_GRD")
LOAD_S = 30_000  # ms: STAC Browser's first start on a loaded 2-core machine


@pytest.fixture(scope="module", autouse=True)
def built() -> None:
    # bootstrap.sh builds it; a missing build is a set-up fault to report, not a reason to pass
    assert (DEFAULT_DIR / "index.html").is_file(), "STAC Browser is not built: run scripts/bootstrap.sh"


def _reader_server(dsn: str, stack: Stack, tmp_path: Path, world: World | None) -> Iterator[ApiServer]:
    role = "reader_" + secrets.token_hex(5)
    reader = with_user(dsn, role, secrets.token_urlsafe(18))
    ensure_reader(dsn, reader)
    env: dict[str, str] = {}
    if world is not None:  # thumbnails are presigned by the API: the bucket of the S2 L2A world
        s = world.settings
        assert s.s3_endpoint_url and s.s3_access_key_id and s.s3_secret_access_key
        env = {
            "INGEST_S3_ENDPOINT_URL": s.s3_endpoint_url, "INGEST_S3_REGION": s.s3_region,
            "INGEST_S3_BUCKET": s.s3_bucket, "INGEST_S3_ACCESS_KEY_ID": s.s3_access_key_id.get_secret_value(),
            "INGEST_S3_SECRET_ACCESS_KEY": s.s3_secret_access_key.get_secret_value(),
        }  # fmt: skip
    try:
        with api_server(reader, tmp_path, **env) as server:
            yield server
    finally:
        with psycopg.connect(stack.database("postgres"), autocommit=True) as conn:
            conn.execute(f"DROP ROLE IF EXISTS {role}")


@pytest.fixture
def catalogue(make_world: WorldFactory, stack: Stack, tmp_path: Path) -> Iterator[tuple[list[World], ApiServer]]:
    worlds = []
    for kind in KINDS:
        # a work directory each: EODAG keeps a provider configuration it read once per path in a process
        world = make_world(kind, count=1, size=120, work_dir=tmp_path / f"work-{kind}")
        harvest(world.conn, world.provider, world.spec)
        out = world.process(world.entries[0].id)
        assert out.state is State.CATALOGUED, out.error
        worlds.append(world)
    yield from ((worlds, s) for s in _reader_server(worlds[0].dsn, stack, tmp_path, worlds[0]))


def _open(t: Tab, url: str) -> None:
    t.page.goto(url)
    t.page.wait_for_load_state("networkidle", timeout=LOAD_S)


def _map_pixels(t: Tab) -> int:
    """Pixels of the map that are not its background colour, from a screenshot of the map alone (the
    canvas cannot be read back: the thumbnail drawn on it comes from the store's origin)."""
    png = t.page.locator(".ol-viewport").first.screenshot()
    with warnings.catch_warnings(), MemoryFile(png) as mem, mem.open() as img:
        warnings.simplefilter("ignore", NotGeoreferencedWarning)
        rgb = img.read()[:3].reshape(3, -1).T
    colours, counts = np.unique(rgb, axis=0, return_counts=True)
    background = colours[counts.argmax()]
    return int((rgb != background).any(axis=1).sum())


def test_the_collection_list_shows_our_three_collections(catalogue: tuple[list[World], ApiServer]) -> None:
    worlds, server = catalogue
    landing = requests.get(server.url + "/", timeout=10).json()
    assert {"rel": "alternate", "type": "text/html", "title": "STAC Browser", "href": f"{server.url}/browser/"} in [
        {k: link.get(k) for k in ("rel", "type", "title", "href")} for link in landing["links"]
    ]
    with chromium() as browser, tab(browser) as t:
        _open(t, f"{server.url}/browser/")
        for world in worlds:
            t.page.get_by_text(world.spec.stac.title, exact=True).first.wait_for(timeout=LOAD_S)
        t.screenshot("browser-collections")
        assert t.page.title() and "eo-ingest" in t.page.content()
        # and on to a collection's page, which lists its item (what a person clicks next)
        l2a = worlds[0]
        t.page.get_by_text(l2a.spec.stac.title, exact=True).first.click(timeout=LOAD_S)
        t.page.wait_for_url(f"**/collections/{l2a.spec.id}", timeout=LOAD_S)
        (item,) = requests.get(f"{server.url}/collections/{l2a.spec.id}/items", timeout=10).json()["features"]
        t.page.get_by_text(item["id"]).first.wait_for(timeout=LOAD_S)
        t.page.wait_for_load_state("networkidle", timeout=LOAD_S)
        t.screenshot("browser-collection")
        assert t.problems() == []


def test_an_item_page_shows_its_footprint_and_thumbnail(catalogue: tuple[list[World], ApiServer]) -> None:
    worlds, server = catalogue
    l2a = worlds[0]
    items = requests.get(f"{server.url}/collections/{l2a.spec.id}/items", timeout=10).json()["features"]
    (item,) = items
    assert item["assets"]["thumbnail"]["href"].startswith(server.url)  # through the API, not s3://
    with chromium() as browser, tab(browser) as t:
        _open(t, f"{server.url}/browser/#/collections/{l2a.spec.id}/items/{item['id']}")
        t.page.get_by_text(item["id"]).first.wait_for(timeout=LOAD_S)
        t.page.wait_for_selector(".ol-viewport canvas", timeout=LOAD_S)
        t.page.wait_for_function(
            "() => [...document.querySelectorAll('.ol-viewport canvas')].some(c => c.width > 0 && c.height > 0)",
            timeout=LOAD_S,
        )
        img = t.page.locator("img[src*='/assets/thumbnail']").first
        img.wait_for(state="attached", timeout=LOAD_S)
        t.page.wait_for_function("i => i.complete && i.naturalWidth > 0", arg=img.element_handle(), timeout=LOAD_S)
        t.page.wait_for_load_state("networkidle", timeout=LOAD_S)
        t.screenshot("browser-item")
        assert _map_pixels(t) > 1000  # the footprint and the thumbnail on it (no base map: nothing else would be)
        assert img.evaluate("i => i.naturalWidth") > 0
        assert t.problems() == []


def test_an_empty_catalogue_opens_without_errors(migrated_db: str, stack: Stack, tmp_path: Path) -> None:
    for server in _reader_server(migrated_db, stack, tmp_path, None):
        with chromium() as browser, tab(browser) as t:
            _open(t, f"{server.url}/browser/")
            t.page.get_by_text("eo-ingest").first.wait_for(timeout=LOAD_S)
            t.screenshot("browser-empty")
            assert t.problems() == []


def test_a_collection_without_items_opens_without_errors(migrated_db: str, stack: Stack, tmp_path: Path) -> None:
    # what a collection whose every product failed looks like to the public: published, no item
    spec = load_spec(ROOT / "collections" / "sentinel-1-grd.yaml")
    pgstac.upsert_collections(migrated_db, [spec.stac_collection()])
    for server in _reader_server(migrated_db, stack, tmp_path, None):
        assert requests.get(f"{server.url}/collections/{spec.id}/items", timeout=10).json()["features"] == []
        with chromium() as browser, tab(browser) as t:
            _open(t, f"{server.url}/browser/")
            t.page.get_by_text(spec.stac.title, exact=True).first.click(timeout=LOAD_S)
            t.page.wait_for_url(f"**/collections/{spec.id}", timeout=LOAD_S)
            t.page.wait_for_load_state("networkidle", timeout=LOAD_S)
            t.page.get_by_text(spec.stac.description[:40]).first.wait_for(timeout=LOAD_S)
            t.screenshot("browser-collection-without-items")
            assert t.problems() == []


def test_the_browser_route_refuses_what_it_does_not_serve(migrated_db: str, stack: Stack, tmp_path: Path) -> None:
    for server in _reader_server(migrated_db, stack, tmp_path, None):
        got = requests.get(server.url + "/browser", timeout=10, allow_redirects=False)
        assert got.status_code == 308 and got.headers["location"] == "/browser/"
        index = requests.get(server.url + "/browser/", timeout=10)
        assert index.status_code == 200 and index.headers["content-type"].startswith("text/html")
        assert '<script src="/browser/config.js">' in index.text and 'rel="icon"' in index.text
        config = requests.get(server.url + "/browser/config.js", timeout=10)
        assert config.headers["content-type"].startswith("text/javascript")
        assert f'"catalogUrl": "{server.url}/"' in config.text
        for path in ("/browser/../pyproject.toml", "/browser/%2e%2e/%2e%2e/pyproject.toml", "/browser/.inputs",
                     "/browser/js", "/browser/nothing.js", "/browser/..%2f..%2fREADME.md"):  # fmt: skip
            answer = requests.get(server.url + path, timeout=10, allow_redirects=False)
            assert 400 <= answer.status_code < 500, (path, answer.status_code)
        assert requests.post(server.url + "/browser/", timeout=10).status_code == 405
        assert requests.delete(server.url + "/browser/index.html", timeout=10).status_code == 405


def test_a_sentinel3_item_page_shows_its_swath_and_its_netcdf_files(
    make_world: WorldFactory, stack: Stack, tmp_path: Path
) -> None:
    # no thumbnail (a SEN3 folder has no quick-look) and assets that are netCDF, not COGs
    world = make_world("S3_EFR", count=1, size=64)
    harvest(world.conn, world.provider, world.spec)
    out = world.process(world.entries[0].id)
    assert out.state is State.CATALOGUED, out.error
    for server in _reader_server(world.dsn, stack, tmp_path, world):
        (item,) = requests.get(f"{server.url}/collections/{world.spec.id}/items", timeout=10).json()["features"]
        assert "thumbnail" not in item["assets"] and "oa01-radiance" in item["assets"]
        with chromium() as browser, tab(browser) as t:
            _open(t, f"{server.url}/browser/#/collections/{world.spec.id}/items/{item['id']}")
            t.page.get_by_text(item["id"]).first.wait_for(timeout=LOAD_S)
            t.page.wait_for_function(
                "() => [...document.querySelectorAll('.ol-viewport canvas')].some(c => c.width > 0 && c.height > 0)",
                timeout=LOAD_S,
            )
            description = item["assets"]["oa01-radiance"]["description"]  # in the asset list, folded
            t.page.get_by_text(description).first.wait_for(state="attached", timeout=LOAD_S)
            t.page.wait_for_load_state("networkidle", timeout=LOAD_S)
            t.screenshot("browser-sentinel3-item")
            assert _map_pixels(t) > 200  # the swath's footprint
            assert t.problems() == []
