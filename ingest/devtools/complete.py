"""Turn the metadata-only real SAFE fixtures into complete products the pipeline can ingest end to end.

The real Sentinel products of the vendored fixtures (tests/fixtures) carry their metadata but no
imagery (S2) or 0-byte measurement placeholders (S1), and their ``manifest.safe`` lists files the
fixtures omit.
``complete_real_safe`` copies such a product, keeps every metadata file byte-identical, writes
small seeded rasters where the product needs them and rewrites the manifest so that it lists
exactly the files present, with their real sizes and checksums:

* Sentinel-2: every ``IMAGE_FILE`` of ``MTD_MSIL1C.xml`` / ``MTD_MSIL2A.xml`` plus the
  ``PVI_FILENAME`` preview of ``MTD_TL.xml``, in the product's ``imageFormat`` (lossless JPEG 2000,
  or COG for the "GeoTIFF" products), on the tile grid of ``MTD_TL.xml`` with fewer, larger pixels.
  Pixels come from the generator's scene model; pixels outside the product footprint are 0.
* Sentinel-1 GRD: every ``measurement/*.tiff`` as a uint16 GeoTIFF with the GCPs of its
  annotation's geolocation grid (rows/columns scaled down), and ``preview/quick-look.png``.
* Sentinel-3 (SEN3): the header-only netCDF stubs are real netCDF-4 files and stay as they are (the
  collections keep netCDF, nothing is converted); ``xfdumanifest.xml`` gets their sizes and MD5s.
* Stand-ins: stactools-sentinel2 makes the INSPIRE and datastrip metadata items assets and fails
  when the manifest does not list them, so when the fixture lacks those two files a small XML
  file saying it is a stand-in is written in their place (they are never read by stactools).

Everything else the manifest lists but the fixture lacks (HTML, QI reports and masks, AUX data,
the S1 KML/HTML previews) is removed from the manifest, together with the units and metadata
objects that only pointed at it.
"""

from __future__ import annotations

import math
import re
import shutil
import warnings
import xml.etree.ElementTree as ET
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt
import rasterio
from lxml import etree  # type: ignore[import-untyped]
from pyproj import Transformer
from rasterio.control import GroundControlPoint
from rasterio.crs import CRS
from rasterio.errors import NotGeoreferencedWarning
from rasterio.features import geometry_mask
from rasterio.shutil import copy as rio_copy
from rasterio.transform import Affine
from rasterio.windows import Window

from ingest.devtools.generator.common import _STRIP_ROWS, _Jp2Spec, _product_dir, _write_jp2_group, _write_xml
from ingest.devtools.generator.sentinel1 import open_s1_measurement, s1_measurement_pixels
from ingest.devtools.generator.sentinel2 import (
    _S2_JP2_BLOCK,
    _S2_JP2_LEVELS,
    Level,
    _inspire_xml,
    _S2Model,
    s2_image_files,
)
from ingest.stages.checksums import file_digest
from ingest.stages.manifest import ALGORITHMS, ManifestEntry, manifest_entries, parse_manifest

__all__ = ["complete_real_safe"]

Strips = Callable[[int, int], Sequence[npt.NDArray[np.generic]]]

# Test data that lives beside a fixture product but is not part of it.
_NOT_PRODUCT = frozenset({"expected_output.json"})
_STAND_IN_NOTE = (
    " Stand-in written by ingest.devtools.complete: the fixture lacks this file of the real product"
    " (stactools links it as an asset, never reads it). "
)


_XFDU = "xfdumanifest.xml"


