"""Benchmark: products per hour through the whole pipeline with one and two worker processes (issue 5).

    .venv/bin/python benchmarks/pipeline.py [--size 10980] [--count 4] [--convert-workers {default,1,both}]
                                            [--queue-jobs 200] [--timeout S] [--dir DIR] [--keep]

On a throw-away stack (PostgreSQL+pgstac and SeaweedFS S3 on free ports, fsync off as in every benchmark
here) it generates --count Sentinel-2 L2A products (10 m bands --size px; 10980 is a real tile:
~1 GB archives, ~2 min each to generate) plus a few small ones (size 60), serves each set with the
local provider (ingest.devtools.provider) and measures, with real ``ingest worker`` OS processes:

1. throughput: for INGEST_CONVERT_WORKERS unset (one per core, the default) and =1, with 1 and
   with 2 worker processes, each configuration on a database, bucket and collection of its own,
   so that every one processes the same products. The products are harvested, the workers started
   and registered, then the time from enqueueing the jobs to the last product's ``catalogued``
   event gives products per hour; the 2-worker / 1-worker ratio is printed. Each worker's first
   product includes its set-up (EODAG, imports: a second or two), negligible at full size.
2. where the time goes, from the events table of each configuration: claim -> downloaded
   (download), downloaded -> converted split into describe (stactools item) and convert (the
   convert timer of the 'converted' event), converted -> uploaded (upload), uploaded ->
   catalogued (load); mean seconds per product and share of claim -> catalogued.
3. queue overhead per job: --queue-jobs jobs for products already catalogued (the task only tries
   its guarded claim and returns "skipped"), enqueued while the worker, warm from processing the
   small products, cannot take them yet (scheduled an hour ahead; the enqueue alone is timed),
   then made due and drained by that worker (first start to last finish, from procrastinate's
   events). (enqueue + drain) / N against the processing time (claim -> catalogued, median) of one
   small product measured in the same run, by the same worker. Target: < 2 %.

Worker logs (JSON lines) go to the scratch directory; on failure it is kept (without the products)
and its path printed; --keep keeps all of it. Workers are always stopped, killed if need be.
"""

from __future__ import annotations

import argparse
import io
import logging
import os
import platform
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from collections import defaultdict
from collections.abc import Callable
from contextlib import suppress
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from types import FrameType
from typing import Any, TextIO

import psycopg
import rasterio
from pydantic import SecretStr

sys.path.insert(0, str(Path(__file__).resolve().parent))

from _common import throwaway_stack

from ingest.adapters.eodag import EodagProvider
from ingest.adapters.queue import ProductQueue
from ingest.adapters.s3 import ObjectStore
from ingest.catalog.publish import sync_collections
from ingest.collections import CollectionSpec, load_spec
from ingest.devtools.provider import ProviderServer
from ingest.devtools.publish import Kind, ProductPlan, plan_products, publish_generated
from ingest.errors import IngestError
from ingest.harvest import harvest
from ingest.settings import Settings

ROOT = Path(__file__).resolve().parents[1]
KIND: Kind = "S2_MSI_L2A"
SPEC_ID = "sentinel-2-l2a"
SPEC_FILE = ROOT / "collections" / f"{SPEC_ID}.yaml"
START = datetime(2026, 3, 1, tzinfo=UTC)
SMALL_START = datetime(2026, 6, 1, tzinfo=UTC)  # other sensing times: other product ids
SMALL_SIZE = 60
SMALL_COUNT = 3
STAGES = ("download", "describe", "convert", "upload", "load")
REGISTER_TIMEOUT_S = 120.0
STOP_TIMEOUT_S = 60.0


class BenchError(Exception):
    """A measurement that cannot go on; the message says why and where the logs are."""


# ----------------------------------------------------------------------------- the site


