"""Benchmark: STAC API search on a 1,000,000-item catalogue vs a 1,000-item one, same queries, same run.

    .venv/bin/python benchmarks/search.py [--items 1000000] [--requests 200] [--concurrency 4]
                                          [--workers 1] [--context on] [--partition none|month|year]

What it builds (a throw-away stack on free ports, removed at the end): two databases on one
PostgreSQL cluster, each a catalogue with one collection ``sentinel-2-l2a`` (the project's own
collection document), loaded with pypgstac's loader (``insert``: COPY into the partition):

* the large one: ``--items`` Sentinel-2 L2A items over ``--items / 125`` tiles, one item per tile
  every 5 days for 125 dates (2024-01-01 .. 2025-09-17; real tiles are revisited every 2-5 days);
* the small one: the large one's items over 8 neighbouring tiles (8 x 125 = 1,000 items) - a subset.

Tiles are Sentinel-2 MGRS-like footprints: 109.8 km UTM squares on the 100 km grid (six per UTM zone
row, latitudes ~36-70 N, zones from 33 onwards), reprojected to lon/lat. Items look like ours after
hydration (id, platform, eo:cloud_cover, proj:code, mgrs:*, created/updated, 8 assets with href,
file:size, file:checksum and the collection's item_assets fields); pgstac stores them dehydrated.

Queries are what a federation broker sends: ``bbox`` + ``datetime`` + ``collections``, limit 10 and
100, GET and POST ``/search``. Every query's bbox lies inside the small catalogue's 8 tiles (0.3 deg
from their edges), so both catalogues hold exactly the same matching items: the two answer the same
ids and ``numberMatched`` (checked), and the ratio measures the cost of the catalogue's size alone,
not of bigger answers. bbox 0.1-1.0 deg wide, datetime windows of 7, 30 or 90 days. The landing page
and ``/collections`` are timed too.

One real ``ingest serve`` process per catalogue (same settings, 127.0.0.1, its read-only role;
``INGEST_API_CONTEXT`` as configured: on by default, so every search also counts ``numberMatched``).
Per query kind: latency from ``--requests`` sequential requests per catalogue, the two catalogues
interleaved in blocks of 20 (a shared machine's noise falls on both), after a warm-up; throughput
from as many requests again sent by ``--concurrency`` client threads. Every search request has a
query of its own (each catalogue gets the same ones): pgstac caches the count of a where clause for
a day (``search_wheres``), and a broker's searches are mostly new to the member. Printed: req/s, p50 and
p95 in ms per kind and catalogue, and the large/small ratios (target: p95 ratio <= 2).
"""

from __future__ import annotations

import argparse
import itertools
import os
import random
import statistics
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit, urlunsplit

import psycopg
import requests
from pypgstac.db import PgstacDB
from pypgstac.load import Loader, Methods
from rasterio.crs import CRS
from rasterio.warp import transform as warp_transform

sys.path.insert(0, str(Path(__file__).resolve().parent))

from _common import free_port, http_server, throwaway_stack

from ingest.adapters import pgstac
from ingest.collections import load_spec

ROOT = Path(__file__).resolve().parents[1]
COLLECTION = "sentinel-2-l2a"
DATES = 125  # per tile, every 5 days
FIRST_DAY = datetime(2024, 1, 1, tzinfo=UTC)
REVISIT = timedelta(days=5)
TILE_SIZE = 109_800.0  # metres: a Sentinel-2 tile (100 km grid, 9.8 km overlap)
EASTINGS = [200_000 + 100_000 * i for i in range(6)]
NORTHINGS = [4_000_000 + 100_000 * i for i in range(38)]  # tile tops, ~36-70 N
SMALL_ZONE, SMALL_ROWS, SMALL_COLS = 33, (10, 11), (1, 2, 3, 4)  # 8 tiles around 45-46 N, 13-17 E
MARGIN = 0.3  # degrees kept between a query bbox and the edge of the small catalogue's tiles
ASSETS = ("red", "green", "blue", "nir", "scl", "visual", "product_metadata", "preview")
LATITUDE_BANDS = "CDEFGHJKLMNPQRSTUVWX"
BLOCK = 20  # requests per catalogue before switching to the other one


# ----------------------------------------------------------------------------- the catalogues


@dataclass(frozen=True)
class Tile:
    zone: int
    easting: int
    northing: int  # top edge
    ring: list[list[float]]  # lon/lat, closed
    name: str  # MGRS-like, e.g. 33TWL


