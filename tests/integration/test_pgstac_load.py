"""Item loading, deletes and collection extents against a real pgstac (a fresh database per test)."""

from __future__ import annotations

import json
import time
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import psycopg
import pytest

from ingest import stack as st
from ingest.adapters import pgstac
from ingest.collections import load_spec
from ingest.errors import ConfigError, DatabaseUnavailable, InvalidProduct
from tests.conftest import ROOT, free_port

CONFIGURED = {
    "spatial": {"bbox": [[-180.0, -90.0, 180.0, 90.0]]},
    "temporal": {"interval": [["2017-03-28T00:00:00Z", None]]},
}


@pytest.fixture
def db(empty_db: str) -> str:
    st.migrate_database(empty_db)
    return empty_db


def collection(cid: str) -> dict[str, Any]:
    """The real Sentinel-2 L2A collection document (item_assets make pgstac dehydrate), renamed."""
    doc = load_spec(ROOT / "collections" / "sentinel-2-l2a.yaml").stac_collection()
    return {**doc, "id": cid, "extent": CONFIGURED}


def item(
    cid: str,
    iid: str,
    dt: str | None = "2024-01-15T10:00:00Z",
    bbox: tuple[float, float, float, float] = (1.0, 43.0, 2.0, 44.0),
    **props: Any,
) -> dict[str, Any]:
    w, s, e, n = bbox
    return {
        "type": "Feature",
        "stac_version": "1.1.0",
        "stac_extensions": [],
        "id": iid,
        "collection": cid,
        "geometry": {"type": "Polygon", "coordinates": [[[w, s], [e, s], [e, n], [w, n], [w, s]]]},
        "bbox": [w, s, e, n],
        "properties": {"datetime": dt, "platform": "sentinel-2b", **props},
        "assets": {
            "red": {
                "href": f"s3://eo-catalogue/ingest/{cid}/{iid}/B04.tif",
                "type": "image/tiff; application=geotiff; profile=cloud-optimized",
                "roles": ["data", "reflectance"],
            }
        },
        "links": [],
    }


def rows(dsn: str, cid: str) -> list[tuple[str, str]]:
    """(id, datetime) of every row of the collection, duplicates included."""
    with psycopg.connect(dsn) as conn:
        conn.execute("SET TIME ZONE 'UTC'")
        return [
            (i, d.isoformat())
            for i, d in conn.execute(
                "SELECT id, datetime FROM pgstac.items WHERE collection = %s ORDER BY id, datetime", [cid]
            )
        ]


def search(dsn: str, body: dict[str, Any]) -> list[dict[str, Any]]:
    with psycopg.connect(dsn) as conn:
        conn.execute("SET search_path TO pgstac, public")  # as stac-fastapi-pgstac does
        row = conn.execute("SELECT * FROM pgstac.search(%s)", [json.dumps(body)]).fetchone()
    assert row is not None
    return list(row[0]["features"])


def extent(dsn: str, cid: str) -> Any:
    doc = pgstac.get_collection(dsn, cid)
    assert doc is not None
    return doc["extent"]


@pytest.fixture
def two(db: str) -> str:
    """A fresh pgstac with two published collections, coll-a and coll-b."""
    pgstac.upsert_collections(db, [collection("coll-a"), collection("coll-b")])
    return db


def test_load_search_and_idempotent_reload(two: str) -> None:
    items = [item("coll-a", f"a{i}", f"2024-01-1{i}T10:00:00Z") for i in range(3)]
    assert pgstac.load_items(two, items) == 3
    assert [f["id"] for f in search(two, {"collections": ["coll-a"]})] == ["a2", "a1", "a0"]
    assert pgstac.item_ids(two, "coll-a") == ["a0", "a1", "a2"]
    assert pgstac.load_items(two, items) == 3
    assert rows(two, "coll-a") == [(f"a{i}", f"2024-01-1{i}T10:00:00+00:00") for i in range(3)]
    got = pgstac.get_item(two, "coll-a", "a1")
    assert got is not None
    # hydrated from the collection's base item: what went in comes back
    assert got["properties"] == items[1]["properties"] and got["assets"] == items[1]["assets"]
    assert got["bbox"] == items[1]["bbox"] and got["geometry"] == items[1]["geometry"]
    assert pgstac.get_item(two, "coll-a", "nope") is None and pgstac.get_item(two, "coll-b", "a1") is None


