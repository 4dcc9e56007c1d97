"""Benchmark: the fleet-wide download limit (``ingest.quota``) on the CDSE-like provider, 8 downloads asked for
4 slots, vs 4 downloads in parallel with no limit of ours, same products, same run.

    .venv/bin/python benchmarks/provider_limits.py [--products 32] [--distinct 1] [--size 600] [--rounds 3]

A throw-away stack (PostgreSQL on a free port: the slots are its advisory locks) and the CDSE-like
provider (``ingest.devtools.cdse.server.CdseServer``: 4 downloads per user, a 5th is answered 429) on
127.0.0.1, serving ``--products`` Sentinel-2 L1C zips: ``--distinct`` generated (``--size``: the 10 m
width; 600 gives ~2.6 MB), the others hard links to them under other ids. Every download is capped
by the server (``throttle_bps`` about the zip size: one download takes ~1 s), so that the limit
matters. 4 worker processes (spawned: the daemon's workers are processes) each make one
``EodagProvider`` (``cop_dataspace``, EODAG's own plugins) and one ``Quota``, shared by the process's
threads as ``ingest.app`` shares them, and log in and download one product untimed (throttle off).
Then each round, in alternating order:

1. Reference: 4 processes x 1 thread, no limit of ours (``EodagProvider.stream``): 4 downloads in
   parallel, what the provider allows. A 429 is tried again after 0.1 s (counted).
2. Limited: 4 processes x 2 threads = 8 downloads asked for, through ``ingest.quota.paced.Paced``,
   ``provider_max_downloads=4`` (slot takes, polls of busy slots, the rate limit's reservation).

Both pull the same products from one shared queue and read every byte. Per round: the server's
``/_stats`` downloads (``max_concurrent``, which its refusal caps at 4; ``max_attempted``, which counts
the refused one too: the figure a client is held to; ``rejected``), the wall time (first request to
last byte) and throughput. Printed: the medians over ``--rounds``, the ratio throughput(limited) /
throughput(reference) (target >= 0.9), the time from asking to the first byte, the idle
slot-seconds (4 x wall - transfer time: requests to their first byte, the rate limit's waits, and
slots no download asked for, mostly at the end of the queue, where its last products wait in the
threads that had no slot until their next poll, 0.25-0.75 s: a cost of each time the queue runs dry,
smaller in share with more ``--products``), the slot waits the workers' metrics counted, the logins
the server saw, and a free slot's cost: ``Slot.waited_s`` (the take's round trip, as the slot measures
it) and take + release (``benchmarks/quota.py``'s ``bench``) beside a ``SELECT 1``. Exits non-zero if
the limited fleet ever asked for more than 4 downloads at once (a 429), a download failed, or the
ratio is below 0.9.

Zips of one size, and a throttle of 20 x ((size - 1) // 20) bytes/s: the server sends pieces of
``throttle // 20`` bytes and sleeps after each, the last included, counting the download as running
until then; with this throttle the last piece is a few bytes. With zips of several sizes
(``--distinct 8``) the server still counts a download up to 50 ms after the client has its last
byte, and a client that starts its next download at once, at the limit, is refused: the reference
sees 429s, and the limited fleet pauses itself after each.
"""

from __future__ import annotations

import argparse
import logging
import multiprocessing
import os
import queue
import statistics
import sys
import tempfile
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import psycopg
from pydantic import SecretStr

sys.path.insert(0, str(Path(__file__).resolve().parent))

from _common import throwaway_stack
from quota import bench

from ingest.adapters.eodag import EodagProvider
from ingest.devtools.catalog import add_entries, product_path
from ingest.devtools.cdse.server import CdseServer
from ingest.devtools.provider import Faults
from ingest.devtools.publish import Kind, plan_products, publish_generated
from ingest.errors import ProviderThrottled
from ingest.quota import LimitsConfig, Quota
from ingest.quota.paced import Paced
from ingest.settings import Settings
from ingest.stages.artifacts import ProviderProduct

PROVIDER = "cop_dataspace"
COLLECTION: Kind = "S2_MSI_L1C"
USER, PASSWORD = "ingest@example.com", "ingest"
LIMIT = 4
WORKERS = 4
THREADS = 2
START = datetime(2026, 1, 1, tzinfo=UTC)
REFERENCE_RETRIES = 3  # a plain client tries a 429 again after 0.1 s
TIMEOUT_S = 120.0  # any one wait of the parent for its workers
CTX = multiprocessing.get_context("spawn")


@dataclass(frozen=True)
class WorkerSetup:
    index: int
    dsn: str
    url: str
    work_dir: Path
    products: list[ProviderProduct]


