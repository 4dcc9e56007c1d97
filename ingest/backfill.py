"""Backfill: discover and enqueue every product *sensed* in a date range (and an area), resumably.

The range ``[start, end)`` is cut into chunks of sensing time (default one day, in UTC so that no
day is 23 or 25 hours long). For each chunk the provider is searched, the products are recorded
(``discovered``, once: ``ON CONFLICT DO NOTHING``) and every product that still needs ingesting
(discovered, or failed with its retry due) is enqueued; the work queue's queueing lock makes a
second enqueue of a waiting product a no-op. Only then is the chunk marked ``done`` in
``ingest.backfill_chunks``.

Why chunks: one search over years would be one long, fragile paging session; a chunk is a unit
that either finished (and is never searched again by the same backfill) or did not (and is redone
whole, harmlessly, because recording and enqueueing are idempotent). The backfill id is derived
from the collection, the range and the area, so re-running the same command resumes it.

The chunk plan of the first run is kept: re-running with another ``--chunk`` resumes the stored
plan rather than mixing chunk boundaries (and says so).
"""

from __future__ import annotations

import hashlib
import json
import logging
import math
import time
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from types import TracebackType
from typing import Any, Protocol, TextIO

import psycopg

from ingest.collections import CollectionSpec, parse_duration
from ingest.errors import ConfigError, IngestError
from ingest.harvest import Searcher, to_discovered
from ingest.stages.artifacts import ProviderProduct
from ingest.state import backfills, repo
from ingest.state.backfills import Chunk
from ingest.state.machine import State
from ingest.units import human_size

log = logging.getLogger(__name__)

BBox = tuple[float, float, float, float]

PAGE_SIZE = 100  # one insert batch per page keeps statements far below PostgreSQL's parameter limit
MAX_CHUNKS = 100_000  # 'every second of ten years' is a typo, not a plan


class UsageError(IngestError):
    """A command-line argument is wrong: fixing the command is the only cure."""

    exit_code = 64  # EX_USAGE


class BackfillRunning(IngestError):
    """Another process runs the same backfill right now."""

    exit_code = 75  # EX_TEMPFAIL: it can be run once the other one stops
    retryable = True


# ----------------------------------------------------------------------------- arguments (pure)


def _utc(value: datetime, name: str) -> datetime:
    if value.tzinfo is None:
        raise ValueError(f"{name} must be timezone-aware")
    return value.astimezone(UTC)


def parse_time(text: str, *, name: str) -> datetime:
    """``2026-03-01``, ``2026-03-01T06:00``, ``2026-03-01T06:00:00Z`` or with an offset; naive means UTC."""
    try:
        value = datetime.fromisoformat(text.strip().replace("Z", "+00:00").replace("z", "+00:00"))
    except ValueError:
        raise UsageError(
            f"--{name}: not a date or date-time: {text!r} (e.g. 2026-03-01 or 2026-03-01T06:00Z)"
        ) from None
    return value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)


def parse_step(text: str) -> timedelta:
    try:
        step = parse_duration(text)
    except ValueError as exc:
        raise UsageError(f"--chunk: {exc}") from None
    if step <= timedelta(0):
        raise UsageError(f"--chunk: must be a positive duration, got {text!r}")
    return step


def chunks(start: datetime, end: datetime, step: timedelta) -> list[tuple[datetime, datetime]]:
    """``[start, end)`` cut into consecutive half-open chunks of ``step``; the last one may be shorter.

    Arithmetic is in UTC (fixed-length hours), whatever offsets the bounds came with.
    """
    start, end = _utc(start, "start"), _utc(end, "end")
    if end <= start:
        raise UsageError(f"--end ({_iso(end)}) must be after --start ({_iso(start)})")
    if step <= timedelta(0):
        raise UsageError(f"--chunk: must be a positive duration, got {step}")
    count = math.ceil((end - start) / step)
    if count > MAX_CHUNKS:
        raise UsageError(f"--chunk {step} makes {count} chunks of [start, end); at most {MAX_CHUNKS}: take longer ones")
    # start + i * step (not repeated addition): exact integer microseconds either way, but obviously so
    return [(start + i * step, min(start + (i + 1) * step, end)) for i in range(count)]