@pytest.mark.parametrize("partition_trunc", [None, "month", "year"])
def test_moved_datetime_leaves_exactly_one_row(two: str, partition_trunc: str | None) -> None:
    # month/year partitions are where pypgstac's upsert keeps the old row beside the new one
    with psycopg.connect(two) as conn:
        conn.execute("UPDATE pgstac.collections SET partition_trunc = %s WHERE id = 'coll-a'", [partition_trunc])
    pgstac.load_items(two, [item("coll-a", "m", "2024-01-15T10:00:00Z"), item("coll-a", "k", "2024-01-16T10:00:00Z")])
    for moved in ("2024-03-15T10:00:00Z", "2025-03-15T10:00:00Z"):  # another month, then another year
        assert pgstac.load_items(two, [item("coll-a", "m", moved)]) == 1
        assert [r for r in rows(two, "coll-a") if r[0] == "m"] == [("m", moved.replace("Z", "+00:00"))]
        found = search(two, {"ids": ["m"]})
        assert [(f["id"], f["properties"]["datetime"]) for f in found] == [("m", moved)]
    assert [i for i, _ in rows(two, "coll-a")] == ["k", "m"]
    assert extent(two, "coll-a")["temporal"]["interval"] == [["2024-01-16T10:00:00Z", "2025-03-15T10:00:00Z"]]


def test_mixed_datetime_spellings_load_promptly(two: str) -> None:
    # pypgstac compares these as strings: unnormalised, this batch spends minutes in CheckViolation retries
    with psycopg.connect(two) as conn:
        conn.execute("UPDATE pgstac.collections SET partition_trunc = 'month' WHERE id = 'coll-a'")
    spellings = [
        "2024-01-31T10:00:00Z",
        "2024-01-31T10:00:00.500Z",
        "2024-01-31T23:00:00-05:00",
        "2024-02-01T04:00:01+00:00",
    ]
    t = time.monotonic()
    assert pgstac.load_items(two, [item("coll-a", f"t{i}", dt) for i, dt in enumerate(spellings)]) == 4
    assert time.monotonic() - t < 10
    assert rows(two, "coll-a") == [
        ("t0", "2024-01-31T10:00:00+00:00"),
        ("t1", "2024-01-31T10:00:00.500000+00:00"),
        ("t2", "2024-02-01T04:00:00+00:00"),
        ("t3", "2024-02-01T04:00:01+00:00"),
    ]
    assert pgstac.get_item(two, "coll-a", "t2")["properties"]["datetime"] == spellings[2]  # type: ignore[index]


