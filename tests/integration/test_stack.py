"""`ingest stack up|down|status` on a separate stack: idempotent start, exact stop by PID, data kept."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import time

import psycopg
import pytest

from tests.conftest import free_port, make_dir_for_postgres, run_cli


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    return True


@pytest.fixture
def stack_dir():  # type: ignore[no-untyped-def]
    d = make_dir_for_postgres("ingest-stack-updown-")
    env = {
        "INGEST_STACK_DIR": str(d),
        "INGEST_STACK_PG_PORT": str(free_port()),
        "INGEST_STACK_S3_PORT": str(free_port()),
    }
    yield d, env
    run_cli("stack", "down", env=env)
    shutil.rmtree(d, ignore_errors=True)


def test_up_down_up(stack_dir) -> None:  # type: ignore[no-untyped-def]
    root, env = stack_dir
    r = run_cli("stack", "up", env=env, timeout=300)
    assert r.returncode == 0, r.stderr
    st = run_cli("stack", "status", "--json", env=env)
    assert st.returncode == 0
    import json

    first = json.loads(st.stdout)
    pg_pid, s3_pid = first["postgres"]["pid"], first["s3"]["pid"]
    assert _alive(pg_pid) and _alive(s3_pid)

    # starting twice is harmless: same processes, nothing restarted
    r = run_cli("stack", "up", env=env, timeout=300)
    assert r.returncode == 0, r.stderr
    again = json.loads(run_cli("stack", "status", "--json", env=env).stdout)
    assert (again["postgres"]["pid"], again["s3"]["pid"]) == (pg_pid, s3_pid)

    # the stack works: collections sync lands in pgstac
    r = run_cli("collections", "sync", env=env)
    assert r.returncode == 0, r.stderr
    dsn = next(
        line.split("=", 1)[1]
        for line in (root / "stack.env").read_text().splitlines()
        if line.startswith("INGEST_DATABASE_URL=")
    )

    # an unrelated moto server (same program, other port) must survive our `down`
    bystander_port = free_port()
    bystander = subprocess.Popen(
        [sys.executable, "-m", "moto.server", "-H", "127.0.0.1", "-p", str(bystander_port)],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        r = run_cli("stack", "down", env=env)
        assert r.returncode == 0, r.stderr
        assert "postgres" in r.stdout and "s3" in r.stdout
        deadline = time.monotonic() + 10
        while (_alive(pg_pid) or _alive(s3_pid)) and time.monotonic() < deadline:
            time.sleep(0.1)
        assert not _alive(pg_pid) and not _alive(s3_pid)
        assert bystander.poll() is None, "down killed a process it did not start"
        st = run_cli("stack", "status", env=env)
        assert st.returncode == 1 and "stopped" in st.stdout
        # stopping twice is harmless too
        assert run_cli("stack", "down", env=env).returncode == 0
    finally:
        bystander.terminate()
        bystander.wait(10)

    # up again: same cluster, same data
    r = run_cli("stack", "up", env=env, timeout=300)
    assert r.returncode == 0, r.stderr
    with psycopg.connect(dsn) as conn:
        ids = [row[0] for row in conn.execute("SELECT id FROM pgstac.collections ORDER BY id")]
    assert ids == ["sentinel-1-grd", "sentinel-2-l1c", "sentinel-2-l2a"]
    assert (root / "stack.env").stat().st_mode & 0o077 == 0, "stack.env holds credentials: owner-only"


def test_port_taken_by_a_stranger_is_a_clear_error(stack_dir) -> None:  # type: ignore[no-untyped-def]
    _root, env = stack_dir
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        s.listen()
        env = {**env, "INGEST_STACK_PG_PORT": str(s.getsockname()[1])}
        r = run_cli("stack", "up", env=env, timeout=300)
    assert r.returncode != 0
    assert "is taken by another process" in r.stderr
    assert "Traceback" not in r.stderr
