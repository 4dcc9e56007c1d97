"""Prometheus metrics, and the one small HTTP server per long-running process that serves them.

Two kinds of metrics:

* **Process counters and histograms**, recorded where the work happens (the pipeline, the harvest):
  stage durations, bytes downloaded and uploaded, products finished, failures and retries by cause,
  harvests, the differences the last reconciliation with the provider found. Each worker process
  counts its own; Prometheus adds them up (``sum by (...)``).
* **Site gauges read from the database at scrape time** (``DatabaseCollector``): products per
  state per collection, harvest lag, watermark age, last harvest age, queue depth, unfinished
  retirements, the last audit's findings (``ingest.audits``: the numbers ``ingest status`` shows).
  Served by the scheduler only (every scheduler, leader or standby: the values are the same, take
  ``max``), so N workers do not run the same queries N times per scrape.

``serve(settings, role, ...)`` starts the server on ``INGEST_METRICS_HOST:INGEST_METRICS_PORT``
(0 = off) with ``/metrics``, ``/livez`` (the process's main loop is alive; no dependency checked, so
an outage of the database never makes an orchestrator restart every worker) and ``/readyz`` (the
database answers). ``ingest run`` asks for it twice (scheduler and worker in one process): the
second call adds its checks to the same server.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any, Literal

from prometheus_client import CONTENT_TYPE_LATEST, REGISTRY, Counter, Gauge, Histogram, generate_latest
from prometheus_client.core import GaugeMetricFamily, Metric
from prometheus_client.registry import Collector

from ingest.errors import ConfigError, IngestError, first_line
from ingest.settings import Settings, scrub

log = logging.getLogger(__name__)

Role = Literal["scheduler", "worker"]
Check = Callable[[], str | None]  # None: fine; otherwise what is wrong, in one line
Route = Callable[[str], tuple[int, bytes, str]]  # path -> status, body, content type

# --------------------------------------------------------------------------- process metrics

# a product stage takes seconds (small products) to tens of minutes (full-size conversions)
STAGE_BUCKETS = (0.5, 1, 2.5, 5, 10, 30, 60, 120, 300, 600, 1200, 1800, 3600)

STAGE_SECONDS = Histogram(
    "ingest_stage_duration_seconds",
    "Time one product spent in a pipeline stage (download, convert, upload, catalogue) that finished.",
    ["collection", "stage"],
    buckets=STAGE_BUCKETS,
)
DOWNLOADED_BYTES = Counter(
    "ingest_downloaded_bytes", "Bytes of product archives downloaded and verified.", ["collection"]
)
UPLOADED_BYTES = Counter("ingest_uploaded_bytes", "Bytes sent to the object store.", ["collection"])
PRODUCTS_FINISHED = Counter(
    "ingest_products_finished",
    "Products a pipeline run ended with, by outcome: catalogued, failed, invalid, released (process stopping).",
    ["collection", "outcome"],
)
FAILURES = Counter(
    "ingest_failures",
    "Failed product runs by stage and cause (the error's type); outcome retry = tried again later, "
    "failed = no automatic retry left, invalid = bad input, never retried.",
    ["collection", "stage", "cause", "outcome"],
)
DOWNLOAD_RETRIES = Counter(
    "ingest_download_retries", "Downloads tried again within one run (truncated, checksum mismatch).", ["collection"]
)
HARVESTS = Counter("ingest_harvests", "Harvests run, by outcome (ok, error).", ["collection", "outcome"])
DISCOVERED = Counter("ingest_discovered_products", "New products recorded by harvests.", ["collection"])
RETENTION_REMOVED = Counter(
    "ingest_retention_removed_items", "Items retention removed from the catalogue.", ["collection"]
)
_LEADER = Gauge("ingest_scheduler_leader", "1 while this scheduler process holds the leader lock, else 0.")
UPSTREAM_DIFFERENCES = Gauge(
    "ingest_upstream_differences",
    "Differences the collection's last reconciliation with the provider found, by kind: missing (listed upstream,"
    " never recorded here), gone (catalogued here, no longer listed), superseded (a newer processing listed),"
    " checksum (changed upstream). Set by the process that ran it: the leading scheduler for scheduled runs.",
    ["collection", "kind"],
)
UPSTREAM_RECONCILED = Gauge(
    "ingest_upstream_reconciled_timestamp_seconds",
    "Unix time the collection's last reconciliation with the provider finished (in this process).",
    ["collection"],
)


def upstream_reconciled(collection: str, differences: Mapping[Any, int]) -> None:
    """A reconciliation of ``collection`` found ``differences`` (kind -> count, every kind given)."""
    for kind, n in differences.items():
        UPSTREAM_DIFFERENCES.labels(collection, kind).set(n)
    UPSTREAM_RECONCILED.labels(collection).set_to_current_time()


def retention_removed(collection: str, items: int) -> None:
    if items:
        RETENTION_REMOVED.labels(collection).inc(items)


def stage_finished(collection: str, stage: str, seconds: float, *, downloaded: int = 0, uploaded: int = 0) -> None:
    STAGE_SECONDS.labels(collection, stage).observe(seconds)
    if downloaded:
        DOWNLOADED_BYTES.labels(collection).inc(downloaded)
    if uploaded:
        UPLOADED_BYTES.labels(collection).inc(uploaded)


def download_retried(collection: str, times: int) -> None:
    if times > 0:
        DOWNLOAD_RETRIES.labels(collection).inc(times)


def product_finished(collection: str, outcome: str) -> None:
    PRODUCTS_FINISHED.labels(collection, outcome).inc()


def product_failed(collection: str, stage: str, cause: str, outcome: str) -> None:
    FAILURES.labels(collection, stage, cause, outcome).inc()
    PRODUCTS_FINISHED.labels(collection, "invalid" if outcome == "invalid" else "failed").inc()


def harvested(collection: str, *, new: int = 0, ok: bool = True) -> None:
    HARVESTS.labels(collection, "ok" if ok else "error").inc()
    if new:
        DISCOVERED.labels(collection).inc(new)


# --------------------------------------------------------------------------- site gauges (database)

_STATE_SQL = "SELECT collection, state, count(*) FROM ingest.products GROUP BY 1, 2"
_LAG_SQL = (
    "SELECT collection, extract(epoch FROM now() - max(published_at)) FROM ingest.products"
    " WHERE state = 'catalogued' AND published_at IS NOT NULL GROUP BY 1"
)
_WATERMARK_SQL = (
    "SELECT collection, extract(epoch FROM now() - published_until),"
    " extract(epoch FROM now() - last_harvest_at) FROM ingest.watermarks"
)


class DatabaseCollector(Collector):
    """Site-wide gauges, read when Prometheus scrapes (nothing is cached between scrapes).

    A database that does not answer gives ``ingest_database_up 0`` and no other site gauge, rather
    than stale numbers or a failed scrape."""

    def __init__(self, settings: Settings, states: tuple[str, ...]) -> None:
        self.settings = settings
        self.states = states

    def describe(self) -> list[Metric]:
        return []  # collected on demand only; never run queries at registration time

    def collect(self) -> Iterator[Metric]:
        up = GaugeMetricFamily("ingest_database_up", "1 when the database answered this scrape's queries.")
        try:
            families = self._read()
        except Exception as exc:  # a scrape must never fail: say the database is down instead
            log.warning("metrics: site gauges not read: %s", self._clean(exc))
            up.add_metric([], 0)
            yield up
            return
        up.add_metric([], 1)
        yield up
        yield from families

    def _clean(self, exc: BaseException) -> str:
        return scrub(first_line(exc), *self.settings.secrets())

    def _read(self) -> list[Metric]:
        from ingest.adapters.queue import job_counts
        from ingest.audit.records import last_audits
        from ingest.state import retirements as rt
        from ingest.state.db import connect

        products = GaugeMetricFamily(
            "ingest_products", "Products per state per collection (ingest.products).", labels=["collection", "state"]
        )
        lag = GaugeMetricFamily(
            "ingest_harvest_lag_seconds",
            "Now minus the provider publication time of the newest catalogued product.",
            labels=["collection"],
        )
        watermark = GaugeMetricFamily(
            "ingest_watermark_age_seconds",
            "Now minus the collection's publication-time watermark.",
            labels=["collection"],
        )
        last = GaugeMetricFamily(
            "ingest_last_harvest_age_seconds", "Seconds since the collection's last harvest.", labels=["collection"]
        )
        queue = GaugeMetricFamily(
            "ingest_queue_jobs", "Product jobs waiting (todo) and running (doing).", labels=["status"]
        )
        retiring = GaugeMetricFamily(
            "ingest_retirements_pending",
            "Retired products whose item or objects are not deleted yet (a run stopped, or objects left"
            " in place: ingest.retirements.last_error); the next retention run finishes them.",
            labels=["collection"],
        )
        broken = GaugeMetricFamily(
            "ingest_audit_broken_items",
            "Items the last audit found with an asset object missing or of another size (or checksum, deep).",
            labels=["collection"],
        )
        orphans = GaugeMetricFamily(
            "ingest_audit_orphan_objects",
            "Objects under the collection's prefix the last audit found belonging to nothing.",
            labels=["collection"],
        )
        audit_age = GaugeMetricFamily(
            "ingest_audit_age_seconds", "Seconds since the collection's last audit finished.", labels=["collection"]
        )
        timeout = min(self.settings.db_connect_timeout_s, 5)
        with connect(dsn=self.settings.require_database_url(), timeout_s=timeout) as conn:
            conn.execute("SET statement_timeout = 10000")
            counts: dict[str, dict[str, int]] = {}
            for cid, state, n in conn.execute(_STATE_SQL):
                counts.setdefault(cid, dict.fromkeys(self.states, 0))[state] = int(n)
            for cid, by_state in sorted(counts.items()):
                for state, n in sorted(by_state.items()):
                    products.add_metric([cid, state], n)
            for cid, seconds in conn.execute(_LAG_SQL):
                lag.add_metric([cid], float(seconds))
            for cid, wm_age, harvest_age in conn.execute(_WATERMARK_SQL):
                watermark.add_metric([cid], float(wm_age))
                if harvest_age is not None:
                    last.add_metric([cid], float(harvest_age))
            jobs = {"todo": 0, "doing": 0}
            jobs.update(job_counts(conn, jobs))
            for status, n in sorted(jobs.items()):
                queue.add_metric([status], n)
            unfinished = rt.pending_counts(conn)
            for cid in sorted(counts.keys() | unfinished.keys()):
                retiring.add_metric([cid], unfinished.get(cid, 0))
            row = conn.execute("SELECT now()").fetchone()  # the server's clock, as the other ages
            assert row is not None
            for cid, audit in sorted(last_audits(conn).items()):
                broken.add_metric([cid], audit.broken_items)
                orphans.add_metric([cid], audit.orphan_objects)
                audit_age.add_metric([cid], (row[0] - audit.finished_at).total_seconds())
        return [products, lag, watermark, last, queue, retiring, broken, orphans, audit_age]


# --------------------------------------------------------------------------- health checks


def database_check(settings: Settings, *, cache_s: float = 5.0) -> Check:
    """Readiness: the database answers ``SELECT 1``. Remembered for ``cache_s`` so that a probe every
    second does not open a connection every second."""
    lock = threading.Lock()
    last: list[Any] = [0.0, None]  # [when, result]

    def check() -> str | None:
        with lock:
            if time.monotonic() - last[0] < cache_s:
                return last[1]  # type: ignore[no-any-return]
            last[:] = [time.monotonic(), _ping_database(settings)]
            return last[1]  # type: ignore[no-any-return]

    return check


def _ping_database(settings: Settings) -> str | None:
    from ingest.state.db import connect

    try:
        with connect(dsn=settings.require_database_url(), timeout_s=min(settings.db_connect_timeout_s, 3)) as conn:
            conn.execute("SELECT 1")
    except IngestError as exc:
        return exc.message
    except Exception as exc:
        return scrub(f"database: {type(exc).__name__}: {exc}".splitlines()[0], *settings.secrets())
    return None


def thread_alive(thread: threading.Thread) -> Check:
    """Liveness: the thread running the process's main loop has not ended."""

    def check() -> str | None:
        return None if thread.is_alive() else f"{thread.name} thread has stopped"

    return check


