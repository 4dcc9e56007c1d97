"""Convert stage: source rasters (JPEG 2000 / GeoTIFF) of a product into validated COGs.

``convert_band`` turns one ``CogSource`` into ``dest_dir/{asset_key}.tif`` with rio-cogeo's
``cog_translate``; ``convert_product`` converts the bands of a product in parallel.

How a band is converted
-----------------------
* The source is opened through a VRT copy of itself (GDAL's VRT driver, patched as XML). Real
  Sentinel-2 JPEG 2000 files carry their georeferencing in a GMLJP2 box; rasterio then reports
  an empty GCP list *with* a CRS, rio-cogeo 7.0.4 takes the GCP branch and GDAL 3.10 fails with
  "Cannot invert geotransform". A VRT reports the CRS and geotransform only. We chose a plain
  VRT copy over ``WarpedVRT(src)``: rio-cogeo wraps its source in a WarpedVRT anyway, so a
  second warper layer would only add cost; the VRT copy also carries scale/offset, band
  descriptions, colour interpretation and dataset tags to the output. Pixels are copied
  exactly (identity grid, nearest).
* nodata: the source's own, else the product's declaration (Sentinel-2 ``MTD_MSIL1C/2A.xml``
  ``Special_Values`` NODATA, which is 0; the JPEG 2000 bands themselves carry no nodata flag),
  else 0 for GCP-georeferenced rasters (Sentinel-1 GRD measurements: the product specification
  fills the swath borders with DN 0), else none.
* Sentinel-1 GRD measurements have GCPs and no geotransform. **We keep the GCPs in the COG**
  (as the collection spec announces, and as the public ``sentinel-s1-l1c`` COGs do) rather than
  warping to a map grid: pixel values stay the original amplitudes in the original line/pixel
  geometry, so the annotation's calibration and noise vectors (indexed by line/pixel) still
  apply; there are no resampling losses nor nodata wedges (~+30 % pixels for a UTM grid); and
  the file stays georeferenced for GDAL-based clients (rasterio/rio-tiler/TiTiler, QGIS), which
  warp GCP rasters on the fly. The reported ``epsg`` is the GCPs' CRS (4326), as stactools
  states for GRD items. Mechanics: rio-cogeo would fit one affine to the GCPs and resample along
  it, so the VRT replaces the GCP list by that affine (an identity warp for rio-cogeo, pixels
  untouched) and the real GCPs are handed to rio-cogeo's output through the creation profile.
* Profile: compression and level (``ZLEVEL`` deflate 1-12, ``ZSTD_LEVEL`` zstd 1-22; lzw has
  none), square blocks of ``blocksize``, ``overview_levels`` overviews (None: until the image
  fits one block) resampled with the kind's method (nearest for classes and masks, average for
  continuous data). Predictor: 1 for classification/mask/visual bands (class ids and 8-bit
  colour composites gain nothing from differencing, see the figures below), 3 only for floats
  (an integer band asked for 3 gets 2), otherwise the profile's.
* The COG is written in a hidden scratch directory inside ``dest_dir`` (rio-cogeo's own
  temporary file goes there too), checked with ``cog_validate``, then moved into place with
  ``os.replace``: readers see the old file or the new one, never a partial one.
* A source GDAL cannot open -> ``InvalidProduct``. When the conversion fails later (a truncated
  JPEG 2000 fails only when the damaged tiles are decoded), the source is read once more in
  full: if that fails too the product is bad (``InvalidProduct``), otherwise the failure is
  ours or the machine's (``IngestError``).

Parallelism and GDAL settings (measured, 2 cores)
-------------------------------------------------
MEASUREMENTS_PLACEHOLDER
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
from contextlib import ExitStack, contextmanager, nullcontext
from dataclasses import dataclass, replace
from functools import lru_cache
from pathlib import Path
from typing import Any

import numpy as np
import rasterio
from rasterio.control import GroundControlPoint
from rasterio.crs import CRS
from rasterio.io import DatasetReader, DatasetWriter, MemoryFile
from rasterio.transform import Affine, from_gcps
from rasterio.windows import Window

from ingest.collections import BandKind, CogProfile, Resampling
from ingest.errors import ConfigError, IngestError, InvalidProduct
from ingest.stages.artifacts import CogResult, CogSource
from ingest.stages.checksums import file_digest

__all__ = ["GDAL_ENV", "convert_band", "convert_product"]

# GDAL settings while converting (see "Parallelism and GDAL settings" above for the figures).
# PAM off: no .aux.xml side-cars next to sources (possibly read-only) or outputs.
GDAL_ENV: dict[str, str | int] = {
    "GDAL_CACHEMAX": 256,  # MB per process: holds a row of JPEG 2000 tiles of a 10980 px band
    "GDAL_NUM_THREADS": 1,  # JPEG 2000 decoding threads; the pool already keeps every core busy
    "GDAL_PAM_ENABLED": "NO",
}
# Creation option NUM_THREADS of the GeoTIFF writer (compression of the final COG).
_WRITER_THREADS = "1"
# rio-cogeo stages the image (plus overviews) before writing the COG: in memory up to this many
# bytes of pixels (every Sentinel-2 band, a 10980 px TCI is 360 MB), on disk in the scratch
# directory above (a full Sentinel-1 GRD measurement, 870 MB).
_IN_MEMORY_BYTES = 512 << 20
_S1_FILL_VALUE = 0.0  # DN of the no-data borders of Sentinel-1 GRD measurements
_NO_DIFFERENCING: frozenset[BandKind] = frozenset({"classification", "mask", "visual"})
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
    """Convert one source raster into the validated COG ``dest_dir/{asset_key}.tif``."""
    return _convert(source, Path(dest_dir), profile, token=uuid.uuid4().hex[:12])


def convert_product(
    sources: Sequence[CogSource], dest_dir: Path, profile: CogProfile, *, workers: int | None = None
) -> list[CogResult]:
    """Convert the bands of a product in parallel; results in the order of ``sources``.

    ``workers`` processes (default: one per CPU core) convert one band each at a time. The first
    failure cancels the bands not started yet and is raised once the running ones have stopped;
    then every file this call wrote (finished COGs included) is removed.
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
                finished.append(_convert(source, dest_dir, profile, token=token))
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
_cancelled: Any = None


