"""Benchmark: the whole pipeline on full-size products, one of each kind, with and without the asset plan.

    .venv/bin/python benchmarks/fullsize.py [--kinds S2_MSI_L2A,S1_SAR_GRD,S3_EFR] [--s2-size 10980]
                                            [--s1-samples 26144] [--s3-columns 4865] [--rounds N]
                                            [--timeout S] [--dir DIR] [--keep]

At real dimensions: a Sentinel-2 L2A tile (10980 px at 10 m: 36 rasters in the SAFE), a Sentinel-1
IW GRD product (26144 samples x 16676 lines per polarisation) and a Sentinel-3 OLCI L1 EFR frame (4865
columns x 3749 rows, 21 radiance bands and the geolocation, tie-point and quality files), generated, served by the local
provider and processed by one real ``ingest worker`` OS process with its default conversion pool (one
process per core), on a throw-away stack (fsync off, as every benchmark here). Configurations, one
run each (``--rounds N``: N each, S2 pairs in alternating order, medians reported), each on a database,
bucket and collection of its own:

* every kind under its shipped collection file (S2 L2A: the asset plan, native resolutions only);
* S2 L2A once more under the same file without its ``assets`` section: every raster stactools
  describes converted, as before asset plans.

Per configuration: seconds from claim to catalogued, products per hour per core (3600 / that /
cores: the conversion pool uses every core), the share of each stage (from the events table, as
benchmarks/pipeline.py splits it: download, describe, convert, upload, load), the peak resident
memory of the worker with its conversion processes (sampled every 0.2 s over its process group), and
the peak disk used in its work directory (archive, unpacked product, COGs). Then the plan's effect on
S2 L2A: conversion and claim -> catalogued ratios (the issue asks the plan to cut conversion by at
least a quarter).
"""

from __future__ import annotations

import argparse
import io
import logging
import os
import shutil
import signal
import statistics
import sys
import tempfile
import threading
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from types import FrameType
from typing import get_args

import psycopg
import yaml
from pydantic import SecretStr

sys.path.insert(0, str(Path(__file__).resolve().parent))

from _common import throwaway_stack
from pipeline import (
    BenchError,
    Site,
    Stages,
    Workers,
    all_catalogued,
    discover_all,
    drop_objects,
    machine,
    one,
    print_stages,
    registered,
    stage_times,
    wait_for,
)
from pipeline import World as _World

from ingest.adapters.queue import ProductQueue
from ingest.adapters.s3 import ObjectStore
from ingest.catalog.publish import sync_collections
from ingest.collections import load_spec
from ingest.devtools.provider import ProviderServer
from ingest.devtools.publish import Kind, plan_products, publish_generated
from ingest.errors import IngestError
from ingest.settings import Settings
from ingest.stages.kinds import KINDS

ROOT = Path(__file__).resolve().parents[1]
SPEC_OF: dict[str, str] = {k.eodag: k.collection for k in KINDS if k.eodag in get_args(Kind)}
START = datetime(2026, 4, 1, tzinfo=UTC)
REGISTER_TIMEOUT_S = 120.0
SAMPLE_S = 0.2
ASSET_COUNT = "SELECT count(*) FROM pgstac.items i, jsonb_object_keys(i.content->'assets') WHERE i.collection = %s"
PAGE = os.sysconf("SC_PAGE_SIZE")
TICKS = os.sysconf("SC_CLK_TCK")


# ----------------------------------------------------------------------------- what is measured


def median(values: Iterable[float]) -> float:
    return statistics.median(list(values))


class Sampler(threading.Thread):
    """Peak RSS of a process group (the worker and its conversion pool) and peak bytes under a directory."""

    def __init__(self, pgid: int, work_dir: Path) -> None:
        super().__init__(daemon=True)
        self.pgid, self.work_dir = pgid, work_dir
        self.peak_rss = 0
        self.peak_disk = 0
        self._cpu: dict[int, int] = {}  # pid -> utime + stime (ticks) when last seen
        self._done = threading.Event()

    def run(self) -> None:
        while not self._done.wait(SAMPLE_S):
            self.peak_rss = max(self.peak_rss, self._group_rss())
            self.peak_disk = max(self.peak_disk, _disk_bytes(self.work_dir))

    def stop(self) -> None:
        self._done.set()
        self.join()

    @property
    def cpu_seconds(self) -> float:
        """CPU time of the group's processes, each as last sampled (pool processes exit with the product)."""
        return sum(self._cpu.values()) / TICKS

    def _group_rss(self) -> int:
        total = 0
        for entry in os.scandir("/proc"):
            if not entry.name.isdigit():
                continue
            try:
                stat = Path(entry.path, "stat").read_text()
                fields = stat[stat.rindex(")") + 2 :].split()  # after the command, which may hold spaces
                if int(fields[2]) == self.pgid:  # field 5 of stat: the process group
                    total += int(Path(entry.path, "statm").read_text().split()[1]) * PAGE
                    self._cpu[int(entry.name)] = int(fields[11]) + int(fields[12])  # fields 14, 15: utime, stime
            except (OSError, ValueError, IndexError):
                continue  # gone meanwhile
        return total


