"""Synthetic-but-valid Sentinel products for tests and benchmarks.

``generate_s2`` writes a Sentinel-2 L1C/L2A SAFE product and ``generate_s1_grd`` a Sentinel-1
GRD SAFE product whose metadata and rasters follow the layout of real products closely enough
for ``stactools-sentinel2`` / ``stactools-sentinel1`` to accept them and yield items with the
same asset keys and STAC extensions as for real products. ``zip_product`` packs a SAFE directory
reproducibly. Manifests are written with the checksums real ones carry (MD5, or SHA3-256 as S2
baseline 03.xx does); ``ingest.stages.manifest`` reads and verifies them.

Everything is deterministic: on a given platform the same arguments (including ``seed``) give
byte-identical files (floating-point details of numpy/BLAS may differ between machines).
Pixel values come from seeded smooth fields plus seeded noise and are reproducible through
``s2_band_pixels`` and ``s1_measurement_pixels``, so tests can compare what was written.

What the generated products leave out, compared with real ones (none of it is read by
stactools): HTML/, rep_info/, AUX_DATA/, the QI_DATA masks and quality reports, the datastrip
QI_DATA reports, S1 support/*.xsd, the spectral-response curves, detector-wise viewing-angle
grids and the orbit/attitude/Doppler lists of the S1 annotation.
"""

from __future__ import annotations

import hashlib
import math
import os
import re
import shutil
import tempfile
import warnings
import xml.etree.ElementTree as ET
import zipfile
from collections.abc import Callable, Iterable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any, Literal

import numpy as np
import numpy.typing as npt
import rasterio
from pyproj import Transformer
from rasterio.control import GroundControlPoint
from rasterio.crs import CRS
from rasterio.errors import NotGeoreferencedWarning
from rasterio.shutil import copy as rio_copy
from rasterio.transform import Affine
from rasterio.windows import Window

from ingest.stages.checksums import file_digest
from ingest.stages.manifest import ALGORITHMS

__all__ = [
    "S2TileGrid",
    "generate_s1_grd",
    "generate_s2",
    "s1_measurement_pixels",
    "s2_band_pixels",
    "s2_footprint",
    "s2_image_files",
    "s2_tile_grid",
    "zip_product",
]

