"""A PostgreSQL restart under every part of the daemon: the pipeline in each stage, real worker
processes, the scheduler's leader lock, the reconciler and ``ingest serve``.

Every test here runs on a cluster of its own (``tests.pg_restart``): an immediate restart kills
every session of the cluster, which would break the other modules' fixtures. The times from the
server accepting connections again to the product's next recorded change are printed (``-s``).
"""

from __future__ import annotations

import json
import logging
import os
import re
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import psycopg
import pytest
import requests
from pydantic import SecretStr

from ingest import stack as st
from ingest.adapters import pgstac
from ingest.adapters.queue import ProductQueue
from ingest.app import App
from ingest.daemon import scheduler
from ingest.daemon.leader import LeaderLock, current_holder
from ingest.errors import DatabaseUnavailable, StateConflict
from ingest.harvest import harvest
from ingest.settings import Settings
from ingest.stages import convert
from ingest.stages.acquire import acquire
from ingest.stages.upload import upload_product
from ingest.state import repo
from ingest.state.db import Database
from ingest.state.machine import State
from tests import pg_restart
from tests.conftest import ROOT, Stack
from tests.integration.api import api_database, api_server, publish
from tests.integration.conftest import World, WorldFactory
from tests.integration.test_workers import Workers, wait_for

CHAIN = ["discovered", "claimed", "downloaded", "converted", "uploaded", "catalogued"]
HOLD_S = 1.0  # how long the server stays down in an outage


@pytest.fixture(autouse=True)
def server_up(cfg: st.StackConfig) -> Iterator[None]:
    """A test that failed mid-outage leaves the next one a running server."""
    yield
    if st.status(cfg).postgres_pid is None:
        pg_restart.start(cfg)


def events(dsn: str, product_id: str) -> list[dict[str, Any]]:
    with psycopg.connect(dsn) as conn:
        return repo.events_of(conn, product_id)


def product(dsn: str, product_id: str) -> dict[str, Any]:
    with psycopg.connect(dsn) as conn:
        row = repo.get_product(conn, product_id)
    assert row is not None
    return row


def after(rows: list[dict[str, Any]], t: float) -> dict[str, Any]:
    """The first event recorded after wall-clock time ``t``."""
    return next(e for e in rows if e["at"].timestamp() > t)


def figure(what: str, back: float, event: dict[str, Any]) -> float:
    seconds: float = event["at"].timestamp() - back
    print(f"\n{what}: database back -> {event['to_state']} recorded after {seconds:.2f} s")
    return seconds


def app_of(world: World, stack: Stack) -> App:
    """An App (what the queue's task runs) on the world's database, bucket, provider and collection."""
    world.cli_env(stack)  # writes the world's collection file where cli_env's processes read it
    return App(world.settings.model_copy(update={"collections_dir": world.settings.work_dir.parent / "collections"}))


def assert_catalogued_once(world: World, product_id: str, chain: list[str]) -> None:
    row = product(world.dsn, product_id)
    assert row["state"] == "catalogued", row
    assert pgstac.item_ids(world.dsn, world.spec.id) == [row["item_id"]]  # one item, no duplicate
    assert [e["to_state"] for e in events(world.dsn, product_id)] == chain


# ----------------------------------------------------------------------------- the pipeline, stage by stage


def _after_real(real: Callable[..., Any], outage: pg_restart.Outage) -> Callable[..., Any]:
    """``real``, then the outage: the state change that ends the stage meets it."""

    def wrapped(*args: Any, **kwargs: Any) -> Any:
        out = real(*args, **kwargs)
        outage.begin()
        return out

    return wrapped


def _before_real(real: Callable[..., Any], outage: pg_restart.Outage) -> Callable[..., Any]:
    def wrapped(*args: Any, **kwargs: Any) -> Any:
        outage.begin()
        return real(*args, **kwargs)

    return wrapped


