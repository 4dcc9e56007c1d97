"""The local provider server (ingest.devtools.provider) and its catalogue, over real HTTP."""

from __future__ import annotations

import hashlib
import http.client
import json
import logging
import os
import random
import socket
import struct
import subprocess
import sys
import time
import zipfile
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
import requests

from ingest.devtools.catalog import (
    FILE_EXTENSION,
    ProviderEntry,
    add_entries,
    add_product,
    entry_to_item,
    load_index,
)
from ingest.devtools.provider import Faults, ProviderServer
from ingest.stac_validation import SCHEMA_DIR

T0 = datetime(2024, 1, 1, tzinfo=UTC)
REPO = Path(__file__).resolve().parents[2]
N_SYN = 30
REAL_COLLECTION = "S2-REAL"


# ---------------------------------------------------------------------------------------------
# helpers and fixtures


def square(x: float, y: float = 0.0, d: float = 0.5) -> dict[str, Any]:
    ring = [[x, y], [x + d, y], [x + d, y + d], [x, y + d], [x, y]]
    return {"type": "Polygon", "coordinates": [ring]}


def make_zip(directory: Path, product_id: str, payload: int = 40_000, seed: int = 0) -> Path:
    """A product zip whose top entry is <id>.SAFE/ (stored, so sizes are predictable)."""
    directory.mkdir(parents=True, exist_ok=True)
    path = directory / f"{product_id}.zip"
    data = random.Random(seed).randbytes(payload)
    with zipfile.ZipFile(path, "w", zipfile.ZIP_STORED) as zf:
        zf.writestr(f"{product_id}.SAFE/", b"")
        zf.writestr(f"{product_id}.SAFE/manifest.safe", b"<xfdu:XFDU/>")
        zf.writestr(f"{product_id}.SAFE/measurement/data.bin", data)
    return path


