"""Convert stage: source rasters (JPEG 2000 / GeoTIFF) of a product into validated COGs.

``convert_band`` turns one ``CogSource`` into ``dest_dir/{asset_key}.tif`` with rio-cogeo's
``cog_translate``; ``convert_product`` converts the bands of a product in parallel.

How a band is converted
-----------------------
1. Open the source; decide nodata and georeferencing (below).
2. Stage it: decode it once into an uncompressed tiled GeoTIFF (in memory up to 256 MiB of
   pixels, else in the scratch directory), reading whole rows of source blocks so that every
   JPEG 2000 tile is decoded exactly once. Band descriptions, scale/offset, colour
   interpretation and tags go along.
3. ``cog_translate`` the staged copy with a profile built from the ``CogProfile``.
4. ``cog_validate`` the result (not valid: ``IngestError`` naming the asset), hash it, and
   ``os.replace`` it to ``dest_dir/{asset_key}.tif``. Everything is written in a hidden scratch
   directory ``dest_dir/.{asset_key}.{token}.partial/`` (rio-cogeo's own temporary file too),
   removed whatever happens: readers see the old COG or the new one, never a partial one.

Why stage instead of the VRT of DESIGN.md's pitfall: real Sentinel-2 JPEG 2000 files carry their
georeferencing in a GMLJP2 box, rasterio reports an empty GCP list *with* a CRS, rio-cogeo 7.0.4
takes its GCP branch and GDAL 3.10 fails with "Cannot invert geotransform". A VRT (``WarpedVRT``
or a VRT copy) fixes that, and we used one first; but rio-cogeo reads its source through GDAL's
warper, and the warper on a JPEG 2000 decodes the same tiles again and again. Measured on a
generated 5490 px B04 (1024 px tiles, like ESA's): reading it through a WarpedVRT in 512 px
windows took 55 s, through a plain VRT 7.5 s, a tiled GeoTIFF through the warper 0.2 s, the
staging copy 4 s (2 s with two decoding threads). One band converted in 78 s through the VRT,
in 8.5 s staged; the 33 bands of that product in 338 s and 42-61 s. The staged GeoTIFF has a
plain geotransform, which avoids the GMLJP2 quirk too (checked on the real fixture B01).

nodata: the source's own, else the product's declaration (Sentinel-2 ``MTD_MSIL1C/2A.xml``
``Special_Values`` NODATA, i.e. 0: the JPEG 2000 bands carry no nodata flag), else 0 for GCP
rasters (Sentinel-1 GRD: the product specification fills the swath borders with DN 0), else none.

Sentinel-1 GRD measurements (GCPs, no geotransform): **we keep the GCPs in the COG**, as the
collection spec announces and as the public ``sentinel-s1-l1c`` COGs do, rather than warping to a
map grid. The pixels stay the original amplitudes in the original line/pixel geometry, so the
annotation's calibration and noise vectors (indexed by line and pixel) still apply; nothing is
resampled and no nodata wedges are added (GDAL's EPSG:4326 grids of the two real fixtures have
42 % and 51 % more pixels than the swaths). The file stays georeferenced for GDAL-based clients
(rasterio, rio-tiler/TiTiler, QGIS, gdalwarp), which warp GCP rasters on the fly; the tests
check that GDAL puts the COG exactly where it puts the source. The result's ``epsg`` is the
GCPs' CRS (4326), as stactools states for GRD items. Mechanics: rio-cogeo would fit one affine
to the GCPs and resample along it, so the staged copy carries that affine (an identity warp for
rio-cogeo: pixels untouched) and the real GCPs reach rio-cogeo's output through the creation
profile (GeoTIFF then stores GCPs instead of the affine).

Profile: compression and level (``ZLEVEL`` deflate 1-12, ``ZSTD_LEVEL`` zstd 1-22; lzw has
none), square blocks of ``blocksize`` (overviews too), ``overview_levels`` overviews (None: halve
until the image fits one block), resampled per kind (nearest for classes and masks, average for
continuous data). Predictor: 1 for classification and mask bands, 3 only for floats (an integer
band asked for 3 gets 2), otherwise the profile's. Measured, deflate, predictor 1 vs 2: real SCL
(fixture, 549 px) 8.4 vs 11.2 KB, generated SCL 20 m (2745 px) 0.13 vs 0.16 MB and faster: 1
for classes. But a real true-colour image (fixture img-8bit.jp2, 343 px RGB) 181 vs 160 KB, the
generated TCI 10 m (5490 px) 74.5 vs 60.2 MB in the same 18 s: visual bands keep the profile's
predictor, although the first plan was to force 1 for them too.

Errors: a source GDAL cannot open or decode (garbage, truncated JPEG 2000: the damage shows when
its tiles are decoded, all of which happens while staging) -> ``InvalidProduct("{asset}: cannot
read raster {name}: {cause}")``. Anything later (staging writes, rio-cogeo, validation) is ours
or the machine's -> ``IngestError``.

Parallelism and GDAL settings
-----------------------------
Measured on this 2-core VM, all 33 raster assets of a generated L2A product of 5490 px (189 MB of
JPEG 2000, 573 MB decoded), wall seconds. A colleague's test runs shared the two cores, so
figures move by up to 25 %; ranges are repeated runs.

    sequential, 1 decoding thread ............................ 42-61
    sequential, GDAL_NUM_THREADS=ALL_CPUS (JPEG 2000 decoding)    38
    sequential, GTiff writer NUM_THREADS=ALL_CPUS only ........   46
    sequential, both ..........................................   47
    process pool x 2, 1 thread each ........................ 24-31
    thread pool x 2, 1 thread each ......................... 23-29
    process pool x 2, ALL_CPUS threads each (oversubscribed)    42
    GDAL_CACHEMAX 64 / 256 / 1024 MB, sequential ...... 53 / 43 / 51 (noise: tiles are decoded once)

Chosen: a process pool with one worker per core (``workers``), each decoding with the cores the
workers leave idle (one each when workers = cores; all of them for a single worker). Threads were
as fast here, but a worker process confines a GDAL crash on hostile input (BrokenProcessPool ->
IngestError, the daemon lives on), gives its memory back after each product, and no GIL caps
more cores. The pool forks from a forkserver that has imported this module: workers start in
milliseconds (the product tests went from 4.5 to 1.8 s). The forkserver and the pool processes
die with the process that made the pool, even by kill -9 (``ingest.lifeline``). The writer's
NUM_THREADS stays 1 (no gain beyond noise, and it would compete with the other worker);
GDAL_CACHEMAX 256 MB per process.

benchmarks/convert.py (same machine, same noise; MB/s of decoded pixels):

    size   one 10 m band: gdal_translate -of COG   GDAL 3.10 COG driver   convert_band
    5490   (60 MB)        5.98 s (GDAL 3.6.2)      12.9 s                 6.26 s (x1.05)
           second run     6.12 s                   11.7 s                 5.55 s (x0.91)
    10980  (241 MB)       39.0 s                   52.2 s                 22.0 s (x0.56)

    size   33 bands: sequential convert_band       convert_product (2 workers)
    5490   42.0 s (13.6 MB/s)                      23.7 s (24.2 MB/s), speed-up 1.77
    10980  181 s  (12.7 MB/s)                      145 s  (15.8 MB/s), speed-up 1.25

A second 5490 run, while a colleague's full test suite ran: 44.7 s vs 38.7 s (1.16); then
sequential and convert_product interleaved on one product: 42.9 / 21.6 s and 39.4 / 30.8 s.
At full size both workers were busy all the time (279 s of band work in 141 s) but each band
took longer: the VM keeps ~1 GB of page cache, so the 752 MB of JPEG 2000 and 1.3 GB of COGs go
to disk (iowait up to 64 %), and the concurrent test run kept 3-5 processes runnable on 2 cores.
Memory: peak RSS of a process converting one 10980 px band is 0.77 GB for a uint16 band (241 MB
decoded) and 1.09 GB for the TCI (362 MB): the staged copy, rio-cogeo's image with its overviews
and the GDAL cache. Two workers need ~2.2 GB at worst.
"""

