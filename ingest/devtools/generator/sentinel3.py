"""Sentinel-3 SEN3 products (OLCI L1 EFR, OLCI L2 LFR, SLSTR L1 RBT, SLSTR L2 LST).

Each product type starts from the ``xfdumanifest.xml`` of a real product
(``sentinel3_templates/<type>.xfdumanifest.xml.gz``, byte-identical to the test fixture): every
data object it lists is written as a netCDF4 file (zlib-compressed, variables per
``sentinel3_specs``, global attributes of the real file), and the manifest is rewritten only where
the generated product differs: sensing start/stop, product name and size, creation time, image
sizes, footprint, orbit numbers and the size and MD5 of every data object. Real SEN3 folders carry
no quick-look, so none is written.
"""

from __future__ import annotations

import gzip
import json
import math
import re
import zlib
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from functools import cache
from importlib import resources
from pathlib import Path
from typing import Any, Literal

import netCDF4
import numpy as np
import numpy.typing as npt
from lxml import etree  # type: ignore[import-untyped]

from ingest.devtools.generator.common import (
    _STRIP_ROWS,
    F32Array,
    FloatArray,
    _block_noise,
    _Field,
    _product_dir,
    _utc,
)
from ingest.devtools.generator.sentinel3_specs import FileSpec, Var, file_spec
from ingest.stages.checksums import file_digest
from ingest.stages.manifest import ALGORITHMS

ProductType = Literal["OL_1_EFR___", "OL_2_LFR___", "SL_1_RBT___", "SL_2_LST___"]
S3_PRODUCT_TYPES: tuple[ProductType, ...] = ("OL_1_EFR___", "OL_2_LFR___", "SL_1_RBT___", "SL_2_LST___")

