"""Helpers shared by the mission generators: XML writing, seeded fields and noise, JPEG 2000
writing, the atomic product directory, the deterministic zip and the manifest data objects."""

from __future__ import annotations

import math
import os
import shutil
import tempfile
import xml.etree.ElementTree as ET
import zipfile
from collections.abc import Callable, Iterable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt
import rasterio
from rasterio.crs import CRS
from rasterio.shutil import copy as rio_copy
from rasterio.transform import Affine
from rasterio.windows import Window

from ingest.stages.checksums import file_digest
from ingest.stages.manifest import ALGORITHMS

FloatArray = npt.NDArray[np.floating[Any]]
F32Array = npt.NDArray[np.float32]

# ---------------------------------------------------------------------------------------------
# Generic helpers
# ---------------------------------------------------------------------------------------------

# Rasters are produced in strips of this many rows; noise is drawn per block of _NOISE_ROWS
# rows with its own seed, so values do not depend on how a caller slices the rows.
_STRIP_ROWS = 256
_NOISE_ROWS = 256
_HASH_CHUNK = 4 * 1024 * 1024
_ZIP_DATE = (1980, 1, 1, 0, 0, 0)
_ZIP_STORED_SUFFIXES = frozenset({".jp2", ".tif", ".tiff", ".png", ".jpg", ".jpeg", ".zip", ".nc"})

# GDAL settings for writing: encode with all cores, keep the block cache small (the source of
# every JP2 is a temporary GeoTIFF, read once) and never write .aux.xml side-car files.
_GDAL_WRITE_ENV = {"GDAL_NUM_THREADS": "ALL_CPUS", "GDAL_CACHEMAX": 64, "GDAL_PAM_ENABLED": "NO"}


def _utc(dt: datetime) -> datetime:
    """Naive datetimes are taken as UTC; aware ones are converted to UTC."""
    if dt.tzinfo is None:
        return dt.replace(tzinfo=UTC)
    return dt.astimezone(UTC)


def _iso_ms(dt: datetime) -> str:
    return f"{dt:%Y-%m-%dT%H:%M:%S}.{dt.microsecond // 1000:03d}Z"


def _iso_us(dt: datetime, z: bool = True) -> str:
    return f"{dt:%Y-%m-%dT%H:%M:%S}.{dt.microsecond:06d}" + ("Z" if z else "")


def _compact(dt: datetime) -> str:
    return f"{dt:%Y%m%dT%H%M%S}"


def _sub(parent: ET.Element, tag: str, text: object = None, attrib: dict[str, str] | None = None) -> ET.Element:
    el = ET.SubElement(parent, tag, attrib or {})
    if text is not None:
        el.text = str(text)
    return el


def _subs(parent: ET.Element, children: Iterable[tuple[str, object]]) -> None:
    """Append simple text children in order."""
    for tag, text in children:
        _sub(parent, tag, text)


def _write_xml(path: Path, root: ET.Element) -> None:
    ET.indent(root, space="  ")
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(ET.tostring(root, encoding="UTF-8", xml_declaration=True) + b"\n")


def _fmt(value: float, digits: int = 6) -> str:
    return f"{value:.{digits}f}"


def _sci(value: float) -> str:
    return f"{value:.15e}"


@dataclass(frozen=True)
class _Field:
    """A smooth field in [0, 1]: a sum of separable sinusoid products with seeded parameters.

    Coordinates are normalised (0..1 across the product), so tiny test products and full-size
    ones show the same "landscape" at different pixel densities.
    """

    fx: tuple[float, ...]
    fy: tuple[float, ...]
    px: tuple[float, ...]
    py: tuple[float, ...]
    amp: tuple[float, ...]

    @classmethod
    def make(cls, seed: int, key: int, terms: int, fmin: float, fmax: float) -> _Field:
        rng = np.random.default_rng([seed, 7919, key])
        fx = rng.uniform(fmin, fmax, terms)
        fy = rng.uniform(fmin, fmax, terms)
        px = rng.uniform(0.0, 2 * math.pi, terms)
        py = rng.uniform(0.0, 2 * math.pi, terms)
        amp = rng.uniform(0.5, 1.0, terms)
        return cls(*(tuple(float(v) for v in a) for a in (fx, fy, px, py, amp)))

    def __call__(self, u: FloatArray, v: FloatArray) -> F32Array:
        """Evaluate on the grid ``v`` (rows) x ``u`` (columns), as float32."""
        sy = np.sin(2 * math.pi * np.outer(v, self.fy) + np.asarray(self.py)) * np.asarray(self.amp)
        sx = np.sin(2 * math.pi * np.outer(self.fx, u) + np.asarray(self.px)[:, None])
        out = sy.astype(np.float32) @ sx.astype(np.float32)
        scale = np.float32(0.5 / (0.6 * sum(self.amp)))
        out *= scale
        out += np.float32(0.5)
        result: F32Array = np.clip(out, 0.0, 1.0, out=out)
        return result