def test_extent_is_the_union_after_loads_and_deletes(two: str) -> None:
    assert extent(two, "coll-a") == CONFIGURED  # no items yet: the configured extent
    items = [
        item("coll-a", "west", "2023-06-01T10:20:30.123456Z", (-3.123456789012, 40.5, -1.25, 41.0)),
        item("coll-a", "north", "2024-01-15T10:00:00Z", (2.0, 50.987654321, 3.0, 51.999999999)),
        item(
            "coll-a",
            "range",
            None,
            (0.5, 39.000000001, 4.75, 42.0),
            start_datetime="2024-02-01T00:00:00Z",
            end_datetime="2024-02-03T12:00:00Z",
        ),
    ]
    pgstac.load_items(two, items)
    assert extent(two, "coll-a") == {
        "spatial": {"bbox": [[-3.123456789012, 39.000000001, 4.75, 51.999999999]]},
        "temporal": {"interval": [["2023-06-01T10:20:30.123456Z", "2024-02-03T12:00:00Z"]]},
    }
    # re-syncing the collection does not bring the configured extent back while it has items
    pgstac.upsert_collections(two, [collection("coll-a")])
    assert extent(two, "coll-a")["temporal"]["interval"][0][0] == "2023-06-01T10:20:30.123456Z"

    assert pgstac.delete_items(two, "coll-a", ["west", "range", "not-there"], batch_size=2) == 2
    assert extent(two, "coll-a") == {
        "spatial": {"bbox": [[2.0, 50.987654321, 3.0, 51.999999999]]},
        "temporal": {"interval": [["2024-01-15T10:00:00Z", "2024-01-15T10:00:00Z"]]},
    }
    assert pgstac.delete_items(two, "coll-a", ["north"]) == 1
    assert extent(two, "coll-a") == CONFIGURED and pgstac.item_ids(two, "coll-a") == []
    assert pgstac.refresh_extent(two, "coll-a") == CONFIGURED and pgstac.refresh_extent(two, "nope") is None


def test_two_collections_in_one_load_and_duplicate_ids(two: str) -> None:
    batch = [
        item("coll-a", "x", "2024-05-01T00:00:00Z", (10.0, 10.0, 11.0, 11.0)),
        item("coll-b", "x", "2024-06-01T00:00:00Z", (20.0, 20.0, 21.0, 21.0)),
        item("coll-a", "y", "2024-05-02T00:00:00Z", (10.0, 10.0, 11.0, 11.0)),
        item("coll-a", "x", "2024-05-03T00:00:00Z", (12.0, 12.0, 13.0, 13.0)),  # same id again: the last wins
    ]
    assert pgstac.load_items(two, batch) == 3
    assert rows(two, "coll-a") == [("x", "2024-05-03T00:00:00+00:00"), ("y", "2024-05-02T00:00:00+00:00")]
    assert rows(two, "coll-b") == [("x", "2024-06-01T00:00:00+00:00")]
    assert extent(two, "coll-a")["spatial"]["bbox"] == [[10.0, 10.0, 13.0, 13.0]]
    assert extent(two, "coll-b")["spatial"]["bbox"] == [[20.0, 20.0, 21.0, 21.0]]


def test_concurrent_loaders_leave_the_full_union(two: str) -> None:
    # each worker refreshes the extent after its own load; the last refresh must still see everyone's items
    def worker(w: int) -> int:
        items = [
            item(
                "coll-a",
                f"w{w}-{i}",
                f"202{w}-0{i % 9 + 1}-01T00:00:00Z",
                (w * 10.0, i * 0.5, w * 10.0 + 1, i * 0.5 + 1),
            )
            for i in range(40)
        ]
        return pgstac.load_items(two, items, batch_size=7)

    with ThreadPoolExecutor(4) as pool:
        assert sum(pool.map(worker, range(4))) == 160
    assert len(pgstac.item_ids(two, "coll-a")) == 160
    assert extent(two, "coll-a") == {
        "spatial": {"bbox": [[0.0, 0.0, 31.0, 20.5]]},
        "temporal": {"interval": [["2020-01-01T00:00:00Z", "2023-09-01T00:00:00Z"]]},
    }


def _no_geometry(i: dict[str, Any]) -> None:
    del i["geometry"]


def _null_geometry(i: dict[str, Any]) -> None:
    i["geometry"] = None


def _bad_coordinates(i: dict[str, Any]) -> None:
    i["geometry"]["coordinates"] = [[1, 2]]


def _bad_datetime(i: dict[str, Any]) -> None:
    i["properties"]["datetime"] = "2024-13-45T10:00:00Z"


def _naive_datetime(i: dict[str, Any]) -> None:
    i["properties"]["datetime"] = "2024-01-15T10:00:00"


def _no_datetime(i: dict[str, Any]) -> None:
    i["properties"]["datetime"] = None


