"""Benchmark: what the fleet-wide provider limits cost per download and per request, against a bare round trip.

    .venv/bin/python benchmarks/quota.py [--n 2000] [--durable]

A throw-away stack (PostgreSQL on a free port; ``--durable``: fsync on) and, in the same run, the
median of ``--n`` timed calls (after 200 untimed ones) of each, interleaved in blocks of 100 so that
drift in the machine's speed touches all of them alike:

1. Reference: ``SELECT 1`` on an autocommit connection of its own (one bare round trip).
   Floor: ``pg_try_advisory_lock`` then ``pg_advisory_unlock`` on it (two round trips: the least any
   design with a session lock per slot can do).
2. ``download_slot`` taken and released, every slot free (the take function and the pause read in
   one round trip, the unlock in a second).
3. The same with 3 of the 4 slots held by another session (the function may try busy ones before
   the free one, in the same round trip: still two).
4. One poll of a provider whose slots are all busy (``download_slot(wait_s=0)`` -> ``SlotWaitTimeout``).
5. ``before_request`` with a rate limit too high to ever sleep (the reservation: one row update).
6. ``before_request`` with no rate limit (the pause read alone).

Prints the medians in microseconds and their ratios to the reference and to the floor.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from collections.abc import Callable
from pathlib import Path

import psycopg

sys.path.insert(0, str(Path(__file__).resolve().parent))

from _common import throwaway_stack

from ingest.quota import LimitsConfig, Quota, SlotWaitTimeout
from ingest.quota.slots import slot_key

BLOCK = 100
WARMUP = 200


def bench(cases: dict[str, Callable[[], object]], n: int) -> dict[str, float]:
    """Median seconds per call of each case, the cases interleaved block by block."""
    for fn in cases.values():
        for _ in range(WARMUP):
            fn()
    times: dict[str, list[float]] = {name: [] for name in cases}
    for _ in range(max(1, n // BLOCK)):
        for name, fn in cases.items():
            for _ in range(BLOCK):
                t0 = time.perf_counter()
                fn()
                times[name].append(time.perf_counter() - t0)
    return {name: statistics.median(ts) for name, ts in times.items()}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--n", type=int, default=2000, help="timed calls of each case")
    ap.add_argument("--durable", action="store_true", help="fsync on (production-like commits)")
    args = ap.parse_args()
    with throwaway_stack(durable=args.durable) as env:
        dsn = env["INGEST_DATABASE_URL"]
        free = Quota(dsn, LimitsConfig(max_downloads=4, max_requests_per_s=1e9))
        crowded = Quota(dsn, LimitsConfig(max_downloads=4))
        holder = Quota(dsn, LimitsConfig(max_downloads=4))
        full = Quota(dsn, LimitsConfig(max_downloads=4))
        unlimited = Quota(dsn, LimitsConfig(max_requests_per_s=0))
        with psycopg.connect(dsn, autocommit=True) as ref:
            held = [holder.provider("crowded").download_slot(f"h{i}") for i in range(3)]
            held += [holder.provider("full").download_slot(f"f{i}") for i in range(4)]
            for cm in held:
                cm.__enter__()

            def select_1() -> None:
                ref.execute("SELECT 1").fetchone()

            key = slot_key("bare")

            def bare_lock() -> None:
                ref.execute("SELECT pg_try_advisory_lock(%s, %s)", [key, 0]).fetchone()
                ref.execute("SELECT pg_advisory_unlock(%s, %s)", [key, 0]).fetchone()

            def slot(q: Quota, provider: str) -> Callable[[], None]:
                limits = q.provider(provider)

                def take_release() -> None:
                    with limits.download_slot("p", wait_s=0):
                        pass

                return take_release

            def busy_poll() -> None:
                try:
                    with full.provider("full").download_slot("p", wait_s=0):
                        raise AssertionError("a slot was free")
                except SlotWaitTimeout:
                    pass

            rate = free.provider("rated")
            no_rate = unlimited.provider("unrated")
            medians = bench(
                {
                    "SELECT 1 (reference)": select_1,
                    "bare lock + unlock (floor)": bare_lock,
                    "download_slot, all free": slot(free, "free"),
                    "download_slot, 3 of 4 busy": slot(crowded, "crowded"),
                    "one poll, all 4 busy": busy_poll,
                    "before_request (rate reservation)": rate.before_request,
                    "before_request (no rate limit)": no_rate.before_request,
                },
                args.n,
            )
            for cm in held:
                cm.__exit__(None, None, None)
        for q in (free, crowded, holder, full, unlimited):
            q.close()
    ref_s, floor_s = medians["SELECT 1 (reference)"], medians["bare lock + unlock (floor)"]
    print(f"medians of {args.n} calls each, fsync {'on' if args.durable else 'off'}")
    print(f"{'':36s} {'median':>11s}   {'/ SELECT 1':>10s}   {'/ floor':>7s}")
    for name, s in medians.items():
        print(f"{name:36s} {s * 1e6:8.1f} us   {s / ref_s:10.2f}   {s / floor_s:7.2f}")


if __name__ == "__main__":
    main()