def parse_bbox(text: str) -> BBox:
    parts = text.split(",")
    try:
        numbers = [float(p) for p in parts]
    except ValueError:
        numbers = []
    if len(numbers) != 4 or not all(math.isfinite(n) for n in numbers):
        raise UsageError(f"--bbox: expected W,S,E,N (four numbers in degrees), got {text!r}")
    w, s, e, n = numbers
    if not (-180 <= w < e <= 180 and -90 <= s < n <= 90):
        raise UsageError(
            f"--bbox: {text!r} is not W,S,E,N with -180 <= W < E <= 180 and -90 <= S < N <= 90 "
            "(across the antimeridian: use --geometry with a MultiPolygon)"
        )
    return (w, s, e, n)


_GEOMETRY_TYPES = {"Point", "MultiPoint", "LineString", "MultiLineString", "Polygon", "MultiPolygon"}


def _geometry_of(doc: Any, path: Path) -> dict[str, Any]:
    kind = doc.get("type") if isinstance(doc, dict) else None
    if kind == "FeatureCollection":
        features = doc.get("features")
        if not isinstance(features, list) or len(features) != 1:
            count = len(features) if isinstance(features, list) else "no"
            raise UsageError(f"{path}: a FeatureCollection must hold exactly one feature, it has {count}")
        return _geometry_of(features[0], path)
    if kind == "Feature":
        geometry = doc.get("geometry")
        if not isinstance(geometry, dict):
            raise UsageError(f"{path}: the feature has no geometry")
        return _geometry_of(geometry, path)
    if kind in _GEOMETRY_TYPES:
        return dict(doc)
    raise UsageError(
        f"{path}: expected a GeoJSON geometry, Feature or FeatureCollection with one feature, got type {kind!r}"
    )


MAX_GEOMETRY_BYTES = 16 * 2**20  # an area of interest, not a coastline at full resolution


def read_geometry(path: Path) -> dict[str, Any]:
    """The search area from a GeoJSON file; every problem is one line naming the file."""
    from shapely.geometry import shape
    from shapely.validation import explain_validity

    try:
        if path.stat().st_size > MAX_GEOMETRY_BYTES:
            raise UsageError(f"{path}: larger than {MAX_GEOMETRY_BYTES // 2**20} MiB: simplify the area")
        text = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        reason = exc.strerror if isinstance(exc, OSError) and exc.strerror else "not UTF-8 text"
        raise UsageError(f"{path}: cannot read the geometry file: {reason}") from None
    try:
        doc = json.loads(text)
    except json.JSONDecodeError as exc:
        raise UsageError(f"{path}: not valid JSON (line {exc.lineno}: {exc.msg})") from None
    except RecursionError:  # json's scanner stops at the interpreter's recursion limit
        raise UsageError(f"{path}: JSON nested too deeply to be a geometry") from None
    geometry = _geometry_of(doc, path)
    try:
        geom = shape(geometry)
    except Exception as exc:  # shapely raises several types for malformed coordinates
        raise UsageError(f"{path}: bad coordinates in the {geometry['type']}: {exc}") from None
    if geom.is_empty:
        raise UsageError(f"{path}: the geometry is empty")
    if not geom.is_valid:
        raise UsageError(f"{path}: invalid geometry: {explain_validity(geom)}")
    w, s, e, n = geom.bounds
    if not (-180 <= w <= e <= 180 and -90 <= s <= n <= 90):
        raise UsageError(f"{path}: coordinates must be longitude, latitude in degrees (WGS 84)")
    return geometry


@dataclass(frozen=True)
class Area:
    """Where to search: a bbox, a GeoJSON geometry, or everywhere."""

    bbox: BBox | None = None
    geometry: dict[str, Any] | None = None

    @property
    def key(self) -> str:
        """Stable short hash of the area (part of the backfill id); 'everywhere' when there is none."""
        if self.bbox is None and self.geometry is None:
            return "everywhere"
        doc = {"bbox": list(self.bbox)} if self.bbox is not None else {"geometry": self.geometry}
        canonical = json.dumps(doc, sort_keys=True, separators=(",", ":"))
        return hashlib.sha256(canonical.encode()).hexdigest()[:12]

    def describe(self) -> str:
        if self.bbox is not None:
            return "bbox " + ",".join(f"{v:g}" for v in self.bbox)
        if self.geometry is not None:
            return f"a {self.geometry['type']}"
        return "everywhere"


