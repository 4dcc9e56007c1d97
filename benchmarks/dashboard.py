"""Benchmark: the operator dashboard on 100,000 products, against `ingest status --json` in the same run.

    .venv/bin/python benchmarks/dashboard.py [--products 100000] [--rounds 7]

A throw-away stack (PostgreSQL+PostGIS+pgstac, SeaweedFS) on free ports. The repository's three
collections get N product rows written with SQL straight into ``ingest.products`` (60% Sentinel-2
L2A, 25% L1C, 15% Sentinel-1 GRD; 90% catalogued, 3% discovered, 4% failed with one of five causes,
1% invalid, 2% retired; footprints on about 2,000 one-degree tiles over Europe and Africa, sensing
times over a year), their watermarks, and 2,000 waiting jobs in the queue. The map reads
``ingest.products.footprint`` only, so no pgstac items are made.

Measured, medians of ``rounds``:

1. ``ingest status --json`` as an OS process (what an operator waits for; includes Python's start).
2. The same document built in-process (``status_document``), and the map's SQL alone (``cells``).
3. ``GET /dashboard/data.json`` on the daemon's endpoint class: cold (cache off, every request builds
   it) and cached (the default 5 s cache: a page reload within it).
4. The page in headless Chromium (a fresh context each time: no browser cache), from navigation to
   the figures and every map cell drawn.

Prints each figure and the ratios to ``ingest status --json``.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path

import psycopg
import requests
from pydantic import SecretStr

sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # tests.browser: the page tests' Chromium

from _common import free_port, throwaway_stack

from ingest import collections as col
from ingest.adapters.queue import ensure_schema
from ingest.dashboard import footprints
from ingest.dashboard.data import status_document
from ingest.dashboard.http import PREFIX, Dashboard
from ingest.metrics import Endpoint
from ingest.settings import Settings
from tests.browser import chromium, tab

ROOT = Path(__file__).resolve().parents[1]
SHARES = (("sentinel-2-l2a", 0.60), ("sentinel-2-l1c", 0.25), ("sentinel-1-grd", 0.15))
CAUSES = [
    "the provider no longer has this product (HTTP 404 on download)",
    "checksum mismatch after 3 downloads",
    "conversion failed: band B04 is not a readable JP2 (TIFFReadDirectory)",
    "S3 upload: SlowDown (HTTP 503), 5 tries",
    "pgstac: item is not valid STAC: geometry is not a Polygon",
]

# one statement per collection: states by share, tiles at random on a 50 x 40 one-degree grid from (-20, -35)
_INSERT = """
INSERT INTO ingest.products (id, collection, provider, state, attempts, last_error, published_at, sensing_at,
                             footprint, updated_at)
SELECT %(cid)s || '-' || g, %(cid)s, 'local',
       CASE WHEN r < 0.90 THEN 'catalogued' WHEN r < 0.93 THEN 'discovered' WHEN r < 0.97 THEN 'failed'
            WHEN r < 0.98 THEN 'invalid' ELSE 'retired' END,
       CASE WHEN r >= 0.93 AND r < 0.98 THEN 3 ELSE 1 END,
       CASE WHEN r >= 0.93 AND r < 0.98 THEN (%(causes)s::text[])[1 + g %% 5] END,
       now() - (g %% 365) * interval '1 day' + interval '2 hours',
       now() - (g %% 365) * interval '1 day',
       jsonb_build_object('type', 'Polygon', 'coordinates', jsonb_build_array(jsonb_build_array(
           jsonb_build_array(x, y), jsonb_build_array(x + 0.99, y), jsonb_build_array(x + 0.99, y + 0.99),
           jsonb_build_array(x, y + 0.99), jsonb_build_array(x, y)))),
       now() - (g %% 1000) * interval '1 minute'
  FROM (SELECT g, random() AS r, -20 + floor(random() * 50) + 0.005 AS x, -35 + floor(random() * 40) + 0.005 AS y
          FROM generate_series(1, %(n)s) g) s
