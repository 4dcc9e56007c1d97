"""Benchmark: discovery of 10,000 provider products through OData (the CDSE-like provider, EODAG's
``cop_dataspace``) vs STAC (the local provider, EODAG's ``StacSearch``), same products, same run.

    .venv/bin/python benchmarks/discovery.py [--products 10000] [--rounds 1]
    .venv/bin/python benchmarks/discovery.py --history [--new 10000] [--known 100000]

One catalogue root of synthetic index entries (``ingest.devtools.catalog.add_entries``: Sentinel-2
L2A names, footprints, publication times five minutes apart, no zip behind them: searching needs none;
the CDSE-like server shows such products without checksums, as CDSE shows a product it has not
hashed), served on 127.0.0.1 by both servers at once: ``CdseServer`` (OData, ``$top`` at most 1000)
and ``ProviderServer`` (STAC item search, ``limit`` at most 1000). ``EodagProvider.search`` pages
through every product published after a date before them all, 1000 a page on both, as discovery
does (``ingest.harvest.discover`` without the database), the two searches' pages interleaved (which
goes first alternates) so that the shared machine's drift touches both alike. Printed:

* the index load (both servers read ``index.jsonl``) and the CDSE-like server's build of its OData
  catalogue (every entry made a product once, then cached), timed directly on a server of their own;
* the first search of each server, page 1 apart from the rest: on the CDSE-like server page 1 of the
  first search builds that catalogue and filters and sorts it (the match list is cached for later
  pages and searches);
* the median page of the other pages (of ``--rounds`` pagings): seconds, products/s, the ratio OData /
  STAC, and the whole first paging of each;
* the same requests replayed bare (``requests`` + JSON decoding, no EODAG: the server's and
  the wire's share) and so what EODAG's parsing costs a page; the logins the CDSE-like server saw
  (OData searches need no token).

EODAG turns each product into an ``EOProduct`` through its metadata mapping (jsonpath, converters):
that, not the servers, is most of each page (~2 ms a product over STAC, ~5 over OData, on 2 shared
cores), so one paging of 10,000 takes about a minute; ``--rounds`` pagings of each (default 1) are
medians over their pages. OData pages stop at ``$skip`` 10,000 (CDSE's bound, which the CDSE-like
server keeps): one search reads at most 10,000 + ``$top`` products, and a larger ``--products`` is
reported short.

``--history``: the former benchmark of this file, discovery of ``--new`` products into a database
that knows ``--known`` others vs one that knows none (a throw-away stack; STAC; target ratio <= 1.5:
discovery cost follows new products, not history).
"""

from __future__ import annotations

import argparse
import logging
import statistics
import sys
import tempfile
import time
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import psycopg
import requests
from pydantic import SecretStr

sys.path.insert(0, str(Path(__file__).resolve().parent))

from _common import throwaway_stack

from ingest.adapters.eodag import EodagProvider
from ingest.collections import load_spec
from ingest.devtools.catalog import ProviderEntry, add_entries
from ingest.devtools.cdse.server import CdseServer
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


# -- OData vs STAC ------------------------------------------------------------------------------

COLLECTION = "S2_MSI_L2A"
T0 = datetime(2026, 1, 1, tzinfo=UTC)
TILES = ("31TCJ", "31TDH", "31TDJ", "31UDP", "32TLR", "32ULU", "33TWN", "30TXN")
PAGE = 1000  # what both allow: OData $top and STAC limit at most 1000
SEARCH_PATHS = ("/search", "/odata/v1/Products")


def s2_entries(n: int) -> list[ProviderEntry]:
    """``n`` Sentinel-2 L2A entries named as the generator names them (the CDSE-like server reads tile,
    orbit and baseline from the name), one sensing every 5 minutes, published a day after."""
    out = []
    for i in range(n):
        sensing = T0 + timedelta(minutes=5 * i)
        generated = sensing + timedelta(hours=2)
        tile = TILES[i % len(TILES)]
        name = (
            f"S2{'AB'[i % 2]}_MSIL2A_{sensing:%Y%m%dT%H%M%S}_N0510_R{i % 143 + 1:03d}_T{tile}_{generated:%Y%m%dT%H%M%S}"
        )
        x, y = 1 + (i % 7), 43 + (i % 5)
        footprint = [[x, y], [x + 1.1, y], [x + 1.1, y + 0.9], [x + 0.2, y + 1], [x, y + 0.9], [x, y]]
        out.append(
            ProviderEntry(
                id=name,
                collection=COLLECTION,
                geometry={"type": "Polygon", "coordinates": [footprint]},
                bbox=[x, y, x + 1.1, y + 1],
                datetime=sensing,
                published=sensing + timedelta(days=1, seconds=i % 60),
                size=800_000_000 + i,
                checksum=f"{i:064x}",
            )
        )
    return out


