"""``ingest healthcheck``: is each thing the daemon depends on there? One line per dependency.

Checks (all by default, or those named with ``--check``):

* ``database``: connects and finds the ingest schema (migrated);
* ``s3``: lists the bucket under the key prefix (the bucket exists, the credentials may list it);
* ``provider``: the provider's STAC API root (or a built-in provider's search endpoint) answers
  HTTP below 500 (reachability: a search costs the provider, a sign-in opens a session), and the
  fleet has not paused it (after refused credentials or 429/503s: ``ingest.quota``);
* ``scheduler``: some scheduler holds the leader lock (a session of a live scheduler process);
* ``http``: only with ``--url``: that URL answers 200 (a process's own ``/readyz``, the API's ``/healthz``).

Every check has the same time budget and they run at once, so a probe finishes within about one
budget whatever is down. The result is healthy only if every check passed; the CLI exits 0 or 1 (what
Docker's HEALTHCHECK and Kubernetes exec probes expect).
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import asdict, dataclass
from typing import Any

import requests

from ingest.dsn import redact, where
from ingest.errors import IngestError, first_line
from ingest.settings import Settings, scrub

CHECKS = ("database", "s3", "provider", "scheduler")
ALL_CHECKS = (*CHECKS, "http")


class Unhealthy(Exception):
    """A check's one-line finding (the check names the dependency)."""


@dataclass(frozen=True)
class CheckResult:
    name: str
    ok: bool
    detail: str
    seconds: float

    def line(self) -> str:
        return f"{'ok' if self.ok else 'FAIL':4}  {self.name:9}  {self.detail} ({self.seconds:.2f} s)"

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def check_database(settings: Settings, timeout_s: float) -> str:
    from ingest.state.db import connect

    dsn = settings.require_database_url()
    with connect(dsn=dsn, timeout_s=max(1, int(timeout_s))) as conn:
        conn.execute("SELECT set_config('statement_timeout', %s, false)", [str(int(timeout_s * 1000))])
        row = conn.execute(
            "SELECT current_setting('server_version'), to_regclass('ingest.products') IS NOT NULL"
        ).fetchone()
    assert row is not None
    version, migrated = row
    if not migrated:
        raise Unhealthy(f"database {where(dsn)} answers but has no ingest schema: run `ingest db migrate`")
    return f"{where(dsn)} answers (PostgreSQL {version}), ingest schema present"


def check_s3(settings: Settings, timeout_s: float) -> str:
    from ingest.adapters.s3 import ObjectStore

    quick = settings.model_copy(
        update={"s3_max_attempts": 1, "s3_connect_timeout_s": timeout_s, "s3_read_timeout_s": timeout_s}
    )
    store = ObjectStore.from_settings(quick)
    prefix = (store.prefix + "/" if store.prefix else "") + ".healthcheck/"
    store.list_keys(prefix)
    return f"{store.where} can be listed"


def check_provider(settings: Settings, timeout_s: float) -> str:
    from ingest.adapters.eodag import EodagProvider

    url = EodagProvider(settings).probe_url()
    try:
        r = requests.get(url, timeout=timeout_s, allow_redirects=True)
    except requests.RequestException as exc:
        raise Unhealthy(f"provider {settings.provider!r} at {url} unreachable: {first_line(exc)}") from None
    if r.status_code >= 500:
        raise Unhealthy(f"provider {settings.provider!r} at {url} answers HTTP {r.status_code}")
    paused = _provider_pause(settings, timeout_s)
    if paused:
        raise Unhealthy(f"provider {settings.provider!r} at {url} answers, but the fleet paused it: {paused}")
    return f"{settings.provider!r} at {url} answers HTTP {r.status_code}"


