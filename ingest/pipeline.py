"""One product through the stages, each step a guarded state change recorded in the events table.

A failure is recorded, never raised past here: ``InvalidProduct`` makes the product ``invalid``
(terminal), anything retryable makes it ``failed`` with the next attempt time the retry policy
decides, other errors make it ``failed`` with no next attempt (an operator retries by hand). The
product's work directory goes away after success and after a terminal failure.

The state changes run on a ``Database`` that reopens a lost connection: a database restart in the
middle of a stage costs a retry of the next change (for ``worker_heartbeat_s``), not the product.
When it stays away longer, the failure is recorded once it answers again (for ``stall_timeout_s``:
after that the reconciler takes stalled jobs from silent workers anyway), else the product is left
in flight for the reconciler and the run says so.
"""

from __future__ import annotations

import logging
import shutil
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, replace
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import psycopg
import pystac

from ingest import metrics
from ingest.adapters import pgstac
from ingest.adapters.s3 import ObjectStore
from ingest.asset_plan import THUMBNAIL_KEY
from ingest.catalog import loading
from ingest.collections import CollectionSpec
from ingest.errors import DatabaseUnavailable, IngestError, InvalidProduct, ProductOffline, StateConflict
from ingest.quota.errors import ProviderLimited
from ingest.retry import RetryPolicy, decide
from ingest.settings import Settings, scrub
from ingest.stages import convert, describe, preview
from ingest.stages.acquire import Downloader, acquire
from ingest.stages.artifacts import CogResult, Provenance, ProviderProduct, StorageAccess
from ingest.stages.unpack import UnpackLimits
from ingest.stages.upload import upload_product
from ingest.state import repo
from ingest.state.db import Database
from ingest.state.machine import State, can_transition
from ingest.upstream import reprocessing, versions

log = logging.getLogger(__name__)

# the stage that ends in a state, and the stage a product in a state is in (where a failure happened)
STAGE_ENDING_IN = {
    State.DOWNLOADED: "download",
    State.CONVERTED: "convert",
    State.UPLOADED: "upload",
    State.CATALOGUED: "catalogue",
}
STAGE_AFTER = {
    State.CLAIMED: "download",
    State.DOWNLOADED: "convert",
    State.CONVERTED: "upload",
    State.UPLOADED: "catalogue",
}


@dataclass(frozen=True)
class Outcome:
    product_id: str
    state: State
    error: str | None = None
    seconds: float = 0.0
    released: bool = (
        False  # given back unfinished (stopping, or its provider paused): due at next_attempt_at or at once
    )
    next_attempt_at: datetime | None = None  # failed: when the retry policy wants it tried again
    left: bool = False  # in flight still: the database stayed away, nothing could be recorded


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
        online=row.get("online", True),
    )


def work_dir_of(settings: Settings, collection: str, product_id: str) -> Path:
    return settings.work_dir.resolve() / collection / product_id


def product_policy(settings: Settings) -> RetryPolicy:
    return RetryPolicy(max_attempts=settings.retry_max_attempts, base_delay_s=settings.retry_base_delay_s)


def download_policy(settings: Settings) -> RetryPolicy:
    return RetryPolicy(max_attempts=settings.download_attempts, base_delay_s=settings.download_backoff_s, jitter=0.1)


def record_failure(
    db: Database,
    product_id: str,
    state: State | Sequence[State],
    exc: BaseException,
    attempts: int,
    policy: RetryPolicy,
    *,
    now: Callable[[], datetime] = lambda: datetime.now(UTC),
    retry_for_s: float | None = None,
    give_up: Callable[[], bool] = lambda: False,
) -> Outcome:
    """Move a product that failed in ``state`` (one of them) to invalid or failed, with the cause and
    retry decision. ``retry_for_s`` and ``give_up``: how long to wait for a lost database (``Database.run``)."""
    cause = exc.message if isinstance(exc, IngestError) else f"{type(exc).__name__}: {exc}"
    if isinstance(exc, InvalidProduct):
        db.run(
            lambda c, again: repo.transition(
                c, product_id, state, State.INVALID, message=cause, set_fields={"last_error": cause}, resumed=again
            ),
            retry_for_s=retry_for_s, give_up=give_up,
        )  # fmt: skip
        return Outcome(product_id, State.INVALID, cause)
    decision = decide(policy, attempts, exc)
    next_at = now() + decision.delay if decision.retry and decision.delay is not None else None
    db.run(
        lambda c, again: repo.transition(
            c,
            product_id,
            state,
            State.FAILED,
            message=f"{cause} ({decision.reason})",
            details={"retry": decision.retry, "attempt": attempts, "error": type(exc).__name__},
            set_fields={"last_error": cause, "next_attempt_at": next_at},
            resumed=again,
        ),
        retry_for_s=retry_for_s, give_up=give_up,
    )  # fmt: skip
    return Outcome(product_id, State.FAILED, cause, next_attempt_at=next_at)


