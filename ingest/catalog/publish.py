"""Catalogue-level operations over pgstac: publishing collections.

Whatever reads ``collections/`` publishes what changed there (``publish_changed``): ``ingest retain``
before it enforces a policy, the scheduler when it starts, ``ingest db migrate``; so a policy an
operator edits reaches the collection document (``ingest:retention``) without a separate
``ingest collections sync``, and ``ingest collections validate`` says which published documents are
older than their files (``stale``).
"""

from __future__ import annotations

from typing import Any

from ingest.adapters import pgstac
from ingest.collections import CollectionSpec
from ingest.settings import Settings
from ingest.stac_validation import validate_collection


def sync_collections(settings: Settings, specs: list[CollectionSpec]) -> list[str]:
    """Validate then upsert each collection document; returns the ids written."""
    docs = []
    for spec in specs:
        doc = spec.stac_collection()
        validate_collection(doc, source=str(spec.path or spec.id))
        docs.append(doc)
    pgstac.upsert_collections(settings.require_database_url(), docs)
    return [d["id"] for d in docs]


def differs(configured: dict[str, Any], published: dict[str, Any] | None) -> bool:
    """Pure. Whether the published document is not the configured one; the extent is left out (pgstac's
    is derived from the items, ``ingest.adapters.pgstac``)."""
    if published is None:
        return True
    return {k: v for k, v in configured.items() if k != "extent"} != {
        k: v for k, v in published.items() if k != "extent"
    }


def stale(settings: Settings, specs: list[CollectionSpec]) -> list[str]:
    """The ids whose published document is missing or older than their file's."""
    dsn = settings.require_database_url()
    return [s.id for s in specs if differs(s.stac_collection(), pgstac.get_collection(dsn, s.id))]


def publish_changed(settings: Settings, specs: list[CollectionSpec]) -> list[str]:
    """Publish the collections whose file changed since they were published; returns their ids."""
    changed = set(stale(settings, specs))
    return sync_collections(settings, [s for s in specs if s.id in changed]) if changed else []
