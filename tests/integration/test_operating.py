"""Operating a site (issue 8), with real OS processes on 127.0.0.1: the scheduler's and a worker's
/metrics, /livez and /readyz while products go through; the stage log lines of that run (JSON, no
secret); `ingest healthcheck` with each dependency stopped; `ingest db migrate` as the compose
`migrate` service runs it."""

from __future__ import annotations

import json
import os
import secrets
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from urllib.parse import urlsplit, urlunsplit

import psycopg
import pytest
import requests
from prometheus_client.parser import text_string_to_metric_families

from ingest.daemon.leader import LeaderLock
from ingest.daemon.scheduler import LOCK_NAME
from tests.conftest import ROOT, Stack, free_port, run_cli
from tests.integration.conftest import World, WorldFactory

Samples = dict[tuple[str, frozenset[tuple[str, str]]], float]


def scrape(port: int) -> Samples:
    r = requests.get(f"http://127.0.0.1:{port}/metrics", timeout=10)
    assert r.status_code == 200, r.text
    out: Samples = {}
    for family in text_string_to_metric_families(r.text):
        for s in family.samples:
            out[(s.name, frozenset(s.labels.items()))] = s.value
    return out


def value(samples: Samples, name: str, **labels: str) -> float | None:
    return samples.get((name, frozenset(labels.items())))


def wait_for(condition: Callable[[], bool], timeout: float, what: str, log: Path | None = None) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            if condition():
                return
        except requests.ConnectionError:
            pass
        time.sleep(0.5)
    tail = log.read_text(errors="replace")[-3000:] if log else ""
    raise AssertionError(f"timed out after {timeout:.0f} s waiting for {what}\n{tail}")


@contextmanager
def ingest_process(args: list[str], env: dict[str, str], log: Path) -> Iterator[subprocess.Popen[bytes]]:
    """``python -m ingest ARGS`` with stderr (the log lines) to ``log``: a file, not a terminal, so
    the default format must be JSON. Stopped with SIGTERM; it must exit 0 by itself."""
    base = {k: v for k, v in os.environ.items() if not k.startswith("INGEST_")}
    with open(log, "wb") as out:
        proc = subprocess.Popen(
            [sys.executable, "-m", "ingest", *args], env={**base, **env}, cwd=ROOT, stdout=out, stderr=out
        )
    try:
        yield proc
    finally:
        if proc.poll() is None:
            proc.send_signal(signal.SIGTERM)
        try:
            code = proc.wait(timeout=60)
        except subprocess.TimeoutExpired:
            proc.kill()
            code = proc.wait(timeout=10)
    assert code == 0, f"{args[0]} exited {code} on SIGTERM:\n{log.read_text(errors='replace')[-3000:]}"


def configured_secrets(env: dict[str, str]) -> list[str]:
    dsn = env["INGEST_DATABASE_URL"]
    found = [dsn, urlsplit(dsn).password or "", env["INGEST_S3_SECRET_ACCESS_KEY"], env["INGEST_PROVIDER_PASSWORD"]]
    assert all(len(s) >= 8 for s in found), "the test needs real secrets to look for"
    return found


def json_lines(log: Path) -> list[dict[str, object]]:
    lines = [line for line in log.read_text().splitlines() if line.strip()]
    assert lines, f"{log} is empty"
    docs = []
    for line in lines:
        doc = json.loads(line)  # every line, from every library, is one JSON object
        assert isinstance(doc, dict) and {"ts", "level", "logger", "msg"} <= doc.keys(), line
        docs.append(doc)
    return docs


