"""Describe a product: its stactools item, which of its files are converted or uploaded as they are,
and the item that is finally loaded (every href in the object store, file/raster/projection/processing
fields, provenance), validated offline.

The pipeline calls, in this order::

    item = build_item(safe, spec)                 # stactools item, hrefs into the unpacked SAFE
    raster_sources(item, spec)  -> convert       # CogSource per raster asset
    metadata_files(item)        -> upload as-is  # MetadataFile per file kept unchanged
    finalize_item(item, stored=..., cogs=..., provenance=..., now=...)  -> load

What happens to each asset stactools makes (``treatment``): what the collection's asset plan says for
its key (``assets:`` in the collection file, ``ingest.asset_plan``: ``cog`` convert, ``keep`` as-is,
``drop``), and for a key the plan does not name, the default by role:

* **convert** - role ``data`` or ``visual`` and a JPEG 2000 / GeoTIFF file: every S2 band at every
  resolution stactools lists (``blue``, ``blue_20m``, ``scl``, ``aot_60m``, ...), the TCI (``visual*``),
  S1 ``vv``/``vh``. They become COGs, resampled per band kind (``spec.cog.kind_of``).
* **as-is** - role ``data`` in netCDF (Sentinel-3: every measurement, on the instrument's swath
  grid with its geolocation in other files of the product, which a COG cannot carry without a
  reprojection we would then own); role ``metadata`` (``safe_manifest``, ``product_metadata``,
  ``granule_metadata``, ``datastrip_metadata``, ``inspire_metadata``; S1 ``safe-manifest``,
  ``schema-product-*``, ``schema-calibration-*``, ``schema-noise-*``; S3 ``safe-manifest``) and the
  S2 preview (role ``overview``: the PVI JPEG 2000, a few hundred KB, advertised by the collections'
  ``item_assets`` in its original type). A file stactools links but the product lacks is left out
  (see below).
* **drop** - stactools' ``thumbnail`` (S1 ``quick-look.png``): the pipeline replaces it with the PNG
  ``ingest.stages.preview`` makes (from the quick-look, downscaled), uploaded beside the COGs; anything
  else; and in ``finalize_item`` every asset that was not stored: an item never points at a local or
  missing file.

Hrefs: ``StoredObject.href`` (``s3://bucket/key``). When the store has a public base URL the https form
is the href and the s3 form is kept as ``alternate.s3.href`` - the layout of the alternate-assets
extension, whose schema we do not ship, so its URL is not declared (declaring it would make the
validator report it as not checked; core STAC allows the extra field, stac-pydantic too).

Without a public base URL every href is ``s3://`` and each asset says how to read it (``StorageAccess``,
from the settings): storage extension v1.0.0 ``storage:platform`` (``AWS``, or ``OTHER`` for MinIO, Ceph,
...), ``storage:region``, ``storage:requester_pays``, and ``ingest:s3_endpoint`` (the endpoint URL clients
use; absent for AWS). Why v1.0.0 and not v2.0.0, which has an endpoint field (``storage:schemes`` /
``platform`` URI template, ``storage:refs`` on assets): v2's schema ``$ref``s ``./platforms/*.json``,
which are not among the shipped schemas, so it cannot be validated offline (jsonschema cannot even
resolve it); v1.0.0 is complete, so every item is checked against it. v1.0.0 has no endpoint field,
hence ours, in our own namespace rather than an invented ``storage:`` name. With https hrefs none of
these fields is written (they would describe the https href, which needs none of them).

Links: stactools' (licence, technical guide) are kept; a relative ``collection`` link
(``../collection.json``) is added because the item schema requires one once ``collection`` is set.
stac-fastapi-pgstac replaces stored self/parent/collection/root links with its own, so it never
reaches a client; the stored document validates on its own.

Fields set on the final item:

* assets: ``file:size``, ``file:checksum`` (multihash sha2-256, from the store); COGs also get
  ``type`` = COG, ``raster:bands`` (``data_type``/``nodata`` from the COG, stactools' scale, offset,
  unit, spatial_resolution and classification classes kept) and ``proj:shape`` (always the COG's),
  ``proj:code`` (when the COG's CRS differs from the item's), ``proj:transform``/``proj:bbox`` (kept from
  stactools when the COG is on the same grid, otherwise read from the COG, otherwise left out).
* properties: ``created`` = ``updated`` = ``now`` (the stactools value is the time of a local run and
  means nothing; on a re-ingestion the loader may carry the first ``created`` over),
  ``processing:level`` (L1C / L2A / L1), ``processing:software`` (``eo-ingest`` and the stactools package
  with their versions), ``ingest:upstream_id``, ``ingest:provider``, ``ingest:processing_baseline``,
  ``ingest:upstream_checksum``, ``ingest:ingested_at`` and ``ingest:<key>`` for ``Provenance.extra``
  (fields whose value is None are left out). S2's ``s2:processing_baseline`` stays as stactools set it.
* assets with ``s3://`` hrefs: ``storage:platform``, ``storage:region``, ``storage:requester_pays`` and
  ``ingest:s3_endpoint`` (see Hrefs above).
* extensions: file v2.1.0, processing v1.2.0, raster v1.1.0, projection v2.0.0 and storage v1.0.0 when
  used - all of them schemas shipped in ``ingest/schemas``, so validation checks them.

What stactools gets wrong, and what we do:

* S1 GRD: item ``proj:shape`` is ``[samples, lines]`` (x, y: STAC wants rows, cols) and
  ``proj:transform`` describes an axis-aligned EPSG:4326 grid the GCP-georeferenced measurement does
  not have. COG assets carry their own grid, and item-level ``proj:shape``/``proj:transform`` are
  removed whenever they disagree with any COG (``proj:code``/``proj:bbox``/``proj:centroid`` stay: they
  are true of the footprint).
* S1 GRD: the ``thumbnail`` asset is always added (``preview/quick-look.png``), present or not; S2:
  ``datastrip_metadata`` and ``inspire_metadata`` are linked by naming convention without being read.
  Missing ones are not uploaded, so the final item does not list them.
* S2 GeoTIFF-format products (ESRI re-processing): every ``.tif`` is typed as a COG without a look;
  the bands are converted anyway, and an as-is preview is uploaded as plain GeoTIFF.
* S1 GRD: the geometry holds tuples (shapely ``mapping``): the item dict is copied through JSON.
* ``create_item`` builds hrefs from paths inside the product's XML: a hostile product could point
  outside its folder, so ``build_item`` refuses any href that does not resolve inside the SAFE.
"""

