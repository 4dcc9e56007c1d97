"""Backfill end to end: EODAG searches the local provider chunk by chunk, products and chunks land
in the real database, jobs in procrastinate's table.

The provider holds eight S2 L2A products: six sensed in [2026-03-01, 2026-03-04) (two per day, one
of them exactly on a chunk boundary) and two just outside (one exactly at the exclusive end). Two
tiles alternate, 31TDH (around 1.77 E, 43.34 N) and 31TCJ (around 0.50 E, 44.22 N), so a bbox can
take one and leave the other.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

import pytest

from ingest import backfill as bf
from ingest.adapters.eodag import EodagProvider
from ingest.adapters.queue import ProductQueue
from ingest.devtools.catalog import ProviderEntry
from ingest.devtools.provider import Faults
from ingest.devtools.publish import plan_products, publish_generated
from ingest.harvest import to_discovered
from ingest.stages.artifacts import ProviderProduct
from ingest.state import repo
from tests.conftest import ROOT, Stack, run_cli
from tests.integration.conftest import World, WorldFactory

START, END = "2026-03-01", "2026-03-04"
TDH_ONLY = "1.0,43.0,2.5,44.0"  # 31TDH's footprint, not 31TCJ's
# (first sensing time, how many): plan_products spaces them 10 minutes apart, tiles 31TDH then 31TCJ
BATCHES = [
    (datetime(2026, 2, 28, 23, 50, tzinfo=UTC), 1),  # before the range
    (datetime(2026, 3, 1, 0, 0, tzinfo=UTC), 2),
    (datetime(2026, 3, 2, 0, 0, tzinfo=UTC), 2),  # the first one exactly on the chunk boundary
    (datetime(2026, 3, 3, 12, 0, tzinfo=UTC), 2),
    (datetime(2026, 3, 4, 0, 0, tzinfo=UTC), 1),  # exactly at the (exclusive) end
]


@pytest.fixture(scope="module")
def provider_tree(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, list[ProviderEntry]]:
    """Generated once per module (about 0.5 s a product) and copied into each test's provider."""
    root = tmp_path_factory.mktemp("backfill-provider")
    entries = [
        publish_generated(root, plan, size=60)
        for first, count in BATCHES
        for plan in plan_products(count, kinds=("S2_MSI_L2A",), start=first)
    ]
    return root, entries


@dataclass
class Site:
    world: World
    entries: list[ProviderEntry]
    env: dict[str, str]

    def in_range(self, *, tile: str | None = None) -> set[str]:
        lo, hi = datetime(2026, 3, 1, tzinfo=UTC), datetime(2026, 3, 4, tzinfo=UTC)
        return {e.id for e in self.entries if lo <= e.datetime < hi and (tile is None or f"_T{tile}_" in e.id)}

    def request(self, *, bbox: str | None = None) -> bf.Request:
        return bf.make_request(self.world.spec, start=START, end=END, bbox=bbox)

    def backfill(self, request: bf.Request | None = None) -> tuple[bf.Plan, bf.Summary]:
        request = request or self.request()
        with ProductQueue(self.world.settings) as queue:
            plan = bf.prepare(self.world.conn, request)
            summary = bf.run(
                self.world.conn, EodagProvider(self.world.settings), queue, request, plan, bf.LogProgress()
            )
        self.world.conn.close()  # release the backfill's advisory lock, as the end of a CLI run does
        self.world.conn = type(self.world.conn).connect(self.world.dsn)
        return plan, summary

    def cli(self, *args: str, timeout: float = 120) -> subprocess.CompletedProcess[str]:
        return run_cli("--text-logs", "backfill", self.world.spec.id, *args, env=self.env, timeout=timeout)

    def searches(self) -> int:
        return int(self.world.server.stats.to_dict()["paths"].get("/search", 0))


@pytest.fixture
def site(make_world: WorldFactory, provider_tree: tuple[Path, list[ProviderEntry]], stack: Stack) -> Site:
    world = make_world("S2_MSI_L2A", count=0)
    tree, entries = provider_tree
    shutil.copytree(tree, world.root, dirs_exist_ok=True)
    spec_dir = world.settings.work_dir.parent / "collections"
    spec_dir.mkdir()
    spec_dir.joinpath(f"{world.spec.id}.yaml").write_text(
        (ROOT / "collections" / "sentinel-2-l2a.yaml").read_text().replace("id: sentinel-2-l2a", f"id: {world.spec.id}")
    )
    env = {
        **stack.env,
        "INGEST_DATABASE_URL": world.dsn,
        "INGEST_PROVIDER_URL": world.server.url,
        "INGEST_PROVIDER_SEARCH_RETRIES": "0",
        "INGEST_WORK_DIR": str(world.settings.work_dir),
        "INGEST_STACK_DIR": str(world.settings.work_dir.parent / "stack"),
        "INGEST_COLLECTIONS_DIR": str(spec_dir),
    }
    return Site(world, entries, env)


