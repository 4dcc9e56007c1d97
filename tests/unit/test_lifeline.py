"""Conversion processes die with the process that made the pool, even by kill -9 (ingest.lifeline).

Real OS processes converting real rasters, no mocks. ``proctree.subreaper`` makes this test process
adopt what the killed ones leave, so a process counts as gone only once it has no /proc entry left.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from datetime import UTC, datetime
from pathlib import Path

import pytest

from ingest.devtools import generator as gen
from tests import proctree
from tests.conftest import ROOT

pytestmark = pytest.mark.skipif(sys.platform != "linux", reason="/proc and PR_SET_PDEATHSIG are Linux's")

GONE_WITHIN_S = 5.0

# Converts the given bands with a pool of two, as the pipeline does; the test kills it midway.
CONVERT = """
import sys
from pathlib import Path
from ingest.collections import CogProfile
from ingest.stages.artifacts import CogSource
from ingest.stages.convert import convert_product

dest, *paths = sys.argv[1:]
sources = [CogSource(asset_key=f"b{i}", path=Path(p), kind="reflectance") for i, p in enumerate(paths)]
print("converting", flush=True)
convert_product(sources, Path(dest), CogProfile(blocksize=128), workers=2)
print("finished", flush=True)
"""

# The first pool is made in a thread that then ends; the forkserver must outlive that thread.
THREAD_THEN_MAIN = """
import os, sys, threading
from pathlib import Path
from ingest.collections import CogProfile
from ingest.stages.artifacts import CogSource
from ingest.stages.convert import convert_product
from tests.proctree import descendants

dest, *paths = sys.argv[1:]
sources = [CogSource(asset_key=f"b{i}", path=Path(p), kind="reflectance") for i, p in enumerate(paths)]

def convert(name):
    convert_product(sources, Path(dest) / name, CogProfile(blocksize=128), workers=2)
    (server,) = [p.pid for p in descendants(os.getpid()) if "multiprocessing.forkserver" in p.cmdline]
    print(name, server, flush=True)

thread = threading.Thread(target=convert, args=("thread",))
thread.start()
thread.join()
convert("main")
"""

# A child that asks to die with its parent (or, "watch", runs the fallback's watcher), then waits.
CHILD = """
import os, sys, threading, time
from ingest import lifeline

mode, parent = sys.argv[1], int(sys.argv[2])
if mode == "late":
    while os.getppid() == parent:  # the race, made certain: the parent is gone before we ask
        time.sleep(0.01)
if mode == "watch":
    threading.Thread(target=lifeline._watch_parent, args=(parent,), daemon=True).start()
else:
    lifeline.die_with_parent(parent)
print("armed", flush=True)
time.sleep(60)
"""
PARENT = """
import os, subprocess, sys, time
child = subprocess.Popen([sys.executable, "-c", sys.argv[1], sys.argv[2], str(os.getpid())])
print(child.pid, flush=True)
if sys.argv[2] != "late":
    time.sleep(60)
