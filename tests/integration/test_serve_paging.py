"""Paging through a 2,000-item catalogue over the STAC API while ingestion goes on: no duplicate and no
gap, with the default sort and with the harvester's `updated` filter and sort.

Sort keys tie on purpose (40 items share each datetime, 20 each `updated`): pgstac's token paging is
keyset paging (the token names the last item; the next page starts after its sort values, with the
id breaking ties), so ties are where an offset-like scheme would skip or repeat items."""

from __future__ import annotations

import threading
from collections import Counter
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from pystac_client import Client

from ingest.adapters import pgstac
from tests.conftest import Stack
from tests.integration.api import EUROPE, T0, ApiDatabase, ApiServer, api_database, api_server, publish, stac_item

N = 2000
CID = "paging"
DAY0 = datetime(2024, 1, 1, 10, tzinfo=UTC)


def original(i: int) -> dict[str, Any]:
    return stac_item(CID, f"p{i:04d}", DAY0 + timedelta(days=i % 50), EUROPE, T0 + timedelta(minutes=i % 100))


@pytest.fixture(scope="module")
def db(stack: Stack, migrated_template: str) -> Iterator[ApiDatabase]:
    with api_database(stack, migrated_template) as d:
        publish(d.admin_dsn, CID)
        assert pgstac.load_items(d.admin_dsn, (original(i) for i in range(N))) == N
        yield d


@pytest.fixture(scope="module")
def server(db: ApiDatabase, tmp_path_factory: pytest.TempPathFactory) -> Iterator[ApiServer]:
    with api_server(db.reader_dsn, tmp_path_factory.mktemp("serve")) as s:
        yield s


class Ingestion:
    """Loads batches of new items (datetimes among the existing ones, `updated` = now) until stopped."""

    def __init__(self, dsn: str, prefix: str) -> None:
        self.dsn, self.prefix = dsn, prefix
        self.loaded: list[str] = []
        self.stop = threading.Event()
        self.error: BaseException | None = None
        self.thread = threading.Thread(target=self._run, name="ingestion")

    def _run(self) -> None:
        batch = 0
        try:
            while not self.stop.is_set() and batch < 40:
                now = datetime.now(UTC)
                items = [
                    stac_item(
                        CID, f"{self.prefix}{batch:02d}-{k}", DAY0 + timedelta(days=(batch * 7 + k) % 50), EUROPE, now
                    )
                    for k in range(10)
                ]
                pgstac.load_items(self.dsn, items)
                self.loaded += [i["id"] for i in items]
                batch += 1
                self.stop.wait(0.05)
        except BaseException as exc:  # surfaced by join()
            self.error = exc

    def __enter__(self) -> Ingestion:
        self.thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop.set()
        self.thread.join(timeout=120)
        if self.error is not None:
            raise self.error


def page_through(client: Client, method: str = "GET", **params: Any) -> tuple[list[dict[str, Any]], int]:
    """Every feature of every page, in order, and the number of pages."""
    features: list[dict[str, Any]] = []
    pages = 0
    for page in client.search(method=method, collections=[CID], limit=100, **params).pages_as_dicts():
        features += page["features"]
        pages += 1
    return features, pages


@pytest.mark.parametrize("method", ["GET", "POST"])
def test_default_sort_pages_every_item_once_while_items_are_loaded(
    db: ApiDatabase, server: ApiServer, method: str
) -> None:
    client = Client.open(server.url)
    before = set(pgstac.item_ids(db.admin_dsn, CID))  # the 2,000, and what earlier tests loaded
    with Ingestion(db.admin_dsn, f"new-{method.lower()}-") as ingestion:
        features, pages = page_through(client, method)
        loaded_while_paging = len(ingestion.loaded)
    ids = Counter(f["id"] for f in features)
    assert [i for i, n in ids.items() if n > 1] == []  # no duplicate
    assert before - set(ids) == set()  # no gap
    assert set(ids) - before <= set(ingestion.loaded)  # the rest: items loaded meanwhile, some or all
    assert loaded_while_paging >= 10 and pages >= N // 100, (loaded_while_paging, pages)
    # the order is the documented one: datetime descending, then id descending
    keys = [(f["properties"]["datetime"], f["id"]) for f in features]
    assert keys == sorted(keys, reverse=True)


def test_incremental_harvest_by_updated_misses_nothing(db: ApiDatabase, server: ApiServer) -> None:
    """A harvester's loop: everything updated since its watermark, oldest first; the next run starts at
    the newest `updated` it saw (inclusive: ties are re-read and deduplicated by id)."""
    client = Client.open(server.url)

    def harvest(since: str) -> list[dict[str, Any]]:
        cql2 = {"op": ">=", "args": [{"property": "updated"}, {"timestamp": since}]}
        features, _ = page_through(client, "POST", filter=cql2, sortby="+properties.updated")
        return features

    with Ingestion(db.admin_dsn, "harvest-") as ingestion:
        first = harvest("2000-01-01T00:00:00Z")
    ids = Counter(f["id"] for f in first)
    assert [i for i, n in ids.items() if n > 1] == []
    assert {f"p{i:04d}" for i in range(N)} <= set(ids)
    stamps = [f["properties"]["updated"] for f in first]
    assert stamps == sorted(stamps)

    second = harvest(max(stamps))
    everything = set(pgstac.item_ids(db.admin_dsn, CID))
    assert set(ids) | {f["id"] for f in second} == everything
    assert set(ingestion.loaded) <= everything