@dataclass
class Site:
    """The throw-away stack, the scratch directory, and the stack's migrated database as a template."""

    env: dict[str, str]
    scratch: Path

    def dsn_of(self, database: str) -> str:
        return self.env["INGEST_DATABASE_URL"].rsplit("/", 1)[0] + "/" + database

    @property
    def template(self) -> str:
        return self.env["INGEST_DATABASE_URL"].rsplit("/", 1)[1]

    def new_database(self, name: str) -> str:
        """A copy of the stack's database (pgstac, ingest schema, queue tables), never connected to itself."""
        with psycopg.connect(self.dsn_of("postgres"), autocommit=True) as admin:
            admin.execute(f"CREATE DATABASE {name} TEMPLATE {self.template}")
        return self.dsn_of(name)

    def server_version(self) -> str:
        with psycopg.connect(self.dsn_of("postgres"), autocommit=True) as admin:
            row = admin.execute("SELECT current_setting('server_version')").fetchone()
        return str(row[0]) if row else "?"


@dataclass
class World:
    """One configuration's own database, bucket, collection (id = name), work dir and logs."""

    site: Site
    name: str
    settings: Settings
    spec: CollectionSpec
    home: Path

    @property
    def dsn(self) -> str:
        return self.settings.require_database_url()

    @property
    def logs(self) -> Path:
        return self.home / "logs"

    def worker_env(self, **extra: str) -> dict[str, str]:
        """What tests/integration/conftest.py World.cli_env gives an ``ingest`` process."""
        base = {k: v for k, v in os.environ.items() if not k.startswith("INGEST_")}
        return {
            **base,
            **self.site.env,
            "INGEST_DATABASE_URL": self.dsn,
            "INGEST_S3_BUCKET": self.settings.s3_bucket,
            "INGEST_PROVIDER_URL": self.settings.provider_url,
            "INGEST_WORK_DIR": str(self.settings.work_dir),
            "INGEST_COLLECTIONS_DIR": str(self.settings.collections_dir),
            "INGEST_STACK_DIR": str(self.site.scratch / "no-stack"),  # never a developer's .stack/
            **extra,
        }


def make_world(site: Site, name: str, provider_url: str) -> World:
    home = site.scratch / name
    spec_dir = home / "collections"
    spec_dir.mkdir(parents=True)
    (home / "logs").mkdir()
    path = spec_dir / f"{name}.yaml"
    path.write_text(SPEC_FILE.read_text().replace(f"id: {SPEC_ID}\n", f"id: {name}\n", 1))
    spec = load_spec(path)
    env = site.env
    settings = Settings(
        database_url=SecretStr(site.new_database(name.replace("-", "_"))),
        provider="local",
        provider_url=provider_url,
        work_dir=home / "work",
        collections_dir=spec_dir,
        s3_endpoint_url=env["INGEST_S3_ENDPOINT_URL"],
        s3_access_key_id=SecretStr(env["INGEST_S3_ACCESS_KEY_ID"]),
        s3_secret_access_key=SecretStr(env["INGEST_S3_SECRET_ACCESS_KEY"]),
        s3_region=env["INGEST_S3_REGION"],
        s3_bucket=name,
        _env_file=None,
    )  # type: ignore[call-arg]
    ObjectStore.from_settings(settings).ensure_bucket()
    sync_collections(settings, [spec])
    return World(site, name, settings, spec, home)


def discover_all(world: World) -> list[str]:
    """Harvest until the provider has nothing new (a harvest stops at the spec's max_products)."""
    provider = EodagProvider(world.settings)
    ids: list[str] = []
    with psycopg.connect(world.dsn) as conn:
        while True:
            found = harvest(conn, provider, world.spec).new_ids
            if not found:
                return ids
            ids += found


def drop_objects(world: World) -> None:
    """Empty the configuration's bucket (objects persist on disk)."""
    store = ObjectStore.from_settings(world.settings)
    with psycopg.connect(world.dsn, autocommit=True) as conn:
        rows = conn.execute(
            "SELECT item_id FROM ingest.products WHERE collection = %s AND item_id IS NOT NULL", [world.spec.id]
        ).fetchall()
    for (item_id,) in rows:
        store.delete_item_objects(world.spec.id, item_id)


# ----------------------------------------------------------------------------- worker processes