@dataclass(frozen=True)
class Download:
    asked: float  # time.monotonic() (system-wide on Linux: comparable between processes)
    first_byte: float
    done: float
    size: int


@dataclass
class WorkerReport:
    index: int
    downloads: list[Download] = field(default_factory=list)
    errors: list[str] = field(default_factory=list)
    retries: int = 0  # the reference's downloads tried again after a 429
    slot_waits: float = 0.0  # takes that found every slot busy and waited (metrics)
    slot_wait_s: float = 0.0  # seconds the takes waited, summed (metrics)
    request_wait_s: float = 0.0  # seconds before_request held requests back, summed (metrics)


def settings_for(url: str, dsn: str, work_dir: Path) -> Settings:
    return Settings(
        provider=PROVIDER,
        provider_url="",
        provider_mirror_url=url,
        provider_username=SecretStr(USER),
        provider_password=SecretStr(PASSWORD),
        database_url=SecretStr(dsn),
        provider_max_downloads=LIMIT,
        work_dir=work_dir,
        _env_file=None,
    )  # type: ignore[call-arg]


def read_all(downloader: EodagProvider | Paced, product: ProviderProduct) -> Download:
    asked = time.monotonic()
    first = 0.0
    size = 0
    with downloader.stream(product) as archive:
        for chunk in archive.chunks:
            if not first:
                first = time.monotonic()
            size += len(chunk)
    if size != product.size:
        raise RuntimeError(f"{product.id}: {size} bytes read, {product.size} announced")
    return Download(asked, first, time.monotonic(), size)


def _metric(name: str, **labels: str) -> float:
    from prometheus_client import REGISTRY

    return REGISTRY.get_sample_value(name, {"provider": PROVIDER, **labels}) or 0.0


def _metrics() -> tuple[float, float, float]:
    return (
        _metric("ingest_provider_slot_waits_total", outcome="taken"),
        _metric("ingest_provider_slot_wait_seconds_sum"),
        _metric("ingest_provider_request_wait_seconds_sum"),
    )


def worker(setup: WorkerSetup, commands: Any, work: Any, results: Any, barrier: Any) -> None:
    """One worker process (one provider and one Quota, shared by its threads, as the daemon's); runs rounds."""
    logging.basicConfig(level=logging.WARNING)
    settings = settings_for(setup.url, setup.dsn, setup.work_dir)
    started = time.perf_counter()
    provider = EodagProvider(settings)  # one per process, shared by its threads (as ingest.app makes it)
    provider._gateway()  # EODAG start-up
    quota = Quota.from_settings(settings)
    limits = quota.provider(PROVIDER)
    paced = Paced(provider, limits)
    read_all(provider, setup.products[setup.index % len(setup.products)])  # the token login, a connection
    with limits.download_slot("warm-up"):  # the quota session opened
        pass
    results.put(("ready", setup.index, time.perf_counter() - started))
    while True:
        command = commands.get()
        if command[0] == "stop":
            break
        _, limited, threads = command
        report = WorkerReport(setup.index)
        before = _metrics()

        def run(downloader: EodagProvider | Paced, report: WorkerReport = report, retry: bool = not limited) -> None:
            while (i := work.get()) is not None:
                for attempt in range(REFERENCE_RETRIES + 1):
                    try:
                        report.downloads.append(read_all(downloader, setup.products[i]))
                    except ProviderThrottled as exc:  # the reference's 429s (Paced turns its own into pauses)
                        if retry and attempt < REFERENCE_RETRIES:
                            report.retries += 1
                            time.sleep(0.1)
                            continue
                        report.errors.append(f"{setup.products[i].id}: {type(exc).__name__}: {exc}")
                    except Exception as exc:  # reported, the parent fails the run
                        report.errors.append(f"{setup.products[i].id}: {type(exc).__name__}: {exc}")
                    break

        downloader = paced if limited else provider
        pool = [threading.Thread(target=run, args=(downloader,)) for _ in range(threads)]
        barrier.wait(TIMEOUT_S)
        for t in pool:
            t.start()
        for t in pool:
            t.join()
        after = _metrics()
        report.slot_waits, report.slot_wait_s, report.request_wait_s = (
            a - b for a, b in zip(after, before, strict=True)
        )
        results.put(("done", setup.index, report))
    quota.close()