def jobs(w: World) -> dict[str, int]:
    """Jobs per product in procrastinate's table (any status)."""
    rows = w.conn.execute("SELECT args->>'product_id', count(*) FROM procrastinate_jobs GROUP BY 1").fetchall()
    w.conn.commit()
    return {r[0]: int(r[1]) for r in rows}


def chunk_rows(w: World) -> list[tuple[str, str, str, int | None, int | None]]:
    rows = w.conn.execute(
        "SELECT to_char(chunk_start AT TIME ZONE 'UTC', 'MM-DD'), to_char(chunk_end AT TIME ZONE 'UTC', 'MM-DD'), "
        "status, products_found, enqueued FROM ingest.backfill_chunks ORDER BY chunk_start"
    ).fetchall()
    w.conn.commit()
    return [tuple(r) for r in rows]


def product_ids(w: World) -> set[str]:
    rows = w.conn.execute("SELECT id FROM ingest.products").fetchall()
    w.conn.commit()
    return {r[0] for r in rows}


# ----------------------------------------------------------------------------- one run


def test_backfill_enqueues_exactly_the_products_sensed_in_range(site: Site, caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level("INFO", logger="ingest.backfill")
    plan, summary = site.backfill()

    expected = site.in_range()
    assert len(expected) == 6
    assert jobs(site.world) == dict.fromkeys(expected, 1)
    with ProductQueue(site.world.settings) as queue:
        assert queue.active() == expected
    assert product_ids(site.world) == expected  # the two outside the range are not even recorded
    # the boundary product (03-02 00:00) counts in the second chunk only
    assert chunk_rows(site.world) == [
        ("03-01", "03-02", "done", 2, 2),
        ("03-02", "03-03", "done", 2, 2),
        ("03-03", "03-04", "done", 2, 2),
    ]
    assert (summary.chunks_done, summary.found, summary.new, summary.enqueued) == (3, 6, 6, 6)
    assert (summary.catalogued, summary.failed) == (0, 0)  # no worker ran
    assert bf.product_counts(site.world.conn, site.request()) == {"discovered": 6}
    assert plan.done == 3
    assert site.searches() == 3  # one search request per chunk: pages are short
    per_chunk = [r for r in caplog.records if r.getMessage().startswith("backfill chunk")]
    assert [r.getMessage().split(":")[0] for r in per_chunk] == [
        f"backfill chunk {i}/3 [2026-03-0{i}T00" for i in (1, 2, 3)
    ]


def test_failed_and_invalid_products(site: Site) -> None:
    """Already known products: a failed one with its retry due is enqueued again, one whose retry is
    not due and an invalid one are not; every product is still recorded once."""
    w = site.world
    known = sorted(site.in_range())[:3]
    by_id = {e.id: e for e in site.entries}
    repo.insert_discovered(w.conn, [to_discovered(w.spec, _as_product(by_id[i])) for i in known])
    w.conn.execute("UPDATE ingest.products SET state = 'failed', next_attempt_at = now() WHERE id = %s", [known[0]])
    w.conn.execute(
        "UPDATE ingest.products SET state = 'failed', next_attempt_at = now() + interval '1 hour' WHERE id = %s",
        [known[1]],
    )
    w.conn.execute("UPDATE ingest.products SET state = 'invalid' WHERE id = %s", [known[2]])
    w.conn.commit()

    _, summary = site.backfill()
    assert set(jobs(w)) == site.in_range() - {known[1], known[2]}
    assert (summary.found, summary.new, summary.enqueued) == (6, 3, 4)


def _as_product(e: ProviderEntry) -> ProviderProduct:
    return ProviderProduct(e.id, e.collection, "local", None, None, e.size, e.published, e.datetime, e.geometry)


def test_an_area_excludes_products_outside_it(site: Site, tmp_path: Path) -> None:
    _, summary = site.backfill(site.request(bbox=TDH_ONLY))
    assert set(jobs(site.world)) == site.in_range(tile="31TDH") and summary.enqueued == 3
    # the progress counts read the products table with the same area (PostGIS, on the footprints)
    site.world.conn.execute("UPDATE ingest.products SET state = 'catalogued' WHERE id = %s", [min(jobs(site.world))])
    site.world.conn.commit()
    assert bf.product_counts(site.world.conn, site.request(bbox=TDH_ONLY)) == {"discovered": 2, "catalogued": 1}
    assert bf.product_counts(site.world.conn, site.request(bbox="0.0,44.0,1.0,45.0")) == {}  # 31TCJ's area

    # the same area as a GeoJSON Feature through the CLI: another area, another backfill id;
    # the 31TDH products are queued already (no new job), nothing else is added
    geojson = tmp_path / "tdh.geojson"
    w, s, e, n = (float(v) for v in TDH_ONLY.split(","))
    ring = [[w, s], [e, s], [e, n], [w, n], [w, s]]
    geojson.write_text(
        json.dumps({"type": "Feature", "properties": {}, "geometry": {"type": "Polygon", "coordinates": [ring]}})
    )
    done = site.cli("--start", START, "--end", END, "--geometry", str(geojson))
    assert done.returncode == 0, done.stderr
    assert "3 products found, 0 new, 0 enqueued" in done.stdout
    assert set(jobs(site.world)) == site.in_range(tile="31TDH")
    assert {r[0] for r in site.world.conn.execute("SELECT DISTINCT backfill_id FROM ingest.backfill_chunks")} == {
        site.request(bbox=TDH_ONLY).id,
        bf.make_request(site.world.spec, start=START, end=END, geometry_file=geojson).id,
    }


# ----------------------------------------------------------------------------- dry run


def test_dry_run_writes_nothing_and_counts_catalogued_products_apart(site: Site) -> None:
    w = site.world
    catalogued = min(site.in_range())
    entry = next(e for e in site.entries if e.id == catalogued)
    repo.insert_discovered(w.conn, [to_discovered(w.spec, _as_product(entry))])
    w.conn.execute("UPDATE ingest.products SET state = 'catalogued' WHERE id = %s", [catalogued])
    w.conn.commit()

    done = site.cli("--start", START, "--end", END, "--dry-run")
    assert done.returncode == 0, done.stderr
    lines = done.stdout.splitlines()
    listed = {line.split()[0] for line in lines[:-1]}
    assert listed == site.in_range() - {catalogued}
    volume = sum(e.size for e in site.entries if e.id in listed)
    assert lines[-1] == f"would ingest 5 products, {volume / 1e9:.2f} GB; 1 already catalogued"
    assert all(line.split()[1].startswith("2026-03-0") for line in lines[:-1])  # sensing time, then size

    assert product_ids(w) == {catalogued}
    assert jobs(w) == {}
    assert chunk_rows(w) == []


# ----------------------------------------------------------------------------- resuming


def test_rerun_skips_done_chunks(site: Site) -> None:
    site.backfill()
    site.world.server.stats.reset()
    done = site.cli("--start", START, "--end", END)
    assert done.returncode == 0, done.stderr
    assert done.stdout.splitlines()[0] == "resuming: 3 of 3 chunks done"
    assert "0 products found" in done.stdout
    assert site.searches() == 0
    assert jobs(site.world) == dict.fromkeys(site.in_range(), 1)


def test_rerun_with_another_chunk_keeps_the_first_plan(site: Site) -> None:
    w = site.world
    site.backfill()
    w.conn.execute("UPDATE ingest.backfill_chunks SET status = 'pending' WHERE chunk_start = '2026-03-03T00:00Z'")
    w.conn.commit()
    site.world.server.stats.reset()
    done = site.cli("--start", START, "--end", END, "--chunk", "6h")
    assert done.returncode == 0, done.stderr
    assert done.stdout.splitlines()[0] == "resuming: 2 of 3 chunks done"
    assert "keeping the 3 of its first run" in done.stderr
    assert site.searches() == 1
    assert [r[2] for r in chunk_rows(w)] == ["done"] * 3
    assert jobs(w) == dict.fromkeys(site.in_range(), 1)


def _wait_for(predicate: Callable[[], bool], timeout: float) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return
        time.sleep(0.05)
    raise AssertionError("timed out")


def test_interrupted_run_resumes_where_it_stopped(site: Site) -> None:
    w = site.world
    w.server.set_faults(Faults(delay_s=1.5))  # every search takes 1.5 s: time to interrupt after chunk 1
    proc = subprocess.Popen(
        [sys.executable, "-m", "ingest", "--text-logs", "backfill", w.spec.id, "--start", START, "--end", END],
        env={**{k: v for k, v in os.environ.items() if not k.startswith("INGEST_")}, **site.env},
        cwd=ROOT,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        # as from a terminal: a test runner's worker may ignore SIGINT, and the child would inherit that
        preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL),
    )
    try:
        _wait_for(lambda: any(r[2] == "done" for r in chunk_rows(w)), timeout=60)
        # the next searches take longer (the interrupt waits for the chunk in flight): a loaded machine
        # that notices chunk 1 late still interrupts before the last chunk is done
        w.server.set_faults(Faults(delay_s=4))
        proc.send_signal(signal.SIGINT)
        _, err = proc.communicate(timeout=30)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    assert proc.returncode == 130, err
    done_before = [r[2] for r in chunk_rows(w)].count("done")
    assert 1 <= done_before < 3
    assert f"interrupted: {done_before} of 3 chunks done; the same command resumes" in err.splitlines()
    assert "Traceback" not in err

    w.server.set_faults(Faults())
    w.server.stats.reset()
    again = site.cli("--start", START, "--end", END)
    assert again.returncode == 0, again.stderr
    assert again.stdout.splitlines()[0] == f"resuming: {done_before} of 3 chunks done"
    assert site.searches() == 3 - done_before
    assert [r[2] for r in chunk_rows(w)] == ["done"] * 3
    assert sum(r[4] or 0 for r in chunk_rows(w)) == 6
    assert jobs(w) == dict.fromkeys(site.in_range(), 1)  # each product enqueued once, across both runs
    assert product_ids(w) == site.in_range()