def complete_real_safe(src: Path, out_dir: Path, *, size: int = 64, seed: int = 0) -> Path:
    """Complete the real SAFE product ``src`` into ``out_dir`` and return the new ``.SAFE`` path.

    ``size`` is the side in pixels of the S2 10 m rasters (20 m / 60 m / 320 m ones get
    ceil(size * 10 / resolution), at least 1, always covering the real tile extent) and the longer
    side of the S1 measurements. The product is named after its ``PRODUCT_URI`` (S2; the fixture
    directory of one product carries an upstream ``esa_`` prefix) or its directory (S1). Output is
    deterministic for a given ``seed``; it appears only once complete, and an existing product is
    never overwritten (``FileExistsError``).
    """
    src = Path(src)
    if size < 6:
        raise ValueError(f"size must be at least 6, not {size}")
    if (src / _XFDU).is_file():
        return _complete_s3(src, Path(out_dir))
    if not (src / "manifest.safe").is_file():
        raise ValueError(f"{src} has no manifest.safe")
    mtd = _s2_metadata_file(src)
    s2 = _s2_product(src, mtd) if mtd is not None else None
    if s2 is None and not (src / "annotation").is_dir():
        raise ValueError(f"{src} is neither a Sentinel-2 nor a Sentinel-1 GRD SAFE product")
    name = s2.name if s2 is not None else src.name
    with _product_dir(Path(out_dir), name) as (safe, scratch):
        _copy_product(src, safe)
        if s2 is not None:
            _complete_s2(safe, scratch, s2, size, seed)
        else:
            _complete_s1(safe, size, seed)
        rewrite_manifest(safe / "manifest.safe")
    return Path(out_dir) / name


def _complete_s3(src: Path, out_dir: Path) -> Path:
    # the netCDF stubs are real netCDF-4 files (HDF5 with the product's global attributes): kept as they
    # are, since Sentinel-3 data is kept, not converted; only the manifest's sizes and MD5s change
    with _product_dir(out_dir, src.name) as (sen3, _):
        _copy_product(src, sen3)
        rewrite_manifest(sen3 / _XFDU)
    return out_dir / src.name


def _copy_product(src: Path, dst: Path) -> None:
    """Copy the file contents only: the fixtures are read-only and completion overwrites some files."""
    for path in sorted(src.rglob("*")):
        if path.is_symlink():
            raise ValueError(f"refusing to copy symlink {path}")
        if path.is_file() and not (path.parent == src and path.name in _NOT_PRODUCT):
            target = dst / path.relative_to(src)
            target.parent.mkdir(parents=True, exist_ok=True)
            shutil.copyfile(path, target)


# ---------------------------------------------------------------------------------------------
# XML helpers
# ---------------------------------------------------------------------------------------------


def _parse_xml(data: bytes) -> Any:
    # hardened like ingest.stages.manifest: no entities, no DTD, no network (a parser per call:
    # lxml parsers must not be shared between threads)
    parser = etree.XMLParser(resolve_entities=False, no_network=True, load_dtd=False, huge_tree=False)
    return etree.fromstring(data, parser)


def _read_xml(path: Path) -> Any:
    return _parse_xml(path.read_bytes())


def _local(el: Any) -> str:
    return str(etree.QName(el).localname)


def _elements(root: Any, name: str) -> list[Any]:
    """Descendants with local name ``name``, whatever their namespace (S2 metadata mixes them)."""
    return [el for el in root.iter(etree.Element) if _local(el) == name]


def _text(root: Any, name: str) -> str:
    found = _elements(root, name)
    if not found or not (found[0].text or "").strip():
        raise ValueError(f"no {name} in the product metadata")
    return str(found[0].text).strip()


# ---------------------------------------------------------------------------------------------
# Sentinel-2
# ---------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class _S2Image:
    rel: str  # path inside the product, with suffix
    band: str  # B01..B12, B8A, TCI, AOT, WVP or SCL
    resolution: int  # 10, 20, 60, or 320 for the preview

    @property
    def granule(self) -> str:
        return "/".join(self.rel.split("/")[:2])  # GRANULE/<granule id>