@dataclass(frozen=True)
class Round:
    limited: bool
    wall_s: float
    bytes: int
    downloads: int
    errors: list[str]
    retries: int
    server: dict[str, Any]  # the server's /_stats "cdse.downloads"
    ttfb_s: list[float]  # asked -> first byte, each download
    slot_waits: float
    slot_wait_s: float
    request_wait_s: float

    transfer_s: float  # first byte -> last byte, summed over the downloads

    @property
    def mb_s(self) -> float:
        return self.bytes / self.wall_s / 1e6

    @property
    def idle_slot_s(self) -> float:
        """Slot-seconds the provider's 4 downloads could have used and did not (requests, waits, the end)."""
        return LIMIT * self.wall_s - self.transfer_s

    @property
    def requesting_s(self) -> float:
        """Of those, the requests to their first byte, less the waits for a slot (no slot held) and for
        the rate limit (a slot held: counted apart)."""
        return sum(self.ttfb_s) - self.slot_wait_s - self.request_wait_s

    @property
    def unused_s(self) -> float:
        """Of those, the slot-seconds no download asked for: a slot freed before a waiting thread's poll
        came (at the end of the queue: its last products wait in the threads that had no slot)."""
        return self.idle_slot_s - self.requesting_s - self.request_wait_s


class Fleet:
    """The worker processes, their queues and the start barrier."""

    def __init__(self, server: CdseServer, dsn: str, work_dir: Path, products: list[ProviderProduct]) -> None:
        self.server = server
        self.products = products
        self.work: Any = CTX.Queue()
        self.results: Any = CTX.Queue()
        self.barrier: Any = CTX.Barrier(WORKERS + 1)
        self.commands: list[Any] = [CTX.Queue() for _ in range(WORKERS)]
        self.processes = [
            CTX.Process(
                target=worker,
                args=(
                    WorkerSetup(i, dsn, server.url, work_dir / f"worker-{i}", products),
                    self.commands[i],
                    self.work,
                    self.results,
                    self.barrier,
                ),
                name=f"bench-worker-{i}",
            )
            for i in range(WORKERS)
        ]

    def start(self) -> list[float]:
        for p in self.processes:
            p.start()
        return [self._get("ready")[2] for _ in self.processes]

    def _get(self, kind: str) -> tuple[Any, ...]:
        deadline = time.monotonic() + TIMEOUT_S
        while True:
            try:
                message: tuple[Any, ...] = self.results.get(timeout=1.0)
                break
            except queue.Empty:
                dead = [p.name for p in self.processes if p.exitcode is not None]
                if dead:
                    raise SystemExit(f"FAIL: worker {', '.join(dead)} died (see its traceback above)") from None
                if time.monotonic() > deadline:
                    raise SystemExit(f"FAIL: no {kind!r} from the workers within {TIMEOUT_S:.0f} s") from None
        if message[0] != kind:
            raise SystemExit(f"FAIL: {message!r} from a worker, {kind!r} expected")
        return message

    def round(self, *, limited: bool) -> Round:
        threads = THREADS if limited else 1
        self.server.reset_stats()
        for i in range(len(self.products)):
            self.work.put(i)
        for _ in range(WORKERS * threads):
            self.work.put(None)
        for c in self.commands:
            c.put(("run", limited, threads))
        self.barrier.wait(TIMEOUT_S)
        reports: list[WorkerReport] = [self._get("done")[2] for _ in self.processes]
        downloads = [d for r in reports for d in r.downloads]
        wall = max(d.done for d in downloads) - min(d.asked for d in downloads)
        return Round(
            limited=limited,
            wall_s=wall,
            bytes=sum(d.size for d in downloads),
            downloads=len(downloads),
            errors=[e for r in reports for e in r.errors],
            retries=sum(r.retries for r in reports),
            server=self.server.stats_dict()["cdse"]["downloads"],
            ttfb_s=[d.first_byte - d.asked for d in downloads],
            transfer_s=sum(d.done - d.first_byte for d in downloads),
            slot_waits=sum(r.slot_waits for r in reports),
            slot_wait_s=sum(r.slot_wait_s for r in reports),
            request_wait_s=sum(r.request_wait_s for r in reports),
        )

    def stop(self) -> None:
        for c in self.commands:
            c.put(("stop",))
        for p in self.processes:
            p.join(timeout=30)
            if p.is_alive():
                p.terminate()
                p.join()