@dataclass(frozen=True)
class Paging:
    page_s: list[float]  # each page: from asking for it to having it as ProviderProducts
    server_s: list[float]  # each search request, as the server timed it (request read to response sent)
    products: int
    requests: int  # search requests the server counted

    @property
    def total_s(self) -> float:
        return sum(self.page_s)


def page_through(servers: dict[str, tuple[EodagProvider, ProviderServer]]) -> dict[str, Paging]:
    """Every product of each server, their pages interleaved (which one goes first alternates), so that
    the machine's drift (it is shared) touches both alike."""
    for _, server in servers.values():
        server.stats.reset()
    pages = {name: iter(p.search(COLLECTION, published_after=T0, page_size=PAGE)) for name, (p, _) in servers.items()}
    times: dict[str, list[float]] = {name: [] for name in servers}
    products = dict.fromkeys(servers, 0)
    live, turn = list(servers), 0
    while live:
        for name in live if turn % 2 == 0 else live[::-1]:
            t = time.perf_counter()
            page = next(pages[name], None)
            if page is None:
                live.remove(name)
                continue
            times[name].append(time.perf_counter() - t)
            products[name] += len(page)
        turn += 1
    out = {}
    for name, (_, server) in servers.items():
        stats = server.stats.to_dict()
        for _ in range(100):  # the server times a request when its handler ends, a moment after the client has it
            if all(r["seconds"] is not None for r in stats["recent"]):
                break
            time.sleep(0.01)
            stats = server.stats.to_dict()
        served = [float(r["seconds"] or 0.0) for r in stats["recent"] if r["path"] in SEARCH_PATHS]
        counted = sum(n for path, n in stats["paths"].items() if path in SEARCH_PATHS)
        out[name] = Paging(times[name], served, products[name], counted)
    return out


def replay(server: ProviderServer, session: requests.Session) -> tuple[list[float], int]:
    """The search requests the server recorded last (one paging), sent again bare: (seconds each, products)."""
    recorded = [r for r in server.stats.to_dict()["recent"] if r["path"] in SEARCH_PATHS]
    times = []
    found = 0
    for r in recorded:
        url = server.url + r["path"] + (f"?{r['query']}" if r["query"] else "")
        body = r["body"].encode() if r["body"] else None
        headers = {"Content-Type": "application/json"} if body else {}
        t = time.perf_counter()
        response = session.request(r["method"], url, data=body, headers=headers, timeout=120)
        response.raise_for_status()
        doc = response.json()
        times.append(time.perf_counter() - t)
        found += len(doc.get("value") or doc.get("features") or [])
    return times, found


def settings_for(work_dir: Path, **values: Any) -> Settings:
    return Settings(work_dir=work_dir, _env_file=None, **values)  # type: ignore[call-arg]


def direct_builds(root: Path) -> tuple[float, float]:
    """(index load, OData catalogue build) in seconds, on a CDSE-like server of their own (never started)."""
    probe = CdseServer(root, port=0, warm=False)
    try:
        t = time.perf_counter()
        probe.index.snapshot()
        loaded = time.perf_counter() - t
        t = time.perf_counter()
        probe.catalogue()
        return loaded, time.perf_counter() - t
    finally:
        probe.stop()