def synthetic_entries(n: int = N_SYN, prefix: str = "SYN") -> list[ProviderEntry]:
    """Entry i: lon square at x=i, sensing T0 + i days, published in reversed groups of 3."""
    return [
        ProviderEntry(
            id=f"{prefix}-{i:03d}",
            collection=f"{prefix}-A" if i % 2 == 0 else f"{prefix}-B",
            geometry=square(float(i)),
            bbox=[float(i), 0.0, i + 0.5, 0.5],
            datetime=T0 + timedelta(days=i),
            published=T0 + timedelta(days=40, hours=(n - 1 - i) // 3),
            size=1000 + i,
            checksum=hashlib.sha256(str(i).encode()).hexdigest(),
            properties={"platform": "sentinel-1a" if i % 3 else "sentinel-1b", "gsd": 10 + i},
        )
        for i in range(n)
    ]


def order(entries: list[ProviderEntry]) -> list[str]:
    return [e.id for e in sorted(entries, key=lambda e: (e.published, e.id))]


def ids(response: requests.Response) -> list[str]:
    assert response.status_code == 200, response.text
    return [f["id"] for f in response.json()["features"]]


@pytest.fixture(scope="module")
def catalogue(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    root = tmp_path_factory.mktemp("provider")
    entries = synthetic_entries()
    add_entries(root, entries)
    real = []
    for i in range(3):
        pid = f"S2A_MSIL1C_2024020{i + 1}T101010_N0510_R022_T32TQM_2024020{i + 1}T120000"
        zip_path = make_zip(root.parent / "incoming", pid, payload=40_000 + i, seed=i)
        real.append(
            add_product(
                root,
                zip_path,
                collection=REAL_COLLECTION,
                geometry=square(100.0 + i),
                datetime=T0 + timedelta(days=31 + i),
                published=T0 + timedelta(days=60 + i),
                properties={"platform": "sentinel-2a", "constellation": "sentinel-2"},
            )
        )
    return {"root": root, "entries": entries, "real": real}


@pytest.fixture
def server(catalogue: dict[str, Any]) -> Iterator[ProviderServer]:
    with ProviderServer(catalogue["root"]) as srv:
        yield srv


@pytest.fixture
def session() -> Iterator[requests.Session]:
    with requests.Session() as s:
        yield s


# ---------------------------------------------------------------------------------------------
# catalogue


def test_add_product_copies_hashes_and_indexes(tmp_path: Path) -> None:
    zip_path = make_zip(tmp_path / "in", "P1", payload=10_000)
    raw = zip_path.read_bytes()
    entry = add_product(
        tmp_path / "root",
        zip_path,
        collection="C",
        geometry=square(1.0),
        datetime=T0,
        published=T0 + timedelta(days=2),
        properties={"platform": "sentinel-2b"},
    )
    stored = tmp_path / "root" / "products" / "P1.zip"
    assert stored.read_bytes() == raw and zip_path.exists()  # copied, source kept
    assert entry.checksum == hashlib.sha256(raw).hexdigest() and entry.size == len(raw)
    assert entry.bbox == [1.0, 0.0, 1.5, 0.5]
    assert load_index(tmp_path / "root") == [entry]

    moved = make_zip(tmp_path / "in", "P2")
    add_product(tmp_path / "root", moved, collection="C", geometry=square(2.0), datetime=T0, published=T0, move=True)
    assert not moved.exists() and (tmp_path / "root" / "products" / "P2.zip").exists()
    assert [e.id for e in load_index(tmp_path / "root")] == ["P1", "P2"]


def test_add_product_rejects_bad_input(tmp_path: Path) -> None:
    bad = tmp_path / "BAD.zip"
    with zipfile.ZipFile(bad, "w") as zf:
        zf.writestr("OTHER.SAFE/manifest.safe", b"x")
    with pytest.raises(ValueError, match="outside"):
        add_product(tmp_path / "root", bad, collection="C", geometry=square(0), datetime=T0, published=T0)
    good = make_zip(tmp_path, "GOOD")
    with pytest.raises(ValueError, match="timezone-aware"):
        add_product(
            tmp_path / "root", good, collection="C", geometry=square(0), datetime=datetime(2024, 1, 1), published=T0
        )
    assert load_index(tmp_path / "root") == []


def test_load_index_later_line_wins_and_skips_partial_line(tmp_path: Path) -> None:
    first, second = synthetic_entries(2)
    add_entries(tmp_path, [first, second])
    republished = ProviderEntry(**{**first.__dict__, "published": T0 + timedelta(days=99)})
    add_entries(tmp_path, [republished])
    with open(tmp_path / "index.jsonl", "a") as f:
        f.write('{"type": "Feature", "id": "half-writ')  # a writer in the middle of a line
    loaded = load_index(tmp_path)
    assert [e.id for e in loaded] == [first.id, second.id]
    assert loaded[0].published == T0 + timedelta(days=99)
    # if that writer died, the next append starts a new line and the broken one is skipped
    third = synthetic_entries(3)[2]
    add_entries(tmp_path, [third])
    assert [e.id for e in load_index(tmp_path)] == [first.id, second.id, third.id]


def test_entry_to_item_is_valid_stac(catalogue: dict[str, Any]) -> None:
    entry = catalogue["real"][0]
    item = entry_to_item(entry, "http://127.0.0.1:9/")
    asset = item["assets"]["product"]
    assert asset["href"] == f"http://127.0.0.1:9/download/{entry.id}.zip"
    assert asset["type"] == "application/zip" and asset["roles"] == ["data"]
    assert asset["file:size"] == entry.size
    assert asset["file:checksum"] == "1220" + entry.checksum
    assert FILE_EXTENSION in item["stac_extensions"]
    props = item["properties"]
    assert props["datetime"] == "2024-02-01T00:00:00Z"
    assert props["published"] == props["updated"] == "2024-03-01T00:00:00Z"
    assert props["platform"] == "sentinel-2a" and item["collection"] == REAL_COLLECTION
    assert any(link["rel"] == "self" for link in item["links"])

    from stac_pydantic import Item  # what a federation broker re-validates with

    Item.model_validate(item)
    import pystac.validation
    from pystac.validation.stac_validator import JsonSchemaSTACValidator

    class LocalSchemas(JsonSchemaSTACValidator):
        def _get_schema(self, schema_uri: str) -> dict[str, Any]:
            prefix = "https://stac-extensions.github.io/"
            if schema_uri.startswith(prefix) and schema_uri not in self.schema_cache:
                path = SCHEMA_DIR / schema_uri.removeprefix(prefix)
                self.schema_cache[schema_uri] = json.loads(path.read_text())
            return super()._get_schema(schema_uri)

    checked = pystac.validation.validate_dict(item, validator=LocalSchemas())
    assert FILE_EXTENSION in checked


# ---------------------------------------------------------------------------------------------
# STAC API


def test_landing_conformance_collections(server: ProviderServer, session: requests.Session) -> None:
    landing = session.get(server.url + "/").json()
    assert landing["type"] == "Catalog" and landing["conformsTo"]
    assert {link["rel"] for link in landing["links"]} >= {"self", "conformance", "data", "search"}
    conformance = session.get(server.url + "/conformance").json()
    assert "https://api.stacspec.org/v1.0.0/item-search" in conformance["conformsTo"]
    collections = session.get(server.url + "/collections").json()["collections"]
    assert [c["id"] for c in collections] == [REAL_COLLECTION, "SYN-A", "SYN-B"]
    real = session.get(f"{server.url}/collections/{REAL_COLLECTION}").json()
    assert real["extent"]["spatial"]["bbox"] == [[100.0, 0.0, 102.5, 0.5]]
    assert session.get(server.url + "/collections/nope").status_code == 404
    page = session.get(f"{server.url}/collections/SYN-A/items", params={"limit": 2})
    assert len(ids(page)) == 2 and page.json()["numberMatched"] == 15
    item = session.get(f"{server.url}/collections/SYN-A/items/SYN-000")
    assert item.status_code == 200 and item.json()["id"] == "SYN-000"
    assert session.get(f"{server.url}/collections/SYN-B/items/SYN-000").status_code == 404


def test_search_by_collections_get_and_post(
    server: ProviderServer, session: requests.Session, catalogue: dict[str, Any]
) -> None:
    url = server.url + "/search"
    got = session.get(url, params={"collections": "SYN-A,S2-REAL", "limit": "100"})
    expected = [e for e in catalogue["entries"] if e.collection == "SYN-A"] + catalogue["real"]
    assert ids(got) == order(expected)
    body = got.json()
    assert body["type"] == "FeatureCollection"
    assert body["numberMatched"] == body["numberReturned"] == 18
    posted = session.post(url, json={"collections": ["SYN-B"], "limit": 100})
    assert ids(posted) == order([e for e in catalogue["entries"] if e.collection == "SYN-B"])
    assert session.post(url, json={"collections": ["nothing"]}).json()["features"] == []
    assert ids(session.post(url, json={"ids": ["SYN-003", "SYN-001"]})) == ["SYN-003", "SYN-001"]


def test_search_bbox_and_intersects(server: ProviderServer, session: requests.Session) -> None:
    url = server.url + "/search"
    # squares span [i, i + 0.5]: 2.2..4.1 touches 2, 3 and 4
    assert sorted(ids(session.get(url, params={"bbox": "2.2,0,4.1,1"}))) == ["SYN-002", "SYN-003", "SYN-004"]
    assert sorted(ids(session.post(url, json={"bbox": [2.6, 0.0, 2.9, 1.0]}))) == []
    assert ids(session.post(url, json={"bbox": [100.1, 0.1, 100.2, 0.2]})) == [
        "S2A_MSIL1C_20240201T101010_N0510_R022_T32TQM_20240201T120000"
    ]
    # the triangle's bbox overlaps square 0, the triangle itself only square 1
    triangle = {"type": "Polygon", "coordinates": [[[0.4, 1.0], [1.4, 1.0], [1.4, 0.0], [0.4, 1.0]]]}
    assert ids(session.post(url, json={"intersects": triangle})) == ["SYN-001"]
    assert ids(session.get(url, params={"intersects": json.dumps(triangle)})) == ["SYN-001"]


def test_search_datetime_instant_closed_and_open(server: ProviderServer, session: requests.Session) -> None:
    url = server.url + "/search"

    def search(dt: str) -> list[str]:
        got = session.get(url, params={"collections": "SYN-A,SYN-B", "datetime": dt, "limit": "50"})
        return sorted(ids(got))

    def day(n: int) -> str:
        return (T0 + timedelta(days=n)).strftime("%Y-%m-%dT%H:%M:%SZ")

    assert search(day(5)) == ["SYN-005"]
    assert search(f"{day(5)}/{day(7)}") == ["SYN-005", "SYN-006", "SYN-007"]  # closed interval
    assert search(f"{day(27)}/..") == ["SYN-027", "SYN-028", "SYN-029"]
    assert search(f"../{day(2)}") == ["SYN-000", "SYN-001", "SYN-002"]
    assert search(f"/{day(1)}") == ["SYN-000", "SYN-001"]
    assert search("2024-01-03T12:00:00+02:00/2024-01-04T00:00:00.000Z") == ["SYN-003"]
    posted = session.post(url, json={"datetime": f"{day(10)}/{day(11)}", "collections": ["SYN-A"]})
    assert ids(posted) == ["SYN-010"]


def test_search_published_query_filter(
    server: ProviderServer, session: requests.Session, catalogue: dict[str, Any]
) -> None:
    url = server.url + "/search"
    lo, hi = T0 + timedelta(days=40, hours=2), T0 + timedelta(days=40, hours=5)
    expected = order([e for e in catalogue["entries"] if lo <= e.published < hi])
    assert len(expected) == 9
    query = {"published": {"gte": lo.isoformat(), "lt": hi.strftime("%Y-%m-%dT%H:%M:%SZ")}}
    assert ids(session.post(url, json={"query": query, "limit": 100})) == expected
    assert ids(session.get(url, params={"query": json.dumps(query), "limit": "100"})) == expected
    strict = {"published": {"gt": lo.isoformat(), "lte": hi.isoformat()}}
    assert ids(session.post(url, json={"query": strict, "limit": 100})) == order(
        [e for e in catalogue["entries"] if lo < e.published <= hi]
    )
    # the published filter combines with the core parameters; other properties work too
    both = session.post(url, json={"query": query, "collections": ["SYN-A"], "limit": 100})
    assert ids(both) == [i for i in expected if int(i[-3:]) % 2 == 0]
    platform = {"platform": {"eq": "sentinel-1b"}, "gsd": {"lt": 20}}
    assert sorted(ids(session.post(url, json={"query": platform}))) == ["SYN-000", "SYN-003", "SYN-006", "SYN-009"]


def test_paging_get_and_post_cover_everything_once(
    server: ProviderServer, session: requests.Session, catalogue: dict[str, Any]
) -> None:
    expected = order(catalogue["entries"])
    # GET: follow the next href
    seen: list[str] = []
    url: str | None = f"{server.url}/search?collections=SYN-A,SYN-B&limit=4"
    pages = 0
    while url:
        page = session.get(url)
        seen += ids(page)
        assert page.json()["numberMatched"] == N_SYN
        nxt = [link for link in page.json()["links"] if link["rel"] == "next"]
        url = nxt[0]["href"] if nxt else None
        pages += 1
    assert seen == expected and pages == 8
    # POST: follow the next link's method and body
    seen = []
    body: dict[str, Any] | None = {"collections": ["SYN-A", "SYN-B"], "limit": 7}
    while body is not None:
        page = session.post(server.url + "/search", json=body)
        seen += ids(page)
        nxt = [link for link in page.json()["links"] if link["rel"] == "next"]
        if nxt:
            assert nxt[0]["method"] == "POST" and nxt[0]["body"]["limit"] == 7
            assert nxt[0]["href"] == server.url + "/search"
        body = nxt[0]["body"] if nxt else None
    assert seen == expected


def test_paging_stays_exact_while_entries_are_appended(tmp_path: Path, session: requests.Session) -> None:
    first = synthetic_entries(10, prefix="OLD")
    add_entries(tmp_path, first)
    last_published = max(e.published for e in first)
    with ProviderServer(tmp_path) as srv:
        page = session.post(srv.url + "/search", json={"limit": 3})
        seen = ids(page)
        nxt = next(link for link in page.json()["links"] if link["rel"] == "next")
        # appended mid-paging: later publications, and one tied with the newest at a larger id
        new = [
            ProviderEntry(**{**e.__dict__, "published": last_published + timedelta(minutes=i)})
            for i, e in enumerate(synthetic_entries(4, prefix="NEW"))
        ]
        new.append(ProviderEntry(**{**first[0].__dict__, "id": "ZZZ", "published": last_published}))
        add_entries(tmp_path, new)
        body: dict[str, Any] | None = nxt["body"]
        while body is not None:
            page = session.post(srv.url + "/search", json=body)
            seen += ids(page)
            links = [link for link in page.json()["links"] if link["rel"] == "next"]
            body = links[0]["body"] if links else None
    assert seen == order(first + new)
    assert len(seen) == len(set(seen)) == 15


def test_pystac_client_pages_with_get_and_post(server: ProviderServer, catalogue: dict[str, Any]) -> None:
    from pystac_client import Client

    client = Client.open(server.url)
    assert sorted(c.id for c in client.get_collections()) == [REAL_COLLECTION, "SYN-A", "SYN-B"]
    query = {"published": {"gte": (T0 + timedelta(days=40, hours=3)).isoformat()}}
    expected = order([e for e in catalogue["entries"] if e.published >= T0 + timedelta(days=40, hours=3)])
    for method in ("GET", "POST"):
        search = client.search(collections=["SYN-A", "SYN-B"], query=query, limit=4, method=method)
        assert [item["id"] for item in search.items_as_dicts()] == expected, method
        assert search.matched() == len(expected)
    collection = client.get_collection("SYN-A")
    assert collection is not None and collection.get_item("SYN-002") is not None


def test_products_added_while_running_are_served(tmp_path: Path, session: requests.Session) -> None:
    root = tmp_path / "root"
    with ProviderServer(root) as srv:  # no index yet
        assert session.get(srv.url + "/search").json()["features"] == []
        entry = add_product(
            root, make_zip(tmp_path, "LATE"), collection="C", geometry=square(0), datetime=T0, published=T0
        )
        assert ids(session.get(srv.url + "/search")) == ["LATE"]
        download = session.get(f"{srv.url}/download/LATE.zip")
        assert hashlib.sha256(download.content).hexdigest() == entry.checksum


def test_bad_search_requests_answer_400(server: ProviderServer, session: requests.Session) -> None:
    url = server.url + "/search"
    for params in (
        {"bbox": "1,2,3"},
        {"datetime": "yesterday"},
        {"datetime": "2024-02-01T00:00:00Z/2024-01-01T00:00:00Z"},
        {"limit": "0"},
        {"token": "!!"},
        {"query": "{not json"},
        {"query": json.dumps({"published": {"near": "2024-01-01"}})},
        {"bbox": "0,0,1,1", "intersects": json.dumps(square(0))},
        {"filter": "platform = 'x'"},
    ):
        got = session.get(url, params=params)
        assert got.status_code == 400, params
        assert got.json()["code"] == "BadRequest"
    assert session.post(url, data=b"[1, 2").status_code == 400
    capped = session.get(url, params={"limit": 5000}).json()
    assert capped["context"]["limit"] == 1000 and capped["numberReturned"] == N_SYN + 3


# ---------------------------------------------------------------------------------------------
# downloads


def product_item(session: requests.Session, srv: ProviderServer, product_id: str) -> dict[str, Any]:
    features = session.post(srv.url + "/search", json={"ids": [product_id]}).json()["features"]
    assert len(features) == 1
    return dict(features[0])


def test_download_full_body_matches_item_checksum(
    server: ProviderServer, session: requests.Session, catalogue: dict[str, Any]
) -> None:
    entry = catalogue["real"][1]
    asset = product_item(session, server, entry.id)["assets"]["product"]
    got = session.get(asset["href"])
    assert got.status_code == 200
    assert got.headers["Content-Type"] == "application/zip"
    assert got.headers["Content-Length"] == str(entry.size) == str(asset["file:size"])
    assert got.headers["Content-Disposition"] == f'attachment; filename="{entry.id}.zip"'
    assert got.headers["Accept-Ranges"] == "bytes"
    assert got.content == (catalogue["root"] / "products" / f"{entry.id}.zip").read_bytes()
    assert "1220" + hashlib.sha256(got.content).hexdigest() == asset["file:checksum"]
    head = session.head(asset["href"])
    assert head.status_code == 200 and head.headers["Content-Length"] == str(entry.size)
    assert head.content == b""


def test_download_ranges(server: ProviderServer, session: requests.Session, catalogue: dict[str, Any]) -> None:
    entry = catalogue["real"][0]
    data = (catalogue["root"] / "products" / f"{entry.id}.zip").read_bytes()
    url = f"{server.url}/download/{entry.id}.zip"
    size = len(data)
    for header, start, end in (
        ("bytes=10-99", 10, 99),
        ("bytes=1000-", 1000, size - 1),
        ("bytes=-50", size - 50, size - 1),
        (f"bytes=5-{size + 100}", 5, size - 1),
    ):
        got = session.get(url, headers={"Range": header})
        assert got.status_code == 206, header
        assert got.headers["Content-Range"] == f"bytes {start}-{end}/{size}"
        assert got.headers["Content-Length"] == str(end - start + 1)
        assert got.content == data[start : end + 1]
    for header in (f"bytes={size}-", "bytes=-0"):
        got = session.get(url, headers={"Range": header})
        assert got.status_code == 416, header
        assert got.headers["Content-Range"] == f"bytes */{size}"
    # a resumed download (what a resuming client does) joins up to the whole file
    head = session.get(url, headers={"Range": "bytes=0-999"}).content
    tail = session.get(url, headers={"Range": "bytes=1000-"}).content
    assert head + tail == data


def test_download_unknown_product_is_404_json(server: ProviderServer, session: requests.Session) -> None:
    for path in ("/download/NOPE.zip", "/download/SYN-001.zip", "/download/..%2Findex.zip"):
        got = session.get(server.url + path)
        assert got.status_code == 404, path
        assert got.json()["code"] == "NotFound"


# ---------------------------------------------------------------------------------------------
# faults


def raw_get(srv: ProviderServer, path: str) -> tuple[int, dict[str, str], bytes, bool]:
    """(status, headers, body, complete): http.client shows a body shorter than announced."""
    conn = http.client.HTTPConnection(srv.host, srv.port, timeout=10)
    try:
        conn.request("GET", path)
        resp = conn.getresponse()
        headers = {k.lower(): v for k, v in resp.getheaders()}
        try:
            return resp.status, headers, resp.read(), True
        except http.client.IncompleteRead as exc:
            return resp.status, headers, exc.partial, False
    finally:
        conn.close()


def test_error_rate_is_seeded_and_deterministic(server: ProviderServer, session: requests.Session) -> None:
    def statuses() -> list[int]:
        return [session.get(server.url + "/search", params={"limit": 1}).status_code for _ in range(30)]

    server.set_faults(Faults(error_rate=0.4, seed=7))
    first = statuses()
    assert set(first) == {200, 500} and 5 <= first.count(500) <= 20
    server.set_faults(Faults(error_rate=0.4, seed=7))  # re-seeded: the same sequence
    assert statuses() == first
    server.set_faults(Faults(error_rate=1.0))
    assert session.get(server.url + "/download/X.zip").status_code == 500
    assert session.get(server.url + "/").status_code == 200  # landing page not faulted


def test_fail_first_n_then_recovers_per_path(
    server: ProviderServer, session: requests.Session, catalogue: dict[str, Any]
) -> None:
    server.set_faults(Faults(fail_first_n=2))
    search = [session.post(server.url + "/search", json={}).status_code for _ in range(4)]
    assert search == [503, 503, 200, 200]
    url = f"{server.url}/download/{catalogue['real'][0].id}.zip"
    assert [session.get(url).status_code for _ in range(3)] == [503, 503, 200]


def test_truncate_sends_fewer_bytes_than_content_length(server: ProviderServer, catalogue: dict[str, Any]) -> None:
    entry = catalogue["real"][0]
    server.set_faults(Faults(products={entry.id: "truncate"}))
    status, headers, body, complete = raw_get(server, f"/download/{entry.id}.zip")
    assert status == 200 and int(headers["content-length"]) == entry.size
    assert not complete and len(body) == entry.size // 2


def test_corrupt_keeps_length_changes_checksum(
    server: ProviderServer, session: requests.Session, catalogue: dict[str, Any]
) -> None:
    entry = catalogue["real"][0]
    server.set_faults(Faults(products={entry.id: "corrupt"}))
    got = session.get(f"{server.url}/download/{entry.id}.zip")
    original = (catalogue["root"] / "products" / f"{entry.id}.zip").read_bytes()
    assert got.status_code == 200 and len(got.content) == entry.size
    assert hashlib.sha256(got.content).hexdigest() != entry.checksum
    assert sum(a != b for a, b in zip(got.content, original, strict=True)) == 1


def test_vanish_and_500_products_are_listed_but_not_served(
    server: ProviderServer, session: requests.Session, catalogue: dict[str, Any]
) -> None:
    gone, broken, fine = (e.id for e in catalogue["real"])
    server.set_faults(Faults(products={gone: "vanish", broken: "500"}))
    listed = ids(session.get(server.url + "/search", params={"collections": REAL_COLLECTION}))
    assert listed == [gone, broken, fine]
    assert session.get(f"{server.url}/download/{gone}.zip").status_code == 404
    assert session.head(f"{server.url}/download/{gone}.zip").status_code == 404
    assert session.get(f"{server.url}/download/{broken}.zip").status_code == 500
    assert session.get(f"{server.url}/download/{fine}.zip").status_code == 200


def test_delay_and_throttle(server: ProviderServer, session: requests.Session, catalogue: dict[str, Any]) -> None:
    entry = catalogue["real"][2]
    server.set_faults(Faults(delay_s=0.3))
    started = time.monotonic()
    assert session.get(server.url + "/search").status_code == 200
    assert time.monotonic() - started >= 0.3
    server.set_faults(Faults(throttle_bps=entry.size * 2))  # about half a second
    started = time.monotonic()
    got = session.get(f"{server.url}/download/{entry.id}.zip")
    elapsed = time.monotonic() - started
    assert hashlib.sha256(got.content).hexdigest() == entry.checksum
    assert 0.4 <= elapsed < 3.0


def test_runtime_faults_endpoint(server: ProviderServer, session: requests.Session) -> None:
    url = server.url + "/_faults"
    assert session.get(url).json() == Faults().to_dict()
    put = session.put(url, json={"error_rate": 1.0, "products": {"A": "corrupt"}})
    assert put.status_code == 200 and put.json()["error_rate"] == 1.0
    assert session.get(server.url + "/search").status_code == 500
    patched = session.patch(url, json={"error_rate": 0, "delay_s": 0.01}).json()
    assert patched["products"] == {"A": "corrupt"} and patched["delay_s"] == 0.01
    assert session.get(server.url + "/search").status_code == 200
    assert session.put(url, json={"fail_first_n": 1}).json()["products"] == {}  # PUT replaces
    assert session.get(server.url + "/search").status_code == 503
    assert session.get(server.url + "/search").status_code == 200
    for bad in ({"error_rate": 2}, {"nope": 1}, {"products": {"A": "explode"}}, [1]):
        assert session.put(url, json=bad).status_code == 400, bad
    assert session.delete(url).json() == Faults().to_dict()
    assert server.faults == Faults()


def test_stats_count_requests_per_path_and_ranges(
    server: ProviderServer, session: requests.Session, catalogue: dict[str, Any]
) -> None:
    assert session.delete(server.url + "/_stats").status_code == 200
    url = f"{server.url}/download/{catalogue['real'][0].id}.zip"
    session.get(url)
    session.get(url, headers={"Range": "bytes=100-"})
    session.head(url)
    session.post(server.url + "/search", json={"limit": 2})
    stats = session.get(server.url + "/_stats").json()
    path = url.removeprefix(server.url)
    assert stats["total"] == 4
    assert stats["paths"] == {path: 3, "/search": 1}
    assert stats["requests"] == {f"GET {path}": 2, f"HEAD {path}": 1, "POST /search": 1}
    assert stats["ranges"][path] == [None, "bytes=100-", None]
    assert stats["statuses"][path] == {"200": 2, "206": 1}
    assert json.loads(stats["recent"][-1]["body"]) == {"limit": 2}
    assert server.stats.to_dict()["total"] == 4  # same numbers from Python


def test_client_aborting_a_download_is_not_an_error(
    server: ProviderServer,
    session: requests.Session,
    catalogue: dict[str, Any],
    caplog: pytest.LogCaptureFixture,
) -> None:
    entry = catalogue["real"][0]
    server.set_faults(Faults(throttle_bps=entry.size))  # about a second for the whole file
    with socket.create_connection((server.host, server.port)) as conn:
        conn.sendall(f"GET /download/{entry.id}.zip HTTP/1.1\r\nHost: x\r\n\r\n".encode())
        assert conn.recv(1024).startswith(b"HTTP/1.1 200")
        conn.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))  # RST
    deadline = time.monotonic() + 5
    while not server.stats.to_dict()["recent"][-1]["aborted"]:
        assert time.monotonic() < deadline, "the server did not notice the client leaving"
        time.sleep(0.02)
    assert not [r for r in caplog.records if r.levelno >= logging.ERROR]
    server.set_faults(Faults())
    assert session.get(f"{server.url}/download/{entry.id}.zip").status_code == 200