@dataclass(frozen=True)
class Request:
    spec: CollectionSpec
    start: datetime
    end: datetime
    step: timedelta
    area: Area

    @property
    def id(self) -> str:
        # readable in the table and the logs, and the same for the same command line
        return f"{self.spec.id}/{_iso(self.start)}/{_iso(self.end)}/{self.area.key}"


def make_request(
    spec: CollectionSpec,
    *,
    start: str,
    end: str,
    chunk: str = "1d",
    bbox: str | None = None,
    geometry_file: Path | None = None,
) -> Request:
    """Validate the command line into a request; each mistake is one UsageError line."""
    t0, t1 = parse_time(start, name="start"), parse_time(end, name="end")
    step = parse_step(chunk)
    chunks(t0, t1, step)  # refuses end <= start and absurd chunk counts before anything is touched
    if bbox is not None and geometry_file is not None:
        raise UsageError("give --bbox or --geometry, not both")
    if geometry_file is not None:
        area = Area(geometry=read_geometry(geometry_file))
    elif bbox is not None:
        area = Area(bbox=parse_bbox(bbox))
    else:
        area = Area(bbox=spec.source.bbox)  # the collection's own area of interest, if it has one
    return Request(spec, t0, t1, step, area)


def _iso(value: datetime) -> str:
    return value.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def in_chunk(product: ProviderProduct, start: datetime, end: datetime) -> bool:
    """Half-open: the provider's datetime filter is closed, so a product sensed exactly at a chunk
    boundary comes back from both neighbours; it belongs to the later one only."""
    return product.sensing is None or start <= product.sensing < end


def wants_ingest(state: str | None, due: bool) -> bool:
    """Unknown to us, or due for processing (``repo.states_of`` says which, by ``repo``'s one rule)."""
    return state is None or due


# ----------------------------------------------------------------------------- the chunk table


@dataclass
class Plan:
    backfill_id: str
    chunks: list[Chunk]

    @property
    def total(self) -> int:
        return len(self.chunks)

    @property
    def done(self) -> int:
        return sum(c.done for c in self.chunks)

    @property
    def pending(self) -> list[Chunk]:
        return [c for c in self.chunks if not c.done]


def prepare(conn: psycopg.Connection, request: Request, *, write: bool = True) -> Plan:
    """The backfill's chunk plan: the stored one when this backfill ran before, else a new one
    (stored unless ``write`` is false, as in a dry run)."""
    if write and not backfills.try_lock(conn, request.id):
        raise BackfillRunning(f"backfill {request.id} is already running in another process")
    wanted = [Chunk(a, b) for a, b in chunks(request.start, request.end, request.step)]
    try:
        stored = backfills.load_chunks(conn, request.id)
    except psycopg.errors.UndefinedTable:
        conn.rollback()
        raise ConfigError("the ingest schema has no backfill_chunks table: run `ingest db migrate`") from None
    if not stored:
        if write:
            backfills.save_chunks(conn, request.id, request.spec.id, wanted)
        return Plan(request.id, wanted)
    if [(c.start, c.end) for c in stored] != [(c.start, c.end) for c in wanted]:
        log.warning(
            "backfill %s was started with other chunks: keeping the %d of its first run", request.id, len(stored)
        )
    return Plan(request.id, stored)


def product_counts(conn: psycopg.Connection, request: Request) -> dict[str, int]:
    """Products of the backfill's collection, range and area per state (what workers made of them)."""
    area = request.area
    return backfills.product_counts(
        conn, request.spec.id, request.start, request.end, bbox=area.bbox, geometry=area.geometry
    )


# ----------------------------------------------------------------------------- running


class Enqueuer(Protocol):
    def enqueue(self, product_ids: Iterable[str]) -> int: ...