from __future__ import annotations

import json
import logging
import math
import mimetypes
import re
from collections.abc import Iterable, Mapping
from datetime import UTC, datetime
from functools import cache
from importlib.metadata import PackageNotFoundError, version
from pathlib import Path
from typing import Any, Literal

import pystac

from ingest.asset_plan import THUMBNAIL_KEY
from ingest.collections import CollectionSpec
from ingest.errors import IngestError, InvalidProduct
from ingest.stac_validation import validate_item
from ingest.stages import kinds
from ingest.stages.artifacts import (
    BandMeta,
    CogResult,
    CogSource,
    MetadataFile,
    Provenance,
    StorageAccess,
    StoredObject,
)
from ingest.stages.checksums import to_multihash
from ingest.stages.kinds import NETCDF_MEDIA_TYPE, product_name
from ingest.stages.upload import COG_MEDIA_TYPE

log = logging.getLogger(__name__)

FILE_EXT = "https://stac-extensions.github.io/file/v2.1.0/schema.json"
RASTER_EXT = "https://stac-extensions.github.io/raster/v1.1.0/schema.json"
PROJECTION_EXT = "https://stac-extensions.github.io/projection/v2.0.0/schema.json"
PROCESSING_EXT = "https://stac-extensions.github.io/processing/v1.2.0/schema.json"
STORAGE_EXT = "https://stac-extensions.github.io/storage/v1.0.0/schema.json"
ENDPOINT_FIELD = "ingest:s3_endpoint"  # the storage extension v1.0.0 has no endpoint field (module docstring)
GEOTIFF_MEDIA_TYPE = "image/tiff; application=geotiff"
SOFTWARE = "eo-ingest"

Treatment = Literal["convert", "as_is", "drop"]

_PREVIEW_ROLES = frozenset({"overview"})
_RASTER_ROLES = frozenset({"data", "visual"})
_RASTER_TYPES = ("image/jp2", "image/tiff")
_RASTER_SUFFIXES = (".jp2", ".tif", ".tiff")
_REMOTE_SCHEMES = ("s3://", "https://", "http://")  # http only for a local development store


# --------------------------------------------------------------------------- build_item


