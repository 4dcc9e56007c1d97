"""Searches answer the current processing of an acquisition (``ingest.api.current``): items the version
extension marks ``deprecated`` (``reprocessing: keep``) are found when a client names ``deprecated`` in
its filter or asks by id, never otherwise; ``numberMatched`` counts what is answered. Through ``ingest
serve`` as a real process, with plain HTTP and pystac-client."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime
from typing import Any

import psycopg
import pytest
import requests
from psycopg.types.json import Jsonb
from pystac_client import Client

from ingest.adapters import pgstac
from ingest.api.current import CURRENT
from ingest.upstream.versions import VERSION_EXT
from tests.conftest import Stack
from tests.integration.api import (
    EUROPE,
    T0,
    ApiDatabase,
    ApiServer,
    api_database,
    api_server,
    hours,
    publish,
    stac_item,
)

C = "coll-v"
DAY = datetime(2024, 5, 1, 10, tzinfo=UTC)


def versioned(iid: str, version: str, *, deprecated: bool, links: dict[str, str], n: int) -> dict[str, Any]:
    doc = stac_item(C, iid, DAY, EUROPE, T0 + hours(n))
    doc["properties"]["version"] = version
    if deprecated:
        doc["properties"]["deprecated"] = True
    doc["links"] = [
        {"rel": r, "href": f"collections/{C}/items/{t}", "type": "application/geo+json"} for r, t in links.items()
    ]
    doc["stac_extensions"] = [*doc.get("stac_extensions", []), VERSION_EXT]
    return doc


ITEMS = [
    stac_item(C, "alone", DAY, EUROPE, T0),  # never reprocessed: no version fields at all
    versioned(
        "tile-N0400",
        "N0400",
        deprecated=True,
        links={"successor-version": "tile-N0500", "latest-version": "tile-N0500"},
        n=1,
    ),
    versioned("tile-N0500", "N0500", deprecated=False, links={"predecessor-version": "tile-N0400"}, n=2),
]
EVERY_VERSION = "deprecated IS NULL OR deprecated IS NOT NULL"


@pytest.fixture(scope="module")
def db(stack: Stack, migrated_template: str) -> Iterator[ApiDatabase]:
    with api_database(stack, migrated_template) as d:
        publish(d.admin_dsn, C)
        pgstac.load_items(d.admin_dsn, ITEMS)
        yield d


@pytest.fixture(scope="module")
def server(db: ApiDatabase, tmp_path_factory: pytest.TempPathFactory) -> Iterator[ApiServer]:
    with api_server(db.reader_dsn, tmp_path_factory.mktemp("serve-versions")) as s:
        yield s


def get(server: ApiServer, path: str, **params: Any) -> dict[str, Any]:
    r = requests.get(server.url + path, params=params, timeout=30)
    assert r.status_code == 200, r.text
    body: dict[str, Any] = r.json()
    return body


def post(server: ApiServer, body: dict[str, Any]) -> dict[str, Any]:
    r = requests.post(server.url + "/search", json=body, timeout=30)
    assert r.status_code == 200, r.text
    got: dict[str, Any] = r.json()
    return got


def ids(page: dict[str, Any]) -> set[str]:
    return {f["id"] for f in page["features"]}


def test_searches_and_item_lists_answer_current_items_only(server: ApiServer) -> None:
    for page in (
        get(server, "/search", collections=C),
        get(server, f"/collections/{C}/items"),
        post(server, {"collections": [C]}),
        get(server, "/search", collections=C, filter="id LIKE 'tile%'"),  # another filter: and-ed
    ):
        assert ids(page) - {"alone"} == {"tile-N0500"}
        assert page.get("numberMatched", len(page["features"])) == len(page["features"])
    assert ids(get(server, "/search", collections=C)) == {"alone", "tile-N0500"}
    client = Client.open(server.url)
    assert {i.id for i in client.search(collections=[C], max_items=None).items()} == {"alone", "tile-N0500"}
    assert client.search(collections=[C]).matched() == 2


def test_a_client_that_names_deprecated_or_asks_by_id_gets_older_versions(server: ApiServer) -> None:
    assert ids(get(server, "/search", collections=C, filter="deprecated = true")) == {"tile-N0400"}
    every = {"alone", "tile-N0400", "tile-N0500"}
    assert ids(get(server, "/search", collections=C, filter=EVERY_VERSION)) == every
    assert ids(get(server, f"/collections/{C}/items", filter=EVERY_VERSION)) == every
    cql2_json = {"op": "=", "args": [{"property": "deprecated"}, True]}
    assert ids(post(server, {"collections": [C], "filter": cql2_json, "filter-lang": "cql2-json"})) == {"tile-N0400"}
    assert ids(get(server, "/search", ids="tile-N0400")) == {"tile-N0400"}
    older = get(server, f"/collections/{C}/items/tile-N0400")
    assert older["properties"]["deprecated"] is True
    # the stored relative links come out absolute, pointing at this API's items
    successor = next(link["href"] for link in older["links"] if link["rel"] == "successor-version")
    assert successor == f"{server.url}/collections/{C}/items/tile-N0500"
    assert get(server, successor.removeprefix(server.url))["id"] == "tile-N0500"


def test_number_matched_is_exact_after_loads_and_deletions_whatever_pgstac_cached(
    server: ApiServer, db: ApiDatabase
) -> None:
    """pgstac keeps a count per where clause in ``search_wheres`` for ``context_stats_ttl`` (a day by
    default) and serves it to readonly sessions too; any writing session's search (an operator's, a
    script's) leaves one. The API counts afresh every time."""
    body = {"collections": [C], "filter": CURRENT, "filter-lang": "cql2-json"}
    with psycopg.connect(db.admin_dsn, autocommit=True) as conn:  # a writing session: caches the count
        conn.execute("SET search_path = pgstac, public")
        conn.execute("SELECT set_config('pgstac.context', 'on', false)")
        conn.execute("SELECT pgstac.search(%s)", [Jsonb(body)])
        cached = conn.execute("SELECT total_count FROM pgstac.search_wheres WHERE total_count IS NOT NULL").fetchall()
    assert (2,) in cached
    extra = stac_item(C, "extra", DAY, EUROPE, T0 + hours(3))
    try:
        pgstac.load_items(db.admin_dsn, [extra])
        page = get(server, "/search", collections=C)
        assert ids(page) == {"alone", "tile-N0500", "extra"} and page["numberMatched"] == 3
    finally:
        pgstac.delete_items(db.admin_dsn, C, ["extra"])
    page = get(server, "/search", collections=C)
    assert ids(page) == {"alone", "tile-N0500"} and page["numberMatched"] == 2
