"""On-disk catalogue of the local provider server (see :mod:`ingest.devtools.provider`).

Layout of a provider root directory::

    <root>/index.jsonl          one provider-side STAC item per line (append-only)
    <root>/products/<id>.zip    the product archives (zip whose top entry is "<id>.SAFE/", Sentinel-3: "<id>.SEN3/")

Each line of ``index.jsonl`` is a STAC item whose ``assets.product.href`` is relative to the
root (``products/<id>.zip``); :func:`entry_to_item` turns an entry into the item the HTTP server
answers, with an absolute download URL. A later line with the same id replaces an earlier one
(the file is append-only: a product republished is appended again).

Appends take an exclusive ``flock`` on the index and write whole lines; readers only consume
complete lines, so the server can reload the file while a writer appends to it.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import fcntl
import gc
import hashlib
import json
import logging
import os
import re
import shutil
import tempfile
import zipfile
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from datetime import UTC
from pathlib import Path
from typing import Any, BinaryIO

INDEX_NAME = "index.jsonl"
PRODUCTS_DIR = "products"
STAC_VERSION = "1.1.0"
FILE_EXTENSION = "https://stac-extensions.github.io/file/v2.1.0/schema.json"
TIMESTAMPS_EXTENSION = "https://stac-extensions.github.io/timestamps/v1.1.0/schema.json"
SHA256_MULTIHASH_PREFIX = "1220"  # multihash code 0x12 (sha2-256), length 0x20 (32 bytes)
CHUNK_SIZE = 1024 * 1024

logger = logging.getLogger(__name__)
_PRODUCT_ID_RE = re.compile(r"[A-Za-z0-9_\-][A-Za-z0-9._\-]*")

# properties that ProviderEntry holds as fields, not in ``properties``
_RESERVED_PROPERTIES = frozenset({"datetime", "published"})


@dataclass
class ProviderEntry:
    """One product of the provider catalogue."""

    id: str
    collection: str
    geometry: dict[str, Any]
    bbox: list[float]
    datetime: dt.datetime
    """Sensing start, aware (normalised to UTC)."""
    published: dt.datetime
    """The provider's publication / ingestion time, aware (normalised to UTC)."""
    size: int
    checksum: str
    """Hex sha256 of the zip."""
    properties: dict[str, Any] = field(default_factory=dict)
    """Extra STAC properties (platform, constellation, ...)."""

    def __post_init__(self) -> None:
        check_product_id(self.id)
        self.datetime = _aware_utc(self.datetime, "datetime")
        self.published = _aware_utc(self.published, "published")
        if not self.bbox:
            self.bbox = geometry_bbox(self.geometry)
        if len(self.bbox) not in (4, 6):
            raise ValueError(f"{self.id}: bbox must have 4 or 6 numbers, got {self.bbox!r}")
        clash = _RESERVED_PROPERTIES & self.properties.keys()
        if clash:
            raise ValueError(f"{self.id}: properties may not hold {sorted(clash)} (fields)")

    @property
    def multihash(self) -> str:
        """The sha2-256 multihash (hex) of the zip, as STAC ``file:checksum`` wants it."""
        return sha256_multihash(self.checksum)


def check_product_id(product_id: str) -> None:
    """Raise ValueError unless ``product_id`` is safe as a file name and URL path segment."""
    if not isinstance(product_id, str) or not _PRODUCT_ID_RE.fullmatch(product_id):
        raise ValueError(f"invalid product id {product_id!r} (allowed: A-Z a-z 0-9 . _ -)")


def sha256_multihash(sha256_hex: str) -> str:
    """``"1220" + sha256 hex``: the multihash of a sha2-256 digest."""
    return SHA256_MULTIHASH_PREFIX + sha256_hex.lower()


def format_datetime(value: dt.datetime) -> str:
    """RFC 3339 in UTC with a ``Z`` suffix (microseconds only when non-zero)."""
    return value.astimezone(UTC).isoformat().replace("+00:00", "Z")


def parse_datetime(text: str) -> dt.datetime:
    """Parse an RFC 3339 / ISO 8601 date-time; naive values (and plain dates) are taken as UTC."""
    value = dt.datetime.fromisoformat(text.strip().upper())
    if value.tzinfo is None:
        return value.replace(tzinfo=UTC)
    return value.astimezone(UTC)


def geometry_bbox(geometry: dict[str, Any]) -> list[float]:
    """2D bbox ``[minx, miny, maxx, maxy]`` of a GeoJSON geometry (no antimeridian handling)."""
    xs: list[float] = []
    ys: list[float] = []

    def walk(coords: Any) -> None:
        if coords and isinstance(coords[0], (int, float)):
            xs.append(float(coords[0]))
            ys.append(float(coords[1]))
        else:
            for c in coords:
                walk(c)

    if geometry.get("type") == "GeometryCollection":
        for g in geometry.get("geometries", []):
            b = geometry_bbox(g)
            xs.extend((b[0], b[2]))
            ys.extend((b[1], b[3]))
    else:
        walk(geometry.get("coordinates", []))
    if not xs:
        raise ValueError(f"geometry has no coordinates: {geometry!r}")
    return [min(xs), min(ys), max(xs), max(ys)]