def _backwards_range(i: dict[str, Any]) -> None:
    i["properties"].update(start_datetime="2024-02-01T00:00:00Z", end_datetime="2024-01-01T00:00:00Z")


def _unknown_collection(i: dict[str, Any]) -> None:
    i["collection"] = "not-published"


@pytest.mark.parametrize(
    ("spoil", "error", "cause"),
    [
        (_no_geometry, InvalidProduct, "no geometry"),
        (_null_geometry, InvalidProduct, "no geometry"),
        (_bad_coordinates, InvalidProduct, "rejected"),
        (_bad_datetime, InvalidProduct, "not an RFC 3339 date-time"),
        (_naive_datetime, InvalidProduct, "no UTC offset"),
        (_no_datetime, InvalidProduct, "no datetime"),
        (_backwards_range, InvalidProduct, "start_datetime is after end_datetime"),
        (_unknown_collection, ConfigError, "'not-published' is not in pgstac"),
    ],
)
def test_a_bad_item_is_named_and_touches_nothing_else(two: str, spoil: Any, error: type[Exception], cause: str) -> None:
    pgstac.load_items(two, [item("coll-b", "b1", "2024-02-01T00:00:00Z")])
    before_b = (rows(two, "coll-b"), pgstac.get_item(two, "coll-b", "b1"), extent(two, "coll-b"))
    bad = item("coll-a", "bad-one", "2024-03-01T00:00:00Z")
    spoil(bad)
    batch = [item("coll-a", "good", "2024-03-02T00:00:00Z"), item("coll-b", "b1", "2030-01-01T00:00:00Z"), bad]
    with pytest.raises(error, match=cause) as err:
        pgstac.load_items(two, batch)
    assert "'bad-one'" in str(err.value) and "none of its batch written, 0 items before it were" in str(err.value)
    assert rows(two, "coll-a") == [] and extent(two, "coll-a") == CONFIGURED
    assert (rows(two, "coll-b"), pgstac.get_item(two, "coll-b", "b1"), extent(two, "coll-b")) == before_b


def test_earlier_batches_stay_and_their_extent_follows(two: str) -> None:
    items = [item("coll-a", f"i{n}", f"2024-04-0{n + 1}T00:00:00Z") for n in range(5)]
    _no_geometry(items[4])
    with pytest.raises(InvalidProduct, match=r"'i4'.*4 items before it were"):
        pgstac.load_items(two, items, batch_size=2)
    assert pgstac.item_ids(two, "coll-a") == ["i0", "i1", "i2", "i3"]
    assert extent(two, "coll-a")["temporal"]["interval"] == [["2024-04-01T00:00:00Z", "2024-04-04T00:00:00Z"]]


def test_empty_input_does_not_even_connect() -> None:
    down = f"postgresql://x:y@127.0.0.1:{free_port()}/nothing"
    assert pgstac.load_items(down, []) == 0
    assert pgstac.load_items(down, iter(())) == 0
    assert pgstac.delete_items(down, "coll-a", []) == 0


@pytest.mark.parametrize(
    "call",
    [
        lambda dsn: pgstac.load_items(dsn, [item("coll-a", "z")]),
        lambda dsn: pgstac.delete_items(dsn, "coll-a", ["z"]),
        lambda dsn: pgstac.get_item(dsn, "coll-a", "z"),
        lambda dsn: pgstac.item_ids(dsn, "coll-a"),
        lambda dsn: pgstac.refresh_extent(dsn, "coll-a"),
    ],
)
def test_database_down_fails_fast_without_the_password(call: Any) -> None:
    secret = "pa55-not-to-be-seen"
    port = free_port()
    t = time.monotonic()
    with pytest.raises(DatabaseUnavailable) as err:
        call(f"postgresql://someone:{secret}@127.0.0.1:{port}/ingest")
    assert time.monotonic() - t < 5
    assert secret not in str(err.value) and f"127.0.0.1:{port}" in str(err.value)