"""


@pytest.fixture(scope="module")
def bands(tmp_path_factory: pytest.TempPathFactory) -> list[str]:
    out = tmp_path_factory.mktemp("s2")
    safe = gen.generate_s2(out, level="L2A", sensing=datetime(2024, 1, 5, 10, 34, tzinfo=UTC), size=600, seed=5)
    return sorted(str(p) for p in safe.rglob("IMG_DATA/*/*.jp2"))


@contextmanager
def python(code: str, *args: str, tmp: Path | None = None) -> Iterator[subprocess.Popen[str]]:
    """``python -c code args`` in the repository, stdout piped; killed and reaped at the end.

    ``tmp``: its TMPDIR, where multiprocessing makes the directory a killed process cannot remove."""
    env = {**os.environ, "TMPDIR": str(tmp)} if tmp is not None else None
    proc = subprocess.Popen([sys.executable, "-c", code, *args], cwd=ROOT, env=env, stdout=subprocess.PIPE, text=True)
    try:
        yield proc
    finally:
        proc.kill()
        proc.wait(timeout=30)
        assert proc.stdout is not None
        proc.stdout.close()


def line(proc: subprocess.Popen[str]) -> str:
    assert proc.stdout is not None
    return proc.stdout.readline().strip()


def wait_for(condition: Callable[[], bool], timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout:g} s waiting for {what}")
        time.sleep(0.02)


def test_kill_9_mid_convert_leaves_no_process_behind(bands: list[str], tmp_path: Path) -> None:
    out = tmp_path / "cog"
    tree: list[proctree.Proc] = []
    work = bands * 3  # 108 bands, ~15 s: never finished before the kill
    with proctree.subreaper(), python(CONVERT, str(out), *work, tmp=tmp_path) as proc:
        try:
            assert line(proc) == "converting"

            def mid_convert() -> bool:
                assert proc.poll() is None, "the conversion ended before the kill"
                pool = [p for p in proctree.descendants(proc.pid) if p.parent() not in (proc.pid, None)]
                return len(pool) == 2 and any(out.glob(".*.partial"))  # both pool processes, a band under way

            wait_for(mid_convert, 60, "the pool converting")
            tree = proctree.descendants(proc.pid)
            server = [p for p in tree if "multiprocessing.forkserver" in p.cmdline and p.parent() == proc.pid]
            assert len(server) == 1, tree
            assert [p for p in tree if "resource_tracker" in p.cmdline], tree
            assert len([p for p in tree if p.parent() == server[0].pid]) == 2, tree
            assert len(tree) == 4, tree  # the forkserver, the resource tracker, two pool processes

            proc.send_signal(signal.SIGKILL)
            seconds, left = proctree.wait_gone(tree, GONE_WITHIN_S)
            print(f"\n{len(tree)} descendants gone {seconds:.2f} s after kill -9")
            assert left == [], f"still alive {GONE_WITHIN_S:g} s after kill -9: {left}"
            proc.wait(timeout=10)
            proctree.reap(tree)  # zombies adopted by us; nothing may stay in /proc
            assert [(p, p.stat()) for p in tree if p.stat() is not None] == []
        finally:
            proctree.kill(tree)
            proctree.reap(tree)


def test_the_forkserver_outlives_the_thread_that_first_needed_it(bands: list[str], tmp_path: Path) -> None:
    """PR_SET_PDEATHSIG follows the parent *thread*: a server started from a thread that ends would be
    killed with it. It is started from a thread of ingest.lifeline's that lives as long as the process."""
    with python(THREAD_THEN_MAIN, str(tmp_path), *bands[:4]) as proc:
        first, second = line(proc).split(), line(proc).split()
        assert proc.wait(timeout=60) == 0
    assert first[0] == "thread" and second[0] == "main"
    assert first[1] == second[1]  # the same server: not killed when the thread ended, not restarted
    assert len(list((tmp_path / "main").glob("*.tif"))) == 4


@pytest.mark.parametrize(
    ("mode", "ends"),
    [
        ("armed", "killed"),  # PR_SET_PDEATHSIG: the kernel kills the child with its parent
        ("late", "exited"),  # the parent died before the child asked: the check after asking exits
        ("watch", "exited"),  # elsewhere than Linux: the watcher thread sees the parent pid change
    ],
)
def test_a_child_dies_with_its_parent(mode: str, ends: str) -> None:
    with proctree.subreaper(), python(PARENT, CHILD, mode) as parent:
        child = int(line(parent))
        status: int | None = None
        try:
            if mode == "late":
                assert parent.wait(timeout=30) == 0
            else:
                assert line(parent) == "armed"
                parent.send_signal(signal.SIGKILL)
            started = time.monotonic()
            parent.wait(timeout=30)  # once it has exited, its child is ours (subreaper): ours to wait for
            status = proctree.wait_status(child, GONE_WITHIN_S)
            seconds = time.monotonic() - started
        finally:
            if status is None:  # it outlived its parent: ours now (subreaper), so ours to end
                os.kill(child, signal.SIGKILL)
                os.waitpid(child, 0)
    if ends == "killed":
        assert os.WIFSIGNALED(status) and os.WTERMSIG(status) == signal.SIGKILL, status
    else:
        assert os.WIFEXITED(status) and os.WEXITSTATUS(status) == 1, status
    assert seconds < 1.0, seconds