def slot_costs(dsn: str, n: int) -> dict[str, float]:
    """Median seconds: ``SELECT 1``, a free slot's ``waited_s``, a free slot taken and released."""
    with (
        Quota(dsn, LimitsConfig(max_downloads=LIMIT, max_requests_per_s=1e9)) as q,
        psycopg.connect(dsn, autocommit=True) as ref,
    ):
        limits = q.provider("bench-free")
        waited: list[float] = []

        def take_release() -> None:
            with limits.download_slot("p", wait_s=0) as slot:
                waited.append(slot.waited_s)

        def select_1() -> None:
            ref.execute("SELECT 1").fetchone()

        cases: dict[str, Callable[[], object]] = {"SELECT 1": select_1, "take + release": take_release}
        medians = bench(cases, n)
        medians["waited_s (the take)"] = statistics.median(waited[-n:])
        return medians


def publish(root: Path, count: int, distinct: int, size: int) -> list[int]:
    """``distinct`` generated products, and hard links to them under other ids up to ``count`` (the
    generator costs ~0.6 s a product; the download reads bytes, whatever they are)."""
    plans = plan_products(min(count, distinct), kinds=(COLLECTION,), start=START)
    made = [publish_generated(root, plan, size=size) for plan in plans]
    copies = []
    for i in range(len(made), count):
        source = made[i % len(made)]
        copy = replace(source, id=f"{source.id}_COPY{i:03d}", published=source.published + timedelta(seconds=i))
        os.link(product_path(root, source.id), product_path(root, copy.id))
        copies.append(copy)
    add_entries(root, copies)
    return [e.size for e in made + copies]