@pytest.mark.parametrize("stage", ["download", "convert", "upload"])
def test_a_restart_in_a_stage_costs_a_retried_state_change_not_the_product(
    stage: str, make_world: WorldFactory, stack: Stack, cfg: st.StackConfig, monkeypatch: pytest.MonkeyPatch
) -> None:
    world = make_world("S2_MSI_L2A", count=1, size=60)
    pid = harvest(world.conn, world.provider, world.spec).new_ids[0]
    world.conn.commit()
    outage = pg_restart.Outage(cfg, HOLD_S)
    if stage == "download":
        monkeypatch.setattr("ingest.pipeline.acquire", _after_real(acquire, outage))
    elif stage == "convert":
        monkeypatch.setattr(convert, "convert_product", _after_real(convert.convert_product, outage))
    else:
        monkeypatch.setattr("ingest.pipeline.upload_product", _after_real(upload_product, outage))

    out = app_of(world, stack).process(pid)
    back = outage.end()

    assert out.state is State.CATALOGUED and out.error is None, out
    world.conn = psycopg.connect(world.dsn)  # the fixture's connection died with the server
    assert_catalogued_once(world, pid, CHAIN)  # the change was retried once, not twice, and nothing failed
    seconds = figure(f"restart in {stage}", back, after(events(world.dsn, pid), outage.down))
    assert seconds < 3.0  # within the backoff's longest step after the server is back


def test_a_restart_in_the_load_records_a_retryable_failure_then_the_retry_catalogues_once(
    make_world: WorldFactory, stack: Stack, cfg: st.StackConfig, monkeypatch: pytest.MonkeyPatch,
    caplog: pytest.LogCaptureFixture,
) -> None:  # fmt: skip
    """Loading into pgstac needs the database itself: that stage fails like any outage, and its
    failure is recorded (retryable, with the cause) once the server answers again."""
    world = make_world("S2_MSI_L2A", count=1, size=60)
    pid = harvest(world.conn, world.provider, world.spec).new_ids[0]
    world.conn.commit()
    outage = pg_restart.Outage(cfg, HOLD_S)
    real_load = pgstac.load_items
    monkeypatch.setattr(pgstac, "load_items", _before_real(real_load, outage))
    app = app_of(world, stack)

    with caplog.at_level(logging.WARNING, logger="ingest.pipeline"):
        out = app.process(pid)
    back = outage.end()

    assert out.state is State.FAILED and out.next_attempt_at is not None, out
    assert out.error is not None and "unreachable" in out.error, out.error
    failed = after(events(world.dsn, pid), outage.down)
    assert failed["to_state"] == "failed" and failed["details"]["retry"] is True, failed
    figure("restart in load", back, failed)
    (line,) = [r for r in caplog.records if r.getMessage().startswith(f"{pid}: failed in catalogue")]
    assert line.__dict__["stage"] == "catalogue" and line.__dict__["cause"] == "DatabaseUnavailable"
    password = world.settings.database_url.get_secret_value().split(":")[2].split("@")[0]  # type: ignore[union-attr]
    assert password not in caplog.text

    monkeypatch.setattr(pgstac, "load_items", real_load)
    assert app.process(pid).state is State.CATALOGUED  # the retry (the job enqueues it for next_attempt_at)
    assert_catalogued_once(world, pid, [*CHAIN[:5], "failed", *CHAIN[1:]])


def test_a_database_away_longer_than_the_bound_is_waited_for_to_record_the_failure(
    make_world: WorldFactory, stack: Stack, cfg: st.StackConfig, monkeypatch: pytest.MonkeyPatch,
    caplog: pytest.LogCaptureFixture,
) -> None:  # fmt: skip
    """Away longer than the state change's bound (one heartbeat interval): the run gives the product
    up and records it failed ("database connection lost") as soon as the server answers."""
    world = make_world("S2_MSI_L2A", count=1, size=60, worker_heartbeat_s=0.5, stall_timeout_s=30)
    pid = harvest(world.conn, world.provider, world.spec).new_ids[0]
    world.conn.commit()
    outage = pg_restart.Outage(cfg, 3.0)
    monkeypatch.setattr(convert, "convert_product", _after_real(convert.convert_product, outage))

    with caplog.at_level(logging.WARNING, logger="ingest.pipeline"):
        out = app_of(world, stack).process(pid)
    back = outage.end()

    assert out.state is State.FAILED and out.next_attempt_at is not None, out
    assert out.error is not None and out.error.startswith("database connection lost: "), out.error
    failed = after(events(world.dsn, pid), outage.down)
    assert failed["from_state"] == "downloaded" and failed["to_state"] == "failed", failed
    figure("away 3 s (bound 0.5 s) after convert", back, failed)
    assert any(r.getMessage().startswith(f"{pid}: failed in convert: database connection lost") for r in caplog.records)