class Workers:
    """``ingest worker`` OS processes, logs in the world's log dir; on exit always stopped (killed if need be)."""

    def __init__(self, world: World, n: int, **env: str) -> None:
        self.world, self.n, self.env = world, n, env
        self.procs: list[subprocess.Popen[bytes]] = []
        self.paths: list[Path] = []
        self._files: list[TextIO] = []

    def __enter__(self) -> Workers:
        env = self.world.worker_env(**self.env)
        try:
            for i in range(self.n):
                path = self.world.logs / f"worker-{i}.log"
                log = path.open("w")
                self._files.append(log)
                self.paths.append(path)
                self.procs.append(
                    subprocess.Popen(
                        [sys.executable, "-m", "ingest", "--json-logs", "worker"],
                        env=env,
                        cwd=self.world.home,  # no .env of a developer's checkout
                        stdin=subprocess.DEVNULL,
                        stdout=log,
                        stderr=subprocess.STDOUT,
                        start_new_session=True,  # its own process group: its convert pool goes with it
                    )
                )
        except BaseException:
            self.stop(graceful=False)
            raise
        return self

    def __exit__(self, exc_type: type[BaseException] | None, *_: object) -> None:
        self.stop(graceful=exc_type is None)

    def where(self) -> str:
        return ", ".join(str(p) for p in self.paths)

    def check(self) -> None:
        for proc, path in zip(self.procs, self.paths, strict=True):
            if proc.poll() is not None:
                raise BenchError(f"worker pid {proc.pid} exited with code {proc.returncode}; its log: {path}")

    def stop(self, *, graceful: bool) -> None:
        """SIGTERM and wait (graceful) or not, then SIGKILL to each worker's process group, always."""
        if graceful:
            for proc in self.procs:
                if proc.poll() is None:
                    proc.send_signal(signal.SIGTERM)
            deadline = time.monotonic() + STOP_TIMEOUT_S
            for proc, path in zip(self.procs, self.paths, strict=True):
                try:
                    code = proc.wait(timeout=max(0.1, deadline - time.monotonic()))
                except subprocess.TimeoutExpired:
                    print(
                        f"  warning: worker pid {proc.pid} still running {STOP_TIMEOUT_S:.0f} s after SIGTERM, killed"
                    )
                    continue
                if code != 0:
                    print(f"  warning: worker pid {proc.pid} exited with code {code} on SIGTERM; its log: {path}")
        for proc in self.procs:
            with suppress(ProcessLookupError, PermissionError):
                os.killpg(proc.pid, signal.SIGKILL)  # the group we created (the worker and its pool)
            with suppress(subprocess.TimeoutExpired):
                proc.wait(timeout=10)
        for f in self._files:
            f.close()
        self._files.clear()


def wait_for(condition: Callable[[], bool], timeout: float, what: str, workers: Workers, poll_s: float = 0.5) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        workers.check()
        if time.monotonic() > deadline:
            raise BenchError(f"timed out after {timeout:.0f} s waiting for {what}; worker logs: {workers.where()}")
        time.sleep(poll_s)


def one(conn: psycopg.Connection, sql: str, params: list[Any] | None = None) -> Any:
    row = conn.execute(sql, params).fetchone()
    return row[0] if row else None


def registered(conn: psycopg.Connection, n: int) -> Callable[[], bool]:
    return lambda: int(one(conn, "SELECT count(*) FROM procrastinate_workers")) >= n


def all_catalogued(conn: psycopg.Connection, world: World, n: int, workers: Workers) -> Callable[[], bool]:
    """True when the collection's ``n`` products are catalogued; a failed or invalid one stops the run."""

    def check() -> bool:
        rows = conn.execute(
            "SELECT state, count(*), min(id), min(last_error) FROM ingest.products WHERE collection = %s GROUP BY 1",
            [world.spec.id],
        ).fetchall()
        for state, _, pid, error in rows:
            if state in ("failed", "invalid"):
                raise BenchError(f"{pid} is {state}: {error}; worker logs: {workers.where()}")
        return {r[0]: int(r[1]) for r in rows}.get("catalogued", 0) >= n

    return check


# ----------------------------------------------------------------------------- stage times


@dataclass
class Stages:
    """Per product, from the events table: seconds per stage, claim -> catalogued, and the pipeline's timers."""

    stages: dict[str, list[float]]
    totals: list[float]
    timers: dict[str, list[float]]

    def mean(self, stage: str) -> float:
        return statistics.fmean(self.stages[stage]) if self.stages[stage] else 0.0

    @property
    def mean_total(self) -> float:
        return statistics.fmean(self.totals) if self.totals else 0.0

    def share(self, stage: str) -> float:
        return 100 * self.mean(stage) / self.mean_total if self.mean_total else 0.0