def build_item(folder: Path, spec: CollectionSpec) -> pystac.Item:
    """The stactools item of an unpacked product folder (SAFE, SEN3), with local hrefs, in ``spec.id``."""
    kind = kinds.product_kind(folder, spec)
    root = folder.absolute()  # absolute hrefs: raster_sources/metadata_files must not depend on the cwd
    kinds.check_folder(kind, root)
    try:
        item = kinds.create_item(kind, root)
    except Exception as exc:  # stactools and lxml raise many types on bad metadata (ValueError, KeyError, ...)
        raise InvalidProduct(f"{folder.name}: cannot describe: {_one_line(exc)}") from exc
    kinds.check_level(item, kind, folder.name)
    _check_inside(item, root, folder.name)
    item.collection_id = spec.id
    item.properties["processing:level"] = kind.level
    item.properties["processing:software"] = {kind.stactools: _version(kind.stactools)}
    return item


def _check_inside(item: pystac.Item, root: Path, name: str) -> None:
    # hrefs come from paths written in the product's XML: never let one lead out of the product
    top = root.resolve()
    outside = sorted(k for k, a in item.assets.items() if "://" in a.href or not _resolves_under(a.href, top))
    if outside:
        raise InvalidProduct(f"{name}: cannot describe: metadata points outside the product for {', '.join(outside)}")


def _resolves_under(href: str, top: Path) -> bool:
    return Path(href).resolve().is_relative_to(top)


# --------------------------------------------------------------------------- what to convert / upload


def treatment(key: str, asset: pystac.Asset, spec: CollectionSpec) -> Treatment:
    """Convert to COG, upload as it is, or drop: the collection's asset plan for ``key`` when it has a
    rule, else the default by role (module docstring)."""
    roles = set(asset.roles or [])
    if "thumbnail" in roles or key == THUMBNAIL_KEY:
        return "drop"  # ingest.stages.preview makes the thumbnail (unless the plan drops it); the pipeline uploads it
    rule = spec.asset_rule(key)
    if rule == "cog":
        return "convert"
    if rule == "keep":
        return "as_is"
    if rule == "drop":
        return "drop"
    if roles & _PREVIEW_ROLES:
        return "as_is"
    if roles & _RASTER_ROLES and _is_raster(asset):
        return "convert"
    if "data" in roles and asset.media_type == NETCDF_MEDIA_TYPE:
        return "as_is"  # S3 measurements on the instrument's swath: a COG would need a reprojection
    if "metadata" in roles:
        return "as_is"
    return "drop"


def _is_raster(asset: pystac.Asset) -> bool:
    if asset.media_type:
        return asset.media_type.startswith(_RASTER_TYPES)
    return asset.href.lower().endswith(_RASTER_SUFFIXES)


def raster_sources(item: pystac.Item, spec: CollectionSpec) -> list[CogSource]:
    """The rasters to convert, with the band kind the collection gives each asset key."""
    planned = {key: asset for key, asset in item.assets.items() if treatment(key, asset, spec) == "convert"}
    not_raster = sorted(key for key, asset in planned.items() if not _is_raster(asset))
    if not_raster:  # the plan says cog for an asset stactools describes as something else
        raise InvalidProduct(
            f"{product_name(item)}: the asset plan converts assets that are not rasters: {', '.join(not_raster)}"
        )
    sources = [
        CogSource(key, Path(asset.href), spec.cog.kind_of(key), band_meta(asset)) for key, asset in planned.items()
    ]
    # a band the metadata lists but the product lacks is an incomplete product, not a retryable error
    missing = sorted(s.asset_key for s in sources if not s.path.is_file())
    if missing:
        raise InvalidProduct(f"{product_name(item)}: raster files its metadata lists are missing: {', '.join(missing)}")
    if not sources and not any(_kept_data(k, a, spec) for k, a in item.assets.items()):
        raise InvalidProduct(f"{product_name(item)}: no raster to convert and no data file to keep")
    return sources


def _kept_data(key: str, asset: pystac.Asset, spec: CollectionSpec) -> bool:
    return _is_data(asset) and treatment(key, asset, spec) == "as_is"


def _is_data(asset: pystac.Asset) -> bool:
    return bool(set(asset.roles or []) & _RASTER_ROLES)