"""


def median_s(fn: Callable[[], object], rounds: int) -> float:
    runs = []
    for _ in range(rounds):
        started = time.perf_counter()
        fn()
        runs.append(time.perf_counter() - started)
    return statistics.median(runs)


def build(dsn: str, n: int) -> None:
    started = time.perf_counter()
    with psycopg.connect(dsn, autocommit=True) as conn:
        for cid, share in SHARES:
            conn.execute(_INSERT, {"cid": cid, "n": int(n * share), "causes": CAUSES})
            conn.execute(
                "INSERT INTO ingest.watermarks (collection, provider, published_until, last_harvest_at,"
                " last_harvest_found) VALUES (%s, 'local', now() - interval '3 hours',"
                " now() - interval '10 minutes', 42)",
                [cid],
            )
        # waiting jobs for the discovered products, as procrastinate stores them
        conn.execute(
            "INSERT INTO procrastinate_jobs (queue_name, task_name, lock, queueing_lock, args, status)"
            " SELECT 'products', 'ingest:process_product', id, id, jsonb_build_object('product_id', id), 'todo'"
            " FROM ingest.products WHERE state = 'discovered' LIMIT 2000"
        )
        conn.execute("ANALYZE ingest.products")
    print(f"built {n} products in {time.perf_counter() - started:.1f} s")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--products", type=int, default=100_000)
    ap.add_argument("--rounds", type=int, default=7)
    args = ap.parse_args()
    with throwaway_stack() as env:
        dsn = env["INGEST_DATABASE_URL"]
        ensure_schema(dsn)
        build(dsn, args.products)
        settings = Settings(database_url=SecretStr(dsn), collections_dir=ROOT / "collections", _env_file=None)  # type: ignore[call-arg]
        specs = col.load_all(settings.collections_dir)
        ordered = [specs[i] for i in sorted(specs)]
        cli_env = {**{k: v for k, v in os.environ.items() if not k.startswith("INGEST_")}, **env,
                   "INGEST_COLLECTIONS_DIR": str(ROOT / "collections")}  # fmt: skip

        def cli() -> None:
            out = subprocess.run([sys.executable, "-m", "ingest", "status", "--json"], env=cli_env, cwd=ROOT,
                                 capture_output=True, check=True)  # fmt: skip
            json.loads(out.stdout)

        def document() -> None:
            with psycopg.connect(dsn, autocommit=True) as conn:
                status_document(conn, ordered, settings)

        def cells() -> None:
            with psycopg.connect(dsn, autocommit=True) as conn:
                footprints.cells(conn, [s.id for s in ordered])

        cold_ep = Endpoint("127.0.0.1", free_port(), routes={PREFIX: Dashboard(settings, ttl_s=0).route}).start()
        warm_ep = Endpoint("127.0.0.1", free_port(), routes={PREFIX: Dashboard(settings, ttl_s=3600).route}).start()
        cold_url = f"http://127.0.0.1:{cold_ep.port}"
        warm_url = f"http://127.0.0.1:{warm_ep.port}"
        try:
            first = requests.get(warm_url + "/dashboard/data.json", timeout=120)  # fills the cache
            first.raise_for_status()
            doc = first.json()
            n_cells = len(doc["map"]["cells"])
            shown = sum(c["products"] for c in doc["collections"])
            print(f"data.json: {len(first.content) / 1024:.0f} KiB, {shown} products, {n_cells} map cells")

            cli_s = median_s(cli, args.rounds)
            doc_s = median_s(document, args.rounds)
            cells_s = median_s(cells, args.rounds)
            cold_s = median_s(lambda: requests.get(cold_url + "/dashboard/data.json", timeout=120).raise_for_status(),
                              args.rounds)  # fmt: skip
            warm_s = median_s(lambda: requests.get(warm_url + "/dashboard/data.json", timeout=120).raise_for_status(),
                              args.rounds)  # fmt: skip

            with chromium() as browser:

                def page() -> None:
                    with tab(browser) as t:
                        t.page.goto(warm_url + "/dashboard/")
                        t.page.wait_for_selector("body[data-loaded=yes]", timeout=120_000)
                        drawn = t.page.locator("#map path.cell").count()
                        assert drawn == n_cells, (drawn, n_cells)
                        assert t.problems() == [], t.problems()

                page_s = median_s(page, args.rounds)
        finally:
            cold_ep.close()
            warm_ep.close()

    print(f"ingest status --json (OS process)        {cli_s * 1000:8.0f} ms")
    print(f"  status_document in-process             {doc_s * 1000:8.0f} ms")
    print(f"  map cells SQL alone                    {cells_s * 1000:8.0f} ms")
    print(f"GET /dashboard/data.json, cold           {cold_s * 1000:8.0f} ms   ratio to the CLI {cold_s / cli_s:6.2f}")
    print(f"GET /dashboard/data.json, cached         {warm_s * 1000:8.1f} ms   ratio to the CLI {warm_s / cli_s:6.3f}")
    print(f"page in Chromium, figures and map drawn  {page_s * 1000:8.0f} ms   ratio to the CLI {page_s / cli_s:6.2f}")


if __name__ == "__main__":
    main()
