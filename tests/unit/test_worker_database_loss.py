"""How the worker process ends when procrastinate loses its database (``ingest.daemon.worker._work``),
with stand-ins for procrastinate's app and worker: a real outage longer than psycopg_pool's 30 s
wait would make a slow test (``tests/integration/faults/test_db_restart.py`` has the short ones)."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

import procrastinate
import psycopg
import pytest
from pydantic import SecretStr

from ingest.daemon import worker as daemon
from ingest.errors import DatabaseUnavailable
from ingest.settings import Settings

PASSWORD = "s3cret-pw"


class FakeManager:
    def __init__(self, fail_after: int | None) -> None:
        self.beats = 0
        self.fail_after = fail_after

    async def update_heartbeat(self, worker_id: int) -> None:
        self.beats += 1
        if self.fail_after is not None and self.beats > self.fail_after:
            try:  # what procrastinate raises when psycopg_pool gave up waiting for a connection
                raise psycopg.OperationalError(f"couldn't get a connection after 30.00 sec (password={PASSWORD})")
            except psycopg.OperationalError as exc:
                raise procrastinate.exceptions.ConnectorException() from exc


class FakeApp:
    def __init__(self, fail_after: int | None = None) -> None:
        self.job_manager = FakeManager(fail_after)

    @asynccontextmanager
    async def open_async(self) -> AsyncIterator[FakeApp]:
        yield self


class FakeWorker:
    """Runs until stopped, or ends by itself after ``ends_after_s`` (raising ``raises`` if given)."""

    def __init__(self, ends_after_s: float | None = None, raises: BaseException | None = None) -> None:
        self.worker_id: int | None = 7
        self.stopped = asyncio.Event()
        self.ends_after_s, self.raises = ends_after_s, raises

    def stop(self) -> None:
        self.stopped.set()

    async def run(self) -> None:
        if self.ends_after_s is None:
            await self.stopped.wait()
            return
        await asyncio.sleep(self.ends_after_s)
        if self.raises is not None:
            raise self.raises


def settings() -> Settings:
    return Settings(
        database_url=SecretStr(f"postgresql://ingest:{PASSWORD}@127.0.0.1:1/ingest"),
        worker_heartbeat_s=0.01,
        _env_file=None,  # type: ignore[call-arg]
    )


def work(app: FakeApp, worker: FakeWorker) -> str | None:
    return asyncio.run(daemon._work(app, worker, settings()))  # type: ignore[arg-type]


def test_a_failed_heartbeat_stops_the_worker_with_the_cause_and_no_password() -> None:
    app, worker = FakeApp(fail_after=3), FakeWorker()
    cause = work(app, worker)
    assert worker.stopped.is_set() and app.job_manager.beats == 4
    assert cause is not None and cause.startswith("OperationalError: couldn't get a connection after 30.00 sec")
    assert PASSWORD not in cause


def test_procrastinate_failing_on_its_own_is_the_cause() -> None:
    try:
        raise psycopg.OperationalError("consuming input failed: server closed the connection unexpectedly")
    except psycopg.OperationalError as inner:
        wrapped = procrastinate.exceptions.ConnectorException()
        wrapped.__cause__ = inner
    cause = work(FakeApp(), FakeWorker(ends_after_s=0.05, raises=wrapped))
    assert cause == "OperationalError: consuming input failed: server closed the connection unexpectedly"


def test_a_stop_nobody_asked_for_is_a_loss_too() -> None:
    assert work(FakeApp(), FakeWorker(ends_after_s=0.05)) == "procrastinate stopped the worker"


def test_run_worker_turns_the_loss_into_exit_69(monkeypatch: pytest.MonkeyPatch) -> None:
    async def lost(*_: Any) -> str:
        return "OperationalError: couldn't get a connection after 30.00 sec"

    monkeypatch.setattr(daemon, "ensure_schema", lambda dsn: False)
    monkeypatch.setattr(daemon, "_work", lost)
    with pytest.raises(DatabaseUnavailable, match=r"queue database lost \(OperationalError: couldn't get") as raised:
        daemon.run_worker(settings())
    assert raised.value.exit_code == 69
