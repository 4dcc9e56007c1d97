"""Shared by the benchmark scripts: a throw-away local stack on free ports, and HTTP servers as OS processes."""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import tempfile
import time
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import requests

from ingest import stack as st


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@contextmanager
def throwaway_stack(*, durable: bool = False) -> Iterator[dict[str, str]]:
    """Start PostgreSQL+PostGIS+pgstac and SeaweedFS (S3) in a temporary directory; yields the INGEST_* settings.
    ``durable``: fsync on, for figures that include commits to disk."""
    root = Path(tempfile.mkdtemp(prefix="bench-stack-", dir="/tmp"))
    os.chmod(root, 0o755)  # noqa: S103 - the postgres OS user must traverse it
    cfg = st.StackConfig(root=root, pg_port=free_port(), s3_port=free_port(), durable=durable)
    try:
        st.up(cfg)
        yield st.read_env(cfg)
    finally:
        st.down(cfg)
        shutil.rmtree(root, ignore_errors=True)


@contextmanager
def http_server(name: str, cmd: Sequence[str], env: dict[str, str], log: Path, url: str, ready: str) -> Iterator[None]:
    """``cmd`` as an OS process (output to ``log``) until ``url + ready`` answers 200 (at most 60 s);
    stopped with SIGTERM (then SIGKILL) at the end."""
    with open(log, "wb") as out:
        proc = subprocess.Popen(list(cmd), env=env, cwd=Path(__file__).resolve().parent.parent, stdout=out,
                                stderr=subprocess.STDOUT)  # fmt: skip
    try:
        deadline = time.monotonic() + 60
        while True:
            if proc.poll() is not None:
                raise SystemExit(f"{name} exited with {proc.returncode}:\n{log.read_text()[-2000:]}")
            try:
                if requests.get(url + ready, timeout=1).status_code == 200:
                    break
            except requests.ConnectionError:
                pass
            if time.monotonic() > deadline:
                raise SystemExit(f"{name} not ready within 60 s:\n{log.read_text()[-2000:]}")
            time.sleep(0.2)
        yield
    finally:
        stop(proc)


def stop(proc: subprocess.Popen[Any]) -> None:
    """SIGTERM, then SIGKILL after 20 s."""
    proc.terminate()
    try:
        proc.wait(timeout=20)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait()
