"""Benchmark: retention of 10% of a large collection vs a plain DELETE of the same ids, same run.

    .venv/bin/python benchmarks/retention.py [--items 1000000] [--share 0.1] [--batch-size 1000]

A throw-away stack (PostgreSQL+PostGIS+pgstac, SeaweedFS) on free ports. One collection gets N synthetic
items (small S2-like items: a footprint, a datetime spread evenly over 1,000 days, three assets with
file:size), written server-side straight into the collection's partition (pgstac's stored form), and N
catalogued product rows owning them (no S3 objects: ``s3_prefix`` NULL, so nothing to delete there).
A max-age policy then selects the oldest ``share`` of them.

1. Reference: ``DELETE FROM pgstac.items WHERE collection = $1 AND id = ANY($ids)`` with the same
   ids, in one statement, timed, then rolled back (and the table vacuumed); the median of 3.
2. ``ingest retain``'s work: the plan (selection SQL) and the enforcement (retire products with
   events and retirement rows, delete items recording the deletions, extent refresh), batched.

Prints both times and the ratio retention / plain DELETE (the issue's target: <= 3), and, for
scale, the writes any crash-safe retention with a per-product history must make (state change,
event, retirement record, DELETE), each as one bare statement over all the ids, timed alone and
rolled back: once with the schema as it is, once stripped of the secondary indexes and foreign keys
of the ingest tables (a lower bound no real schema reaches).
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from collections.abc import Mapping
from datetime import UTC, datetime, timedelta
from pathlib import Path

import psycopg
from pydantic import SecretStr

sys.path.insert(0, str(Path(__file__).resolve().parent))

from _common import throwaway_stack

from ingest import retention
from ingest.adapters import pgstac
from ingest.adapters.s3 import ObjectStore
from ingest.collections import Retention, load_spec
from ingest.settings import Settings

ROOT = Path(__file__).resolve().parents[1]
COLLECTION = "bench-retention"
DAYS = 1000
CHUNK = 100_000
ROUNDS = 3
T0 = datetime(2023, 1, 1, tzinfo=UTC)

# Straight into the partition (created first with pgstac's check_partition), in pgstac's stored form:
# id, collection and geometry in columns, the rest in content (pgstac hydrates it on read).
_ITEMS = """
INSERT INTO pgstac.items (id, collection, geometry, datetime, end_datetime, content)
SELECT 'item-' || lpad(g::text, 8, '0'), %(c)s,
       st_setsrid(st_makeenvelope(x, y, x + 1, y + 1), 4326), t, t,
       jsonb_build_object(
           'type', 'Feature', 'stac_version', '1.1.0', 'bbox', jsonb_build_array(x, y, x + 1, y + 1),
           'properties', jsonb_build_object('created', '2026-01-01T00:00:00Z'),
           'links', '[]'::jsonb,
           'assets', jsonb_build_object(
               'red', jsonb_build_object('href', 's3://b/' || g || '/red.tif', 'file:size', 120000000),
               'nir', jsonb_build_object('href', 's3://b/' || g || '/nir.tif', 'file:size', 118000000),
               'scl', jsonb_build_object('href', 's3://b/' || g || '/scl.tif', 'file:size', 9000000)))
FROM (SELECT g, -10 + (g %% 60) AS x, 35 + (g / 60 %% 30) AS y,
             %(t0)s::timestamptz + (g::double precision / %(n)s * %(days)s) * interval '1 day' AS t
      FROM generate_series(%(lo)s, %(hi)s) AS g) AS s
"""
_PRODUCTS = """
INSERT INTO ingest.products (id, collection, provider, state, item_id, sensing_at)
SELECT 'P' || lpad(g::text, 8, '0'), %(c)s, 'bench', 'catalogued', 'item-' || lpad(g::text, 8, '0'),
       %(t0)s::timestamptz + (g::double precision / %(n)s * %(days)s) * interval '1 day'