def paths(args: argparse.Namespace) -> None:
    with tempfile.TemporaryDirectory(prefix="bench-discovery-") as tmp:
        root, work = Path(tmp) / "provider", Path(tmp) / "work"
        t = time.perf_counter()
        add_entries(root, s2_entries(args.products))
        print(f"{args.products:,} index entries written in {time.perf_counter() - t:.1f} s")
        load_s, build_s = direct_builds(root)
        print(f"direct: index load {load_s:.2f} s, OData catalogue build {build_s:.2f} s "
              f"({args.products / build_s:,.0f} products/s)", flush=True)  # fmt: skip
        with CdseServer(root, port=0) as cdse, ProviderServer(root, port=0) as stac:
            odata = EodagProvider(
                settings_for(
                    work / "odata", provider="cop_dataspace", provider_url="", provider_mirror_url=cdse.url,
                    provider_username=SecretStr("ingest@example.com"), provider_password=SecretStr("ingest"),
                )
            )  # fmt: skip
            local = EodagProvider(settings_for(work / "stac", provider="local", provider_url=stac.url))
            servers: dict[str, tuple[EodagProvider, ProviderServer]] = {"OData": (odata, cdse), "STAC": (local, stac)}
            for provider, server in servers.values():
                provider._gateway()  # EODAG start-up is not discovery
                server.index.snapshot()  # the index read (timed above), not in the first search
            pagings: dict[str, list[Paging]] = {name: [] for name in servers}
            bare: dict[str, list[float]] = {name: [] for name in servers}
            with requests.Session() as session:
                for r in range(args.rounds):
                    for name, x in page_through(servers if r % 2 == 0 else dict(reversed(servers.items()))).items():
                        pagings[name].append(x)
                        times, found = replay(servers[name][1], session)
                        if found != x.products:
                            raise SystemExit(f"FAIL: {name}: the replay found {found} products, EODAG {x.products}")
                        bare[name] += times
                        print(f"{name:5s} paging {r + 1}: {x.total_s:6.2f} s, {len(x.page_s)} pages, {x.products} "
                              f"products; bare replay {sum(times):.2f} s", flush=True)  # fmt: skip
            tokens = cdse.stats_dict()["cdse"]["tokens"]
    print(f"\n{args.products:,} products, {PAGE} a page, {args.rounds} paging(s) of each; page 1 of the first "
          "search apart (it builds the server's caches); medians of the other pages")  # fmt: skip
    rate: dict[str, float] = {}
    for name in servers:
        ps = pagings[name]
        later = [t for i, p in enumerate(ps) for t in p.page_s[(0 if i else 1) :]]
        later_served = [t for i, p in enumerate(ps) for t in p.server_s[(0 if i else 1) :]]
        page_p50, served_p50 = statistics.median(later or [ps[0].page_s[0]]), statistics.median(later_served or [0.0])
        bare_p50 = statistics.median(bare[name])
        rate[name] = PAGE / page_p50
        first, first_served, rest = ps[0].page_s[0], ps[0].server_s[0], ps[0].total_s - ps[0].page_s[0]
        print(f"{name:5s} first search, page 1: {first:5.2f} s (the server's part {first_served:.2f} s); "
              f"the other pages: {rest:5.2f} s; {ps[0].requests} requests a paging")  # fmt: skip
        print(f"      a page, p50: {page_p50:5.2f} s = {rate[name]:,.0f} products/s; the server's part "
              f"{served_p50:.3f} s; bare (requests + JSON) {bare_p50:.3f} s; EODAG's parsing "
              f"{page_p50 - bare_p50:.2f} s ({1 - bare_p50 / page_p50:.0%})")  # fmt: skip
        if any(p.products != args.products for p in ps):
            print(f"  !! {name} paged {sorted({p.products for p in ps})} products, not {args.products}")
    print(f"ratio products/s OData / STAC: {rate['OData'] / rate['STAC']:.2f}; whole first paging OData "
          f"{pagings['OData'][0].total_s:.1f} s, STAC {pagings['STAC'][0].total_s:.1f} s "
          f"(ratio {pagings['OData'][0].total_s / pagings['STAC'][0].total_s:.2f})")  # fmt: skip
    print(f"CDSE-like server logins: grants {tokens['grants']}, sessions opened {tokens['sessions']['opened']}")


# -- with history vs without (--history) ----------------------------------------------------------


def history(args: argparse.Namespace) -> None:
    """``--history``: 10,000 new products discovered into a database with 100,000 known vs none."""
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


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--products", type=int, default=10_000, help="OData vs STAC: products in the catalogue")
    ap.add_argument("--rounds", type=int, default=1, help="OData vs STAC: pagings of each (EODAG: ~1 min a paging)")
    ap.add_argument("--history", action="store_true", help="the benchmark with history vs without instead")
    ap.add_argument("--new", type=int, default=10_000, help="--history: new products")
    ap.add_argument("--known", type=int, default=100_000, help="--history: products already known")
    ap.add_argument("--page-size", type=int, default=1000, help="--history: page size")
    args = ap.parse_args()
    logging.basicConfig(level=logging.WARNING)
    if args.history:
        history(args)
    else:
        paths(args)


if __name__ == "__main__":
    main()