def index_path(root: Path) -> Path:
    return Path(root) / INDEX_NAME


def product_path(root: Path, product_id: str) -> Path:
    check_product_id(product_id)
    return Path(root) / PRODUCTS_DIR / f"{product_id}.zip"


# ---------------------------------------------------------------------------------------------
# index lines <-> entries


def entry_to_index_record(entry: ProviderEntry) -> dict[str, Any]:
    """The provider-side STAC item stored in ``index.jsonl`` (asset href relative to the root)."""
    return _item(entry, f"{PRODUCTS_DIR}/{entry.id}.zip", links=[])


def entry_from_record(record: dict[str, Any]) -> ProviderEntry:
    """Inverse of :func:`entry_to_index_record` (also accepts an item from :func:`entry_to_item`)."""
    props = dict(record.get("properties") or {})
    sensing = props.pop("datetime", None)
    published = props.pop("published", None)
    if sensing is None:
        sensing = props.get("start_datetime")
    if sensing is None or published is None:
        raise ValueError(f"{record.get('id')}: item needs properties.datetime and published")
    asset = (record.get("assets") or {}).get("product") or {}
    checksum = str(asset.get("file:checksum", ""))
    if checksum.startswith(SHA256_MULTIHASH_PREFIX) and len(checksum) == 68:
        checksum = checksum[4:]
    geometry = record["geometry"]
    return ProviderEntry(
        id=record["id"],
        collection=record["collection"],
        geometry=geometry,
        bbox=list(record.get("bbox") or geometry_bbox(geometry)),
        datetime=parse_datetime(sensing),
        published=parse_datetime(published),
        size=int(asset.get("file:size", 0)),
        checksum=checksum,
        properties=props,
    )


def read_index_lines(root: Path, offset: int = 0) -> tuple[list[ProviderEntry], int]:
    """Entries of the complete lines of ``index.jsonl`` from byte ``offset`` on.

    Returns the entries (in file order, duplicates kept) and the offset just past the last
    complete line, to pass back in on the next call (a line being appended is left for later).
    A missing index reads as empty.
    """
    path = index_path(root)
    try:
        with open(path, "rb") as f:
            f.seek(offset)
            data = f.read()
    except FileNotFoundError:
        return [], 0
    end = data.rfind(b"\n") + 1
    entries = []
    with gc_paused():  # the cyclic GC, triggered by every 700 new dicts, costs 4/5 of the time
        for number, line in enumerate(data[:end].splitlines()):
            if not line.strip():
                continue
            try:
                entries.append(entry_from_record(json.loads(line)))
            except (ValueError, KeyError, TypeError) as exc:  # e.g. a writer died mid-line
                logger.warning("%s: skipping bad line %d after offset %d: %s", path, number + 1, offset, exc)
    return entries, offset + end


def load_index(root: Path) -> list[ProviderEntry]:
    """All entries of the index, one per id (a later line replaces an earlier one), file order."""
    entries, _ = read_index_lines(root)
    by_id: dict[str, ProviderEntry] = {}
    for entry in entries:
        by_id[entry.id] = entry
    return list(by_id.values())


def add_entries(root: Path, entries: Iterable[ProviderEntry]) -> int:
    """Append entries to the index (no product file needed: synthetic catalogues). Returns count."""
    root = Path(root)
    root.mkdir(parents=True, exist_ok=True)
    count = 0
    with open(index_path(root), "ab") as f:
        fcntl.flock(f.fileno(), fcntl.LOCK_EX)
        try:
            if _ends_mid_line(f):  # a writer died mid-line: do not glue our first line to it
                f.write(b"\n")
            buffer: list[bytes] = []
            for entry in entries:
                buffer.append(_dumps_line(entry))
                count += 1
                if len(buffer) >= 4096:
                    f.write(b"".join(buffer))
                    buffer.clear()
            f.write(b"".join(buffer))
            f.flush()
        finally:
            fcntl.flock(f.fileno(), fcntl.LOCK_UN)
    return count


def add_product(
    root: Path,
    zip_path: Path,
    *,
    collection: str,
    geometry: dict[str, Any],
    datetime: dt.datetime,
    published: dt.datetime,
    properties: dict[str, Any] | None = None,
    move: bool = False,
) -> ProviderEntry:
    """Put ``zip_path`` into ``<root>/products/<id>.zip`` (id = zip stem) and index it.

    The zip must hold only ``<id>.SAFE/...`` (Sentinel-3: ``<id>.SEN3/...``) entries. The archive
    is copied (or moved with ``move=True``) and hashed in one streaming pass, published atomically (temp file + rename),
    and only then appended to the index, so a running server never lists a partial file.
    """
    root = Path(root)
    zip_path = Path(zip_path)
    product_id = zip_path.stem
    check_product_id(product_id)
    _check_safe_zip(zip_path, product_id)
    target = product_path(root, product_id)
    target.parent.mkdir(parents=True, exist_ok=True)

    moved = False
    if move:
        try:
            os.replace(zip_path, target)
            moved = True
        except OSError:  # another file system: copy, then remove the source
            moved = False
    if moved:
        checksum, size = sha256_file(target)
    else:
        checksum, size = _copy_hashing(zip_path, target)
        if move:
            zip_path.unlink()

    entry = ProviderEntry(
        id=product_id,
        collection=collection,
        geometry=geometry,
        bbox=geometry_bbox(geometry),
        datetime=datetime,
        published=published,
        size=size,
        checksum=checksum,
        properties=dict(properties or {}),
    )
    add_entries(root, [entry])
    return entry