def band_meta(asset: pystac.Asset) -> tuple[BandMeta, ...]:
    """Pure. Each band's scale, offset, unit and description from the asset's ``raster:bands`` and
    ``eo:bands`` (``B04 red``; the asset's title for a single band the item names otherwise)."""
    raster = asset.extra_fields.get("raster:bands") or []
    eo = asset.extra_fields.get("eo:bands") or []
    count = max(len(raster), len(eo))
    out = []
    for i in range(count):
        r = raster[i] if i < len(raster) and isinstance(raster[i], dict) else {}
        e = eo[i] if i < len(eo) and isinstance(eo[i], dict) else {}
        named = " ".join(str(v) for v in (e.get("name"), e.get("common_name")) if v)
        described = named or (asset.title if count == 1 else None)
        out.append(
            BandMeta(
                scale=_number(r.get("scale")), offset=_number(r.get("offset")),
                unit=str(r["unit"]) if r.get("unit") else None, description=described or None,
            )
        )  # fmt: skip
    return tuple(out)


def _number(value: object) -> float | None:
    return float(value) if isinstance(value, int | float) and not isinstance(value, bool) else None


def metadata_files(item: pystac.Item, spec: CollectionSpec) -> list[MetadataFile]:
    """The files uploaded unchanged: metadata XML, preview images and data the plan keeps, that exist in
    the product. A kept data file the product lacks makes it incomplete (InvalidProduct)."""
    files: list[MetadataFile] = []
    missing: list[str] = []
    for key, asset in item.assets.items():
        if treatment(key, asset, spec) != "as_is":
            continue
        path = Path(asset.href)
        data = _is_data(asset)
        if path.is_file():
            files.append(MetadataFile(key, path, _as_is_media_type(asset, path), data=data))
        elif data:
            missing.append(key)
        else:  # linked by naming convention only (datastrip MTD_DS.xml, INSPIRE.xml, S1 quick-look.png)
            log.info("%s: %s not in the product (%s); the item will not list it", item.id, key, path.name)
    if missing:
        raise InvalidProduct(f"{product_name(item)}: data files its metadata lists are missing: {', '.join(missing)}")
    return files


def _as_is_media_type(asset: pystac.Asset, path: Path) -> str:
    media = asset.media_type or mimetypes.guess_type(path.name)[0] or "application/octet-stream"
    # stactools calls every .tif of a GeoTIFF-format product a COG unchecked; an as-is upload is not one we made
    return GEOTIFF_MEDIA_TYPE if media == COG_MEDIA_TYPE else media


# --------------------------------------------------------------------------- finalize_item


def finalize_item(
    item: pystac.Item,
    *,
    stored: Mapping[str, StoredObject],
    cogs: Mapping[str, CogResult],
    provenance: Provenance,
    storage: StorageAccess,
    now: datetime,
) -> dict[str, Any]:
    """The item to load: stored assets only, hrefs in the store, file/raster/projection/provenance fields,
    and the storage fields of ``storage`` on every asset whose href is ``s3://``.

    ``item`` is not changed. Raises InvalidStac (naming the item) when the result fails offline
    validation, IngestError when ``stored``/``cogs`` do not fit the item (a pipeline fault).
    """
    if now.tzinfo is None:
        raise ValueError("now must be timezone-aware")
    # a JSON round trip, not deepcopy: stactools-sentinel1 leaves shapely tuples in the geometry, which the
    # schemas (and any consumer of the dict) see as non-arrays; JSON is what is loaded anyway
    doc: dict[str, Any] = json.loads(json.dumps(item.to_dict(include_self_link=False, transform_hrefs=False)))
    _check_keys(doc, stored, cogs)
    doc["assets"] = _final_assets(doc, stored, cogs, storage)
    doc["links"] = [link for link in doc.get("links", []) if _is_remote(str(link.get("href", "")))]
    _ensure_collection_link(doc)
    _drop_stale_item_grid(doc["properties"], [doc["assets"][k] for k in cogs if k in doc["assets"]])
    _set_provenance(doc["properties"], provenance, now)
    _declare_extensions(doc)
    _check_remote(doc)
    report = validate_item(doc, source=f"item {doc['id']}")
    if report.not_checked:
        log.debug("item %s: extension schemas not checked (not shipped): %s", doc["id"], report.not_checked)
    return doc


def _ensure_collection_link(doc: dict[str, Any]) -> None:
    # The item schema wants a rel=collection link when "collection" is set. stac-fastapi-pgstac drops
    # stored self/parent/collection/root links and makes its own, so this one only keeps the stored
    # document valid by itself; relative, as in a static catalog (and in the bucket's layout).
    if doc.get("collection") and not any(link.get("rel") == "collection" for link in doc["links"]):
        doc["links"].append({"rel": "collection", "href": "../collection.json", "type": "application/json"})