class _Stopping(Exception):
    """Raised between stages when the process is asked to stop."""


@dataclass(frozen=True)
class Services:
    """The adapters one product run talks to."""

    downloader: Downloader
    store: ObjectStore
    pgstac_dsn: str


def storage_access(settings: Settings) -> StorageAccess:
    """What items with s3:// hrefs tell clients about the store (storage extension fields)."""
    return StorageAccess(
        endpoint_url=(settings.s3_public_endpoint_url or settings.s3_endpoint_url or "").rstrip("/") or None,
        region=settings.s3_region,
        requester_pays=settings.s3_requester_pays,
    )


def _provenance(item: pystac.Item, product: ProviderProduct, now: datetime) -> Provenance:
    props = item.properties
    baseline = props.get("s2:processing_baseline") or props.get("processing:version")
    return Provenance(
        upstream_id=product.id,
        provider=product.provider,
        processing_baseline=str(baseline) if baseline is not None else None,
        ingested_at=now,
        upstream_checksum=product.checksum,
    )


def _keep_created(services: Services, item: dict[str, Any]) -> None:
    """A re-processed item keeps the ``created`` of its first load, so harvesters see an update."""
    old = pgstac.get_item(services.pgstac_dsn, item["collection"], item["id"])
    created = (old or {}).get("properties", {}).get("created")
    if created:
        item["properties"]["created"] = created


