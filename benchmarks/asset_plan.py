"""Benchmark: what the Sentinel-2 L2A asset plan saves, against converting every raster, in one run.

    .venv/bin/python benchmarks/asset_plan.py [--size 5490] [--rounds 3] [--workers N] [--dir DIR]

Generates one L2A product whose 10 m bands are --size px (10980 is a real tile), then converts it with
``convert_product`` (the pipeline's stage, --workers processes, default one per core) under two plans
of the same collection file, collections/sentinel-2-l2a.yaml:

* every raster: the file without its ``assets`` section (what the daemon did before asset plans:
  every band at every resolution stactools lists, the TCI at three);
* shipped: the file as it is (native resolutions only; ESA's resampled copies dropped).

Each round converts under both plans, the order alternating between rounds so that a neighbour's load
falls on both; medians over the rounds. Printed: raster assets, decoded MB, conversion seconds (wall,
and CPU of this process and its pool workers: the steadier figure on a shared machine), COG bytes, and
the ratios shipped / every raster.
"""

from __future__ import annotations

import argparse
import os
import resource
import shutil
import statistics
import tempfile
import time
import warnings
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

import numpy as np
import rasterio

from ingest.collections import CollectionSpec, load_spec
from ingest.devtools.generator import generate_s2
from ingest.stages import describe
from ingest.stages.artifacts import CogSource
from ingest.stages.convert import convert_product

ROOT = Path(__file__).resolve().parents[1]


@dataclass
class Plan:
    name: str
    spec: CollectionSpec
    sources: list[CogSource]
    seconds: list[float]
    cpu: list[float]
    cog_bytes: int = 0

    @property
    def decoded_mb(self) -> float:
        return sum(_decoded_mb(s.path) for s in self.sources)


def _decoded_mb(path: Path) -> float:
    with rasterio.open(path) as src:
        return float(src.width * src.height * src.count * np.dtype(src.dtypes[0]).itemsize) / 1e6


def _sources(safe: Path, spec: CollectionSpec) -> list[CogSource]:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # stactools' winding warnings
        return describe.raster_sources(describe.build_item(safe, spec), spec)


def _cpu_seconds() -> float:
    """CPU seconds of this process, its reaped children and its live children with theirs: the pool's
    workers are children of the forkserver (ingest.lifeline), which reaps them, so their time is in the
    forkserver's cutime/cstime (/proc/PID/stat fields 16-17), not in our RUSAGE_CHILDREN."""
    own, children = resource.getrusage(resource.RUSAGE_SELF), resource.getrusage(resource.RUSAGE_CHILDREN)
    total = own.ru_utime + own.ru_stime + children.ru_utime + children.ru_stime
    tick = os.sysconf("SC_CLK_TCK")
    for tasks in Path("/proc/self/task").glob("*/children"):
        for pid in tasks.read_text().split():
            try:
                fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
            except OSError:
                continue  # ended meanwhile: then it is in RUSAGE_CHILDREN
            total += sum(int(f) for f in fields[11:15]) / tick  # utime stime cutime cstime
    return total


def _convert(plan: Plan, dest: Path, workers: int | None) -> None:
    shutil.rmtree(dest, ignore_errors=True)
    started, cpu = time.perf_counter(), _cpu_seconds()
    results = convert_product(plan.sources, dest, plan.spec.cog, workers=workers)
    plan.seconds.append(time.perf_counter() - started)
    plan.cpu.append(_cpu_seconds() - cpu)
    plan.cog_bytes = sum(r.size for r in results)
    shutil.rmtree(dest, ignore_errors=True)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--size", type=int, default=5490, help="10 m band size in px (multiple of 6; 10980 = full)")
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--workers", type=int, default=None, help="convert_product workers (default: CPU cores)")
    ap.add_argument("--dir", type=Path, default=None, help="scratch directory (default: a temporary one)")
    args = ap.parse_args()
    shipped = load_spec(ROOT / "collections" / "sentinel-2-l2a.yaml")
    everything = shipped.model_copy(update={"assets": {}})
    scratch = Path(tempfile.mkdtemp(prefix="bench-asset-plan-", dir=args.dir))
    try:
        started = time.perf_counter()
        sensing = datetime(2024, 1, 5, 10, 34, tzinfo=UTC)
        safe = generate_s2(scratch / "src", level="L2A", sensing=sensing, size=args.size, seed=1)
        plans = [Plan("every raster", everything, _sources(safe, everything), [], []),
                 Plan("shipped plan", shipped, _sources(safe, shipped), [], [])]  # fmt: skip
        print(f"product: L2A {args.size} px, generated in {time.perf_counter() - started:.1f} s; "
              f"{os.cpu_count()} cores, load {os.getloadavg()[0]:.2f}, {args.rounds} rounds")  # fmt: skip
        for n in range(args.rounds):
            for plan in plans if n % 2 == 0 else plans[::-1]:
                _convert(plan, scratch / "cogs", args.workers)
                print(f"  round {n + 1}: {plan.name:13} {plan.seconds[-1]:7.2f} s wall {plan.cpu[-1]:7.2f} s CPU "
                      f"(load {os.getloadavg()[0]:.2f})", flush=True)  # fmt: skip
        print(f"{'plan':14} {'assets':>6} {'decoded MB':>10} {'wall s':>8} {'CPU s':>8} {'COG MB':>8}  (medians)")
        for plan in plans:
            wall, cpu = statistics.median(plan.seconds), statistics.median(plan.cpu)
            print(f"{plan.name:14} {len(plan.sources):6d} {plan.decoded_mb:10.0f} {wall:8.2f} {cpu:8.2f} "
                  f"{plan.cog_bytes / 1e6:8.1f}")  # fmt: skip
        before, after = plans
        wall = statistics.median(after.seconds) / statistics.median(before.seconds)
        cpu = statistics.median(after.cpu) / statistics.median(before.cpu)
        print(f"shipped / every raster: wall {wall:.2f} (cut {1 - wall:.0%}), CPU {cpu:.2f} (cut {1 - cpu:.0%}), "
              f"decoded pixels {after.decoded_mb / before.decoded_mb:.2f}, "
              f"COG bytes {after.cog_bytes / before.cog_bytes:.2f}")  # fmt: skip
    finally:
        shutil.rmtree(scratch, ignore_errors=True)


if __name__ == "__main__":
    main()
