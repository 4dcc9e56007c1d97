"""``ingest serve`` (two workers) under the hostile sweep: every malformed request gets its 4xx with a
message, no worker dies or balloons, slow clients are cut off, a killed worker is replaced, and
searches leave no rows behind in the database."""

from __future__ import annotations

import math
import os
import signal
import socket
import time
from collections.abc import Callable, Iterator

import psycopg
import pytest
import requests

from tests.conftest import Stack
from tests.integration.api import (
    ApiDatabase,
    ApiServer,
)
from tests.integration.hostile import (
    GROWTH_MB,
    JSON,
    small_catalogue,
    sweep,
    total_rss_mb,
    two_workers,
    wait_for_workers,
    workers,
)

DEPTH = 10  # INGEST_API_MAX_FILTER_DEPTH's default


@pytest.fixture(scope="module")
def db(stack: Stack, migrated_template: str) -> Iterator[ApiDatabase]:
    with small_catalogue(stack, migrated_template, 6) as d:
        yield d


@pytest.fixture(scope="module")
def server(db: ApiDatabase, tmp_path_factory: pytest.TempPathFactory) -> Iterator[ApiServer]:
    with two_workers(
        db, tmp_path_factory.mktemp("hostile"), **{"INGEST_API_BODY_TIMEOUT_S": "1", "INGEST_API_HEADER_TIMEOUT_S": "1"}
    ) as s:
        yield s


def not_nested(depth: int) -> str:
    return "NOT " * (depth - 1) + "id = 'a01'"


def json_not(depth: int) -> str:
    text = '{"op":"=","args":[{"property":"id"},"a01"]}'
    for _ in range(depth - 1):
        text = '{"op":"not","args":[' + text + "]}"
    return text


def test_every_hostile_request_gets_a_4xx_with_a_message_and_no_worker_dies(server: ApiServer) -> None:
    pids = workers(server)
    # warm up: connections, caches
    for _ in range(4):
        assert requests.get(server.url + "/search", params={"filter": not_nested(2)}, timeout=30).status_code == 200
    before = total_rss_mb(pids)
    wrong = []
    for case in sweep():
        r = case.send(server.url)
        if r.status_code not in case.statuses:
            wrong.append(f"{case.name}: {r.status_code} {r.text[:200]}")
        elif "json" in r.headers.get("content-type", "") and not (
            r.json().get("description") or r.json().get("detail")
        ):
            wrong.append(f"{case.name}: {r.status_code} without a message: {r.text[:200]}")
    assert wrong == [], "\n".join(wrong)
    assert workers(server) == pids, "a worker died during the sweep"
    assert requests.get(server.url + "/healthz", timeout=10).status_code == 200
    grown = total_rss_mb(pids) - before
    assert grown < GROWTH_MB * len(pids), f"workers grew by {grown:.0f} MB over the sweep"
    log = server.output()
    assert "Traceback" not in log and "Internal Server Error" not in log