def process(
    conn: psycopg.Connection | Database,
    settings: Settings,
    product_id: str,
    *,
    spec: CollectionSpec,
    services: Services,
    allowed: tuple[State, ...] = (State.DISCOVERED, State.FAILED, State.OFFLINE),
    force: bool = False,
    should_stop: Callable[[], bool] = lambda: False,
) -> Outcome:
    """Claim ``product_id`` and take it through every stage to ``catalogued``; returns where it ended.

    ``should_stop`` is asked between stages: when it says so, the product is released (back to
    ``discovered``, its work directory removed) so that another worker can take it at once.

    Objects are uploaded before the item is loaded, so no item ever points at a missing object; a
    product found invalid after its upload has its objects removed, so nothing is left that nothing owns.

    ``conn``: a ``Database`` (reopened when lost), or a caller's own connection (used as it is).
    Raises StateConflict when someone else holds the product, DatabaseUnavailable when the database
    is away at the claim (nothing was done).
    """
    db = conn if isinstance(conn, Database) else Database.of(conn)
    started = time.monotonic()
    newer = db.run(lambda c, _: reprocessing.skip_if_superseded(c, spec, product_id, allowed))
    if newer is not None:  # an older processing: never catalogued over the newer one
        metrics.product_finished(spec.id, "superseded")
        return Outcome(product_id, State.RETIRED, f"superseded by {newer}", time.monotonic() - started)
    row = db.run(lambda c, again: repo.claim(c, product_id, allowed=allowed, resumed=again))
    product = product_from_row({**row, "eodag_collection": spec.source.eodag_collection})
    work = work_dir_of(settings, row["collection"], product_id)
    state = State.CLAIMED
    going_to: State | None = None  # the change under way: a lost COMMIT may have made it
    item_id: str | None = None
    stage_started = time.monotonic()

    def advance(new: State, message: str, details: dict[str, Any], **fields: Any) -> None:
        nonlocal state, stage_started, going_to
        src, going_to = state, new
        db.run(
            lambda c, again: repo.transition(
                c, product_id, src, new, message=message, details=details, set_fields=fields or None, resumed=again
            )
        )
        state, going_to = new, None
        seconds, stage_started = time.monotonic() - stage_started, time.monotonic()
        _stage_done(spec.id, product_id, STAGE_ENDING_IN[new], seconds, message, details)
        if new is not State.CATALOGUED and should_stop():
            raise _Stopping

    try:
        if should_stop():
            raise _Stopping
        got = acquire(
            services.downloader,
            product,
            work,
            policy=download_policy(settings),
            limits=UnpackLimits(max_total_bytes=settings.unpack_max_bytes, max_ratio=settings.unpack_max_ratio),
        )
        advance(
            State.DOWNLOADED,
            f"{got.archive_bytes} bytes, {got.files_verified} files verified",
            {"bytes": got.archive_bytes, "files": got.files_verified, "tries": got.tries, "s": round(got.seconds, 3)},
        )
        metrics.download_retried(spec.id, got.tries - 1)

        item = describe.build_item(got.safe_dir, spec)
        item.id = versions.keep_item_id(spec, product_id, item.id)
        item_id = item.id
        t0 = time.monotonic()
        cogs = convert.convert_product(
            describe.raster_sources(item, spec), work / "cog", spec.cog, workers=settings.convert_workers
        )
        cog_bytes = sum(c.size for c in cogs)
        thumb = _thumbnail(item, cogs, work, spec, product_id)
        advance(
            State.CONVERTED,
            f"{len(cogs)} COGs, {cog_bytes} bytes; "
            + (f"thumbnail {thumb.note}" if thumb.file else f"no thumbnail: {thumb.note}"),
            {
                "cogs": len(cogs), "bytes": cog_bytes, "s": round(time.monotonic() - t0, 3),
                **({"thumbnail_s": round(thumb.seconds, 3)} if thumb.file else {"no_thumbnail": thumb.note}),
            },
        )  # fmt: skip

        t0 = time.monotonic()
        stored = upload_product(
            services.store,
            collection=spec.id,
            item_id=item.id,
            cogs=cogs,
            metadata=describe.metadata_files(item, spec),
            previews=[thumb.file] if thumb.file else [],
            force=force,
            workers=settings.upload_workers,
        )
        sent = [s for s in stored.values() if s.uploaded]
        advance(
            State.UPLOADED,
            f"{len(sent)} objects sent, {len(stored) - len(sent)} unchanged",
            {"sent": len(sent), "bytes": sum(s.size for s in sent), "s": round(time.monotonic() - t0, 3)},
            s3_prefix=services.store.href(services.store.item_prefix(spec.id, item.id)),
            item_id=item.id,
        )

        def clock() -> datetime:  # the database's: one clock for the fleet's `updated` stamps
            return db.run(lambda c, _: loading.server_now(c))

        now = clock()
        provenance = _provenance(item, product, now)
        document = describe.finalize_item(
            item,
            stored=stored,
            cogs={c.asset_key: c for c in cogs},
            provenance=provenance,
            storage=storage_access(settings),
            now=now,
        )
        _keep_created(services, document)
        with versions.locked(db.connection(), spec, product_id):
            # the item first, then the older processings it marks deprecated (upstream.versions)
            mine, *older = versions.linked(db.connection(), services.pgstac_dsn, spec, product_id, document, now)
            for docs in ([mine], older) if older else ([mine],):
                loading.load_settled(
                    services.pgstac_dsn, docs, stamped=now, settle_s=settings.updated_settle_s,
                    clock=clock,
                )  # fmt: skip
            advance(State.CATALOGUED, f"item {item.id} in {spec.id}", {"item": item.id})
    except StateConflict:
        raise  # someone else moved it: not ours to record
    except ProductOffline as exc:
        # in the provider's long-term archive: waited for in a state of its own, not an attempt
        due = datetime.now(UTC) + timedelta(seconds=settings.offline_recheck_s)
        said = f"{exc.message}; looking again at {due.isoformat(timespec='seconds')}"
        recheck = {"recheck_s": settings.offline_recheck_s}
        fields = {"attempts": max(0, row["attempts"] - 1), "next_attempt_at": due, "online": False, "last_error": None}
        try:
            db.run(
                lambda c, again: repo.transition(
                    c, product_id, state, State.OFFLINE, message=said, details=recheck, set_fields=fields,
                    resumed=again,
                )
            )  # fmt: skip
        except DatabaseUnavailable as gone:
            return _left(settings, spec.id, product_id, state, "download", gone, time.monotonic() - started)
        shutil.rmtree(work, ignore_errors=True)
        log.info(
            "%s: %s", product_id, said,
            extra=_fields(spec.id, product_id, "download", time.monotonic() - stage_started, "offline"),
        )  # fmt: skip
        metrics.product_finished(spec.id, "offline")
        return Outcome(product_id, State.OFFLINE, exc.message, time.monotonic() - started, next_attempt_at=due)
    except ProviderLimited as exc:
        # the provider's limits, not the product: back to discovered, the attempt not counted, due again
        # once the provider may be asked (ingest.quota)
        due = datetime.now(UTC) + timedelta(seconds=exc.retry_in_s)
        said, details = f"released: {exc.message}", {"provider": exc.provider, "retry_in_s": round(exc.retry_in_s, 1)}
        try:
            db.run(
                lambda c, again: repo.transition(
                    c, product_id, state, State.DISCOVERED, message=said, details=details,
                    set_fields={"attempts": max(0, row["attempts"] - 1), "next_attempt_at": due}, resumed=again,
                )
            )  # fmt: skip
        except DatabaseUnavailable as gone:
            return _left(settings, spec.id, product_id, state, "download", gone, time.monotonic() - started)
        shutil.rmtree(work, ignore_errors=True)
        log.info(
            "%s: released (%s); due again in %.0f s", product_id, exc.message, exc.retry_in_s,
            extra=_fields(spec.id, product_id, "download", time.monotonic() - stage_started, "released"),
        )  # fmt: skip
        metrics.product_finished(spec.id, "released")
        return Outcome(
            product_id, State.DISCOVERED, exc.message, time.monotonic() - started, released=True, next_attempt_at=due
        )
    except _Stopping:
        stage = STAGE_AFTER.get(state, "catalogue")
        message = f"released in {state.value}: stopping"
        try:
            db.run(
                lambda c, again: repo.transition(c, product_id, state, State.DISCOVERED, message=message, resumed=again)
            )
        except DatabaseUnavailable as exc:
            return _left(settings, spec.id, product_id, state, stage, exc, time.monotonic() - started)
        shutil.rmtree(work, ignore_errors=True)
        log.info(
            "%s: released in %s (stopping)", product_id, state.value,
            extra=_fields(spec.id, product_id, stage, time.monotonic() - stage_started, "released"),
        )  # fmt: skip
        metrics.product_finished(spec.id, "released")
        return Outcome(product_id, State.DISCOVERED, None, time.monotonic() - started, released=True)
    except Exception as exc:
        failed_in, seconds = state, time.monotonic() - stage_started
        stage = STAGE_AFTER.get(failed_in, "catalogue")
        # where the product may be: a change lost with its connection may have been made
        maybe = [state] + ([going_to] if going_to is not None and can_transition(going_to, State.FAILED) else [])
        try:
            out = record_failure(
                db, product_id, maybe, exc, row["attempts"], product_policy(settings),
                retry_for_s=settings.stall_timeout_s, give_up=should_stop,
            )  # fmt: skip
        except DatabaseUnavailable as gone:
            return _left(settings, spec.id, product_id, state, stage, gone, time.monotonic() - started)
        if out.state is State.INVALID:
            _discard(services, spec, item_id, state, product_id)
            shutil.rmtree(work, ignore_errors=True)
        _stage_failed(spec.id, product_id, stage, seconds, exc, out)
        return replace(out, seconds=time.monotonic() - started)
    shutil.rmtree(work, ignore_errors=True)
    metrics.product_finished(spec.id, "catalogued")
    _replace_older(db, settings, services, spec, product_id, item.id)
    return Outcome(product_id, state, None, time.monotonic() - started)


