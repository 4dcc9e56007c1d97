"""``/collections/{id}/retention``: a collection's retention policy as a small JSON document.

The policy is in the collection document too (``ingest:retention``), but a federation broker that
rebuilds collections from a fixed list of fields (EO-MQS keeps type, id, stac_extensions,
stac_version, title, description, keywords, license, providers, summaries, extent, links) drops it;
links survive, so the collection links here (``rel: ingest:retention``, ``ingest.collections``) and a
federated client follows the link. Read from the published collection document: the policy served is
the one ``ingest retain`` enforces (it publishes a changed file first).
"""

from __future__ import annotations

from typing import Any

from fastapi import FastAPI, HTTPException, Path, Request
from stac_fastapi.pgstac.db import get_connection

REL = "ingest:retention"
_SQL = "SELECT content -> 'ingest:retention' FROM pgstac.collections WHERE id = $1"


def add_policies(app: FastAPI) -> None:
    async def retention(request: Request, collection_id: str = Path(..., max_length=256)) -> dict[str, Any]:
        async with get_connection(request) as conn:
            row = await conn.fetchrow(_SQL, collection_id)
        if row is None:
            raise HTTPException(404, f"collection {collection_id} does not exist")
        policy = row[0]
        base = str(request.base_url).rstrip("/")
        return {
            "collection": collection_id,
            "retention": policy,  # None: the collection keeps everything
            "links": [
                {"rel": "self", "type": "application/json", "href": str(request.url)},
                {"rel": "collection", "type": "application/json", "href": f"{base}/collections/{collection_id}"},
            ],
        }

    app.add_api_route(
        "/collections/{collection_id}/retention",
        retention,
        methods=["GET"],
        name="Retention policy of a collection",
        response_model=None,
        tags=["Harvesting"],
    )