def test_a_second_run_of_the_same_backfill_is_refused_while_one_runs(site: Site) -> None:
    request = site.request()
    bf.prepare(site.world.conn, request)  # holds the backfill's lock on this connection
    done = site.cli("--start", START, "--end", END)
    assert done.returncode == 75
    assert done.stderr.strip().splitlines()[-1] == f"error: backfill {request.id} is already running in another process"


# ----------------------------------------------------------------------------- bad input


@pytest.fixture
def offline_env(tmp_path: Path) -> Iterator[dict[str, str]]:
    """No stack needed: bad input is refused before anything is contacted."""
    yield {
        "INGEST_STACK_DIR": str(tmp_path / "stack"),
        "INGEST_WORK_DIR": str(tmp_path / "work"),
        "INGEST_DATABASE_URL": "postgresql://nobody@127.0.0.1:1/none",
    }


S2 = ["sentinel-2-l2a", "--start", "2026-03-01", "--end", "2026-03-02"]


@pytest.mark.parametrize(
    ("args", "code", "message"),
    [
        (["sentinel-2-l2a", "--start", "2026-03-02", "--end", "2026-03-01"], 64,
         "error: --end (2026-03-01T00:00:00Z) must be after --start (2026-03-02T00:00:00Z)"),
        (["sentinel-2-l2a", "--start", "2026-03-01", "--end", "2026-03-01T00:00Z"], 64,
         "error: --end (2026-03-01T00:00:00Z) must be after --start (2026-03-01T00:00:00Z)"),
        ([*S2, "--bbox", "1,2,3"], 64, "error: --bbox: expected W,S,E,N"),
        ([*S2, "--bbox", "4,44,2,46"], 64, "error: --bbox: '4,44,2,46' is not W,S,E,N"),
        ([*S2, "--chunk", "soon"], 64, "error: --chunk: not a duration"),
        ([*S2, "--bbox", "1,2,3,4", "--geometry", "a.geojson"], 64, "error: give --bbox or --geometry, not both"),
        (["sentinel-2-l2a", "--start", "March", "--end", "2026-03-02"], 64,
         "error: --start: not a date or date-time: 'March'"),
        ([*S2, "--geometry", "/nonexistent/area.geojson"], 64,
         "error: /nonexistent/area.geojson: cannot read the geometry file: No such file or directory"),
        (["sentinel-9", *S2[1:]], 78, "error: unknown collection 'sentinel-9' (known: "),
    ],
)  # fmt: skip
def test_bad_input_is_one_line_and_an_exit_code(
    offline_env: dict[str, str], args: list[str], code: int, message: str
) -> None:
    done = run_cli("backfill", *args, env=offline_env)
    assert done.returncode == code, done.stderr
    assert len(done.stderr.strip().splitlines()) == 1 and done.stderr.startswith(message), done.stderr
    assert done.stdout == ""
