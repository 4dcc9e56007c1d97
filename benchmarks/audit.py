"""Benchmark: auditing a collection of 1,000 items x 40 assets vs the bare listing of its objects, same run.

    .venv/bin/python benchmarks/audit.py [--items 1000] [--assets 40] [--rounds 3]

A throw-away stack (PostgreSQL+PostGIS+pgstac, moto's S3 server) on free ports. One collection gets N
items loaded through pypgstac (``ingest.adapters.pgstac.load_items``, so stored as pgstac stores
them), each with A assets whose hrefs name small objects under the collection's prefix, with
``file:size`` and ``file:checksum``, and N catalogued products owning them; the N x A objects are
written with their SHA-256 in metadata, as the upload stage writes them.

1. Reference: one paginated ListObjectsV2 of the collection's prefix (1,000 keys a request), keys and
   sizes counted, nothing else: the least any audit of the store can do.
2. Reading the items alone, page by page as the audit does (pgstac, sorted for the merge).
3. ``ingest audit`` (``ingest.audit.run.audit``): items, listing, merge, confirmation, the record.
4. ``ingest audit --deep``: the same plus a HEAD per object (SHA-256 metadata), 8 in flight.

Prints the median of ``--rounds`` runs of each (after one untimed warm-up run) and the ratios to the
listing; checks that every audit found the catalogue whole.
"""

from __future__ import annotations

import argparse
import hashlib
import statistics
import sys
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import boto3
import psycopg
from botocore.config import Config
from pydantic import SecretStr

sys.path.insert(0, str(Path(__file__).resolve().parent))

from _common import throwaway_stack

from ingest.adapters import pgstac
from ingest.adapters.s3 import ObjectStore
from ingest.audit import run
from ingest.collections import load_spec
from ingest.settings import Settings
from ingest.stages.checksums import to_multihash

ROOT = Path(__file__).resolve().parents[1]
COLLECTION = "bench-audit"
T0 = datetime(2026, 1, 1, tzinfo=UTC)


def item(n: int, assets: int, bucket: str, prefix: str) -> tuple[dict[str, Any], dict[str, bytes]]:
    """One item and the bodies of its objects (each a few dozen bytes, all different)."""
    iid = f"S2B_T{n % 60:02d}XWJ_{(T0 + timedelta(hours=n)):%Y%m%dT%H%M%S}_L2A"
    bodies = {f"{prefix}{iid}/B{a:02d}.tif": f"{iid} band {a}".encode() for a in range(assets)}
    doc = {
        "type": "Feature",
        "stac_version": "1.1.0",
        "id": iid,
        "collection": COLLECTION,
        "geometry": {"type": "Point", "coordinates": [10 + n % 60, 40 + n % 10]},
        "bbox": [10 + n % 60, 40 + n % 10, 10 + n % 60, 40 + n % 10],
        "properties": {"datetime": (T0 + timedelta(hours=n)).isoformat(), "updated": "2026-11-30T00:00:00Z"},
        "links": [],
        "assets": {
            f"B{a:02d}": {
                "href": f"s3://{bucket}/{key}",
                "type": "image/tiff; application=geotiff; profile=cloud-optimized",
                "roles": ["data"],
                "file:size": len(body),
                "file:checksum": to_multihash("sha256", hashlib.sha256(body).hexdigest()),
            }
            for a, (key, body) in enumerate(bodies.items())
        },
    }
    return doc, bodies