from __future__ import annotations

import logging
import math
import multiprocessing
import os
import re
import shutil
import time
import uuid
import warnings
import xml.etree.ElementTree as ET
from collections.abc import Iterator, Sequence
from concurrent.futures import FIRST_EXCEPTION, Future, ProcessPoolExecutor, wait
from concurrent.futures.process import BrokenProcessPool
from contextlib import ExitStack, contextmanager, nullcontext
from dataclasses import dataclass, replace
from functools import lru_cache
from multiprocessing.synchronize import Event
from pathlib import Path
from typing import Any

import numpy as np
import rasterio
from rasterio.control import GroundControlPoint
from rasterio.crs import CRS
from rasterio.io import DatasetReader, DatasetWriter, MemoryFile
from rasterio.transform import Affine, from_gcps
from rasterio.windows import Window

from ingest import lifeline
from ingest.collections import BandKind, CogProfile, Resampling
from ingest.errors import ConfigError, IngestError, InvalidProduct
from ingest.stages.artifacts import CogResult, CogSource
from ingest.stages.checksums import file_digest

__all__ = ["GDAL_ENV", "convert_band", "convert_product"]

# GDAL settings while converting (see "Parallelism and GDAL settings" above for the figures).
# PAM off: no .aux.xml side-cars next to sources (possibly read-only) or outputs.
GDAL_ENV: dict[str, str | int] = {
    "GDAL_CACHEMAX": 256,  # MB per process; 64..1024 made no difference, this bounds memory
    "GDAL_PAM_ENABLED": "NO",
}
# Creation option NUM_THREADS of the GeoTIFF writer (compression of the final COG): no gain measured.
_WRITER_THREADS = "1"
# Our staged copy and rio-cogeo's own image (plus overviews) are kept in memory up to this many
# bytes of pixels (every Sentinel-2 band: a 10980 px TCI is 360 MB), above it on disk in the
# scratch directory (a full Sentinel-1 GRD measurement, 870 MB).
_IN_MEMORY_BYTES = 256 << 20
_S1_FILL_VALUE = 0.0  # DN of the no-data borders of Sentinel-1 GRD measurements
# class ids and flags: differencing breaks their long runs (real SCL: 25 % larger with predictor 2).
# Not "visual": 8-bit colour composites of real scenes gain from it (see the module docstring).
_NO_DIFFERENCING: frozenset[BandKind] = frozenset({"classification", "mask"})
_ASSET_KEY = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.\-]{0,127}$")
_MAX_LEVEL = {"deflate": 12, "zstd": 22}
_LEVEL_OPTION = {"deflate": "ZLEVEL", "zstd": "ZSTD_LEVEL"}
_S2_METADATA = ("MTD_MSIL2A.xml", "MTD_MSIL1C.xml")
_S2_METADATA_MAX_BYTES = 16 << 20
_STAGE_BLOCK = 512
_MIN_STRIP_ROWS = 512  # Sentinel-1 GRD measurements are strips of one row: copy 512 at a time
_PRODUCT_ROOT_DEPTH = 6  # SAFE/GRANULE/<granule>/IMG_DATA/R10m/<band>.jp2
# What GDAL says, as warnings, when GCPs are handed to rio-cogeo's output (see _translate).
_EXPECTED_GCP_NOISE = ("geotransform previously set is going to be cleared", "creation option GCPS")


