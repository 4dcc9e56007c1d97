"""Chaos: real ``ingest worker`` and ``ingest scheduler`` processes catalogue a collection while
workers and schedulers are killed with ``kill -9`` (and restarted, as a supervisor would), PostgreSQL
is restarted in immediate mode and the S3 server (SeaweedFS) is killed and started again, at random
times from a seeded RNG. Then the end state is checked item by item.

Linux only (process trees are read from /proc, as ``tests.proctree`` does). Runs on a stack of its
own (``tests.pg_restart``): the restarts would break other modules' fixtures.
The environment sizes it (``scripts/chaos.sh`` sets these for a longer run):

* ``CHAOS_SEED`` (default: random, printed), ``CHAOS_PRODUCTS`` (12), ``CHAOS_WORKER_KILLS`` (3),
  ``CHAOS_SCHEDULER_KILLS`` (2), ``CHAOS_PG_RESTARTS`` (1), ``CHAOS_S3_KILLS`` (1),
  ``CHAOS_WINDOW_S`` (seconds over which the faults are spread, 20), ``CHAOS_SETTLE_S`` (bound on
  the wait for every product to be catalogued after the last fault, 90).

The seed fixes the plan (what strikes, when, counted from the first claim) and the draws that pick
each kill's target among the processes running then (a scheduler kill takes the leader 3 times in 4);
what a kill finds in flight depends on timing. What it did and its figures (release after a worker
kill, takeover after a leader kill, first state change after the database restart, time to settle)
are printed (``-s``); a failure names the seed and says which product is left in which state.
"""

from __future__ import annotations

import contextlib
import os
import random
import re
import signal
import subprocess
import sys
import time
from collections import Counter
from dataclasses import dataclass, field
from datetime import timedelta
from pathlib import Path
from typing import Any

import psycopg

from ingest import stack as st
from ingest.adapters import pgstac
from ingest.adapters.queue import ProductQueue
from ingest.audit import plan
from ingest.audit.run import audit
from ingest.daemon.leader import current_holder
from ingest.daemon.scheduler import LOCK_NAME
from ingest.state.machine import State, can_transition
from tests import pg_restart, proctree
from tests.conftest import ROOT, Stack
from tests.integration.conftest import World, WorldFactory


def _env_int(name: str, default: int) -> int:
    return int(os.environ.get(name, str(default)))


SEED = int(os.environ["CHAOS_SEED"]) if os.environ.get("CHAOS_SEED") else random.SystemRandom().randrange(10**6)
PRODUCTS = _env_int("CHAOS_PRODUCTS", 12)
WORKER_KILLS = _env_int("CHAOS_WORKER_KILLS", 3)
SCHEDULER_KILLS = _env_int("CHAOS_SCHEDULER_KILLS", 2)
PG_RESTARTS = _env_int("CHAOS_PG_RESTARTS", 1)
S3_KILLS = _env_int("CHAOS_S3_KILLS", 1)
WINDOW_S = float(os.environ.get("CHAOS_WINDOW_S", "20"))
SETTLE_S = float(os.environ.get("CHAOS_SETTLE_S", "90"))
RESTART_AFTER_S = 0.5  # a supervisor's restart delay
# what a worker and a scheduler log once their start-up has begun (after the SIGTERM latch)
STARTED = (": taking jobs from ", " job(s) planned: ")
HARVEST_EVERY_S = 2

# short timeouts, so that what a kill leaves is found and given back within seconds
FAST = {
    "INGEST_WORKER_HEARTBEAT_S": "0.5",
    "INGEST_STALL_TIMEOUT_S": "3",
    "INGEST_RECONCILE_INTERVAL_S": "1",
    "INGEST_ORPHAN_AFTER_S": "6",
    "INGEST_LEADER_POLL_S": "0.5",
    "INGEST_RETRY_BASE_DELAY_S": "1",
    "INGEST_RETRY_MAX_ATTEMPTS": "20",
    "INGEST_SHUTDOWN_GRACE_S": "5",
    "INGEST_CONVERT_WORKERS": "1",
    "INGEST_S3_CONNECT_TIMEOUT_S": "1",
    "INGEST_S3_READ_TIMEOUT_S": "5",
    "INGEST_DB_CONNECT_TIMEOUT_S": "2",
}


# ----------------------------------------------------------------------------- the supervised processes