def stage_times(conn: psycopg.Connection, collection: str, product_ids: list[str] | None = None) -> Stages:
    rows = conn.execute(
        "SELECT e.product_id, e.to_state, e.at, e.details FROM ingest.events e"
        " JOIN ingest.products p ON p.id = e.product_id WHERE p.collection = %s ORDER BY e.id",
        [collection],
    ).fetchall()
    wanted = set(product_ids) if product_ids is not None else None
    seen: dict[str, dict[str, tuple[datetime, dict[str, Any]]]] = defaultdict(dict)
    for pid, to_state, at, details in rows:
        if wanted is None or pid in wanted:
            seen[pid][to_state] = (at, details or {})  # the last attempt's events win
    out = Stages({s: [] for s in STAGES}, [], {"download": [], "convert": [], "upload": []})
    for pid, ev in seen.items():
        missing = {"claimed", "downloaded", "converted", "uploaded", "catalogued"} - ev.keys()
        if missing:
            raise BenchError(f"{pid}: no {', '.join(sorted(missing))} event")

        def span(a: str, b: str, ev: dict[str, tuple[datetime, dict[str, Any]]] = ev) -> float:
            return (ev[b][0] - ev[a][0]).total_seconds()

        convert_s = float(ev["converted"][1].get("s", 0.0))
        out.stages["download"].append(span("claimed", "downloaded"))
        out.stages["describe"].append(max(0.0, span("downloaded", "converted") - convert_s))
        out.stages["convert"].append(convert_s)
        out.stages["upload"].append(span("converted", "uploaded"))
        out.stages["load"].append(span("uploaded", "catalogued"))
        out.totals.append(span("claimed", "catalogued"))
        for timer, state in (("download", "downloaded"), ("convert", "converted"), ("upload", "uploaded")):
            out.timers[timer].append(float(ev[state][1].get("s", 0.0)))
    return out


# ----------------------------------------------------------------------------- 1 + 2: throughput


@dataclass
class Throughput:
    workers: int
    convert: str  # "default" (INGEST_CONVERT_WORKERS unset) or "1"
    products: int
    seconds: float
    stages: Stages
    load_before: float

    @property
    def per_hour(self) -> float:
        return 3600 * self.products / self.seconds

    @property
    def label(self) -> str:
        return f"{self.workers} worker{'s' if self.workers > 1 else ''}, convert {self.convert}"


def measure_throughput(site: Site, provider_url: str, count: int, n: int, convert: str, timeout: float) -> Throughput:
    world = make_world(site, f"bench-w{n}-c{convert}", provider_url)
    ids = discover_all(world)
    if len(ids) != count:
        raise BenchError(f"harvest found {len(ids)} products on the provider, expected {count}")
    extra = {"INGEST_CONVERT_WORKERS": "1"} if convert == "1" else {}
    load_before = os.getloadavg()[0]
    with Workers(world, n, **extra) as workers, psycopg.connect(world.dsn, autocommit=True) as conn:
        wait_for(registered(conn, n), REGISTER_TIMEOUT_S, f"{n} worker(s) to register", workers)
        with ProductQueue(world.settings) as queue:  # the pool is open before the clock starts
            t0: datetime = one(conn, "SELECT clock_timestamp()")
            if queue.enqueue(ids) != count:
                raise BenchError("fewer jobs enqueued than products")
        wait_for(all_catalogued(conn, world, count, workers), timeout, f"{count} products catalogued", workers)
        end: datetime = one(
            conn,
            "SELECT max(e.at) FROM ingest.events e JOIN ingest.products p ON p.id = e.product_id"
            " WHERE p.collection = %s AND e.to_state = 'catalogued'",
            [world.spec.id],
        )
        stages = stage_times(conn, world.spec.id)
    drop_objects(world)
    shutil.rmtree(world.settings.work_dir, ignore_errors=True)
    return Throughput(n, convert, count, (end - t0).total_seconds(), stages, load_before)