# ---------------------------------------------------------------------------------------------
# as a separate process


def test_cli_runs_as_a_separate_process(catalogue: dict[str, Any]) -> None:
    proc = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "ingest.devtools.provider",
            "--root",
            str(catalogue["root"]),
            "--port",
            "0",
            "--fail-first-n",
            "1",
            "--product-fault",
            "SYN-001=vanish",
        ],
        cwd=REPO,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        assert proc.stdout is not None
        url = proc.stdout.readline().strip()  # the first line is the base URL
        assert url.startswith("http://127.0.0.1:"), url
        assert requests.get(url + "/search", timeout=5).status_code == 503
        found = requests.get(url + "/search", params={"collections": "SYN-A"}, timeout=5)
        assert found.status_code == 200 and found.json()["numberMatched"] == 15
        faults = requests.get(url + "/_faults", timeout=5).json()
        assert faults["fail_first_n"] == 1 and faults["products"] == {"SYN-001": "vanish"}
    finally:
        proc.terminate()
        _, stderr = proc.communicate(timeout=10)
    assert proc.returncode == 0, stderr
    assert "GET /search 503" in stderr and "Traceback" not in stderr


# ---------------------------------------------------------------------------------------------
# EODAG against the provider (StacSearch + HTTPDownload)


PROVIDER_YAML = """\
localprov:
  priority: 1
  description: ingest local provider server
  url: {url}
  search:
    type: StacSearch
    api_endpoint: {url}/search
    need_auth: false
    discover_collections:
      fetch_url: null
    discover_queryables:
      fetch_url: null
      collection_fetch_url: null
    metadata_mapping:
      eodag:download_link: '$.assets.product.href'
  products:
    GENERIC_COLLECTION:
      _collection: '{{collection}}'
  download:
    type: HTTPDownload
    extract: true
    delete_archive: true
    ignore_assets: true
"""


