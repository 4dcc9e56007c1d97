"""A worker process: takes product jobs from the queue until told to stop.

SIGTERM / SIGINT: stop fetching jobs, give the running product ``shutdown_grace_s`` to finish, then
ask it to stop; the pipeline releases it at its next stage boundary (back to ``discovered``,
enqueued again) and the process exits 0.

Losing the database: procrastinate's calls wait for a connection in its pool (30 s, psycopg_pool's
default), so a restart or a failover passes unnoticed and the product in flight carries on (the
pipeline reopens its own connection). A longer outage ends the process with exit 69, for its
supervisor to start it again once the database is back, because procrastinate 3.10's worker does
not survive it whole: its heartbeat task ends at its first failure and nothing notices (its side-task
monitor returns once the periodic deferrer, idle here, has), so the worker would go on silently and
the reconciler would take its running job and delete its row. Hence a heartbeat of our own: its
failure is the signal to stop. A job the process could not finish is given back by the reconciler
(its worker is silent); the product in flight too.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import signal
import socket
import threading
from collections.abc import Callable

import procrastinate
from procrastinate.worker import Worker

from ingest import metrics
from ingest.adapters.queue import QUEUE, ensure_schema, make_app
from ingest.daemon import shutdown
from ingest.errors import DatabaseUnavailable, first_line
from ingest.settings import Settings, scrub

log = logging.getLogger(__name__)

Stop = Callable[[str | None], None]  # stop the worker; the cause when the database is lost


def worker_name() -> str:
    return f"{socket.gethostname()}:{os.getpid()}"


def run_worker(settings: Settings, *, concurrency: int | None = None, queues: list[str] | None = None) -> None:
    """Take jobs until SIGTERM/SIGINT; raises DatabaseUnavailable (exit 69) when the queue's database
    stayed away longer than its pool waits."""
    ensure_schema(settings.require_database_url())
    app = make_app(settings)
    n = concurrency or settings.worker_concurrency
    # operating (issue 8): /metrics (stage durations, bytes, failures), /livez, /readyz; off when port 0
    endpoint = metrics.serve(
        settings,
        "worker",
        live={"loop": metrics.thread_alive(threading.current_thread())},
        ready={"database": metrics.database_check(settings)},
    )
    log.info("worker %s: taking jobs from %s, %d at a time", worker_name(), ", ".join(queues or [QUEUE]), n)
    worker = Worker(
        app,
        queues=queues or [QUEUE],
        name=worker_name(),
        concurrency=n,
        wait=True,
        shutdown_graceful_timeout=settings.shutdown_grace_s,
        install_signal_handlers=False,  # ours (below) tell a requested stop from one procrastinate made
        update_heartbeat_interval=settings.worker_heartbeat_s,
        stalled_worker_timeout=settings.stall_timeout_s,
        fetch_job_polling_interval=1.0,
    )
    try:
        lost = asyncio.run(_work(app, worker, settings))
    finally:
        metrics.stop(endpoint)
    if lost is not None:
        raise DatabaseUnavailable(f"worker {worker_name()}: queue database lost ({lost}): exiting, to be started again")
    log.info("worker %s: stopped", worker_name())


async def _work(app: procrastinate.App, worker: Worker, settings: Settings) -> str | None:
    """Run the worker until a signal (None) or until the queue's database is lost (the cause)."""
    lost: list[str] = []
    requested = asyncio.Event()

    def stop(cause: str | None) -> None:  # a Stop
        if cause is not None:
            lost.append(cause)
        requested.set()
        worker.stop()  # type: ignore[no-untyped-call]  # procrastinate leaves it unannotated

    async with app.open_async():
        restore = _on_signals(stop)
        if shutdown.requested():  # SIGTERM while starting: nothing taken yet, nothing to finish
            restore()
            return None
        beat = asyncio.create_task(_heartbeat(app, worker, settings, stop), name="ingest heartbeat")
        try:
            await worker.run()  # type: ignore[no-untyped-call]  # likewise
        except Exception as exc:
            lost.append(_cause(exc, settings))  # fetching or finishing a job failed: the pool gave up
        finally:
            restore()
            beat.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await beat
    if not lost and not requested.is_set():
        lost.append("procrastinate stopped the worker")  # a side task of its own failed
    return lost[0] if lost else None


async def _heartbeat(app: procrastinate.App, worker: Worker, settings: Settings, stop: Stop) -> None:
    """Beside procrastinate's (which ends unnoticed at its first failure): the first failure, after the
    pool's wait for a connection, stops the worker."""
    while True:
        await asyncio.sleep(settings.worker_heartbeat_s)
        if worker.worker_id is None:
            continue  # not registered yet, or unregistered while stopping
        try:
            await app.job_manager.update_heartbeat(worker.worker_id)
        except Exception as exc:
            cause = _cause(exc, settings)
            log.error("worker %s: heartbeat failed: %s; stopping", worker_name(), cause)
            stop(cause)
            return


def _on_signals(stop: Stop) -> Callable[[], None]:
    """SIGTERM / SIGINT stop the worker (once; a second one gets the default handler back)."""
    if threading.current_thread() is not threading.main_thread():
        log.warning("not the main thread: no signal handlers")
        return lambda: None
    loop = asyncio.get_running_loop()

    def on_signal(signum: signal.Signals) -> None:
        log.info("%s received: stopping after the running job", signum.name)
        restore()
        stop(None)

    def restore() -> None:
        for sig in (signal.SIGTERM, signal.SIGINT):
            loop.remove_signal_handler(sig)

    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, on_signal, sig)
    return restore


def _cause(exc: BaseException, settings: Settings) -> str:
    """procrastinate wraps psycopg's errors in a ConnectorException that says only "Database error"."""
    inner = exc.__cause__ if isinstance(exc, procrastinate.exceptions.ConnectorException) and exc.__cause__ else exc
    return scrub(first_line(inner), *settings.secrets())
