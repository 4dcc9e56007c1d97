"""Worker processes sharing the queue: real OS processes, real database, S3 server and provider."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from collections import defaultdict
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from ingest.adapters import pgstac
from ingest.adapters.queue import ProductQueue
from ingest.harvest import harvest
from tests.conftest import ROOT, Stack
from tests.integration.conftest import World, WorldFactory


class Workers:
    """Start ``ingest worker`` processes; every one is stopped (SIGKILL if need be) at the end."""

    def __init__(self, world: World, stack: Stack, logs: Path) -> None:
        self.world, self.stack, self.logs = world, stack, logs
        self.procs: list[subprocess.Popen[bytes]] = []

    def start(self, n: int = 1, **env: str) -> list[subprocess.Popen[bytes]]:
        base = {k: v for k, v in os.environ.items() if not k.startswith("INGEST_")}
        started = []
        for _ in range(n):
            log = open(self.logs / f"worker-{len(self.procs)}.log", "wb")  # noqa: SIM115 (closed with the process)
            proc = subprocess.Popen(
                [sys.executable, "-m", "ingest", "--json-logs", "worker"],
                env={**base, **self.world.cli_env(self.stack, **env)},
                cwd=ROOT,
                stdout=log,
                stderr=subprocess.STDOUT,
            )
            self.procs.append(proc)
            started.append(proc)
        return started

    def stop_all(self) -> None:
        for p in self.procs:
            if p.poll() is None:
                p.kill()
            p.wait(timeout=30)


@pytest.fixture
def workers(stack: Stack, tmp_path: Path) -> Iterator[Callable[[World], Workers]]:
    made: list[Workers] = []

    def make(world: World) -> Workers:
        w = Workers(world, stack, tmp_path)
        made.append(w)
        return w

    yield make
    for w in made:
        w.stop_all()


def wait_for(condition: Callable[[], bool], timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if condition():
            return
        time.sleep(0.5)
    raise AssertionError(f"timed out after {timeout:.0f} s waiting for {what}")


def states(world: World) -> dict[str, str]:
    rows = world.conn.execute("SELECT id, state FROM ingest.products WHERE collection = %s", [world.spec.id]).fetchall()
    world.conn.commit()
    return dict(rows)


def test_three_workers_catalogue_thirty_products_exactly_once(
    make_world: WorldFactory, workers: Callable[[World], Workers]
) -> None:
    world = make_world("S2_MSI_L2A", count=int(os.environ.get("T_COUNT", "30")), size=60)
    ids = harvest(world.conn, world.provider, world.spec).new_ids
    assert len(ids) == len(world.entries)
    with ProductQueue(world.settings) as queue:
        assert queue.enqueue(ids) == len(ids)
        assert queue.enqueue(ids) == 0  # one waiting job per product, however often it is enqueued
    pool = workers(world)
    procs = pool.start(3, INGEST_CONVERT_WORKERS="1")
    wait_for(lambda: set(states(world).values()) == {"catalogued"}, 300, "every product catalogued")
    for p in procs:
        p.send_signal(signal.SIGTERM)
    assert [p.wait(timeout=60) for p in procs] == [0, 0, 0]

    assert sorted(pgstac.item_ids(world.dsn, world.spec.id)) == sorted(
        r[0] for r in world.conn.execute("SELECT item_id FROM ingest.products WHERE collection = %s", [world.spec.id])
    )
    assert len(pgstac.item_ids(world.dsn, world.spec.id)) == 30
    events = world.conn.execute(
        "SELECT e.product_id, e.to_state, e.worker FROM ingest.events e JOIN ingest.products p ON p.id = e.product_id"
        " WHERE p.collection = %s ORDER BY e.id",
        [world.spec.id],
    ).fetchall()
    by_product: dict[str, list[tuple[str, str]]] = defaultdict(list)
    for pid, to_state, worker in events:
        by_product[pid].append((to_state, worker))
    busy_workers = set()
    for pid, history in by_product.items():
        steps = [s for s, _ in history]
        assert steps == ["discovered", "claimed", "downloaded", "converted", "uploaded", "catalogued"], (pid, steps)
        owners = {w for s, w in history[1:]}
        assert len(owners) == 1, (pid, history)  # claimed to catalogued by one worker, nobody else in between
        busy_workers |= owners
    assert len(busy_workers) >= 2, busy_workers  # the work was shared
    with ProductQueue(world.settings) as queue:
        assert queue.active() == set()


def test_sigterm_releases_the_product_and_exits_zero(
    make_world: WorldFactory, workers: Callable[[World], Workers]
) -> None:
    world = make_world("S2_MSI_L2A", count=1, size=600)
    pid = harvest(world.conn, world.provider, world.spec).new_ids[0]
    with ProductQueue(world.settings) as queue:
        queue.enqueue([pid])
    pool = workers(world)
    (proc,) = pool.start(1, INGEST_SHUTDOWN_GRACE_S="0")
    wait_for(lambda: states(world)[pid] in ("downloaded", "converted"), 120, "the product in flight")
    proc.send_signal(signal.SIGTERM)
    assert proc.wait(timeout=120) == 0
    state = states(world)[pid]
    assert state in ("discovered", "catalogued"), state  # released at a stage boundary, or finished
    if state == "discovered":
        history = [e[0] for e in world.conn.execute(
            "SELECT message FROM ingest.events WHERE product_id = %s ORDER BY id", [pid]
        )]  # fmt: skip
        assert any(m and m.startswith("released in") for m in history), history
        assert not world.work_of(pid).exists()
        with ProductQueue(world.settings) as queue:
            assert queue.active() == {pid}  # queued again at once
        (again,) = pool.start(1)
        wait_for(lambda: states(world)[pid] == "catalogued", 180, "the released product catalogued")
        again.send_signal(signal.SIGTERM)
        assert again.wait(timeout=60) == 0