def _disk_bytes(top: Path) -> int:
    total = 0
    for dirpath, _, files in os.walk(top):
        for name in files:
            try:
                total += os.lstat(os.path.join(dirpath, name)).st_blocks * 512
            except OSError:
                continue
    return total


@dataclass
class Run:
    label: str
    kind: str
    seconds: float
    stages: Stages
    peak_rss: int
    peak_disk: int
    archive_bytes: int
    assets: int
    cpu_seconds: float


def per_hour_per_core(seconds: float, cores: int) -> float:
    """Products per hour per core of one taking ``seconds`` (the conversion pool uses every core)."""
    return 3600 / seconds / cores


# ----------------------------------------------------------------------------- one configuration


def make_world(site: Site, name: str, spec_text: str, provider_url: str) -> _World:
    home = site.scratch / name
    spec_dir = home / "collections"
    spec_dir.mkdir(parents=True)
    (home / "logs").mkdir()
    path = spec_dir / f"{name}.yaml"
    path.write_text(spec_text)
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
    settings.work_dir.mkdir(parents=True)
    ObjectStore.from_settings(settings).ensure_bucket()
    sync_collections(settings, [spec])
    return _World(site, name, settings, spec, home)


def spec_text(kind: str, name: str, *, plan: bool) -> str:
    """The shipped collection file under the id ``name``; without its asset plan if ``plan`` is False."""
    doc = yaml.safe_load((ROOT / "collections" / f"{SPEC_OF[kind]}.yaml").read_text())
    doc["id"] = name
    if not plan:
        doc.pop("assets", None)
    return yaml.safe_dump(doc, sort_keys=False)


def measure(
    site: Site,
    provider_url: str,
    kind: str,
    label: str,
    *,
    plan: bool,
    archive_bytes: int,
    timeout: float,
    round_no: int,
) -> Run:
    name = f"full-{label}-r{round_no}".lower().replace("_", "-")
    world = make_world(site, name, spec_text(kind, name, plan=plan), provider_url)
    ids = discover_all(world)
    if len(ids) != 1:
        raise BenchError(f"{label}: harvest found {len(ids)} products, expected 1")
    with Workers(world, 1) as workers, psycopg.connect(world.dsn, autocommit=True) as conn:
        wait_for(registered(conn, 1), REGISTER_TIMEOUT_S, "the worker to register", workers)
        sampler = Sampler(workers.procs[0].pid, world.settings.work_dir)
        sampler.start()
        try:
            with ProductQueue(world.settings) as queue:
                if queue.enqueue(ids) != 1:
                    raise BenchError("the job was not enqueued")
            wait_for(all_catalogued(conn, world, 1, workers), timeout, f"{label} catalogued", workers, poll_s=1.0)
        finally:
            sampler.stop()
        stages = stage_times(conn, world.spec.id)
        assets = int(one(conn, ASSET_COUNT, [world.spec.id]) or 0)
    drop_objects(world)
    shutil.rmtree(world.settings.work_dir, ignore_errors=True)
    return Run(
        label,
        kind,
        stages.mean_total,
        stages,
        sampler.peak_rss,
        sampler.peak_disk,
        archive_bytes,
        assets,
        sampler.cpu_seconds,
    )