@dataclass(frozen=True)
class _S2Product:
    name: str  # PRODUCT_URI, with .SAFE
    level: Level
    baseline: str
    cog: bool  # imageFormat="GeoTIFF": the images are COGs (.tif), else JPEG 2000
    images: tuple[_S2Image, ...]  # IMAGE_FILE entries, then the granule previews
    footprints: tuple[tuple[tuple[float, float], ...], ...]  # (lon, lat) rings
    namespace: str  # of the product metadata root, e.g. .../PSD/User_Product_Level-2A.xsd
    generation: str
    datastrip_id: str


@dataclass(frozen=True)
class _TileGrid:
    """Tile geometry from MTD_TL.xml: CRS, upper-left corner per resolution, metres covered."""

    epsg: int
    corners: dict[int, tuple[float, float]]
    extent: tuple[float, float]  # east, south

    def shape(self, size: int, resolution: int) -> int:
        return max(1, math.ceil(size * 10 / resolution))

    def transform(self, size: int, resolution: int) -> Affine:
        n = self.shape(size, resolution)
        ulx, uly = self.corners.get(resolution, self.corners[min(self.corners)])
        return Affine(self.extent[0] / n, 0.0, ulx, 0.0, -self.extent[1] / n, uly)


def _s2_metadata_file(safe: Path) -> Path | None:
    return next((p for p in (safe / "MTD_MSIL1C.xml", safe / "MTD_MSIL2A.xml") if p.is_file()), None)


def _s2_product(src: Path, mtd: Path) -> _S2Product:
    root = _read_xml(mtd)
    level: Level = "L1C" if mtd.name == "MTD_MSIL1C.xml" else "L2A"
    granule = _elements(root, "Granule")[0]
    cog = granule.get("imageFormat") == "GeoTIFF"
    suffix = ".tif" if cog else ".jp2"
    images = [_s2_image(el.text.strip() + suffix, level) for el in _elements(root, "IMAGE_FILE") if el.text]
    for granule_dir in sorted({image.granule for image in images}):
        pvi = _elements(_read_xml(src / granule_dir / "MTD_TL.xml"), "PVI_FILENAME")
        if pvi and pvi[0].text:
            images.append(_S2Image(pvi[0].text.strip(), "TCI", 320))
    return _S2Product(
        name=_text(root, "PRODUCT_URI"),
        level=level,
        baseline=_text(root, "PROCESSING_BASELINE"),
        cog=cog,
        images=tuple(images),
        footprints=tuple(_ring(el.text or "") for el in _elements(root, "EXT_POS_LIST")),
        namespace=str(etree.QName(root).namespace or ""),
        generation=_text(root, "GENERATION_TIME"),
        datastrip_id=str(granule.get("datastripIdentifier", "")),
    )


def _s2_image(rel: str, level: Level) -> _S2Image:
    """Band and resolution from the file name: ``T33XWJ_<time>_B01_20m`` (L2A), ``T46RER_<time>_B01`` (L1C)."""
    parts = rel.rsplit("/", 1)[-1].rsplit(".", 1)[0].split("_")
    if len(parts) > 3 and re.fullmatch(r"\d+m", parts[3]):
        return _S2Image(rel, parts[2], int(parts[3][:-1]))
    native = dict(s2_image_files("L1C"))  # L1C names carry no resolution: each band is at its native one
    if level != "L1C" or parts[2] not in native:
        raise ValueError(f"cannot tell band and resolution of IMAGE_FILE {rel!r}")
    return _S2Image(rel, parts[2], native[parts[2]])


def _ring(pos_list: str) -> tuple[tuple[float, float], ...]:
    values = [float(v) for v in pos_list.split()]
    return tuple((lon, lat) for lat, lon in zip(values[0::2], values[1::2], strict=True))  # lat lon order