def test_metrics_health_endpoints_and_logs_of_a_real_run(
    make_world: WorldFactory, stack: Stack, tmp_path: Path
) -> None:
    world = make_world("S2_MSI_L2A", count=2, size=60)
    cid = world.spec.id
    sport, wport = free_port(), free_port()
    secret_env = {"INGEST_PROVIDER_USERNAME": "operator", "INGEST_PROVIDER_PASSWORD": "pw-" + secrets.token_hex(8)}
    sched_env = world.cli_env(stack, INGEST_METRICS_PORT=str(sport), **secret_env)
    worker_env = world.cli_env(stack, INGEST_METRICS_PORT=str(wport), INGEST_CONVERT_WORKERS="1", **secret_env)
    slog, wlog = tmp_path / "scheduler.log", tmp_path / "worker.log"

    with ingest_process(["scheduler"], sched_env, slog):
        # the scheduler leads, harvests at once and queues both products; nothing takes them yet
        wait_for(lambda: value(scrape(sport), "ingest_queue_jobs", status="todo") == 2, 90, "2 queued jobs", slog)
        before = scrape(sport)
        assert value(before, "ingest_database_up") == 1
        assert value(before, "ingest_scheduler_leader") == 1
        assert value(before, "ingest_products", collection=cid, state="discovered") == 2
        assert value(before, "ingest_products", collection=cid, state="catalogued") == 0
        assert value(before, "ingest_harvests_total", collection=cid, outcome="ok") == 1
        assert value(before, "ingest_discovered_products_total", collection=cid) == 2
        assert value(before, "ingest_harvest_lag_seconds", collection=cid) is None  # nothing catalogued yet
        assert (value(before, "ingest_watermark_age_seconds", collection=cid) or 0) > 0
        assert (value(before, "ingest_last_harvest_age_seconds", collection=cid) or -1) >= 0
        assert requests.get(f"http://127.0.0.1:{sport}/livez", timeout=5).status_code == 200
        assert requests.get(f"http://127.0.0.1:{sport}/readyz", timeout=5).status_code == 200

        with ingest_process(["worker"], worker_env, wlog):
            wait_for(lambda: requests.get(f"http://127.0.0.1:{wport}/readyz", timeout=5).status_code == 200, 60,
                     "the worker's /readyz", wlog)  # fmt: skip
            # what the compose file's worker health check runs
            probe = run_cli(
                "healthcheck", "--check", "http", "--url", f"http://127.0.0.1:{wport}/readyz", env=worker_env
            )
            assert probe.returncode == 0, probe.stdout + probe.stderr
            wait_for(
                lambda: value(scrape(sport), "ingest_products", collection=cid, state="catalogued") == 2,
                300, "both products catalogued", wlog,
            )  # fmt: skip
            worker = scrape(wport)
            site = scrape(sport)

    for stage in ("download", "convert", "upload", "catalogue"):
        assert value(worker, "ingest_stage_duration_seconds_count", collection=cid, stage=stage) == 2, stage
        assert (value(worker, "ingest_stage_duration_seconds_sum", collection=cid, stage=stage) or 0) > 0, stage
    assert value(worker, "ingest_downloaded_bytes_total", collection=cid) == sum(e.size for e in world.entries)
    store = world.store
    objects = [store.head(key) for key in store.list_keys(store.collection_prefix(cid))]
    assert objects and value(worker, "ingest_uploaded_bytes_total", collection=cid) == sum(
        o.size for o in objects if o is not None
    )  # every object was sent once
    assert value(worker, "ingest_products_finished_total", collection=cid, outcome="catalogued") == 2
    assert not [k for k in worker if k[0] == "ingest_failures_total"]
    assert value(worker, "ingest_products", collection=cid, state="catalogued") is None  # site gauges: scheduler only
    assert value(site, "ingest_products", collection=cid, state="discovered") == 0
    assert value(site, "ingest_queue_jobs", status="todo") == 0
    lag = value(site, "ingest_harvest_lag_seconds", collection=cid)
    newest = max(e.published for e in world.entries)
    assert lag is not None and abs(lag - (time.time() - newest.timestamp())) < 120

    # logs: JSON on a non-terminal, one line per stage with its fields, no configured secret anywhere
    secrets_ = configured_secrets(worker_env)
    for log in (slog, wlog):
        text = log.read_text()
        for s in secrets_:
            assert s not in text, f"a configured secret is in {log.name}"
    stage_lines = [d for d in json_lines(wlog) if d.get("stage")]
    json_lines(slog)
    for entry in world.entries:
        mine = [d for d in stage_lines if d["product_id"] == entry.id]
        assert [d["stage"] for d in mine] == ["download", "convert", "upload", "catalogue"], mine
        for d in mine:
            assert d["collection"] == cid and d["outcome"] == "ok" and isinstance(d["seconds"], float | int), d