@pytest.mark.parametrize("method", ["GET", "POST"])
def test_filter_families_pass_up_to_the_bound_and_get_400_past_it(server: ApiServer, method: str) -> None:
    shapes: dict[str, Callable[[int], tuple[str, str, int]]] = {
        "NOT": lambda d: ("cql2-text", not_nested(d), d - 1),
        "JSON not": lambda d: ("cql2-json", json_not(d), d - 1),
        "parentheses": lambda d: ("cql2-text", "(" * (d + 3) + "id = 'a01'" + ")" * (d + 3), 0),
    }
    everything = {f"a{i:02d}" for i in range(6)}
    for name, shape in shapes.items():
        if method == "POST" and shape(1)[0] == "cql2-text":
            continue  # POST /search takes CQL2 JSON only (stac-fastapi-pgstac answers 400)
        # 1,600 levels of JSON do not fit in a URL: refused by the query-string bound (414) or, past
        # 80 kB, by uvicorn's HTTP parser (a plain-text 400)
        for depth, expected in [(1, 200), (DEPTH // 2, 200), (DEPTH, 200), (DEPTH + 1, 400), (100, 400), (1600, 414)]:
            lang, text, nots = shape(depth)
            if method == "GET":
                r = requests.get(server.url + "/search", params={"filter-lang": lang, "filter": text}, timeout=30)
            else:
                body = f'{{"filter-lang": "cql2-json", "filter": {text}}}'
                r = requests.post(server.url + "/search", data=body, headers=JSON, timeout=30)
            if expected == 414 and (method == "POST" or lang == "cql2-text"):  # fits: refused by the scan
                expected = 400
            if expected == 414 and r.status_code == 400:
                assert r.text.startswith("Invalid HTTP request")
                continue
            assert r.status_code == expected, f"{method} {name} at depth {depth}: {r.status_code} {r.text[:300]}"
            if expected == 200:
                want = {"a01"} if nots % 2 == 0 else everything - {"a01"}
                assert {f["id"] for f in r.json()["features"]} == want, f"{method} {name} at depth {depth}"
            elif expected == 400:
                description = r.json()["description"]
                assert "filter" in description or "nested deeper" in description, description


def test_limit_past_the_bound_is_served_as_the_bound(server: ApiServer) -> None:
    r = requests.get(server.url + "/search", params={"limit": "100000000000"}, timeout=30)
    assert r.status_code == 200
    assert len(r.json()["features"]) == 6
    r = requests.post(server.url + "/search", json={"limit": 10**15}, timeout=30)
    assert r.status_code == 200 and len(r.json()["features"]) == 6


def test_searches_leave_no_rows_in_the_database(server: ApiServer, db: ApiDatabase) -> None:
    def rows() -> tuple[int, int]:
        with psycopg.connect(db.admin_dsn) as conn:
            row = conn.execute(
                "SELECT (SELECT count(*) FROM pgstac.searches), (SELECT count(*) FROM pgstac.search_wheres)"
            ).fetchone()
            assert row is not None
            return int(row[0]), int(row[1])

    before = rows()
    for i in range(30):
        r = requests.get(server.url + "/search", params={"filter": f"id = 'x{i}'", "limit": str(i + 1)}, timeout=30)
        assert r.status_code == 200
        assert r.json()["numberMatched"] == 0
    assert rows() == before


def test_a_body_shorter_than_its_content_length_is_cut_off(server: ApiServer) -> None:
    port = int(server.url.rsplit(":", 1)[1])
    with socket.create_connection(("127.0.0.1", port), timeout=10) as s:
        s.sendall(
            b'POST /search HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\nContent-Length: 100\r\n\r\n{"ids"'
        )
        started = time.monotonic()
        answer = s.recv(4096)
        waited = time.monotonic() - started
    assert answer.startswith(b"HTTP/1.1 408"), answer[:200]
    assert waited < 5
    # and headers that never end: the connection is closed
    with socket.create_connection(("127.0.0.1", port), timeout=10) as s:
        s.sendall(b"GET /search HTTP/1.1\r\nHost: x\r\nX-Slow: ")
        started = time.monotonic()
        assert s.recv(4096) == b""
        assert time.monotonic() - started < 5
    assert requests.get(server.url + "/_mgmt/ping", timeout=5).status_code == 200


def test_a_killed_worker_is_replaced_and_the_service_goes_on(server: ApiServer) -> None:
    pids = wait_for_workers(server, 2)
    os.kill(pids[0], signal.SIGKILL)
    answered = 0
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        try:
            if requests.get(server.url + "/search", timeout=5).status_code == 200:
                answered += 1
        except requests.ConnectionError:
            pass
        now = workers(server)
        if len(now) == 2 and pids[0] not in now and answered >= 5:
            break
        time.sleep(0.2)
    now = workers(server)
    assert pids[0] not in now and len(now) == 2, f"killed worker not replaced: {pids} -> {now}"
    assert pids[1] in now
    wait_for_workers(server, 2)


def test_requests_at_every_bound_are_served_and_cheap(server: ApiServer) -> None:
    # the most each bound lets through (defaults): answered, and far inside the statement timeout
    ring = [
        [10 + 0.5 * math.cos(2 * math.pi * i / 9999), 45 + 0.5 * math.sin(2 * math.pi * i / 9999)] for i in range(9999)
    ]
    at_bounds: dict[str, Callable[[], requests.Response]] = {
        "250 fields": lambda: requests.post(
            server.url + "/search", json={"fields": {"include": [f"properties.p{i}" for i in range(250)]}}, timeout=30
        ),
        "8 sort keys": lambda: requests.get(
            server.url + "/search", params={"sortby": ",".join(f"-properties.p{i}" for i in range(8))}, timeout=30
        ),
        "10 nested NOTs": lambda: requests.get(server.url + "/search", params={"filter": not_nested(10)}, timeout=30),
        "~1000 filter nodes": lambda: requests.get(
            server.url + "/search", params={"filter": " or ".join(f"id = 'x{i}'" for i in range(160))}, timeout=30
        ),
        "10,000 vertices": lambda: requests.post(
            server.url + "/search",
            json={"intersects": {"type": "Polygon", "coordinates": [[*ring, ring[0]]]}},
            timeout=30,
        ),
        "20 free-text terms": lambda: requests.get(
            server.url + "/collections", params={"q": " ".join(f"w{i}" for i in range(20))}, timeout=30
        ),
        "250 ids": lambda: requests.get(
            server.url + "/search", params={"ids": ",".join(f"a{i}" for i in range(250))}, timeout=30
        ),
        "250 query properties": lambda: requests.post(
            server.url + "/search", json={"query": {f"p{i}": {"eq": i} for i in range(250)}}, timeout=30
        ),
    }
    for name, send in at_bounds.items():
        started = time.monotonic()
        r = send()
        took = time.monotonic() - started
        assert r.status_code == 200, f"{name}: {r.status_code} {r.text[:300]}"
        assert took < 5, f"{name} took {took:.1f} s"