def _tile_grid(mtd_tl: Path) -> _TileGrid:
    root = _read_xml(mtd_tl)
    epsg = int(_text(root, "HORIZONTAL_CS_CODE").split(":")[-1])
    corners: dict[int, tuple[float, float]] = {}
    dims: dict[int, tuple[float, float]] = {}
    for geo in _elements(root, "Geoposition"):
        res = int(geo.get("resolution"))
        corners[res] = (float(_text(geo, "ULX")), float(_text(geo, "ULY")))
        dims[res] = (float(_text(geo, "XDIM")), abs(float(_text(geo, "YDIM"))))
    sizes = {
        int(el.get("resolution")): (int(_text(el, "NCOLS")), int(_text(el, "NROWS"))) for el in _elements(root, "Size")
    }
    res = min(set(corners) & set(sizes))  # the finest grid gives the extent (109.8 km for real tiles)
    extent = (sizes[res][0] * dims[res][0], sizes[res][1] * dims[res][1])
    return _TileGrid(epsg, corners, extent)


@dataclass(frozen=True)
class _RasterGroup:
    """Rasters of one granule and resolution: one grid, pixels rendered together strip by strip."""

    images: list[_S2Image]
    paths: list[Path]
    n: int  # width = height
    transform: Affine
    crs: CRS
    strips: Strips


def _complete_s2(safe: Path, scratch: Path, product: _S2Product, size: int, seed: int) -> None:
    model = _S2Model(size, seed, product.level, product.baseline)
    by_grid: dict[tuple[str, int], list[_S2Image]] = {}
    for image in product.images:
        by_grid.setdefault((image.granule, image.resolution), []).append(image)
    for (granule, resolution), images in sorted(by_grid.items()):
        grid = _tile_grid(safe / granule / "MTD_TL.xml")
        n, transform = grid.shape(size, resolution), grid.transform(size, resolution)
        valid = _footprint_mask(product.footprints, grid.epsg, transform, n)
        strips = _s2_strips(model, resolution, [image.band for image in images], valid)
        group = _RasterGroup(images, [safe / i.rel for i in images], n, transform, CRS.from_epsg(grid.epsg), strips)
        if product.cog:
            _write_cogs(group, scratch)
        else:
            _write_jp2s(group, scratch, block=_S2_JP2_BLOCK.get(resolution, n))
    _write_stand_ins(safe, product)


def _footprint_mask(
    footprints: Sequence[Sequence[tuple[float, float]]], epsg: int, transform: Affine, n: int
) -> npt.NDArray[np.bool_]:
    """True where the pixel centre lies in the product footprint, so rasters agree with the item geometry."""
    if not footprints:
        return np.ones((n, n), dtype=bool)
    to_grid = Transformer.from_crs(4326, epsg, always_xy=True)
    shapes = []
    for ring in footprints:
        xs, ys = to_grid.transform([p[0] for p in ring], [p[1] for p in ring])
        shapes.append({"type": "Polygon", "coordinates": [list(zip(xs, ys, strict=True))]})
    mask: npt.NDArray[np.bool_] = geometry_mask(shapes, out_shape=(n, n), transform=transform, invert=True)
    return mask


def _s2_strips(model: _S2Model, resolution: int, bands: list[str], valid: npt.NDArray[np.bool_]) -> Strips:
    """Pixels of ``bands`` for rows r0..r1 of an n x n grid spanning the tile (normalised 0..1)."""
    n = valid.shape[0]
    centres = (np.arange(n) + 0.5) / n

    def strips(r0: int, r1: int) -> list[npt.NDArray[np.generic]]:
        strip = model.strip(centres, centres[r0:r1])
        strip.valid = valid[r0:r1]  # the real footprint replaces the generator's synthetic swath edge
        cache: dict[str, npt.NDArray[np.uint16]] = {}
        return [model.render(strip, band, resolution, r0, r1, cache) for band in bands]

    return strips


def _band_layout(band: str) -> tuple[int, str, int | None]:
    """(bands, dtype, NBITS) of a raster, as in real products (15-bit reflectances, 8-bit TCI/SCL)."""
    if band == "TCI":
        return 3, "uint8", None
    if band == "SCL":
        return 1, "uint8", None
    return 1, "uint16", 15 if band.startswith("B") else None