# ---------------------------------------------------------------------------------------------
# Public API
# ---------------------------------------------------------------------------------------------


def convert_band(source: CogSource, dest_dir: Path, profile: CogProfile) -> CogResult:
    """Convert one source raster into the validated COG ``dest_dir/{asset_key}.tif``.

    Decodes with one thread: several conversions are expected to run at once (``convert_product``).
    Raises ``InvalidProduct`` for a source that cannot be read, ``IngestError`` otherwise.
    """
    return _convert(source, Path(dest_dir), profile, token=uuid.uuid4().hex[:12])


def convert_product(
    sources: Sequence[CogSource], dest_dir: Path, profile: CogProfile, *, workers: int | None = None
) -> list[CogResult]:
    """Convert the bands of a product in parallel; results in the order of ``sources``.

    ``workers`` processes (default: one per CPU core) convert one band each at a time, largest
    files first. The first failure cancels the bands not started yet and is raised (the first
    failed band in input order) once the running ones have finished: GDAL cannot be interrupted,
    so that takes at most one band's time. Then every file this call wrote, finished COGs
    included, is removed.
    """
    dest_dir = Path(dest_dir)
    keys = [s.asset_key for s in sources]
    if len(set(keys)) != len(keys):
        raise IngestError(f"duplicate asset keys in one product: {sorted({k for k in keys if keys.count(k) > 1})}")
    if not sources:
        return []
    token = uuid.uuid4().hex[:12]
    n = max(1, min(workers or os.cpu_count() or 1, len(sources)))
    finished: list[CogResult] = []
    try:
        if n == 1:  # no pool for one band or one worker: same code, no process start-up
            for source in sources:
                finished.append(_convert(source, dest_dir, profile, token=token, threads=_decode_threads(1)))
            return finished
        return _convert_in_pool(sources, dest_dir, profile, token=token, workers=n, finished=finished)
    except BaseException:
        _remove_outputs(dest_dir, token, finished)
        raise