FROM generate_series(%(lo)s, %(hi)s) AS g
"""


def build(dsn: str, n: int) -> None:
    doc = load_spec(ROOT / "collections" / "sentinel-2-l2a.yaml").stac_collection()
    pgstac.upsert_collections(dsn, [{**doc, "id": COLLECTION}])
    started = time.perf_counter()
    with psycopg.connect(dsn, autocommit=True) as conn:
        conn.execute("SET search_path TO pgstac, public")  # pgstac's functions use bare names
        span = "tstzrange(%(t0)s::timestamptz, %(t0)s::timestamptz + %(days)s * interval '1 day', '[]')"
        conn.execute(f"SELECT check_partition(%(c)s, {span}, {span})", {"c": COLLECTION, "t0": T0, "days": DAYS})
        for lo in range(1, n + 1, CHUNK):
            hi = min(n, lo + CHUNK - 1)
            params = {"c": COLLECTION, "t0": T0, "n": n, "days": DAYS, "lo": lo, "hi": hi}
            conn.execute(_ITEMS, params)
            conn.execute(_PRODUCTS, params)
            print(f"  loaded {hi:>9} items  {time.perf_counter() - started:7.1f} s", flush=True)
        conn.execute("VACUUM ANALYZE pgstac.items")
        conn.execute("VACUUM ANALYZE ingest.products")
    print(f"built {n} items and products in {time.perf_counter() - started:.1f} s")


# The per-row writes a crash-safe retention with a per-product history has to make, each alone.
_REQUIRED = {
    "state change": "UPDATE ingest.products SET state = 'retired', updated_at = now() WHERE id = ANY(%(p)s)",
    "event": "INSERT INTO ingest.events (product_id, from_state, to_state)"
    " SELECT u, 'catalogued', 'retired' FROM unnest(%(p)s::text[]) AS u",
    "retirement record": "INSERT INTO ingest.retirements (product_id, collection, item_id, run_id, reason)"
    " SELECT u, %(c)s, i, 'floor', 'floor' FROM unnest(%(p)s::text[], %(i)s::text[]) AS r(u, i)",
    "item DELETE": "DELETE FROM pgstac.items WHERE collection = %(c)s AND id = ANY(%(i)s)",
}
# The schema's secondary indexes and foreign keys on the written tables, dropped (inside the
# rolled-back transaction) for the stripped lower bound.
_STRIP = """
SELECT format('DROP INDEX %s', i.indexrelid::regclass) FROM pg_index i
WHERE i.indrelid IN ('ingest.products'::regclass, 'ingest.events'::regclass, 'ingest.retirements'::regclass)
  AND NOT i.indisprimary