def _write_jp2s(group: _RasterGroup, scratch: Path, *, block: int) -> None:
    """Lossless JPEG 2000 encoded the way the generator does it (real products' options)."""
    specs = []
    for path, image in zip(group.paths, group.images, strict=True):
        count, dtype, nbits = _band_layout(image.band)
        specs.append(_Jp2Spec(path, count, dtype, nbits, block, _S2_JP2_LEVELS))
    n = group.n
    _write_jp2_group(
        specs, scratch=scratch, width=n, height=n, transform=group.transform, crs=group.crs, strips=group.strips
    )


def _write_cogs(group: _RasterGroup, scratch: Path) -> None:
    """COGs (DEFLATE, nodata 0) written strip by strip through temporary GeoTIFFs (COG is copy-only)."""
    tmps = [scratch / f"{path.name}.tmp.tif" for path in group.paths]
    n = group.n
    writers = []
    try:
        for tmp, image in zip(tmps, group.images, strict=True):
            count, dtype, _ = _band_layout(image.band)
            profile = {"driver": "GTiff", "width": n, "height": n, "count": count, "dtype": dtype, "nodata": 0}
            writers.append(rasterio.open(tmp, "w", crs=group.crs, transform=group.transform, **profile))
        for r0 in range(0, n, _STRIP_ROWS):
            r1 = min(n, r0 + _STRIP_ROWS)
            for dst, data in zip(writers, group.strips(r0, r1), strict=True):
                dst.write(data if data.ndim == 3 else data[np.newaxis], window=Window(0, r0, n, r1 - r0))
    finally:
        for dst in writers:
            dst.close()
    for tmp, path in zip(tmps, group.paths, strict=True):
        path.parent.mkdir(parents=True, exist_ok=True)
        rio_copy(str(tmp), str(path), driver="COG", COMPRESS="DEFLATE", PREDICTOR="2")
        tmp.unlink()


def _write_stand_ins(safe: Path, product: _S2Product) -> None:
    lv = product.level[1:]
    for entry in manifest_entries(safe):
        target = safe / entry.path
        if target.exists():
            continue
        if entry.object_id == "INSPIRE_Metadata":
            root = _inspire_stand_in(product)
        elif entry.object_id == f"S2_Level-{lv}_Datastrip1_Metadata":
            root = _datastrip_stand_in(product)
        else:
            continue
        root.insert(0, ET.Comment(_STAND_IN_NOTE))
        _write_xml(target, root)


def _inspire_stand_in(product: _S2Product) -> ET.Element:
    """The generator's INSPIRE record, filled with the product's name, footprint bounds and generation date."""
    points = [p for ring in product.footprints for p in ring]
    if not points:
        raise ValueError(f"{product.name}: no footprint for the INSPIRE bounding box")
    lons, lats = [p[0] for p in points], [p[1] for p in points]
    when = datetime.fromisoformat(product.generation)
    return _inspire_xml(product.name.removesuffix(".SAFE"), (min(lons), min(lats), max(lons), max(lats)), when)


def _datastrip_stand_in(product: _S2Product) -> ET.Element:
    """Only what the product metadata states about its datastrip: identifier and baseline."""
    lv = product.level[1:]
    ns = product.namespace.replace(f"User_Product_Level-{lv}.xsd", f"S2_PDI_Level-{lv}_Datastrip_Metadata.xsd")
    root = ET.Element(f"n1:Level-{lv}_DataStrip_ID", {"xmlns:n1": ns})
    general = ET.SubElement(root, "n1:General_Info")
    ET.SubElement(ET.SubElement(general, "Datastrip_Identification"), "DATASTRIP_ID").text = product.datastrip_id
    ET.SubElement(ET.SubElement(general, "Processing_Info"), "PROCESSING_BASELINE").text = product.baseline
    return root


# ---------------------------------------------------------------------------------------------
# Sentinel-1 GRD
# ---------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class _S1Annotation:
    polarisation: str
    lines: int
    samples: int
    points: tuple[tuple[float, float, float, float, float], ...]  # line, pixel, lon, lat, height