# --------------------------------------------------------------------------- the HTTP server


@dataclass
class Endpoint:
    """``/metrics``, ``/livez`` and ``/readyz`` on one address, served by a daemon thread; ``routes``:
    more pages by path prefix (the scheduler's ``/dashboard``, ingest.dashboard)."""

    host: str
    port: int
    live: dict[str, Check] = field(default_factory=dict)
    ready: dict[str, Check] = field(default_factory=dict)
    routes: dict[str, Route] = field(default_factory=dict)
    _server: ThreadingHTTPServer | None = None

    def start(self) -> Endpoint:
        endpoint = self

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self) -> None:
                path = self.path.split("?", 1)[0]
                if path == "/metrics":
                    self._send(200, generate_latest(REGISTRY), CONTENT_TYPE_LATEST)
                elif path in ("/livez", "/readyz"):
                    checks = endpoint.live if path == "/livez" else {**endpoint.live, **endpoint.ready}
                    problems = run_checks(checks)
                    body = "ok\n" if not problems else "".join(f"{k}: {v}\n" for k, v in problems.items())
                    self._send(200 if not problems else 503, body.encode(), "text/plain; charset=utf-8")
                elif route := endpoint.route_of(path):
                    try:
                        self._send(*route(path))
                    except Exception:  # one bad request must not take the endpoint's thread with it
                        log.exception("metrics endpoint: %s failed", path)
                        self._send(500, b"internal error (logged)\n", "text/plain; charset=utf-8")
                else:
                    known = ", ".join(["/metrics", "/livez", "/readyz", *endpoint.routes])
                    self._send(404, f"not found: {known}\n".encode(), "text/plain; charset=utf-8")

            def _send(self, status: int, body: bytes, content_type: str) -> None:
                self.send_response(status)
                self.send_header("Content-Type", content_type)
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, format: str, *args: Any) -> None:
                pass  # a probe every few seconds is not worth a log line

        try:
            server = ThreadingHTTPServer((self.host, self.port), Handler)
        except OSError as exc:
            raise ConfigError(
                f"metrics endpoint {self.host}:{self.port}: {exc.strerror or exc}; "
                "set INGEST_METRICS_PORT to a free port (0 turns the endpoint off)"
            ) from None
        server.daemon_threads = True
        self._server = server
        threading.Thread(target=server.serve_forever, name="metrics-http", daemon=True).start()
        log.info("metrics: http://%s:%d/metrics (and /livez, /readyz)", self.host, self.port)
        return self

    def route_of(self, path: str) -> Route | None:
        return next((r for p, r in self.routes.items() if path == p or path.startswith(p + "/")), None)

    def close(self) -> None:
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()
            self._server = None


