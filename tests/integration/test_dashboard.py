"""The operator dashboard in a real headless Chromium, on state made by the real pipeline: its figures
are those `ingest status --json` prints (the command run as an OS process), the map draws one
rectangle per grid cell of footprints over the world outline, nothing fails to load; an empty
catalogue, a collection whose products all failed, a database that does not answer; and the
scheduler process serving it beside /metrics."""

from __future__ import annotations

import json
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import pytest
import requests
from playwright.sync_api import Browser

from ingest.adapters.queue import ProductQueue, ensure_schema
from ingest.dashboard.http import PREFIX, Dashboard
from ingest.harvest import harvest
from ingest.metrics import Endpoint
from ingest.state.machine import State
from tests.browser import Tab, chromium, tab
from tests.conftest import ROOT, Stack, free_port, run_cli
from tests.integration.conftest import World, WorldFactory
from tests.integration.test_operating import ingest_process, wait_for

# what Chromium says of a response with an error status, besides the response itself
_HTTP_503 = "Failed to load resource: the server responded with a status of 503"


@pytest.fixture(scope="module")
def browser() -> Iterator[Browser]:
    with chromium() as b:
        yield b


@contextmanager
def dashboard_of(world: World, env: dict[str, str], **overrides: Any) -> Iterator[str]:
    """The dashboard on a real endpoint (the daemon's HTTP server class) for the world's collections
    folder, as `ingest status` with ``env`` sees it; yields its base URL."""
    settings = world.settings.model_copy(update={"collections_dir": Path(env["INGEST_COLLECTIONS_DIR"]), **overrides})
    endpoint = Endpoint("127.0.0.1", free_port(), routes={PREFIX: Dashboard(settings, ttl_s=0).route}).start()
    try:
        yield f"http://127.0.0.1:{endpoint.port}"
    finally:
        endpoint.close()


def status_json(env: dict[str, str]) -> dict[str, Any]:
    out = run_cli("status", "--json", env=env)
    assert out.returncode == 0, out.stderr
    doc: dict[str, Any] = json.loads(out.stdout)
    return doc


def open_page(t: Tab, url: str, *, loaded: str = "yes") -> None:
    t.page.goto(url + "/dashboard/")
    t.page.wait_for_selector(f"body[data-loaded={loaded}]", timeout=30000)


def shown(t: Tab, collection: str) -> dict[str, str]:
    """The figures of a collection's card: data-field -> text."""
    card = t.page.locator(f'[data-collection="{collection}"]')
    fields = card.locator("[data-field]")
    return {fields.nth(i).get_attribute("data-field") or "": fields.nth(i).inner_text() for i in range(fields.count())}


def text(value: Any) -> str:
    return "-" if value is None else str(value)


def assert_figures_equal(t: Tab, status: dict[str, Any]) -> None:
    for c in status["collections"]:
        figures = shown(t, c["collection"])
        expected = {f"states.{k}": str(v) for k, v in c["states"].items()}
        expected.update(
            {
                "products": str(c["products"]),
                "watermark": text(c["watermark"]),
                "last_harvest_at": text(c["last_harvest_at"]),
                "last_harvest_found": text(c["last_harvest_found"]),
                "oldest_pending": text(c["oldest_pending"]),
                "queue.todo": str(c["queue"]["todo"]),
                "queue.doing": str(c["queue"]["doing"]),
                "retirements_pending": str(c["retirements_pending"]),
            }
        )
        r = c["retention"]
        if r["enabled"]:
            expected.update(
                {"retention.max_age": text(r["max_age"]), "retention.keep_latest": str(r["keep_latest"]),
                 "retention.next_run": text(r["next_run"])}
            )  # fmt: skip
        else:
            expected["retention.enabled"] = "off"
        assert {k: figures.get(k) for k in expected} == expected, c["collection"]
        rows = t.page.locator(f'[data-collection="{c["collection"]}"] [data-failure]')
        failures = [(rows.nth(i).get_attribute("data-failure"), rows.nth(i).locator("td.cause").inner_text())
                    for i in range(rows.count())]  # fmt: skip
        assert failures == [(f["id"], f["last_error"]) for f in c["recent_failures"]]


