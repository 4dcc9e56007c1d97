"""Conversion processes die with the worker that started them, however it dies (kill -9, OOM killer).

The processes of a worker converting a product (``ingest.stages.convert``, start method forkserver)::

    ingest worker
    ├── resource tracker   started by multiprocessing in the worker
    └── forkserver         started by multiprocessing in the worker, imports its preload list
        ├── pool process   forked by the forkserver
        └── pool process

Left alone, a killed worker leaves every one of them running: each pool process holds a write end
of the forkserver's "alive" pipe, of the resource tracker's pipe and of its own task queue, so none
of them ever reads the EOF that would end it (a tester found them alive after 5 of 27 kill -9s,
until killed by hand; tests/unit/test_lifeline.py finds all four without this module). Here:

* the forkserver asks the kernel for SIGKILL when its parent dies (``PR_SET_PDEATHSIG``): the first
  module of its preload list is ``ingest.lifeline_forkserver``, whose import does it;
* every pool process does the same in the pool's initializer (``arm_pool_process``): its parent is
  the forkserver, so the forkserver's death takes it along;
* the resource tracker needs nothing: it exits on EOF once the worker and the pool processes are
  gone, and unlinks the semaphores they leave.

Two traps. The kernel signals when the parent *thread* exits, not the process, and procrastinate
converts in threads of its own: the forkserver is started from a thread of ours that lives as long
as the process (``forkserver_context``); started from a thread that then ended, it was killed with
it and the next pool failed with EOFError. And a parent may die before its child has asked: after
asking, each checks that its parent is still the expected one and exits if not. The forkserver
cannot know the worker's pid, so it records the parent it armed itself against, and every pool
process compares that with the worker's pid it is given: a forkserver armed after the worker died
keeps no pool process, and multiprocessing ends it when the last holder of its alive pipe is gone.

Elsewhere than Linux there is no PDEATHSIG: a thread polls the parent pid instead.
"""

from __future__ import annotations

import ctypes
import multiprocessing
import multiprocessing.forkserver
import os
import signal
import sys
import threading
import time
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from multiprocessing.context import BaseContext

__all__ = ["arm_forkserver", "arm_pool_process", "die_with_parent", "forkserver_context"]

FORKSERVER_PRELOAD = "ingest.lifeline_forkserver"
_PR_SET_PDEATHSIG = 1  # <linux/prctl.h>
_ORPHANED = 1  # exit status of a process whose parent died before it could ask (nobody reads it)
_WATCH_INTERVAL_S = 0.2  # the fallback's poll: the process goes at most this long after its parent

# In the forkserver and inherited by what it forks: (forkserver pid, the parent it armed against).
_forkserver: tuple[int, int] | None = None
# One thread that is never retired: the parent thread of the forkserver (see the module docstring).
_starter = ThreadPoolExecutor(max_workers=1, thread_name_prefix="forkserver-starter")


def die_with_parent(expected_parent: int) -> None:
    """Have this process killed when its parent dies; exit now if the parent is not ``expected_parent``
    any more (it died before we asked, and the kernel would never tell)."""
    if sys.platform == "linux":
        libc = ctypes.CDLL(None, use_errno=True)
        if libc.prctl(_PR_SET_PDEATHSIG, int(signal.SIGKILL), 0, 0, 0) != 0:
            raise OSError(ctypes.get_errno(), "prctl(PR_SET_PDEATHSIG) failed")
    else:
        threading.Thread(target=_watch_parent, args=(expected_parent,), name="parent-watch", daemon=True).start()
    if os.getppid() != expected_parent:
        os._exit(_ORPHANED)


def _watch_parent(expected_parent: int) -> None:
    while os.getppid() == expected_parent:
        time.sleep(_WATCH_INTERVAL_S)
    os._exit(_ORPHANED)


def arm_forkserver() -> None:
    """In the forkserver, as it starts: die with the worker that started it."""
    global _forkserver
    parent = os.getppid()  # read before asking: if it changes meanwhile, die_with_parent exits
    die_with_parent(parent)
    _forkserver = (os.getpid(), parent)


def arm_pool_process(worker_pid: int) -> None:
    """In a pool process (the pool's initializer): die with the forkserver, hence with the worker."""
    if _forkserver is None:
        raise RuntimeError(f"not forked by a forkserver that imported {FORKSERVER_PRELOAD}: see ingest.lifeline")
    forkserver_pid, forkserver_parent = _forkserver
    die_with_parent(forkserver_pid)
    if forkserver_parent != worker_pid:
        os._exit(_ORPHANED)  # the forkserver armed itself after the worker had died: nothing would kill it


def forkserver_context(preload: Sequence[str]) -> BaseContext:
    """The forkserver context, its server running and armed, with ``preload`` imported there.

    Called before every pool: a server that something killed is started again, from our thread too.
    """
    ctx = multiprocessing.get_context("forkserver")
    ctx.set_forkserver_preload([FORKSERVER_PRELOAD, *preload])
    _starter.submit(multiprocessing.forkserver.ensure_running).result()
    return ctx