@dataclass
class Managed:
    """One supervised role (``worker-0``, ``scheduler-1``): its current process and what came before."""

    name: str
    args: tuple[str, ...]
    env: dict[str, str]
    logs: Path
    proc: subprocess.Popen[bytes] | None = None
    generation: int = 0
    log: Path | None = None
    exits: list[tuple[int, int | None]] = field(default_factory=list)  # (pid, code) of each ended process
    unexpected: list[tuple[int, int | None]] = field(default_factory=list)  # ended without being killed

    def start(self) -> None:
        self.log = self.logs / f"{self.name}.{self.generation}.log"
        self.generation += 1
        with self.log.open("wb") as out:
            self.proc = subprocess.Popen(
                [sys.executable, "-m", "ingest", "--text-logs", *self.args],
                env=self.env, cwd=ROOT, stdout=out, stderr=subprocess.STDOUT,
            )  # fmt: skip

    @property
    def pid(self) -> int:
        assert self.proc is not None
        return self.proc.pid

    def kill(self) -> None:
        assert self.proc is not None
        self.proc.send_signal(signal.SIGKILL)
        self.exits.append((self.proc.pid, self.proc.wait(timeout=30)))
        self.proc = None

    def ended_by_itself(self) -> bool:
        if self.proc is None or self.proc.poll() is None:
            return False
        self.unexpected.append((self.proc.pid, self.proc.returncode))
        self.exits.append((self.proc.pid, self.proc.returncode))
        self.proc = None
        return True

    def output(self) -> str:
        return self.log.read_text(errors="replace") if self.log else ""


class Supervisor:
    """Restarts what ended (killed by the chaos, or on its own), and records every process tree it saw."""

    def __init__(self, roles: list[Managed]) -> None:
        self.roles = roles
        self.seen: dict[tuple[int, int], proctree.Proc] = {}
        self.pending: list[tuple[float, Managed]] = []  # (monotonic time, role) restarts due

    def start_all(self) -> None:
        for r in self.roles:
            r.start()
        self.note_trees()

    def note_trees(self) -> None:
        for r in self.roles:
            if r.proc is None:
                continue
            with contextlib.suppress(OSError, ValueError, IndexError):
                stat = Path(f"/proc/{r.pid}/stat").read_text()
                start = int(stat[stat.rindex(")") + 2 :].split()[19])
                self.seen.setdefault((r.pid, start), proctree.Proc(r.pid, start, r.name))
            for p in proctree.descendants(r.pid):
                self.seen.setdefault((p.pid, p.start), p)

    def kill(self, role: Managed) -> int:
        self.note_trees()
        pid = role.pid
        role.kill()
        self.pending.append((time.monotonic() + RESTART_AFTER_S, role))
        return pid

    def tick(self) -> None:
        now = time.monotonic()
        for r in self.roles:
            if r.ended_by_itself():
                self.pending.append((now + RESTART_AFTER_S, r))
        due = [(t, r) for t, r in self.pending if t <= now]
        self.pending = [(t, r) for t, r in self.pending if t > now]
        for _, r in due:
            r.start()
        self.note_trees()

    def stop_all(self) -> dict[str, int | None]:
        """SIGTERM every live process (a clean stop), then their exit codes; SIGKILL past 60 s."""
        for _, r in self.pending:
            r.start()
        self.pending = []
        self.note_trees()
        live = [r for r in self.roles if r.proc is not None]
        for r in live:  # a stop is asked of a started daemon: one that has said what it does
            deadline = time.monotonic() + 60
            while not any(m in r.output() for m in STARTED) and r.proc is not None and r.proc.poll() is None:
                assert time.monotonic() < deadline, f"{r.name} did not start in 60 s:\n{r.output()}"
                time.sleep(0.1)
        for r in live:
            assert r.proc is not None
            r.proc.send_signal(signal.SIGTERM)
        codes: dict[str, int | None] = {}
        for r in live:
            assert r.proc is not None
            try:
                codes[r.name] = r.proc.wait(timeout=60)
            except subprocess.TimeoutExpired:
                r.proc.kill()
                codes[r.name] = r.proc.wait(timeout=30)
            r.exits.append((r.proc.pid, codes[r.name]))
            r.proc = None
        return codes

    def kill_all(self) -> None:
        for r in self.roles:
            if r.proc is not None and r.proc.poll() is None:
                r.proc.kill()
            if r.proc is not None:
                r.proc.wait(timeout=30)
                r.proc = None
        proctree.kill(self.seen.values())


