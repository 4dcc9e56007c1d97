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
from typing import Any

import psycopg
import pytest
from pydantic import SecretStr

from ingest.adapters import pgstac
from ingest.adapters.queue import ProductQueue
from ingest.collections import load_spec
from ingest.daemon.reconcile import reconcile
from ingest.harvest import harvest
from ingest.settings import Settings
from ingest.state import repo
from ingest.state.machine import State
from tests import proctree
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


def wait_for(condition: Callable[[], bool], timeout: float, what: str, step: float = 0.5) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if condition():
            return
        time.sleep(step)
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


def test_a_cdse_fleet_logs_in_once_per_process_and_keeps_to_four_downloads(
    make_world: WorldFactory, workers: Callable[[World], Workers]
) -> None:
    # 2 processes x 3 products at once = 6 downloads asked for, against CDSE's 4 per user; every
    # thread of a process shares its token (CDSE counts each login as a session)
    world = make_world("S2_MSI_L2A", count=10, size=60, flavour="cdse")
    ids = harvest(world.conn, world.provider, world.spec).new_ids
    with ProductQueue(world.settings) as queue:
        queue.enqueue(ids)
    procs = workers(world).start(2, INGEST_WORKER_CONCURRENCY="3", INGEST_CONVERT_WORKERS="1")
    wait_for(lambda: set(states(world).values()) == {"catalogued"}, 300, "every product catalogued")
    for p in procs:
        p.send_signal(signal.SIGTERM)
    assert [p.wait(timeout=60) for p in procs] == [0, 0]
    cdse = world.server.stats_dict()["cdse"]  # type: ignore[attr-defined]
    opened = cdse["tokens"]["sessions"]["opened"]
    assert sum(opened.values()) <= 3, cdse["tokens"]  # the harvest's login, then one per worker process
    downloads = cdse["downloads"]
    assert downloads["max_attempted"] <= 4, downloads  # the fleet's slots held it, not CDSE's refusals
    assert not downloads["rejected"], downloads
    assert sum(downloads["started"].values()) >= 10, downloads
    assert len(pgstac.item_ids(world.dsn, world.spec.id)) == 10


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


def one(conn: psycopg.Connection, sql: str, *params: object) -> Any:
    row = conn.execute(sql, list(params)).fetchone()
    return row[0] if row else None


@pytest.mark.skipif(sys.platform != "linux", reason="reads the process tree from /proc")
def test_kill_9_mid_convert_leaves_no_process_and_the_reconciler_prunes_its_row(
    make_world: WorldFactory, workers: Callable[[World], Workers], tmp_path: Path
) -> None:
    """What the OOM killer or Kubernetes does to a worker: none of its conversion processes (forkserver,
    resource tracker, pool) outlives it, and the reconciler deletes its row in the queue's worker table."""
    world = make_world("S2_MSI_L2A", count=1, size=600)  # 36 bands: seconds of conversion on two processes
    pid = harvest(world.conn, world.provider, world.spec).new_ids[0]
    with ProductQueue(world.settings) as queue:
        queue.enqueue([pid])
    pool = workers(world)
    tree: list[proctree.Proc] = []
    with proctree.subreaper():  # what the worker leaves is adopted here, and reaped here
        # TMPDIR: multiprocessing's directory, which a killed process cannot remove, stays in tmp_path
        (proc,) = pool.start(1, INGEST_CONVERT_WORKERS="2", TMPDIR=str(tmp_path))
        try:

            def mid_convert() -> bool:
                assert proc.poll() is None, "the worker ended"
                assert states(world)[pid] in ("discovered", "claimed", "downloaded"), "the product went past convert"
                converting = [p for p in proctree.descendants(proc.pid) if p.parent() not in (proc.pid, None)]
                return len(converting) == 2 and any(world.work_of(pid).glob("cog/.*.partial"))

            wait_for(mid_convert, 120, "both pool processes converting", step=0.05)
            tree = proctree.descendants(proc.pid)
            assert len(tree) == 4, tree  # forkserver, resource tracker, two pool processes
            worker_id = one(world.conn, "SELECT worker_id FROM procrastinate_jobs WHERE status = 'doing'")
            job_id = one(world.conn, "SELECT id FROM procrastinate_jobs WHERE status = 'doing'")
            world.conn.commit()

            proc.send_signal(signal.SIGKILL)
            seconds, left = proctree.wait_gone(tree, 5.0)
            print(f"\nworker killed: its {len(tree)} conversion processes gone after {seconds:.2f} s")
            assert left == [], f"still alive 5 s after kill -9: {left}"
            proc.wait(timeout=30)
            proctree.reap(tree)
            assert [(p, p.stat()) for p in tree if p.stat() is not None] == []
        finally:
            proctree.kill(tree)
            proctree.reap(tree)

    # nobody unregistered it: its row stays until pruned
    assert one(world.conn, "SELECT count(*) FROM procrastinate_workers WHERE id = %s", worker_id) == 1
    settings = world.settings.model_copy(update={"stall_timeout_s": 1.0})
    wait_for(
        lambda: bool(one(world.conn, "SELECT now() - last_heartbeat > interval '1 s' FROM procrastinate_workers")),
        10, "the heartbeat to be older than the stall timeout", step=0.1,
    )  # fmt: skip
    report = reconcile(settings, {world.spec.id: world.spec})
    assert report.pruned_workers == [worker_id]
    assert report.requeued_jobs == [job_id] and report.released_stalled == [pid]
    assert one(world.conn, "SELECT count(*) FROM procrastinate_workers") == 0
    assert repo.events_of(world.conn, pid)[-1]["message"] == f"released: worker {worker_id} stalled"
    assert reconcile(settings, {world.spec.id: world.spec}).pruned_workers == []


def test_reconcile_prunes_only_the_rows_of_silent_workers(migrated_db: str) -> None:
    """Rows written by hand: two silent workers (one holding a job) and a live one."""
    settings = Settings(database_url=SecretStr(migrated_db), stall_timeout_s=60, _env_file=None)  # type: ignore[call-arg]
    spec = load_spec(ROOT / "collections" / "sentinel-2-l2a.yaml").model_copy(update={"id": "t-prune"})
    with psycopg.connect(migrated_db, autocommit=True) as db:
        (product,) = repo.insert_discovered(
            db, [repo.DiscoveredProduct("P0", spec.id, "local", None, None, None, None, None, None)]
        )
        repo.claim(db, product)
        repo.transition(db, product, State.CLAIMED, State.DOWNLOADED)
        with ProductQueue(settings) as queue:
            queue.enqueue([product])
        heartbeat = "INSERT INTO procrastinate_workers (last_heartbeat) VALUES (now() - %s::interval) RETURNING id"
        busy, idle, live = (one(db, heartbeat, age) for age in ("61 s", "1 day", "5 s"))
        db.execute("UPDATE procrastinate_jobs SET status = 'doing', worker_id = %s", [busy])

        report = reconcile(settings, {spec.id: spec})
        assert report.pruned_workers == sorted([busy, idle])
        assert "2 silent worker(s) pruned" in report.summary()
        assert [r[0] for r in db.execute("SELECT id FROM procrastinate_workers")] == [live]
        # its job was requeued first, so the release still names the worker
        assert report.released_stalled == [product]
        assert repo.events_of(db, product)[-1]["message"] == f"released: worker {busy} stalled"
        assert one(db, "SELECT status::text FROM procrastinate_jobs") == "todo"
        assert reconcile(settings, {spec.id: spec}).pruned_workers == []
