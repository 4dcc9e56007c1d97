"""Benchmark: what the API's bounds (``ingest.api.guard``) cost a broker's ordinary searches.

    .venv/bin/python benchmarks/guard.py [--items 1000] [--requests 300] [--concurrency 4]

One catalogue (the search benchmark's: Sentinel-2 L2A items over MGRS-like tiles, ``--items`` of
them; the small 1,000-item one by default, where a search is cheapest and the guard's share
largest), served twice on 127.0.0.1 by one worker each: ``ingest serve`` as shipped, and the same
app with the guard middleware removed (``benchmarks/_unguarded.py``). The queries are the search
benchmark's (bbox + datetime + collections, limit 10 and 100, GET and POST, each request a query of
its own) plus a GET with a CQL2 text filter, which the guard parses once more before stac-fastapi
does. Requests alternate between the two servers in blocks of 20; each kind is measured
``--rounds`` times. Printed per kind: the medians over the rounds of p50 and p95 in ms and of req/s
for each server, and the guarded/unguarded ratios (target: p95 ratio <= 1.05).
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
from pathlib import Path

import psycopg
import requests

sys.path.insert(0, str(Path(__file__).resolve().parent))

from _common import throwaway_stack
from search import (
    COLLECTION,
    DATES,
    KINDS,
    ROOT,
    Figures,
    Query,
    Send,
    count_items,
    ingest_serve,
    large_tiles,
    load_catalogue,
    make_queries,
    measure,
    small_tiles,
    with_database,
)

from ingest.collections import load_spec


def search_filtered(session: requests.Session, url: str, q: Query) -> requests.Response:
    params = {
        "collections": COLLECTION,
        "bbox": ",".join(map(str, q.bbox)),
        "datetime": q.datetime,
        "filter": "eo:cloud_cover < 80 AND NOT platform = 'sentinel-2c'",
        "limit": "10",
    }
    return session.get(url + "/search", params=params, timeout=60)


def _p50(f: Figures) -> float:
    return f.pct(50)


def _p95(f: Figures) -> float:
    return f.pct(95)


def _rate(f: Figures) -> float:
    return f.rate


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--items", type=int, default=1000, help="items in the catalogue (rounded up to tiles)")
    ap.add_argument("--requests", type=int, default=300, help="requests per query kind and server")
    ap.add_argument("--concurrency", type=int, default=4, help="client threads for the throughput figures")
    ap.add_argument("--rounds", type=int, default=3, help="measurements per kind; medians are printed")
    args = ap.parse_args()
    small = small_tiles()
    tiles = small if args.items <= len(small) * DATES else large_tiles(-(-args.items // DATES))
    doc = load_spec(ROOT / "collections" / f"{COLLECTION}.yaml").stac_collection()
    kinds: dict[str, Send] = {k: v for k, v in KINDS.items() if "search" in k}
    kinds["GET /search CQL2 filter"] = search_filtered
    with throwaway_stack() as env, tempfile.TemporaryDirectory(prefix="bench-guard-") as tmp:
        admin, reader = env["INGEST_DATABASE_URL"], env["INGEST_API_DATABASE_URL"]
        template = admin.rsplit("/", 1)[1]
        with psycopg.connect(with_database(admin, "postgres"), autocommit=True) as conn:
            conn.execute(f"CREATE DATABASE cat TEMPLATE {template}")
        seconds = load_catalogue(with_database(admin, "cat"), tiles, doc, None)
        print(f"catalogue: {count_items(with_database(admin, 'cat')):,} items, loaded in {seconds:.0f} s")
        logs, dsn = Path(tmp), with_database(reader, "cat")
        unguarded = [sys.executable, str(Path(__file__).resolve().parent / "_unguarded.py")]
        with (
            ingest_serve(dsn, logs, "on", 1) as guarded_url,
            ingest_serve(dsn, logs, "on", 1, launcher=unguarded) as plain_url,
        ):
            urls = {"unguarded": plain_url, "guarded": guarded_url}
            print(f"\n{args.requests} requests per kind and server; throughput with {args.concurrency} clients")
            head = f"{'kind':26} {'server':>9} {'req/s':>7} {'p50 ms':>8} {'p95 ms':>8}"
            print(head + f"   {'ratio p50':>9} {'p95':>5} {'req/s':>6}")
            worst = 0.0
            queries = make_queries()
            for kind, send in kinds.items():
                rounds = [measure(urls, send, queries, args.requests, args.concurrency) for _ in range(args.rounds)]
                med = {
                    name: [statistics.median(f(r[name]) for r in rounds) for f in (_p50, _p95, _rate)] for name in urls
                }
                for name in ("unguarded", "guarded"):
                    p50, p95, rate = med[name]
                    line = f"{kind:26} {name:>9} {rate:7.1f} {p50 * 1000:8.2f} {p95 * 1000:8.2f}"
                    if name == "guarded":
                        u50, u95, urate = med["unguarded"]
                        line += f"   {p50 / u50:9.3f} {p95 / u95:5.3f} {rate / urate:6.3f}"
                        worst = max(worst, p95 / u95)
                    print(line, flush=True)
            print(f"\nworst p95 ratio guarded/unguarded: {worst:.3f} (target <= 1.05)")


if __name__ == "__main__":
    main()