@dataclass
class Summary:
    backfill_id: str
    chunks_total: int
    chunks_done_before: int
    chunks_done: int = 0  # in this run
    found: int = 0
    new: int = 0
    enqueued: int = 0
    catalogued: int = 0  # from the products table: the whole backfill, whoever processed them
    failed: int = 0
    started: float = field(default_factory=time.monotonic)

    @property
    def elapsed_s(self) -> float:
        return time.monotonic() - self.started

    @property
    def rate(self) -> float:
        """Products found per second in this run."""
        return self.found / self.elapsed_s if self.elapsed_s > 0 else 0.0

    @property
    def eta_s(self) -> float | None:
        if not self.chunks_done:
            return None
        left = self.chunks_total - self.chunks_done_before - self.chunks_done
        return self.elapsed_s / self.chunks_done * left

    def line(self) -> str:
        return (
            f"backfill {self.backfill_id}: {self.chunks_done_before + self.chunks_done} of {self.chunks_total} "
            f"chunks done ({self.chunks_done} in this run); {self.found} products found, {self.new} new, "
            f"{self.enqueued} enqueued; so far {self.catalogued} catalogued, {self.failed} failed"
        )


class Progress(Protocol):
    def chunk_done(self, chunk: Chunk, summary: Summary) -> None: ...


def _search_chunk(provider: Searcher, request: Request, chunk: Chunk) -> Iterator[list[ProviderProduct]]:
    spec, area = request.spec, request.area
    pages = provider.search(
        spec.source.eodag_collection,
        start=chunk.start,
        end=chunk.end,
        bbox=area.bbox,
        geometry=area.geometry,
        filters=spec.source.filters,
        page_size=PAGE_SIZE,
    )
    for page in pages:
        yield [p for p in page if in_chunk(p, chunk.start, chunk.end)]


def run_chunk(conn: psycopg.Connection, provider: Searcher, queue: Enqueuer, request: Request, chunk: Chunk) -> int:
    """Search, record and enqueue one chunk, then mark it done; returns how many products were new."""
    ids: dict[str, None] = {}  # ordered and unique: a product may come back on two pages
    new = 0
    for page in _search_chunk(provider, request, chunk):
        new += len(repo.insert_discovered(conn, [to_discovered(request.spec, p) for p in page]))
        conn.commit()  # each page recorded as soon as it is read: an interrupt loses at most one page
        ids.update(dict.fromkeys(p.id for p in page))
    states = repo.states_of(conn, list(ids))
    conn.commit()
    due = [i for i in ids if wants_ingest(*states.get(i, (None, False)))]
    chunk.found, chunk.enqueued = len(ids), queue.enqueue(due)
    # done only after the enqueue: a crash in between redoes the chunk, and both steps are idempotent
    backfills.mark_done(conn, request.id, chunk)
    chunk.done = True
    return new


def run(
    conn: psycopg.Connection, provider: Searcher, queue: Enqueuer, request: Request, plan: Plan, progress: Progress
) -> Summary:
    """Every pending chunk of ``plan`` in order. An interrupt (KeyboardInterrupt) propagates; the
    chunks finished before it stay done, and ``plan`` says how many."""
    summary = Summary(plan.backfill_id, plan.total, plan.done)
    for chunk in plan.pending:
        summary.new += run_chunk(conn, provider, queue, request, chunk)
        summary.chunks_done += 1
        summary.found += chunk.found or 0
        summary.enqueued += chunk.enqueued or 0
        counts = product_counts(conn, request)
        summary.catalogued, summary.failed = counts.get(State.CATALOGUED, 0), counts.get(State.FAILED, 0)
        progress.chunk_done(chunk, summary)
    return summary


# ----------------------------------------------------------------------------- progress


def _duration(seconds: float | None) -> str:
    if seconds is None:
        return "?"
    return str(timedelta(seconds=round(seconds)))