# ---------------------------------------------------------------------------------------------
# Parallel conversion
# ---------------------------------------------------------------------------------------------

# Set in each worker process by the pool initializer: once the parent saw a failure, tasks that
# were already handed to a worker (the executor queues one ahead) return without converting.
_cancelled: Event | None = None


def _init_worker(cancelled: Event, worker_pid: int) -> None:
    global _cancelled
    lifeline.arm_pool_process(worker_pid)  # a killed worker must not leave its pool behind
    _cancelled = cancelled


def _task(source: CogSource, dest_dir: Path, profile: CogProfile, token: str, threads: int) -> CogResult | None:
    if _cancelled is not None and _cancelled.is_set():
        return None
    return _convert(source, dest_dir, profile, token=token, threads=threads)


def _decode_threads(workers: int) -> int:
    """JPEG 2000 decoding threads per worker: the cores the workers leave idle (see figures above)."""
    return max(1, (os.cpu_count() or 1) // workers)


def _convert_in_pool(
    sources: Sequence[CogSource],
    dest_dir: Path,
    profile: CogProfile,
    *,
    token: str,
    workers: int,
    finished: list[CogResult],
) -> list[CogResult]:
    """Convert in ``workers`` processes; on failure ``finished`` holds the COGs already written."""
    ctx = _pool_context()
    cancelled = ctx.Event()
    init = (cancelled, os.getpid())
    with ProcessPoolExecutor(workers, mp_context=ctx, initializer=_init_worker, initargs=init) as pool:
        # largest files first, so that no worker is left alone with a big band at the end
        futures: dict[int, Future[CogResult | None]] = {
            i: pool.submit(_task, sources[i], dest_dir, profile, token, _decode_threads(workers))
            for i in sorted(range(len(sources)), key=lambda i: -_file_size(sources[i].path))
        }
        done, _ = wait(futures.values(), return_when=FIRST_EXCEPTION)
        if any(f.exception() is not None for f in done):
            cancelled.set()
            for f in futures.values():
                f.cancel()
            wait(futures.values())  # running bands finish (GDAL cannot be interrupted); removed by the caller
            finished.extend(r for f in futures.values() if _succeeded(f) and (r := f.result()) is not None)
            raise _first_error(sources, [futures[i] for i in range(len(sources))])
        return [_result_of(futures[i]) for i in range(len(sources))]


def _pool_context() -> multiprocessing.context.BaseContext:
    # forkserver: workers are forked from a clean single-threaded server, never from the daemon
    # (forking a process whose other threads may hold GDAL or logging locks can deadlock). The
    # server imports this module once, so workers start without importing GDAL again. The server
    # and its workers die with this process, however it dies (see ingest.lifeline).
    return lifeline.forkserver_context([__name__])


def _file_size(path: Path) -> int:
    try:
        return Path(path).stat().st_size
    except OSError:
        return 0  # reported properly by the worker that tries to read it


def _succeeded(future: Future[CogResult | None]) -> bool:
    return not future.cancelled() and future.exception() is None


def _first_error(sources: Sequence[CogSource], futures: Sequence[Future[CogResult | None]]) -> BaseException:
    """The failure of the band that comes first in input order (deterministic for callers)."""
    errors = [
        (s.asset_key, exc)
        for s, f in zip(sources, futures, strict=True)
        if not f.cancelled() and (exc := f.exception())
    ]
    if real := [exc for _, exc in errors if not isinstance(exc, BrokenProcessPool)]:
        return real[0]
    if errors:  # a worker died (a GDAL crash, the OOM killer): every band not done is marked broken
        return IngestError(f"a conversion worker died converting one of {', '.join(k for k, _ in errors)}")
    return IngestError("conversion cancelled")  # unreachable: called after a failure


def _result_of(future: Future[CogResult | None]) -> CogResult:
    result = future.result()
    if result is None:  # only a cancelled task returns None, and no task was cancelled here
        raise IngestError("conversion cancelled")
    return result


def _remove_outputs(dest_dir: Path, token: str, finished: Sequence[CogResult]) -> None:
    """Remove what a failed call wrote: the COGs it completed and any scratch directory left."""
    for result in finished:
        result.path.unlink(missing_ok=True)
    for scratch in dest_dir.glob(f".*.{token}.partial"):
        shutil.rmtree(scratch, ignore_errors=True)


# ---------------------------------------------------------------------------------------------
# One band
# ---------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class _Plan:
    """What we learned from the source and decided for the output."""

    nodata: float | None
    gcps: tuple[list[GroundControlPoint], CRS] | None
    crs: CRS
    transform: Affine  # the source's, or for GCP rasters the affine fit of the GCPs (a stand-in)
    in_memory: bool  # stage the pixels (and let rio-cogeo stage its image) in memory, not on disk


def _convert(source: CogSource, dest_dir: Path, profile: CogProfile, *, token: str, threads: int = 1) -> CogResult:
    key = source.asset_key
    if not _ASSET_KEY.fullmatch(key):
        raise IngestError(f"asset key {key!r} cannot name a file")
    started = time.perf_counter()
    dest_dir.mkdir(parents=True, exist_ok=True)
    final = dest_dir / f"{key}.tif"
    scratch = dest_dir / f".{key}.{token}.partial"
    scratch.mkdir()
    try:
        tmp = scratch / final.name
        with rasterio.Env(**GDAL_ENV, GDAL_NUM_THREADS=threads), _open_source(source) as src:
            options = _creation_options(profile, source.kind, src.dtypes[0])  # config errors before any work
            plan = _plan(source, src)
            with _staged(source, src, plan, scratch) as staged:
                _translate(source, staged, plan, tmp, profile, options)
            _validate(key, tmp)
            result = _describe(key, tmp, final)
        os.replace(tmp, final)
    finally:
        shutil.rmtree(scratch, ignore_errors=True)
    return replace(result, seconds=time.perf_counter() - started)


@contextmanager
def _open_source(source: CogSource) -> Iterator[DatasetReader]:
    try:
        src = rasterio.open(source.path)
    except (rasterio.errors.RasterioError, OSError) as exc:
        raise _unreadable(source, exc) from exc
    with src:
        yield src


def _plan(source: CogSource, src: DatasetReader) -> _Plan:
    gcps = src.gcps if src.gcps[0] and src.gcps[1] is not None else None
    if gcps is not None:
        crs, transform = gcps[1], from_gcps(gcps[0])
    elif src.crs is not None:
        crs, transform = src.crs, src.transform
    else:
        raise InvalidProduct(f"{source.asset_key}: raster {source.path.name} is not georeferenced")
    raw_bytes = src.width * src.height * src.count * np.dtype(src.dtypes[0]).itemsize
    return _Plan(
        nodata=_nodata_of(src, Path(source.path), has_gcps=gcps is not None),
        gcps=gcps,
        crs=crs,
        transform=transform,
        in_memory=raw_bytes <= _IN_MEMORY_BYTES,
    )


@contextmanager
def _staged(source: CogSource, src: DatasetReader, plan: _Plan, scratch: Path) -> Iterator[DatasetReader]:
    """The source decoded once into an uncompressed tiled GeoTIFF with plain georeferencing.

    rio-cogeo reads its source through a WarpedVRT; GDAL's warper on a JPEG 2000 decodes the
    same tiles over and over (5490 px band: 55 s through the warper, 4 s decoding each tile
    once). Staging also sidesteps the empty-GCP-list-plus-CRS of GMLJP2 files that makes
    rio-cogeo fail ("Cannot invert geotransform"), gives GCP rasters their stand-in affine and
    carries the nodata we decided.
    """
    profile: dict[str, Any] = {
        "driver": "GTiff",
        "width": src.width,
        "height": src.height,
        "count": src.count,
        "dtype": src.dtypes[0],
        "crs": plan.crs,
        "transform": plan.transform,
        "nodata": plan.nodata,
        "tiled": True,
        "blockxsize": _STAGE_BLOCK,
        "blockysize": _STAGE_BLOCK,
        "interleave": "pixel" if src.count > 1 else "band",
        "bigtiff": "IF_SAFER",
    }
    with ExitStack() as stack:
        if plan.in_memory:
            target: str = stack.enter_context(MemoryFile(ext=".tif")).name
        else:
            target = str(scratch / "staged.tif")
        try:
            with rasterio.open(target, "w", **profile) as dst:
                _copy_metadata(src, dst)
                _describe_bands(source, dst)
                _copy_pixels(source, src, dst)
        except (rasterio.errors.RasterioError, OSError) as exc:
            raise IngestError(f"{source.asset_key}: cannot stage {source.path.name}: {_cause(exc)}") from exc
        yield stack.enter_context(rasterio.open(target))


def _copy_pixels(source: CogSource, src: DatasetReader, dst: DatasetWriter) -> None:
    """Copy in strips of whole source block rows: each JPEG 2000 tile is decoded exactly once,
    and a strip spans several tiles that GDAL decodes in parallel when GDAL_NUM_THREADS allows."""
    block_rows = src.block_shapes[0][0]
    rows = block_rows * max(1, math.ceil(_MIN_STRIP_ROWS / block_rows))
    for row in range(0, src.height, rows):
        window = Window(0, row, src.width, min(rows, src.height - row))
        try:
            data = src.read(window=window)
        except (rasterio.errors.RasterioError, OSError) as exc:
            raise _unreadable(source, exc) from exc
        dst.write(data, window=window)


def _copy_metadata(src: DatasetReader, dst: DatasetWriter) -> None:
    """Band descriptions, scale/offset, colour interpretation and tags travel with the pixels."""
    dst.colorinterp = src.colorinterp
    dst.scales, dst.offsets = src.scales, src.offsets
    dst.update_tags(**src.tags())
    for bidx in src.indexes:
        if src.descriptions[bidx - 1]:
            dst.set_band_description(bidx, src.descriptions[bidx - 1])
        if tags := src.tags(bidx):
            dst.update_tags(bidx, **tags)


def _describe_bands(source: CogSource, dst: DatasetWriter) -> None:
    """What the item says of each band (scale, offset, unit, description) overrides the source's, so the
    COG describes its pixels as the item does: a GDAL reader unscales to reflectance by itself."""
    if len(source.bands) != dst.count:
        return  # the item does not describe these bands one by one: the source's own metadata stays
    dst.scales = [b.scale if b.scale is not None else s for b, s in zip(source.bands, dst.scales, strict=True)]
    dst.offsets = [b.offset if b.offset is not None else o for b, o in zip(source.bands, dst.offsets, strict=True)]
    dst.units = [b.unit or u or "" for b, u in zip(source.bands, dst.units, strict=True)]
    for bidx, band in enumerate(source.bands, start=1):
        if band.description:
            dst.set_band_description(bidx, band.description)


def _translate(
    source: CogSource, staged: DatasetReader, plan: _Plan, dst: Path, profile: CogProfile, options: dict[str, Any]
) -> None:
    from rio_cogeo.cogeo import cog_translate

    if plan.gcps is not None:
        # rio-cogeo opens its temporary image and writes the COG with these options: the GCPs
        # reach both, and GeoTIFF stores GCPs instead of the stand-in affine of the staged copy.
        options = {**options, "gcps": plan.gcps[0]}
    try:
        with _without_gcp_noise() if plan.gcps is not None else nullcontext(), warnings.catch_warnings():
            warnings.simplefilter("ignore")  # rio-cogeo's deprecation noise, not ours to act on
            cog_translate(
                staged,
                dst,
                options,
                nodata=plan.nodata,
                overview_level=_overview_level(profile, staged.width, staged.height),
                overview_resampling=_resampling(profile, source),
                in_memory=plan.in_memory,
                forward_band_tags=True,
                quiet=True,
                config={"GDAL_TIFF_OVR_BLOCKSIZE": profile.blocksize},
            )
    except (rasterio.errors.RasterioError, OSError) as exc:
        # the source was decoded completely while staging: this is not the product's fault
        raise IngestError(f"{source.asset_key}: COG conversion of {source.path.name} failed: {_cause(exc)}") from exc


class _DropGcpNoise(logging.Filter):
    def filter(self, record: logging.LogRecord) -> bool:
        return not any(text in record.getMessage() for text in _EXPECTED_GCP_NOISE)


@contextmanager
def _without_gcp_noise() -> Iterator[None]:
    """Keep the two warnings our GCP hand-over provokes out of the logs (they are expected)."""
    logger, noise = logging.getLogger("rasterio._env"), _DropGcpNoise()
    logger.addFilter(noise)
    try:
        yield
    finally:
        logger.removeFilter(noise)


def _validate(key: str, path: Path) -> None:
    from rio_cogeo.cogeo import cog_validate

    valid, errors, _warnings = cog_validate(path, quiet=True)
    if not valid:
        raise IngestError(f"{key}: output is not a valid COG: {'; '.join(errors)}")


def _describe(key: str, tmp: Path, final: Path) -> CogResult:
    with rasterio.open(tmp) as out:
        crs = out.crs if out.crs is not None else out.gcps[1]
        return CogResult(
            asset_key=key,
            path=final,
            size=tmp.stat().st_size,
            sha256=file_digest(tmp),
            dtype=out.dtypes[0],
            nodata=out.nodata,
            shape=(out.height, out.width),
            epsg=crs.to_epsg() if crs is not None else None,
        )


# ---------------------------------------------------------------------------------------------
# Source: nodata
# ---------------------------------------------------------------------------------------------


def _nodata_of(src: DatasetReader, path: Path, *, has_gcps: bool) -> float | None:
    if src.nodata is not None:
        return float(src.nodata)
    declared = _product_nodata(path.resolve().parent)
    if declared is not None:
        return declared
    return _S1_FILL_VALUE if has_gcps else None


def _product_nodata(folder: Path) -> float | None:
    """NODATA of the Sentinel-2 product metadata found above ``folder`` (None if there is none)."""
    for parent in [folder, *folder.parents][:_PRODUCT_ROOT_DEPTH]:
        for name in _S2_METADATA:
            if (parent / name).is_file():
                return _s2_declared_nodata(parent / name)
    return None


@lru_cache(maxsize=64)
def _s2_declared_nodata(mtd: Path) -> float | None:
    data = mtd.read_bytes()[:_S2_METADATA_MAX_BYTES]
    if b"<!DOCTYPE" in data or b"<!ENTITY" in data:
        return None
    try:
        root = ET.fromstring(data)  # noqa: S314 - DTDs refused above, no external entities in ElementTree
    except ET.ParseError:
        return None
    for special in root.iter("Special_Values"):
        if (special.findtext("SPECIAL_VALUE_TEXT") or "").strip().upper() == "NODATA":
            try:
                return float(special.findtext("SPECIAL_VALUE_INDEX") or "")
            except ValueError:
                return None
    return None


# ---------------------------------------------------------------------------------------------
# Profile
# ---------------------------------------------------------------------------------------------


def _predictor(profile: CogProfile, kind: BandKind, dtype: str) -> int:
    if kind in _NO_DIFFERENCING:
        return 1
    floating = np.issubdtype(np.dtype(dtype), np.floating)
    if profile.predictor == 3 and not floating:
        return 2  # floating-point predictor on integers is refused by libtiff
    return profile.predictor


def _creation_options(profile: CogProfile, kind: BandKind, dtype: str) -> dict[str, Any]:
    options: dict[str, Any] = {
        "driver": "GTiff",
        "interleave": "pixel",
        "tiled": True,
        "blockxsize": profile.blocksize,
        "blockysize": profile.blocksize,
        "compress": profile.compress.upper(),
        "predictor": _predictor(profile, kind, dtype),
        "bigtiff": "IF_SAFER",
        "num_threads": _WRITER_THREADS,
    }
    if profile.level is not None and profile.compress in _LEVEL_OPTION:
        if profile.level > _MAX_LEVEL[profile.compress]:
            raise ConfigError(
                f"cog.level: {profile.compress} accepts 1..{_MAX_LEVEL[profile.compress]}, not {profile.level}"
            )
        options[_LEVEL_OPTION[profile.compress]] = profile.level
    return options


def _overview_level(profile: CogProfile, width: int, height: int) -> int:
    if profile.overview_levels is not None:
        return profile.overview_levels
    # halve until the image fits one block (what rio-cogeo does by default, made explicit)
    largest = max(width, height)
    return max(0, math.ceil(math.log2(largest / profile.blocksize))) if largest > profile.blocksize else 0


def _resampling(profile: CogProfile, source: CogSource) -> Resampling:
    # the source's kind decides; describe derives it from the same profile, so this equals
    # profile.resampling_for(asset_key) unless a caller chose another kind on purpose
    return profile.resampling.get(source.kind) or profile.resampling_for(source.asset_key)


# ---------------------------------------------------------------------------------------------
# Errors
# ---------------------------------------------------------------------------------------------


def _unreadable(source: CogSource, exc: BaseException) -> InvalidProduct:
    name = Path(source.path).name
    return InvalidProduct(f"{source.asset_key}: cannot read raster {name}: {_cause(exc, source.path)}")


def _cause(exc: BaseException, path: Path | None = None) -> str:
    """The most specific message in the exception chain, on one line, without long paths."""
    messages = list(_chain(exc))
    # rasterio's outer "Read failed. See previous exception for details." says nothing itself
    specific = [m for m in messages if "previous exception" not in m] or messages
    text = " ".join(specific[-1].split())
    if path is not None:
        text = text.replace(str(path), Path(path).name)
    return text


def _chain(exc: BaseException) -> Iterator[str]:
    seen: set[int] = set()
    current: BaseException | None = exc
    while current is not None and id(current) not in seen:
        seen.add(id(current))
        if str(current).strip():
            yield str(current).strip()
        current = current.__cause__ or current.__context__
