"""The harvesting rule (``ingest.catalog.loading``, the landing page's ``ingest:harvesting``) against a
real pgstac and ``ingest serve``: a harvester polling ``updated >= W - S`` misses no item, also when an
item stamped earlier commits after a later one and after ``S`` (its commit slowed by a real lock on
pgstac's items table held by another session)."""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from typing import Any

import psycopg
import pytest
import requests

from ingest.adapters import pgstac
from ingest.catalog.loading import load_settled, restamped, rfc3339, server_now
from tests.conftest import Stack
from tests.integration.api import EUROPE, ApiDatabase, ApiServer, api_database, api_server, publish, stac_item

C = "coll-w"
SETTLE_S = 2.0
DAY = datetime(2024, 6, 1, 10, tzinfo=UTC)


@pytest.fixture(scope="module")
def db(stack: Stack, migrated_template: str) -> Iterator[ApiDatabase]:
    with api_database(stack, migrated_template) as d:
        publish(d.admin_dsn, C)
        yield d


@pytest.fixture(scope="module")
def server(db: ApiDatabase, tmp_path_factory: pytest.TempPathFactory) -> Iterator[ApiServer]:
    with api_server(db.reader_dsn, tmp_path_factory.mktemp("serve-w"), INGEST_UPDATED_SETTLE_S=str(SETTLE_S)) as s:
        yield s


class Harvester:
    """The README's recipe: POST /search updated >= W - S sorted by updated, every page; W = newest seen."""

    def __init__(self, url: str, settle_s: float) -> None:
        self.url, self.settle_s = url, settle_s
        self.watermark: datetime | None = None
        self.seen: dict[str, str] = {}

    def poll(self) -> set[str]:
        since = (self.watermark or datetime(2000, 1, 1, tzinfo=UTC)) - timedelta(seconds=self.settle_s)
        body: dict[str, Any] | None = {
            "collections": [C],
            "limit": 100,
            "filter": {"op": ">=", "args": [{"property": "updated"}, {"timestamp": rfc3339(since)}]},
            "sortby": [{"field": "properties.updated", "direction": "asc"}],
        }
        got: set[str] = set()
        while body is not None:
            page = requests.post(self.url + "/search", json=body, timeout=30).json()
            for f in page["features"]:
                got.add(f["id"])
                self.seen[f["id"]] = f["properties"]["updated"]
                stamp = datetime.fromisoformat(f["properties"]["updated"].replace("Z", "+00:00"))
                self.watermark = max(self.watermark or stamp, stamp)
            nxt = next((link for link in page["links"] if link["rel"] == "next"), None)
            body = nxt.get("body") if nxt else None
        return got


def stamped_item(conn: psycopg.Connection, iid: str) -> tuple[dict[str, Any], datetime]:
    now = server_now(conn)
    doc = stac_item(C, iid, DAY, EUROPE, now)
    return restamped([doc], now)[0], now


def test_the_landing_page_states_the_rule(server: ApiServer) -> None:
    rule = requests.get(server.url + "/", timeout=10).json()["ingest:harvesting"]
    assert rule["updated_settle_s"] == SETTLE_S and rule["deleted_items_settle_s"] == 60
    assert "updated >= W - 2 s" in rule["rule"]


def test_an_item_committed_late_is_stamped_anew_and_no_poll_misses_it(db: ApiDatabase, server: ApiServer) -> None:
    harvester = Harvester(server.url, SETTLE_S)
    with psycopg.connect(db.admin_dsn, autocommit=True) as conn, psycopg.connect(db.admin_dsn) as locker:
        clock = lambda: server_now(conn)  # noqa: E731
        early, early_stamp = stamped_item(conn, "early")  # stamped first ...
        time.sleep(SETTLE_S + 0.5)
        late_doc, late_stamp = stamped_item(conn, "late")
        assert load_settled(db.admin_dsn, [late_doc], stamped=late_stamp, clock=clock, settle_s=SETTLE_S) == 0
        assert harvester.poll() == {"late"}  # W = late's stamp, more than S after early's

        # ... committed last, and slowly: another session holds the items table
        locker.execute("LOCK TABLE pgstac.items IN EXCLUSIVE MODE")
        restamps: list[int] = []
        loader = threading.Thread(
            target=lambda: restamps.append(
                load_settled(db.admin_dsn, [early], stamped=early_stamp, clock=clock, settle_s=SETTLE_S)
            )
        )
        loader.start()
        time.sleep(1.0)
        assert harvester.poll() == {"late"}  # reads go on; "early" is not committed
        locker.rollback()  # the lock goes: "early" commits, more than S after its stamp
        loader.join(timeout=60)
        assert restamps == [1]  # stamped anew once
    # the naive copy would have missed it: its first stamp lies before the harvester's W - S
    assert harvester.watermark is not None and early_stamp < harvester.watermark - timedelta(seconds=SETTLE_S)
    assert "early" in harvester.poll()
    served = pgstac.get_item(db.admin_dsn, C, "early")
    assert served is not None and served["properties"]["updated"] == harvester.seen["early"] > rfc3339(late_stamp)


def test_an_item_committed_within_the_settle_time_is_found_by_the_overlap(db: ApiDatabase, server: ApiServer) -> None:
    harvester = Harvester(server.url, SETTLE_S)
    harvester.poll()
    with psycopg.connect(db.admin_dsn, autocommit=True) as conn:
        clock = lambda: server_now(conn)  # noqa: E731
        first, first_stamp = stamped_item(conn, "first")
        second, second_stamp = stamped_item(conn, "second")
        load_settled(db.admin_dsn, [second], stamped=second_stamp, clock=clock, settle_s=SETTLE_S)
        assert "second" in harvester.poll() and "first" not in harvester.seen
        assert load_settled(db.admin_dsn, [first], stamped=first_stamp, clock=clock, settle_s=SETTLE_S) == 0
    assert "first" in harvester.poll()  # stamped before W, found from W - S
    assert harvester.seen["first"] == rfc3339(first_stamp)
