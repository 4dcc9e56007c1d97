"""The scheduler against the real database: leader election, reconciliation, failover between OS processes."""

from __future__ import annotations

import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import psycopg
import pytest
from pydantic import SecretStr

from ingest.adapters import pgstac
from ingest.adapters.queue import ProductQueue
from ingest.collections import load_spec
from ingest.daemon.leader import LeaderLock
from ingest.daemon.reconcile import reconcile
from ingest.daemon.scheduler import LOCK_NAME, run_scheduler
from ingest.devtools.provider import Faults
from ingest.harvest import harvest
from ingest.settings import Settings
from ingest.state import repo
from ingest.state.machine import State
from tests.conftest import ROOT, Stack, free_port
from tests.integration.conftest import World, WorldFactory


def wait_for(condition: Callable[[], object], timeout: float, what: str, step: float = 0.2) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if condition():
            return
        time.sleep(step)
    raise AssertionError(f"timed out after {timeout:g} s waiting for {what}")


def one(conn: psycopg.Connection, sql: str, *params: object) -> object:
    row = conn.execute(sql, list(params)).fetchone()
    return row[0] if row else None


@pytest.fixture
def db(migrated_db: str) -> Iterator[psycopg.Connection]:
    with psycopg.connect(migrated_db, autocommit=True) as conn:
        yield conn


class Procs:
    """``ingest ...`` OS processes with their output in files; every one is killed at the end."""

    def __init__(self, logs: Path) -> None:
        self.logs = logs
        self.started: list[tuple[subprocess.Popen[bytes], Path]] = []

    def start(self, name: str, *args: str, env: dict[str, str]) -> subprocess.Popen[bytes]:
        out = self.logs / f"{name}.log"
        base = {k: v for k, v in os.environ.items() if not k.startswith("INGEST_")}
        with out.open("wb") as f:
            proc = subprocess.Popen(
                [sys.executable, "-m", "ingest", "--text-logs", *args],
                env={**base, **env}, cwd=ROOT, stdout=f, stderr=subprocess.STDOUT,
            )  # fmt: skip
        self.started.append((proc, out))
        return proc

    def output(self, proc: subprocess.Popen[bytes]) -> str:
        return next(p for q, p in self.started if q is proc).read_text(errors="replace")

    def kill_all(self) -> None:
        for proc, _ in self.started:
            if proc.poll() is None:
                proc.kill()
            proc.wait(timeout=30)


@pytest.fixture
def procs(tmp_path: Path) -> Iterator[Procs]:
    p = Procs(tmp_path)
    yield p
    p.kill_all()


# ----------------------------------------------------------------------------- leader lock


def test_leader_lock_has_one_holder_until_released(migrated_db: str) -> None:
    with LeaderLock(migrated_db, "t-lock") as first, LeaderLock(migrated_db, "t-lock") as second:
        assert first.try_acquire()
        assert first.try_acquire() and first.still_held()  # asking again while holding keeps one lock
        assert not second.try_acquire() and not second.still_held()
        assert second.holder() is not None and "t-lock" in (second.holder() or "")
        with LeaderLock(migrated_db, "another-name") as other:
            assert other.try_acquire()  # names are independent locks
        first.release()
        assert not first.still_held()
        assert second.try_acquire() and second.still_held()
        assert not first.try_acquire()
        second.release()
        assert first.try_acquire()  # the unlock left nothing stacked behind


def test_a_lost_session_frees_the_lock_and_its_holder_notices(migrated_db: str) -> None:
    first, second = LeaderLock(migrated_db, "t-lock"), LeaderLock(migrated_db, "t-lock")
    try:
        assert first.try_acquire() and not second.try_acquire()
        # the first holder's connection dies abruptly (as with a crash: the server reads EOF, no unlock)
        conn = first._conn
        assert conn is not None
        socket.socket(fileno=os.dup(conn.fileno())).shutdown(socket.SHUT_RDWR)
        wait_for(second.try_acquire, 5, "the second lock to be granted")
        assert not first.still_held()  # its check fails: leadership is lost, never assumed
        assert not first.try_acquire()  # reconnects, finds the lock taken

        # the server ends the holder's session (pg_terminate_backend, or keepalives giving up)
        backend = second.backend_pid
        with psycopg.connect(migrated_db, autocommit=True) as admin:
            admin.execute("SELECT pg_terminate_backend(%s)", [backend])
        assert not second.still_held()
        assert first.try_acquire()
    finally:
        first.release()
        second.release()