def fail_download(world: World, pid: str) -> None:
    world.conn.execute(
        "UPDATE ingest.products SET download_url = %s WHERE id = %s", [world.server.url + "/gone.zip", pid]
    )
    assert world.process(pid).state is State.FAILED


def test_the_page_shows_what_ingest_status_prints_and_maps_the_footprints(
    make_world: WorldFactory, stack: Stack, browser: Browser
) -> None:
    world = make_world("S2_MSI_L2A", count=4, size=60)
    ids = harvest(world.conn, world.provider, world.spec).new_ids
    for pid in ids[:2]:
        assert world.process(pid).state is State.CATALOGUED
    fail_download(world, ids[2])
    world.conn.commit()
    world.conn.autocommit = True
    env = world.cli_env(stack)
    ensure_schema(world.dsn)
    with ProductQueue(world.settings) as queue:
        assert queue.enqueue([ids[3]]) == 1  # the one left discovered waits in the queue

    with dashboard_of(world, env) as url, tab(browser) as t:
        open_page(t, url)
        status = status_json(env)
        data = requests.get(url + "/dashboard/data.json", timeout=30).json()
        (c,) = status["collections"]
        assert c["states"] == {"catalogued": 2, "failed": 1, "discovered": 1} and c["queue"] == {"todo": 1, "doing": 0}
        assert "HTTP 404" in c["recent_failures"][0]["last_error"]  # the cause, as recorded
        assert_figures_equal(t, status)
        assert abs(data["collections"][0]["lag_s"] - c["lag_s"]) < 60  # two reads, seconds apart
        assert t.page.locator("#site [data-field='site.queue']").inner_text() == ", ".join(
            f"{k} {v}" for k, v in sorted(status["queue"].items())
        )
        # the map: the world outline and one rectangle per cell, coloured by the cell's worst state
        cells = data["map"]["cells"]
        assert sum(row[3] for row in cells) == 4  # every product's footprint in a cell
        assert t.page.locator("#map path.land").count() > 100  # Natural Earth's countries
        assert t.page.locator("#map path.cell").count() == len(cells) >= 1
        assert t.page.locator("#map path.cell-failing").count() >= 1  # the failed product's cell
        t.screenshot("dashboard-pipeline")
        t.page.select_option("#map-colour", "age")
        assert t.page.locator("#map path.cell").count() == len(cells)
        t.screenshot("dashboard-pipeline-by-age")
        assert t.problems() == []


def test_an_empty_catalogue_shows_its_collection_and_an_empty_map(
    make_world: WorldFactory, stack: Stack, browser: Browser
) -> None:
    world = make_world("S2_MSI_L2A", count=0)
    env = world.cli_env(stack)
    with dashboard_of(world, env) as url, tab(browser) as t:
        open_page(t, url)
        status = status_json(env)
        assert status["collections"][0]["products"] == 0
        assert_figures_equal(t, status)
        assert t.page.locator("#map path.cell").count() == 0
        assert t.page.locator("#map-summary").inner_text() == "no footprints catalogued yet"
        t.screenshot("dashboard-empty")
        assert t.problems() == []