def test_eodag_search_and_download_against_provider(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, catalogue: dict[str, Any]
) -> None:
    providers = tmp_path / "providers"
    providers.mkdir()
    ext = tmp_path / "ext_collections.json"
    ext.write_text("{}")
    with ProviderServer(catalogue["root"]) as srv:
        (providers / "localprov.yml").write_text(PROVIDER_YAML.format(url=srv.url))
        for name, value in {
            "EODAG_CFG_DIR": str(tmp_path / "cfg"),
            "EODAG_PROVIDERS_CFG_DIR": str(providers),
            "EODAG_STRICT_COLLECTIONS": "true",
            "EODAG_EXT_COLLECTIONS_CFG_URI": str(ext),
        }.items():
            monkeypatch.setenv(name, value)
        for name in list(os.environ):
            if name.startswith("EODAG__") or name == "EODAG_PROVIDERS_WHITELIST":
                monkeypatch.delenv(name)
        from eodag import EODataAccessGateway

        dag = EODataAccessGateway()
        assert [p.name for p in dag.providers.values()] == ["localprov"]
        found = dag.search(
            collection=REAL_COLLECTION, start="2024-01-01", end="2024-03-01", geom=[99.0, -1.0, 104.0, 1.0]
        )
        assert [p.properties["id"] for p in found] == [e.id for e in catalogue["real"]]
        # the publication-time filter goes through as the STAC `query` extension, unchanged
        published = dag.search(
            collection=REAL_COLLECTION,
            query={"published": {"gte": "2024-03-02T00:00:00Z", "lt": "2024-03-03T00:00:00Z"}},
        )
        assert [p.properties["id"] for p in published] == [catalogue["real"][1].id]
        sent = json.loads(srv.stats.to_dict()["recent"][-1]["body"])
        assert sent["query"] == {"published": {"gte": "2024-03-02T00:00:00Z", "lt": "2024-03-03T00:00:00Z"}}
        assert sent["collections"] == [REAL_COLLECTION]
        # paging through next links
        everything = dag.search_all(collection="SYN-A", limit=4)
        assert sorted(p.properties["id"] for p in everything) == [f"SYN-{i:03d}" for i in range(0, N_SYN, 2)]
        product = found[0]
        assert product.properties["eodag:download_link"].endswith(f"/download/{product.properties['id']}.zip")
        path = Path(dag.download(product, output_dir=str(tmp_path / "out")))
    safe = path / f"{product.properties['id']}.SAFE"
    assert (safe / "manifest.safe").is_file()
    assert (safe / "measurement" / "data.bin").stat().st_size == 40_000
    assert not list((tmp_path / "out").rglob("*.zip"))  # delete_archive