def _replace_older(
    db: Database, settings: Settings, services: Services, spec: CollectionSpec, product_id: str, item_id: str
) -> None:
    """The reprocessing policy once a product is catalogued; a failure there is logged, never the
    product's (it is catalogued)."""
    try:
        db.run(lambda c, _: reprocessing.after_catalogued(c, settings, services.store, spec, product_id, item_id))
    except Exception as exc:  # the product is catalogued whatever happens here
        log.error("%s: older processings not retired: %s", product_id, exc, extra={"collection": spec.id})


def _thumbnail(
    item: pystac.Item, cogs: Sequence[CogResult], work: Path, spec: CollectionSpec, product_id: str
) -> preview.Thumbnail:
    """The item's thumbnail (``ingest.stages.preview``); a product without one is catalogued all the same,
    the reason in a log line and in the convert event (its history: ``ingest products show``)."""
    if spec.assets.get(THUMBNAIL_KEY) == "drop":  # the operator's choice: no reason to warn about
        thumb = preview.Thumbnail(None, "the collection's asset plan drops it", None)
        preview.attach(item, thumb)
        return thumb
    thumb = preview.make_thumbnail(item, cogs, work / "preview", product_id)
    preview.attach(item, thumb)
    if thumb.file is None:
        log.warning(
            "%s: no thumbnail: %s", product_id, thumb.note,
            extra={"product_id": product_id, "collection": spec.id, "stage": "convert", "outcome": "no thumbnail"},
        )  # fmt: skip
    return thumb


