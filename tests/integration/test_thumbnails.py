"""The ``thumbnail`` asset through the real pipeline (generated products, SeaweedFS, pgstac) and through
``ingest serve`` without the asset gateway: a browser on another origin shows it, a protected
collection's thumbnail needs a token, bad ids are 4xx; bad previews leave a catalogued product without
a thumbnail and a recorded reason."""

from __future__ import annotations

import hashlib
import re
import secrets
import threading
import warnings
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import timedelta
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt
import psycopg
import pytest
import requests
from lxml import etree  # type: ignore[import-untyped]  # no stubs
from rasterio.errors import NotGeoreferencedWarning
from rasterio.io import MemoryFile

from ingest.access.policy import AccessPolicy
from ingest.adapters import pgstac
from ingest.catalog.publish import sync_collections
from ingest.devtools.catalog import add_product
from ingest.devtools.generator import zip_product
from ingest.devtools.publish import ProductPlan, generate, safe_geometry
from ingest.harvest import harvest
from ingest.reader import ensure_reader
from ingest.stages.preview import MAX_SIZE
from ingest.state import repo
from ingest.state.machine import State
from tests.browser import chromium, tab
from tests.conftest import Stack
from tests.integration.api import ApiServer, api_server, with_user
from tests.integration.conftest import START, World, WorldFactory
from tests.integration.test_pipeline import _refresh_manifest


def _catalogued(world: World, pid: str) -> dict[str, Any]:
    out = world.process(pid)
    assert out.state is State.CATALOGUED, out.error
    row = repo.get_product(world.conn, pid)
    assert row is not None
    item = pgstac.get_item(world.dsn, world.spec.id, row["item_id"])
    assert item is not None
    return item


def _thumbnail_pixels(world: World, item: dict[str, Any]) -> npt.NDArray[np.uint8]:
    """The stored thumbnail's RGBA pixels, after checking the asset against its object."""
    asset = item["assets"]["thumbnail"]
    assert asset["roles"] == ["thumbnail"] and asset["type"] == "image/png" and asset["title"]
    key = asset["href"].removeprefix(f"s3://{world.store.bucket}/")
    assert key == world.store.item_key(world.spec.id, item["id"], "thumbnail.png")  # beside the COGs
    head = world.store.head(key)
    assert head is not None and head.content_type == "image/png" and head.size == asset["file:size"]
    data = requests.get(world.store.presign(key, method="GET", expires_s=60), timeout=10).content
    assert "1220" + hashlib.sha256(data).hexdigest() == asset["file:checksum"]
    with warnings.catch_warnings(), MemoryFile(data) as mem, mem.open() as png:
        warnings.simplefilter("ignore", NotGeoreferencedWarning)
        assert png.driver == "PNG" and png.count == 4
        return np.asarray(png.read(), dtype=np.uint8)


def _convert_event(world: World, pid: str) -> dict[str, Any]:
    return next(e for e in repo.events_of(world.conn, pid) if e["to_state"] == "converted")


def test_s2_thumbnail_is_true_colour_with_transparent_nodata(make_world: WorldFactory) -> None:
    world = make_world("S2_MSI_L2A", count=1, size=1200)
    harvest(world.conn, world.provider, world.spec)
    pid = world.entries[0].id
    pixels = _thumbnail_pixels(world, _catalogued(world, pid))
    assert max(pixels.shape[1:]) == MAX_SIZE  # a 1200 px TCI, downscaled to the long side
    alpha = pixels[3]
    # the generator's nodata strip along the west edge is transparent, the scene opaque and coloured
    assert (alpha[:, 0] == 0).all() and (alpha[:, -1] == 255).all()
    assert pixels[:3, alpha == 255].std() > 1
    event = _convert_event(world, pid)
    assert "thumbnail from true colour visual" in event["message"]
    assert event["details"]["thumbnail_s"] >= 0


