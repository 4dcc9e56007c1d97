"""Upload a product's COGs and metadata files to the object store, before its item is loaded.

Names under the item prefix ``{prefix}/{collection}/{item_id}/`` (the prefix is the store's):

* COGs: ``{asset_key}.tif`` (e.g. ``B04_10m.tif``);
* metadata files: ``metadata/{asset_key}{suffix}`` (e.g. ``metadata/product_metadata.xml``,
  ``metadata/safe_manifest.safe``);
* data files kept as they are: ``{asset_key}{suffix}`` beside the COGs (Sentinel-3
  ``oa01-radiance.nc``): they are what the item is about, not metadata;
* images we made for browsers: ``{asset_key}{suffix}`` beside the COGs (``thumbnail.png``,
  ``ingest.stages.preview``).

Asset keys are unique within an item (checked here), so names cannot collide, and a metadata file can
never shadow a COG. The asset key, not the SAFE-relative path, names a metadata object: it is what the
STAC item calls it, and it stays the same across processing baselines whose file names differ.

``upload_product`` returns only when every object is confirmed in the store (see
``ObjectStore.put_file``); on the first failure it cancels what has not started and raises.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Sequence
from concurrent.futures import FIRST_EXCEPTION, Future, ThreadPoolExecutor, wait
from dataclasses import dataclass
from pathlib import Path

from ingest.adapters.s3 import ObjectStore, check_segment
from ingest.errors import IngestError
from ingest.stages.artifacts import CogResult, MetadataFile, StoredObject
from ingest.stages.checksums import file_digest

log = logging.getLogger(__name__)

COG_MEDIA_TYPE = "image/tiff; application=geotiff; profile=cloud-optimized"
DEFAULT_WORKERS = 4  # I/O bound; with 4 part threads each this fills the store's 16 connections


@dataclass(frozen=True)
class PlannedObject:
    """One file to upload, and where it goes relative to the item prefix."""

    asset_key: str
    path: Path
    name: str
    media_type: str
    sha256: str | None  # known for COGs (computed at conversion); metadata files are hashed when sent
    size: int | None  # the size the digest was computed over, when known


def cog_name(asset_key: str) -> str:
    return f"{check_segment(asset_key, 'asset key')}.tif"


def metadata_name(asset_key: str, path: Path) -> str:
    return f"metadata/{check_segment(asset_key, 'asset key')}{path.suffix.lower()}"


def beside_name(asset_key: str, path: Path) -> str:
    return f"{check_segment(asset_key, 'asset key')}{path.suffix.lower()}"


def plan_upload(
    cogs: Sequence[CogResult], metadata: Sequence[MetadataFile], previews: Sequence[MetadataFile] = ()
) -> list[PlannedObject]:
    """The objects of one product, COGs first, in input order; refuses duplicate or unsafe asset keys."""
    planned = [
        PlannedObject(c.asset_key, c.path, cog_name(c.asset_key), COG_MEDIA_TYPE, c.sha256, c.size) for c in cogs
    ]
    planned += [
        PlannedObject(
            m.asset_key,
            m.path,
            (beside_name if m.data else metadata_name)(m.asset_key, m.path),
            m.media_type,
            None,
            None,
        )
        for m in metadata
    ]
    planned += [
        PlannedObject(m.asset_key, m.path, beside_name(m.asset_key, m.path), m.media_type, None, None) for m in previews
    ]
    seen: set[str] = set()
    for p in planned:
        if p.asset_key in seen:
            raise IngestError(f"asset key {p.asset_key!r} is given twice for one item")
        seen.add(p.asset_key)
    return planned


def _send(store: ObjectStore, key: str, obj: PlannedObject, force: bool) -> StoredObject:
    if obj.size is not None and obj.path.stat().st_size != obj.size:
        # the known digest would describe other bytes than the ones we are about to send
        raise IngestError(f"{obj.path} is {obj.path.stat().st_size} bytes, converted as {obj.size}: changed since")
    sha256 = obj.sha256 or file_digest(obj.path)
    return store.put_file(key, obj.path, media_type=obj.media_type, sha256=sha256, force=force)


def upload_product(
    store: ObjectStore,
    *,
    collection: str,
    item_id: str,
    cogs: Sequence[CogResult],
    metadata: Sequence[MetadataFile],
    previews: Sequence[MetadataFile] = (),
    force: bool = False,
    workers: int = DEFAULT_WORKERS,
) -> dict[str, StoredObject]:
    """Upload (or confirm unchanged) every file of a product; the result is keyed by asset key."""
    planned = plan_upload(cogs, metadata, previews)
    keys = {p.asset_key: store.item_key(collection, item_id, p.name) for p in planned}  # validates ids first
    started = time.monotonic()
    with ThreadPoolExecutor(max_workers=max(1, workers), thread_name_prefix="upload") as pool:
        futures: dict[str, Future[StoredObject]] = {
            p.asset_key: pool.submit(_send, store, keys[p.asset_key], p, force) for p in planned
        }
        done, _ = wait(futures.values(), return_when=FIRST_EXCEPTION)
        errors = [e for f in done if (e := f.exception()) is not None]
        if errors:
            for f in futures.values():
                f.cancel()  # not-yet-started uploads; running ones finish before the pool closes
            raise errors[0]
    stored = {k: f.result() for k, f in futures.items()}
    sent = [s for s in stored.values() if s.uploaded]
    log.info(
        "stored %s/%s: %d objects sent (%d bytes), %d unchanged, %.1f s",
        collection,
        item_id,
        len(sent),
        sum(s.size for s in sent),
        len(stored) - len(sent),
        time.monotonic() - started,
        extra={"collection": collection, "item_id": item_id},
    )
    return stored
