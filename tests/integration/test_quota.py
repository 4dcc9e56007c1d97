"""Provider limits held by the fleet: real OS processes contending through a real PostgreSQL.

Every test has a database of its own (advisory locks are per database, so slots never mix between
tests). The contending processes are ``python -c`` children running ``CHILD`` below: they import the
package as a worker would and report what they did as JSON lines in a file.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import psycopg
import pytest
from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext
from sqlalchemy import create_engine

import ingest.quota.tables  # noqa: F401 - the table joins the schema's metadata for the drift check
from ingest.errors import DatabaseUnavailable
from ingest.quota import LimitsConfig, PausePolicy, ProviderPaused, Quota, SlotWaitTimeout, WaitCancelled
from ingest.quota import metrics as qmetrics
from ingest.state import migrations
from ingest.state.db import sqlalchemy_url
from ingest.state.tables import SCHEMA, metadata
from tests.conftest import ROOT

PROVIDER = "cop_dataspace"

# A worker-like child: ``python -c CHILD '<json args>'``. Modes:
#   slots: wait for the go file, then ``rounds`` times hold a slot for ``hold_s`` then pause ``gap_s``,
#          logging each interval
#   hold:  take one slot, say "held" on stdout, sleep (to be killed)
#   pause: record one pause and exit
#   rate:  call before_request for ``seconds``, logging the time of each return
CHILD = r"""
import json, sys, time
from pathlib import Path
from ingest.quota import LimitsConfig, Quota
a = json.loads(sys.argv[1])
config = LimitsConfig(max_downloads=a["limit"], max_requests_per_s=a.get("rate", 0), poll_s=0.05, slot_wait_s=60)
quota = Quota(a["dsn"], config)
limits = quota.provider(a["provider"])
log = open(a["log"], "a") if "log" in a else None
def note(**kw):
    log.write(json.dumps(kw) + "\n"); log.flush()
if a["mode"] == "slots":
    quota.status()  # connect before the race
    Path(a["log"] + ".ready").touch()
    while not Path(a["go"]).exists():
        time.sleep(0.01)
    for _ in range(a["rounds"]):
        with limits.download_slot("p") as slot:
            start = time.monotonic()
            time.sleep(a["hold_s"])
            note(start=start, end=time.monotonic(), waited=slot.waited_s, index=slot.index)
        time.sleep(a["gap_s"])  # the product's conversion: others may take the slot meanwhile
elif a["mode"] == "hold":
    with limits.download_slot("p"):
        print("held", flush=True)
        time.sleep(120)
elif a["mode"] == "pause":
    p = limits.pause(429, a["retry_after_s"], "Too Many Requests")
    print(json.dumps({"until": p.until.isoformat(), "consecutive": p.consecutive}), flush=True)
elif a["mode"] == "rate":
    limits.before_request()  # connected, and the first reservation made
    Path(a["log"] + ".ready").touch()
    while not Path(a["go"]).exists():
        time.sleep(0.005)
    end = time.monotonic() + a["seconds"]
    while time.monotonic() < end:
        limits.before_request()
        note(t=time.monotonic())