# ----------------------------------------------------------------------------- database reads that outlive a restart


def query(dsn: str, sql: str, *params: object, attempts: int = 40) -> list[tuple[Any, ...]]:
    """One query on a fresh connection, tried again while the server restarts."""
    for i in range(attempts):
        try:
            with psycopg.connect(dsn, autocommit=True, connect_timeout=2) as conn:
                return list(conn.execute(sql, list(params)).fetchall())
        except psycopg.OperationalError:
            if i == attempts - 1:
                raise
            time.sleep(0.25)
    raise AssertionError("unreachable")


def states(world: World) -> dict[str, str]:
    return {
        pid: state
        for pid, state in query(world.dsn, "SELECT id, state FROM ingest.products WHERE collection = %s", world.spec.id)
    }


def leader_pid(world: World) -> int | None:
    """The OS pid of the scheduler holding the leader lock (from its session's application name)."""
    try:
        with psycopg.connect(world.dsn, autocommit=True, connect_timeout=2) as conn:
            holder = current_holder(conn, LOCK_NAME)
    except psycopg.OperationalError:
        return None  # the server restarts
    if holder is None or holder[1] is None:
        return None
    m = re.search(r":(\d+)$", holder[1])
    return int(m[1]) if m else None


def in_flight_of(world: World, worker_pid: int) -> list[str]:
    """Products whose newest event is an in-flight state recorded by that worker process."""
    rows = query(
        world.dsn,
        "SELECT DISTINCT ON (e.product_id) e.product_id, e.to_state, e.worker FROM ingest.events e"
        " JOIN ingest.products p ON p.id = e.product_id WHERE p.collection = %s ORDER BY e.product_id, e.id DESC",
        world.spec.id,
    )
    flying = {s.value for s in (State.CLAIMED, State.DOWNLOADED, State.CONVERTED, State.UPLOADED)}
    return [pid for pid, to_state, worker in rows if to_state in flying and str(worker).endswith(f":{worker_pid}")]


# ----------------------------------------------------------------------------- faults


@dataclass
class Fault:
    at: float  # seconds after the start
    kind: str  # "worker", "scheduler", "postgres", "s3"
    done: str = ""  # what happened, for the report
    wall: float = 0.0  # time.time() when it struck
    struck: float = 0.0  # seconds after the start when it struck
    figure: str = ""
    pid: int = 0  # the process killed
    flying: list[str] = field(default_factory=list)  # the products it had in flight


def plan_faults(rng: random.Random) -> list[Fault]:
    kinds = ["worker"] * WORKER_KILLS + ["scheduler"] * SCHEDULER_KILLS + ["postgres"] * PG_RESTARTS + ["s3"] * S3_KILLS
    return sorted((Fault(round(rng.uniform(1.0, WINDOW_S), 2), k) for k in kinds), key=lambda f: f.at)


def kill_s3(cfg: st.StackConfig) -> int:
    pid = st.status(cfg).s3_pid
    assert pid is not None, "the S3 server is not running"
    os.kill(pid, signal.SIGKILL)
    with contextlib.suppress(ChildProcessError):
        os.waitpid(pid, 0)  # started by this process (st.up): reap it, or it stays a zombie
    return pid


def start_s3(cfg: st.StackConfig, env: dict[str, str]) -> None:
    """Start it again through the stack code (what ``ingest stack up`` does for the S3 server)."""
    key_id, secret = env["INGEST_S3_ACCESS_KEY_ID"], env["INGEST_S3_SECRET_ACCESS_KEY"]
    resolved = st.StackConfig(root=cfg.root.resolve(), pg_port=cfg.pg_port, s3_port=cfg.s3_port, durable=cfg.durable)
    st._await_s3(resolved, st._spawn_s3(resolved, key_id, secret), key_id, secret)


# ----------------------------------------------------------------------------- the end state


