"""A worker process: takes product jobs from the queue until told to stop.

SIGTERM / SIGINT (procrastinate's handlers): stop fetching jobs, give the running product
``shutdown_grace_s`` to finish, then ask it to stop; the pipeline releases it at its next stage
boundary (back to ``discovered``, enqueued again) and the process exits 0.
"""

from __future__ import annotations

import logging
import os
import socket
import threading

from ingest import metrics
from ingest.adapters.queue import QUEUE, ensure_schema, make_app
from ingest.settings import Settings

log = logging.getLogger(__name__)


def worker_name() -> str:
    return f"{socket.gethostname()}:{os.getpid()}"


def run_worker(settings: Settings, *, concurrency: int | None = None, queues: list[str] | None = None) -> None:
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
    try:
        app.run_worker(
            queues=queues or [QUEUE],
            name=worker_name(),
            concurrency=n,
            wait=True,
            shutdown_graceful_timeout=settings.shutdown_grace_s,
            install_signal_handlers=True,
            update_heartbeat_interval=settings.worker_heartbeat_s,
            stalled_worker_timeout=settings.stall_timeout_s,
            fetch_job_polling_interval=1.0,
        )
    finally:
        metrics.stop(endpoint)
    log.info("worker %s: stopped", worker_name())
