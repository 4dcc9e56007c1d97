"""``GET /deleted-items``: the items retention removed, for harvesters that copy this catalogue.

A harvester keeps its copy true by asking, besides ``updated >= T`` on ``/search``, which items were
deleted since T::

    GET /deleted-items?since=2026-03-01T00:00:00Z[&collection=sentinel-2-l2a][&limit=1000]

It answers ``{"deleted": [{"collection", "id", "deleted"}], "until": ..., "links": [...]}`` in
deletion order; a ``next`` link (``token``) pages on. ``until`` is where the listing stops: deletions
of the last ``INGEST_API_DELETIONS_SETTLE_S`` seconds are held back, because a deletion is stamped when
its transaction starts and becomes visible when it commits; a row that showed up behind a harvester's
cursor would be missed for good. The next poll starts at ``since=<until>``.

Read from ``ingest.retirements`` (three columns granted to ``pgstac_read``, nothing else of the
ingest schema), through stac-fastapi-pgstac's read pool: the API's read-only role.
"""

from __future__ import annotations

import base64
import json
from datetime import UTC, datetime, timedelta
from typing import Any

from fastapi import FastAPI, HTTPException, Query, Request
from stac_fastapi.pgstac.db import get_connection

from ingest.api.bounds import Refused, check_datetime

MAX_LIMIT = 10_000
_SQL = """
SELECT collection, item_id, item_deleted_at FROM ingest.retirements
WHERE item_deleted_at IS NOT NULL AND item_deleted_at < $1
  AND (item_deleted_at, collection, item_id) > ($2, $3, $4)
  AND ($5::text IS NULL OR collection = $5)
ORDER BY item_deleted_at, collection, item_id
LIMIT $6
"""


def _rfc3339(when: datetime) -> str:
    return when.astimezone(UTC).isoformat().replace("+00:00", "Z")


def _parse_time(text: str, what: str) -> datetime:
    if "/" in text:
        raise HTTPException(400, f"{what} is one RFC 3339 date-time, not an interval: {text[:40]!r}")
    try:
        check_datetime(text, what)  # the form, and a range the database can compare (no overflow)
    except Refused as refusal:
        raise HTTPException(refusal.status, refusal.message) from None
    return datetime.fromisoformat(text.upper().replace("Z", "+00:00"))


def encode_token(when: datetime, collection: str, item_id: str) -> str:
    raw = json.dumps([_rfc3339(when), collection, item_id]).encode()
    return base64.urlsafe_b64encode(raw).decode().rstrip("=")


def decode_token(token: str) -> tuple[datetime, str, str]:
    try:
        when, collection, item_id = json.loads(base64.urlsafe_b64decode(token + "=" * (-len(token) % 4)))
        return _parse_time(when, "token"), str(collection), str(item_id)
    except HTTPException:
        raise
    except Exception:
        raise HTTPException(400, "token is not one this server gave") from None


def add_deleted_items(app: FastAPI, *, settle_s: float) -> None:
    async def deleted_items(
        request: Request,
        since: str = Query(..., description="RFC 3339 date-time: deletions at or after it"),
        collection: str | None = Query(None),
        limit: int = Query(1000, ge=1, le=MAX_LIMIT),
        token: str | None = Query(None, description="from a next link"),
    ) -> dict[str, Any]:
        start = _parse_time(since, "since")
        after = decode_token(token) if token else (start, "", "")
        async with get_connection(request) as conn:
            now = await conn.fetchval("SELECT now()")
            until = now - timedelta(seconds=settle_s)
            rows = await conn.fetch(_SQL, until, *after, collection, limit)
        deleted = [{"collection": c, "id": i, "deleted": _rfc3339(at)} for c, i, at in rows]
        links = [{"rel": "self", "type": "application/json", "href": str(request.url)}]
        if len(rows) == limit:
            last = rows[-1]
            nxt = request.url.include_query_params(token=encode_token(last[2], last[0], last[1]))
            links.append({"rel": "next", "type": "application/json", "href": str(nxt)})
        return {"deleted": deleted, "since": _rfc3339(start), "until": _rfc3339(until), "links": links}

    app.add_api_route(
        "/deleted-items",
        deleted_items,
        methods=["GET"],
        name="Items removed by retention",
        response_model=None,
        tags=["Harvesting"],
    )
