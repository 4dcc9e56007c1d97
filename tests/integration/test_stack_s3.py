"""The local stack's S3 server (SeaweedFS) on its own, in this process: ports, restarts, failures."""

from __future__ import annotations

import hashlib
import json
import os
import re
import socket
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from pydantic import SecretStr

from ingest import stack as st
from ingest.adapters.s3 import ObjectStore
from ingest.errors import ConfigError, StackError
from tests.conftest import free_port

KEY_ID, SECRET = "localtest", "not-a-real-secret"


@pytest.fixture
def cfg(tmp_path: Path) -> Iterator[st.StackConfig]:
    """A throw-away stack directory (durable=False, as the test session's), its S3 server stopped after."""
    config = st.StackConfig(root=tmp_path / "stack", pg_port=free_port(), s3_port=free_port(), durable=False)
    yield config
    st.down(config)


def _start(cfg: st.StackConfig) -> None:
    st._await_s3(cfg, st._spawn_s3(cfg, KEY_ID, SECRET), KEY_ID, SECRET)


def _store(cfg: st.StackConfig) -> ObjectStore:
    return ObjectStore(
        bucket=cfg.bucket,
        endpoint_url=f"http://127.0.0.1:{cfg.s3_port}",
        access_key_id=SecretStr(KEY_ID),
        secret_access_key=SecretStr(SECRET),
    )


def _sockets(cfg: st.StackConfig) -> list[Path]:
    ports = {str(p) for p in json.loads(cfg.s3_ports_file.read_text()).values()} | {str(cfg.s3_port)}
    return [p for p in Path("/tmp").glob("seaweedfs-*.sock") if re.sub(r"\D", "", p.name.rsplit("-", 1)[-1]) in ports]


def test_every_port_is_explicit_distinct_and_valid_even_near_65535(tmp_path: Path) -> None:
    cfg = st.StackConfig(root=tmp_path.resolve(), s3_port=65000)  # weed's default gRPC port would be 75000
    cfg.s3_dir.mkdir(parents=True)
    command = st.weed_command(cfg, st._s3_ports(cfg))
    ports = {m[1]: int(m[2]) for a in command if (m := re.fullmatch(r"-([\w.]*port[\w.]*)=(\d+)", a))}
    assert {
        "master.port",
        "master.port.grpc",
        "volume.port",
        "volume.port.grpc",
        "filer.port",
        "filer.port.grpc",
    } <= set(ports)
    assert {"s3.port", "s3.port.grpc"} <= set(ports) and ports["s3.port"] == 65000
    assert ports.pop("s3.port.iceberg") == 0 and ports.pop("s3.port.lance") == 0  # not opened at all
    assert len(set(ports.values())) == len(ports) and all(1024 < p <= 65535 for p in ports.values())
    assert "-ip.bind=127.0.0.1" in command and f"-dir={cfg.s3_data}" in command


def test_ports_are_kept_across_starts_unless_one_was_taken(tmp_path: Path) -> None:
    cfg = st.StackConfig(root=tmp_path.resolve(), s3_port=free_port())
    cfg.s3_dir.mkdir(parents=True)
    first = st._s3_ports(cfg)
    assert st._s3_ports(cfg) == first
    with socket.socket() as squatter:  # bound, not even listening: weed could not listen there either
        squatter.bind(("127.0.0.1", first["filer"]))
        second = st._s3_ports(cfg)
    assert second["filer"] != first["filer"] and json.loads(cfg.s3_ports_file.read_text()) == second


def test_objects_survive_a_restart_of_a_test_server(cfg: st.StackConfig, tmp_path: Path) -> None:
    """durable=False stops without waiting for weed's slow clean close (SIGKILL): nothing is lost."""
    _start(cfg)
    body = os.urandom(5 * 1024 * 1024 + 7)
    blob = tmp_path / "blob.bin"
    blob.write_bytes(body)
    _store(cfg).put_file(
        "a/blob.bin", blob, media_type="application/octet-stream", sha256=hashlib.sha256(body).hexdigest()
    )
    pid = st.status(cfg).s3_pid
    assert pid is not None and (cfg.s3_dir.stat().st_mode & 0o077) == 0

    started = time.monotonic()
    assert st._stop_s3(cfg) is True
    assert time.monotonic() - started < st.S3_FAST_STOP_S + 5
    assert st.status(cfg).s3_pid is None and not cfg.s3_pid_file.exists()
    assert _sockets(cfg) == [], "the Unix sockets weed leaves in /tmp are removed"
    assert st._stop_s3(cfg) is False

    _start(cfg)
    info = _store(cfg).head("a/blob.bin")
    assert info is not None and info.size == len(body) and info.sha256 == hashlib.sha256(body).hexdigest()
    assert st.status(cfg).s3_pid not in (None, pid)


def test_the_server_refuses_other_credentials_and_missing_buckets(cfg: st.StackConfig, tmp_path: Path) -> None:
    _start(cfg)
    (tmp_path / "x").write_bytes(b"x")
    stranger = ObjectStore(
        bucket=cfg.bucket,
        endpoint_url=f"http://127.0.0.1:{cfg.s3_port}",
        access_key_id=SecretStr(KEY_ID),
        secret_access_key=SecretStr("guessed"),
    )
    with pytest.raises(ConfigError, match="access denied"):
        stranger.head("x")
    missing = ObjectStore(
        bucket="no-such-bucket",
        endpoint_url=f"http://127.0.0.1:{cfg.s3_port}",
        access_key_id=SecretStr(KEY_ID),
        secret_access_key=SecretStr(SECRET),
    )
    with pytest.raises(ConfigError, match="does not exist"):
        missing.put_file("x", tmp_path / "x", media_type="text/plain", sha256=hashlib.sha256(b"x").hexdigest())


def test_a_server_dying_at_start_is_a_clear_error_naming_the_log(
    cfg: st.StackConfig, monkeypatch: pytest.MonkeyPatch
) -> None:
    real = st.weed_command
    monkeypatch.setattr(st, "weed_command", lambda c, p: [*real(c, p), "-master.volumeSizeLimitMB=99999999"])
    with pytest.raises(StackError) as err:
        _start(cfg)
    message = str(err.value)
    assert "SeaweedFS exited" in message and str(cfg.s3_log) in message
    assert "volumeSizeLimitMB should not exceed" in message, message  # weed's own fatal line, not its stack trace
    assert "\n" not in message and not cfg.s3_pid_file.exists()


def test_a_recycled_pid_is_not_taken_for_ours(cfg: st.StackConfig) -> None:
    cfg.s3_dir.mkdir(parents=True)
    cfg.s3_pid_file.write_text(f"{os.getpid()}\n")  # alive, but this is pytest, not our weed
    assert st.status(cfg).s3_pid is None
    assert st._stop_s3(cfg) is False