def _s1_annotation(path: Path) -> _S1Annotation:
    root = _read_xml(path)
    points = tuple(
        (
            float(_text(p, "line")),
            float(_text(p, "pixel")),
            float(_text(p, "longitude")),
            float(_text(p, "latitude")),
            float(_text(p, "height")),
        )
        for p in _elements(root, "geolocationGridPoint")
    )
    return _S1Annotation(
        polarisation=_text(root, "polarisation").upper(),
        lines=int(_text(root, "numberOfLines")),
        samples=int(_text(root, "numberOfSamples")),
        points=points,
    )


def _complete_s1(safe: Path, size: int, seed: int) -> None:
    entries = manifest_entries(safe)
    pixels: dict[str, npt.NDArray[np.uint16]] = {}
    for entry in entries:
        if entry.path.startswith("measurement/") and entry.path.endswith((".tiff", ".tif")):
            annotation = _s1_annotation(safe / "annotation" / f"{Path(entry.path).stem}.xml")
            pixels[annotation.polarisation] = _write_s1_measurement(safe / entry.path, annotation, size, seed)
    if not pixels:
        raise ValueError(f"{safe.name}: the manifest lists no measurement")
    if any(entry.path == "preview/quick-look.png" for entry in entries):
        _write_quicklook(safe / "preview" / "quick-look.png", pixels)


def _write_s1_measurement(path: Path, annotation: _S1Annotation, size: int, seed: int) -> npt.NDArray[np.uint16]:
    """A GCP-georeferenced uint16 GeoTIFF like real GRD measurements, scaled to ``size`` on its long side."""
    scale = size / max(annotation.lines, annotation.samples)
    lines, samples = max(2, round(annotation.lines * scale)), max(2, round(annotation.samples * scale))
    fy, fx = lines / annotation.lines, samples / annotation.samples
    gcps = [
        GroundControlPoint(row=line * fy, col=pixel * fx, x=lon, y=lat, z=height, id=str(i + 1))
        for i, (line, pixel, lon, lat, height) in enumerate(annotation.points)
    ]
    data = s1_measurement_pixels(annotation.polarisation, lines=lines, samples=samples, seed=seed)
    path.unlink(missing_ok=True)  # the fixture's 0-byte placeholder
    with open_s1_measurement(path, lines=lines, samples=samples, gcps=gcps) as dst:
        dst.write(data, 1)
    return data


def _write_quicklook(path: Path, pixels: dict[str, npt.NDArray[np.uint16]]) -> None:
    """RGB = co-pol, cross-pol, cross/co ratio (grey for single polarisation), as real quick-looks."""
    co_pol = next(pol for pol in pixels if pol[0] == pol[1])
    co = np.clip(pixels[co_pol] * (140.0 / 180.0), 0, 255)  # generator's mean DN 180 (co) / 62 (cross)
    cross_pol = next((pol for pol in pixels if pol[0] != pol[1]), None)
    if cross_pol is None:
        planes = [co, co, co]
    else:
        cross = np.clip(pixels[cross_pol] * (98.0 / 62.0), 0, 255)
        planes = [co, cross, np.clip(cross / np.maximum(co, 1.0) * 255.0, 0, 255)]
    rgb = np.stack(planes).astype(np.uint8)
    path.parent.mkdir(parents=True, exist_ok=True)
    with warnings.catch_warnings():  # real quick-looks carry no georeferencing either
        warnings.simplefilter("ignore", NotGeoreferencedWarning)
        with rasterio.open(
            path, "w", driver="PNG", width=rgb.shape[2], height=rgb.shape[1], count=3, dtype="uint8"
        ) as png:
            png.write(rgb)


# ---------------------------------------------------------------------------------------------
# manifest.safe
# ---------------------------------------------------------------------------------------------