def _left(
    settings: Settings, collection: str, product_id: str, state: State, stage: str, exc: IngestError, seconds: float
) -> Outcome:
    """The database stayed away: nothing can be recorded, the product stays in flight for the reconciler
    (its job stalls with this silent worker, or the product becomes an orphan). One line says so."""
    cause = scrub(exc.message, *settings.secrets())
    log.error(
        "%s: left in %s for the reconciler (%s): %s", product_id, state.value, stage, cause,
        extra={**_fields(collection, product_id, stage, seconds, "left"), "cause": type(exc).__name__, "error": cause},
    )  # fmt: skip
    metrics.product_finished(collection, "left")
    return Outcome(product_id, state, cause, seconds, left=True)


def _fields(collection: str, product_id: str, stage: str, seconds: float, outcome: str) -> dict[str, Any]:
    """The fields of a stage's log line (top-level keys in JSON logs)."""
    return {
        "product_id": product_id,
        "collection": collection,
        "stage": stage,
        "seconds": round(seconds, 3),
        "outcome": outcome,
    }


def _stage_done(
    collection: str, product_id: str, stage: str, seconds: float, message: str, details: dict[str, Any]
) -> None:
    """One log line and the metrics of a stage that finished."""
    moved = int(details.get("bytes") or 0)
    metrics.stage_finished(
        collection,
        stage,
        seconds,
        downloaded=moved if stage == "download" else 0,
        uploaded=moved if stage == "upload" else 0,
    )
    log.info(
        "%s: %s ok in %.2f s: %s", product_id, stage, seconds, message,
        extra=_fields(collection, product_id, stage, seconds, "ok"),
    )  # fmt: skip


def _stage_failed(
    collection: str, product_id: str, stage: str, seconds: float, exc: BaseException, out: Outcome
) -> None:
    """One log line and the metrics of a stage that failed: invalid, or failed with or without a retry."""
    outcome = "invalid" if out.state is State.INVALID else "retry" if out.next_attempt_at is not None else "failed"
    cause = type(exc).__name__
    metrics.product_failed(collection, stage, cause, outcome)
    extra = {**_fields(collection, product_id, stage, seconds, outcome), "cause": cause, "error": out.error}
    if out.next_attempt_at is not None:
        extra["next_attempt_at"] = out.next_attempt_at.isoformat(timespec="seconds")
    log.warning("%s: %s in %s: %s", product_id, out.state.value, stage, out.error, extra=extra)


def _discard(services: Services, spec: CollectionSpec, item_id: str | None, state: State, product_id: str) -> None:
    """Remove what an invalid product may have stored (only its own item prefix), unless it is catalogued.

    An item id of a product that reached pgstac before (a forced re-run) keeps its objects: the
    catalogued item still points at them.
    """
    if item_id is None or state not in (State.CONVERTED, State.UPLOADED):
        return
    if pgstac.get_item(services.pgstac_dsn, spec.id, item_id) is not None:
        return
    try:
        services.store.delete_item_objects(spec.id, item_id)
    except IngestError as exc:  # the product is recorded invalid already; say what was left behind
        log.error("%s: objects under %s/%s not removed: %s", product_id, spec.id, item_id, exc)
