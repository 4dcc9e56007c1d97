"""Benchmark: what answering current items only (``ingest.api.current``: ``deprecated IS NULL OR
deprecated = false`` and-ed to every search) costs a broker's searches, against the same searches
without it, same catalogue, same run.

    .venv/bin/python benchmarks/current.py [--items 200000] [--requests 200] [--deprecated 0.05]

A throw-away stack; one catalogue of ``--items`` Sentinel-2 L2A items as ``benchmarks/search.py`` makes
them (the same tiles, dates, fields and loader), a ``--deprecated`` share of them marked deprecated
with the version extension's fields and links. The searches are ``search.py``'s broker queries (bbox +
datetime + collection, limit 10 and 100), run as pgstac's ``search()`` on one connection with the
API's settings (``pgstac.context`` on: every search also counts, ``pgstac.readonly``), each query once
plain and once with the filter, the order alternating: the HTTP layer is left out, so the ratio is the
database's cost alone (an upper bound of what a client sees). Printed: p50 and p95 in ms per kind, and
the ratio with/without (target: p95 ratio <= 1.2).
"""

from __future__ import annotations

import argparse
import itertools
import json
import statistics
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import psycopg
from psycopg.types.json import Jsonb

sys.path.insert(0, str(Path(__file__).resolve().parent))

import search as s
from _common import throwaway_stack

from ingest.api.current import CURRENT
from ingest.collections import load_spec
from ingest.upstream.versions import VERSION_EXT


def marked(items: Iterator[dict[str, Any]], share: float) -> Iterator[dict[str, Any]]:
    every = max(1, round(1 / share)) if share > 0 else 0
    for n, item in enumerate(items):
        if every and n % every == 0:
            item["properties"].update(version="N0400", deprecated=True)
            item["links"] = [{"rel": "successor-version", "href": f"collections/{s.COLLECTION}/items/x"}]
            item["stac_extensions"] = [*item["stac_extensions"], VERSION_EXT]
        yield item


def search(conn: psycopg.Connection, q: s.Query, limit: int, current: bool) -> tuple[float, int]:
    body: dict[str, Any] = {"collections": [s.COLLECTION], "bbox": list(q.bbox), "datetime": q.datetime, "limit": limit}
    if current:
        body.update({"filter": CURRENT, "filter-lang": "cql2-json"})
    t0 = time.perf_counter()
    row = conn.execute("SELECT pgstac.search(%s)", [Jsonb(body)]).fetchone()
    seconds = time.perf_counter() - t0
    answer = row[0] if row else {}
    return seconds, int(answer.get("numberMatched", len(answer.get("features", []))))


def pct(values: list[float], p: float) -> float:
    return statistics.quantiles(values, n=100)[int(p) - 1] if len(values) > 1 else values[0]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--items", type=int, default=200_000)
    ap.add_argument("--requests", type=int, default=200, help="queries per kind (each run both ways)")
    ap.add_argument("--deprecated", type=float, default=0.05, help="share of the items marked deprecated")
    args = ap.parse_args()
    tiles = s.large_tiles(max(len(s.small_tiles()), -(-args.items // s.DATES)))
    doc = load_spec(s.ROOT / "collections" / f"{s.COLLECTION}.yaml").stac_collection()
    original = s.items_of
    s.items_of = lambda t, d: marked(original(t, d), args.deprecated)  # type: ignore[assignment]
    with throwaway_stack() as env:
        admin = env["INGEST_DATABASE_URL"]
        print(f"loading {len(tiles) * s.DATES:,} items ({args.deprecated:.0%} deprecated)", flush=True)
        seconds = s.load_catalogue(admin, tiles, doc, None)
        print(f"  {s.count_items(admin):,} items in {seconds:,.0f} s; database {urlsplit(admin).path.lstrip('/')}")
        with psycopg.connect(admin, autocommit=True) as conn:
            conn.execute("SET search_path = pgstac, public")
            conn.execute(
                "SELECT set_config('pgstac.context', 'on', false), set_config('pgstac.readonly', 'true', false)"
            )
            queries = s.make_queries()
            print(f"\n{args.requests} queries per kind, each plain and current-only (alternating order)")
            print(
                f"{'kind':12} {'plain p50':>10} {'p95':>7} {'current p50':>12} {'p95':>7} {'ratio p50':>10} {'p95':>6}"
            )
            worst, hidden = 0.0, []
            for limit in (10, 100):
                for q in itertools.islice(queries, 10):  # warm-up
                    search(conn, q, limit, False), search(conn, q, limit, True)
                plain: list[float] = []
                current: list[float] = []
                for n, q in enumerate(itertools.islice(queries, args.requests)):
                    order = (False, True) if n % 2 == 0 else (True, False)
                    got = {c: search(conn, q, limit, c) for c in order}
                    plain.append(got[False][0])
                    current.append(got[True][0])
                    hidden.append(got[False][1] - got[True][1])
                p50, p95 = pct(current, 50) / pct(plain, 50), pct(current, 95) / pct(plain, 95)
                worst = max(worst, p95)
                print(
                    f"{'limit ' + str(limit):12} {pct(plain, 50) * 1000:10.1f} {pct(plain, 95) * 1000:7.1f}"
                    f" {pct(current, 50) * 1000:12.1f} {pct(current, 95) * 1000:7.1f} {p50:10.2f} {p95:6.2f}",
                    flush=True,
                )
            print(f"\nmean items left out per search (deprecated): {statistics.fmean(hidden):.2f}")
            print(f"worst p95 ratio current-only/plain: {worst:.2f} (target <= 1.2)")
            print(json.dumps({"items": len(tiles) * s.DATES, "worst_p95_ratio": round(worst, 3)}))


if __name__ == "__main__":
    main()