# ----------------------------------------------------------------------------- main


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--kinds", default="S2_MSI_L2A,S1_SAR_GRD,S3_EFR", help=f"comma-separated, of {', '.join(SPEC_OF)}")
    ap.add_argument("--s2-size", type=int, default=10980, help="S2 10 m width in px (10980: a real tile)")
    ap.add_argument("--s1-samples", type=int, default=26144, help="S1 GRD samples per line (26144: real IW)")
    ap.add_argument("--s3-columns", type=int, default=4865, help="S3 columns (OLCI 4865, SLSTR 1500: real)")
    ap.add_argument("--timeout", type=float, default=3600, help="seconds per configuration")
    ap.add_argument("--dir", type=Path, default=None, help="where the scratch directory goes (default: the temp dir)")
    ap.add_argument("--keep", action="store_true", help="keep the scratch directory (products, worker logs)")
    ap.add_argument("--rounds", type=int, default=1, help="runs per configuration (medians reported)")
    args = ap.parse_args()
    if args.rounds < 1:
        ap.error("--rounds must be at least 1")
    kinds: list[Kind] = []
    for k in args.kinds.split(","):
        if k not in SPEC_OF:
            ap.error(f"unknown kind {k!r}")
        kinds.append(k)
    sizes = {k: args.s3_columns if k.startswith("S3_") else args.s2_size for k in SPEC_OF}
    sizes["S1_SAR_GRD"] = args.s1_samples
    logging.basicConfig(level=logging.WARNING)
    logging.getLogger("eodag").setLevel(logging.ERROR)
    logging.getLogger("rasterio").setLevel(logging.ERROR)
    if isinstance(sys.stdout, io.TextIOWrapper):
        sys.stdout.reconfigure(line_buffering=True)
    for key in [k for k in os.environ if k.startswith("INGEST_")]:
        del os.environ[key]  # every setting comes from the throw-away site

    def terminate(signum: int, _: FrameType | None) -> None:
        raise KeyboardInterrupt

    signal.signal(signal.SIGTERM, terminate)
    cores = os.cpu_count() or 1
    scratch = Path(tempfile.mkdtemp(prefix="bench-fullsize-", dir=args.dir))
    runs: list[Run] = []
    ok = False
    try:
        print(f"machine: {machine()}; load average {os.getloadavg()[0]:.2f}")
        print(f"scratch: {scratch}")
        with throwaway_stack() as env:
            site = Site(env, scratch)
            for i, kind in enumerate(kinds):
                root = scratch / f"provider-{kind}"
                (plan,) = plan_products(1, kinds=(kind,), start=START, seed=100 + i)
                t = time.perf_counter()
                entry = publish_generated(root, plan, size=sizes[kind])
                print(f"\n{kind}: generated {entry.id} ({entry.size / 1e6:,.0f} MB) in {time.perf_counter() - t:.0f} s")
                configs = [(kind, True)] + ([(f"{kind}_no_plan", False)] if kind.startswith("S2_MSI_L2A") else [])
                with ProviderServer(root, port=0) as server:
                    for n in range(args.rounds):
                        # alternate the order, so that a drift of the machine's load favours neither
                        for label, with_plan in configs if n % 2 == 0 else configs[::-1]:
                            r = measure(
                                site,
                                server.url,
                                kind,
                                label,
                                plan=with_plan,
                                archive_bytes=entry.size,
                                timeout=args.timeout,
                                round_no=n,
                            )
                            runs.append(r)
                            print(f"-- {label} (round {n + 1}): {r.assets} assets, claim -> catalogued "
                                  f"{r.seconds:.1f} s, {per_hour_per_core(r.seconds, cores):.1f} products/hour/core, "
                                  f"CPU {r.cpu_seconds:.0f} s, peak RSS {r.peak_rss / 2**20:,.0f} MiB, peak disk "
                                  f"{r.peak_disk / 2**20:,.0f} MiB")  # fmt: skip
                            print_stages(r.stages)
                shutil.rmtree(root, ignore_errors=True)
        print(f"\n== summary ({cores} cores; one product per run, one worker, conversion pool per core; "
              f"medians of {args.rounds} run(s)) ==")  # fmt: skip
        print(f"{'configuration':22} {'assets':>6} {'archive MB':>10} {'claim->cat s':>12} {'/h/core':>8} "
              f"{'convert s':>9} {'convert %':>9} {'CPU s':>6} {'peak RSS MiB':>12} {'peak disk MiB':>13}")  # fmt: skip
        by: dict[str, list[Run]] = {}
        for r in runs:
            by.setdefault(r.label, []).append(r)
        for label, rs in by.items():
            secs = median(r.seconds for r in rs)
            rss, disk = max(r.peak_rss for r in rs), max(r.peak_disk for r in rs)
            print(f"{label:22} {rs[0].assets:6d} {rs[0].archive_bytes / 1e6:10,.0f} {secs:12.1f} "
                  f"{per_hour_per_core(secs, cores):8.1f} {median(r.stages.mean('convert') for r in rs):9.1f} "
                  f"{median(r.stages.share('convert') for r in rs):8.1f}% {median(r.cpu_seconds for r in rs):6.0f} "
                  f"{rss / 2**20:12,.0f} {disk / 2**20:13,.0f}")  # fmt: skip
        if "S2_MSI_L2A" in by and "S2_MSI_L2A_no_plan" in by:
            after, before = by["S2_MSI_L2A"], by["S2_MSI_L2A_no_plan"]

            def ratio(f: Callable[[Run], float]) -> float:
                return median(f(r) for r in after) / median(f(r) for r in before)

            conv = ratio(lambda r: r.stages.mean("convert"))
            print(f"\nS2 L2A, shipped plan / every raster (medians): conversion {conv:.2f} "
                  f"(cut {100 * (1 - conv):.0f}%), CPU {ratio(lambda r: r.cpu_seconds):.2f}, claim -> catalogued "
                  f"{ratio(lambda r: r.seconds):.2f}, peak RSS {ratio(lambda r: r.peak_rss):.2f}, "
                  f"assets {after[0].assets} vs {before[0].assets}")  # fmt: skip
        ok = True
    except (BenchError, IngestError) as exc:
        print(f"\nerror: {exc}", file=sys.stderr)
    except KeyboardInterrupt:
        print("\ninterrupted", file=sys.stderr)
    finally:
        if ok and not args.keep:
            shutil.rmtree(scratch, ignore_errors=True)
        else:
            for big in scratch.glob("provider-*"):
                shutil.rmtree(big, ignore_errors=True)
            print(f"worker logs kept in {scratch}", file=sys.stderr)
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
