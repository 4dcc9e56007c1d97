"""`ingest stack up|down|status` on a separate stack: idempotent start, exact stop by PID, data kept
(the catalogue in PostgreSQL and the objects in SeaweedFS, across `down`/`up` and a `kill -9`)."""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import signal
import socket
import subprocess
import time
from pathlib import Path

import boto3
import psycopg
import pytest
from pydantic import SecretStr

from ingest.adapters.s3 import ObjectStore
from ingest.stack import weed_binary
from tests.conftest import ROOT, free_port, make_dir_for_postgres, run_cli

KEY = "ingest/sentinel-2-l2a/item/B04_10m.tif"


def _alive(pid: int) -> bool:
    """Running: a zombie waiting for init to reap it (the CLI that started it has exited) is not."""
    try:
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0] not in ("Z", "X")
    except OSError:
        return False


def _wait_dead(*pids: int, timeout: float = 40) -> None:
    deadline = time.monotonic() + timeout
    while any(_alive(p) for p in pids) and time.monotonic() < deadline:
        time.sleep(0.1)
    assert not any(_alive(p) for p in pids), f"still running: {[p for p in pids if _alive(p)]}"


def _env_file(root: Path) -> dict[str, str]:
    return dict(line.split("=", 1) for line in (root / "stack.env").read_text().splitlines() if "=" in line)


def _store(root: Path) -> ObjectStore:
    env = _env_file(root)
    return ObjectStore(
        bucket=env["INGEST_S3_BUCKET"],
        endpoint_url=env["INGEST_S3_ENDPOINT_URL"],
        region=env["INGEST_S3_REGION"],
        access_key_id=SecretStr(env["INGEST_S3_ACCESS_KEY_ID"]),
        secret_access_key=SecretStr(env["INGEST_S3_SECRET_ACCESS_KEY"]),
    )


def _read(root: Path, key: str) -> bytes:
    env = _env_file(root)
    s3 = boto3.client(
        "s3",
        endpoint_url=env["INGEST_S3_ENDPOINT_URL"],
        region_name=env["INGEST_S3_REGION"],
        aws_access_key_id=env["INGEST_S3_ACCESS_KEY_ID"],
        aws_secret_access_key=env["INGEST_S3_SECRET_ACCESS_KEY"],
    )
    return s3.get_object(Bucket=env["INGEST_S3_BUCKET"], Key=key)["Body"].read()


def _status(env: dict[str, str]) -> dict[str, dict[str, object]]:
    st = run_cli("stack", "status", "--json", env=env)
    doc: dict[str, dict[str, object]] = json.loads(st.stdout)
    return doc


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


def test_up_down_up(stack_dir, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    root, env = stack_dir
    r = run_cli("stack", "up", env=env, timeout=300)
    assert r.returncode == 0, r.stderr
    first = _status(env)
    pg_pid, s3_pid = first["postgres"]["pid"], first["s3"]["pid"]
    assert isinstance(pg_pid, int) and isinstance(s3_pid, int)
    assert _alive(pg_pid) and _alive(s3_pid)
    assert first["s3"]["port"] == int(env["INGEST_STACK_S3_PORT"]) and first["s3"]["server"] == "SeaweedFS"
    assert Path(str(first["s3"]["data"])).is_relative_to(root / "s3")
    text = run_cli("stack", "status", env=env)
    assert text.returncode == 0
    assert f"s3        running (pid {s3_pid}, port {env['INGEST_STACK_S3_PORT']})" in text.stdout

    # starting twice is harmless: same processes, nothing restarted
    r = run_cli("stack", "up", env=env, timeout=300)
    assert r.returncode == 0, r.stderr
    again = _status(env)
    assert (again["postgres"]["pid"], again["s3"]["pid"]) == (pg_pid, s3_pid)

    # the stack works: collections sync lands in pgstac, an object lands in the bucket
    r = run_cli("collections", "sync", env=env)
    assert r.returncode == 0, r.stderr
    dsn = _env_file(root)["INGEST_DATABASE_URL"]
    body = os.urandom(6 * 1024 * 1024)  # more than one of the filer's 4 MiB chunks
    blob = tmp_path / "B04_10m.tif"
    blob.write_bytes(body)
    sha = hashlib.sha256(body).hexdigest()
    _store(root).put_file(KEY, blob, media_type="image/tiff", sha256=sha)

    # an unrelated SeaweedFS process (same program, its own ports and directory) must survive our `down`
    bystander_dir = make_dir_for_postgres("ingest-stack-bystander-")
    bystander = subprocess.Popen(
        [
            str(weed_binary()),
            "master",
            "-ip=127.0.0.1",
            "-ip.bind=127.0.0.1",
            f"-port={free_port()}",
            f"-port.grpc={free_port()}",
            f"-mdir={bystander_dir}",
            "-telemetry=false",
        ],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        r = run_cli("stack", "down", env=env, timeout=120)
        assert r.returncode == 0, r.stderr
        assert "postgres" in r.stdout and "s3" in r.stdout
        _wait_dead(pg_pid, s3_pid)
        assert bystander.poll() is None, "down killed a process it did not start"
        st = run_cli("stack", "status", env=env)
        assert st.returncode == 1 and "stopped" in st.stdout
        # stopping twice is harmless too
        assert run_cli("stack", "down", env=env).returncode == 0
    finally:
        bystander.kill()
        bystander.wait(10)
        shutil.rmtree(bystander_dir, ignore_errors=True)

    # up again: same cluster, same data, same objects
    r = run_cli("stack", "up", env=env, timeout=300)
    assert r.returncode == 0, r.stderr
    with psycopg.connect(dsn) as conn:
        ids = [row[0] for row in conn.execute("SELECT id FROM pgstac.collections ORDER BY id")]
    assert ids == sorted(p.stem for p in (ROOT / "collections").glob("*.yaml"))  # every shipped file
    info = _store(root).head(KEY)
    assert info is not None and info.size == len(body) and info.sha256 == sha
    assert (root / "stack.env").stat().st_mode & 0o077 == 0, "stack.env holds credentials: owner-only"
    assert (root / "s3" / "s3.json").stat().st_mode & 0o077 == 0, "the S3 identities file: owner-only"

    # the S3 server killed outright: status says so, `up` starts it again, nothing is lost
    killed = _status(env)["s3"]["pid"]
    assert isinstance(killed, int)
    os.kill(killed, signal.SIGKILL)
    _wait_dead(killed)
    st = run_cli("stack", "status", env=env)
    assert st.returncode == 1 and "s3        stopped" in st.stdout and "postgres  running" in st.stdout
    r = run_cli("stack", "up", env=env, timeout=300)
    assert r.returncode == 0, r.stderr
    restarted = _status(env)["s3"]
    assert restarted["running"] is True and restarted["pid"] != killed
    assert hashlib.sha256(_read(root, KEY)).hexdigest() == sha


@pytest.mark.parametrize("which", ["PG", "S3"])
def test_port_taken_by_a_stranger_is_a_clear_error(stack_dir, which: str) -> None:  # type: ignore[no-untyped-def]
    _root, env = stack_dir
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        s.listen()
        port = int(s.getsockname()[1])
        env = {**env, f"INGEST_STACK_{which}_PORT": str(port)}
        r = run_cli("stack", "up", env=env, timeout=300)
    assert r.returncode != 0
    assert f"port {port} is taken by another process" in r.stderr
    assert f"set INGEST_STACK_{which}_PORT" in r.stderr
    assert "Traceback" not in r.stderr
