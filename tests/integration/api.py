"""Helpers for the STAC API tests: a database of their own with a read-only role, synthetic items, and
``ingest serve`` as a real OS process on a free port of 127.0.0.1."""

from __future__ import annotations

import os
import secrets
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import AbstractContextManager, contextmanager
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit, urlunsplit

import psycopg
import requests

from ingest.reader import ensure_reader
from tests import proctree
from tests.conftest import ROOT, Stack, free_port
from tests.integration.test_pgstac_load import collection, item

EUROPE = (10.0, 45.0, 11.0, 46.0)
AFRICA = (20.0, 0.0, 21.0, 1.0)


def rfc3339(t: datetime) -> str:
    return t.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def stac_item(
    cid: str, iid: str, dt: datetime, bbox: tuple[float, float, float, float], updated: datetime
) -> dict[str, Any]:
    """A small valid item with ``created``/``updated`` as ours carry them."""
    return item(cid, iid, rfc3339(dt), bbox, created=rfc3339(updated), updated=rfc3339(updated))


def with_user(dsn: str, user: str, password: str) -> str:
    parts = urlsplit(dsn)
    host = parts.netloc.rsplit("@", 1)[-1]
    return urlunsplit(parts._replace(netloc=f"{user}:{password}@{host}"))


@dataclass
class ApiDatabase:
    admin_dsn: str
    reader_dsn: str
    role: str


@contextmanager
def api_database(stack: Stack, template: str) -> Iterator[ApiDatabase]:
    """A migrated database (copy of the session template) and a read-only login role of its own;
    both dropped at the end (roles belong to the cluster, not the database)."""
    name = "api_" + secrets.token_hex(5)
    role = "reader_" + secrets.token_hex(5)
    admin = stack.database("postgres")
    with psycopg.connect(admin, autocommit=True) as conn:
        conn.execute(f"CREATE DATABASE {name} TEMPLATE {template}")
    dsn = stack.database(name)
    reader = with_user(dsn, role, secrets.token_urlsafe(18))
    try:
        ensure_reader(dsn, reader)
        yield ApiDatabase(dsn, reader, role)
    finally:
        with psycopg.connect(admin, autocommit=True) as conn:
            conn.execute(f"DROP DATABASE IF EXISTS {name} WITH (FORCE)")
            conn.execute(f"DROP ROLE IF EXISTS {role}")


def serve_env(reader_dsn: str, **extra: str) -> dict[str, str]:
    base = {k: v for k, v in os.environ.items() if not k.startswith("INGEST_")}
    return {**base, "INGEST_API_DATABASE_URL": reader_dsn, "INGEST_STACK_DIR": "/nonexistent-stack", **extra}


@dataclass
class ApiServer:
    url: str
    proc: subprocess.Popen[bytes]
    log: Path
    verify: str | bool = True  # requests' verify: the test CA's file when the server speaks TLS

    def output(self) -> str:
        return self.log.read_text(errors="replace")


def api_server(reader_dsn: str, logs: Path, *args: str, **env: str) -> AbstractContextManager[ApiServer]:
    """``python -m ingest serve`` on a free port, stopped with SIGTERM: it must exit 0 by itself."""
    return _api_server(reader_dsn, logs, args, env, None)


def tls_api_server(reader_dsn: str, logs: Path, ca: Path, *args: str, **env: str) -> AbstractContextManager[ApiServer]:
    """The same, terminating TLS itself with a certificate ``ca`` signed (INGEST_API_TLS_* in ``env``)."""
    return _api_server(reader_dsn, logs, args, env, ca)


@contextmanager
def _api_server(
    reader_dsn: str, logs: Path, args: tuple[str, ...], env: dict[str, str], tls_ca: Path | None
) -> Iterator[ApiServer]:
    port = free_port()
    log = logs / f"serve-{port}.log"
    with open(log, "wb") as out:
        proc = subprocess.Popen(
            [sys.executable, "-m", "ingest", "--json-logs", "serve", "--port", str(port), *args],
            env=serve_env(reader_dsn, **env),
            cwd=ROOT,
            stdout=out,
            stderr=subprocess.STDOUT,
        )
    scheme = "https" if tls_ca else "http"
    server = ApiServer(f"{scheme}://127.0.0.1:{port}", proc, log, str(tls_ca) if tls_ca else True)
    try:
        _wait_ready(server)
        yield server
    finally:
        code = proctree.stop(proc)
    assert code == 0, f"ingest serve did not stop cleanly on SIGTERM (exit {code}):\n{server.output()[-2000:]}"


def _wait_ready(server: ApiServer, timeout: float = 60) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if server.proc.poll() is not None:
            raise AssertionError(f"ingest serve exited with {server.proc.returncode}:\n{server.output()}")
        try:
            if requests.get(server.url + "/_mgmt/ping", timeout=1, verify=server.verify).status_code == 200:
                return
        except requests.ConnectionError:
            pass
        time.sleep(0.1)
    raise AssertionError(f"ingest serve not ready within {timeout}s:\n{server.output()}")


def publish(dsn: str, *cids: str) -> None:
    from ingest.adapters import pgstac

    pgstac.upsert_collections(dsn, [collection(cid) for cid in cids])


T0 = datetime(2026, 3, 1, tzinfo=UTC)


def hours(n: float) -> timedelta:
    return timedelta(hours=n)