def print_stages(stages: Stages, indent: str = "  ") -> None:
    print(f"{indent}{'stage':10} {'mean s':>8} {'share':>6} {'timer s':>8}")
    for stage in STAGES:
        timer = f"{statistics.fmean(stages.timers[stage]):8.2f}" if stage in stages.timers else ""
        print(f"{indent}{stage:10} {stages.mean(stage):8.2f} {stages.share(stage):5.1f}% {timer}")
    print(f"{indent}{'claim->cat':10} {stages.mean_total:8.2f} 100.0%")


# ----------------------------------------------------------------------------- 3: queue overhead


@dataclass
class QueueCost:
    jobs: int
    enqueue_s: float
    drain_s: float
    small_s: list[float]  # claim -> catalogued of each small product

    @property
    def per_job_s(self) -> float:
        return (self.enqueue_s + self.drain_s) / self.jobs

    @property
    def reference_s(self) -> float:
        return statistics.median(self.small_s)

    @property
    def ratio(self) -> float:
        return self.per_job_s / self.reference_s


def measure_queue(site: Site, provider_url: str, jobs: int, timeout: float) -> QueueCost:
    world = make_world(site, "bench-queue", provider_url)
    small = discover_all(world)
    if len(small) != SMALL_COUNT:
        raise BenchError(f"harvest found {len(small)} small products, expected {SMALL_COUNT}")
    done = [f"BENCH-DONE-{i:06d}" for i in range(jobs)]
    with Workers(world, 1) as workers, psycopg.connect(world.dsn, autocommit=True) as conn:
        wait_for(registered(conn, 1), REGISTER_TIMEOUT_S, "the worker to register", workers)
        with ProductQueue(world.settings) as queue:
            queue.enqueue(small)
            wait_for(all_catalogued(conn, world, len(small), workers), timeout, "the small products", workers)
            small_s = stage_times(conn, world.spec.id, small).totals
            conn.execute(
                "INSERT INTO ingest.products (id, collection, provider, state)"
                " SELECT unnest(%s::text[]), %s, 'local', 'catalogued'",
                [done, world.spec.id],
            )
            last_job = int(one(conn, "SELECT coalesce(max(id), 0) FROM procrastinate_jobs"))
            later = datetime.now(UTC) + timedelta(hours=1)  # the running worker must not take them yet
            t = time.perf_counter()
            added = queue.enqueue(done, schedule_at=later)
            enqueue_s = time.perf_counter() - t
        if added != jobs:
            raise BenchError(f"{added} of {jobs} jobs enqueued")
        conn.execute("UPDATE procrastinate_jobs SET scheduled_at = now() WHERE id > %s AND status = 'todo'", [last_job])
        left = "SELECT count(*) FROM procrastinate_jobs WHERE id > %s AND status IN ('todo', 'doing')"
        wait_for(lambda: int(one(conn, left, [last_job])) == 0, timeout, f"{jobs} jobs drained", workers)
        row = conn.execute(
            """
            SELECT min(at) FILTER (WHERE type = 'started'),
                   max(at) FILTER (WHERE type IN ('succeeded', 'failed')),
                   count(*) FILTER (WHERE type = 'succeeded'),
                   count(*) FILTER (WHERE type = 'failed')
              FROM procrastinate_events WHERE job_id > %s
            """,
            [last_job],
        ).fetchone()
        assert row is not None
        first, last, succeeded, failed = row
        if failed or succeeded != jobs:
            raise BenchError(f"{succeeded} of {jobs} jobs succeeded, {failed} failed; worker log: {workers.where()}")
        touched = one(conn, "SELECT count(*) FROM ingest.events WHERE product_id = ANY(%s)", [done])
        states = one(conn, "SELECT count(*) FROM ingest.products WHERE id = ANY(%s) AND state = 'catalogued'", [done])
        if touched or states != jobs:
            raise BenchError(f"the skipped jobs changed products ({touched} events); worker log: {workers.where()}")
    return QueueCost(jobs, enqueue_s, (last - first).total_seconds(), small_s)


# ----------------------------------------------------------------------------- products, machine, main


