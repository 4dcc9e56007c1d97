"""Catalogue-level operations over pgstac: publishing collections (and, later, extents)."""

from __future__ import annotations

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