"""


@pytest.fixture
def db(empty_db: str) -> str:
    migrations.upgrade(empty_db)
    return empty_db


class Children:
    """Child processes of one test, SIGKILLed at the end if still running."""

    def __init__(self, dsn: str, tmp: Path) -> None:
        self.dsn, self.tmp = dsn, tmp
        self.procs: list[subprocess.Popen[str]] = []

    def start(self, mode: str, **args: Any) -> subprocess.Popen[str]:
        env = {k: v for k, v in os.environ.items() if not k.startswith("INGEST_")}
        payload = json.dumps({"dsn": self.dsn, "provider": PROVIDER, "mode": mode, **args})
        proc = subprocess.Popen(
            [sys.executable, "-c", CHILD, payload],
            cwd=ROOT,
            env=env,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        self.procs.append(proc)
        return proc

    def wait_ready(self, logs: list[Path], timeout: float = 30) -> None:
        deadline = time.monotonic() + timeout
        while not all(Path(f"{p}.ready").exists() for p in logs):
            for proc in self.procs:
                assert proc.poll() is None, proc.communicate()[1]
            assert time.monotonic() < deadline, "children not ready"
            time.sleep(0.02)

    def finish(self, timeout: float = 60) -> None:
        for proc in self.procs:
            _, err = proc.communicate(timeout=timeout)
            assert proc.returncode == 0, err

    def kill_all(self) -> None:
        for proc in self.procs:
            if proc.poll() is None:
                proc.kill()
            proc.communicate(timeout=30)


@pytest.fixture
def children(db: str, tmp_path: Path) -> Iterator[Children]:
    c = Children(db, tmp_path)
    try:
        yield c
    finally:
        c.kill_all()


def _config(limit: int = 2, rate: float = 0, **kw: Any) -> LimitsConfig:
    return LimitsConfig(max_downloads=limit, max_requests_per_s=rate, poll_s=0.05, **kw)


def _lines(path: Path) -> list[dict[str, Any]]:
    return [json.loads(line) for line in path.read_text().splitlines()]


def _max_overlap(intervals: list[tuple[float, float]]) -> int:
    events = sorted([(s, 1) for s, _ in intervals] + [(e, -1) for _, e in intervals])  # an end before a start
    running = most = 0
    for _, step in events:
        running += step
        most = max(most, running)
    return most


def test_processes_never_hold_more_slots_than_the_limit(children: Children, tmp_path: Path) -> None:
    logs = [tmp_path / f"child-{i}.jsonl" for i in range(5)]
    go = tmp_path / "go"
    for log in logs:
        children.start("slots", limit=2, rounds=4, hold_s=0.15, gap_s=0.1, log=str(log), go=str(go))
    children.wait_ready(logs)
    go.touch()
    children.finish()
    held = [row for log in logs for row in _lines(log)]
    assert len(held) == 20
    assert _max_overlap([(r["start"], r["end"]) for r in held]) == 2  # the limit, reached and never passed
    assert {r["index"] for r in held} == {0, 1}
    assert sum(r["waited"] > 0.05 for r in held) >= 3  # they did contend (5 processes, 2 slots)


def test_threads_of_one_process_share_its_session_and_the_limit(db: str) -> None:
    """Session locks are re-entrant within their session: the process must not hand one slot out twice."""
    intervals: list[tuple[float, float]] = []
    lock = threading.Lock()
    with Quota(db, _config(limit=2)) as quota:
        limits = quota.provider(PROVIDER)

        def work() -> None:
            for _ in range(3):
                with limits.download_slot("p"):
                    start = time.monotonic()
                    time.sleep(0.1)
                    with lock:
                        intervals.append((start, time.monotonic()))

        threads = [threading.Thread(target=work) for _ in range(5)]
        for t in threads:
            t.start()
        for t in threads:
            t.join(timeout=30)
        assert quota.slots.held(PROVIDER) == 0
    assert len(intervals) == 15
    assert _max_overlap(intervals) == 2


def test_a_killed_holder_gives_its_slot_back_by_itself(db: str, children: Children) -> None:
    holder = children.start("hold", limit=1)
    assert holder.stdout is not None
    assert holder.stdout.readline().strip() == "held"
    with Quota(db, _config(limit=1)) as quota:
        limits = quota.provider(PROVIDER)
        assert limits.status().slots_held == 1
        with pytest.raises(SlotWaitTimeout) as busy, limits.download_slot("p", wait_s=0.3):
            pass
        assert busy.value.waited_s >= 0.3 and busy.value.retryable and busy.value.limit == 1
        os.kill(holder.pid, signal.SIGKILL)
        killed = time.monotonic()
        with limits.download_slot("p", wait_s=10) as slot:
            freed_after = time.monotonic() - killed
            assert slot.held and slot.index == 0
            assert limits.status().slots_held == 1  # ours now
        assert freed_after < 3, f"the dead holder's slot came back after {freed_after:.1f} s"
        assert limits.status().slots_held == 0


def test_a_pause_recorded_by_one_process_makes_another_wait(db: str, children: Children) -> None:
    pauser = children.start("pause", limit=2, retry_after_s=1.5)
    out, err = pauser.communicate(timeout=30)
    assert pauser.returncode == 0, err
    assert json.loads(out)["consecutive"] == 1
    with Quota(db, _config(limit=2, rate=100)) as quota:
        limits = quota.provider(PROVIDER)
        # a caller that may not wait that long is told at once, with what it needs to queue the product
        started = time.monotonic()
        with pytest.raises(ProviderPaused) as paused:
            limits.before_request(wait_s=0.2)
        assert time.monotonic() - started < 0.2
        assert paused.value.status == 429 and paused.value.cause == "Too Many Requests"
        assert 0.5 < paused.value.remaining_s <= 1.5 and paused.value.retry_in_s == paused.value.remaining_s
        st = limits.status()
        assert st.paused and st.pause_status == 429 and st.consecutive_pauses == 1 and st.slots_held == 0
        # one that may wait, waits until the pause ends: no slot, no request before
        remaining = limits.current_pause().remaining_s
        with limits.download_slot("p", wait_s=10) as slot:
            assert slot.waited_s >= remaining - 0.05
        assert not limits.current_pause().until
        assert limits.before_request(wait_s=0) < 0.1
        assert not limits.status().paused


def test_pauses_grow_join_and_reset_across_processes(db: str, children: Children) -> None:
    policy = PausePolicy(base_s=0.4, max_s=10, jitter=0)
    with Quota(db, _config(pause=policy)) as a, Quota(db, _config(pause=policy)) as b:
        pa, pb = a.provider(PROVIDER), b.provider(PROVIDER)
        first = pa.pause(503, None, "Service Unavailable")
        assert (first.consecutive, round(first.remaining_s, 1)) == (1, 0.4)
        joined = pb.pause(503, None, "Service Unavailable")  # the same overload seen by another worker
        assert (joined.consecutive, joined.until) == (1, first.until)
        pb.before_request(wait_s=5)  # waits the pause out
        second = pb.pause(429, None, "Too Many Requests")
        assert (second.consecutive, round(second.remaining_s, 1)) == (2, 0.8)
        pa.succeeded()  # during a pause: the count stays
        assert pa.status().consecutive_pauses == 2
        pa.before_request(wait_s=5)
        pa.succeeded()
        assert pb.status().consecutive_pauses == 0
        assert pb.pause(429, None, "Too Many Requests").consecutive == 1  # from the base again
        # what a download stage raises on a 429: the pause recorded, the product to be given back
        refusal = pa.refused(429, 5, "Max session number exceeded", product_id="S2B_X")
        assert isinstance(refusal, ProviderPaused) and refusal.product_id == "S2B_X"
        assert refusal.status == 429 and 4 < refusal.retry_in_s <= 5  # Retry-After honoured
        assert pb.status().pause_cause in ("Max session number exceeded", "Too Many Requests")  # new, or joined


def test_the_rate_limit_holds_across_two_processes(children: Children, tmp_path: Path) -> None:
    rate, seconds = 20.0, 2.5
    logs = [tmp_path / f"rate-{i}.jsonl" for i in range(2)]
    go = tmp_path / "go"
    for log in logs:
        children.start("rate", limit=2, rate=rate, seconds=seconds, log=str(log), go=str(go))
    children.wait_ready(logs)
    go.touch()
    children.finish()
    per_child = [[r["t"] for r in _lines(log)] for log in logs]
    times = sorted(t for ts in per_child for t in ts)
    # The reservations are spaced 1/R apart on the server; the returns carry each sleep's overshoot and
    # a round trip, so two may come closer: every window of one second holds at most R (+2) of them.
    most = max(sum(1 for u in times[i:] if u < t + 1.0) for i, t in enumerate(times))
    assert most <= rate + 2, most
    # and the fleet gets its rate, shared between the processes (each may send one past its end)
    assert rate * seconds * 0.8 <= len(times) <= rate * seconds + 1 + len(logs), len(times)
    assert all(len(ts) >= len(times) * 0.3 for ts in per_child), [len(ts) for ts in per_child]


def test_the_slot_is_released_when_the_block_raises(db: str) -> None:
    gauge = qmetrics.DOWNLOADS_IN_FLIGHT.labels(PROVIDER)
    before = gauge._value.get()
    with Quota(db, _config(limit=1)) as quota, Quota(db, _config(limit=1)) as other:
        limits = quota.provider(PROVIDER)
        with pytest.raises(RuntimeError, match="download broke"), limits.download_slot("p") as slot:
            assert gauge._value.get() == before + 1
            raise RuntimeError("download broke")
        assert not slot.held
        assert gauge._value.get() == before
        assert limits.status().slots_held == 0
        with other.provider(PROVIDER).download_slot("q", wait_s=0) as theirs:  # free at once, for anyone
            assert theirs.waited_s < 0.1


def test_a_lost_session_takes_its_slots_back(db: str) -> None:
    """The server ends the quota session (a restart, pg_terminate_backend): the slots come back with
    the next connection, so the fleet does not run more downloads than it may."""
    with Quota(db, _config(limit=2)) as quota, Quota(db, _config(limit=2)) as other:
        limits = quota.provider(PROVIDER)
        with limits.download_slot("a") as first:
            with psycopg.connect(db, autocommit=True) as admin:
                admin.execute("SELECT pg_terminate_backend(%s)", [quota.session.backend_pid])
            with limits.download_slot("b") as second:  # reconnects, takes `first` again, then one more
                assert first.held and second.held and {first.index, second.index} == {0, 1}
                taken_elsewhere = other.provider(PROVIDER)
                with pytest.raises(SlotWaitTimeout), taken_elsewhere.download_slot("c", wait_s=0.2):
                    pass
        assert limits.status().slots_held == 0


def test_a_stopping_process_stops_waiting(db: str) -> None:
    with Quota(db, _config(limit=1)) as quota, Quota(db, _config(limit=1)) as other:
        waiter = other.provider(PROVIDER)
        deadline = time.monotonic() + 0.3

        def stopping() -> bool:
            return time.monotonic() > deadline

        with (
            quota.provider(PROVIDER).download_slot("a"),
            pytest.raises(WaitCancelled),
            waiter.download_slot("b", wait_s=30, should_stop=stopping),
        ):
            pass
        assert time.monotonic() - deadline < 1


def test_status_lists_configured_and_known_providers(db: str) -> None:
    with Quota(db, _config(limit=3)) as quota:
        quota.provider("creodias").pause(429, 60, "Max session number exceeded")
        with quota.provider(PROVIDER).download_slot("p"):
            rows = {s.provider: s for s in quota.status(["local"])}
    assert set(rows) == {"local", "creodias", PROVIDER}
    assert (rows[PROVIDER].slots_held, rows[PROVIDER].slots_limit, rows[PROVIDER].paused) == (1, 3, False)
    c = rows["creodias"].as_dict()
    assert c["paused"] and c["pause_status"] == 429 and c["consecutive_pauses"] == 1 and c["slots_held"] == 0
    assert c["pause_cause"] == "Max session number exceeded" and 59 <= c["pause_remaining_s"] <= 60
    assert json.dumps(c)  # JSON-ready


def test_an_unreachable_database_is_a_typed_error(stack_env: dict[str, str]) -> None:
    dead = "postgresql://nobody:secret@127.0.0.1:1/x"
    with (
        Quota(dead, _config(), connect_timeout_s=1) as quota,
        pytest.raises(DatabaseUnavailable) as exc,
        quota.provider(PROVIDER).download_slot("p", wait_s=0),
    ):
        pass
    assert "secret" not in str(exc.value)


def test_migration_creates_what_the_models_say_and_goes_back(db: str) -> None:
    engine = create_engine(sqlalchemy_url(dsn=db))
    try:
        with engine.connect() as conn:
            ctx = MigrationContext.configure(
                conn,
                opts={
                    "include_schemas": True,
                    "include_name": lambda name, type_, parent: name == SCHEMA if type_ == "schema" else True,
                    "compare_type": True,
                    "compare_server_default": True,
                    "version_table_schema": SCHEMA,
                },
            )
            assert list(compare_metadata(ctx, metadata)) == []
    finally:
        engine.dispose()
    migrations.downgrade(db, "0004")
    with psycopg.connect(db) as conn:
        assert conn.execute("SELECT to_regclass('ingest.provider_limits')").fetchone() == (None,)
        assert conn.execute("SELECT to_regproc('ingest.take_provider_slot')").fetchone() == (None,)
    migrations.upgrade(db)