def publish(root: Path, plans: list[ProductPlan], size: int, what: str) -> None:
    for i, plan in enumerate(plans, 1):
        t = time.perf_counter()
        entry = publish_generated(root, plan, size=size)
        print(f"  {what} {i}/{len(plans)}: {entry.id}  {entry.size / 1e6:8.1f} MB in {time.perf_counter() - t:6.1f} s")


def machine() -> str:
    model, mem_gb = "?", 0.0
    with suppress(OSError):
        model = next(
            (ln.split(":", 1)[1].strip() for ln in Path("/proc/cpuinfo").read_text().splitlines()
             if ln.startswith("model name")), "?",
        )  # fmt: skip
    with suppress(OSError, StopIteration, ValueError):
        meminfo = Path("/proc/meminfo").read_text().splitlines()
        mem_gb = int(next(ln for ln in meminfo if ln.startswith("MemTotal")).split()[1]) / 1024**2
    return (
        f"{os.cpu_count()} cores ({model}), {mem_gb:.0f} GB RAM; GDAL {rasterio.__gdal_version__}"
        f" (rasterio {rasterio.__version__}), Python {platform.python_version()}"
    )


def summary(results: list[Throughput], queue: QueueCost | None, args: argparse.Namespace, context: str) -> None:
    print(f"\n== summary: {args.count} x {KIND} at size {args.size}, products/hour from enqueue to last catalogued ==")
    print(f"{'INGEST_CONVERT_WORKERS':24} {'1 worker':>10} {'2 workers':>10} {'2w/1w':>7}")
    for convert in dict.fromkeys(r.convert for r in results):
        by_n = {r.workers: r for r in results if r.convert == convert}
        one_w, two_w = by_n.get(1), by_n.get(2)
        label = f"unset ({os.cpu_count()})" if convert == "default" else convert
        ratio = f"{two_w.per_hour / one_w.per_hour:7.2f}" if one_w and two_w else ""
        cells = [f"{r.per_hour:10.1f}" if r else f"{'-':>10}" for r in (one_w, two_w)]
        print(f"{label:24} {cells[0]} {cells[1]} {ratio}")
    if results:
        print("\nper product, mean s (share of claim -> catalogued):")
        print(f"{'stage':10} " + " ".join(f"{f'{r.workers}w conv {r.convert}':>17}" for r in results))
        for stage in STAGES:
            print(
                f"{stage:10} "
                + " ".join(f"{r.stages.mean(stage):9.1f} ({r.stages.share(stage):4.1f}%)" for r in results)
            )
        print(f"{'total':10} " + " ".join(f"{r.stages.mean_total:9.1f} {'':7}" for r in results))
    if queue is not None:
        print(
            f"\nqueue overhead per job ({queue.jobs} skipped jobs, 1 worker): {1000 * queue.per_job_s:.1f} ms"
            f" = enqueue {1000 * queue.enqueue_s / queue.jobs:.1f} ms"
            f" + fetch/run/ack {1000 * queue.drain_s / queue.jobs:.1f} ms"
        )
        print(
            f"ratio to one size-{SMALL_SIZE} product ({queue.reference_s:.2f} s claim -> catalogued):"
            f" {100 * queue.ratio:.2f} %  (target < 2 %)"
        )
    print(f"\nmachine: {context}")


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--size", type=int, default=10980, help="10 m band width in px, multiple of 6, >= 60 (10980: real)")
    ap.add_argument("--count", type=int, default=4, help="products per configuration")
    ap.add_argument("--convert-workers", choices=("default", "1", "both"), default="both")
    ap.add_argument("--queue-jobs", type=int, default=200, help="skipped jobs for the queue overhead (0: skip it)")
    ap.add_argument("--timeout", type=float, default=None, help="seconds per configuration (default from size, count)")
    ap.add_argument("--dir", type=Path, default=None, help="where the scratch directory goes (default: the temp dir)")
    ap.add_argument("--keep", action="store_true", help="keep the scratch directory (products, worker logs)")
    args = ap.parse_args()
    if args.size < 60 or args.size % 6:
        ap.error("--size must be a multiple of 6 and at least 60")
    if args.count < 1:
        ap.error("--count must be at least 1")
    timeout = args.timeout or 600 + args.count * 1800 * (args.size / 10980) ** 2
    converts = ["default", "1"] if args.convert_workers == "both" else [args.convert_workers]
    logging.basicConfig(level=logging.WARNING)
    logging.getLogger("eodag").setLevel(logging.ERROR)  # its built-in providers it cannot set up offline
    logging.getLogger("rasterio").setLevel(logging.ERROR)  # the generator's JPEG 2000 options
    if isinstance(sys.stdout, io.TextIOWrapper):
        sys.stdout.reconfigure(line_buffering=True)  # progress in order with errors, also through tee

    stray = sorted(k for k in os.environ if k.startswith("INGEST_"))
    for key in stray:  # every setting comes from the throw-away site
        del os.environ[key]
    if stray:
        print(f"ignoring {', '.join(stray)} from the environment")

    def terminate(signum: int, _: FrameType | None) -> None:
        raise KeyboardInterrupt  # unwinds through the finally blocks: workers and stack are stopped

    signal.signal(signal.SIGTERM, terminate)

    scratch = Path(tempfile.mkdtemp(prefix="bench-pipeline-", dir=args.dir))
    results: list[Throughput] = []
    queue: QueueCost | None = None
    ok = False
    started = time.monotonic()
    try:
        print(f"machine: {machine()}; load average {os.getloadavg()[0]:.2f}")
        if os.getloadavg()[0] > 0.5 * (os.cpu_count() or 1):
            print("  warning: the machine is busy; figures will be low and ratios noisy")
        print(f"scratch: {scratch}")
        t = time.perf_counter()
        publish(scratch / "provider", list(plan_products(args.count, kinds=(KIND,), start=START)), args.size, "product")
        small_plans = list(plan_products(SMALL_COUNT, kinds=(KIND,), start=SMALL_START, seed=1000))
        if args.queue_jobs > 0:
            publish(scratch / "provider-small", small_plans, SMALL_SIZE, "small")
        print(f"products generated in {time.perf_counter() - t:.0f} s")
        with throwaway_stack() as env, ProviderServer(scratch / "provider", port=0) as server:
            site = Site(env, scratch)
            context = f"{machine()}; PostgreSQL {site.server_version()} (fsync off), SeaweedFS S3"
            if args.queue_jobs > 0:  # first: quick, and proves the chain before the long runs
                print(f"\n-- queue: {SMALL_COUNT} size-{SMALL_SIZE} products, then {args.queue_jobs} skipped jobs")
                with ProviderServer(scratch / "provider-small", port=0) as small:
                    queue = measure_queue(site, small.url, args.queue_jobs, timeout)
                print(f"  small products, claim -> catalogued: {', '.join(f'{s:.2f}' for s in queue.small_s)} s")
                print(f"  enqueue {queue.jobs} jobs: {queue.enqueue_s:.2f} s; drained in {queue.drain_s:.2f} s")
            for convert in converts:
                for n in (1, 2):
                    setting = "unset" if convert == "default" else convert
                    print(f"\n-- {n} worker process(es), INGEST_CONVERT_WORKERS={setting}")
                    r = measure_throughput(site, server.url, args.count, n, convert, timeout)
                    results.append(r)
                    print(
                        f"  {r.products} products in {r.seconds:.1f} s: {r.per_hour:.1f} products/hour"
                        f"  (load average before {r.load_before:.2f}, after {os.getloadavg()[0]:.2f})"
                    )
                    print_stages(r.stages)
        summary(results, queue, args, context)
        print(f"total benchmark time {time.monotonic() - started:.0f} s")
        ok = True
    except (BenchError, IngestError) as exc:
        print(f"\nerror: {exc}", file=sys.stderr)
    except KeyboardInterrupt:
        print("\ninterrupted", file=sys.stderr)
    finally:
        if ok and not args.keep:
            shutil.rmtree(scratch, ignore_errors=True)
        elif not args.keep:  # keep the logs for a look, not the products
            for big in (scratch / "provider", scratch / "provider-small", *scratch.glob("*/work")):
                shutil.rmtree(big, ignore_errors=True)
            print(f"worker logs kept in {scratch}", file=sys.stderr)
        else:
            print(f"kept {scratch}")
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