_EARTH_RADIUS = 6_371_000.0
_EPOCH = datetime(2000, 1, 1, tzinfo=UTC)
_S3A_LAUNCH = datetime(2016, 2, 16, tzinfo=UTC)
_S3_ORBITS_PER_CYCLE = 385
_S3_ORBIT_SECONDS = 27 * 86400 / _S3_ORBITS_PER_CYCLE
# Orbit phasing of S3A: (sensing start, absolute orbit, relative orbit, cycle) of a real product
# (the EFR template); every template agrees with it to the orbit.
_S3A_ORBIT_REF = (datetime(2021, 10, 21, 7, 38, 27, tzinfo=UTC), 29567, 334, 77)
_ISO_SECONDS = re.compile(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\dZ")
_NAME = re.compile(
    r"^S3A_(?P<type>.{11})_(?P<start>\d{8}T\d{6})_(?P<stop>\d{8}T\d{6})_(?P<creation>\d{8}T\d{6})_"
    r"(?P<duration>\d{4})_(?P<cycle>\d{3})_(?P<relative>\d{3})_(?P<frame>\d{4})_(?P<centre>[A-Z0-9]{3})_"
    r"O_(?P<timeliness>[A-Z]{2})_(?P<baseline>\d{3})\.SEN3$"
)

# Grid geometry of the instruments (metres per pixel; the real products' tie-point and orphan layout).
_OLCI_SPACING = 300.0
_OLCI_TIE_STEP = 64  # columnsPerTiePoint
_OLCI_DETECTORS = 3700  # 5 cameras x 740
_SLSTR_COLUMNS = 1500  # 1 km nadir grid
_SLSTR_OBLIQUE = 900
_SLSTR_TIE_COLUMNS = 130
_SLSTR_ORPHANS = 187


@dataclass(frozen=True)
class _Template:
    manifest: bytes
    attributes: dict[str, dict[str, tuple[str, Any]]]
    start: datetime
    stop: datetime
    creation: datetime
    rows: int  # main grid of the real product
    columns: int
    name: re.Match[str]
    orbit: int
    relative_orbit: int
    descending: bool


def _ns_text(root: Any, local: str) -> str:
    found = root.xpath(f"//*[local-name()='{local}']")
    if not found:
        raise ValueError(f"template manifest has no {local}")
    return str(found[0].text)


def _parse_time(text: str) -> datetime:
    return datetime.strptime(text.rstrip("Z")[:26], "%Y-%m-%dT%H:%M:%S.%f").replace(tzinfo=UTC)


@cache
def _load_template(product_type: ProductType) -> _Template:
    stem = product_type.rstrip("_")
    folder = resources.files("ingest.devtools.generator") / "sentinel3_templates"
    manifest = gzip.decompress((folder / f"{stem}.xfdumanifest.xml.gz").read_bytes())
    attributes = json.loads((folder / f"{stem}.json").read_text())["global_attributes"]
    root = etree.fromstring(manifest)
    name = _NAME.match(_ns_text(root, "productName"))
    if name is None or name["type"] != product_type:
        raise ValueError(f"template of {product_type} has an unexpected product name")
    if product_type.startswith("OL"):
        size = root.xpath("//*[local-name()='imageSize']")[0]
    else:
        # RBT states several grids; LST only its 1 km one, without a grid attribute
        size = (
            root.xpath("//*[local-name()='nadirImageSize'][@grid='1 km']")
            or root.xpath("//*[local-name()='nadirImageSize']")
        )[0]
    orbit = root.xpath("//*[local-name()='orbitNumber']")[0]
    return _Template(
        manifest=manifest,
        attributes={f: {k: (v[0], v[1]) for k, v in a.items()} for f, a in attributes.items()},
        start=_parse_time(_ns_text(root, "startTime")),
        stop=_parse_time(_ns_text(root, "stopTime")),
        creation=datetime.strptime(_ns_text(root, "creationTime"), "%Y%m%dT%H%M%S").replace(tzinfo=UTC),
        rows=int(size.xpath("*[local-name()='rows']")[0].text),
        columns=int(size.xpath("*[local-name()='columns']")[0].text),
        name=name,
        orbit=int(orbit.text),
        relative_orbit=int(_ns_text(root, "relativeOrbitNumber")),
        descending=orbit.get("groundTrackDirection") == "descending",
    )


def _s3a_orbit(when: datetime) -> int:
    ref_time, ref_orbit, _, _ = _S3A_ORBIT_REF
    return ref_orbit + round((when - ref_time).total_seconds() / _S3_ORBIT_SECONDS)


def _s3a_relative_orbit(orbit: int) -> int:
    _, ref_orbit, ref_relative, _ = _S3A_ORBIT_REF
    return (ref_relative - 1 + orbit - ref_orbit) % _S3_ORBITS_PER_CYCLE + 1


def _s3a_cycle(orbit: int) -> int:
    _, ref_orbit, ref_relative, ref_cycle = _S3A_ORBIT_REF
    return ref_cycle + (ref_relative - 1 + orbit - ref_orbit) // _S3_ORBITS_PER_CYCLE


# ---------------------------------------------------------------------------------------------
# Grids and geometry
# ---------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class _Axis:
    """A dimension: its length and, for spatial ones, metres per step across the ground."""

    length: int
    spacing: float | None = None


def _axes(product_type: ProductType, columns: int, rows: int) -> dict[str, _Axis]:
    """Grid role (as in ``sentinel3_specs``) -> axis, for a product of ``columns`` x ``rows``."""
    if product_type.startswith("OL"):
        tie = (columns - 1) // _OLCI_TIE_STEP + 1
        removed = max(1, columns // 44)  # a stand-in count of removed (duplicated) pixels per row
        return {
            "rows": _Axis(rows, _OLCI_SPACING),
            "columns": _Axis(columns, _OLCI_SPACING),
            "tie_columns": _Axis(tie, _OLCI_SPACING * _OLCI_TIE_STEP),
            "removed_pixels": _Axis(removed, _OLCI_SPACING * columns / removed),
            "bands": _Axis(21),
            "detectors": _Axis(_OLCI_DETECTORS),
            "pressure_levels": _Axis(25),
            "wind_vectors": _Axis(2),
        }
    axes = {"detectors": _Axis(4), "channels": _Axis(6), "pressure_levels": _Axis(25)}
    for res, factor, spacing in (("1 km", 1, 1000.0), ("0.5 km", 2, 500.0)):
        for view, width in (("nadir", columns), ("oblique", max(2, columns * _SLSTR_OBLIQUE // _SLSTR_COLUMNS))):
            n = width * factor
            orphans = max(1, n * _SLSTR_ORPHANS // (_SLSTR_COLUMNS * factor))
            axes[f"{res}:{view}:rows"] = _Axis(rows * factor, spacing)
            axes[f"{res}:{view}:columns"] = _Axis(n, spacing)
            axes[f"{res}:{view}:orphans"] = _Axis(orphans, spacing * n / orphans)
    tie = max(2, columns * _SLSTR_TIE_COLUMNS // _SLSTR_COLUMNS)
    for view in ("nadir", "oblique"):
        axes[f"tie:{view}:rows"] = _Axis(rows, 1000.0)
        axes[f"tie:{view}:columns"] = _Axis(tie, 16_000.0)
    return axes


@dataclass(frozen=True)
class _Geometry:
    center: tuple[float, float]  # lon, lat
    heading: float  # degrees clockwise from north

    def lonlat(self, across: FloatArray, along: FloatArray) -> tuple[FloatArray, FloatArray]:
        """Longitude and latitude of the grid ``along`` (rows, metres) x ``across`` (columns, metres)."""
        h = math.radians(self.heading)
        x, y = np.meshgrid(across, along)
        east = y * math.sin(h) + x * math.cos(h)
        north = y * math.cos(h) - x * math.sin(h)
        lon0, lat0 = self.center
        lat = np.clip(lat0 + np.degrees(north / _EARTH_RADIUS), -89.9, 89.9)
        lon = lon0 + np.degrees(east / (_EARTH_RADIUS * math.cos(math.radians(lat0))))
        lon = (lon + 180.0) % 360.0 - 180.0
        return lon, lat


def _positions(axis: _Axis) -> FloatArray:
    """Metres from the grid centre of each step of ``axis``."""
    spacing = axis.spacing or 1.0
    result: FloatArray = (np.arange(axis.length, dtype=np.float64) - (axis.length - 1) / 2) * spacing
    return result


def _footprint(geometry: _Geometry, columns: _Axis, rows: _Axis, per_edge: int = 12) -> str:
    """The closed outline of the main grid as GML posList (``lat lon`` pairs), as real manifests give it."""
    xs, ys = _positions(columns), _positions(rows)
    t = np.linspace(0.0, 1.0, per_edge, endpoint=False)
    x0, x1, y0, y1 = xs[0], xs[-1], ys[0], ys[-1]
    across = np.concatenate([x0 + (x1 - x0) * t, np.full(per_edge, x1), x1 - (x1 - x0) * t, np.full(per_edge, x0)])
    along = np.concatenate([np.full(per_edge, y0), y0 + (y1 - y0) * t, np.full(per_edge, y1), y1 - (y1 - y0) * t])
    points = []
    for a, b in zip(across, along, strict=True):
        lon, lat = geometry.lonlat(np.array([a]), np.array([b]))
        points.append((float(lat[0, 0]), float(lon[0, 0])))
    points.append(points[0])
    return " ".join(f"{lat:.4f} {lon:.4f}" for lat, lon in points)


# ---------------------------------------------------------------------------------------------
# Values
# ---------------------------------------------------------------------------------------------


def _key(name: str) -> int:
    return zlib.crc32(name.encode())


class _Values:
    """Seeded values of a product's variables: a shared scene field blended with one per variable."""

    def __init__(self, seed: int, geometry: _Geometry, start: datetime, stop: datetime, olci: bool) -> None:
        self.seed = seed
        self.geometry = geometry
        self.start_us = (start - _EPOCH).total_seconds() * 1e6
        self.duration_us = (stop - start).total_seconds() * 1e6
        self.olci = olci
        self.scene = _Field.make(seed, 1, 8, 0.5, 4.0)

    def _smooth(self, name: str, shape: tuple[int, ...], r0: int, r1: int) -> F32Array:
        """Values in [0, 1] of rows ``r0:r1`` (first axis) of an array of ``shape``.

        The array is seen as 2-D (last axis x the others flattened), so strips of rows of the
        first axis are contiguous runs of flattened rows and the values do not depend on the strips.
        """
        width = shape[-1]
        per_row = int(np.prod(shape[1:-1])) if len(shape) > 2 else 1
        height = shape[0] * per_row if len(shape) > 1 else 1
        f0, f1 = (r0 * per_row, r1 * per_row) if len(shape) > 1 else (0, 1)
        u = (np.arange(width) + 0.5) / width
        v = (np.arange(f0, f1) + 0.5) / height
        own = _Field.make(self.seed, _key(name), 6, 0.5, 3.0)(u, v)
        blended: F32Array = np.float32(0.6) * self.scene(u, v) + np.float32(0.4) * own
        noise = _block_noise(self.seed, (_key(name),), f0, f1, width, 64).astype(np.float32) / np.float32(64 * 50)
        strip_shape = (r1 - r0, *shape[1:]) if len(shape) > 1 else shape
        result: F32Array = np.clip(blended + noise, 0.0, 1.0).reshape(strip_shape)
        return result

    def physical(self, var: Var, axes: list[_Axis], r0: int, r1: int) -> npt.NDArray[np.float64]:
        """Physical values of rows ``r0:r1`` (first axis) of ``var`` laid out on ``axes``."""
        shape = tuple(a.length for a in axes)
        strip = (r1 - r0, *shape[1:])
        if var.kind in ("lat", "lon"):
            lon, lat = self.geometry.lonlat(_positions(axes[1]), _positions(axes[0])[r0:r1])
            return (lat if var.kind == "lat" else lon).astype(np.float64)
        if var.kind == "alt":
            return self._smooth("altitude", shape, r0, r1).astype(np.float64) * 1500.0
        if var.kind == "time":
            return self.start_us + np.arange(r0, r1, dtype=np.float64) * self.duration_us / max(1, shape[0])
        if var.kind in ("column", "row"):
            axis = axes[-1] if var.kind == "column" else axes[0]
            metres = ("units", "m") in var.attrs
            values = _positions(axis) if metres else np.arange(axis.length, dtype=np.float64)
            chosen = values if var.kind == "column" else values[r0:r1, None]
            return np.broadcast_to(chosen, strip).astype(np.float64)
        if var.kind == "detector":
            if self.olci:
                columns = np.arange(shape[-1]) * _OLCI_DETECTORS // shape[-1]
                return np.broadcast_to(columns, strip).astype(np.float64)
            return np.broadcast_to((np.arange(r0, r1) % 2)[:, None], strip).astype(np.float64)
        if var.kind == "flags":
            bits = np.zeros(strip, dtype=np.float64)
            for bit in range(min(var.flag_count, 3)):
                bits += (self._smooth(f"{var.name}#{bit}", shape, r0, r1) > 0.55 + 0.1 * bit) * float(1 << bit)
            return bits
        return var.lo + (var.hi - var.lo) * self._smooth(var.name, shape, r0, r1).astype(np.float64)


def _pack(var: Var, values: npt.NDArray[np.float64]) -> npt.NDArray[Any]:
    dtype = np.dtype(var.dtype)
    if dtype.kind == "f":
        return values.astype(dtype)
    if var.scale is not None:
        values = (values - (var.offset or 0.0)) / var.scale
    info = np.iinfo(dtype)
    lo, hi = info.min, info.max
    if var.fill is not None:  # keep the fill value out of the data range
        lo, hi = (lo + 1, hi) if var.fill == info.min else (lo, hi - 1)
    return np.clip(np.rint(values), lo, hi).astype(dtype)


# ---------------------------------------------------------------------------------------------
# netCDF writing
# ---------------------------------------------------------------------------------------------


def _global_attributes(
    template: dict[str, tuple[str, Any]], *, name: str, start: datetime, stop: datetime, creation: datetime, orbit: int
) -> dict[str, Any]:
    """The real file's global attributes, with those that describe this product rewritten."""
    iso = f"{creation:%Y-%m-%dT%H:%M:%S}Z"
    out: dict[str, Any] = {}
    for key, (dtype, value) in template.items():
        if key == "product_name":
            value = name
        elif key == "start_time":
            value = f"{start:%Y-%m-%dT%H:%M:%S.%f}Z"
        elif key == "stop_time":
            value = f"{stop:%Y-%m-%dT%H:%M:%S.%f}Z"
        elif key == "creation_time":
            value = iso if "-" in str(value) else f"{creation:%Y%m%dT%H%M%S}Z"
        elif key == "history":
            value = _ISO_SECONDS.sub(iso, str(value))
        elif key == "absolute_orbit_number":
            value = orbit
        out[key] = value if dtype == "str" else np.dtype(dtype).type(value)
    return out


def _write_netcdf(
    path: Path, spec: FileSpec, axes: dict[str, _Axis], attributes: dict[str, Any], values: _Values
) -> None:
    with netCDF4.Dataset(path, "w", format="NETCDF4") as ds:
        ds.setncatts(attributes)
        for dim, role in spec.dims.items():
            ds.createDimension(dim, axes[role].length)
        for var in spec.variables:
            dims = [axes[spec.dims[d]] for d in var.dims]
            shape = [a.length for a in dims]
            # chunks of whole strips of rows, written one at a time: memory stays at one strip
            chunks = [min(shape[0], _STRIP_ROWS), *shape[1:]] if shape else None
            nc = ds.createVariable(
                var.name,
                var.dtype,
                var.dims,
                zlib=True,
                complevel=4,
                shuffle=True,
                fill_value=var.fill,
                chunksizes=chunks,
            )
            nc.set_auto_maskandscale(False)
            packed = np.dtype(var.dtype).kind != "f" and var.scale is not None
            if packed:
                kind = np.float64 if np.dtype(var.dtype).itemsize >= 4 else np.float32
                nc.scale_factor = kind(var.scale)
                nc.add_offset = kind(var.offset or 0.0)
            for key, text in var.attrs:
                if key == "flag_meanings":
                    count = min(var.flag_count, np.dtype(var.dtype).itemsize * 8)
                    nc.flag_masks = np.array([1 << i for i in range(count)], dtype=var.dtype)
                    text = " ".join(text.split()[:count])
                nc.setncattr(key, text)
            for r0 in range(0, shape[0], _STRIP_ROWS):
                r1 = min(shape[0], r0 + _STRIP_ROWS)
                nc[r0:r1] = _pack(var, values.physical(var, dims, r0, r1))


# ---------------------------------------------------------------------------------------------
# Manifest
# ---------------------------------------------------------------------------------------------


def _set_texts(root: Any, local: str, text: str) -> None:
    for el in root.xpath(f"//*[local-name()='{local}']"):
        el.text = text


def _rewrite_manifest(
    template: _Template,
    product: Path,
    *,
    name: str,
    start: datetime,
    stop: datetime,
    creation: datetime,
    axes: dict[str, _Axis],
    footprint: str,
    orbit: int,
) -> bytes:
    root = etree.fromstring(template.manifest)
    for local, when in (("startTime", start), ("stopTime", stop)):
        for el in root.xpath(f"//*[local-name()='acquisitionPeriod']/*[local-name()='{local}']"):
            el.text = f"{when:%Y-%m-%dT%H:%M:%S.%f}Z"
    _set_texts(root, "productName", name)
    _set_texts(root, "creationTime", f"{creation:%Y%m%dT%H%M%S}")
    _set_texts(root, "posList", footprint)
    for size in root.xpath(
        "//*[local-name()='imageSize' or local-name()='nadirImageSize' or local-name()='obliqueImageSize']"
    ):
        local = etree.QName(size).localname
        if local == "imageSize":
            grid_rows, grid_columns = axes["rows"], axes["columns"]
        else:
            view = "nadir" if local.startswith("nadir") else "oblique"
            grid = size.get("grid", "1 km")
            res = "tie" if grid == "Tie Points" else "0.5 km" if grid.startswith("0.5") else "1 km"
            grid_rows, grid_columns = axes[f"{res}:{view}:rows"], axes[f"{res}:{view}:columns"]
        for el in size.xpath("*[local-name()='rows']"):
            el.text = str(grid_rows.length)
        for el in size.xpath("*[local-name()='columns']"):
            el.text = str(grid_columns.length)
    delta = orbit - template.orbit
    for el in root.xpath("//*[local-name()='orbitReference']/*"):
        local = etree.QName(el).localname
        if local == "orbitNumber":
            el.text = str(int(el.text) + delta)
        elif local == "passNumber":
            el.text = str(int(el.text) + 2 * delta)
        elif local == "relativeOrbitNumber":
            el.text = str(_s3a_relative_orbit(orbit + int(el.text) - template.relative_orbit))
        elif local == "relativePassNumber":
            el.text = str((int(el.text) - 1 + 2 * delta) % (2 * _S3_ORBITS_PER_CYCLE) + 1)
        elif local == "cycleNumber":
            el.text = str(_s3a_cycle(orbit))
    total = 0
    for stream in root.xpath("//*[local-name()='dataObject']/*[local-name()='byteStream']"):
        href = stream.xpath("*[local-name()='fileLocation']")[0].get("href")
        path = product / href.removeprefix("./")
        size = path.stat().st_size
        total += size
        stream.set("size", str(size))
        for checksum in stream.xpath("*[local-name()='checksum']"):
            checksum.text = file_digest(path, ALGORITHMS[checksum.get("checksumName")])
    _set_texts(root, "productSize", str(total))
    body: bytes = etree.tostring(root, encoding="UTF-8")
    return b'<?xml version="1.0" encoding="UTF-8"?>\n' + body + b"\n"


def _data_files(manifest: bytes) -> list[str]:
    root = etree.fromstring(manifest)
    return [str(h).removeprefix("./") for h in root.xpath("//*[local-name()='fileLocation']/@href")]


# ---------------------------------------------------------------------------------------------
# Entry point
# ---------------------------------------------------------------------------------------------


def s3_grid(product_type: ProductType, size: int | None = None) -> tuple[int, int]:
    """(columns, rows) of the main grid for ``size`` columns (None: those of the real product)."""
    template = _load_template(product_type)
    columns = template.columns if size is None else size
    return columns, max(2, round(columns * template.rows / template.columns))


def generate_s3(
    out_dir: Path,
    *,
    product_type: ProductType = "OL_1_EFR___",
    sensing: datetime,
    size: int | None = None,
    seed: int = 0,
    center: tuple[float, float] = (3.37, 45.49),
) -> Path:
    """Write a Sentinel-3A SEN3 product into ``out_dir`` and return its ``.SEN3`` path.

    ``size`` is the number of columns of the main grid (OLCI: 4865 full-resolution columns; SLSTR:
    1500 columns of the 1 km nadir grid, the 0.5 km grids get twice as many); rows keep the real
    product's ratio; None gives the real dimensions. ``sensing`` (naive = UTC) is the sensing start;
    the stop follows from the rows at the real line time. ``center`` is the scene centre (lon, lat).
    Deterministic: the same arguments give byte-identical files.
    """
    if product_type not in S3_PRODUCT_TYPES:
        raise ValueError(f"product_type must be one of {S3_PRODUCT_TYPES}, not {product_type!r}")
    if size is not None and size < 16:
        raise ValueError(f"size must be at least 16 columns, not {size}")
    template = _load_template(product_type)
    columns, rows = s3_grid(product_type, size)
    start = _utc(sensing)
    if start < _S3A_LAUNCH:
        raise ValueError(f"sensing {start:%Y-%m-%d} is before the launch of Sentinel-3A")
    line = (template.stop - template.start) / template.rows
    stop = start + timedelta(microseconds=round(line.total_seconds() * 1e6 * rows))
    creation = (stop + (template.creation - template.stop)).replace(microsecond=0)
    orbit = _s3a_orbit(start)
    relative, cycle = _s3a_relative_orbit(orbit), _s3a_cycle(orbit)
    t = template.name
    name = (
        f"S3A_{product_type}_{start:%Y%m%dT%H%M%S}_{stop:%Y%m%dT%H%M%S}_{creation:%Y%m%dT%H%M%S}_"
        f"{int((stop - start).total_seconds()):04d}_{cycle:03d}_{relative:03d}_{t['frame']}_{t['centre']}_"
        f"O_{t['timeliness']}_{t['baseline']}.SEN3"
    )
    olci = product_type.startswith("OL")
    axes = _axes(product_type, columns, rows)
    geometry = _Geometry(center=center, heading=-167.0 if template.descending else -13.0)
    values = _Values(seed, geometry, start, stop, olci)
    main = ("columns", "rows") if olci else ("1 km:nadir:columns", "1 km:nadir:rows")
    footprint = _footprint(geometry, axes[main[0]], axes[main[1]])

    with _product_dir(Path(out_dir), name) as (product, _scratch):
        for rel in _data_files(template.manifest):
            attributes = _global_attributes(
                template.attributes[rel], name=name, start=start, stop=stop, creation=creation, orbit=orbit
            )
            _write_netcdf(product / rel, file_spec(product_type, rel), axes, attributes, values)
        (product / "xfdumanifest.xml").write_bytes(
            _rewrite_manifest(
                template,
                product,
                name=name,
                start=start,
                stop=stop,
                creation=creation,
                axes=axes,
                footprint=footprint,
                orbit=orbit,
            )
        )
    return Path(out_dir) / name