def test_lock_session_has_keepalives_and_no_idle_timeout(migrated_db: str) -> None:
    with LeaderLock(migrated_db, "t-lock") as lock:
        assert lock.try_acquire() and lock._conn is not None
        show = {name: str(one(lock._conn, f"SHOW {name}")) for name in (
            "tcp_keepalives_idle", "tcp_keepalives_interval", "tcp_keepalives_count", "idle_session_timeout",
        )}  # fmt: skip
        # over a Unix socket the server reports 0 for keepalives; the test stack talks TCP
        assert show == {
            "tcp_keepalives_idle": "10",
            "tcp_keepalives_interval": "5",
            "tcp_keepalives_count": "3",
            "idle_session_timeout": "0",
        }
        assert lock._conn.autocommit


def test_scheduler_stands_by_then_leads_survives_a_failing_job_and_stops_on_the_event(
    migrated_db: str, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    (tmp_path / "collections").mkdir()
    shutil.copy(ROOT / "collections" / "sentinel-2-l2a.yaml", tmp_path / "collections")
    settings = Settings(
        database_url=SecretStr(migrated_db), collections_dir=tmp_path / "collections", work_dir=tmp_path / "work",
        provider_url=f"http://127.0.0.1:{free_port()}", provider_search_retries=0, leader_poll_s=0.2,
        _env_file=None,
    )  # type: ignore[call-arg]  # fmt: skip
    stop = threading.Event()
    caplog.set_level("INFO", logger="ingest")
    with LeaderLock(migrated_db, LOCK_NAME) as other:
        assert other.try_acquire()
        thread = threading.Thread(
            target=run_scheduler, args=(settings,), kwargs={"stop": stop, "install_signals": False}
        )
        thread.start()
        try:
            time.sleep(1.0)  # five polls
            standby = [r.getMessage() for r in caplog.records if r.getMessage().startswith("standby:")]
            assert len(standby) == 1 and "another scheduler leads" in standby[0], standby  # said once
            other.release()
            wait_for(lambda: any(r.getMessage().startswith("leader:") for r in caplog.records), 5, "leadership")
            wait_for(lambda: any(r.getMessage().startswith("reconcile:") for r in caplog.records), 5, "reconcile")
            # the provider is down: the harvest fails, says so in one line, and the scheduler carries on
            wait_for(lambda: any("failed:" in r.getMessage() for r in caplog.records), 20, "the harvest to fail")
            assert not other.try_acquire()
        finally:
            stop.set()
            thread.join(timeout=10)
        assert not thread.is_alive()
        assert other.try_acquire()  # released on the way out
    messages = [r.getMessage() for r in caplog.records]
    assert "job reconcile: every 60 s, first run now" in messages, messages
    assert "scheduler jobs stopped" in messages
    # at start the collection document followed its file (never published in this database before)
    assert "published sentinel-2-l2a: its collection file changed since it was last published" in messages
    with psycopg.connect(migrated_db) as conn:
        assert conn.execute("SELECT count(*) FROM pgstac.collections WHERE id = 'sentinel-2-l2a'").fetchone() == (1,)
    (failure,) = [r for r in caplog.records if "failed:" in r.getMessage()]
    assert failure.getMessage().startswith("harvest:sentinel-2-l2a failed: ") and "\n" not in failure.getMessage()
    assert failure.levelname == "ERROR" and not failure.exc_info  # no traceback unless --debug


# ----------------------------------------------------------------------------- reconcile


def states(world: World) -> dict[str, str]:
    rows = world.conn.execute("SELECT id, state FROM ingest.products WHERE collection = %s", [world.spec.id]).fetchall()
    world.conn.commit()
    return dict(rows)


def walk(conn: psycopg.Connection, product_id: str, *states: State) -> None:
    """Claim a product and move it along ``states``, as a worker would."""
    repo.claim(conn, product_id)
    current = State.CLAIMED
    for state in states:
        repo.transition(conn, product_id, current, state)
        current = state


def test_reconcile_requeues_only_jobs_whose_worker_went_silent(migrated_db: str, db: psycopg.Connection) -> None:
    """The same repair on rows written by hand: a dead worker (old heartbeat), a pruned one (row gone)
    and a live one; products downloaded, catalogued (died after finishing) and converted."""
    settings = Settings(database_url=SecretStr(migrated_db), stall_timeout_s=60, _env_file=None)  # type: ignore[call-arg]
    spec = load_spec(ROOT / "collections" / "sentinel-2-l2a.yaml").model_copy(update={"id": "t-stalled"})
    ids = repo.insert_discovered(db, [
        repo.DiscoveredProduct(f"P{i}", spec.id, "local", None, None, None, None, None, None) for i in range(3)
    ])  # fmt: skip
    dead, finished, alive = ids
    walk(db, dead, State.DOWNLOADED)
    walk(db, finished, State.DOWNLOADED, State.CONVERTED, State.UPLOADED, State.CATALOGUED)
    walk(db, alive, State.DOWNLOADED, State.CONVERTED)
    with ProductQueue(settings) as queue:
        assert queue.enqueue(ids) == 3
    old = one(db, "INSERT INTO procrastinate_workers (last_heartbeat) VALUES (now() - interval '5 min') RETURNING id")
    fresh = one(db, "INSERT INTO procrastinate_workers DEFAULT VALUES RETURNING id")
    for pid, worker in ((dead, old), (finished, None), (alive, fresh)):
        db.execute(
            "UPDATE procrastinate_jobs SET status = 'doing', worker_id = %s WHERE args->>'product_id' = %s",
            [worker, pid],
        )
    job_of: dict[str, int] = dict(db.execute("SELECT args->>'product_id', id FROM procrastinate_jobs").fetchall())

    report = reconcile(settings, {spec.id: spec})
    assert sorted(report.requeued_jobs) == sorted([job_of[dead], job_of[finished]])
    assert report.released_stalled == [dead]  # the catalogued one stays catalogued; its job will skip it
    assert report.enqueued == []  # `dead` is due again, but its own job is waiting for it
    status: dict[str, str] = dict(
        db.execute("SELECT args->>'product_id', status::text FROM procrastinate_jobs").fetchall()
    )
    assert status == {dead: "todo", finished: "todo", alive: "doing"}
    states: dict[str, str] = dict(db.execute("SELECT id, state FROM ingest.products").fetchall())
    assert states == {dead: "discovered", finished: "catalogued", alive: "converted"}
    assert repo.events_of(db, dead)[-1]["message"] == f"released: worker {old} stalled"


def test_reconcile_takes_back_the_product_of_a_killed_worker(
    make_world: WorldFactory, stack: Stack, procs: Procs, db: psycopg.Connection
) -> None:
    world = make_world("S2_MSI_L2A", count=1, size=60)
    (pid,) = harvest(world.conn, world.provider, world.spec).new_ids
    world.conn.commit()
    with ProductQueue(world.settings) as queue:
        assert queue.enqueue([pid]) == 1
    world.server.set_faults(Faults(throttle_bps=2000))  # the download lasts long enough to kill it midway
    worker = procs.start("worker", "worker", env=world.cli_env(stack, INGEST_WORKER_HEARTBEAT_S="1"))
    # the claim must be committed while the product is processed, or nobody can see who holds it
    wait_for(lambda: states(world)[pid] == "claimed", 30, "the worker's claim to be visible to others")
    job_id = one(db, "SELECT id FROM procrastinate_jobs WHERE status = 'doing'")
    worker_id = one(db, "SELECT worker_id FROM procrastinate_jobs WHERE id = %s", job_id)
    worker.kill()  # SIGKILL: no release, no unregistering, the heartbeat just stops
    worker.wait(timeout=10)
    world.server.set_faults(Faults())

    settings = world.settings.model_copy(update={"stall_timeout_s": 1.5})
    early = reconcile(settings, {world.spec.id: world.spec})  # its heartbeat is still fresh: a live worker
    assert early.requeued_jobs == [] and early.released_stalled == [] and early.enqueued == []
    time.sleep(2.0)
    report = reconcile(settings, {world.spec.id: world.spec})
    assert report.requeued_jobs == [job_id] and report.released_stalled == [pid]
    assert report.enqueued == [] and report.released_orphans == [] and report.conflicts == 0
    assert states(world)[pid] == "discovered"
    assert one(db, "SELECT status::text FROM procrastinate_jobs WHERE id = %s", job_id) == "todo"
    assert one(db, "SELECT count(*) FROM procrastinate_jobs") == 1  # the same job, not a second one
    last = repo.events_of(world.conn, pid)[-1]
    assert (last["from_state"], last["to_state"]) == ("claimed", "discovered")
    assert last["message"] == f"released: worker {worker_id} stalled"

    again = reconcile(settings, {world.spec.id: world.spec})
    assert again.requeued_jobs == [] and again.enqueued == []  # nothing left to repair

    # another worker completes it; the catalogue ends exact: one item, every object owned by it
    procs.start("worker2", "worker", env=world.cli_env(stack))
    wait_for(lambda: states(world)[pid] == "catalogued", 120, "the product catalogued by the second worker")
    items = pgstac.item_ids(world.dsn, world.spec.id)
    assert len(items) == 1
    item = pgstac.get_item(world.dsn, world.spec.id, items[0])
    assert item is not None
    referenced = {a["href"].removeprefix(f"s3://{world.store.bucket}/") for a in item["assets"].values()}
    assert set(world.store.list_keys(world.store.collection_prefix(world.spec.id))) == referenced
    claims = [e for e in repo.events_of(world.conn, pid) if e["to_state"] == "claimed"]
    assert len(claims) == 2 and claims[0]["worker"] != claims[1]["worker"]


def test_reconcile_releases_orphans_and_enqueues_due_products_once(make_world: WorldFactory) -> None:
    world = make_world("S2_MSI_L2A", count=4, size=60)
    found = harvest(world.conn, world.provider, world.spec)
    orphan, busy, failed, fresh = sorted(found.new_ids)
    conn = world.conn
    for p in (orphan, busy, failed):
        repo.claim(conn, p)
    repo.transition(conn, orphan, State.CLAIMED, State.DOWNLOADED)
    repo.transition(
        conn, failed, State.CLAIMED, State.FAILED, set_fields={"next_attempt_at": datetime(2999, 1, 1, tzinfo=UTC)}
    )
    # an `ingest process` killed two hours ago left `orphan` downloaded; `busy` is being processed now
    conn.execute("UPDATE ingest.products SET updated_at = now() - interval '2 hours' WHERE id = %s", [orphan])
    conn.commit()
    specs = {world.spec.id: world.spec}

    report = reconcile(world.settings, specs)
    assert report.released_orphans == [orphan]
    assert sorted(report.enqueued) == sorted([orphan, fresh])  # `failed` waits for its retry time
    assert report.requeued_jobs == [] and report.conflicts == 0
    assert states(world) == {orphan: "discovered", busy: "claimed", failed: "failed", fresh: "discovered"}
    assert repo.events_of(conn, orphan)[-1]["message"].startswith("released: orphan, downloaded since ")

    again = reconcile(world.settings, specs)
    assert again.enqueued == [] and again.released_orphans == []  # every due product already has a job
    with ProductQueue(world.settings) as queue:
        assert queue.depth() == {"todo": 2} and queue.active() == {orphan, fresh}

    conn.execute("UPDATE ingest.products SET next_attempt_at = now() - interval '1 s' WHERE id = %s", [failed])
    conn.commit()
    assert reconcile(world.settings, specs).enqueued == [failed]  # its retry is due now
    tight = world.settings.model_copy(update={"orphan_after_s": 0.001})
    assert reconcile(tight, specs).released_orphans == [busy]  # in flight with no job, past the limit


# ----------------------------------------------------------------------------- two scheduler processes

INTERVAL_S = 2
HARVEST_LINE = re.compile(r"harvest (\S+): (\d+) seen, (\d+) new, (\d+) enqueued")


def test_one_of_two_schedulers_leads_and_the_standby_takes_over_when_it_dies(
    make_world: WorldFactory, stack: Stack, procs: Procs
) -> None:
    world = make_world("S2_MSI_L2A", count=2, size=60)
    text = (ROOT / "collections" / "sentinel-2-l2a.yaml").read_text()
    fast = re.sub(r"(?m)^  interval: .*$", f"  interval: {INTERVAL_S}s", text)
    env = world.cli_env(stack, fast, INGEST_LEADER_POLL_S="1", INGEST_RECONCILE_INTERVAL_S="30")

    def harvests(proc: subprocess.Popen[bytes]) -> list[tuple[str, ...]]:
        return HARVEST_LINE.findall(procs.output(proc))

    a = procs.start("scheduler-a", "scheduler", env=env)
    wait_for(lambda: "leader:" in procs.output(a), 30, "scheduler A to lead")
    b = procs.start("scheduler-b", "scheduler", env=env)
    wait_for(lambda: "standby: another scheduler leads" in procs.output(b), 30, "scheduler B to stand by")
    wait_for(lambda: len(harvests(a)) >= 3, 30, "three harvests by A")
    assert harvests(a)[0] == (world.spec.id, "2", "2", "2")  # both found, both queued
    assert all(h[2:] == ("0", "0") for h in harvests(a)[1:])  # then nothing new, nothing queued twice
    assert harvests(b) == [] and "leader:" not in procs.output(b)
    assert procs.output(b).count("standby:") == 1  # said once, not at every poll

    a.kill()  # SIGKILL: the lock goes with its session, no release
    killed = time.monotonic()
    a.wait(timeout=10)
    wait_for(lambda: "leader:" in procs.output(b), 1 + 4, "B to take over within leader_poll_s + 4 s")
    took_over = time.monotonic() - killed
    wait_for(lambda: len(harvests(b)) >= 1, INTERVAL_S + 10, "a harvest by B")
    assert harvests(b)[0][0] == world.spec.id

    b.send_signal(signal.SIGTERM)
    assert b.wait(timeout=30) == 0
    out = procs.output(b)
    assert "SIGTERM received" in out and "scheduler jobs stopped" in out and out.rstrip().endswith("stopped")
    with LeaderLock(world.dsn, LOCK_NAME) as lock:
        assert lock.try_acquire()  # B released it on its way out
    last = one(world.conn, "SELECT last_harvest_at FROM ingest.watermarks WHERE collection = %s", world.spec.id)
    assert last is not None
    print(f"takeover {took_over:.1f} s after kill -9")
    assert timedelta(seconds=took_over) < timedelta(seconds=5)