def run_checks(checks: Mapping[str, Check]) -> dict[str, str]:
    """Name -> problem of every check that is not fine (a check that raises is a problem too)."""
    problems = {}
    for name, check in checks.items():
        try:
            problem = check()
        except Exception as exc:
            problem = f"{type(exc).__name__}: {exc}"
        if problem is not None:
            problems[name] = problem
    return problems


_lock = threading.Lock()
_endpoint: Endpoint | None = None
_users = 0
_site_gauges = False


def serve(
    settings: Settings,
    role: Role,
    *,
    live: Mapping[str, Check] | None = None,
    ready: Mapping[str, Check] | None = None,
    routes: Mapping[str, Route] | None = None,
) -> Endpoint | None:
    """Start (or join) this process's endpoint for ``role``; None when INGEST_METRICS_PORT is 0.

    The scheduler also registers the site gauges (``DatabaseCollector``). ``routes`` are in place
    before the first request is answered. Pair with ``stop()``."""
    global _endpoint, _users, _site_gauges
    if settings.metrics_port == 0:
        return None
    with _lock:
        fresh = _endpoint is None
        endpoint = _endpoint or Endpoint(settings.metrics_host, settings.metrics_port)
        endpoint.live.update({f"{role}:{k}": v for k, v in (live or {}).items()})
        endpoint.ready.update({f"{role}:{k}": v for k, v in (ready or {}).items()})
        endpoint.routes.update(routes or {})
        _endpoint = endpoint.start() if fresh else endpoint
        if role == "scheduler" and not _site_gauges:
            from ingest.state.machine import State

            REGISTRY.register(DatabaseCollector(settings, tuple(s.value for s in State)))
            _site_gauges = True
        _users += 1
        return _endpoint


def stop(endpoint: Endpoint | None) -> None:
    """The caller of ``serve`` is done; the server closes when the last one is."""
    global _endpoint, _users
    if endpoint is None:
        return
    with _lock:
        _users -= 1
        if _users <= 0 and _endpoint is not None:
            _endpoint.close()
            _endpoint = None
            _users = 0


def leader_gauge(holds_lock: Callable[[], bool]) -> None:
    """``ingest_scheduler_leader``: 1 while this process's scheduler holds the leader lock."""
    _LEADER.set_function(lambda: 1.0 if holds_lock() else 0.0)