def build(settings: Settings, dsn: str, store: ObjectStore, n: int, assets: int) -> None:
    started = time.perf_counter()
    doc = load_spec(ROOT / "collections" / "sentinel-2-l2a.yaml").stac_collection()
    pgstac.upsert_collections(dsn, [{**doc, "id": COLLECTION}])
    prefix = store.collection_prefix(COLLECTION)
    built = [item(i, assets, store.bucket, prefix) for i in range(n)]
    pgstac.load_items(dsn, [d for d, _ in built])
    with psycopg.connect(dsn, autocommit=True) as conn:
        conn.cursor().executemany(
            "INSERT INTO ingest.products (id, collection, provider, state, item_id) VALUES (%s, %s, 'bench',"
            " 'catalogued', %s)",
            [(f"P-{d['id']}", COLLECTION, d["id"]) for d, _ in built],
        )
    client = boto3.client(
        "s3",
        endpoint_url=settings.s3_endpoint_url,
        region_name=settings.s3_region,
        aws_access_key_id=settings.s3_access_key_id.get_secret_value() if settings.s3_access_key_id else None,
        aws_secret_access_key=settings.s3_secret_access_key.get_secret_value()
        if settings.s3_secret_access_key
        else None,
        config=Config(s3={"addressing_style": "path"}, max_pool_connections=16),
    )
    bodies = [(k, b) for _, objects in built for k, b in objects.items()]

    def put(kb: tuple[str, bytes]) -> None:
        client.put_object(
            Bucket=store.bucket, Key=kb[0], Body=kb[1], Metadata={"sha256": hashlib.sha256(kb[1]).hexdigest()}
        )

    with ThreadPoolExecutor(max_workers=16) as pool:
        list(pool.map(put, bodies))
    print(f"built {n} items x {assets} assets, {len(bodies)} objects in {time.perf_counter() - started:.1f} s")


def median_s(rounds: int, what: Callable[[], object]) -> float:
    """The median of ``rounds`` timed runs after one untimed (connections and clients made, caches warm)."""
    what()
    runs = []
    for _ in range(rounds):
        started = time.perf_counter()
        what()
        runs.append(time.perf_counter() - started)
    return statistics.median(runs)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--items", type=int, default=1000)
    ap.add_argument("--assets", type=int, default=40)
    ap.add_argument("--rounds", type=int, default=3)
    args = ap.parse_args()
    with throwaway_stack() as env:
        dsn = env["INGEST_DATABASE_URL"]
        settings = Settings(
            database_url=SecretStr(dsn),
            s3_endpoint_url=env["INGEST_S3_ENDPOINT_URL"],
            s3_access_key_id=SecretStr(env["INGEST_S3_ACCESS_KEY_ID"]),
            s3_secret_access_key=SecretStr(env["INGEST_S3_SECRET_ACCESS_KEY"]),
            s3_region=env["INGEST_S3_REGION"],
            s3_bucket=env["INGEST_S3_BUCKET"],
            _env_file=None,
        )  # type: ignore[call-arg]
        store = ObjectStore.from_settings(settings)
        build(settings, dsn, store, args.items, args.assets)
        spec = load_spec(ROOT / "collections" / "sentinel-2-l2a.yaml").model_copy(update={"id": COLLECTION})
        prefix = store.collection_prefix(COLLECTION)
        objects = args.items * args.assets

        def listing() -> None:
            listed = sum(1 for _ in store.iter_objects(prefix))
            assert listed == objects, listed

        def read_items() -> None:
            assert sum(len(page) for page in pgstac.item_pages(dsn, COLLECTION)) == args.items

        with psycopg.connect(dsn, autocommit=True) as conn:

            def audit(deep: bool) -> Callable[[], None]:
                def once() -> None:
                    report = run.audit(conn, settings, store, spec, deep=deep)
                    assert (report.items, report.assets, report.objects) == (args.items, objects, objects), report
                    assert not report.found, report.summary()

                return once

            list_s = median_s(args.rounds, listing)
            items_s = median_s(args.rounds, read_items)
            audit_s = median_s(args.rounds, audit(False))
            deep_s = median_s(args.rounds, audit(True))
        print(f"{args.items} items x {args.assets} assets = {objects} objects; medians of {args.rounds} runs")
        print(f"bare listing of the prefix (reference)    {list_s:7.2f} s  ratio  1.00")
        print(f"reading the items alone (pgstac pages)    {items_s:7.2f} s  ratio {items_s / list_s:5.2f}")
        print(f"ingest audit                              {audit_s:7.2f} s  ratio {audit_s / list_s:5.2f}"
              f"   ({args.items / audit_s:,.0f} items/s)")  # fmt: skip
        print(f"ingest audit --deep (a HEAD per object)   {deep_s:7.2f} s  ratio {deep_s / list_s:5.2f}")


if __name__ == "__main__":
    main()