def test_a_failed_stage_is_counted_by_cause_and_logged(make_world: WorldFactory, stack: Stack, tmp_path: Path) -> None:
    """A product whose provider link is dead fails in `download`: a log line with cause and outcome,
    and the failure counted under that cause (through `ingest process`, an OS process)."""
    world = make_world("S2_MSI_L2A", count=1, size=60)
    from ingest.harvest import harvest

    (pid,) = harvest(world.conn, world.provider, world.spec).new_ids
    world.conn.execute(
        "UPDATE ingest.products SET download_url = %s WHERE id = %s", [world.server.url + "/gone.zip", pid]
    )
    world.conn.commit()
    out = run_cli("process", pid, env=world.cli_env(stack))
    assert out.returncode == 75, out.stderr
    failed = [json.loads(line) for line in out.stderr.splitlines() if line.startswith("{")]
    line = next(d for d in failed if d.get("stage") == "download")
    assert line["outcome"] == "failed" and line["product_id"] == pid and line["cause"] == "ProductGone", line
    assert line["level"] == "warning" and line["collection"] == world.spec.id


# --------------------------------------------------------------------------- ingest healthcheck


def with_port(url: str, port: int) -> str:
    parts = urlsplit(url)
    host = parts.netloc.rsplit("@", 1)
    auth = host[0] + "@" if len(host) == 2 else ""
    return urlunsplit(parts._replace(netloc=f"{auth}127.0.0.1:{port}"))


@pytest.fixture
def site(make_world: WorldFactory, stack: Stack) -> Iterator[tuple[World, dict[str, str]]]:
    """A healthy site: database, bucket, provider, and a scheduler holding the leader lock (a real
    lock on a real session, as `ingest scheduler` holds it)."""
    world = make_world("S2_MSI_L2A", count=1, size=60)
    env = world.cli_env(stack, INGEST_PROVIDER_PASSWORD="pw-" + secrets.token_hex(8))
    with LeaderLock(world.dsn, LOCK_NAME) as lock:
        assert lock.try_acquire()
        yield world, env


def check(env: dict[str, str], *args: str) -> subprocess.CompletedProcess[str]:
    out = run_cli("healthcheck", *args, env=env, timeout=60)
    for s in configured_secrets(env):
        assert s not in out.stdout + out.stderr, "a secret in the health check's output"
    return out


def test_healthcheck_passes_on_a_healthy_site(site: tuple[World, dict[str, str]]) -> None:
    _, env = site
    out = check(env)
    assert out.returncode == 0, out.stdout + out.stderr
    assert [line.split()[:2] for line in out.stdout.splitlines()] == [
        ["ok", "database"], ["ok", "s3"], ["ok", "provider"], ["ok", "scheduler"],
    ]  # fmt: skip
    doc = json.loads(check(env, "--json").stdout)
    assert doc["healthy"] is True and {c["name"] for c in doc["checks"]} == {"database", "s3", "provider", "scheduler"}