def _block_noise(seed: int, key: Sequence[int], row0: int, row1: int, width: int, amp: int) -> npt.NDArray[np.int32]:
    """Uniform integer noise in [-amp, amp], reproducible per block of _NOISE_ROWS rows."""
    out = np.empty((row1 - row0, width), dtype=np.int32)
    if amp == 0:
        out[:] = 0
        return out
    for block in range(row0 // _NOISE_ROWS, (row1 - 1) // _NOISE_ROWS + 1):
        rng = np.random.default_rng([seed, *key, block])
        noise = rng.integers(-amp, amp + 1, size=(_NOISE_ROWS, width), dtype=np.int16)
        b0 = block * _NOISE_ROWS
        lo, hi = max(row0, b0), min(row1, b0 + _NOISE_ROWS)
        out[lo - row0 : hi - row0] = noise[lo - b0 : hi - b0]
    return out


def _check_rows(rows: tuple[int, int] | None, height: int) -> tuple[int, int]:
    r0, r1 = (0, height) if rows is None else rows
    if not 0 <= r0 < r1 <= height:
        raise ValueError(f"rows {rows!r} outside 0..{height}")
    return r0, r1


def _jp2_layout(width: int, height: int, block: int, levels: int) -> tuple[int, int, int]:
    """Effective tile size (x, y) and number of resolution levels of a JP2 we write.

    GDAL clips tiles to the image; levels are reduced for tiny test images: GDAL's JP2OpenJPEG driver
    wants ``tile >> levels > 0`` (else it warns "Unsupported value for RESOLUTIONS" and writes one).
    """
    bx, by = min(block, width), min(block, height)
    return bx, by, max(1, min(levels, math.floor(math.log2(min(bx, by)))))


@dataclass(frozen=True)
class _Jp2Spec:
    """One JPEG 2000 file of a group written from the same strips."""

    path: Path
    count: int
    dtype: str
    nbits: int | None
    block: int
    levels: int


def _write_jp2_group(
    specs: Sequence[_Jp2Spec],
    *,
    scratch: Path,
    width: int,
    height: int,
    transform: Affine,
    crs: CRS,
    strips: Callable[[int, int], Sequence[npt.NDArray[np.generic]]],
) -> None:
    """Write several lossless JPEG 2000 files sharing a grid, the way Sentinel-2 lays them out.

    The JP2OpenJPEG driver only supports CreateCopy, so each strip of rows (``strips`` returns
    one array per spec) goes to an uncompressed temporary GeoTIFF in ``scratch`` which is then
    encoded; memory stays at one strip per file plus what OpenJPEG needs for a row of tiles
    (the temporary files take disk space: up to ~2 GB for the 10 m group of a full-size L2A).

    Encoding options follow the real products (checked against the fixture T31TDH B01 and
    public gdalinfo dumps of real 10 m / 20 m bands): reversible 5/3 wavelet with QUALITY=100
    (lossless), one quality layer, LRCP progression, 5 resolution levels (= 4 overviews), tiles
    of 1024 px (10 m), 640 px (20 m) and 192 px (60 m), 15-bit precision for reflectances, and a
    GMLJP2 box as the only georeferencing (no GeoJP2 UUID box, no JPX branding), like ESA's
    files. ESA encodes with Kakadu using 4x4 code-blocks in 64x64 precincts; we keep OpenJPEG's
    64x64 code-blocks (~60 % faster, ~25 % smaller files) -- a reader cannot tell the difference.
    Tile size and level count are clamped for tiny test images (OpenJPEG needs
    2**(levels - 1) <= tile size).
    """
    tmps = [scratch / f"{spec.path.name}.tif" for spec in specs]
    writers = []
    try:
        for spec, tmp in zip(specs, tmps, strict=True):
            writers.append(
                rasterio.open(
                    tmp,
                    "w",
                    driver="GTiff",
                    width=width,
                    height=height,
                    count=spec.count,
                    dtype=spec.dtype,
                    crs=crs,
                    transform=transform,
                    tiled=False,
                    blockysize=min(64, height),
                    interleave="band",
                )
            )
        for r0 in range(0, height, _STRIP_ROWS):
            r1 = min(height, r0 + _STRIP_ROWS)
            for dst, data in zip(writers, strips(r0, r1), strict=True):
                if data.ndim == 2:
                    data = data[np.newaxis]
                dst.write(data, window=Window(0, r0, width, r1 - r0))
    finally:
        for dst in writers:
            dst.close()
    for spec, tmp in zip(specs, tmps, strict=True):
        _, _, nres = _jp2_layout(width, height, spec.block, spec.levels)
        options = {
            "QUALITY": "100",
            "REVERSIBLE": "YES",
            "RESOLUTIONS": str(nres),
            # GDAL wants >= 32 and clips the tiles to the image itself
            "BLOCKXSIZE": str(max(32, spec.block)),
            "BLOCKYSIZE": str(max(32, spec.block)),
            "PROGRESSION": "LRCP",
            "GeoJP2": "NO",
            "GMLJP2": "YES",
            "JPX": "NO",
        }
        if spec.nbits is not None:
            options["NBITS"] = str(spec.nbits)
        spec.path.parent.mkdir(parents=True, exist_ok=True)
        rio_copy(str(tmp), str(spec.path), driver="JP2OpenJPEG", **options)
        tmp.unlink()


@contextmanager
def _product_dir(out_dir: Path, name: str) -> Iterator[tuple[Path, Path]]:
    """Build ``out_dir/name`` in a hidden work directory and move it in place only when complete.

    Yields (product directory, scratch directory). A failed generation leaves nothing behind;
    an existing product is never overwritten.
    """
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    final = out_dir / name
    if final.exists():
        raise FileExistsError(f"{final} already exists")
    work = Path(tempfile.mkdtemp(prefix=f".{name}.", suffix=".partial", dir=out_dir))
    try:
        safe, scratch = work / name, work / "scratch"
        safe.mkdir()
        scratch.mkdir()
        with rasterio.Env(**_GDAL_WRITE_ENV):
            yield safe, scratch
        os.rename(safe, final)
    finally:
        shutil.rmtree(work, ignore_errors=True)


# ---------------------------------------------------------------------------------------------
# Deterministic zip
# ---------------------------------------------------------------------------------------------


def zip_product(safe_dir: Path, zip_path: Path) -> Path:
    """Zip a SAFE (or SEN3) directory reproducibly, the way product archives are served.

    The archive's top-level entry is ``<name>.SAFE/`` (``<name>.SEN3/``); entries (directories included) are sorted
    by path, carry a fixed timestamp (1980-01-01) and fixed permissions. Already-compressed files
    (JPEG 2000, TIFF, PNG, netCDF) are STORED, everything else (XML, HTML, KML) DEFLATED (zlib default level).
    Large files are streamed. The zip is written next to ``zip_path`` and renamed into place.
    """
    safe_dir = Path(safe_dir)
    zip_path = Path(zip_path)
    if not safe_dir.is_dir():
        raise NotADirectoryError(safe_dir)
    top = safe_dir.name
    items: list[tuple[str, Path | None]] = [(f"{top}/", None)]
    for path in safe_dir.rglob("*"):
        if path.is_symlink():
            raise ValueError(f"refusing to zip symlink {path}")
        rel = path.relative_to(safe_dir).as_posix()
        items.append((f"{top}/{rel}/", None) if path.is_dir() else (f"{top}/{rel}", path))
    items.sort(key=lambda item: item[0])
    zip_path.parent.mkdir(parents=True, exist_ok=True)
    tmp = zip_path.with_name(f".{zip_path.name}.partial")
    try:
        with zipfile.ZipFile(tmp, "w", allowZip64=True) as zf:
            for arcname, src in items:
                info = zipfile.ZipInfo(arcname, date_time=_ZIP_DATE)
                info.create_system = 3  # Unix, so external_attr holds POSIX permissions
                if src is None:
                    info.external_attr = (0o40755 << 16) | 0x10
                    info.compress_type = zipfile.ZIP_STORED
                    zf.writestr(info, b"")
                    continue
                info.external_attr = 0o100644 << 16
                stored = src.suffix.lower() in _ZIP_STORED_SUFFIXES
                info.compress_type = zipfile.ZIP_STORED if stored else zipfile.ZIP_DEFLATED
                info.file_size = src.stat().st_size  # lets zipfile pick ZIP64 up front when needed
                with src.open("rb") as fin, zf.open(info, "w") as fout:
                    shutil.copyfileobj(fin, fout, _HASH_CHUNK)
        os.replace(tmp, zip_path)
    finally:
        tmp.unlink(missing_ok=True)
    return zip_path


_XSI = "http://www.w3.org/2001/XMLSchema-instance"


@dataclass(frozen=True)
class _DataObject:
    object_id: str
    rel: str
    mime: str


def _data_object_section(
    root: ET.Element,
    safe: Path,
    objects: Sequence[_DataObject],
    checksum_name: str,
    rep_ids: dict[str, str] | None = None,
) -> None:
    section = _sub(root, "dataObjectSection")
    for obj in objects:
        path = safe / obj.rel
        attrib = {"ID": obj.object_id}
        if rep_ids and obj.object_id in rep_ids:
            attrib["repID"] = rep_ids[obj.object_id]
        stream = _sub(
            _sub(section, "dataObject", attrib=attrib),
            "byteStream",
            attrib={"mimeType": obj.mime, "size": str(path.stat().st_size)},
        )
        _sub(stream, "fileLocation", attrib={"href": f"./{obj.rel}", "locatorType": "URL"})
        _sub(stream, "checksum", file_digest(path, ALGORITHMS[checksum_name]), {"checksumName": checksum_name})
