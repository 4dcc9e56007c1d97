"""Plain records passed between the stages (acquire -> describe -> convert -> upload -> describe -> load)."""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any

from ingest.collections import BandKind


@dataclass(frozen=True)
class ProviderProduct:
    """A product as the provider announces it."""

    id: str
    collection: str  # EODAG collection id
    provider: str
    download_url: str | None
    checksum: str | None  # STAC file:checksum (multihash hex) or "algo:hex"
    size: int | None
    published: datetime | None
    sensing: datetime | None
    geometry: dict[str, Any] | None
    online: bool = True  # False: in the provider's long-term archive (OData Online: false)


@dataclass(frozen=True)
class ArchiveStream:
    """A product archive arriving over the network: its bytes in order, and the announced length.

    Iterating may raise IngestErrors (an interrupted transfer is a TransientProductError)."""

    chunks: Iterable[bytes]
    size: int | None  # Content-Length, when the provider sent one


@dataclass(frozen=True)
class BandMeta:
    """What a band's pixels mean, as the item says it (``raster:bands``, ``eo:bands``): written into the
    COG so that a GDAL reader gets physical values (value * scale + offset) without the item."""

    scale: float | None = None
    offset: float | None = None
    unit: str | None = None
    description: str | None = None


@dataclass(frozen=True)
class CogSource:
    """A raster asset of a product, to become a COG."""

    asset_key: str  # the stactools asset key, e.g. "B04_10m", "scl_20m", "vv"
    path: Path  # local source raster (JP2 / GeoTIFF) inside the unpacked SAFE
    kind: BandKind  # decides overview resampling
    bands: tuple[BandMeta, ...] = ()  # one per band when the item describes them, else empty


@dataclass(frozen=True)
class CogResult:
    """A converted, validated COG on local disk."""

    asset_key: str
    path: Path
    size: int
    sha256: str  # hex digest of the file
    dtype: str
    nodata: float | None
    shape: tuple[int, int]  # rows, cols
    epsg: int | None
    seconds: float = 0.0


@dataclass(frozen=True)
class MetadataFile:
    """A file of the product uploaded as it is: metadata (manifest, product and granule XML, previews), or
    data the collection keeps unconverted (``data``: Sentinel-3 netCDF, a raster the plan keeps)."""

    asset_key: str
    path: Path
    media_type: str
    data: bool = False


@dataclass(frozen=True)
class StoredObject:
    """An object in the object store, as an item asset will point at it."""

    key: str  # bucket key, e.g. "ingest/sentinel-2-l2a/<item id>/B04_10m.tif"
    href: str  # s3://bucket/key
    public_href: str | None  # https form when a public base URL is configured
    size: int
    checksum: str  # STAC file:checksum multihash (sha2-256)
    media_type: str
    uploaded: bool = True  # False when an identical object was already there


@dataclass(frozen=True)
class StorageAccess:
    """How a client reaches the objects behind ``s3://`` hrefs: written into items as storage extension
    fields when assets have no public (HTTPS) href."""

    endpoint_url: str | None  # the store's S3 endpoint as clients reach it; None for AWS S3 itself
    region: str
    requester_pays: bool = False

    @property
    def platform(self) -> str:
        """``storage:platform`` (storage extension v1.0.0): AWS, or OTHER for any S3-compatible store."""
        return "OTHER" if self.endpoint_url else "AWS"


@dataclass(frozen=True)
class Provenance:
    """Where an item comes from; recorded in the item's properties."""

    upstream_id: str  # the provider's product id (SAFE name without .SAFE)
    provider: str
    processing_baseline: str | None
    ingested_at: datetime
    upstream_checksum: str | None = None
    extra: dict[str, str] = field(default_factory=dict)
