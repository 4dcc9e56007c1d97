"""One product through the stages, each step a guarded state change recorded in the events table.

A failure is recorded, never raised past here: ``InvalidProduct`` makes the product ``invalid``
(terminal), anything retryable makes it ``failed`` with the next attempt time the retry policy
decides, other errors make it ``failed`` with no next attempt (an operator retries by hand). The
product's work directory goes away after success and after a terminal failure.
"""

from __future__ import annotations

import logging
import shutil
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import psycopg

from ingest.errors import IngestError, InvalidProduct, StateConflict
from ingest.retry import RetryPolicy, decide
from ingest.settings import Settings
from ingest.stages.acquire import Downloader, acquire
from ingest.stages.artifacts import ProviderProduct
from ingest.stages.unpack import UnpackLimits
from ingest.state import repo
from ingest.state.machine import State

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Outcome:
    product_id: str
    state: State
    error: str | None = None
    seconds: float = 0.0


def product_from_row(row: dict[str, Any]) -> ProviderProduct:
    return ProviderProduct(
        id=row["id"],
        collection=row.get("eodag_collection") or "",
        provider=row["provider"],
        download_url=row["download_url"],
        checksum=row["upstream_checksum"],
        size=row["size_bytes"],
        published=row["published_at"],
        sensing=row["sensing_at"],
        geometry=row["footprint"],
    )


def work_dir_of(settings: Settings, collection: str, product_id: str) -> Path:
    return settings.work_dir.resolve() / collection / product_id


def product_policy(settings: Settings) -> RetryPolicy:
    return RetryPolicy(max_attempts=settings.retry_max_attempts, base_delay_s=settings.retry_base_delay_s)


def download_policy(settings: Settings) -> RetryPolicy:
    return RetryPolicy(max_attempts=settings.download_attempts, base_delay_s=settings.download_backoff_s, jitter=0.1)


def record_failure(
    conn: psycopg.Connection,
    product_id: str,
    state: State,
    exc: BaseException,
    attempts: int,
    policy: RetryPolicy,
    *,
    now: Callable[[], datetime] = lambda: datetime.now(UTC),
) -> Outcome:
    """Move a product that failed in ``state`` to invalid or failed, with the cause and retry decision."""
    cause = exc.message if isinstance(exc, IngestError) else f"{type(exc).__name__}: {exc}"
    if isinstance(exc, InvalidProduct):
        repo.transition(conn, product_id, state, State.INVALID, message=cause, set_fields={"last_error": cause})
        return Outcome(product_id, State.INVALID, cause)
    decision = decide(policy, attempts, exc)
    next_at = now() + decision.delay if decision.retry and decision.delay is not None else None
    repo.transition(
        conn,
        product_id,
        state,
        State.FAILED,
        message=f"{cause} ({decision.reason})",
        details={"retry": decision.retry, "attempt": attempts, "error": type(exc).__name__},
        set_fields={"last_error": cause, "next_attempt_at": next_at},
    )
    return Outcome(product_id, State.FAILED, cause)


def process(
    conn: psycopg.Connection,
    settings: Settings,
    product_id: str,
    *,
    downloader: Downloader,
    eodag_collection: str,
    allowed: tuple[State, ...] = (State.DISCOVERED, State.FAILED),
) -> Outcome:
    """Claim ``product_id`` and take it as far as the stages go; returns where it ended."""
    started = time.monotonic()
    row = repo.claim(conn, product_id, allowed=allowed)
    product = product_from_row({**row, "eodag_collection": eodag_collection})
    work = work_dir_of(settings, row["collection"], product_id)
    state = State.CLAIMED
    try:
        got = acquire(
            downloader,
            product,
            work,
            policy=download_policy(settings),
            limits=UnpackLimits(max_total_bytes=settings.unpack_max_bytes, max_ratio=settings.unpack_max_ratio),
        )
        repo.transition(
            conn,
            product_id,
            state,
            State.DOWNLOADED,
            message=f"{got.archive_bytes} bytes, {got.files_verified} files verified",
            details={"bytes": got.archive_bytes, "files": got.files_verified, "tries": got.tries, "s": got.seconds},
        )
        state = State.DOWNLOADED
    except StateConflict:
        raise  # someone else moved it: not ours to record
    except Exception as exc:
        out = record_failure(conn, product_id, state, exc, row["attempts"], product_policy(settings))
        if out.state is State.INVALID:
            shutil.rmtree(work, ignore_errors=True)
        log.warning("%s: %s in %s: %s", product_id, out.state.value, state.value, out.error)
        return Outcome(product_id, out.state, out.error, time.monotonic() - started)
    return Outcome(product_id, state, None, time.monotonic() - started)