def _check_keys(doc: dict[str, Any], stored: Mapping[str, StoredObject], cogs: Mapping[str, CogResult]) -> None:
    unknown = sorted((set(stored) | set(cogs)) - set(doc["assets"]))
    if unknown:
        raise IngestError(f"item {doc['id']}: stored or converted assets the item does not have: {', '.join(unknown)}")


def _final_assets(
    doc: dict[str, Any], stored: Mapping[str, StoredObject], cogs: Mapping[str, CogResult], storage: StorageAccess
) -> dict[str, dict[str, Any]]:
    item_id, item_code = doc["id"], doc["properties"].get("proj:code")
    kept: dict[str, dict[str, Any]] = {}
    for key, asset in doc["assets"].items():
        obj = stored.get(key)
        if obj is None:
            continue  # not uploaded: the item must not point at the local file
        cog = cogs.get(key)
        if cog is not None:
            _check_same_bytes(item_id, key, obj, cog)
            _describe_cog(asset, cog, item_code)
        asset["type"] = COG_MEDIA_TYPE if cog is not None else obj.media_type
        _point_at(asset, obj, storage)
        kept[key] = asset
    dropped = sorted(set(doc["assets"]) - set(kept))
    if dropped:
        log.info("item %s: assets not stored, left out: %s", item_id, ", ".join(dropped))
    if not any(set(a.get("roles") or []) & _RASTER_ROLES for a in kept.values()):
        raise IngestError(f"item {item_id}: no data asset was stored; refusing to load an item without data")
    return kept


def _check_same_bytes(item_id: str, key: str, obj: StoredObject, cog: CogResult) -> None:
    # the raster fields below come from the CogResult: they must describe the object the href names
    if obj.size != cog.size or obj.checksum != to_multihash("sha256", cog.sha256):
        raise IngestError(f"item {item_id}: stored object for {key} is not the converted COG (size or sha256 differ)")


def _point_at(asset: dict[str, Any], obj: StoredObject, storage: StorageAccess) -> None:
    asset["href"] = obj.public_href or obj.href
    if obj.public_href:
        asset["alternate"] = {"s3": {"href": obj.href}}  # alternate-assets layout (module docstring)
    else:  # an s3:// href: what a client needs to read it (module docstring)
        asset["storage:platform"] = storage.platform
        asset["storage:region"] = storage.region
        asset["storage:requester_pays"] = storage.requester_pays
        if storage.endpoint_url:
            asset[ENDPOINT_FIELD] = storage.endpoint_url
    asset["file:size"] = obj.size
    asset["file:checksum"] = obj.checksum


def _describe_cog(asset: dict[str, Any], cog: CogResult, item_code: str | None) -> None:
    asset["raster:bands"] = _raster_bands(asset.get("raster:bands"), cog)
    _set_grid(asset, cog, item_code)


def _raster_bands(existing: list[dict[str, Any]] | None, cog: CogResult) -> list[dict[str, Any]]:
    # stactools knows the band count, scale/offset and classes; the COG knows its data type and nodata.
    # Without stactools bands (S1) the measurement is single-band.
    bands = [dict(b) for b in existing] if existing else [{}]
    for band in bands:
        band["data_type"] = cog.dtype
        if cog.nodata is not None:  # else keep the product's declared nodata (S2 JP2s carry none in the file)
            band["nodata"] = _nodata(cog.nodata)
    return bands


def _nodata(value: float) -> float | int | str:
    if math.isnan(value):
        return "nan"  # the raster schema's spelling of non-finite values
    if math.isinf(value):
        return "inf" if value > 0 else "-inf"
    return int(value) if float(value).is_integer() else value


def _set_grid(asset: dict[str, Any], cog: CogResult, item_code: str | None) -> None:
    """Projection fields that describe the COG (which may have been warped or resized)."""
    shape = [int(cog.shape[0]), int(cog.shape[1])]
    code = f"EPSG:{cog.epsg}" if cog.epsg is not None else None
    same_grid = (
        code is not None
        and code == asset.get("proj:code", item_code)
        and asset.get("proj:shape") == shape
        and "proj:transform" in asset
    )
    asset["proj:shape"] = shape
    if code is not None and code != item_code:
        asset["proj:code"] = code
    elif code is not None:
        asset.pop("proj:code", None)  # inherits the item's
    if same_grid:
        return
    asset.pop("proj:transform", None)
    asset.pop("proj:bbox", None)
    transform = _geotransform(cog.path)
    if transform is not None:
        asset["proj:transform"] = transform
        asset["proj:bbox"] = _bbox(transform, shape)