def test_beyond_every_bound_the_product_is_left_for_the_reconciler_with_a_line_saying_so(
    make_world: WorldFactory, stack: Stack, cfg: st.StackConfig, monkeypatch: pytest.MonkeyPatch,
    caplog: pytest.LogCaptureFixture,
) -> None:  # fmt: skip
    world = make_world("S2_MSI_L2A", count=1, size=60, worker_heartbeat_s=0.3, stall_timeout_s=0.6)
    pid = harvest(world.conn, world.provider, world.spec).new_ids[0]
    world.conn.commit()
    outage = pg_restart.Outage(cfg, 3.0)
    monkeypatch.setattr("ingest.pipeline.upload_product", _after_real(upload_product, outage))

    with caplog.at_level(logging.ERROR, logger="ingest.pipeline"):
        out = app_of(world, stack).process(pid)
    outage.end()

    assert out.left and out.state is State.CONVERTED, out
    (line,) = [r for r in caplog.records if r.__dict__.get("outcome") == "left"]
    assert line.getMessage().startswith(
        f"{pid}: left in converted for the reconciler (upload): database connection lost"
    )
    assert product(world.dsn, pid)["state"] == "converted"  # in flight, no job: the reconciler's orphan


# ----------------------------------------------------------------------------- a lost COMMIT


def _lose_the_answer(dsn: str, conn: psycopg.Connection) -> None:
    """The change committed, its answer is lost: the session dies before the client hears of it."""
    with psycopg.connect(dsn, autocommit=True) as killer:
        killer.execute("SELECT pg_terminate_backend(%s)", [conn.info.backend_pid])
    conn.execute("SELECT 1")  # raises: the connection is gone


def test_a_change_whose_commit_answer_was_lost_is_recognised_not_made_twice(migrated_db: str) -> None:
    with psycopg.connect(migrated_db, autocommit=True) as conn:
        (pid,) = repo.insert_discovered(
            conn, [repo.DiscoveredProduct("P1", "c", "local", None, None, None, None, None, None)]
        )
    db = Database(migrated_db, retry_for_s=5.0)
    calls: list[bool] = []

    def claim(c: psycopg.Connection, again: bool) -> dict[str, Any]:
        calls.append(again)
        row = repo.claim(c, pid, resumed=again)
        if not again:
            _lose_the_answer(migrated_db, c)
        return row

    def download(c: psycopg.Connection, again: bool) -> None:
        calls.append(again)
        repo.transition(c, pid, State.CLAIMED, State.DOWNLOADED, resumed=again)
        if not again:
            _lose_the_answer(migrated_db, c)

    with db:
        assert db.run(claim)["state"] == "claimed"
        db.run(download)
    assert calls == [False, True, False, True]
    history = [(e["from_state"], e["to_state"]) for e in events(migrated_db, pid)]
    assert history == [(None, "discovered"), ("discovered", "claimed"), ("claimed", "downloaded")]  # once each
    assert product(migrated_db, pid)["attempts"] == 1