class LogProgress:
    """One log line per chunk (JSON lines when stderr is not a terminal, with the numbers as fields)."""

    def __enter__(self) -> LogProgress:
        return self

    def __exit__(self, *_: object) -> None:
        return None

    def chunk_done(self, chunk: Chunk, summary: Summary) -> None:
        position = summary.chunks_done_before + summary.chunks_done
        log.info(
            "backfill chunk %d/%d [%s, %s): %d found, %d enqueued; in all %d found, %d enqueued, "
            "%d catalogued, %d failed; %.1f products/s, ETA %s",
            position,
            summary.chunks_total,
            _iso(chunk.start),
            _iso(chunk.end),
            chunk.found or 0,
            chunk.enqueued or 0,
            summary.found,
            summary.enqueued,
            summary.catalogued,
            summary.failed,
            summary.rate,
            _duration(summary.eta_s),
            extra={
                "backfill": summary.backfill_id,
                "chunk": position,
                "chunks": summary.chunks_total,
                "found": chunk.found,
                "enqueued": chunk.enqueued,
            },
        )


class RichProgress:
    """A progress bar on stderr: chunks done / total, elapsed, ETA; below it the products found and
    enqueued, catalogued and failed so far, and the rate (two lines: one does not fit 80 columns)."""

    def __init__(self, plan: Plan, stream: TextIO) -> None:
        from rich.console import Console, RenderableType
        from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn
        from rich.progress import TimeRemainingColumn as Remaining

        class TwoLines(Progress):
            products = "products: none yet"

            def get_renderables(self) -> Iterable[RenderableType]:
                yield self.make_tasks_table(self.tasks)
                yield self.products

        columns = (TextColumn("chunks"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn(), TextColumn("ETA"))
        self._bar = TwoLines(*columns, Remaining(), console=Console(file=stream))
        self._task = self._bar.add_task("backfill", total=plan.total, completed=plan.done)

    def __enter__(self) -> RichProgress:
        self._bar.start()
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self._bar.stop()

    def chunk_done(self, chunk: Chunk, summary: Summary) -> None:
        self._bar.products = (
            f"products: {summary.found} found · {summary.enqueued} enqueued · {summary.catalogued} catalogued · "
            f"{summary.failed} failed · {summary.rate:.1f}/s"
        )
        self._bar.update(self._task, advance=1)


def progress_for(plan: Plan, stream: TextIO) -> RichProgress | LogProgress:
    """A bar for a person at a terminal; log lines for a log file or a supervisor."""
    return RichProgress(plan, stream) if stream.isatty() else LogProgress()


# ----------------------------------------------------------------------------- dry run


@dataclass
class DryRun:
    plan: Plan
    to_ingest: list[ProviderProduct]
    catalogued: int = 0
    skipped: dict[str, int] = field(default_factory=dict)  # other states (invalid, in flight, ...) -> count

    @property
    def volume_bytes(self) -> int:
        return sum(p.size or 0 for p in self.to_ingest)

    @property
    def without_size(self) -> int:
        return sum(p.size is None for p in self.to_ingest)

    def lines(self) -> list[str]:
        out = [
            f"{p.id}  {_iso(p.sensing) if p.sensing else '?':20}  {human_size(p.size)}"
            for p in sorted(self.to_ingest, key=lambda p: (p.sensing or datetime.min.replace(tzinfo=UTC), p.id))
        ]
        estimate = f"{self.volume_bytes / 1e9:.2f} GB"
        if self.without_size:
            estimate += f" (+ {self.without_size} without a size from the provider)"
        total = f"would ingest {len(self.to_ingest)} products, {estimate}; {self.catalogued} already catalogued"
        if self.skipped:
            total += "; not ingested: " + ", ".join(f"{n} {state}" for state, n in sorted(self.skipped.items()))
        return [*out, total]


def dry_run(conn: psycopg.Connection, provider: Searcher, request: Request, plan: Plan) -> DryRun:
    """What running the backfill now would ingest (chunks already done are not searched again);
    reads the provider and the products table, writes nothing."""
    found: dict[str, ProviderProduct] = {}
    for chunk in plan.pending:
        for page in _search_chunk(provider, request, chunk):
            found.update((p.id, p) for p in page if p.id not in found)
    states = repo.states_of(conn, list(found))
    report = DryRun(plan, [])
    for pid, product in found.items():
        state, due = states.get(pid, (None, False))
        if wants_ingest(state, due):
            report.to_ingest.append(product)
        elif state == State.CATALOGUED:
            report.catalogued += 1
        else:
            key = f"{state} (retry not due)" if state == State.FAILED else str(state)
            report.skipped[key] = report.skipped.get(key, 0) + 1
    return report
