"""The dashboard's pure parts: ages, a retention policy's next run, the map's cells as the page gets them,
and the routes that need no database."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta

from pydantic import SecretStr

from ingest.collections import Retention
from ingest.dashboard import footprints
from ingest.dashboard.data import age_s, next_run, retention_doc
from ingest.dashboard.http import ASSETS, Dashboard
from ingest.settings import Settings

NOW = datetime(2026, 3, 4, 10, 15, tzinfo=UTC)  # a Wednesday


def test_age_is_seconds_to_now_and_none_without_a_time() -> None:
    assert age_s(NOW, NOW - timedelta(hours=2, seconds=0.26)) == 7200.3
    assert age_s(NOW, None) is None


def test_next_run_follows_the_cron_of_the_yaml_with_sunday_as_0() -> None:
    assert next_run("30 3 * * *", NOW) == datetime(2026, 3, 5, 3, 30, tzinfo=UTC)
    assert next_run("0 12 * * *", NOW) == datetime(2026, 3, 4, 12, 0, tzinfo=UTC)  # later today
    assert next_run("0 3 * * 0", NOW) == datetime(2026, 3, 8, 3, 0, tzinfo=UTC)  # Sunday, not Monday


def test_retention_document_says_the_policy_and_its_next_run_only_when_on() -> None:
    on = retention_doc(Retention(enabled=True, max_age=timedelta(days=15), keep_latest=2, schedule="0 4 * * *"), NOW)
    assert on == {
        "enabled": True, "max_age": "P15D", "max_age_s": 15 * 86400.0, "anchor": "sensing", "keep_latest": 2,
        "area": False, "schedule": "0 4 * * *", "next_run": datetime(2026, 3, 5, 4, 0, tzinfo=UTC),
    }  # fmt: skip
    off = retention_doc(Retention(), NOW)
    assert off["enabled"] is False and off["next_run"] is None and off["max_age"] is None


def test_a_cell_is_coloured_by_its_worst_state() -> None:
    def cell(ok: int, bad: int, n: int) -> footprints.Cell:
        return footprints.Cell("c", 0, 0, n, ok, bad, None)

    assert cell(3, 0, 3).worst == "catalogued"
    assert cell(2, 0, 3).worst == "pending" and cell(2, 0, 3).pending == 1
    assert cell(2, 1, 3).worst == "failing"
    assert cell(0, 4, 4).worst == "failing" and cell(0, 4, 4).pending == 0


def test_cells_become_compact_rows_with_edges_in_degrees_and_ages_in_days() -> None:
    found = [
        footprints.Cell("s2", -3, 41, 5, 4, 1, NOW - timedelta(days=1, hours=12)),
        footprints.Cell("s1", 10, -2, 2, 0, 0, None),
    ]
    doc = footprints.as_document(found, NOW, cell_deg=0.5)
    assert doc["cell_deg"] == 0.5
    rows = [dict(zip(doc["columns"], r, strict=True)) for r in doc["cells"]]
    assert rows[0] == {
        "collection": "s2", "west": -1.5, "south": 20.5, "products": 5, "catalogued": 4, "failing": 1,
        "pending": 0, "worst": "failing", "newest_age_days": 1.5,
    }  # fmt: skip
    assert rows[1]["worst"] == "pending" and rows[1]["newest_age_days"] is None and rows[1]["west"] == 5.0


def _dashboard() -> Dashboard:
    # a database nobody listens on: the routes below must not need it
    settings = Settings(database_url=SecretStr("postgresql://u:p@127.0.0.1:1/db"), _env_file=None)  # type: ignore[call-arg]
    return Dashboard(settings)


def test_the_page_and_its_assets_are_served_and_nothing_else() -> None:
    d = _dashboard()
    for path in ("/dashboard", "/dashboard/"):
        status, body, kind = d.route(path)
        assert status == 200 and kind.startswith("text/html") and b"/dashboard/static/leaflet.js" in body
    for name in ASSETS:
        status, body, _ = d.route(f"/dashboard/static/{name}")
        assert status == 200 and body, name
    bad = ("/dashboard/static/../http.py", "/dashboard/static/", "/dashboard/nope", "/dashboard/static/index.htm")
    for path in bad:
        assert d.route(path)[0] == 404, path


def test_a_database_that_does_not_answer_gives_a_503_with_the_cause_and_no_password() -> None:
    d = _dashboard()
    status, body, kind = d.route("/dashboard/data.json")
    assert status == 503 and kind == "application/json"
    error = json.loads(body)["error"]
    assert "127.0.0.1" in error and ":p@" not in error
    assert d.route("/dashboard/data.json")[1] is body  # remembered: a reload does not try again at once


def test_a_route_that_raises_answers_500_and_the_endpoint_serves_on() -> None:
    import socket

    import requests

    from ingest.metrics import Endpoint

    def broken(path: str) -> tuple[int, bytes, str]:
        raise RuntimeError("boom")

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    endpoint = Endpoint("127.0.0.1", port, routes={"/dashboard": broken}).start()
    try:
        base = f"http://127.0.0.1:{port}"
        assert requests.get(base + "/dashboard/data.json", timeout=5).status_code == 500
        assert requests.get(base + "/livez", timeout=5).status_code == 200
        missing = requests.get(base + "/dashboardx", timeout=5)  # a prefix matches whole path segments only
        assert missing.status_code == 404 and "/dashboard" in missing.text
    finally:
        endpoint.close()