def _geotransform(path: Path) -> list[float] | None:
    """The COG's affine transform, or None when unknown (file gone, or georeferenced by GCPs only)."""
    if not path.is_file():
        return None
    import rasterio
    from rasterio.errors import RasterioIOError

    try:
        with rasterio.open(path) as src:
            if src.crs is None or src.transform.is_identity:
                return None
            return [float(v) for v in list(src.transform)[:6]]
    except RasterioIOError:
        return None


def _bbox(transform: list[float], shape: list[int]) -> list[float]:
    a, b, c, d, e, f = transform
    rows, cols = shape
    corners = [(0, 0), (cols, 0), (0, rows), (cols, rows)]
    xs = [c + a * x + b * y for x, y in corners]
    ys = [f + d * x + e * y for x, y in corners]
    return [min(xs), min(ys), max(xs), max(ys)]


def _drop_stale_item_grid(props: dict[str, Any], cog_assets: Iterable[dict[str, Any]]) -> None:
    # item-level proj:shape/transform are defaults for every asset: wrong ones (S1) must not be inherited
    if "proj:shape" not in props and "proj:transform" not in props:
        return
    grid = (props.get("proj:shape"), props.get("proj:transform"))
    if any((a.get("proj:shape"), a.get("proj:transform")) != grid for a in cog_assets):
        props.pop("proj:shape", None)
        props.pop("proj:transform", None)


def _set_provenance(props: dict[str, Any], provenance: Provenance, now: datetime) -> None:
    stamp = _rfc3339(now)
    props["created"] = stamp
    props["updated"] = stamp
    props["processing:software"] = {**(props.get("processing:software") or {}), SOFTWARE: _version(SOFTWARE)}
    ours = {
        "ingest:upstream_id": provenance.upstream_id,
        "ingest:provider": provenance.provider,
        "ingest:processing_baseline": provenance.processing_baseline,
        "ingest:upstream_checksum": provenance.upstream_checksum,
        "ingest:ingested_at": _rfc3339(provenance.ingested_at),
    }
    extra = {f"ingest:{k}": v for k, v in provenance.extra.items()}
    props.update({k: v for k, v in {**extra, **ours}.items() if v is not None})  # named fields win over extra


def _declare_extensions(doc: dict[str, Any]) -> None:
    fields = set(doc["properties"]).union(*(a.keys() for a in doc["assets"].values()))
    wanted = [FILE_EXT, PROCESSING_EXT]
    if "raster:bands" in fields:
        wanted.append(RASTER_EXT)
    if any(f.startswith("proj:") for f in fields):
        wanted.append(PROJECTION_EXT)
    if any(f.startswith("storage:") for f in fields):
        wanted.append(STORAGE_EXT)
    extensions = list(doc.get("stac_extensions") or [])
    doc["stac_extensions"] = extensions + [uri for uri in wanted if uri not in extensions]


def _check_remote(doc: dict[str, Any]) -> None:
    hrefs = [(f"asset {k}", a["href"]) for k, a in doc["assets"].items()]
    hrefs += [(f"asset {k} (s3)", a["alternate"]["s3"]["href"]) for k, a in doc["assets"].items() if "alternate" in a]
    local = [f"{what}: {href!r}" for what, href in hrefs if not _is_remote(str(href))]
    # links may be relative (the collection link), never a path on this machine
    local += [f"link {link.get('rel')}: {link['href']!r}" for link in doc["links"] if _is_local_path(link["href"])]
    if local:
        raise IngestError(f"item {doc['id']}: would point outside the object store: {'; '.join(local)}")


def _is_remote(href: str) -> bool:
    return href.startswith(_REMOTE_SCHEMES)


def _is_local_path(href: str) -> bool:
    return href.startswith(("/", "file:", "\\")) or re.match(r"^[A-Za-z]:[\\/]", href) is not None


# --------------------------------------------------------------------------- small helpers


def _rfc3339(when: datetime) -> str:
    if when.tzinfo is None:
        raise ValueError(f"timestamp {when.isoformat()} must be timezone-aware")
    return when.astimezone(UTC).isoformat().replace("+00:00", "Z")


@cache
def _version(distribution: str) -> str:
    try:
        return version(distribution)
    except PackageNotFoundError:
        return "unknown"


def _one_line(exc: BaseException) -> str:
    text = " ".join(str(exc).split()) or "(no message)"
    if len(text) > 300:
        text = text[:297] + "..."
    return f"{type(exc).__name__}: {text}"