def check_histories(world: World) -> list[str]:
    """Each product's events: begins discovered, each transition from the state it was in and allowed
    by the state machine, ends catalogued (its current state)."""
    rows = query(
        world.dsn,
        "SELECT e.product_id, e.from_state, e.to_state, e.message FROM ingest.events e"
        " JOIN ingest.products p ON p.id = e.product_id WHERE p.collection = %s ORDER BY e.id",
        world.spec.id,
    )
    current = states(world)
    problems: list[str] = []
    last: dict[str, str | None] = {}
    for pid, src, dst, message in rows:
        before = last.get(pid)
        if before is None:
            if src is not None or dst != "discovered":
                problems.append(f"{pid}: first event {src} -> {dst} ({message})")
        elif src != before:
            problems.append(f"{pid}: {src} -> {dst} recorded while it was {before} ({message})")
        elif not can_transition(State(src), State(dst)):
            problems.append(f"{pid}: {src} -> {dst} is not an allowed transition ({message})")
        last[pid] = dst
    for pid, state in current.items():
        if last.get(pid) != "catalogued" or state != "catalogued":
            problems.append(f"{pid}: history ends in {last.get(pid)}, product is {state}")
    return problems


def check_store(world: World) -> list[str]:
    """Every asset of every item in S3 with its recorded size; every object under the collection's
    prefix named by an item."""
    store = world.store
    prefix = store.collection_prefix(world.spec.id)
    layout = plan.Layout(store.bucket, prefix, store.public_base_url)
    named: set[str] = set()
    problems: list[str] = []
    for page in pgstac.item_pages(world.dsn, world.spec.id):
        for item_id, assets, _ in page:
            for name, asset in assets.items():
                key = layout.key_of(asset)
                if key is None:
                    problems.append(f"item {item_id} asset {name}: href {asset.get('href')} not in this store")
                    continue
                named.add(key)
                info = store.head(key)
                if info is None:
                    problems.append(f"item {item_id} asset {name}: {key} missing")
                elif info.size != asset.get("file:size"):
                    problems.append(
                        f"item {item_id} asset {name}: {key} {info.size} B, recorded {asset.get('file:size')}"
                    )
    problems += [f"orphan object {key}" for key in store.list_keys(prefix) if key not in named]
    return problems


def settle_report(world: World) -> str:
    """What is left in which state, and the queue's jobs, for a failure message."""
    by_state: dict[str, list[str]] = {}
    for pid, state in sorted(states(world).items()):
        by_state.setdefault(state, []).append(pid)
    lines = [f"{state}: {len(ids)} {ids if state != 'catalogued' else ''}" for state, ids in by_state.items()]
    jobs = query(
        world.dsn,
        "SELECT status::text, count(*) FROM procrastinate_jobs GROUP BY 1 ORDER BY 1",
    )
    lines.append(f"queue jobs: {dict(jobs)}")
    for pid, state, attempts, error in query(
        world.dsn,
        "SELECT id, state, attempts, last_error FROM ingest.products WHERE collection = %s AND state <> 'catalogued'"
        " ORDER BY id",
        world.spec.id,
    ):
        lines.append(f"  {pid}: {state}, attempts {attempts}, last error {error!r}")
    return "\n".join(lines)


# ----------------------------------------------------------------------------- the test