def rewrite_manifest(path: Path) -> None:
    """Give present files their size and checksum; drop dataObjects of absent files and what points at them.

    Edited in place with lxml so prefixes, comments, attribute order and layout of the real
    manifest stay as they were.
    """
    data = path.read_bytes()
    # refuses DTDs and hrefs leaving the product, so the hrefs below are plain relative paths
    entries = {entry.path: entry for entry in parse_manifest(data, path.name)}
    root = _parse_xml(data)
    removed: set[str] = set()
    for obj in _elements(root, "dataObject"):
        streams = [s for s in _elements(obj, "byteStream") if _elements(s, "fileLocation")]
        rels = [_href(stream) for stream in streams]
        if all((path.parent / rel).is_file() for rel in rels):
            for stream, rel in zip(streams, rels, strict=True):
                _update_stream(stream, path.parent / rel, entries.get(rel))
        else:
            removed.add(str(obj.get("ID")))
            _drop(obj)
    _drop_pointers(root, removed)
    path.write_bytes(_serialise(data, root))


def _href(stream: Any) -> str:
    href = str(_elements(stream, "fileLocation")[0].get("href", "")).strip()
    while href.startswith("./"):
        href = href[2:]
    return href


def _update_stream(stream: Any, file: Path, entry: ManifestEntry | None) -> None:
    """Set size and checksum, keeping the manifest's algorithm (S2 baseline 03.xx uses SHA3-256), else MD5."""
    stream.set("size", str(file.stat().st_size))
    found = _elements(stream, "checksum")
    checksum = found[0] if found else etree.SubElement(stream, _sibling_tag(stream, "checksum"))
    name = entry.checksum_name if entry is not None and entry.checksum_name in ALGORITHMS else "MD5"
    if checksum.get("checksumName", "").strip().upper() != name:
        checksum.set("checksumName", name)
    digest = file_digest(file, ALGORITHMS[name])
    checksum.text = digest.upper() if (checksum.text or "").strip().isupper() else digest


def _sibling_tag(el: Any, name: str) -> str:
    namespace = etree.QName(el).namespace
    return f"{{{namespace}}}{name}" if namespace else name


def _drop_pointers(root: Any, removed: set[str]) -> None:
    """Remove pointers to removed dataObjects, then units/metadata objects left without content.

    A contentUnit or metadataObject that only pointed at a removed file would be a dangling
    reference; containers (e.g. "HTML", "QI_DATA_Datastrip1") left empty go too.
    """
    dropped: set[str] = set()
    for pointer in _elements(root, "dataObjectPointer"):
        if pointer.get("dataObjectID") not in removed:
            continue
        node = pointer
        while True:
            parent = node.getparent()
            _drop(node)
            if parent is None or _local(parent) not in ("contentUnit", "metadataObject") or _has_children(parent):
                break
            if parent.get("ID"):
                dropped.add(str(parent.get("ID")))
            node = parent
    for el in root.iter(etree.Element):  # dmdID/pdiID list metadataObject IDs
        for attr in ("dmdID", "pdiID"):
            value = el.get(attr)
            if value is not None and dropped & set(value.split()):
                el.set(attr, " ".join(token for token in value.split() if token not in dropped))


def _has_children(el: Any) -> bool:
    return any(isinstance(child.tag, str) for child in el)


def _drop(el: Any) -> None:
    """Remove ``el`` and its tail; a last child hands its tail on so the closing tag keeps its indentation."""
    parent = el.getparent()
    if el.getnext() is None:
        previous = el.getprevious()
        if previous is not None:
            previous.tail = el.tail
        else:
            parent.text = el.tail
    parent.remove(el)


def _serialise(original: bytes, root: Any) -> bytes:
    """The edited tree with the original XML declaration and trailing whitespace (lxml rewrites the quotes)."""
    declaration = re.match(rb"\s*<\?xml[^>]*\?>\s*", original)
    prolog = declaration.group(0) if declaration else b""
    body: bytes = etree.tostring(root.getroottree(), encoding="UTF-8", xml_declaration=False)
    return prolog + body + original[len(original.rstrip()) :]