def throttle_for(sizes: list[int]) -> int:
    """Bytes/s per download, about the zip size (a download about 1 s). The server sends pieces of
    ``throttle // 20`` bytes and sleeps after each, the last one included, counting the download as
    running until then: for zips of one size the throttle makes that last piece a few bytes."""
    if len(set(sizes)) == 1:
        return 20 * ((sizes[0] - 1) // 20)  # pieces of (size - 1) // 20 bytes: 20 of them, then 1 to 20 bytes
    return int(statistics.median(sizes))


def search_all(settings: Settings) -> list[ProviderProduct]:
    return [p for page in EodagProvider(settings).search(COLLECTION, page_size=1000) for p in page]


def _median(rounds: list[Round], f: Callable[[Round], float]) -> float:
    return statistics.median(f(r) for r in rounds)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--products", type=int, default=32)
    ap.add_argument("--distinct", type=int, default=1, help="products generated; the others are links to them")
    ap.add_argument("--size", type=int, default=600, help="generator size (S2 10 m width); 600 gives ~2.5 MB")
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--slot-calls", type=int, default=1000, help="timed take + release calls")
    args = ap.parse_args()
    logging.basicConfig(level=logging.WARNING)
    t_all = time.perf_counter()
    with throwaway_stack() as env, tempfile.TemporaryDirectory(prefix="bench-limits-") as tmp:
        dsn = env["INGEST_DATABASE_URL"]
        root, work = Path(tmp) / "provider", Path(tmp) / "work"
        t = time.perf_counter()
        sizes = publish(root, args.products, args.distinct, args.size)
        throttle = throttle_for(sizes)
        print(f"{len(sizes)} products ({args.distinct} generated) of {min(sizes) / 1e6:.2f}-"
              f"{max(sizes) / 1e6:.2f} MB in {time.perf_counter() - t:.1f} s; throttle {throttle / 1e6:.2f} MB/s "
              "per download")  # fmt: skip
        with CdseServer(root, port=0, max_downloads=LIMIT) as server:
            while server.files.computed < len(sizes):  # the server hashes every zip once, in the background
                time.sleep(0.05)
            parent = settings_for(server.url, dsn, work / "parent")
            products = search_all(parent)
            assert len(products) == len(sizes), len(products)
            fleet = Fleet(server, dsn, work, products)
            t = time.perf_counter()
            setup = fleet.start()
            tokens = server.stats_dict()["cdse"]["tokens"]
            print(f"{WORKERS} workers ready in {time.perf_counter() - t:.1f} s (each {min(setup):.1f}-"
                  f"{max(setup):.1f} s: EODAG, a login, a download); "
                  f"server: grants {tokens['grants']}, sessions opened {tokens['sessions']['opened']}")  # fmt: skip
            server.set_faults(Faults(throttle_bps=throttle))
            rounds: list[Round] = []
            try:
                for r in range(args.rounds):
                    for limited in (False, True) if r % 2 == 0 else (True, False):
                        rounds.append(fleet.round(limited=limited))
                        x = rounds[-1]
                        s = x.server
                        print(f"round {r + 1} {'limited  ' if limited else 'reference'} {x.wall_s:6.2f} s "
                              f"{x.mb_s:6.2f} MB/s  max_concurrent {s['max_concurrent']} max_attempted "
                              f"{s['max_attempted']} rejected {sum(s['rejected'].values())}  downloads {x.downloads}"
                              f"  retries {x.retries}"
                              f"  slot waits {x.slot_waits:.0f}", flush=True)  # fmt: skip
                tokens_rounds = server.stats_dict()["cdse"]["tokens"]
            finally:
                fleet.stop()
        costs = slot_costs(dsn, args.slot_calls)
    ref = [r for r in rounds if not r.limited]
    lim = [r for r in rounds if r.limited]
    floor = sum(sizes) / (LIMIT * throttle)
    ratio = _median(lim, lambda r: r.mb_s) / _median(ref, lambda r: r.mb_s)
    print(f"\nmedians of {args.rounds} rounds, {len(sizes)} products ({sum(sizes) / 1e6:.1f} MB), "
          f"{LIMIT} x {throttle / 1e6:.2f} MB/s at most: {floor:.2f} s at best")  # fmt: skip
    print(f"{'':42s} {'wall s':>6s} {'MB/s':>6s} {'max concurrent':>14s} {'max attempted':>13s} {'429s':>4s} "
          f"{'retries':>7s} {'asked->1st byte p50':>19s} {'idle slot-s':>11s}")  # fmt: skip
    for name, rs in (("reference: 4 procs x 1 thread, no limit", ref), ("limited: 4 procs x 2 threads, Paced", lim)):
        print(
            f"{name:42s} {_median(rs, lambda r: r.wall_s):6.2f} {_median(rs, lambda r: r.mb_s):6.2f} "
            f"{max(r.server['max_concurrent'] for r in rs):14d} {max(r.server['max_attempted'] for r in rs):13d} "
            f"{sum(sum(r.server['rejected'].values()) for r in rs):4d} {sum(r.retries for r in rs):7d} "
            f"{statistics.median(t for r in rs for t in r.ttfb_s) * 1000:16.1f} ms "
            f"{_median(rs, lambda r: r.idle_slot_s):11.2f}"
        )
    for name, rs in (("reference", ref), ("limited", lim)):
        print(f"{name}, idle slot-seconds: {_median(rs, lambda r: r.requesting_s):.2f} asking to the first byte, "
              f"{_median(rs, lambda r: r.request_wait_s):.2f} held by the rate limit, "
              f"{_median(rs, lambda r: r.unused_s):.2f} with no download")  # fmt: skip
    print(f"limited, a round: {_median(lim, lambda r: r.slot_waits):.0f} of {len(sizes)} slot takes waited "
          f"({_median(lim, lambda r: r.slot_wait_s):.1f} s in all: no queue, the threads that hold a slot take it "
          f"again); the rate limit ({parent.provider_max_requests_per_s:g}/s) held requests back "
          f"{_median(lim, lambda r: r.request_wait_s) * 1000:.0f} ms in all")  # fmt: skip
    print(f"token logins during the rounds: grants {tokens_rounds['grants']}, "
          f"sessions opened {tokens_rounds['sessions']['opened']}")  # fmt: skip
    per_round = [b.mb_s / a.mb_s for a, b in zip(ref, lim, strict=True)]
    print(f"ratio throughput limited / reference: {ratio:.3f} (target >= 0.9; per round "
          f"{', '.join(f'{x:.3f}' for x in per_round)})")  # fmt: skip
    ref_s, take_s, both_s = costs["SELECT 1"], costs["waited_s (the take)"], costs["take + release"]
    print(f"a free slot, medians of {args.slot_calls}: Slot.waited_s {take_s * 1e6:.0f} us, take + release "
          f"{both_s * 1e6:.0f} us; SELECT 1 {ref_s * 1e6:.0f} us (ratios {take_s / ref_s:.2f}, "
          f"{both_s / ref_s:.2f})")  # fmt: skip
    print(f"whole run {time.perf_counter() - t_all:.0f} s")
    failures = []
    if any(r.server["max_concurrent"] > LIMIT for r in rounds):
        failures.append(f"the server saw more than {LIMIT} downloads at once")
    if any(r.server["max_attempted"] > LIMIT or r.server["rejected"] for r in lim):
        failures.append(f"the limited fleet asked for more than {LIMIT} downloads at once (429s)")
    if any(r.errors for r in rounds) or any(r.downloads != len(sizes) for r in rounds):
        failures.append("downloads failed: " + "; ".join(e for r in rounds for e in r.errors[:3]))
    if ratio < 0.9:
        failures.append(f"throughput ratio {ratio:.3f} < 0.9")
    if failures:
        raise SystemExit("FAIL: " + "; ".join(failures))


if __name__ == "__main__":
    main()