def test_a_collection_whose_products_all_failed_shows_each_cause_red_cells_and_its_retention(
    make_world: WorldFactory, stack: Stack, browser: Browser
) -> None:
    world = make_world("S2_MSI_L2A", count=2, size=60)
    ids = harvest(world.conn, world.provider, world.spec).new_ids
    for pid in ids:
        fail_download(world, pid)
    world.conn.commit()
    world.conn.autocommit = True
    spec = (ROOT / "collections" / "sentinel-2-l2a.yaml").read_text()
    on = "retention:\n  enabled: true\n  max_age: 90d\n"
    env = world.cli_env(stack, spec.replace("retention:\n  enabled: false\n  max_age: 90d\n", on))
    with dashboard_of(world, env) as url, tab(browser) as t:
        open_page(t, url)
        status = status_json(env)
        (c,) = status["collections"]
        assert c["states"] == {"failed": 2} and len(c["recent_failures"]) == 2
        assert c["retention"]["enabled"] and c["retention"]["next_run"] is not None  # the policy is shown too
        assert_figures_equal(t, status)
        assert t.page.locator(f'[data-collection="{c["collection"]}"].failing').count() == 1
        cells = t.page.locator("#map path.cell")
        assert cells.count() >= 1 and cells.count() == t.page.locator("#map path.cell-failing").count()
        t.screenshot("dashboard-failures-only")
        assert t.problems() == []


def test_a_footprint_postgis_cannot_read_costs_the_map_not_the_figures(
    make_world: WorldFactory, stack: Stack, browser: Browser
) -> None:
    world = make_world("S2_MSI_L2A", count=0)
    world.conn.execute(
        "INSERT INTO ingest.products (id, collection, provider, footprint) VALUES (%s, %s, 'local', %s)",
        ["S2B_BROKEN_FOOTPRINT", world.spec.id, json.dumps({"type": "Polygon", "coordinates": [["x", "y"]]})],
    )
    world.conn.commit()
    env = world.cli_env(stack)
    with dashboard_of(world, env) as url, tab(browser) as t:
        open_page(t, url)
        status = status_json(env)
        assert status["collections"][0]["states"] == {"discovered": 1}
        assert_figures_equal(t, status)
        assert t.page.locator("#map-summary").inner_text().startswith("map not drawn: ")
        assert t.page.locator("#map path.cell").count() == 0
        t.screenshot("dashboard-unreadable-footprint")
        assert t.problems() == []


def test_a_database_that_does_not_answer_is_said_on_the_page_and_by_a_503(
    make_world: WorldFactory, stack: Stack, browser: Browser
) -> None:
    from pydantic import SecretStr

    world = make_world("S2_MSI_L2A", count=0)
    env = world.cli_env(stack)
    down = SecretStr(f"postgresql://ingest:pw-not-shown@127.0.0.1:{free_port()}/nothing")
    with dashboard_of(world, env, database_url=down) as url, tab(browser) as t:
        r = requests.get(url + "/dashboard/data.json", timeout=30)
        assert r.status_code == 503 and "127.0.0.1" in r.json()["error"] and "pw-not-shown" not in r.text
        open_page(t, url, loaded="error")
        assert "Data not available" in t.page.locator("#error").inner_text()
        assert t.page.locator("#map path.land").count() > 100  # the rest of the page still works
        t.screenshot("dashboard-database-down")
        assert [p for p in t.problems() if _HTTP_503 not in p and "data.json: 503" not in p] == []
        # and the endpoint still serves
        assert requests.get(url + "/dashboard/", timeout=10).status_code == 200


def test_the_scheduler_serves_the_dashboard_beside_its_metrics(
    make_world: WorldFactory, stack: Stack, tmp_path: Path
) -> None:
    world = make_world("S2_MSI_L2A", count=1, size=60)
    port = free_port()
    env = world.cli_env(stack, INGEST_METRICS_PORT=str(port))
    base = f"http://127.0.0.1:{port}"
    with ingest_process(["scheduler"], env, tmp_path / "scheduler.log"):
        wait_for(lambda: requests.get(base + "/readyz", timeout=5).status_code == 200, 60, "/readyz",
                 tmp_path / "scheduler.log")  # fmt: skip
        page = requests.get(base + "/dashboard/", timeout=10)
        assert page.status_code == 200 and "operator dashboard" in page.text
        data = requests.get(base + "/dashboard/data.json", timeout=30)
        assert data.status_code == 200
        assert [c["collection"] for c in data.json()["collections"]] == [world.spec.id]
        assert requests.get(base + "/metrics", timeout=10).status_code == 200
