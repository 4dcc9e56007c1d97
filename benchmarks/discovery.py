"""Benchmark: discovery of 10,000 new provider products with 100,000 already known vs none known.

    .venv/bin/python benchmarks/discovery.py [--new 10000] [--known 100000]

Both runs happen in the same process against the same throw-away stack and the same local provider
(a synthetic catalogue: index entries only, no archives needed for searching). Target: ratio <= 1.5,
i.e. discovery cost follows new products, not history.
"""

from __future__ import annotations

import argparse
import logging
import sys
import tempfile
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

import psycopg

sys.path.insert(0, str(Path(__file__).resolve().parent))

from _common import throwaway_stack

from ingest.adapters.eodag import EodagProvider
from ingest.collections import load_spec
from ingest.devtools.catalog import ProviderEntry, add_entries
from ingest.devtools.provider import ProviderServer
from ingest.harvest import discover
from ingest.settings import Settings
from ingest.state import migrations, repo

ROOT = Path(__file__).resolve().parents[1]
GEOMETRY = {"type": "Polygon", "coordinates": [[[1, 43], [2, 43], [2, 44], [1, 44], [1, 43]]]}


def known_rows(n: int, collection: str) -> list[repo.DiscoveredProduct]:
    t0 = datetime(2020, 1, 1, tzinfo=UTC)
    return [
        repo.DiscoveredProduct(
            f"S2A_MSIL2A_OLD_{i:07d}", collection, "local", None, None, 1, t0 + timedelta(minutes=i), t0, GEOMETRY
        )
        for i in range(n)
    ]


def provider_entries(n: int) -> list[ProviderEntry]:
    t0 = datetime(2026, 1, 1, tzinfo=UTC)
    return [
        ProviderEntry(
            id=f"S2A_MSIL2A_NEW_{i:07d}",
            collection="S2_MSI_L2A",
            geometry=GEOMETRY,
            bbox=[1, 43, 2, 44],
            datetime=t0 + timedelta(minutes=i),
            published=t0 + timedelta(minutes=i, hours=30),
            size=1,
            checksum="0" * 64,
        )
        for i in range(n)
    ]


def run(dsn: str, settings: Settings, collection: str, page_size: int) -> tuple[float, int]:
    spec = load_spec(ROOT / "collections" / "sentinel-2-l2a.yaml").model_copy(update={"id": collection})
    with psycopg.connect(dsn) as conn:
        t = time.perf_counter()
        found = discover(conn, EodagProvider(settings), spec, page_size=page_size)
        return time.perf_counter() - t, len(found.new_ids)


def fresh_database(dsn: str) -> str:
    with psycopg.connect(dsn.rsplit("/", 1)[0] + "/postgres", autocommit=True) as admin:
        admin.execute("CREATE DATABASE bench_empty")
    fresh = dsn.rsplit("/", 1)[0] + "/bench_empty"
    migrations.upgrade(fresh)
    return fresh


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--new", type=int, default=10_000)
    ap.add_argument("--known", type=int, default=100_000)
    ap.add_argument("--page-size", type=int, default=1000)
    args = ap.parse_args()
    logging.basicConfig(level=logging.WARNING)
    with throwaway_stack() as env, tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp) / "provider"
        add_entries(root, provider_entries(args.new))
        dsn = env["INGEST_DATABASE_URL"]
        with psycopg.connect(dsn) as conn:
            rows = known_rows(args.known, "history")
            t = time.perf_counter()
            for i in range(0, len(rows), 5000):
                repo.insert_discovered(conn, rows[i : i + 5000])
            conn.execute("ANALYZE ingest.products")
            conn.commit()
            print(f"{args.known} known products inserted in {time.perf_counter() - t:.1f} s")
        with ProviderServer(root, port=0) as server:
            settings = Settings(provider_url=server.url, work_dir=Path(tmp) / "work", _env_file=None)  # type: ignore[call-arg]
            EodagProvider(settings)._gateway()  # EODAG start-up is not discovery
            # the same provider products, into a database that knows none of them, then one with history
            empty_s, n_empty = run(fresh_database(dsn), settings, "history", args.page_size)
            full_s, n_full = run(dsn, settings, "history", args.page_size)
    print(f"none known:   {n_empty:6d} new in {empty_s:6.2f} s  ({n_empty / empty_s:7.0f} products/s)")
    print(f"{args.known} known: {n_full:6d} new in {full_s:6.2f} s  ({n_full / full_s:7.0f} products/s)")
    print(f"ratio (with history / without): {full_s / empty_s:.2f}  (target <= 1.5)")


if __name__ == "__main__":
    main()