def test_a_resumed_change_never_takes_another_process_s_change_for_its_own(
    migrated_db: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    with psycopg.connect(migrated_db, autocommit=True) as conn:
        (pid,) = repo.insert_discovered(
            conn, [repo.DiscoveredProduct("P2", "c", "local", None, None, None, None, None, None)]
        )
        with monkeypatch.context() as m:
            m.setattr(repo, "WORKER", "elsewhere:1")
            repo.claim(conn, pid)  # another worker holds it
        with pytest.raises(StateConflict):
            repo.claim(conn, pid, resumed=True)
        repo.transition(conn, pid, State.CLAIMED, State.DOWNLOADED)  # (as if it were ours from here on)
        with pytest.raises(StateConflict):  # not resumed: an applied change is a conflict, as ever
            repo.transition(conn, pid, State.CLAIMED, State.DOWNLOADED)
        with pytest.raises(StateConflict):  # resumed, but to another state than the one it is in
            repo.transition(conn, pid, State.CLAIMED, State.FAILED, resumed=True)
        assert [e["to_state"] for e in repo.events_of(conn, pid)] == ["discovered", "claimed", "downloaded"]


def test_a_database_away_longer_than_the_bound_raises_one_scrubbed_line(migrated_db: str, cfg: st.StackConfig) -> None:
    db = Database(migrated_db, retry_for_s=0.5)
    pg_restart.stop(cfg)
    try:
        started = time.monotonic()
        with pytest.raises(DatabaseUnavailable) as raised:
            db.run(lambda c, _: c.execute("SELECT 1"))
        assert time.monotonic() - started < 2.0
        said = raised.value.message
        assert re.match(r"database connection lost: database 127\.0\.0\.1:\d+/t_\w+ unreachable: .*; not back", said)
        assert "\n" not in said and migrated_db.split(":")[2].split("@")[0] not in said
    finally:
        pg_restart.start(cfg)


# ----------------------------------------------------------------------------- real worker processes


def job_rows(dsn: str) -> list[tuple[str, str]]:
    with psycopg.connect(dsn) as conn:
        return [(r[0], r[1]) for r in conn.execute("SELECT args->>'product_id', status::text FROM procrastinate_jobs")]


def test_a_worker_process_rides_through_an_immediate_restart_mid_download(
    make_world: WorldFactory, stack: Stack, cfg: st.StackConfig, tmp_path: Path
) -> None:
    """``pg_ctl -m immediate restart`` while a real ``ingest worker`` downloads: the worker keeps
    running, the product goes on to ``catalogued`` once, and the worker takes the next job."""
    world = make_world("S2_MSI_L2A", count=2, size=60)
    first, second = harvest(world.conn, world.provider, world.spec).new_ids
    world.conn.commit()
    requests.patch(world.server.url + "/_faults", json={"throttle_bps": 80_000}, timeout=5).raise_for_status()
    with ProductQueue(world.settings) as queue:
        queue.enqueue([first])
    pool = Workers(world, stack, tmp_path)
    (proc,) = pool.start(1, INGEST_WORKER_HEARTBEAT_S="2")
    try:
        wait_for(lambda: product(world.dsn, first)["state"] == "claimed", 60, "the first product downloading", 0.05)
        time.sleep(0.3)
        down = time.time()
        back = pg_restart.restart(cfg)
        assert product(world.dsn, first)["state"] == "claimed"  # the restart fell inside the download
        requests.delete(world.server.url + "/_faults", timeout=5).raise_for_status()
        wait_for(lambda: product(world.dsn, first)["state"] == "catalogued", 60, "the first product catalogued")
        print(f"\nworker process: pg_ctl -m immediate restart took {back - down:.2f} s")
        figure("worker process, restart in download (which ran on)", back, after(events(world.dsn, first), down))
        with ProductQueue(world.settings) as queue:
            queue.enqueue([second])
        wait_for(lambda: product(world.dsn, second)["state"] == "catalogued", 60, "the next job taken")
        assert proc.poll() is None, "the worker ended"
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(timeout=60) == 0
    finally:
        pool.stop_all()
    out = (tmp_path / "worker-0.log").read_text()
    assert "ended with status: Error" not in out, out[-3000:]
    assert sorted(job_rows(world.dsn)) == sorted([(first, "succeeded"), (second, "succeeded")])
    assert [e["to_state"] for e in events(world.dsn, first)] == CHAIN
    assert sorted(pgstac.item_ids(world.dsn, world.spec.id)) == sorted(
        product(world.dsn, p)["item_id"] for p in (first, second)
    )


OUTAGE = re.compile(r"database (connection lost: |\S+ unreachable: )")


def test_a_worker_process_records_the_failure_of_a_product_stranded_by_a_longer_outage_then_retries_it(
    make_world: WorldFactory, stack: Stack, cfg: st.StackConfig, tmp_path: Path
) -> None:
    """Down longer than the state change's bound (INGEST_WORKER_HEARTBEAT_S=1) as the download ends:
    the product is recorded failed with the cause once the server is back, its job enqueues the retry,
    the retry catalogues it once. The job's line names the product, the stage and the cause."""
    world = make_world("S2_MSI_L2A", count=1, size=60)
    (pid,) = harvest(world.conn, world.provider, world.spec).new_ids
    world.conn.commit()
    # The download waits before its last piece until the server is down: it ends in the outage (held
    # 5 s, bound 1 s) however long the stop takes on a loaded machine.
    faults = world.server.url + "/_faults"
    requests.patch(faults, json={"hold_downloads": True}, timeout=5).raise_for_status()
    with ProductQueue(world.settings) as queue:
        queue.enqueue([pid])
    pool = Workers(world, stack, tmp_path)
    (proc,) = pool.start(1, INGEST_WORKER_HEARTBEAT_S="1", INGEST_RETRY_BASE_DELAY_S="1")
    outage = pg_restart.Outage(cfg, 5.0)
    try:
        wait_for(lambda: product(world.dsn, pid)["state"] == "claimed", 60, "the product downloading", 0.05)
        outage.begin()
        requests.patch(faults, json={"hold_downloads": False}, timeout=5).raise_for_status()
        back = outage.end()
        wait_for(lambda: product(world.dsn, pid)["state"] == "catalogued", 60, "the retry catalogued")
        assert proc.poll() is None, "the worker ended"
    finally:
        pool.stop_all()
    history = events(world.dsn, pid)
    failed = after(history, outage.down)
    assert (failed["from_state"], failed["to_state"]) == ("claimed", "failed"), failed
    # the cause as whichever connection met the outage first says it: the state change's ("connection
    # lost") or the download slot's session reconnecting ("unreachable")
    assert OUTAGE.match(failed["message"]), failed["message"]
    figure("worker process, away 5 s (bound 1 s) in download", back, failed)
    assert [e["to_state"] for e in history] == ["discovered", "claimed", "failed", *CHAIN[1:]]
    assert pgstac.item_ids(world.dsn, world.spec.id) == [product(world.dsn, pid)["item_id"]]
    lines = [json.loads(x) for x in (tmp_path / "worker-0.log").read_text().splitlines() if x.startswith("{")]
    (line,) = [x for x in lines if x.get("product_id") == pid and x.get("outcome") == "retry"]
    assert line["stage"] == "download" and OUTAGE.match(line["error"]), line
    password = stack.dsn.split(":")[2].split("@")[0]
    assert password not in (tmp_path / "worker-0.log").read_text()


# ----------------------------------------------------------------------------- scheduler and reconciler


def test_the_leader_notices_a_restart_and_exactly_one_scheduler_leads_after_it(
    migrated_db: str, cfg: st.StackConfig, stack: Stack, tmp_path: Path
) -> None:
    collections = tmp_path / "collections"
    collections.mkdir()
    spec = (ROOT / "collections" / "sentinel-2-l2a.yaml").read_text()
    (collections / "sentinel-2-l2a.yaml").write_text(
        spec.replace("harvest:\n  enabled: true", "harvest:\n  enabled: false")
    )
    env = {
        **{k: v for k, v in os.environ.items() if not k.startswith("INGEST_")},
        **stack.env,
        "INGEST_DATABASE_URL": migrated_db,
        "INGEST_COLLECTIONS_DIR": str(collections),
        "INGEST_LEADER_POLL_S": "0.5",
        "INGEST_RECONCILE_INTERVAL_S": "1",
        "INGEST_STACK_DIR": str(tmp_path / "no-stack"),
    }
    logs = [tmp_path / f"scheduler-{i}.log" for i in range(2)]
    procs = []
    for log in logs:
        with log.open("wb") as f:
            procs.append(subprocess.Popen(
                [sys.executable, "-m", "ingest", "--text-logs", "scheduler"], env=env, cwd=ROOT, stdout=f,
                stderr=subprocess.STDOUT,
            ))  # fmt: skip

    def leads() -> bool:
        with psycopg.connect(migrated_db, autocommit=True) as conn:
            return current_holder(conn, scheduler.LOCK_NAME) is not None

    def open_terms() -> list[int]:  # per process: terms begun minus terms ended
        ends = ("back to standby", "giving the lead up")
        return [t.count(" leads (lock session") - sum(map(t.count, ends)) for t in (p.read_text() for p in logs)]

    try:
        wait_for(lambda: leads() and sum(open_terms()) == 1, 30, "a leader")
        leader = open_terms().index(1)
        back = pg_restart.restart(cfg)
        try:
            wait_for(lambda: "back to standby" in logs[leader].read_text(), 20, "the leader to notice")
        except AssertionError as exc:
            raise AssertionError(f"{exc}; its log ends:\n{logs[leader].read_text()[-3000:]}") from None
        wait_for(lambda: leads() and sum(open_terms()) == 1, 15, "a leader again")
        print(f"\nscheduler: a leader again {time.time() - back:.2f} s after the database is back")
        time.sleep(2)  # several polls and reconcile intervals
        assert all(p.poll() is None for p in procs)
        assert sorted(open_terms()) == [0, 1]  # exactly one leads
        now_leading = logs[open_terms().index(1)].read_text()
        assert "reconcile: " in now_leading.rsplit(" leads (lock session", 1)[1]  # its passes run
    finally:
        for p in procs:
            p.send_signal(signal.SIGTERM)
        codes = [p.wait(timeout=30) for p in procs]
    assert codes == [0, 0], [p.read_text()[-2000:] for p in logs]


def test_a_job_does_not_start_once_the_lock_session_is_gone(migrated_db: str, caplog: pytest.LogCaptureFixture) -> None:
    settings = Settings(database_url=SecretStr(migrated_db), _env_file=None)  # type: ignore[call-arg]
    ran: list[str] = []
    job = scheduler.PlannedJob(
        id="probe", kind="reconcile", trigger="interval", trigger_args={"seconds": 1.0}, func=lambda: ran.append("x")
    )
    with LeaderLock(migrated_db, "probe-lock") as lock:
        assert lock.try_acquire()
        scheduler._guarded(job, settings, lock.still_held)()
        with psycopg.connect(migrated_db, autocommit=True) as conn:
            conn.execute("SELECT pg_terminate_backend(%s)", [lock.backend_pid])
        with caplog.at_level(logging.WARNING, logger="ingest.daemon.scheduler"):
            scheduler._guarded(job, settings, lock.still_held)()
    assert ran == ["x"]
    assert "probe not run: leadership lost" in caplog.text


def test_a_reconcile_pass_without_the_database_is_one_line_and_the_next_pass_runs(
    migrated_db: str, cfg: st.StackConfig, caplog: pytest.LogCaptureFixture
) -> None:
    settings = Settings(database_url=SecretStr(migrated_db), _env_file=None)  # type: ignore[call-arg]
    job = next(j for j in scheduler.jobs_for({}, settings) if j.kind == "reconcile")
    run = scheduler._guarded(job, settings, lambda: True)
    pg_restart.stop(cfg)
    try:
        with caplog.at_level(logging.INFO, logger="ingest"):
            run()
    finally:
        pg_restart.start(cfg)
    (failed,) = [r for r in caplog.records if r.getMessage().startswith("reconcile failed: ")]
    assert "unreachable" in failed.getMessage() and migrated_db.split(":")[2].split("@")[0] not in caplog.text
    caplog.clear()
    with caplog.at_level(logging.INFO, logger="ingest"):
        run()
    assert any(r.getMessage().startswith("reconcile: ") for r in caplog.records), caplog.text


# ----------------------------------------------------------------------------- the STAC API


def test_serve_answers_503_while_the_database_is_away_and_200_soon_after(
    stack: Stack, cfg: st.StackConfig, tmp_path: Path
) -> None:
    with api_database(stack, st.PG_DATABASE) as db:
        publish(db.admin_dsn, "restart-test")
        with api_server(db.reader_dsn, tmp_path) as server:
            url = server.url + "/collections/restart-test"
            assert requests.get(url, timeout=10).status_code == 200
            outage = pg_restart.Outage(cfg, 2.0)
            outage.begin()
            seen: list[tuple[float, int, str | None]] = []
            deadline = time.monotonic() + 40
            while time.monotonic() < deadline:
                answer = requests.get(url, timeout=20)
                seen.append((time.time(), answer.status_code, answer.headers.get("Retry-After")))
                if outage.back and answer.status_code == 200:
                    break
                time.sleep(0.1)
            back = outage.end()
            statuses = {s for _, s, _ in seen}
            assert statuses <= {200, 503}, seen
            assert any(s == 503 and ra == "5" for t, s, ra in seen if t < back), seen  # away: 503, Retry-After
            first_ok = next(t for t, s, _ in seen if s == 200 and t >= back)
            refused = sum(s == 503 for _, s, _ in seen)
            print(f"\nserve: database back -> 200 after {first_ok - back:.2f} s ({refused} answers 503 before)")
            assert first_ok - back < 5.0, seen
            assert all(requests.get(url, timeout=10).status_code == 200 for _ in range(10))  # no stale connection left
            assert server.proc.poll() is None
