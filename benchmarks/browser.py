"""Benchmark: STAC Browser (/browser/ of `ingest serve`) on a 100,000-item catalogue vs a 1,000-item one.

    .venv/bin/python benchmarks/browser.py [--items 100000] [--rounds 5]

A throw-away stack on free ports with two catalogues on one PostgreSQL cluster, built as
benchmarks/search.py builds them (the project's ``sentinel-2-l2a`` collection, synthetic items on
Sentinel-2 tiles, 125 dates per tile, loaded with pypgstac's loader; the small one is 8 tiles of the
large one), and one real ``ingest serve`` per catalogue, serving the built STAC Browser too.

In headless Chromium (Debian's, through tests/browser.py), a fresh context each time (no browser
cache), the two catalogues alternating round by round, from navigation to what a person waits for:

1. the root page until the collection's title shows;
2. the collection's page until its first item (the API's first item of the collection) shows;
3. that item's page until its id and the map's canvas show.

Prints the medians per page and catalogue, the ratio large / small, and any console error, failed
request or HTTP error a page had (there should be none: the item hrefs are s3://, which the browser
lists but does not fetch).
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import time
from pathlib import Path

import psycopg
import requests

sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # tests.browser: the page tests' Chromium

from _common import throwaway_stack
from search import COLLECTION, DATES, count_items, ingest_serve, large_tiles, load_catalogue, small_tiles, with_database

from ingest.collections import load_spec
from ingest.web.browser import DEFAULT_DIR
from tests.browser import Tab, chromium, tab

ROOT = Path(__file__).resolve().parents[1]
TIMEOUT_MS = 60_000


def _root(t: Tab, url: str, title: str, item_id: str) -> None:
    t.page.goto(f"{url}/browser/")
    t.page.get_by_text(title, exact=True).first.wait_for(timeout=TIMEOUT_MS)


def _collection(t: Tab, url: str, title: str, item_id: str) -> None:
    t.page.goto(f"{url}/browser/#/collections/{COLLECTION}")
    t.page.get_by_text(item_id, exact=True).first.wait_for(timeout=TIMEOUT_MS)


def _item(t: Tab, url: str, title: str, item_id: str) -> None:
    t.page.goto(f"{url}/browser/#/collections/{COLLECTION}/items/{item_id}")
    t.page.get_by_text(item_id).first.wait_for(timeout=TIMEOUT_MS)
    t.page.wait_for_selector(".ol-viewport canvas", timeout=TIMEOUT_MS)


def _first_item(url: str) -> str:
    answer = requests.get(f"{url}/collections/{COLLECTION}/items?limit=1", timeout=30)
    answer.raise_for_status()
    return str(answer.json()["features"][0]["id"])


PAGES = {"root": _root, "collection": _collection, "item": _item}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--items", type=int, default=100_000, help="items in the large catalogue (rounded up to tiles)")
    ap.add_argument("--rounds", type=int, default=5)
    ap.add_argument("--context", choices=("on", "auto", "off"), default="on", help="INGEST_API_CONTEXT of both servers")
    args = ap.parse_args()
    if not (DEFAULT_DIR / "index.html").is_file():
        raise SystemExit("STAC Browser is not built: run scripts/bootstrap.sh")
    spec = load_spec(ROOT / "collections" / f"{COLLECTION}.yaml")
    doc, title = spec.stac_collection(), spec.stac.title
    small = small_tiles()
    large = large_tiles(max(len(small), -(-args.items // DATES)))
    with throwaway_stack() as env, tempfile.TemporaryDirectory(prefix="bench-browser-") as tmp:
        admin, reader = env["INGEST_DATABASE_URL"], env["INGEST_API_DATABASE_URL"]
        template = admin.rsplit("/", 1)[1]
        with psycopg.connect(with_database(admin, "postgres"), autocommit=True) as conn:
            for name in ("cat_small", "cat_large"):
                conn.execute(f"CREATE DATABASE {name} TEMPLATE {template}")
        for name, tiles in (("small", small), ("large", large)):
            dsn = with_database(admin, f"cat_{name}")
            seconds = load_catalogue(dsn, tiles, doc, None)
            print(f"{name}: {count_items(dsn):,} items loaded in {seconds:,.0f} s", flush=True)
        logs = Path(tmp)
        with (
            ingest_serve(with_database(reader, "cat_small"), logs, args.context, 1) as small_url,
            ingest_serve(with_database(reader, "cat_large"), logs, args.context, 1) as large_url,
            chromium() as browser,
        ):
            urls = {"small": small_url, "large": large_url}
            first = {name: _first_item(url) for name, url in urls.items()}
            runs: dict[tuple[str, str], list[float]] = {}
            problems: list[str] = []
            for r in range(args.rounds + 1):  # the first round warms both servers and the OS cache up
                for name, url in urls.items():
                    for page, visit in PAGES.items():
                        with tab(browser) as t:
                            started = time.perf_counter()
                            visit(t, url, title, first[name])
                            took = time.perf_counter() - started
                            problems += [f"{name} {page}: {p}" for p in t.problems()]
                        if r:
                            runs.setdefault((name, page), []).append(took)
    print(f"\nINGEST_API_CONTEXT={args.context}; median of {args.rounds} rounds, a fresh browser context each")
    print(f"{'page':12} {'small ms':>9} {'large ms':>9} {'ratio':>6}")
    for page in PAGES:
        s, big = (statistics.median(runs[(n, page)]) * 1000 for n in ("small", "large"))
        print(f"{page:12} {s:9.0f} {big:9.0f} {big / s:6.2f}")
    print(f"\npage problems: {len(problems)}")
    for p in sorted(set(problems))[:20]:
        print(f"  {p}")


if __name__ == "__main__":
    main()