Level = Literal["L1C", "L2A"]
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
    """Zip a SAFE directory reproducibly, the way product archives are served.

    The archive's top-level entry is ``<name>.SAFE/``; entries (directories included) are sorted
    by path, carry a fixed timestamp (1980-01-01) and fixed permissions. Already-compressed files
    (JPEG 2000, TIFF, PNG) are STORED, everything else (XML, HTML, KML) DEFLATED (zlib default level).
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


# ---------------------------------------------------------------------------------------------
# Sentinel-2: MGRS tile grid
# ---------------------------------------------------------------------------------------------

_MGRS_BANDS = "CDEFGHJKLMNPQRSTUVWX"
_MGRS_COLUMNS = ("STUVWXYZ", "ABCDEFGH", "JKLMNPQR")  # indexed by zone % 3
_MGRS_ROWS = "ABCDEFGHJKLMNPQRSTUV"
_TILE_RE = re.compile(r"^(\d{1,2})([C-HJ-NP-X])([A-HJ-NP-Z])([A-HJ-NP-V])$")
_S2_TILE_EXTENT = 109_800.0  # metres covered by a full-size (10980 px) tile


@dataclass(frozen=True)
class S2TileGrid:
    """UTM grid of a Sentinel-2 (MGRS) tile: EPSG code and upper-left corner in metres."""

    tile: str  # normalised, e.g. "31TDH"
    zone: int
    latitude_band: str
    epsg: int
    ulx: float
    uly: float

    def transform(self, resolution: float) -> Affine:
        return Affine(resolution, 0.0, self.ulx, 0.0, -resolution, self.uly)


def s2_tile_grid(tile: str) -> S2TileGrid:
    """Upper-left corner and CRS of an MGRS tile id such as ``"31TDH"`` (or ``"T31TDH"``).

    The 100 km square is located with the MGRS lettering rules and the latitude band; the
    corner is the square's upper-left corner snapped to the 60 m grid (x down, y up, in true
    northing), which reproduces the ULX/ULY of the real tiles in the fixtures (31TDH, 46RER,
    22HBD, 33XWJ). Tiles extend 109.8 km east and south of that corner, like real ones.
    """
    match = _TILE_RE.match(tile.upper().removeprefix("T"))
    if not match:
        raise ValueError(f"not an MGRS tile id: {tile!r}")
    zone, band, col, row = int(match[1]), match[2], match[3], match[4]
    if not 1 <= zone <= 60:
        raise ValueError(f"bad UTM zone in {tile!r}")
    columns = _MGRS_COLUMNS[zone % 3]
    if col not in columns:
        raise ValueError(f"column letter {col!r} does not exist in zone {zone} ({tile!r})")
    easting = (columns.index(col) + 1) * 100_000
    north = band >= "N"
    epsg = (32600 if north else 32700) + zone
    row_northing = ((_MGRS_ROWS.index(row) - (5 if zone % 2 == 0 else 0)) % 20) * 100_000
    lat_min = -80 + 8 * _MGRS_BANDS.index(band)
    lat_max = lat_min + (12 if band == "X" else 8)
    to_utm = Transformer.from_crs(4326, epsg, always_xy=True)
    false_northing = 0.0 if north else 10_000_000.0
    cm = zone * 6 - 183
    band_lo = to_utm.transform(cm, lat_min)[1] - false_northing
    band_hi = to_utm.transform(cm, lat_max)[1] - false_northing
    square = None
    for k in range(-6, 6):
        candidate = row_northing + 2_000_000 * k - (false_northing if not north else 0.0)
        # the 100 km square must intersect the latitude band (small margin for zone edges)
        if candidate + 100_000 > band_lo - 50_000 and candidate < band_hi + 50_000:
            square = candidate
            break
    if square is None:
        raise ValueError(f"row letter {row!r} does not exist in latitude band {band} ({tile!r})")
    top = square + 100_000
    ulx = math.floor(easting / 60) * 60.0
    uly = math.ceil(top / 60) * 60.0 + false_northing
    return S2TileGrid(f"{zone:02d}{band}{col}{row}", zone, band, epsg, ulx, uly)


def _valid_edge(v: FloatArray) -> FloatArray:
    """Western limit of valid data (fraction of the tile width) at tile-relative row position v.

    Mimics the edge of the orbit swath cutting a tile: 18 % of the width is nodata at the top,
    4 % at the bottom (11 % of the tile overall).
    """
    return 0.18 - 0.14 * v


def s2_footprint(tile: str, size: int = 10980) -> list[tuple[float, float]]:
    """Closed ring (lon, lat) of the valid-data area of a generated S2 product.

    This is what the product metadata's footprint (and so the STAC item geometry) contains.
    """
    grid = s2_tile_grid(tile)
    extent = 10.0 * size
    edge = _valid_edge(np.array([0.0, 1.0]))
    corners = [
        (grid.ulx + edge[0] * extent, grid.uly),
        (grid.ulx + edge[1] * extent, grid.uly - extent),
        (grid.ulx + extent, grid.uly - extent),
        (grid.ulx + extent, grid.uly),
    ]
    to_geo = Transformer.from_crs(grid.epsg, 4326, always_xy=True)
    ring = [tuple(float(c) for c in to_geo.transform(x, y)) for x, y in corners]
    ring.append(ring[0])
    return [(lon, lat) for lon, lat in ring]


# ---------------------------------------------------------------------------------------------
# Sentinel-2: bands and pixel model
# ---------------------------------------------------------------------------------------------

_S2_BAND_ORDER = ("B01", "B02", "B03", "B04", "B05", "B06", "B07", "B08", "B8A", "B09", "B10", "B11", "B12")
_S2_NATIVE_RES = {
    "B01": 60,
    "B02": 10,
    "B03": 10,
    "B04": 10,
    "B05": 20,
    "B06": 20,
    "B07": 20,
    "B08": 10,
    "B8A": 20,
    "B09": 60,
    "B10": 60,
    "B11": 20,
    "B12": 20,
}
# (min, max, central wavelength nm) and solar irradiance (W/m2/um), as in S2A product metadata.
_S2_SPECTRAL = {
    "B01": (412, 456, 442.7, 1884.69),
    "B02": (456, 533, 492.7, 1959.66),
    "B03": (538, 583, 559.8, 1823.24),
    "B04": (646, 684, 664.6, 1512.06),
    "B05": (695, 714, 704.1, 1424.64),
    "B06": (731, 749, 740.5, 1287.61),
    "B07": (769, 797, 782.8, 1162.08),
    "B08": (760, 907, 832.8, 1041.63),
    "B8A": (837, 881, 864.7, 955.32),
    "B09": (932, 958, 945.1, 812.92),
    "B10": (1337, 1412, 1373.5, 367.15),
    "B11": (1539, 1682, 1613.7, 245.59),
    "B12": (2078, 2320, 2202.4, 85.25),
}
_S2_PHYSICAL_GAINS = (
    4.10650374,
    3.75008945,
    4.1754601,
    4.50605,
    5.18657807,
    4.85045988,
    4.51187374,
    6.12993247,
    5.11089037,
    8.48667727,
    54.77849145,
    35.11586051,
    106.16764317,
)
# Surface reflectance x 10000 of the scene's ingredients: water, vegetation, bare soil, snow,
# cloud, plus the extra thin-cirrus signal and the TOA path radiance added for L1C.
_S2_REFLECTANCE: dict[str, tuple[int, int, int, int, int, int, int]] = {
    #       water  veg  bare  snow  cloud cirrus atm
    "B01": (400, 350, 900, 8500, 7000, 300, 1100),
    "B02": (500, 400, 1000, 8600, 7000, 300, 800),
    "B03": (450, 700, 1300, 8600, 7000, 280, 550),
    "B04": (250, 400, 1600, 8500, 7000, 260, 350),
    "B05": (200, 1000, 1800, 8300, 6900, 240, 250),
    "B06": (150, 2500, 2000, 8000, 6800, 220, 180),
    "B07": (120, 3000, 2200, 7800, 6700, 200, 150),
    "B08": (100, 3300, 2400, 7600, 6600, 200, 120),
    "B8A": (90, 3400, 2500, 7500, 6500, 190, 110),
    "B09": (30, 1000, 800, 3000, 3000, 60, 40),
    "B10": (2, 8, 12, 40, 600, 500, 5),
    "B11": (20, 1800, 3000, 800, 5000, 150, 60),
    "B12": (10, 900, 2500, 600, 4500, 120, 40),
}
# Noise amplitude (DN) per resolution: +-90 gives ~8 bits/pixel after lossless JPEG 2000, as real
# reflectance bands have (about 115-120 MB for a 10 m band, 30 MB at 20 m, 3.5 MB at 60 m).
_S2_NOISE = {10: 90, 20: 90, 60: 90, 320: 4}
_S2_JP2_BLOCK = {10: 1024, 20: 640, 60: 192}
_S2_JP2_LEVELS = 5


def _baseline_offset(baseline: str) -> int:
    """Radiometric offset added to the DNs from processing baseline 04.00 on (BOA/RADIO_ADD_OFFSET)."""
    return 1000 if baseline >= "04.00" else 0


def s2_image_files(level: Level, baseline: str = "05.10") -> list[tuple[str, int]]:
    """(band, resolution) of every IMG_DATA raster of a product, in MTD ``IMAGE_FILE`` order.

    L2A lists what Sen2Cor writes: R10m B02-B04, B08, TCI, AOT, WVP; R20m B02-B07, B8A, B11,
    B12, TCI, AOT, WVP, SCL (plus B01 from baseline 04.00 on, as in real N04xx/N05xx products);
    R60m all but B08/B10, plus TCI, AOT, WVP, SCL.
    """
    if level == "L1C":
        return [(band, _S2_NATIVE_RES[band]) for band in _S2_BAND_ORDER] + [("TCI", 10)]
    if level != "L2A":
        raise ValueError(f"level must be 'L1C' or 'L2A', not {level!r}")
    r10 = ["B02", "B03", "B04", "B08", "TCI", "AOT", "WVP"]
    r20 = (["B01"] if baseline >= "04.00" else []) + [
        "B02",
        "B03",
        "B04",
        "B05",
        "B06",
        "B07",
        "B8A",
        "B11",
        "B12",
        "TCI",
        "AOT",
        "WVP",
        "SCL",
    ]
    r60 = ["B01", "B02", "B03", "B04", "B05", "B06", "B07", "B8A", "B09", "B11", "B12", "TCI", "AOT", "WVP", "SCL"]
    return [(b, 10) for b in r10] + [(b, 20) for b in r20] + [(b, 60) for b in r60]


@dataclass
class _S2Strip:
    """Per-pixel ingredients of the S2 scene for a block of rows (float32 unless noted)."""

    valid: npt.NDArray[np.bool_]
    weights: F32Array  # (4, rows, cols): water, vegetation, bare soil, snow
    base: F32Array  # multiplicative factor on the surface mix (shadow, texture, cloud opacity)
    cloud: F32Array
    cirrus: F32Array
    shadow: F32Array
    aot: F32Array
    wvp: F32Array


class _S2Model:
    def __init__(self, size: int, seed: int, level: Level, baseline: str) -> None:
        self.size, self.seed, self.level, self.baseline = size, seed, level, baseline
        self.offset = _baseline_offset(baseline)
        self.land = _Field.make(seed, 1, 6, 0.6, 4.0)
        self.cloudiness = _Field.make(seed, 2, 5, 1.0, 5.0)
        self.cirrus_field = _Field.make(seed, 3, 4, 0.5, 3.0)
        self.texture = _Field.make(seed, 4, 8, 8.0, 40.0)
        self.aot_field = _Field.make(seed, 5, 3, 0.3, 1.5)
        self.wvp_field = _Field.make(seed, 6, 3, 0.3, 1.5)

    def shape(self, resolution: int) -> int:
        return self.size * 10 // resolution

    def strip_at(self, resolution: int, r0: int, r1: int) -> _S2Strip:
        step = resolution / (10.0 * self.size)
        u = (np.arange(self.shape(resolution)) + 0.5) * step
        v = (np.arange(r0, r1) + 0.5) * step
        return self.strip(u, v)

    def strip(self, u: FloatArray, v: FloatArray) -> _S2Strip:
        land = self.land(u, v)
        cloud = np.clip((self.cloudiness(u, v) - 0.70) / 0.15, 0.0, 1.0)
        shadow = np.clip((self.cloudiness(u - 0.04, v - 0.03) - 0.72) / 0.10, 0.0, 1.0) * (1.0 - cloud)
        cirrus = np.clip((self.cirrus_field(u, v) - 0.80) / 0.10, 0.0, 1.0)
        snow = np.clip((land - 0.93) / 0.03, 0.0, 1.0)
        water = np.clip((0.28 - land) / 0.06, 0.0, 1.0)
        bare = np.clip((land - 0.55) / 0.15, 0.0, 1.0) * (1.0 - snow)
        veg = np.clip(1.0 - water - bare - snow, 0.0, 1.0)
        texture = self.texture(u, v)
        base = (1.0 - 0.6 * shadow) * (0.92 + 0.16 * texture) * (1.0 - cloud)
        valid = u[np.newaxis, :] >= _valid_edge(v)[:, np.newaxis]
        # AOT and WVP are retrieved on a coarse grid and upsampled in real products, so they are
        # constant over 600 m cells here (and compress to almost nothing, as real ones do)
        cell = 600.0 / (10.0 * self.size)
        cu, cv = (np.floor(u / cell) + 0.5) * cell, (np.floor(v / cell) + 0.5) * cell
        return _S2Strip(
            valid=valid,
            weights=np.stack([water, veg, bare, snow]).astype(np.float32),
            base=base.astype(np.float32),
            cloud=cloud.astype(np.float32),
            cirrus=cirrus.astype(np.float32),
            shadow=shadow.astype(np.float32),
            aot=self.aot_field(cu, cv),
            wvp=self.wvp_field(cu, cv),
        )

    def _noise(self, key: int, resolution: int, r0: int, r1: int, width: int) -> npt.NDArray[np.int32]:
        level_key = 1 if self.level == "L1C" else 2
        return _block_noise(self.seed, (key, resolution, level_key), r0, r1, width, _S2_NOISE.get(resolution, 8))

    def band(self, s: _S2Strip, band: str, resolution: int, r0: int, r1: int) -> npt.NDArray[np.uint16]:
        water, veg, bare, snow, cloud, cirrus, atm = _S2_REFLECTANCE[band]
        w = s.weights
        surface = w[0] * water + w[1] * veg + w[2] * bare + w[3] * snow
        refl = surface * s.base + s.cloud * cloud + s.cirrus * cirrus
        if self.level == "L1C":
            refl = refl * 0.92 + atm
        dn = np.rint(refl).astype(np.int32) + self.offset
        dn += self._noise(_S2_BAND_ORDER.index(band), resolution, r0, r1, dn.shape[1])
        out: npt.NDArray[np.uint16] = np.clip(dn, 1, 32767).astype(np.uint16)
        out[~s.valid] = 0
        return out

    def aux(self, s: _S2Strip, name: str, resolution: int, r0: int, r1: int) -> npt.NDArray[np.uint16]:
        field, lo, span = (s.aot, 0.06, 0.12) if name == "AOT" else (s.wvp, 0.8, 1.2)
        dn = np.rint(1000.0 * (lo + span * field)).astype(np.int32)
        out: npt.NDArray[np.uint16] = np.clip(dn, 1, 65535).astype(np.uint16)
        out[~s.valid] = 0
        return out

    @staticmethod
    def scl(s: _S2Strip) -> npt.NDArray[np.uint8]:
        dominant = np.argmax(s.weights, axis=0)
        strongest = np.max(s.weights, axis=0)
        out: npt.NDArray[np.uint8] = np.array([6, 4, 5, 11], dtype=np.uint8)[dominant]
        out[strongest < 0.5] = 7  # unclassified
        out[s.shadow > 0.3] = 3
        out[(s.cirrus > 0.5) & (s.cloud < 0.33)] = 10
        out[s.cloud >= 0.33] = 8
        out[s.cloud >= 0.66] = 9
        out[~s.valid] = 0
        return out

    def tci(self, bands: dict[str, npt.NDArray[np.uint16]]) -> npt.NDArray[np.uint8]:
        """True colour from B04/B03/B02: reflectance 0..0.2 -> 1..255, 0 = nodata."""
        planes = []
        for band in ("B04", "B03", "B02"):
            dn = bands[band].astype(np.int32)
            value = np.clip((dn - self.offset) * 255 // 2000, 1, 255).astype(np.uint8)
            value[dn == 0] = 0
            planes.append(value)
        return np.stack(planes)

    def _dn(
        self, s: _S2Strip, name: str, resolution: int, r0: int, r1: int, cache: dict[str, npt.NDArray[np.uint16]]
    ) -> npt.NDArray[np.uint16]:
        if name not in cache:
            if name in ("AOT", "WVP"):
                cache[name] = self.aux(s, name, resolution, r0, r1)
            elif name in _S2_REFLECTANCE:
                cache[name] = self.band(s, name, resolution, r0, r1)
            else:
                raise ValueError(f"unknown S2 raster {name!r}")
        return cache[name]

    def render(
        self,
        s: _S2Strip,
        name: str,
        resolution: int,
        r0: int,
        r1: int,
        cache: dict[str, npt.NDArray[np.uint16]],
    ) -> npt.NDArray[np.uint16] | npt.NDArray[np.uint8]:
        """Pixels of raster ``name`` for the strip; reflectance bands are cached for TCI."""
        if name == "TCI":
            return self.tci({b: self._dn(s, b, resolution, r0, r1, cache) for b in ("B04", "B03", "B02")})
        if name == "SCL":
            return self.scl(s)
        return self._dn(s, name, resolution, r0, r1, cache)

    def stats(self) -> dict[str, float]:
        """Scene statistics (percentages) for the metadata, from the model on a coarse grid."""
        n = max(1, min(self.size // 6, 366))
        grid = (np.arange(n) + 0.5) / n
        s = self.strip(grid, grid)
        scl = self.scl(s)
        valid = int(s.valid.sum())

        def pct(*classes: int) -> float:
            return 100.0 * float(np.isin(scl, classes).sum()) / valid if valid else 0.0

        return {
            "NODATA": 100.0 * (1.0 - valid / scl.size),
            "SATURATED": pct(1),
            "DARK": pct(2),
            "SHADOW": pct(3),
            "VEGETATION": pct(4),
            "NOT_VEGETATED": pct(5),
            "WATER": pct(6),
            "UNCLASSIFIED": pct(7),
            "MEDIUM": pct(8),
            "HIGH": pct(9),
            "CIRRUS": pct(10),
            "SNOW": pct(11),
            "CLOUDY": pct(8, 9, 10),
            "AOT": float(np.mean(0.06 + 0.12 * s.aot[s.valid])) if valid else 0.0,
            "WV": float(np.mean(0.8 + 1.2 * s.wvp[s.valid])) if valid else 0.0,
        }


def _check_s2_size(size: int) -> None:
    if size < 60 or size % 6:
        raise ValueError(f"size must be a multiple of 6 and at least 60, not {size}")


def s2_band_pixels(
    band: str,
    resolution: int,
    *,
    size: int,
    level: Level = "L2A",
    baseline: str = "05.10",
    seed: int = 0,
    rows: tuple[int, int] | None = None,
) -> npt.NDArray[np.uint16] | npt.NDArray[np.uint8]:
    """The pixels ``generate_s2`` writes for ``band`` at ``resolution`` (10, 20, 60 or 320 m).

    ``band`` is B01..B12, B8A, TCI, AOT, WVP or SCL. Returns (rows, cols) uint16 for bands,
    AOT and WVP, uint8 for SCL and (3, rows, cols) uint8 for TCI. ``rows`` = (start, stop)
    limits the result to a block of rows. Meant for tests: a whole full-size band is 240 MB.
    """
    _check_s2_size(size)
    model = _S2Model(size, seed, level, baseline)
    r0, r1 = _check_rows(rows, model.shape(resolution))
    return model.render(model.strip_at(resolution, r0, r1), band.upper(), resolution, r0, r1, {})


# ---------------------------------------------------------------------------------------------
# Sentinel-2: metadata
# ---------------------------------------------------------------------------------------------

_XSI = "http://www.w3.org/2001/XMLSchema-instance"
_PSD = "https://psd-14.sentinel2.eo.esa.int/PSD"
_S2_NSSDC = {"S2A": "2015-028A", "S2B": "2017-013A", "S2C": "2024-157A"}
# Orbit phasing: (reference sensing time, absolute orbit, relative orbit) of a real product.
_S2_ORBIT_REF = {
    "S2A": (datetime(2021, 9, 8, 4, 27, 1, tzinfo=UTC), 32448, 133),
    "S2B": (datetime(2021, 1, 22, 13, 32, 29, tzinfo=UTC), 20270, 81),
    # S2C took over S2A's orbital phase in 2025; absolute numbering counted from launch.
    "S2C": (datetime(2024, 9, 5, 1, 50, 0, tzinfo=UTC), 1, 1),
}
_S2_ORBIT_MINUTES = 10 * 24 * 60 / 143  # 143 orbits per 10-day cycle
_S2_DOI = {"L1C": "https://doi.org/10.5270/S2_-742ikth", "L2A": "https://doi.org/10.5270/S2_-znk9xsj"}
_SCL_NAMES = (
    "SC_NODATA",
    "SC_SATURATED_DEFECTIVE",
    "SC_DARK_FEATURE_SHADOW",
    "SC_CLOUD_SHADOW",
    "SC_VEGETATION",
    "SC_NOT_VEGETATED",
    "SC_WATER",
    "SC_UNCLASSIFIED",
    "SC_CLOUD_MEDIUM_PROBA",
    "SC_CLOUD_HIGH_PROBA",
    "SC_THIN_CIRRUS",
    "SC_SNOW_ICE",
)


def _s2_absolute_orbit(satellite: str, sensing: datetime, relative_orbit: int) -> int:
    """Absolute orbit near the sensing date that is consistent with the relative orbit."""
    ref_time, ref_abs, ref_rel = _S2_ORBIT_REF[satellite]
    estimate = ref_abs + (sensing - ref_time).total_seconds() / 60 / _S2_ORBIT_MINUTES
    k = (ref_abs - (ref_rel - 1)) % 143
    n = round((estimate - k - (relative_orbit - 1)) / 143)
    absolute = k + relative_orbit - 1 + 143 * n
    while absolute < 1:
        absolute += 143
    return absolute


def _solar_angles(when: datetime, lon: float, lat: float) -> tuple[float, float]:
    """Solar zenith and azimuth (degrees) -- low-precision astronomical almanac formulas."""
    n = (when.timestamp() / 86400.0 + 2440587.5) - 2451545.0
    mean_lon = (280.460 + 0.9856474 * n) % 360
    anomaly = math.radians((357.528 + 0.9856003 * n) % 360)
    ecl_lon = math.radians(mean_lon + 1.915 * math.sin(anomaly) + 0.020 * math.sin(2 * anomaly))
    obliquity = math.radians(23.439 - 0.0000004 * n)
    ra = math.atan2(math.cos(obliquity) * math.sin(ecl_lon), math.cos(ecl_lon))
    dec = math.asin(math.sin(obliquity) * math.sin(ecl_lon))
    gmst_hours = (18.697374558 + 24.06570982441908 * n) % 24
    hour_angle = math.radians(gmst_hours * 15 + lon) - ra
    phi = math.radians(lat)
    cos_zenith = math.sin(phi) * math.sin(dec) + math.cos(phi) * math.cos(dec) * math.cos(hour_angle)
    zenith = math.degrees(math.acos(max(-1.0, min(1.0, cos_zenith))))
    azimuth = math.degrees(
        math.atan2(-math.sin(hour_angle), math.tan(dec) * math.cos(phi) - math.sin(phi) * math.cos(hour_angle))
    )
    return zenith, azimuth % 360


def _sun_earth_factor(when: datetime) -> float:
    """Reflectance conversion factor U (inverse squared Sun-Earth distance, in AU)."""
    doy = when.timetuple().tm_yday
    return 1.0 / (1.0 - 0.01672 * math.cos(math.radians(0.9856 * (doy - 4)))) ** 2


@dataclass(frozen=True)
class _S2Names:
    product: str  # without .SAFE
    granule: str
    datastrip_dir: str
    tile_id: str
    l1c_tile_id: str
    datastrip_id: str
    datatake_id: str
    image_stem: str  # T31TDH_20240105T103421
    generation: datetime
    l1c_generation: datetime
    absolute_orbit: int


def _s2_names(
    level: Level, tile: str, sensing: datetime, satellite: str, relative_orbit: int, baseline: str
) -> _S2Names:
    absolute = _s2_absolute_orbit(satellite, sensing, relative_orbit)
    l1c_generation = sensing + timedelta(hours=1, minutes=41, seconds=7)
    generation = l1c_generation if level == "L1C" else sensing + timedelta(hours=2, minutes=35, seconds=13)
    centre = f"2{satellite[-1]}PS"
    s, g, g1 = _compact(sensing), _compact(generation), _compact(l1c_generation)
    nb = baseline.replace(".", "")
    return _S2Names(
        product=f"{satellite}_MSI{level}_{s}_N{nb}_R{relative_orbit:03d}_T{tile}_{g}",
        granule=f"{level}_T{tile}_A{absolute:06d}_{s}",
        datastrip_dir=f"DS_{centre}_{g}_S{s}",
        tile_id=f"{satellite}_OPER_MSI_{level}_TL_{centre}_{g}_A{absolute:06d}_T{tile}_N{baseline}",
        l1c_tile_id=f"{satellite}_OPER_MSI_L1C_TL_{centre}_{g1}_A{absolute:06d}_T{tile}_N{baseline}",
        datastrip_id=f"{satellite}_OPER_MSI_{level}_DS_{centre}_{g}_S{s}_N{baseline}",
        datatake_id=f"G{satellite}_{s}_{absolute:06d}_N{baseline}",
        image_stem=f"T{tile}_{s}",
        generation=generation,
        l1c_generation=l1c_generation,
        absolute_orbit=absolute,
    )


def _s2_image_rel(names: _S2Names, level: Level, band: str, res: int) -> str:
    if level == "L1C":
        return f"GRANULE/{names.granule}/IMG_DATA/{names.image_stem}_{band}"
    return f"GRANULE/{names.granule}/IMG_DATA/R{res}m/{names.image_stem}_{band}_{res}m"


def _s2_root(kind: str, level: Level) -> ET.Element:
    ns = {
        "product": f"{_PSD}/User_Product_Level-{level[1:]}.xsd",
        "tile": f"{_PSD}/S2_PDI_Level-{level[1:]}_Tile_Metadata.xsd",
        "datastrip": f"{_PSD}/S2_PDI_Level-{level[1:]}_Datastrip_Metadata.xsd",
    }[kind]
    tag = {"product": "User_Product", "tile": "Tile_ID", "datastrip": "DataStrip_ID"}[kind]
    return ET.Element(f"n1:Level-{level[1:]}_{tag}", {"xmlns:n1": ns, "xmlns:xsi": _XSI, "xsi:schemaLocation": ns})


def _s2_product_xml(
    level: Level,
    names: _S2Names,
    sensing: datetime,
    satellite: str,
    relative_orbit: int,
    baseline: str,
    footprint: Sequence[tuple[float, float]],
    stats: dict[str, float],
) -> ET.Element:
    root = _s2_root("product", level)
    info = _sub(_sub(root, "n1:General_Info"), "Product_Info")
    _subs(
        info,
        (
            ("PRODUCT_START_TIME", _iso_ms(sensing)),
            ("PRODUCT_STOP_TIME", _iso_ms(sensing)),
            ("PRODUCT_URI", f"{names.product}.SAFE"),
            ("PROCESSING_LEVEL", f"Level-{level[1:]}"),
            ("PRODUCT_TYPE", f"S2MSI{level[1:]}"),
            ("PROCESSING_BASELINE", baseline),
        ),
    )
    if baseline >= "04.00":
        _sub(info, "PRODUCT_DOI", _S2_DOI[level])
    _sub(info, "GENERATION_TIME", _iso_us(names.generation))
    _sub(info, "PREVIEW_IMAGE_URL", "Not applicable")
    _sub(info, "PREVIEW_GEO_INFO", "Not applicable")
    datatake = _sub(info, "Datatake", attrib={"datatakeIdentifier": names.datatake_id})
    _sub(datatake, "SPACECRAFT_NAME", f"Sentinel-{satellite[1:]}")
    _sub(datatake, "DATATAKE_TYPE", "INS-NOBS")
    _sub(datatake, "DATATAKE_SENSING_START", _iso_ms(sensing))
    _sub(datatake, "SENSING_ORBIT_NUMBER", relative_orbit)
    _sub(datatake, "SENSING_ORBIT_DIRECTION", "DESCENDING")
    _sub(_sub(info, "Query_Options", attrib={"completeSingleTile": "true"}), "PRODUCT_FORMAT", "SAFE_COMPACT")
    granule = _sub(
        _sub(_sub(info, "Product_Organisation"), "Granule_List"),
        "Granule",
        attrib={
            "datastripIdentifier": names.datastrip_id,
            "granuleIdentifier": names.tile_id,
            "imageFormat": "JPEG2000",
        },
    )
    for band, res in s2_image_files(level, baseline):
        _sub(granule, "IMAGE_FILE", _s2_image_rel(names, level, band, res))

    chars = _sub(root[0], "Product_Image_Characteristics")
    for text, index in (("NODATA", 0), ("SATURATED", 65535)):
        special = _sub(chars, "Special_Values")
        _sub(special, "SPECIAL_VALUE_TEXT", text)
        _sub(special, "SPECIAL_VALUE_INDEX", index)
    order = _sub(chars, "Image_Display_Order")
    _subs(order, (("RED_CHANNEL", 3), ("GREEN_CHANNEL", 2), ("BLUE_CHANNEL", 1)))
    offset = _baseline_offset(baseline)
    if level == "L1C":
        _sub(chars, "QUANTIFICATION_VALUE", 10000, {"unit": "none"})
        if offset:
            offsets = _sub(chars, "Radiometric_Offset_List")
            for i in range(13):
                _sub(offsets, "RADIO_ADD_OFFSET", -offset, {"band_id": str(i)})
    else:
        quant = _sub(chars, "QUANTIFICATION_VALUES_LIST")
        _sub(quant, "BOA_QUANTIFICATION_VALUE", 10000, {"unit": "none"})
        _sub(quant, "AOT_QUANTIFICATION_VALUE", "1000.0", {"unit": "none"})
        _sub(quant, "WVP_QUANTIFICATION_VALUE", "1000.0", {"unit": "cm"})
        if offset:
            offsets = _sub(chars, "BOA_ADD_OFFSET_VALUES_LIST")
            for i in range(13):
                _sub(offsets, "BOA_ADD_OFFSET", -offset, {"band_id": str(i)})
    conversion = _sub(chars, "Reflectance_Conversion")
    _sub(conversion, "U", repr(_sun_earth_factor(sensing)))
    irradiance = _sub(conversion, "Solar_Irradiance_List")
    spectral = _sub(chars, "Spectral_Information_List")
    for i, band in enumerate(_S2_BAND_ORDER):
        lo, hi, central, esun = _S2_SPECTRAL[band]
        _sub(irradiance, "SOLAR_IRRADIANCE", esun, {"bandId": str(i), "unit": "W/m²/µm"})
        item = _sub(
            spectral, "Spectral_Information", attrib={"bandId": str(i), "physicalBand": band.replace("B0", "B")}
        )
        _sub(item, "RESOLUTION", _S2_NATIVE_RES[band])
        wavelength = _sub(item, "Wavelength")
        _sub(wavelength, "MIN", lo, {"unit": "nm"})
        _sub(wavelength, "MAX", hi, {"unit": "nm"})
        _sub(wavelength, "CENTRAL", central, {"unit": "nm"})
    if level == "L1C":
        for i, gain in enumerate(_S2_PHYSICAL_GAINS):
            _sub(chars, "PHYSICAL_GAINS", gain, {"bandId": str(i)})
        _sub(chars, "REFERENCE_BAND", 3)
    else:
        classes = _sub(chars, "Scene_Classification_List")
        for index, text in enumerate(_SCL_NAMES):
            entry = _sub(classes, "Scene_Classification_ID")
            _sub(entry, "SCENE_CLASSIFICATION_TEXT", text)
            _sub(entry, "SCENE_CLASSIFICATION_INDEX", index)

    geometric = _sub(root, "n1:Geometric_Info")
    product_footprint = _sub(geometric, "Product_Footprint")
    global_footprint = _sub(_sub(product_footprint, "Product_Footprint"), "Global_Footprint")
    _sub(global_footprint, "EXT_POS_LIST", " ".join(f"{lat!r} {lon!r}" for lon, lat in footprint) + " ")
    _sub(product_footprint, "RASTER_CS_TYPE", "POINT")
    _sub(product_footprint, "PIXEL_ORIGIN", 1)
    crs = _sub(geometric, "Coordinate_Reference_System")
    _sub(crs, "GEO_TABLES", "EPSG", {"version": "1"})
    _sub(crs, "HORIZONTAL_CS_TYPE", "GEOGRAPHIC")

    aux = _sub(root, "n1:Auxiliary_Data_Info")
    _sub(aux, "GIPP_List")
    _sub(aux, "PRODUCTION_DEM_TYPE", "COP-DEM_GLO-90-DGED__2022_1")
    day = sensing.replace(hour=0, minute=0, second=0, microsecond=0)
    _sub(
        aux,
        "IERS_BULLETIN_FILENAME",
        f"S2__OPER_AUX_UT1UTC_PDMC_{_compact(day - timedelta(days=1))}_V{_compact(day)}_"
        f"{_compact(day + timedelta(days=365))}",
    )
    _sub(
        aux,
        "ECMWF_DATA_REF",
        f"S2__OPER_AUX_ECMWFD_ADG__{_compact(day - timedelta(days=1))}_V{_compact(day)}_"
        f"{_compact(day + timedelta(days=1))}",
    )

    quality = _sub(root, "n1:Quality_Indicators_Info")
    _sub(quality, "Cloud_Coverage_Assessment", _fmt(stats["CLOUDY"]))
    technical = _sub(quality, "Technical_Quality_Assessment")
    _sub(technical, "DEGRADED_ANC_DATA_PERCENTAGE", "0.0")
    _sub(technical, "DEGRADED_MSI_DATA_PERCENTAGE", 0)
    checks = _sub(quality, "Quality_Control_Checks")
    inspections = _sub(checks, "Quality_Inspections")
    for check in (
        "FORMAT_CORRECTNESS",
        "GENERAL_QUALITY",
        "GEOMETRIC_QUALITY",
        "RADIOMETRIC_QUALITY",
        "SENSOR_QUALITY",
    ):
        _sub(inspections, "quality_check", "PASSED", {"checkType": check})
    _sub(checks, "Failed_Inspections")
    if level == "L2A":
        _l2a_content_qi(_sub(quality, "Image_Content_QI"), stats)
    return root


def _l2a_content_qi(node: ET.Element, stats: dict[str, float]) -> None:
    for tag, key in (
        ("NODATA_PIXEL_PERCENTAGE", "NODATA"),
        ("SATURATED_DEFECTIVE_PIXEL_PERCENTAGE", "SATURATED"),
        ("DARK_FEATURES_PERCENTAGE", "DARK"),
        ("CLOUD_SHADOW_PERCENTAGE", "SHADOW"),
        ("VEGETATION_PERCENTAGE", "VEGETATION"),
        ("NOT_VEGETATED_PERCENTAGE", "NOT_VEGETATED"),
        ("WATER_PERCENTAGE", "WATER"),
        ("UNCLASSIFIED_PERCENTAGE", "UNCLASSIFIED"),
        ("MEDIUM_PROBA_CLOUDS_PERCENTAGE", "MEDIUM"),
        ("HIGH_PROBA_CLOUDS_PERCENTAGE", "HIGH"),
        ("THIN_CIRRUS_PERCENTAGE", "CIRRUS"),
        ("SNOW_ICE_PERCENTAGE", "SNOW"),
    ):
        _sub(node, tag, _fmt(stats[key]))
    for tag in ("RADIATIVE_TRANSFER_ACCURACY", "WATER_VAPOUR_RETRIEVAL_ACCURACY", "AOT_RETRIEVAL_ACCURACY"):
        _sub(node, tag, "0.0")
    _sub(node, "AOT_RETRIEVAL_METHOD", "CAMS")
    _sub(node, "GRANULE_MEAN_AOT", _fmt(stats["AOT"]))
    _sub(node, "GRANULE_MEAN_WV", _fmt(stats["WV"]))


def _angle_grid(parent: ET.Element, values: FloatArray) -> None:
    _sub(parent, "COL_STEP", 5000, {"unit": "m"})
    _sub(parent, "ROW_STEP", 5000, {"unit": "m"})
    rows = _sub(parent, "Values_List")
    for row in values:
        _sub(rows, "VALUES", " ".join(f"{v:.4f}".rstrip("0").rstrip(".") for v in row))


def _s2_tile_xml(
    level: Level,
    names: _S2Names,
    sensing: datetime,
    grid: S2TileGrid,
    size: int,
    stats: dict[str, float],
    pvi_rel: str,
    baseline: str,
) -> ET.Element:
    root = _s2_root("tile", level)
    general = _sub(root, "n1:General_Info")
    if level == "L2A":
        _sub(general, "L1C_TILE_ID", names.l1c_tile_id, {"metadataLevel": "Brief"})
    _sub(general, "TILE_ID", names.tile_id, {"metadataLevel": "Brief"})
    _sub(general, "DATASTRIP_ID", names.datastrip_id, {"metadataLevel": "Standard"})
    _sub(general, "DOWNLINK_PRIORITY", "NOMINAL", {"metadataLevel": "Standard"})
    _sub(
        general,
        "SENSING_TIME",
        _iso_us(sensing + timedelta(seconds=8, microseconds=834_000)),
        {"metadataLevel": "Standard"},
    )
    archiving = _sub(general, "Archiving_Info", attrib={"metadataLevel": "Expertise"})
    _sub(archiving, "ARCHIVING_CENTRE", f"2{names.tile_id[2]}PS")
    _sub(archiving, "ARCHIVING_TIME", _iso_us(names.generation + timedelta(minutes=25, seconds=41)))

    geometric = _sub(root, "n1:Geometric_Info")
    geocoding = _sub(geometric, "Tile_Geocoding", attrib={"metadataLevel": "Brief"})
    hemisphere = "N" if grid.epsg < 32700 else "S"
    _sub(geocoding, "HORIZONTAL_CS_NAME", f"WGS84 / UTM zone {grid.zone}{hemisphere}")
    _sub(geocoding, "HORIZONTAL_CS_CODE", f"EPSG:{grid.epsg}")
    for res in (10, 20, 60):
        size_node = _sub(geocoding, "Size", attrib={"resolution": str(res)})
        _sub(size_node, "NROWS", size * 10 // res)
        _sub(size_node, "NCOLS", size * 10 // res)
    for res in (10, 20, 60):
        position = _sub(geocoding, "Geoposition", attrib={"resolution": str(res)})
        _sub(position, "ULX", f"{grid.ulx:.0f}")
        _sub(position, "ULY", f"{grid.uly:.0f}")
        _sub(position, "XDIM", res)
        _sub(position, "YDIM", -res)

    angles = _sub(geometric, "Tile_Angles", attrib={"metadataLevel": "Standard"})
    extent = 10.0 * size
    nodes = math.ceil(extent / 5000) + 1
    to_geo = Transformer.from_crs(grid.epsg, 4326, always_xy=True)
    zenith = np.zeros((nodes, nodes))
    azimuth = np.zeros((nodes, nodes))
    for i in range(nodes):
        for j in range(nodes):
            lon, lat = to_geo.transform(grid.ulx + 5000 * j, grid.uly - 5000 * i)
            zenith[i, j], azimuth[i, j] = _solar_angles(sensing, lon, lat)
    sun = _sub(angles, "Sun_Angles_Grid")
    _angle_grid(_sub(sun, "Zenith"), zenith)
    _angle_grid(_sub(sun, "Azimuth"), azimuth)
    mean_sun = _sub(angles, "Mean_Sun_Angle")
    centre_lon, centre_lat = to_geo.transform(grid.ulx + extent / 2, grid.uly - extent / 2)
    sun_zenith, sun_azimuth = _solar_angles(sensing, centre_lon, centre_lat)
    _sub(mean_sun, "ZENITH_ANGLE", repr(sun_zenith), {"unit": "deg"})
    _sub(mean_sun, "AZIMUTH_ANGLE", repr(sun_azimuth), {"unit": "deg"})
    viewing = _sub(angles, "Mean_Viewing_Incidence_Angle_List")
    for i in range(13):
        mean_view = _sub(viewing, "Mean_Viewing_Incidence_Angle", attrib={"bandId": str(i)})
        _sub(mean_view, "ZENITH_ANGLE", repr(round(6.2 + 0.035 * i, 10)), {"unit": "deg"})
        _sub(mean_view, "AZIMUTH_ANGLE", repr(round(104.5 + 0.4 * i, 10)), {"unit": "deg"})

    quality = _sub(root, "n1:Quality_Indicators_Info", attrib={"metadataLevel": "Standard"})
    content = _sub(quality, "Image_Content_QI")
    _sub(content, "CLOUDY_PIXEL_PERCENTAGE", _fmt(stats["CLOUDY"]))
    if baseline >= "04.00":
        _sub(content, "CLOUDY_PIXEL_OVER_LAND_PERCENTAGE", _fmt(stats["CLOUDY"]))
    _sub(content, "DEGRADED_MSI_DATA_PERCENTAGE", _fmt(0.0))
    if level == "L2A":
        _l2a_content_qi(content, stats)
    else:
        _sub(content, "NODATA_PIXEL_PERCENTAGE", _fmt(stats["NODATA"]))
    _sub(quality, "Pixel_Level_QI", attrib={"geometry": "FULL_RESOLUTION"})
    _sub(quality, "PVI_FILENAME", pvi_rel)
    return root


def _s2_datastrip_xml(
    level: Level, names: _S2Names, sensing: datetime, satellite: str, relative_orbit: int, baseline: str
) -> ET.Element:
    root = _s2_root("datastrip", level)
    general = _sub(root, "n1:General_Info")
    ident = _sub(general, "Datastrip_Identification")
    _sub(ident, "DATASTRIP_ID", names.datastrip_id)
    _sub(ident, "DOWNLINK_PRIORITY", "NOMINAL")
    times = _sub(general, "Datastrip_Time_Info")
    _sub(times, "DATASTRIP_SENSING_START", _iso_us(sensing))
    _sub(times, "DATASTRIP_SENSING_STOP", _iso_us(sensing + timedelta(seconds=19, microseconds=235_000)))
    processing = _sub(general, "Processing_Info")
    _sub(processing, "PROCESSING_BASELINE", baseline)
    _sub(processing, "PROCESSING_CENTER", f"2{satellite[-1]}PS")
    _sub(processing, "UTC_DATE_TIME", _iso_us(names.generation))
    datatake = _sub(general, "Datatake_Info", attrib={"datatakeIdentifier": names.datatake_id})
    _sub(datatake, "SPACECRAFT_NAME", f"Sentinel-{satellite[1:]}")
    _sub(datatake, "DATATAKE_TYPE", "INS-NOBS")
    _sub(datatake, "DATATAKE_SENSING_START", _iso_ms(sensing))
    _sub(datatake, "SENSING_ORBIT_NUMBER", relative_orbit)
    _sub(datatake, "SENSING_ORBIT_DIRECTION", "DESCENDING")
    return root


def _inspire_xml(title: str, bounds: tuple[float, float, float, float], when: datetime) -> ET.Element:
    gmd, gco = "http://www.isotc211.org/2005/gmd", "http://www.isotc211.org/2005/gco"
    root = ET.Element("gmd:MD_Metadata", {"xmlns:gmd": gmd, "xmlns:gco": gco})
    _sub(_sub(root, "gmd:fileIdentifier"), "gco:CharacterString", title)
    _sub(
        _sub(root, "gmd:language"),
        "gmd:LanguageCode",
        "eng",
        {"codeList": "http://www.loc.gov/standards/iso639-2/", "codeListValue": "eng"},
    )
    _sub(_sub(root, "gmd:dateStamp"), "gco:Date", f"{when:%Y-%m-%d}")
    ident = _sub(_sub(root, "gmd:identificationInfo"), "gmd:MD_DataIdentification")
    citation = _sub(_sub(ident, "gmd:citation"), "gmd:CI_Citation")
    _sub(_sub(citation, "gmd:title"), "gco:CharacterString", title)
    box = _sub(_sub(_sub(ident, "gmd:extent"), "gmd:EX_Extent"), "gmd:geographicElement")
    bbox = _sub(box, "gmd:EX_GeographicBoundingBox")
    west, south, east, north = bounds
    for tag, value in (
        ("westBoundLongitude", west),
        ("eastBoundLongitude", east),
        ("southBoundLatitude", south),
        ("northBoundLatitude", north),
    ):
        _sub(_sub(bbox, f"gmd:{tag}"), "gco:Decimal", repr(value))
    return root


@dataclass(frozen=True)
class _DataObject:
    object_id: str
    rel: str
    mime: str


def _s2_manifest_xml(
    safe: Path,
    level: Level,
    objects: Sequence[_DataObject],
    sensing: datetime,
    satellite: str,
    relative_orbit: int,
    absolute_orbit: int,
    generation: datetime,
    footprint: Sequence[tuple[float, float]],
    checksum_name: str,
) -> ET.Element:
    lv = level[1:]
    root = ET.Element(
        "xfdu:XFDU",
        {
            "xmlns:gml": "http://www.opengis.net/gml",
            "xmlns:safe": "http://www.esa.int/safe/sentinel/1.1",
            "xmlns:xfdu": "urn:ccsds:schema:xfdu:1",
            "version": f"esa/safe/sentinel/1.1/sentinel-2/msi/archive_l{lv.lower()}_user_product",
        },
    )
    package = _sub(
        _sub(root, "informationPackageMap"),
        "xfdu:contentUnit",
        attrib={
            "dmdID": "acquisitionPeriod platform",
            "pdiID": "processing",
            "textInfo": f"SENTINEL-2 MSI Level-{lv} User Product",
            "unitType": f"Product_Level-{lv}",
        },
    )
    for obj in objects:
        unit_type = "Metadata Unit" if obj.mime.endswith("xml") else "Measurement Data Unit"
        unit = _sub(package, "xfdu:contentUnit", attrib={"ID": f"{obj.object_id}_Unit", "unitType": unit_type})
        _sub(unit, "dataObjectPointer", attrib={"dataObjectID": obj.object_id})

    metadata = _sub(root, "metadataSection")

    def wrapped(
        object_id: str, text_info: str, category: str = "DMD", classification: str = "DESCRIPTION"
    ) -> ET.Element:
        obj = _sub(
            metadata, "metadataObject", attrib={"ID": object_id, "category": category, "classification": classification}
        )
        wrap = _sub(
            obj,
            "metadataWrap",
            attrib={"mimeType": "text/xml", "textInfo": text_info, "vocabularyName": "Sentinel-SAFE"},
        )
        return _sub(wrap, "xmlData")

    _sub(
        _sub(wrapped("acquisitionPeriod", "Acquisition Period"), "safe:acquisitionPeriod"),
        "safe:startTime",
        _iso_ms(sensing),
    )
    orbit = _sub(wrapped("measurementOrbitReference", "Orbit Reference"), "safe:orbitReference")
    _sub(orbit, "safe:orbitNumber", f"{absolute_orbit:06d}", {"groundTrackDirection": "descending", "type": "start"})
    _sub(orbit, "safe:relativeOrbitNumber", relative_orbit, {"type": "start"})
    platform = _sub(wrapped("platform", "Platform Description"), "safe:platform")
    _sub(platform, "safe:nssdcIdentifier", _S2_NSSDC[satellite])
    _sub(platform, "safe:familyName", "SENTINEL")
    _sub(platform, "safe:number", satellite[1:])
    _sub(_sub(platform, "safe:instrument"), "safe:familyName", "Multi-Spectral Instrument", {"abbreviation": "MSI"})
    _sub(
        wrapped("processing", "Processing", "PDI", "PROVENANCE"),
        "safe:processing",
        attrib={"name": f"Generation of Level-{lv} User Product", "start": _iso_us(generation)},
    )
    frame = _sub(
        _sub(wrapped("measurementFrameSet", "Frame Set"), "safe:frameSet"),
        "safe:footPrint",
        attrib={"srsName": "http://www.opengis.net/gml/srs/epsg.xml#4326"},
    )
    _sub(frame, "gml:coordinates", " ".join(f"{lat!r} {lon!r}" for lon, lat in footprint) + " ")
    for obj in objects:
        if obj.object_id.endswith("Metadata"):
            pointer = _sub(
                metadata,
                "metadataObject",
                attrib={"ID": f"{obj.object_id}_Information", "category": "DMD", "classification": "DESCRIPTION"},
            )
            _sub(pointer, "dataObjectPointer", attrib={"dataObjectID": obj.object_id})
    _data_object_section(root, safe, objects, checksum_name)
    return root


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


def generate_s2(
    out_dir: Path,
    *,
    level: Level = "L2A",
    tile: str = "31TDH",
    sensing: datetime,
    satellite: str = "S2A",
    relative_orbit: int = 51,
    baseline: str = "05.10",
    size: int = 10980,
    seed: int = 0,
    manifest_checksum: Literal["MD5", "SHA3-256"] = "MD5",
) -> Path:
    """Write a Sentinel-2 L1C or L2A SAFE product into ``out_dir`` and return its ``.SAFE`` path.

    ``size`` is the width/height in pixels of the 10 m bands (10980 for a real tile; it must be a
    multiple of 6, at least 60); 20 m bands are size/2, 60 m bands size/6 and the PVI size*10/320,
    always covering 10 m * size from the tile's real upper-left corner. ``sensing`` (naive =
    UTC) becomes PRODUCT_START_TIME and the datastrip sensing time, so the stactools item gets
    datetime == sensing (to the millisecond) and id ``{satellite}_T{tile}_{sensing}_{level}``.
    ``manifest_checksum`` selects MD5 (default) or SHA3-256 (used by some real baselines).

    Band rasters are lossless JPEG 2000 (see ``_write_jp2_group``) without a nodata flag, as in
    real products: nodata is DN 0 (declared in the product metadata) and covers a strip along the
    tile's west edge, which the footprint excludes. Raises ``FileExistsError`` if the product
    already exists; the product only appears once complete.
    """
    if level not in ("L1C", "L2A"):
        raise ValueError(f"level must be 'L1C' or 'L2A', not {level!r}")
    if satellite not in _S2_ORBIT_REF:
        raise ValueError(f"satellite must be one of {sorted(_S2_ORBIT_REF)}, not {satellite!r}")
    if not re.fullmatch(r"\d\d\.\d\d", baseline):
        raise ValueError(f"baseline must look like '05.10', not {baseline!r}")
    if not 1 <= relative_orbit <= 143:
        raise ValueError(f"relative_orbit must be in 1..143, not {relative_orbit}")
    if manifest_checksum not in ("MD5", "SHA3-256"):
        raise ValueError(f"manifest_checksum must be 'MD5' or 'SHA3-256', not {manifest_checksum!r}")
    _check_s2_size(size)
    grid = s2_tile_grid(tile)
    sensing = _utc(sensing)
    names = _s2_names(level, grid.tile, sensing, satellite, relative_orbit, baseline)
    model = _S2Model(size, seed, level, baseline)
    footprint = s2_footprint(grid.tile, size)
    crs = CRS.from_epsg(grid.epsg)
    lv = level[1:]
    objects: list[_DataObject] = []

    with _product_dir(Path(out_dir), f"{names.product}.SAFE") as (safe, scratch):
        # -- rasters, grouped per resolution so the scene model is evaluated once per strip
        files = s2_image_files(level, baseline)
        counters: dict[int, int] = {}
        for res in (10, 20, 60):
            group = [band for band, r in files if r == res]
            specs = []
            for band in group:
                rel = _s2_image_rel(names, level, band, res) + ".jp2"
                specs.append(
                    _Jp2Spec(
                        path=safe / rel,
                        count=3 if band == "TCI" else 1,
                        dtype="uint8" if band in ("TCI", "SCL") else "uint16",
                        nbits=15 if band.startswith("B") else None,
                        block=_S2_JP2_BLOCK[res],
                        levels=_S2_JP2_LEVELS,
                    )
                )
                if level == "L1C" and band != "TCI":
                    counters[res] = counters.get(res, 0) + 1
                    object_id = f"IMG_DATA_Band_{res}m_{counters[res]}_Tile1_Data"
                elif level == "L1C":
                    object_id = "IMG_DATA_Band_TCI_Tile1_Data"
                else:
                    object_id = f"IMG_DATA_Band_{band}_{res}m_Tile1_Data"
                objects.append(_DataObject(object_id, rel, "application/octet-stream"))

            def strips(r0: int, r1: int, res: int = res, group: list[str] = group) -> list[npt.NDArray[np.generic]]:
                strip = model.strip_at(res, r0, r1)
                cache: dict[str, npt.NDArray[np.uint16]] = {}
                return [model.render(strip, band, res, r0, r1, cache) for band in group]

            _write_jp2_group(
                specs,
                scratch=scratch,
                width=model.shape(res),
                height=model.shape(res),
                transform=grid.transform(res),
                crs=crs,
                strips=strips,
            )

        # -- preview (PVI): 320 m true colour in QI_DATA
        pvi_rel = f"GRANULE/{names.granule}/QI_DATA/{names.image_stem}_PVI.jp2"
        pvi = model.shape(320)  # >= 1 as size >= 60; real PVIs are 343 x 343, one tile

        def pvi_strips(r0: int, r1: int) -> list[npt.NDArray[np.generic]]:
            return [model.render(model.strip_at(320, r0, r1), "TCI", 320, r0, r1, {})]

        _write_jp2_group(
            [_Jp2Spec(safe / pvi_rel, 3, "uint8", None, pvi, _S2_JP2_LEVELS)],
            scratch=scratch,
            width=pvi,
            height=pvi,
            transform=grid.transform(320),
            crs=crs,
            strips=pvi_strips,
        )

        # -- metadata
        stats = model.stats()
        tile_rel = f"GRANULE/{names.granule}/MTD_TL.xml"
        _write_xml(safe / tile_rel, _s2_tile_xml(level, names, sensing, grid, size, stats, pvi_rel, baseline))
        ds_rel = f"DATASTRIP/{names.datastrip_dir}/MTD_DS.xml"
        _write_xml(safe / ds_rel, _s2_datastrip_xml(level, names, sensing, satellite, relative_orbit, baseline))
        product_rel = f"MTD_MSIL{lv}.xml"
        _write_xml(
            safe / product_rel,
            _s2_product_xml(level, names, sensing, satellite, relative_orbit, baseline, footprint, stats),
        )
        lons, lats = [p[0] for p in footprint], [p[1] for p in footprint]
        _write_xml(
            safe / "INSPIRE.xml",
            _inspire_xml(names.product, (min(lons), min(lats), max(lons), max(lats)), names.generation),
        )
        objects = [
            _DataObject(f"S2_Level-{lv}_Product_Metadata", product_rel, "text/xml"),
            _DataObject("INSPIRE_Metadata", "INSPIRE.xml", "text/xml"),
            _DataObject(f"S2_Level-{lv}_Datastrip1_Metadata", ds_rel, "application/xml"),
            *objects,
            _DataObject(f"S2_Level-{lv}_Tile1_Metadata", tile_rel, "application/xml"),
            _DataObject("Preview_0_Tile1_Data", pvi_rel, "application/octet-stream"),
        ]
        _write_xml(
            safe / "manifest.safe",
            _s2_manifest_xml(
                safe,
                level,
                objects,
                sensing,
                satellite,
                relative_orbit,
                names.absolute_orbit,
                names.generation,
                footprint,
                manifest_checksum,
            ),
        )
    return Path(out_dir) / f"{names.product}.SAFE"


# ---------------------------------------------------------------------------------------------
# Sentinel-1 GRD
# ---------------------------------------------------------------------------------------------

_S1_NSSDC = {"S1A": "2014-016A", "S1B": "2016-025A", "S1C": "2024-235A"}
_S1_POL_CODES = {("VV",): "SV", ("HH",): "SH", ("VV", "VH"): "DV", ("HH", "HV"): "DH"}
# mode -> (resolution class, pixel spacing m, incidence near/far deg, full swath width m, sub-swaths)
_S1_MODES = {
    "IW": ("H", 10.0, 30.5, 46.2, 251_000.0, 3),
    "EW": ("M", 40.0, 18.9, 47.0, 410_000.0, 5),
}
_S1_GROUND_SPEED = 6670.0  # m/s; line time = azimuth pixel spacing / ground speed
_S1_ALTITUDE = 693_000.0
_EARTH_RADIUS = 6_371_000.0
_LIGHT_SPEED = 299_792_458.0
_S1_INCLINATION = 98.18
_S1_ORBIT_SECONDS = 12 * 86400 / 175


def _s1_relative_orbit(satellite: str, absolute_orbit: int) -> int:
    # S1A: ((abs - 73) mod 175) + 1, S1B: ((abs - 27) mod 175) + 1 (ESA's formulas); S1C is
    # approximated with S1A's phasing.
    offset = 27 if satellite == "S1B" else 73
    return (absolute_orbit - offset) % 175 + 1


def _s1_cycle(satellite: str, absolute_orbit: int) -> int:
    if satellite == "S1B":
        return (absolute_orbit - 27) // 175 + 1
    return (absolute_orbit - 73) // 175 + 15  # S1A: matches e.g. orbit 39156 -> cycle 238


class _S1Model:
    """Pixel model of a GRD measurement: smooth backscatter x gamma speckle, zero borders."""

    def __init__(self, lines: int, samples: int, seed: int) -> None:
        self.lines, self.samples, self.seed = lines, samples, seed
        self.land = _Field.make(seed, 11, 6, 0.6, 4.0)
        self.texture = _Field.make(seed, 12, 8, 8.0, 40.0)
        rng = np.random.default_rng([seed, 7919, 13])
        self.border_phase = float(rng.uniform(0, 2 * math.pi))

    def sigma(self, u: FloatArray, v: FloatArray) -> F32Array:
        """Relative backscatter (mean 1) on the grid v (lines) x u (samples), both in 0..1."""
        land = self.land(u, v)
        water = np.clip((0.25 - land) / 0.05, 0.0, 1.0)
        sigma = (0.35 + 1.3 * land) * (0.85 + 0.3 * self.texture(u, v)) * (1.0 - 0.92 * water)
        sigma *= (1.25 - 0.5 * u)[np.newaxis, :].astype(np.float32)  # darker towards far range
        result: F32Array = sigma.astype(np.float32)
        return result

    def borders(self, r0: int, r1: int) -> tuple[npt.NDArray[np.int64], npt.NDArray[np.int64]]:
        """Width of the zero-filled near- and far-range borders for each line."""
        v = (np.arange(r0, r1) + 0.5) / self.lines
        wave = np.sin(2 * math.pi * 1.7 * v + self.border_phase)
        left = np.maximum(1, np.rint(self.samples * (0.006 + 0.003 * wave))).astype(np.int64)
        right = np.maximum(1, np.rint(self.samples * (0.004 - 0.002 * wave))).astype(np.int64)
        return left, right

    def pixels(self, polarisation: str, r0: int, r1: int) -> npt.NDArray[np.uint16]:
        u = (np.arange(self.samples) + 0.5) / self.samples
        v = (np.arange(r0, r1) + 0.5) / self.lines
        co_pol = polarisation in ("VV", "HH")
        mean_dn = 180.0 if co_pol else 62.0
        intensity = self.sigma(u, v) * np.float32(mean_dn**2)
        key = ("HH", "HV", "VV", "VH").index(polarisation)
        speckle = np.empty_like(intensity)
        for block in range(r0 // _NOISE_ROWS, (r1 - 1) // _NOISE_ROWS + 1):
            rng = np.random.default_rng([self.seed, 101, key, block])
            gamma = rng.standard_gamma(4.4, size=(_NOISE_ROWS, self.samples), dtype=np.float32)
            b0 = block * _NOISE_ROWS
            lo, hi = max(r0, b0), min(r1, b0 + _NOISE_ROWS)
            speckle[lo - r0 : hi - r0] = gamma[lo - b0 : hi - b0]
        intensity *= speckle / np.float32(4.4)
        out: npt.NDArray[np.uint16] = np.clip(np.rint(np.sqrt(intensity)), 1, 65535).astype(np.uint16)
        left, right = self.borders(r0, r1)
        cols = np.arange(self.samples)[np.newaxis, :]
        out[(cols < left[:, np.newaxis]) | (cols >= self.samples - right[:, np.newaxis])] = 0
        return out


def s1_measurement_pixels(
    polarisation: str,
    *,
    lines: int,
    samples: int,
    seed: int = 0,
    rows: tuple[int, int] | None = None,
) -> npt.NDArray[np.uint16]:
    """The uint16 amplitudes ``generate_s1_grd`` writes for ``polarisation`` (rows = lines)."""
    polarisation = polarisation.upper()
    if polarisation not in ("HH", "HV", "VV", "VH"):
        raise ValueError(f"unknown polarisation {polarisation!r}")
    r0, r1 = _check_rows(rows, lines)
    return _S1Model(lines, samples, seed).pixels(polarisation, r0, r1)


@dataclass(frozen=True)
class _S1Geometry:
    """Flat-earth (azimuthal equidistant) placement of the GRD image around its centre."""

    center: tuple[float, float]
    heading: float  # degrees clockwise from north
    lines: int
    samples: int
    spacing: float

    def lonlat(self, line: FloatArray, pixel: FloatArray) -> tuple[FloatArray, FloatArray]:
        along = (line - (self.lines - 1) / 2) * self.spacing
        across = (pixel - (self.samples - 1) / 2) * self.spacing
        h = math.radians(self.heading)
        east = along * math.sin(h) + across * math.cos(h)  # range looks right of the track
        north = along * math.cos(h) - across * math.sin(h)
        lon0, lat0 = self.center
        aeqd = f"+proj=aeqd +lat_0={lat0} +lon_0={lon0} +datum=WGS84 +units=m +no_defs"
        lon, lat = Transformer.from_crs(aeqd, 4326, always_xy=True).transform(east, north)
        return np.asarray(lon, dtype=np.float64), np.asarray(lat, dtype=np.float64)


@dataclass(frozen=True)
class _GridPoint:
    line: int
    pixel: int
    lon: float
    lat: float
    height: float
    incidence: float
    elevation: float
    slant_range_time: float
    azimuth_time: datetime


def _s1_grid_points(
    geometry: _S1Geometry,
    start: datetime,
    line_time: float,
    incidence: Callable[[FloatArray], FloatArray],
    land: _Field,
) -> list[_GridPoint]:
    """Geolocation grid as in real annotations: a line every ~3 s, ~20 pixel intervals."""
    line_step = max(1, math.ceil(3.0 / line_time))
    pixel_step = max(1, math.ceil(geometry.samples / 20))
    lines = sorted({*range(0, geometry.lines, line_step), geometry.lines - 1})
    pixels = sorted({*range(0, geometry.samples, pixel_step), geometry.samples - 1})
    line_grid, pixel_grid = np.meshgrid(np.array(lines, float), np.array(pixels, float), indexing="ij")
    lon, lat = geometry.lonlat(line_grid.ravel(), pixel_grid.ravel())
    inc = incidence(pixel_grid.ravel())
    elevation = np.degrees(np.arcsin(np.sin(np.radians(inc)) * _EARTH_RADIUS / (_EARTH_RADIUS + _S1_ALTITUDE)))
    central = np.radians(inc - elevation)
    slant = _EARTH_RADIUS * np.sin(central) / np.sin(np.radians(elevation))
    heights = 150.0 + 600.0 * land((pixel_grid.ravel() + 0.5) / geometry.samples, np.array([0.5]))[0].astype(np.float64)
    points = []
    for i, (line, pixel) in enumerate(zip(line_grid.ravel(), pixel_grid.ravel(), strict=True)):
        points.append(
            _GridPoint(
                line=int(line),
                pixel=int(pixel),
                lon=float(lon[i]),
                lat=float(lat[i]),
                height=float(heights[i]),
                incidence=float(inc[i]),
                elevation=float(elevation[i]),
                slant_range_time=float(2 * slant[i] / _LIGHT_SPEED),
                azimuth_time=start + timedelta(seconds=float(line) * line_time),
            )
        )
    return points


def _s1_ads_header(
    root: ET.Element,
    satellite: str,
    mode: str,
    polarisation: str,
    start: datetime,
    stop: datetime,
    absolute_orbit: int,
    datatake: int,
    image_number: int,
) -> None:
    header = _sub(root, "adsHeader")
    _subs(
        header,
        (
            ("missionId", satellite),
            ("productType", "GRD"),
            ("polarisation", polarisation),
            ("mode", mode),
            ("swath", mode),
            ("startTime", _iso_us(start, z=False)),
            ("stopTime", _iso_us(stop, z=False)),
            ("absoluteOrbitNumber", absolute_orbit),
            ("missionDataTakeId", datatake),
            ("imageNumber", f"{image_number:03d}"),
        ),
    )


def _s1_annotation_xml(
    header: Callable[[ET.Element], None],
    *,
    mode: str,
    orbit_direction: str,
    heading: float,
    start: datetime,
    stop: datetime,
    anx: datetime,
    lines: int,
    samples: int,
    spacing: float,
    line_time: float,
    points: Sequence[_GridPoint],
    pixels_mean: float,
    pixels_std: float,
) -> ET.Element:
    root = ET.Element("product")
    header(root)
    quality = _sub(root, "qualityInformation")
    _sub(quality, "productQualityIndex", _sci(0.0))
    _sub(quality, "qualityDataList", attrib={"count": "0"})
    general = _sub(root, "generalAnnotation")
    info = _sub(general, "productInformation")
    _subs(
        info,
        (
            ("pass", orbit_direction.capitalize()),
            ("timelinessCategory", "NRT-3h"),
            ("platformHeading", _sci(heading)),
            ("projection", "Ground Range"),
            ("rangeSamplingRate", _sci(6.434523812571428e07)),
            ("radarFrequency", _sci(5.405000454334350e09)),
            ("azimuthSteeringRate", _sci(1.590368784)),
        ),
    )
    for tag in (
        "downlinkInformationList",
        "orbitList",
        "attitudeList",
        "rawDataAnalysisList",
        "replicaInformationList",
        "noiseList",
        "terrainHeightList",
        "azimuthFmRateList",
    ):
        _sub(general, tag, attrib={"count": "0"})
    image = _sub(root, "imageAnnotation")
    image_info = _sub(image, "imageInformation")
    mid_incidence = points[len(points) // 2].incidence
    _subs(
        image_info,
        (
            ("productFirstLineUtcTime", _iso_us(start, z=False)),
            ("productLastLineUtcTime", _iso_us(stop, z=False)),
            ("ascendingNodeTime", _iso_us(anx, z=False)),
            ("anchorTime", _iso_us(start, z=False)),
            ("productComposition", "Slice"),
            ("sliceNumber", 1),
        ),
    )
    slices = _sub(image_info, "sliceList", attrib={"count": "1"})
    one = _sub(slices, "slice")
    _sub(one, "sliceNumber", 1)
    _sub(one, "sensingStartTime", _iso_us(start, z=False))
    _sub(one, "sensingStopTime", _iso_us(stop, z=False))
    _subs(
        image_info,
        (
            ("slantRangeTime", _sci(points[0].slant_range_time)),
            ("pixelValue", "Detected"),
            ("outputPixels", "16 bit Unsigned Integer"),
            ("rangePixelSpacing", f"{spacing:.6e}"),
            ("azimuthPixelSpacing", f"{spacing:.6e}"),
            ("azimuthTimeInterval", _sci(line_time)),
            ("azimuthFrequency", _sci(1.0 / line_time)),
            ("numberOfSamples", samples),
            ("numberOfLines", lines),
            ("zeroDopMinusAcqTime", _sci(0.0)),
            ("incidenceAngleMidSwath", _sci(mid_incidence)),
        ),
    )
    statistics = _sub(image_info, "imageStatistics")
    for tag, stat in (("outputDataMean", pixels_mean), ("outputDataStdDev", pixels_std)):
        node = _sub(statistics, tag)
        _sub(node, "re", f"{stat:.6e}")
        _sub(node, "im", f"{0.0:.6e}")
    processing = _sub(image, "processingInformation")
    _subs(
        processing,
        (
            ("thermalNoiseCorrectionPerformed", "false"),
            ("srgrConversionApplied", "true"),
            ("detectionPerformed", "true"),
            ("ellipsoidName", "WGS84"),
            ("ellipsoidSemiMajorAxis", _sci(6378137.0)),
            ("ellipsoidSemiMinorAxis", _sci(6356752.314245)),
            ("orbitSource", "Downlink"),
            ("attitudeSource", "Downlink"),
        ),
    )
    _sub(_sub(root, "dopplerCentroid"), "dcEstimateList", attrib={"count": "0"})
    _sub(_sub(root, "antennaPattern"), "antennaPatternList", attrib={"count": "0"})
    timing = _sub(root, "swathTiming")
    _sub(timing, "linesPerBurst", 0)
    _sub(timing, "samplesPerBurst", 0)
    _sub(timing, "burstList", attrib={"count": "0"})
    grid = _sub(_sub(root, "geolocationGrid"), "geolocationGridPointList", attrib={"count": str(len(points))})
    for p in points:
        node = _sub(grid, "geolocationGridPoint")
        _subs(
            node,
            (
                ("azimuthTime", _iso_us(p.azimuth_time, z=False)),
                ("slantRangeTime", _sci(p.slant_range_time)),
                ("line", p.line),
                ("pixel", p.pixel),
                ("latitude", _sci(p.lat)),
                ("longitude", _sci(p.lon)),
                ("height", _sci(p.height)),
                ("incidenceAngle", _sci(p.incidence)),
                ("elevationAngle", _sci(p.elevation)),
            ),
        )
    _sub(_sub(root, "coordinateConversion"), "coordinateConversionList", attrib={"count": "0"})
    _sub(_sub(root, "swathMerging"), "swathMergeList", attrib={"count": "0"})
    return root


def _s1_vector_lines(lines: int) -> list[int]:
    step = max(1, math.ceil(lines / 26))
    return sorted({*range(0, lines, step), lines - 1})


def _s1_vector_pixels(samples: int) -> list[int]:
    return sorted({*range(0, samples, 40), samples - 1})


def _values(values: Sequence[float] | FloatArray) -> str:
    return " ".join(f"{v:.6e}" for v in values)


def _s1_calibration_xml(
    header: Callable[[ET.Element], None],
    start: datetime,
    line_time: float,
    lines: int,
    samples: int,
    incidence: Callable[[FloatArray], FloatArray],
) -> ET.Element:
    root = ET.Element("calibration")
    header(root)
    _sub(_sub(root, "calibrationInformation"), "absoluteCalibrationConstant", f"{1.0:.6e}")
    vector_lines = _s1_vector_lines(lines)
    pixels = _s1_vector_pixels(samples)
    inc = np.radians(incidence(np.array(pixels, dtype=np.float64)))
    beta = np.full(len(pixels), 474.0)
    vectors = _sub(root, "calibrationVectorList", attrib={"count": str(len(vector_lines))})
    count = {"count": str(len(pixels))}
    for line in vector_lines:
        vector = _sub(vectors, "calibrationVector")
        _sub(vector, "azimuthTime", _iso_us(start + timedelta(seconds=line * line_time), z=False))
        _sub(vector, "line", line)
        _sub(vector, "pixel", " ".join(map(str, pixels)), count)
        _sub(vector, "sigmaNought", _values(beta / np.sqrt(np.sin(inc))), count)
        _sub(vector, "betaNought", _values(beta), count)
        _sub(vector, "gamma", _values(beta / np.sqrt(np.tan(inc))), count)
        _sub(vector, "dn", _values(beta), count)
    return root


def _s1_noise_xml(
    header: Callable[[ET.Element], None],
    start: datetime,
    line_time: float,
    lines: int,
    samples: int,
    mode: str,
    swaths: int,
) -> ET.Element:
    root = ET.Element("noise")
    header(root)
    vector_lines = _s1_vector_lines(lines)
    pixels = _s1_vector_pixels(samples)
    position = np.array(pixels, dtype=np.float64) / max(1, samples - 1)
    lut = 300.0 + 2100.0 * np.exp(-1.5 * position)
    ranges = _sub(root, "noiseRangeVectorList", attrib={"count": str(len(vector_lines))})
    for line in vector_lines:
        vector = _sub(ranges, "noiseRangeVector")
        _sub(vector, "azimuthTime", _iso_us(start + timedelta(seconds=line * line_time), z=False))
        _sub(vector, "line", line)
        _sub(vector, "pixel", " ".join(map(str, pixels)), {"count": str(len(pixels))})
        _sub(vector, "noiseRangeLut", _values(lut), {"count": str(len(pixels))})
    azimuths = _sub(root, "noiseAzimuthVectorList", attrib={"count": str(swaths)})
    az_lines = sorted({*range(0, lines, 10), lines - 1})
    bounds = np.linspace(0, samples, swaths + 1).round().astype(int)
    for k in range(swaths):
        vector = _sub(azimuths, "noiseAzimuthVector")
        _sub(vector, "swath", f"{mode}{k + 1}")
        _sub(vector, "firstAzimuthLine", 0)
        _sub(vector, "firstRangeSample", int(bounds[k]))
        _sub(vector, "lastAzimuthLine", lines - 1)
        _sub(vector, "lastRangeSample", max(int(bounds[k]), int(bounds[k + 1]) - 1))
        _sub(vector, "line", " ".join(map(str, az_lines)), {"count": str(len(az_lines))})
        values = 1.0 + 0.05 * np.sin(np.array(az_lines, dtype=np.float64) / 170.0 + k)
        _sub(vector, "noiseAzimuthLut", _values(values), {"count": str(len(az_lines))})
    return root


def _s1_manifest_xml(
    safe: Path,
    objects: Sequence[_DataObject],
    rep_ids: dict[str, str],
    *,
    satellite: str,
    mode: str,
    polarisations: Sequence[str],
    start: datetime,
    stop: datetime,
    anx: datetime,
    absolute_orbit: int,
    datatake: int,
    orbit_direction: str,
    processed: datetime,
    footprint: Sequence[tuple[float, float]],
) -> ET.Element:
    s1 = "http://www.esa.int/safe/sentinel-1.0"
    root = ET.Element(
        "xfdu:XFDU",
        {
            "xmlns:xsi": _XSI,
            "xmlns:gml": "http://www.opengis.net/gml",
            "xmlns:xfdu": "urn:ccsds:schema:xfdu:1",
            "xmlns:safe": s1,
            "xmlns:s1": f"{s1}/sentinel-1",
            "xmlns:s1sar": f"{s1}/sentinel-1/sar",
            "xmlns:s1sarl1": f"{s1}/sentinel-1/sar/level-1",
            "xmlns:s1sarl2": f"{s1}/sentinel-1/sar/level-2",
            "xmlns:gx": "http://www.google.com/kml/ext/2.2",
            "version": f"esa/safe/sentinel-1.0/sentinel-1/sar/level-1/grd/standard/{mode.lower()}"
            f"{'dp' if len(polarisations) == 2 else 'sp'}",
        },
    )
    package = _sub(
        _sub(root, "informationPackageMap"),
        "xfdu:contentUnit",
        attrib={
            "unitType": "SAFE Archive Information Package",
            "textInfo": f"Sentinel-1 {mode} Level-1 GRD Product",
            "dmdID": "acquisitionPeriod platform generalProductInformation measurementOrbitReference "
            "measurementFrameSet",
            "pdiID": "processing",
        },
    )
    unit_types = {
        "s1Level1MeasurementSchema": "Measurement Data Unit",
        "s1Level1QuickLookSchema": "Measurement Data Unit",
    }
    for obj in objects:
        rep = rep_ids[obj.object_id]
        unit = _sub(
            package, "xfdu:contentUnit", attrib={"unitType": unit_types.get(rep, "Metadata Unit"), "repID": rep}
        )
        _sub(unit, "dataObjectPointer", attrib={"dataObjectID": obj.object_id})

    metadata = _sub(root, "metadataSection")

    def wrapped(
        object_id: str, text_info: str, category: str = "DMD", classification: str = "DESCRIPTION"
    ) -> ET.Element:
        obj = _sub(
            metadata, "metadataObject", attrib={"ID": object_id, "classification": classification, "category": category}
        )
        wrap = _sub(
            obj, "metadataWrap", attrib={"mimeType": "text/xml", "vocabularyName": "SAFE", "textInfo": text_info}
        )
        return _sub(wrap, "xmlData")

    for obj in objects:
        if rep_ids[obj.object_id] in ("s1Level1ProductSchema", "s1Level1NoiseSchema", "s1Level1CalibrationSchema"):
            pointer = _sub(
                metadata,
                "metadataObject",
                attrib={"ID": f"{obj.object_id}Annotation", "classification": "DESCRIPTION", "category": "DMD"},
            )
            _sub(pointer, "dataObjectPointer", attrib={"dataObjectID": obj.object_id})
    processing = _sub(
        wrapped("processing", "Processing", "PDI", "PROVENANCE"),
        "safe:processing",
        attrib={
            "name": "GRD Post Processing",
            "start": _iso_us(processed - timedelta(minutes=11), z=False),
            "stop": _iso_us(processed, z=False),
        },
    )
    facility = _sub(
        processing,
        "safe:facility",
        attrib={
            "country": "Germany",
            "name": "Copernicus S1 Core Ground Segment - DPA",
            "organisation": "ESA",
            "site": "DLR-Oberpfaffenhofen",
        },
    )
    _sub(facility, "safe:software", attrib={"name": "Sentinel-1 IPF", "version": "003.71"})
    platform = _sub(wrapped("platform", "Platform Description"), "safe:platform")
    _sub(platform, "safe:nssdcIdentifier", _S1_NSSDC[satellite])
    _sub(platform, "safe:familyName", "SENTINEL-1")
    _sub(platform, "safe:number", satellite[-1])
    instrument = _sub(platform, "safe:instrument")
    _sub(instrument, "safe:familyName", "Synthetic Aperture Radar", {"abbreviation": "SAR"})
    instrument_mode = _sub(_sub(instrument, "safe:extension"), "s1sarl1:instrumentMode")
    _sub(instrument_mode, "s1sarl1:mode", mode)
    _sub(instrument_mode, "s1sarl1:swath", mode)
    orbit = _sub(wrapped("measurementOrbitReference", "Orbit Reference"), "safe:orbitReference")
    relative = _s1_relative_orbit(satellite, absolute_orbit)
    for kind in ("start", "stop"):
        _sub(orbit, "safe:orbitNumber", absolute_orbit, {"type": kind})
    for kind in ("start", "stop"):
        _sub(orbit, "safe:relativeOrbitNumber", relative, {"type": kind})
    _sub(orbit, "safe:cycleNumber", _s1_cycle(satellite, absolute_orbit))
    _sub(orbit, "safe:phaseIdentifier", 1)
    orbit_properties = _sub(_sub(orbit, "safe:extension"), "s1:orbitProperties")
    _sub(orbit_properties, "s1:pass", orbit_direction)
    _sub(orbit_properties, "s1:ascendingNodeTime", _iso_us(anx, z=False))
    general = _sub(
        wrapped("generalProductInformation", "General Product Information"), "s1sarl1:standAloneProductInformation"
    )
    _sub(general, "s1sarl1:instrumentConfigurationID", 7)
    _sub(general, "s1sarl1:missionDataTakeID", datatake)
    for pol in polarisations:
        _sub(general, "s1sarl1:transmitterReceiverPolarisation", pol)
    for tag, value in (
        ("productClass", "S"),
        ("productClassDescription", "SAR Standard L1 Product"),
        ("productComposition", "Slice"),
        ("productType", "GRD"),
        ("productTimelinessCategory", "NRT-3h"),
        ("sliceProductFlag", "true"),
        ("segmentStartTime", _iso_us(start, z=False)),
        ("sliceNumber", 1),
        ("totalSlices", 1),
    ):
        _sub(general, f"s1sarl1:{tag}", value)
    period = _sub(wrapped("acquisitionPeriod", "Acquisition Period"), "safe:acquisitionPeriod")
    _sub(period, "safe:startTime", _iso_us(start, z=False))
    _sub(period, "safe:stopTime", _iso_us(stop, z=False))
    anx_times = _sub(_sub(period, "safe:extension"), "s1:timeANX")
    _sub(anx_times, "s1:startTimeANX", f"{(start - anx).total_seconds() * 1000:.6e}")
    _sub(anx_times, "s1:stopTimeANX", f"{(stop - anx).total_seconds() * 1000:.6e}")
    frame = _sub(
        _sub(_sub(wrapped("measurementFrameSet", "Frame Set"), "safe:frameSet"), "safe:frame"),
        "safe:footPrint",
        attrib={"srsName": "http://www.opengis.net/gml/srs/epsg.xml#4326"},
    )
    _sub(frame, "gml:coordinates", " ".join(f"{lat:.6f},{lon:.6f}" for lon, lat in footprint))
    _data_object_section(root, safe, objects, "MD5", rep_ids)
    return root


def _quicklook(model: _S1Model, polarisations: Sequence[str]) -> npt.NDArray[np.uint8]:
    width, height = max(1, model.samples // 20), max(1, model.lines // 20)
    sigma = model.sigma((np.arange(width) + 0.5) / width, (np.arange(height) + 0.5) / height)
    co = np.clip(np.sqrt(sigma) * 140.0, 0, 255)
    if len(polarisations) == 1:
        return np.stack([co] * 3).astype(np.uint8)
    cross = np.clip(np.sqrt(sigma) * 0.7 * 140.0, 0, 255)
    ratio = np.clip(cross / np.maximum(co, 1.0) * 255.0, 0, 255)
    return np.stack([co, cross, ratio]).astype(np.uint8)


def open_s1_measurement(
    path: Path, *, lines: int, samples: int, gcps: Sequence[GroundControlPoint]
) -> rasterio.io.DatasetWriter:
    """A GRD measurement as ESA writes it: uint16 GeoTIFF, strips of one line, GCPs in EPSG:4326."""
    return rasterio.open(
        path,
        "w",
        driver="GTiff",
        width=samples,
        height=lines,
        count=1,
        dtype="uint16",
        gcps=gcps,
        crs=CRS.from_epsg(4326),
        tiled=False,
        blockysize=1,
        BIGTIFF="YES",
    )


def generate_s1_grd(
    out_dir: Path,
    *,
    sensing: datetime,
    satellite: str = "S1A",
    absolute_orbit: int = 39156,
    mode: str = "IW",
    polarisations: tuple[str, ...] = ("VV", "VH"),
    lines: int = 16676,
    samples: int = 26144,
    seed: int = 0,
    center: tuple[float, float] = (3.37, 45.49),
    orbit_direction: Literal["ASCENDING", "DESCENDING"] = "ASCENDING",
) -> Path:
    """Write a Sentinel-1 GRD SAFE product into ``out_dir`` and return its ``.SAFE`` path.

    ``lines`` x ``samples`` is the measurement size (the defaults are those of a real IW GRDH
    slice; tests pass small values); pixels are 10 m (IW, GRDH) or 40 m (EW, GRDM) so the
    footprint shrinks with the image. ``sensing`` (naive = UTC) is the first-line time; the stop
    time is sensing + lines x line time. ``center`` is the scene centre (lon, lat); the scene is
    rotated by the platform heading of the ``orbit_direction``, with range increasing to the right
    of the track. Measurements are uncompressed BigTIFF strips with GCPs (EPSG:4326, one per
    geolocation-grid point of the annotation) and no geotransform, like real GRD files; they
    are written in blocks of rows, so memory stays bounded at the full size (1.7 GB on disk).
    """
    if satellite not in _S1_NSSDC:
        raise ValueError(f"satellite must be one of {sorted(_S1_NSSDC)}, not {satellite!r}")
    mode = mode.upper()
    if mode not in _S1_MODES:
        raise ValueError(f"mode must be one of {sorted(_S1_MODES)}, not {mode!r}")
    pols = tuple(sorted((p.upper() for p in polarisations), key=lambda p: p[0] != p[1]))  # co-pol first
    if pols not in _S1_POL_CODES:
        raise ValueError(f"polarisations must be one of {sorted(_S1_POL_CODES)}, not {polarisations!r}")
    if lines < 2 or samples < 2:
        raise ValueError("lines and samples must be at least 2")
    if absolute_orbit < 1:
        raise ValueError("absolute_orbit must be positive")
    if orbit_direction not in ("ASCENDING", "DESCENDING"):
        raise ValueError(f"orbit_direction must be ASCENDING or DESCENDING, not {orbit_direction!r}")
    resolution_class, spacing, inc_near, inc_far, swath_width, swaths = _S1_MODES[mode]
    line_time = spacing / _S1_GROUND_SPEED
    start = _utc(sensing)
    stop = start + timedelta(microseconds=round(lines * line_time * 1e6))
    datatake = int(absolute_orbit * 7.735) & 0xFFFFFF
    code = _S1_POL_CODES[pols]
    stem = (
        f"{satellite}_{mode}_GRD{resolution_class}_1S{code}_{_compact(start)}_{_compact(stop)}_"
        f"{absolute_orbit:06d}_{datatake:06X}"
    )
    name = f"{stem}_{hashlib.md5(stem.encode()).hexdigest()[:4].upper()}.SAFE"  # noqa: S324 - an id, not security

    heading = -14.0 if orbit_direction == "ASCENDING" else -166.0
    geometry = _S1Geometry(center=center, heading=heading, lines=lines, samples=samples, spacing=spacing)
    # time since the ascending node from the argument of latitude of the scene centre
    arg_lat = math.degrees(
        math.asin(max(-1.0, min(1.0, math.sin(math.radians(center[1])) / math.sin(math.radians(_S1_INCLINATION)))))
    )
    arg_lat = (180.0 - arg_lat if orbit_direction == "DESCENDING" else arg_lat) % 360
    anx = start - timedelta(seconds=arg_lat / 360 * _S1_ORBIT_SECONDS)
    processed = stop + timedelta(hours=2, minutes=40, seconds=5)
    model = _S1Model(lines, samples, seed)

    def incidence(pixel: FloatArray) -> FloatArray:
        result: FloatArray = inc_near + (inc_far - inc_near) * np.clip(pixel * spacing / swath_width, 0.0, 1.0)
        return result

    points = _s1_grid_points(geometry, start, line_time, incidence, model.land)
    corner = {(p.line, p.pixel): (p.lon, p.lat) for p in points}
    last_line, last_pixel = lines - 1, samples - 1
    footprint = [corner[(last_line, 0)], corner[(last_line, last_pixel)], corner[(0, last_pixel)], corner[(0, 0)]]
    gcps = [
        GroundControlPoint(row=p.line, col=p.pixel, x=p.lon, y=p.lat, z=p.height, id=str(i + 1))
        for i, p in enumerate(points)
    ]

    objects: list[_DataObject] = []
    rep_ids: dict[str, str] = {}

    def add(object_id: str, rel: str, mime: str, rep: str) -> None:
        objects.append(_DataObject(object_id, rel, mime))
        rep_ids[object_id] = rep

    with _product_dir(Path(out_dir), name) as (safe, _scratch):
        for number, pol in enumerate(pols, start=1):
            file_stem = (
                f"{satellite.lower()}-{mode.lower()}-grd-{pol.lower()}-{start:%Y%m%dt%H%M%S}-"
                f"{stop:%Y%m%dt%H%M%S}-{absolute_orbit:06d}-{datatake:06x}-{number:03d}"
            )
            object_stem = file_stem.replace("-", "")

            def header(root: ET.Element, pol: str = pol, number: int = number) -> None:
                _s1_ads_header(root, satellite, mode, pol, start, stop, absolute_orbit, datatake, number)

            # measurement, in blocks of rows; statistics gathered on the way for the annotation
            measurement_rel = f"measurement/{file_stem}.tiff"
            (safe / "measurement").mkdir(exist_ok=True)
            total, total_sq, count = 0.0, 0.0, 0
            with open_s1_measurement(safe / measurement_rel, lines=lines, samples=samples, gcps=gcps) as dst:
                dst.update_tags(
                    TIFFTAG_IMAGEDESCRIPTION=f"Sentinel-1{satellite[-1]} {mode} GRD {resolution_class}R L1",
                    TIFFTAG_SOFTWARE="Sentinel-1 IPF 003.71",
                    TIFFTAG_DATETIME=f"{processed:%Y:%m:%d %H:%M:%S}",
                )
                for r0 in range(0, lines, _STRIP_ROWS):
                    r1 = min(lines, r0 + _STRIP_ROWS)
                    data = model.pixels(pol, r0, r1)
                    valid = data[data > 0].astype(np.float64)
                    total, total_sq, count = total + valid.sum(), total_sq + (valid**2).sum(), count + valid.size
                    dst.write(data, 1, window=Window(0, r0, samples, r1 - r0))
            mean = total / count if count else 0.0
            std = math.sqrt(max(0.0, total_sq / count - mean**2)) if count else 0.0

            annotation_rel = f"annotation/{file_stem}.xml"
            _write_xml(
                safe / annotation_rel,
                _s1_annotation_xml(
                    header,
                    mode=mode,
                    orbit_direction=orbit_direction,
                    heading=heading,
                    start=start,
                    stop=stop,
                    anx=anx,
                    lines=lines,
                    samples=samples,
                    spacing=spacing,
                    line_time=line_time,
                    points=points,
                    pixels_mean=mean,
                    pixels_std=std,
                ),
            )
            noise_rel = f"annotation/calibration/noise-{file_stem}.xml"
            _write_xml(safe / noise_rel, _s1_noise_xml(header, start, line_time, lines, samples, mode, swaths))
            calibration_rel = f"annotation/calibration/calibration-{file_stem}.xml"
            _write_xml(safe / calibration_rel, _s1_calibration_xml(header, start, line_time, lines, samples, incidence))
            add(f"product{object_stem}", annotation_rel, "text/xml", "s1Level1ProductSchema")
            add(f"noise{object_stem}", noise_rel, "text/xml", "s1Level1NoiseSchema")
            add(f"calibration{object_stem}", calibration_rel, "text/xml", "s1Level1CalibrationSchema")
            add(object_stem, measurement_rel, "application/octet-stream", "s1Level1MeasurementSchema")

        # previews
        (safe / "preview").mkdir()
        quad = " ".join(
            f"{lon:.6f},{lat:.6f}"
            for lon, lat in (
                corner[(0, 0)],
                corner[(0, last_pixel)],
                corner[(last_line, last_pixel)],
                corner[(last_line, 0)],
            )
        )
        kml = ET.Element(
            "kml", {"xmlns": "http://www.opengis.net/kml/2.2", "xmlns:gx": "http://www.google.com/kml/ext/2.2"}
        )
        folder = _sub(_sub(kml, "Document"), "Folder")
        _sub(folder, "name", "Sentinel-1 Map Overlay")
        overlay = _sub(folder, "GroundOverlay")
        _sub(overlay, "name", "Sentinel-1 Image Overlay")
        _sub(_sub(overlay, "Icon"), "href", "quick-look.png")
        _sub(_sub(overlay, "gx:LatLonQuad"), "coordinates", quad)
        _write_xml(safe / "preview" / "map-overlay.kml", kml)
        html = ET.Element("html")
        body = _sub(html, "body")
        _sub(body, "h1", name)
        _sub(body, "img", attrib={"src": "quick-look.png", "alt": "quick-look"})
        (safe / "preview" / "product-preview.html").write_bytes(ET.tostring(html, encoding="utf-8", method="html"))
        ql = _quicklook(model, pols)
        with warnings.catch_warnings():  # a quick-look PNG has no georeferencing, as in real products
            warnings.simplefilter("ignore", NotGeoreferencedWarning)
            with rasterio.open(
                safe / "preview" / "quick-look.png",
                "w",
                driver="PNG",
                width=ql.shape[2],
                height=ql.shape[1],
                count=3,
                dtype="uint8",
            ) as png:
                png.write(ql)
        add("mapoverlay", "preview/map-overlay.kml", "text/xml", "s1Level1MapOverlaySchema")
        add("productpreview", "preview/product-preview.html", "text/xml", "s1Level1ProductPreviewSchema")
        add("quicklook", "preview/quick-look.png", "application/octet-stream", "s1Level1QuickLookSchema")

        _write_xml(
            safe / "manifest.safe",
            _s1_manifest_xml(
                safe,
                objects,
                rep_ids,
                satellite=satellite,
                mode=mode,
                polarisations=pols,
                start=start,
                stop=stop,
                anx=anx,
                absolute_orbit=absolute_orbit,
                datatake=datatake,
                orbit_direction=orbit_direction,
                processed=processed,
                footprint=footprint,
            ),
        )
    return Path(out_dir) / name
