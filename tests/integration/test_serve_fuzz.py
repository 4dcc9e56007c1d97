"""Fuzz of a real ``ingest serve`` (two workers): random and hostile values for every parameter of every
endpoint, GET and POST. It fails on any 5xx, on any worker that dies, and on resident memory growing
past a bound. Hypothesis shrinks a failure to the smallest request that shows it.

Here it runs a fixed, derandomised set (``FUZZ_EXAMPLES``, 300 by default); ``scripts/fuzz-api.sh``
runs it longer with a fresh seed each time.
"""

from __future__ import annotations

import json
import os
from collections.abc import Iterator
from typing import Any
from urllib.parse import quote

import pytest
import requests
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from tests.conftest import Stack
from tests.integration.api import (
    ApiDatabase,
    ApiServer,
)
from tests.integration.hostile import GROWTH_MB, small_catalogue, total_rss_mb, two_workers, workers

EXAMPLES = int(os.environ.get("FUZZ_EXAMPLES", "300"))
SEEDED = "FUZZ_SEED" in os.environ

PARAMS = [
    "ids", "collections", "bbox", "intersects", "datetime", "limit", "query", "fields", "sortby",
    "filter", "filter-lang", "filter-crs", "token", "q", "since", "collection", "f", "crs",
]  # fmt: skip
FRAGMENTS = [
    "\x00", "'", '"', "\\", "%", "%00", "(", ")", "[", "]", "{", "}", ",", ":", "*", "&", "|", "!", "<->", ":*",
    "NOT ", " and ", " or ", "1=1", "id", "properties.", "properties", "+", "-", "..", "/", "next:", "prev:",
    "nan", "NaN", "inf", "-Infinity", "1e999", "-1", "0", "99999999999999999999", "1.5", "é", "\u202e", "\ud7ff",
    "0001-01-01T00:00:00+14:00", "9999-12-31T23:59:59-14:00", "2024-01-01T00:00:00Z", "2024-02-30T00:00:00Z",
    "cql2-text", "cql2-json", "coll-a", "a01", "POLYGON((0 0, 1 1))", "s_intersects(geometry, ", "casei(", "LIKE",
    '{"op":"not","args":[', '{"type":"Polygon","coordinates":', "[[[", "]]]", "null", "true", "{}", "[]",
]  # fmt: skip
PATHS = ["/search", "/collections", "/collections/coll-a/items", "/deleted-items", "/", "/conformance", "/queryables"]

fragment_text = st.lists(st.sampled_from(FRAGMENTS) | st.text(max_size=8), max_size=12).map("".join)
deep = st.builds(lambda n, left, right, mid: left * n + mid + right * n,
                 st.integers(0, 3000), st.sampled_from(["(", "[", "NOT ", '{"a":', "-"]),
                 st.sampled_from([")", "]", "", "}", ""]), st.sampled_from(["1=1", "id = 'x'", "0", ""]))  # fmt: skip
json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(max_size=20) | fragment_text,
    lambda children: st.lists(children, max_size=6) | st.dictionaries(st.text(max_size=10), children, max_size=6),
    max_leaves=30,
)
values = fragment_text | deep | st.text(max_size=40) | json_values.map(json.dumps)


def _path(segments: list[str]) -> str:
    return "/collections/" + "/".join(quote(s, safe="") for s in segments)


paths = st.sampled_from(PATHS) | st.lists(
    fragment_text | st.sampled_from(["coll-a", "items", "a01"]), min_size=1, max_size=3
).map(_path)
# what proxies and clients put in the headers the API builds its links from (latin-1: what HTTP carries)
# (requests refuses values with leading or trailing whitespace: not something a client can send)
header_text = st.text(st.characters(min_codepoint=0x20, max_codepoint=0xFF), max_size=30).map(
    str.strip
) | st.sampled_from(
    ["https", "http", "a b/c", 'host="x";proto=https', "for=1.2.3.4;host=h;proto=ftp", "[::1]:8080", "h:99999", "/p"]
)
headers = st.dictionaries(
    st.sampled_from(
        ["X-Forwarded-Host", "X-Forwarded-Proto", "X-Forwarded-Prefix", "X-Forwarded-Port", "Forwarded", "Host"]
    ),
    header_text,
    max_size=3,
)
get_requests = st.tuples(paths, st.dictionaries(st.sampled_from(PARAMS) | st.text(max_size=6), values, max_size=5))
post_bodies = (
    st.dictionaries(st.sampled_from(PARAMS), json_values | values, max_size=5).map(lambda d: json.dumps(d).encode())
    | json_values.map(lambda v: json.dumps(v).encode())
    | st.binary(max_size=200)
    | deep.map(str.encode)
)


@pytest.fixture(scope="module")
def db(stack: Stack, migrated_template: str) -> Iterator[ApiDatabase]:
    with small_catalogue(stack, migrated_template, 4) as d:
        yield d


@pytest.fixture(scope="module")
def server(db: ApiDatabase, tmp_path_factory: pytest.TempPathFactory) -> Iterator[ApiServer]:
    with two_workers(db, tmp_path_factory.mktemp("fuzz")) as s:
        yield s


def _check(server: ApiServer, pids: list[int], r: requests.Response, what: str) -> None:
    assert r.status_code < 500, f"{what} -> {r.status_code} {r.text[:300]}"
    assert workers(server) == pids, f"a worker died on {what}"


def test_fuzz_every_endpoint(server: ApiServer) -> None:
    pids = workers(server)
    warm = {"filter": "NOT id = 'x'"}
    for _ in range(4):  # warm up: connections, caches
        assert requests.get(server.url + "/search", params=warm, timeout=30).status_code == 200
    before = total_rss_mb(pids)
    session = requests.Session()  # never follows a redirect: its Location is built from the fuzzed Host

    @settings(
        max_examples=EXAMPLES,
        derandomize=not SEEDED,
        deadline=None,
        database=None,
        suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large, HealthCheck.function_scoped_fixture],
    )
    @given(
        st.one_of(get_requests.map(lambda g: ("GET", *g)), post_bodies.map(lambda b: ("POST", "/search", b))),
        headers,
    )
    def one(request: tuple[str, str, Any], extra: dict[str, str]) -> None:
        method, path, payload = request
        if method == "GET":
            r = session.get(server.url + path, params=payload, headers=extra, timeout=60, allow_redirects=False)
        else:
            sent = {**extra, "Content-Type": "application/json"}
            r = session.post(server.url + path, data=payload, headers=sent, timeout=60, allow_redirects=False)
        _check(server, pids, r, f"{method} {path} {str(payload)[:300]!r} headers {extra!r}")

    one()
    grown = total_rss_mb(pids) - before
    assert grown < GROWTH_MB * len(pids), f"workers grew by {grown:.0f} MB over {EXAMPLES} requests"
    assert "Traceback" not in server.output()