def _init_worker(cancelled: Any) -> None:
    global _cancelled
    _cancelled = cancelled


def _task(source: CogSource, dest_dir: Path, profile: CogProfile, token: str) -> CogResult | None:
    if _cancelled is not None and _cancelled.is_set():
        return None
    return _convert(source, dest_dir, profile, token=token)


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
    # forkserver: workers are forked from a clean single-threaded server, never from the daemon
    # (forking a process whose other threads may hold GDAL or logging locks can deadlock), and
    # start faster than with spawn.
    ctx = multiprocessing.get_context("forkserver")
    cancelled = ctx.Event()
    with ProcessPoolExecutor(workers, mp_context=ctx, initializer=_init_worker, initargs=(cancelled,)) as pool:
        futures = [pool.submit(_task, s, dest_dir, profile, token) for s in sources]
        done, _ = wait(futures, return_when=FIRST_EXCEPTION)
        failed = next((f for f in futures if f in done and f.exception() is not None), None)
        if failed is not None:
            cancelled.set()
            for f in futures:
                f.cancel()
            wait(futures)  # running bands finish (GDAL cannot be interrupted); removed by the caller
            finished.extend(r for f in futures if not f.cancelled() and f.exception() is None and (r := f.result()))
            raise _first_error(futures)
        return [_result_of(f) for f in futures]


def _first_error(futures: Sequence[Future[CogResult | None]]) -> BaseException:
    """The failure of the band that comes first in input order (deterministic for callers)."""
    for f in futures:
        if not f.cancelled() and (exc := f.exception()) is not None:
            return exc
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


def _convert(source: CogSource, dest_dir: Path, profile: CogProfile, *, token: str) -> CogResult:
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
        with rasterio.Env(**GDAL_ENV), _open_source(source) as src:
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