@pytest.mark.parametrize(
    ("dependency", "change", "expected"),
    [
        ("database", lambda env: {"INGEST_DATABASE_URL": with_port(env["INGEST_DATABASE_URL"], free_port())},
         "unreachable"),
        ("s3", lambda env: {"INGEST_S3_ENDPOINT_URL": f"http://127.0.0.1:{free_port()}"}, "cannot reach"),
        ("provider", lambda env: {"INGEST_PROVIDER_URL": f"http://127.0.0.1:{free_port()}"}, "unreachable"),
    ],
)  # fmt: skip
def test_healthcheck_names_the_dependency_that_is_down(
    site: tuple[World, dict[str, str]],
    dependency: str,
    change: Callable[[dict[str, str]], dict[str, str]],
    expected: str,
) -> None:
    _, env = site
    broken = {**env, **change(env)}
    out = check(broken)
    assert out.returncode == 1, out.stdout + out.stderr
    lines = {line.split()[1]: line for line in out.stdout.splitlines()}
    assert lines[dependency].startswith("FAIL") and expected in lines[dependency], lines[dependency]
    down = {dependency, "scheduler"} if dependency == "database" else {dependency}  # the lock is in the database
    assert {name for name, line in lines.items() if line.startswith("FAIL")} == down, out.stdout
    assert out.stderr.startswith("unhealthy: ") and expected in out.stderr, out.stderr
    if dependency != "database":
        port = str(urlsplit(broken[f"INGEST_{'S3_ENDPOINT' if dependency == 's3' else 'PROVIDER'}_URL"]).port)
        assert port in lines[dependency]  # the message says where it looked


def test_healthcheck_fails_without_a_scheduler_and_on_an_unmigrated_database(
    site: tuple[World, dict[str, str]], empty_db: str
) -> None:
    world, env = site
    out = check(env, "--check", "scheduler")
    assert out.returncode == 0, out.stdout  # the fixture holds the lock
    with psycopg.connect(world.dsn, autocommit=True) as admin:  # the scheduler's session ends (a crash)
        admin.execute(
            "SELECT pg_terminate_backend(pid) FROM pg_locks WHERE locktype = 'advisory' AND pid <> pg_backend_pid()"
        )
    out = check(env, "--check", "scheduler")
    assert out.returncode == 1 and "no scheduler holds the leader lock" in out.stderr, out.stdout + out.stderr
    out = check({**env, "INGEST_DATABASE_URL": empty_db}, "--check", "database")
    assert out.returncode == 1 and "ingest db migrate" in out.stderr, out.stderr


def test_http_check_fails_on_a_closed_port(site: tuple[World, dict[str, str]]) -> None:
    _, env = site
    url = f"http://127.0.0.1:{free_port()}/readyz"
    out = check(env, "--check", "http", "--url", url)
    assert out.returncode == 1 and url in out.stderr, out.stderr


# --------------------------------------------------------------------------- the compose `migrate` service


def test_db_migrate_prepares_an_empty_database_as_the_migrate_service_runs_it(stack: Stack, empty_db: str) -> None:
    role = "api_" + secrets.token_hex(4)
    password = secrets.token_urlsafe(16)
    parts = urlsplit(empty_db)
    api_dsn = urlunsplit(parts._replace(netloc=f"{role}:{password}@{parts.hostname}:{parts.port}"))
    env = {"INGEST_DATABASE_URL": empty_db, "INGEST_API_DATABASE_URL": api_dsn, "INGEST_STACK_DIR": "/nonexistent"}
    try:
        out = run_cli("db", "migrate", env=env, timeout=300)
        assert out.returncode == 0, out.stderr
        synced = sorted(line.split()[1] for line in out.stdout.splitlines() if line.startswith("synced "))
        assert synced == sorted(p.stem for p in (ROOT / "collections").glob("*.yaml"))
        assert f"read-only API role {role}" in out.stdout
        assert password not in out.stdout + out.stderr
        again = run_cli("db", "migrate", env=env, timeout=300)  # a restarted one-shot changes nothing
        assert again.returncode == 0, again.stderr
    finally:
        with psycopg.connect(stack.database("postgres"), autocommit=True) as conn:
            conn.execute(f"DROP ROLE IF EXISTS {role}")
