"""Benchmark: loading items into pgstac with ingest's delsert path vs a plain pypgstac insert, same run.

    .venv/bin/python benchmarks/load.py [--n 20000] [--batch-size 500] [--dsn postgresql://...]

Items are copies of a real stactools Sentinel-2 L2A item (42 assets, ~28 KB of JSON), each with
its own id, datetime (spread over a year) and footprint. Into two empty copies of the
sentinel-2-l2a collection it loads the N items
  1. with pypgstac's Loader in ``insert`` mode (the fastest it offers; fails on any existing id),
  2. with ``ingest.adapters.pgstac.load_items`` (delsert, checks, extent refresh at the end),
then loads the same N again (the idempotent path) through ``load_items`` and, for reference, through
pypgstac's ``upsert`` (which skips unchanged rows, but is unsafe with date partitions), and times an
extent refresh over the N items. Without ``--dsn`` it starts a throw-away stack (ingest.stack) on
free ports and removes it afterwards; with ``--dsn`` (pgstac migrated there) its collections are
deleted at the end.
"""

from __future__ import annotations

import argparse
import json
import secrets
import sys
import time
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import psycopg
from pypgstac.db import PgstacDB
from pypgstac.load import Loader, Methods

sys.path.insert(0, str(Path(__file__).resolve().parent))

from _common import throwaway_stack

from ingest.adapters import pgstac
from ingest.collections import load_spec

ROOT = Path(__file__).resolve().parents[1]
TEMPLATE = (
    ROOT / "tests" / "fixtures" / "sentinel2" / "safe"
    / "S2B_MSIL2A_20220413T150759_N0400_R025_T33XWJ_20220414T082126.SAFE" / "expected_output.json"
)  # fmt: skip


def synthetic_items(template: dict[str, Any], collection: str, n: int) -> list[dict[str, Any]]:
    """n variants of the template; only the varying parts are new objects (assets etc. are shared)."""
    start = datetime(2024, 1, 1, 10, 0, 0, 24000, tzinfo=UTC)
    w, s, e, n_ = template["bbox"]
    out = []
    for i in range(n):
        dx, dy = (i % 100) * 0.5, (i // 100 % 100) * 0.25
        ring = [[x + dx, y + dy] for x, y in template["geometry"]["coordinates"][0]]
        when = start + timedelta(minutes=26 * i)  # 20,000 items span a year
        out.append(
            {
                **template,
                "id": f"{template['id']}_{i:07d}",
                "collection": collection,
                "geometry": {"type": "Polygon", "coordinates": [ring]},
                "bbox": [w + dx, s + dy, e + dx, n_ + dy],
                "properties": {**template["properties"], "datetime": when.isoformat().replace("+00:00", "Z")},
            }
        )
    return out


def timed(label: str, n: int, fn: Callable[..., object], *args: Any) -> float:
    t = time.perf_counter()
    fn(*args)
    seconds = time.perf_counter() - t
    print(f"{label:52} {seconds:7.2f} s  {n / seconds:8.0f} items/s")
    return seconds


def pypgstac_load(dsn: str, items: list[dict[str, Any]], mode: Methods, batch_size: int) -> None:
    with PgstacDB(dsn=dsn) as db:
        Loader(db).load_items(iter(items), insert_mode=mode, chunksize=batch_size)


def ingest_load(dsn: str, items: list[dict[str, Any]], batch_size: int) -> None:
    pgstac.load_items(dsn, items, batch_size=batch_size)


def count(dsn: str, collection: str) -> int:
    with psycopg.connect(dsn) as conn:
        row = conn.execute("SELECT count(*) FROM pgstac.items WHERE collection = %s", [collection]).fetchone()
    return int(row[0]) if row else -1


def run(dsn: str, n: int, batch_size: int) -> None:
    template = json.loads(TEMPLATE.read_text())
    suffix = secrets.token_hex(3)
    ours, plain = f"bench-delsert-{suffix}", f"bench-insert-{suffix}"
    doc = load_spec(ROOT / "collections" / "sentinel-2-l2a.yaml").stac_collection()
    pgstac.upsert_collections(dsn, [{**doc, "id": ours}, {**doc, "id": plain}])
    try:
        items_ours, items_plain = synthetic_items(template, ours, n), synthetic_items(template, plain, n)
        size = len(json.dumps(items_ours[0]))
        print(f"{n} items of {size / 1000:.0f} KB JSON, batches of {batch_size}, pgstac {pgstac.version(dsn)}")
        insert = Methods.insert
        insert_s = timed("pypgstac insert, empty collection", n, pypgstac_load, dsn, items_plain, insert, batch_size)
        ours_s = timed("ingest load_items (delsert), empty collection", n, ingest_load, dsn, items_ours, batch_size)
        again_s = timed("ingest load_items (delsert), same items again", n, ingest_load, dsn, items_ours, batch_size)
        upsert = Methods.upsert
        upsert_s = timed(
            "pypgstac upsert, same items again (reference)", n, pypgstac_load, dsn, items_plain, upsert, batch_size
        )
        timed("refresh_extent over the collection", n, pgstac.refresh_extent, dsn, ours)
        assert count(dsn, ours) == n and count(dsn, plain) == n, "row counts differ from N"
        print(f"ratio load_items / pypgstac insert (time):  {ours_s / insert_s:5.2f}")
        print(f"ratio reload / first load (time):           {again_s / ours_s:5.2f}")
        print(f"ratio reload / pypgstac upsert reload:      {again_s / upsert_s:5.2f}")
    finally:
        with psycopg.connect(dsn) as conn:  # the delete trigger drops their partitions
            conn.execute("DELETE FROM pgstac.collections WHERE id = ANY(%s)", [[ours, plain]])


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--n", type=int, default=20_000)
    ap.add_argument("--batch-size", type=int, default=500)
    ap.add_argument("--dsn", default=None, help="a database with pgstac migrated (default: a throw-away stack)")
    args = ap.parse_args()
    if not TEMPLATE.is_file():
        raise SystemExit(f"template item not found: {TEMPLATE}")
    if args.dsn:
        run(args.dsn, args.n, args.batch_size)
    else:
        with throwaway_stack(durable=True) as env:
            dsn = env["INGEST_DATABASE_URL"]
            run(dsn, args.n, args.batch_size)


if __name__ == "__main__":
    main()