def test_chaos_every_product_catalogued_exactly_once_and_nothing_left(
    make_world: WorldFactory, stack: Stack, cfg: st.StackConfig, tmp_path: Path
) -> None:
    rng = random.Random(SEED)
    faults = plan_faults(rng)
    print(f"\nchaos seed {SEED} (CHAOS_SEED={SEED} to replay): {PRODUCTS} products, faults at " +
          ", ".join(f"{f.at:.1f}s {f.kind}" for f in faults))  # fmt: skip
    world = make_world("S2_MSI_L2A", count=PRODUCTS, size=60)
    text = (ROOT / "collections" / "sentinel-2-l2a.yaml").read_text()
    fast_harvest = re.sub(r"(?m)^  interval: .*$", f"  interval: {HARVEST_EVERY_S}s", text)
    base = {k: v for k, v in os.environ.items() if not k.startswith("INGEST_")}
    env = {**base, **world.cli_env(stack, fast_harvest, TMPDIR=str(tmp_path), **FAST)}
    logs = tmp_path / "logs"
    logs.mkdir()
    roles = [Managed(f"worker-{i}", ("worker",), env, logs) for i in range(2)]
    roles += [Managed(f"scheduler-{i}", ("scheduler",), env, logs) for i in range(2)]
    workers, schedulers = roles[:2], roles[2:]
    # the test process's own children from before (e.g. the forkserver of an in-process convert of an
    # earlier test in this process) are not the run's
    before = {(p.pid, p.start) for p in proctree.descendants(os.getpid())}
    sup = Supervisor(roles)
    figures: list[str] = []
    codes: dict[str, int | None] = {}

    with proctree.subreaper():
        try:
            t_start = time.monotonic()
            sup.start_all()
            # the faults' clock starts with the first claim: they strike work in progress
            while not query(world.dsn, "SELECT 1 FROM ingest.events WHERE to_state = 'claimed' LIMIT 1"):
                sup.tick()
                assert time.monotonic() - t_start < 60, f"seed {SEED}: nothing claimed within 60 s; logs: {logs}"
                time.sleep(0.1)
            started = time.monotonic()
            first_claim = started - t_start
            pending = list(faults)
            failover: tuple[Fault, int, float] | None = None  # (fault, killed leader, monotonic kill time)
            while pending or failover is not None:
                sup.tick()
                now = time.monotonic() - started
                if failover is not None:
                    fault, killed, t0 = failover
                    holder = leader_pid(world)
                    if holder is not None and holder != killed:
                        fault.figure = f"scheduler {holder} leads {time.monotonic() - t0:.2f} s after the kill"
                        failover = None
                    elif time.monotonic() - t0 > 30:
                        raise AssertionError(f"seed {SEED}: no scheduler took the lead within 30 s of {fault.done}")
                if pending and now >= pending[0].at:
                    fault = pending.pop(0)
                    fault.wall, fault.struck = time.time(), now
                    if fault.kind == "worker":
                        role = rng.choice(workers)
                        if role.proc is None:  # killed a moment ago, its restart not due yet
                            role = next(r for r in workers if r is not role)
                        if role.proc is None:
                            fault.done = "no worker running: skipped"
                        else:
                            flying = in_flight_of(world, role.pid)
                            fault.done = f"kill -9 {role.name} (pid {role.pid}, in flight: {flying or 'nothing'})"
                            fault.pid, fault.flying = role.pid, flying
                            sup.kill(role)
                    elif fault.kind == "scheduler":
                        if failover is not None:  # one takeover measured at a time
                            pending.insert(0, fault)
                            pending[0].at = now + 0.5
                            time.sleep(0.1)
                            continue
                        leader = leader_pid(world)
                        led = next((r for r in schedulers if r.proc is not None and r.pid == leader), None)
                        role = led if led is not None and rng.random() >= 0.25 else rng.choice(schedulers)
                        if role.proc is None:
                            fault.done = f"{role.name} not running: skipped"
                        else:
                            was_leader = role.pid == leader
                            fault.done = (
                                f"kill -9 {role.name} (pid {role.pid}, {'leader' if was_leader else 'standby'})"
                            )
                            killed = sup.kill(role)
                            if was_leader:
                                failover = (fault, killed, time.monotonic())
                    elif fault.kind == "postgres":
                        back = pg_restart.restart(cfg)
                        fault.done = f"PostgreSQL immediate restart ({back - fault.wall:.2f} s down)"
                    else:
                        pid = kill_s3(cfg)
                        t0 = time.monotonic()
                        start_s3(cfg, stack.env)
                        fault.done = f"kill -9 SeaweedFS (pid {pid}), started again in {time.monotonic() - t0:.2f} s"
                    print(f"  {now:6.2f} s  {fault.done}")
                time.sleep(0.1)
            faults_done = time.monotonic() - started

            deadline = time.monotonic() + SETTLE_S
            while True:
                sup.tick()
                now_states = states(world)
                if len(now_states) == PRODUCTS and set(now_states.values()) == {"catalogued"}:
                    break
                if time.monotonic() > deadline:
                    raise AssertionError(
                        f"seed {SEED}: not every product catalogued {SETTLE_S:g} s after the last fault "
                        f"({len(now_states)} of {PRODUCTS} discovered):\n{settle_report(world)}\nlogs: {logs}"
                    )
                time.sleep(0.25)
            settled = time.monotonic() - started
            with ProductQueue(world.settings) as queue:
                deadline = time.monotonic() + 10
                while queue.active() and time.monotonic() < deadline:
                    time.sleep(0.2)
                active = queue.active()
            codes = sup.stop_all()
        finally:
            sup.kill_all()
            seconds, left = proctree.wait_gone(sup.seen.values(), 10.0)
            proctree.reap(sup.seen.values())
            # anything of ours the snapshots missed (adopted here by the subreaper): a Python process
            strays = [
                p for p in proctree.descendants(os.getpid())
                if p.alive() and p.cmdline.startswith(sys.executable) and (p.pid, p.start) not in before
            ]  # fmt: skip
            proctree.kill(strays)

    # ------------------------------------------------------------------ what it did, and its figures
    for f in faults:
        if f.kind == "worker" and f.flying:
            releases = query(
                world.dsn,
                "SELECT min(e.at) FROM ingest.events e WHERE e.at > to_timestamp(%s) AND e.message LIKE 'released%%'"
                " AND e.product_id = ANY(%s)",
                f.wall,
                f.flying,
            )
            when = releases[0][0]
            f.figure = (
                f"released {when.timestamp() - f.wall:.2f} s after the kill" if when else "not released (finished?)"
            )
        if f.kind == "postgres":
            nxt = query(world.dsn, "SELECT min(at) FROM ingest.events WHERE at > to_timestamp(%s)", f.wall)[0][0]
            f.figure = f"next state change {nxt.timestamp() - f.wall:.2f} s after the restart began" if nxt else ""
        if f.kind == "s3":
            failed = query(
                world.dsn,
                "SELECT count(*) FROM ingest.events WHERE to_state = 'failed' AND at BETWEEN to_timestamp(%s)"
                " AND to_timestamp(%s) + interval '15 s'",
                f.wall,
                f.wall,
            )[0][0]
            f.figure = f"{failed} product attempt(s) recorded failed within 15 s"
    print(f"chaos seed {SEED}: what it did")
    for f in faults:
        print(f"  {f.struck:6.2f} s  {f.done}" + (f"; {f.figure}" if f.figure else ""))
    attempts = Counter(
        n for (n,) in query(world.dsn, "SELECT attempts FROM ingest.products WHERE collection = %s", world.spec.id)
    )
    restarts = {r.name: r.generation - 1 for r in roles}
    print(
        f"  first claim {first_claim:.1f} s after the start; faults over {faults_done:.1f} s; "
        f"every product catalogued at {settled:.1f} s "
        f"({settled - faults_done:.1f} s after the last fault); attempts per product {dict(sorted(attempts.items()))}; "
        f"restarts {restarts}; process trees gone {seconds:.2f} s after the stop"
    )
    unexpected = {r.name: r.unexpected for r in roles if r.unexpected}
    if unexpected:
        print(f"  processes that ended on their own (restarted): {unexpected}")
    figures = [f"{f.kind}: {f.figure}" for f in faults if f.figure]

    # ------------------------------------------------------------------ the end state, item by item
    products = dict(query(world.dsn, "SELECT item_id, id FROM ingest.products WHERE collection = %s", world.spec.id))
    items = pgstac.item_ids(world.dsn, world.spec.id)
    assert len(items) == len(set(items)), (
        f"seed {SEED}: duplicate items {[i for i, n in Counter(items).items() if n > 1]}"
    )
    assert sorted(items) == sorted(products), (
        f"seed {SEED}: items != catalogued products; missing {sorted(set(products) - set(items))}, "
        f"extra {sorted(set(items) - set(products))}"
    )
    assert len(items) == PRODUCTS
    store_problems = check_store(world)
    assert store_problems == [], f"seed {SEED}: the store does not match the items:\n" + "\n".join(store_problems)
    spec = world.spec.model_copy(update={"audit": world.spec.audit.model_copy(update={"orphan_grace": timedelta(0)})})
    with psycopg.connect(world.dsn) as conn:
        report = audit(conn, world.settings, world.store, spec)
    assert (report.broken_count, report.orphan_count, report.items) == (0, 0, PRODUCTS), (
        f"seed {SEED}: audit found {report.broken_count} broken items {[b.line() for b in report.broken]}, "
        f"{report.orphan_count} orphans {[o.obj.key for o in report.orphans]}"
    )
    history_problems = check_histories(world)
    assert history_problems == [], f"seed {SEED}: incoherent histories:\n" + "\n".join(history_problems)
    assert active == set(), f"seed {SEED}: jobs still waiting or running after the settle: {sorted(active)}"
    assert codes == {r.name: 0 for r in roles}, f"seed {SEED}: exit codes on SIGTERM {codes}"
    assert left == [], f"seed {SEED}: still alive 10 s after the stop: {left}"
    assert strays == [], f"seed {SEED}: processes left behind: {strays}"
    print("  figures: " + "; ".join(figures))
