"""A private PostgreSQL+S3 stack for tests that restart the database, and the restart itself.

Restart tests get a cluster of their own (not the session's ``stack``): an immediate restart kills
every session of the cluster, which would break the fixtures of other test modules. The commands
are the ones ``ingest.stack`` starts and stops the cluster with (``pg_ctl`` as the ``postgres`` OS
user when running as root).
"""

from __future__ import annotations

import os
import shutil
import subprocess
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager

import psycopg

from ingest import stack as st
from tests.conftest import Stack, free_port, make_dir_for_postgres


@contextmanager
def private_stack() -> Iterator[tuple[Stack, st.StackConfig]]:
    """A cluster and S3 server of its own, as the session's ``stack`` fixture makes them, but with
    ``synchronous_commit`` on: off (the throw-away clusters' setting), an immediate stop forgets the
    commits of the last moments, and a product's acknowledged claim would come back undone. (``fsync``
    stays off: the commits are in the kernel's page cache, which a stopped server does not lose.)"""
    root = make_dir_for_postgres("ingest-restart-stack-")
    cfg = st.StackConfig(root=root, pg_port=free_port(), s3_port=free_port(), durable=False)
    try:
        st.up(cfg)
        env = st.read_env(cfg)
        with psycopg.connect(env["INGEST_DATABASE_URL"], autocommit=True) as conn:
            conn.execute("ALTER SYSTEM SET synchronous_commit = on")
            conn.execute("SELECT pg_reload_conf()")
        yield Stack(root, cfg.pg_port, cfg.s3_port, env["INGEST_DATABASE_URL"], env), cfg
    finally:
        st.down(cfg)
        shutil.rmtree(root, ignore_errors=True)


def _pg_ctl(cfg: st.StackConfig, *args: str) -> None:
    bindir = st.find_pg_bindir()
    assert bindir is not None, "PostgreSQL binaries not found"
    # -l: without it the new postmaster keeps pg_ctl's stdout, and capturing it would never end
    cmd = [str(bindir / "pg_ctl"), "-D", str(cfg.pg_data), "-l", str(cfg.pg_log), *args]
    if os.geteuid() == 0:
        cmd = ["runuser", "-u", "postgres", "--", *cmd]
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=60)
    assert proc.returncode == 0, f"pg_ctl {' '.join(args)}: {proc.stdout}{proc.stderr}"


def restart(cfg: st.StackConfig) -> float:
    """``pg_ctl -m immediate -w restart`` (every session killed, crash recovery on start); returns the
    wall-clock time (``time.time()``, comparable with the server's ``now()``) it accepts connections again."""
    _pg_ctl(cfg, "-m", "immediate", "-w", "restart")
    return time.time()


def stop(cfg: st.StackConfig) -> None:
    """Immediate stop: every session killed at once, as in a crash."""
    _pg_ctl(cfg, "-m", "immediate", "-w", "stop")


def start(cfg: st.StackConfig) -> float:
    """Start it again (crash recovery); returns the wall-clock time it accepts connections."""
    _pg_ctl(cfg, "-w", "-t", "60", "start")
    return time.time()


class Outage:
    """An immediate-mode restart held down ``hold_s``: ``begin()`` stops the server and returns, a
    thread starts it again; ``back`` is when it accepts connections (wall clock), after ``end()``.

    Held down so that what the test does right after ``begin()`` meets the outage (a bare
    ``restart`` is often over before the next statement is sent)."""

    def __init__(self, cfg: st.StackConfig, hold_s: float) -> None:
        self.cfg, self.hold_s = cfg, hold_s
        self.down = self.back = 0.0
        self._thread: threading.Thread | None = None

    def begin(self) -> None:
        assert self._thread is None, "one outage at a time"
        stop(self.cfg)
        self.down = time.time()
        self._thread = threading.Thread(target=self._start, name="pg-start")
        self._thread.start()

    def _start(self) -> None:
        time.sleep(self.hold_s)
        self.back = start(self.cfg)

    def end(self) -> float:
        """Wait until the server is back; returns ``back``."""
        assert self._thread is not None, "begin() first"
        self._thread.join(timeout=90)
        assert self.back, "the server did not start again"
        return self.back