UNION ALL
SELECT format('ALTER TABLE %s DROP CONSTRAINT %I', c.conrelid::regclass, c.conname) FROM pg_constraint c
WHERE c.conrelid IN ('ingest.events'::regclass, 'ingest.retirements'::regclass) AND c.contype = 'f'
"""


def timed(dsn: str, sql: str, params: Mapping[str, object], *, rows: int, stripped: bool = False) -> float:
    """One statement, timed and rolled back (then the tables vacuumed), the median of ROUNDS runs:
    this VM's timings wander by up to 50 % from one statement to the next."""
    runs = []
    for _ in range(ROUNDS):
        with psycopg.connect(dsn) as conn:
            if stripped:
                for (ddl,) in conn.execute(_STRIP).fetchall():
                    conn.execute(ddl)
            started = time.perf_counter()
            cur = conn.execute(sql, params)
            runs.append(time.perf_counter() - started)
            assert cur.rowcount == rows, (sql, cur.rowcount, rows)
            conn.rollback()
        with psycopg.connect(dsn, autocommit=True) as conn:
            for table in ("pgstac.items", "ingest.products", "ingest.events", "ingest.retirements"):
                conn.execute(f"VACUUM ANALYZE {table}")
    return statistics.median(runs)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--items", type=int, default=1_000_000)
    ap.add_argument("--share", type=float, default=0.1, help="share of the items the policy removes")
    ap.add_argument("--batch-size", type=int, default=1000, help="INGEST_RETENTION_BATCH_SIZE")
    args = ap.parse_args()
    with throwaway_stack() as env:
        dsn = env["INGEST_DATABASE_URL"]
        settings = Settings(
            s3_endpoint_url=env["INGEST_S3_ENDPOINT_URL"],
            s3_access_key_id=SecretStr(env["INGEST_S3_ACCESS_KEY_ID"]),
            s3_secret_access_key=SecretStr(env["INGEST_S3_SECRET_ACCESS_KEY"]),
            s3_region=env["INGEST_S3_REGION"],
            _env_file=None,
        )  # type: ignore[call-arg]
        build(dsn, args.items)
        spec = load_spec(ROOT / "collections" / "sentinel-2-l2a.yaml").model_copy(update={"id": COLLECTION})
        # the cutoff falls at `share` of the time span: that share of the items is older
        now = datetime.now(UTC)
        max_age = now - (T0 + timedelta(days=DAYS * args.share))
        spec = spec.model_copy(update={"retention": Retention(enabled=True, max_age=max_age)})
        with psycopg.connect(dsn, autocommit=True) as conn:
            started = time.perf_counter()
            the_plan = retention.plan(conn, spec, now=now)
            plan_s = time.perf_counter() - started
        ids = [m.item_id for m in the_plan.remove]
        print(f"policy selects {len(ids)} of {the_plan.total_items} items ({the_plan.bytes / 1e12:.1f} TB)")
        params = {"p": [m.product_id for m in the_plan.remove], "i": ids, "c": COLLECTION}
        required = {name: timed(dsn, sql, params, rows=len(ids)) for name, sql in _REQUIRED.items()}
        stripped = {name: timed(dsn, sql, params, rows=len(ids), stripped=True) for name, sql in _REQUIRED.items()}
        plain_s = required["item DELETE"]
        store = ObjectStore.from_settings(settings)
        with psycopg.connect(dsn, autocommit=True) as conn:
            started = time.perf_counter()
            report = retention.enforce(conn, the_plan, pgstac_dsn=dsn, store=store, batch_size=args.batch_size)
            enforce_s = time.perf_counter() - started
            left = conn.execute("SELECT count(*) FROM pgstac.items WHERE collection = %s", [COLLECTION]).fetchone()
        assert report.items_deleted == len(ids) and left == (args.items - len(ids),), (report, left)
        total = plan_s + enforce_s
        print(f"plain DELETE of the same ids (one statement)   {plain_s:8.2f} s")
        print("required per-row writes, each alone (schema as is | no secondary index, no foreign key):")
        for name in _REQUIRED:
            print(
                f"  {name:<20} {required[name]:6.2f} s  ratio {required[name] / plain_s:5.2f}"
                f"   | {stripped[name]:6.2f} s  ratio {stripped[name] / plain_s:5.2f}"
            )
        floor_s = sum(required.values())
        bare = ("state change", "event", "item DELETE")
        print(f"  floor: all four as is          {floor_s:6.2f} s  ratio {floor_s / plain_s:5.2f}")
        print(
            f"  lower bound: state+event+DELETE, stripped  {sum(stripped[k] for k in bare):6.2f} s"
            f"  ratio {sum(stripped[k] for k in bare) / plain_s:5.2f}"
        )
        print(f"retention plan (selection)                      {plan_s:8.2f} s")
        print(f"retention enforce (retire, unlist, extent)      {enforce_s:8.2f} s  batches of {args.batch_size}")
        phases = ", ".join(f"{k} {v:.2f} s" for k, v in report.seconds.items())
        print(f"  phases: {phases}")
        print(f"ratio retention (plan + enforce) / plain DELETE  {total / plain_s:7.2f}   (target <= 3)")
        print(f"ratio enforce only / plain DELETE                {enforce_s / plain_s:7.2f}")


if __name__ == "__main__":
    main()