def _provider_pause(settings: Settings, timeout_s: float) -> str | None:
    """What the fleet knows and a probe cannot see without signing in (a login opens a session on CDSE):
    the provider paused after refusing the credentials, or after 429/503s. None when not paused or
    when the database cannot say (its own check reports that)."""
    if settings.database_url is None:
        return None
    import psycopg

    from ingest.quota import status as quota
    from ingest.state.db import connect

    try:
        with connect(settings, timeout_s=max(1, int(timeout_s))) as conn:
            (p,) = quota.read(conn, providers=[settings.provider], max_downloads=settings.provider_max_downloads)
    except (IngestError, psycopg.Error):
        return None
    if not p.paused:
        return None
    said = (f"HTTP {p.pause_status}: " if p.pause_status else "") + (p.pause_cause or "refused")
    return f"{said} (for {p.remaining_s:.0f} s more, {p.consecutive_pauses} pause(s) in a row)"


def check_scheduler(settings: Settings, timeout_s: float) -> str:
    from ingest.daemon.leader import current_holder
    from ingest.daemon.scheduler import LOCK_NAME
    from ingest.state.db import connect

    try:
        with connect(dsn=settings.require_database_url(), timeout_s=max(1, int(timeout_s))) as conn:
            holder = current_holder(conn, LOCK_NAME)
            workers = _live_workers(conn, settings.stall_timeout_s)
    except IngestError as exc:
        raise Unhealthy(f"scheduler unknown: {exc.message}") from None
    if holder is None:
        raise Unhealthy("no scheduler holds the leader lock: is `ingest scheduler` (or `ingest run`) running?")
    pid, name = holder
    who = name.removeprefix(LOCK_NAME + " ") if name else f"database session {pid}"
    return f"leader {who}; {workers} worker(s) with a recent heartbeat"


def _live_workers(conn: Any, within_s: float) -> int:
    found = conn.execute("SELECT to_regclass('procrastinate_workers') IS NOT NULL").fetchone()
    if not (found and found[0]):
        return 0
    row = conn.execute(
        "SELECT count(*) FROM procrastinate_workers WHERE last_heartbeat > now() - make_interval(secs => %s)",
        [within_s],
    ).fetchone()
    return int(row[0]) if row else 0


def check_url(url: str, timeout_s: float) -> str:
    try:
        r = requests.get(url, timeout=timeout_s)
    except requests.RequestException as exc:
        raise Unhealthy(f"{url} unreachable: {first_line(exc)}") from None
    if r.status_code != 200:
        raise Unhealthy(f"{url} answers HTTP {r.status_code}: {r.text.strip()[:200]}")
    return f"{url} answers 200"


def run(
    settings: Settings, names: Sequence[str] = CHECKS, *, url: str | None = None, timeout_s: float = 5.0
) -> list[CheckResult]:
    """Run the named checks at once; results in the order asked."""
    funcs: dict[str, Callable[[], str]] = {
        "database": lambda: check_database(settings, timeout_s),
        "s3": lambda: check_s3(settings, timeout_s),
        "provider": lambda: check_provider(settings, timeout_s),
        "scheduler": lambda: check_scheduler(settings, timeout_s),
    }
    if url is not None:
        funcs["http"] = lambda: check_url(url, timeout_s)
    chosen = [n for n in dict.fromkeys(names) if n in funcs]
    with ThreadPoolExecutor(max_workers=max(1, len(chosen)), thread_name_prefix="healthcheck") as pool:
        futures = {n: pool.submit(_timed, n, funcs[n], settings) for n in chosen}
        return [futures[n].result() for n in chosen]


def _timed(name: str, func: Callable[[], str], settings: Settings) -> CheckResult:
    started = time.monotonic()
    try:
        detail, ok = func(), True
    except (Unhealthy, IngestError) as exc:
        detail, ok = first_line(exc) if isinstance(exc, IngestError) else str(exc), False
    except Exception as exc:  # a library error we did not translate: still one line, still this check's
        detail, ok = f"{name}: {first_line(exc)}", False
    for dsn in (settings.database_url, settings.api_database_url):
        if dsn is not None:
            detail = detail.replace(dsn.get_secret_value(), redact(dsn.get_secret_value()))
    detail = scrub(detail, *settings.secrets())
    return CheckResult(name, ok, detail, time.monotonic() - started)
