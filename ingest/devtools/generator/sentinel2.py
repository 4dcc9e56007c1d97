"""Sentinel-2 L1C/L2A SAFE products: MGRS tile grid, band pixel model, metadata and manifest."""

from __future__ import annotations

import math
import re
import xml.etree.ElementTree as ET
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Literal

import numpy as np
import numpy.typing as npt
from pyproj import Transformer
from rasterio.crs import CRS
from rasterio.transform import Affine

from ingest.devtools.generator.common import (
    _XSI,
    F32Array,
    FloatArray,
    _block_noise,
    _check_rows,
    _compact,
    _data_object_section,
    _DataObject,
    _Field,
    _fmt,
    _iso_ms,
    _iso_us,
    _Jp2Spec,
    _product_dir,
    _sub,
    _subs,
    _utc,
    _write_jp2_group,
    _write_xml,
)

Level = Literal["L1C", "L2A"]

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
