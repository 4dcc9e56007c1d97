"""The processes under a pid, read from /proc (Linux): what a killed process leaves behind.

A pid is recorded with its start time, so a pid reused by an unrelated process later is not
mistaken for the one recorded. ``subreaper`` makes the calling process adopt the orphans of its
descendants: they are then reaped here, and "gone" is checked strictly (no entry left in /proc),
whatever PID 1 of the machine or container does with zombies.
"""

from __future__ import annotations

import contextlib
import ctypes
import os
import signal
import subprocess
import time
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

_PR_SET_CHILD_SUBREAPER = 36  # <linux/prctl.h>


@dataclass(frozen=True)
class Proc:
    pid: int
    start: int  # clock ticks after boot (field 22 of /proc/<pid>/stat)
    cmdline: str

    def stat(self) -> tuple[str, int] | None:
        """(state, parent pid), None once the process is gone (reaped) or its pid belongs to another."""
        fields = _stat(self.pid)
        if fields is None or int(fields[19]) != self.start:
            return None
        return fields[0], int(fields[1])

    def parent(self) -> int | None:
        st = self.stat()
        return st[1] if st is not None else None

    def alive(self) -> bool:
        """Running, sleeping or stopped: anything but gone or a zombie (dead, not reaped yet)."""
        st = self.stat()
        return st is not None and st[0] not in ("Z", "X")


def _stat(pid: int) -> list[str] | None:
    try:
        text = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    return text[text.rindex(")") + 2 :].split()  # the name, in parentheses, may hold spaces


def children(pid: int) -> list[int]:
    found: list[int] = []
    for task in Path(f"/proc/{pid}/task").glob("*/children"):
        try:
            found += [int(c) for c in task.read_text().split()]
        except OSError:
            continue  # the thread ended meanwhile
    return found


def descendants(pid: int) -> list[Proc]:
    """Every process below ``pid`` now (children of every thread, recursively), parents first."""
    found: list[Proc] = []
    todo = [pid]
    while todo:
        for child in children(todo.pop(0)):
            fields = _stat(child)
            if fields is None:
                continue  # gone meanwhile
            try:
                cmdline = Path(f"/proc/{child}/cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
            except OSError:
                cmdline = ""
            found.append(Proc(child, int(fields[19]), cmdline.strip()))
            todo.append(child)
    return found


def wait_gone(procs: Iterable[Proc], timeout: float) -> tuple[float, list[Proc]]:
    """Seconds until none of ``procs`` is alive (at most ``timeout``), and those still alive then."""
    procs = list(procs)
    started = time.monotonic()
    while True:
        left = [p for p in procs if p.alive()]
        elapsed = time.monotonic() - started
        if not left or elapsed >= timeout:
            return elapsed, left
        time.sleep(0.01)


def reap(procs: Iterable[Proc]) -> None:
    """Collect the exit status of those of ``procs`` that are our children (adopted by ``subreaper``)."""
    for p in procs:
        if p.stat() is None or p.alive():
            continue
        with contextlib.suppress(ChildProcessError):  # not ours to reap
            os.waitpid(p.pid, 0)  # a zombie: returns at once


def kill(procs: Iterable[Proc]) -> None:
    """SIGKILL those of ``procs`` still alive (a failed test leaves nothing running)."""
    for p in procs:
        if p.alive():
            os.kill(p.pid, signal.SIGKILL)


def _prctl(option: int, value: int) -> None:
    libc = ctypes.CDLL(None, use_errno=True)
    if libc.prctl(option, value, 0, 0, 0) != 0:
        raise OSError(ctypes.get_errno(), f"prctl({option})")


@contextlib.contextmanager
def subreaper() -> Iterator[None]:
    """While inside, orphans of this process's descendants are reparented to it (not to PID 1)."""
    _prctl(_PR_SET_CHILD_SUBREAPER, 1)
    try:
        yield
    finally:
        _prctl(_PR_SET_CHILD_SUBREAPER, 0)


def wait_status(pid: int, timeout: float) -> int:
    """The wait status of child ``pid`` (ours, or adopted through ``subreaper``) once it ends."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        done, status = os.waitpid(pid, os.WNOHANG)
        if done:
            return status
        time.sleep(0.01)
    raise AssertionError(f"process {pid} still running after {timeout:g} s")


def stop(proc: subprocess.Popen[Any], timeout: float = 20) -> int:
    """SIGTERM, then SIGKILL if ``proc`` has not ended within ``timeout``; its exit status."""
    proc.terminate()
    try:
        return proc.wait(timeout=timeout)
    except subprocess.TimeoutExpired:
        proc.kill()
        return proc.wait(timeout=10)