def test_s1_thumbnail_is_the_quick_look(make_world: WorldFactory) -> None:
    world = make_world("S1_SAR_GRD", count=1, size=400)
    harvest(world.conn, world.provider, world.spec)
    pid = world.entries[0].id
    pixels = _thumbnail_pixels(world, _catalogued(world, pid))
    # the generator's quick-look is 1/20 of the measurement (400 x 255 samples/lines): never upscaled
    assert pixels.shape == (4, 255 // 20, 400 // 20)
    assert (pixels[3] == 255).all()
    assert "thumbnail from quick-look thumbnail" in _convert_event(world, pid)["message"]


# ----------------------------------------------------------------------------- bad previews


def _garbage_quick_look(safe: Path) -> Path | None:
    ql = safe / "preview" / "quick-look.png"
    ql.write_bytes(b"\x89PNG\r\n\x1a\n" + b"\x17" * 3000)  # a PNG signature, then nothing valid
    return ql


def _no_quick_look(safe: Path) -> Path | None:
    """No quick-look, and a manifest that does not list it (stactools links it all the same)."""
    (safe / "preview" / "quick-look.png").unlink()
    manifest = safe / "manifest.safe"
    tree = etree.parse(str(manifest))
    (loc,) = [e for e in tree.iter("fileLocation") if e.get("href") == "./preview/quick-look.png"]
    data_object = loc.getparent().getparent()
    data_object.getparent().remove(data_object)
    manifest.write_bytes(etree.tostring(tree, xml_declaration=True, encoding="UTF-8"))
    return None


def _publish_s1(world: World, alter: Any) -> str:
    plan = ProductPlan("S1_SAR_GRD", START + timedelta(days=3), START + timedelta(days=4), seed=7)
    safe = generate(plan, world.settings.work_dir.parent / "altered", size=200)
    geometry = safe_geometry(safe)
    changed = alter(safe)
    if changed is not None:
        _refresh_manifest(safe, changed)
    zipped = zip_product(safe, world.settings.work_dir.parent / f"{safe.stem}.zip")
    entry = add_product(
        world.root, zipped, collection="S1_SAR_GRD", geometry=geometry, datetime=plan.sensing, published=plan.published
    )
    return entry.id


@pytest.mark.parametrize(
    ("alter", "cause"),
    [
        (_garbage_quick_look, r"no thumbnail: quick-look quick-look\.png cannot be read: "),
        (_no_quick_look, r"no thumbnail: quick-look quick-look\.png is not in the product"),
    ],
)
def test_bad_quick_look_leaves_a_catalogued_product_without_thumbnail(
    make_world: WorldFactory, alter: Any, cause: str, caplog: pytest.LogCaptureFixture
) -> None:
    world = make_world("S1_SAR_GRD", count=0)
    pid = _publish_s1(world, alter)
    harvest(world.conn, world.provider, world.spec)
    with caplog.at_level("WARNING", logger="ingest.pipeline"):
        item = _catalogued(world, pid)
    assert "thumbnail" not in item["assets"] and "vv" in item["assets"]
    assert not [k for k in world.store.list_keys(world.store.item_prefix(world.spec.id, item["id"])) if "thumb" in k]
    event = _convert_event(world, pid)
    assert re.search(cause, event["message"]), event["message"]
    assert event["details"]["no_thumbnail"] in event["message"]
    assert any(pid in r.getMessage() and re.search(cause, r.getMessage()) for r in caplog.records)


# ----------------------------------------------------------------------------- served


@contextmanager
def _page_server(html: str) -> Iterator[str]:
    """A page on an origin of its own (another port on loopback, as a STAC Browser would be)."""

    class Page(BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            body = html.encode()
            self.send_response(200)
            self.send_header("Content-Type", "text/html; charset=utf-8")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, format: str, *args: Any) -> None:
            pass

    httpd = ThreadingHTTPServer(("127.0.0.1", 0), Page)
    thread = threading.Thread(target=httpd.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{httpd.server_address[1]}/"
    finally:
        httpd.shutdown()
        httpd.server_close()


@pytest.fixture
def served(make_world: WorldFactory, stack: Stack, tmp_path: Path) -> Iterator[tuple[World, ApiServer, str]]:
    world = make_world("S2_MSI_L2A", count=1, size=120)
    harvest(world.conn, world.provider, world.spec)
    item = _catalogued(world, world.entries[0].id)
    role = "reader_" + secrets.token_hex(5)
    reader = with_user(world.dsn, role, secrets.token_urlsafe(18))
    ensure_reader(world.dsn, reader)
    s = world.settings
    assert s.s3_endpoint_url and s.s3_access_key_id and s.s3_secret_access_key
    env = {
        "INGEST_S3_ENDPOINT_URL": s.s3_endpoint_url, "INGEST_S3_REGION": s.s3_region, "INGEST_S3_BUCKET": s.s3_bucket,
        "INGEST_S3_ACCESS_KEY_ID": s.s3_access_key_id.get_secret_value(),
        "INGEST_S3_SECRET_ACCESS_KEY": s.s3_secret_access_key.get_secret_value(),
    }  # fmt: skip
    try:
        with api_server(reader, tmp_path, **env) as server:
            yield world, server, item["id"]
    finally:
        with psycopg.connect(stack.database("postgres"), autocommit=True) as conn:
            conn.execute(f"DROP ROLE IF EXISTS {role}")


def test_served_thumbnail_is_shown_by_a_browser_on_another_origin(served: tuple[World, ApiServer, str]) -> None:
    world, server, item_id = served
    base = f"{server.url}/collections/{world.spec.id}/items"
    item = requests.get(f"{base}/{item_id}", timeout=10).json()
    thumb = item["assets"]["thumbnail"]
    assert thumb["href"] == f"{base}/{item_id}/assets/thumbnail"  # the API's route, not s3://
    assert thumb["alternate"]["s3"]["href"].startswith(f"s3://{world.settings.s3_bucket}/")
    assert item["assets"]["blue"]["href"].startswith("s3://")  # the gateway is off: other assets as they were
    got = requests.get(thumb["href"], timeout=10)
    assert got.status_code == 200 and got.headers["Content-Type"] == "image/png"
    assert got.history[0].status_code == 307
    assert "1220" + hashlib.sha256(got.content).hexdigest() == thumb["file:checksum"]

    page = f'<!doctype html><link rel="icon" href="data:,"><img id="t" src="{thumb["href"]}">'
    with _page_server(page) as page_url, chromium() as browser, tab(browser) as t:
        t.page.goto(page_url)  # another origin (port) than the API's
        t.page.wait_for_function("document.getElementById('t').complete")
        shown = t.page.evaluate("(i => [i.naturalWidth, i.naturalHeight])(document.getElementById('t'))")
        t.screenshot("thumbnail-served")
        assert t.problems() == []
    with warnings.catch_warnings(), MemoryFile(got.content) as mem, mem.open() as png:
        warnings.simplefilter("ignore", NotGeoreferencedWarning)
        assert shown == [png.width, png.height] and png.width > 0

    # bad ids are 404, other assets are not served without the gateway
    for path in (
        f"/collections/nope/items/{item_id}/assets/thumbnail",
        f"/collections/{world.spec.id}/items/nope/assets/thumbnail",
        f"/collections/{world.spec.id}/items/{item_id}/assets/blue",
        f"/collections/{world.spec.id}/items/{item_id}/assets/..%2Fx",
    ):
        answer = requests.get(server.url + path, timeout=10, allow_redirects=False)
        assert 400 <= answer.status_code < 500, (path, answer.status_code)

    # a protected collection's thumbnail needs what its other assets need: a token
    world.spec = world.spec.model_copy(update={"access": AccessPolicy(policy="authenticated")})
    sync_collections(world.settings, [world.spec])
    refused = requests.get(thumb["href"], timeout=10, allow_redirects=False)
    assert refused.status_code == 401 and refused.headers["WWW-Authenticate"].startswith("Bearer")