def sha256_file(path: Path) -> tuple[str, int]:
    """(hex sha256, size in bytes) of a file, read in 1 MiB chunks."""
    digest = hashlib.sha256()
    size = 0
    with open(path, "rb") as f:
        for chunk in _chunks(f):
            digest.update(chunk)
            size += len(chunk)
    return digest.hexdigest(), size


def entry_to_item(entry: ProviderEntry, base_url: str) -> dict[str, Any]:
    """The STAC item the provider serves for ``entry``; asset href under ``base_url``."""
    base = base_url.rstrip("/")
    links = [
        {
            "rel": "self",
            "href": f"{base}/collections/{entry.collection}/items/{entry.id}",
            "type": "application/geo+json",
        },
        {
            "rel": "parent",
            "href": f"{base}/collections/{entry.collection}",
            "type": "application/json",
        },
        {
            "rel": "collection",
            "href": f"{base}/collections/{entry.collection}",
            "type": "application/json",
        },
        {"rel": "root", "href": f"{base}/", "type": "application/json"},
    ]
    return _item(entry, f"{base}/download/{entry.id}.zip", links=links)


# ---------------------------------------------------------------------------------------------
# helpers


def _item(entry: ProviderEntry, href: str, *, links: list[dict[str, Any]]) -> dict[str, Any]:
    published = format_datetime(entry.published)
    properties: dict[str, Any] = {
        "datetime": format_datetime(entry.datetime),
        "published": published,
        **entry.properties,
    }
    if links:  # served item (not the index record, which must round-trip exactly)
        properties.setdefault("updated", published)
    return {
        "type": "Feature",
        "stac_version": STAC_VERSION,
        "stac_extensions": [FILE_EXTENSION, TIMESTAMPS_EXTENSION],
        "id": entry.id,
        "collection": entry.collection,
        "geometry": entry.geometry,
        "bbox": entry.bbox,
        "properties": properties,
        "links": links,
        "assets": {
            "product": {
                "href": href,
                "title": f"{entry.id}.zip",
                "type": "application/zip",
                "roles": ["data"],
                "file:size": entry.size,
                "file:checksum": entry.multihash,
            }
        },
    }


def _dumps_line(entry: ProviderEntry) -> bytes:
    return (json.dumps(entry_to_index_record(entry), separators=(",", ":")) + "\n").encode()


@contextlib.contextmanager
def gc_paused() -> Iterator[None]:
    """Pause the cyclic garbage collector while building many containers (index loads).

    Parsing a 100,000-line index took 3.6 s with the collector on and 0.7 s with it paused
    (it runs every 700 allocations and walks everything alive). Process-wide, hence short.
    """
    enabled = gc.isenabled()
    gc.disable()
    try:
        yield
    finally:
        if enabled:
            gc.enable()


def _ends_mid_line(f: BinaryIO) -> bool:
    size = os.fstat(f.fileno()).st_size
    if size == 0:
        return False
    with open(f.name, "rb") as r:
        r.seek(size - 1)
        return r.read(1) != b"\n"


def _aware_utc(value: dt.datetime, name: str) -> dt.datetime:
    if value.tzinfo is None or value.utcoffset() is None:
        raise ValueError(f"{name} must be timezone-aware, got naive {value!r}")
    return value.astimezone(UTC)


def _check_safe_zip(zip_path: Path, product_id: str) -> None:
    top = f"{product_id}.SEN3/" if product_id.startswith("S3") else f"{product_id}.SAFE/"
    with zipfile.ZipFile(zip_path) as zf:
        names = zf.namelist()
    if not names:
        raise ValueError(f"{zip_path}: empty zip")
    outside = [n for n in names if not n.startswith(top)]
    if outside:
        raise ValueError(f"{zip_path}: entries outside {top!r}: {outside[:3]}")


def _chunks(f: Any) -> Iterator[bytes]:
    while True:
        chunk = f.read(CHUNK_SIZE)
        if not chunk:
            return
        yield chunk


def _copy_hashing(source: Path, target: Path) -> tuple[str, int]:
    digest = hashlib.sha256()
    size = 0
    fd, tmp_name = tempfile.mkstemp(prefix=f".{target.name}.", suffix=".tmp", dir=target.parent)
    try:
        with open(source, "rb") as src, os.fdopen(fd, "wb") as dst:
            for chunk in _chunks(src):
                digest.update(chunk)
                size += len(chunk)
                dst.write(chunk)
        shutil.copystat(source, tmp_name)
        os.replace(tmp_name, target)
    except BaseException:
        Path(tmp_name).unlink(missing_ok=True)
        raise
    return digest.hexdigest(), size