def tile(zone: int, col: int, row: int) -> Tile:
    e, n = EASTINGS[col], NORTHINGS[row]
    xs = [e, e + TILE_SIZE, e + TILE_SIZE, e, e]
    ys = [n, n, n - TILE_SIZE, n - TILE_SIZE, n]
    lons, lats = warp_transform(CRS.from_epsg(32600 + zone), CRS.from_epsg(4326), xs, ys)
    ring = [[round(x, 6), round(y, 6)] for x, y in zip(lons, lats, strict=True)]
    band = LATITUDE_BANDS[min(int((sum(lats[:4]) / 4 + 80) // 8), len(LATITUDE_BANDS) - 1)]
    square = "ABCDEFGHJKLMNPQRSTUVWXYZ"[col + 2] + "ABCDEFGHJKLMNPQRSTUV"[row % 20]
    return Tile(zone, e, n, ring, f"{zone:02d}{band}{square}")


def small_tiles() -> list[Tile]:
    return [tile(SMALL_ZONE, c, r) for r in SMALL_ROWS for c in SMALL_COLS]


def large_tiles(count: int) -> list[Tile]:
    """The small catalogue's tiles first, then zone by zone (from 33), row by row; not the few tiles that
    cross the antimeridian (real items split those into MultiPolygons; a plain ring would span the globe)."""
    first = [(SMALL_ZONE, c, r) for r in SMALL_ROWS for c in SMALL_COLS]
    zones = [((SMALL_ZONE - 1 + k) % 60) + 1 for k in range(60)]
    rest = ((z, c, r) for z in zones for r in range(len(NORTHINGS)) for c in range(len(EASTINGS)))
    tiles = (tile(z, c, r) for z, c, r in itertools.chain(first, (k for k in rest if k not in first)))
    return list(itertools.islice((t for t in tiles if bounds(t)[2] - bounds(t)[0] < 90), count))


def rfc3339(t: datetime) -> str:
    return t.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def items_of(tiles: list[Tile], collection_doc: dict[str, Any]) -> Iterator[dict[str, Any]]:
    """Date-major (as a catalogue fills up), deterministic: the same tile and date make the same item."""
    item_assets = collection_doc["item_assets"]
    extensions = [
        *collection_doc["stac_extensions"],
        "https://stac-extensions.github.io/file/v2.1.0/schema.json",
        "https://stac-extensions.github.io/projection/v2.0.0/schema.json",
        "https://stac-extensions.github.io/mgrs/v1.0.0/schema.json",
    ]
    for d in range(DATES):
        day = FIRST_DAY + d * REVISIT
        for t in tiles:
            mean_lon = sum(p[0] for p in t.ring[:4]) / 4
            # about 10:30 local solar time, as Sentinel-2 passes
            when = day + timedelta(hours=10.5 - mean_lon / 15, seconds=(t.northing // 100_000) * 3)
            sat = "S2A" if (d + t.zone) % 2 == 0 else "S2B"
            iid = f"{sat}_T{t.name}_{when:%Y%m%dT%H%M%S}_L2A"
            rng = random.Random(iid)  # noqa: S311 - synthetic data, not cryptography
            lons, lats = [p[0] for p in t.ring], [p[1] for p in t.ring]
            stamp = rfc3339(when + timedelta(days=2))
            yield {
                "type": "Feature",
                "stac_version": "1.1.0",
                "stac_extensions": extensions,
                "id": iid,
                "collection": COLLECTION,
                "geometry": {"type": "Polygon", "coordinates": [t.ring]},
                "bbox": [min(lons), min(lats), max(lons), max(lats)],
                "properties": {
                    "datetime": rfc3339(when),
                    "created": stamp,
                    "updated": stamp,
                    "platform": "sentinel-2a" if sat == "S2A" else "sentinel-2b",
                    "constellation": "sentinel-2",
                    "instruments": ["msi"],
                    "eo:cloud_cover": round(rng.uniform(0, 100), 2),
                    "proj:code": f"EPSG:{32600 + t.zone}",
                    "mgrs:utm_zone": t.zone,
                    "mgrs:latitude_band": t.name[2],
                    "mgrs:grid_square": t.name[3:],
                    "processing:level": "L2A",
                    "ingest:provider": "bench",
                },
                "links": [],
                "assets": {
                    key: {
                        **item_assets[key],
                        "href": f"s3://eo-catalogue/ingest/{COLLECTION}/{iid}/{key}"
                        + (".xml" if key == "product_metadata" else ".jp2" if key == "preview" else ".tif"),
                        "file:size": rng.randrange(1_000_000, 250_000_000),
                        "file:checksum": "1220" + rng.getrandbits(256).to_bytes(32, "big").hex(),
                    }
                    for key in ASSETS
                },
            }


def load_catalogue(dsn: str, tiles: list[Tile], collection_doc: dict[str, Any], partition: str | None) -> float:
    """Publish the collection, load every item (pypgstac insert), ANALYZE; returns the seconds taken."""
    pgstac.upsert_collections(dsn, [collection_doc])
    if partition is not None:
        with psycopg.connect(dsn, autocommit=True) as conn:
            conn.execute("UPDATE pgstac.collections SET partition_trunc = %s WHERE id = %s", [partition, COLLECTION])
    n = len(tiles) * DATES
    started = time.perf_counter()
    done = 0

    def counted() -> Iterator[dict[str, Any]]:
        nonlocal done
        for item in items_of(tiles, collection_doc):
            done += 1
            if done % 100_000 == 0:
                rate = done / (time.perf_counter() - started)
                print(f"    {done:>9,} / {n:,} items  ({rate:,.0f} items/s)", flush=True)
            yield item

    with PgstacDB(dsn=dsn) as db:
        Loader(db).load_items(counted(), insert_mode=Methods.insert, chunksize=20_000)
    with psycopg.connect(dsn, autocommit=True) as conn:
        conn.execute("ANALYZE pgstac.items")
    seconds = time.perf_counter() - started
    pgstac.refresh_extent(dsn, COLLECTION)
    return seconds


def count_items(dsn: str) -> int:
    with psycopg.connect(dsn) as conn:
        row = conn.execute("SELECT count(*) FROM pgstac.items").fetchone()
    return int(row[0]) if row else -1


def with_database(dsn: str, database: str) -> str:
    return urlunsplit(urlsplit(dsn)._replace(path=f"/{database}"))


# ----------------------------------------------------------------------------- the servers


@contextmanager
def ingest_serve(
    reader_dsn: str, logs: Path, context: str, workers: int, *, launcher: list[str] | None = None
) -> Iterator[str]:
    """``python -m ingest serve`` on a free port of 127.0.0.1, stopped with SIGTERM (``launcher``: another
    command line taking the same arguments after ``serve``)."""
    port = free_port()
    env = {k: v for k, v in os.environ.items() if not k.startswith("INGEST_")}
    env.update(
        INGEST_API_DATABASE_URL=reader_dsn,
        INGEST_API_CONTEXT=context,
        INGEST_STACK_DIR=str(logs / "no-stack"),
        INGEST_LOG_LEVEL="WARNING",
    )
    log = logs / f"serve-{port}.log"
    start = launcher or [sys.executable, "-m", "ingest", "--json-logs", "serve"]
    cmd = [*start, "--port", str(port), "--workers", str(workers)]
    url = f"http://127.0.0.1:{port}"
    with http_server("ingest serve", cmd, env, log, url, "/_mgmt/ping"):
        yield url


# ----------------------------------------------------------------------------- the queries


@dataclass(frozen=True)
class Query:
    bbox: tuple[float, float, float, float]
    start: datetime
    end: datetime

    @property
    def datetime(self) -> str:
        return f"{rfc3339(self.start)}/{rfc3339(self.end)}"


def bounds(t: Tile) -> tuple[float, float, float, float]:
    lons, lats = [p[0] for p in t.ring], [p[1] for p in t.ring]
    return min(lons), min(lats), max(lons), max(lats)


def overlaps(a: tuple[float, float, float, float], b: tuple[float, float, float, float]) -> bool:
    return a[0] <= b[2] and b[0] <= a[2] and a[1] <= b[3] and b[1] <= a[3]


def make_queries(seed: int = 7) -> Iterator[Query]:
    """Queries whose bbox touches only the small catalogue's tiles, never a neighbour (same zone or the
    zones either side, whatever --items): both catalogues then hold the same matching items."""
    small = small_tiles()
    inner = {(t.zone, t.easting, t.northing) for t in small}
    lons = [p[0] for t in small for p in t.ring]
    lats = [p[1] for t in small for p in t.ring]
    west, south, east, north = min(lons) + MARGIN, min(lats) + MARGIN, max(lons) - MARGIN, max(lats) - MARGIN
    neighbours = [
        bounds(t)
        for z in (SMALL_ZONE - 1, SMALL_ZONE, SMALL_ZONE + 1)
        for r in range(len(NORTHINGS))
        for c in range(len(EASTINGS))
        if (t := tile(z, c, r)) and (t.zone, t.easting, t.northing) not in inner
    ]
    last_day = FIRST_DAY + (DATES - 1) * REVISIT
    rng = random.Random(seed)  # noqa: S311 - synthetic queries
    while True:
        w, h = rng.uniform(0.1, 1.0), rng.uniform(0.1, 0.8)
        x, y = rng.uniform(west, east - w), rng.uniform(south, north - h)
        if any(overlaps((x, y, x + w, y + h), box) for box in neighbours):
            continue
        days = rng.choice((7, 30, 90))
        start = FIRST_DAY + timedelta(days=rng.uniform(0, (last_day - FIRST_DAY).days - days))
        yield Query((round(x, 4), round(y, 4), round(x + w, 4), round(y + h, 4)), start, start + timedelta(days))


Send = Callable[[requests.Session, str, Query], requests.Response]


def search_get(limit: int) -> Send:
    def send(session: requests.Session, url: str, q: Query) -> requests.Response:
        params = {"collections": COLLECTION, "bbox": ",".join(map(str, q.bbox)), "datetime": q.datetime}
        return session.get(url + "/search", params={**params, "limit": str(limit)}, timeout=60)

    return send


def search_post(limit: int) -> Send:
    def send(session: requests.Session, url: str, q: Query) -> requests.Response:
        body = {"collections": [COLLECTION], "bbox": list(q.bbox), "datetime": q.datetime, "limit": limit}
        return session.post(url + "/search", json=body, timeout=60)

    return send


def path_get(path: str) -> Send:
    def send(session: requests.Session, url: str, q: Query) -> requests.Response:
        return session.get(url + path, timeout=60)

    return send


KINDS: dict[str, Send] = {
    "GET /search limit=10": search_get(10),
    "GET /search limit=100": search_get(100),
    "POST /search limit=10": search_post(10),
    "POST /search limit=100": search_post(100),
    "GET / (landing page)": path_get("/"),
    "GET /collections": path_get("/collections"),
}


def timed(send: Send, session: requests.Session, url: str, q: Query) -> float:
    t = time.perf_counter()
    r = send(session, url, q)
    seconds = time.perf_counter() - t
    if r.status_code != 200:
        raise SystemExit(f"{url}: HTTP {r.status_code}: {r.text[:500]}")
    return seconds


@dataclass
class Figures:
    latencies: list[float]
    rate: float  # req/s with the concurrent clients

    def pct(self, p: float) -> float:
        ordered = sorted(self.latencies)
        return ordered[min(len(ordered) - 1, max(0, round(p / 100 * len(ordered)) - 1))]


def measure(urls: dict[str, str], send: Send, queries: Iterator[Query], n: int, concurrency: int) -> dict[str, Figures]:
    """Latencies and throughput of ``send``; every request of a search kind has a query of its own (the
    two catalogues get the same ones): pgstac caches the counts of a search's where clause
    (``search_wheres``), and a broker's searches are mostly new to it."""
    sessions = {name: requests.Session() for name in urls}
    warm_up = list(itertools.islice(queries, 10))
    for name, url in urls.items():  # connections, plans, caches
        for q in warm_up:
            timed(send, sessions[name], url, q)
    sequential, concurrent = list(itertools.islice(queries, n)), list(itertools.islice(queries, n))
    latencies: dict[str, list[float]] = {name: [] for name in urls}
    for i in range(0, n, BLOCK):
        for name, url in urls.items():
            latencies[name] += [timed(send, sessions[name], url, q) for q in sequential[i : i + BLOCK]]
    rates = {}
    for name, url in urls.items():
        rates[name] = throughput(send, url, concurrent, concurrency)
    return {name: Figures(latencies[name], rates[name]) for name in urls}


def throughput(send: Send, url: str, queries: list[Query], concurrency: int) -> float:
    """Requests per second with ``concurrency`` clients, each with its own connection, sharing the queries."""
    chunks = [queries[i::concurrency] for i in range(concurrency)]

    def client(chunk: list[Query]) -> None:
        session = requests.Session()
        for q in chunk:
            timed(send, session, url, q)

    started = time.perf_counter()
    with ThreadPoolExecutor(concurrency) as pool:
        list(pool.map(client, chunks))
    return len(queries) / (time.perf_counter() - started)


def same_answers(urls: dict[str, str], queries: list[Query]) -> tuple[int, float]:
    """Does every query answer the same ids (first page of 100) and numberMatched from both? Returns the
    number of queries that do not, and the mean numberMatched."""
    matched, differ = [], 0
    for q in queries:
        pages = {}
        for name, url in urls.items():
            doc = search_post(100)(requests.Session(), url, q).json()
            pages[name] = ({f["id"] for f in doc["features"]}, doc.get("numberMatched"))
        first, second = pages.values()
        if first != second:
            print(f"WARNING: the catalogues answer {q} differently: {first[1]} vs {second[1]} matched")
            differ += 1
        matched.append(first[1] or 0)
    return differ, statistics.mean(matched)


# ----------------------------------------------------------------------------- main


def run(args: argparse.Namespace) -> None:
    small = small_tiles()
    n_tiles = max(len(small), -(-args.items // DATES))
    large = large_tiles(n_tiles)
    doc = load_spec(ROOT / "collections" / f"{COLLECTION}.yaml").stac_collection()
    partition = None if args.partition == "none" else args.partition
    with throwaway_stack() as env, tempfile.TemporaryDirectory(prefix="bench-search-") as tmp:
        admin, reader = env["INGEST_DATABASE_URL"], env["INGEST_API_DATABASE_URL"]
        template = urlsplit(admin).path.lstrip("/")
        with psycopg.connect(with_database(admin, "postgres"), autocommit=True) as conn:
            for name in ("cat_small", "cat_large"):
                conn.execute(f"CREATE DATABASE {name} TEMPLATE {template}")
        dsns = {"small": with_database(admin, "cat_small"), "large": with_database(admin, "cat_large")}
        print(f"pgstac {pgstac.version(admin)}, partition_trunc {args.partition}, context {args.context}")
        for name, tiles in (("small", small), ("large", large)):
            print(f"loading the {name} catalogue: {len(tiles):,} tiles x {DATES} dates", flush=True)
            seconds = load_catalogue(dsns[name], tiles, doc, partition)
            got = count_items(dsns[name])
            print(f"  {got:,} items in {seconds:,.0f} s ({got / seconds:,.0f} items/s)", flush=True)
        queries = make_queries()
        logs = Path(tmp)
        with (
            ingest_serve(with_database(reader, "cat_small"), logs, args.context, args.workers) as small_url,
            ingest_serve(with_database(reader, "cat_large"), logs, args.context, args.workers) as large_url,
        ):
            urls = {"small": small_url, "large": large_url}
            checked = list(itertools.islice(queries, 30))
            differ, mean_matched = same_answers(urls, checked)
            print(f"{len(checked) - differ} of {len(checked)} queries answer the same ids and numberMatched from "
                  f"both catalogues (mean numberMatched {mean_matched:.1f})")  # fmt: skip
            print(f"\n{args.requests} requests per kind and catalogue; throughput with {args.concurrency} clients")
            head = f"{'kind':24} {'catalogue':>9} {'req/s':>7} {'p50 ms':>8} {'p95 ms':>8}"
            print(head + f"   {'ratio large/small: p50':>22} {'p95':>5} {'req/s':>6}")
            worst = 0.0
            for kind, send in KINDS.items():
                figs = measure(urls, send, queries, args.requests, args.concurrency)
                for name in ("small", "large"):
                    f = figs[name]
                    line = f"{kind:24} {name:>9} {f.rate:7.1f} {f.pct(50) * 1000:8.1f} {f.pct(95) * 1000:8.1f}"
                    if name == "large":
                        s = figs["small"]
                        p50, p95 = f.pct(50) / s.pct(50), f.pct(95) / s.pct(95)
                        line += f"   {p50:22.2f} {p95:5.2f} {f.rate / s.rate:6.2f}"
                        worst = max(worst, p95) if "search" in kind else worst
                    print(line, flush=True)
            print(f"\nworst p95 ratio large/small over the searches: {worst:.2f} (target <= 2)")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--items", type=int, default=1_000_000, help="items in the large catalogue (rounded up to tiles)")
    ap.add_argument("--requests", type=int, default=200, help="requests per query kind and catalogue")
    ap.add_argument("--concurrency", type=int, default=4, help="client threads for the throughput figures")
    ap.add_argument("--workers", type=int, default=1, help="`ingest serve --workers`")
    ap.add_argument("--context", choices=("on", "auto", "off"), default="on", help="INGEST_API_CONTEXT")
    ap.add_argument(
        "--partition", choices=("none", "month", "year"), default="none",
        help="pgstac partition_trunc of the collection (none: pgstac's default, one partition per collection)",
    )  # fmt: skip
    args = ap.parse_args()
    if args.items < len(small_tiles()) * DATES:
        ap.error(f"--items must be at least the small catalogue's {len(small_tiles()) * DATES}")
    run(args)


if __name__ == "__main__":
    main()
