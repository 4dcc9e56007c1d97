"""The asset gateway of ``ingest serve``: ``GET|HEAD /collections/{c}/items/{i}/assets/{key}``.

1. The collection's policy, from its published document (``ingest:access``; absent: public; unreadable:
   refused, never open). An unknown collection: 404.
2. Unless public, the bearer token (``Authorization: Bearer ...``) verified against the configured
   issuers (``ingest.access.tokens``): missing or invalid, 401 with ``WWW-Authenticate``; valid but not
   entitled, 403; no issuer reachable and no key kept, 503.
3. The item and the asset: unknown, 404. The asset's object must lie under this store's bucket and
   the item's own prefix (``{prefix}/{collection}/{item}/``): an item that names another collection's
   object is not followed (404).
4. GET: 307 to a presigned URL of the object (``INGEST_ASSET_URL_TTL_S``), signed for the
   endpoint readers reach (``INGEST_S3_PUBLIC_ENDPOINT_URL``): Range requests and GDAL's ``/vsicurl/``
   then go to the store at its own speed. ``Cache-Control: private, no-store``: the URL is a secret
   until it expires, never cached by a proxy, never logged. HEAD is answered here (size, type, ETag).

The policy is checked before the item is looked up, so a protected collection says nothing about its
items to a caller without a token.

With the gateway off, ``ingest serve`` still answers this route for the ``thumbnail`` asset alone
(``only``): an ``s3://`` thumbnail is nothing a browser can show, and the thumbnail needs what the
collection's other assets need. A browser's ``<img>`` follows the 307 (no CORS involved); the store
answers with the object's ``Content-Type`` (``image/png``, set at upload).
"""

from __future__ import annotations

import json
import logging
from collections.abc import Collection
from datetime import UTC
from email.utils import format_datetime
from typing import Any

from fastapi import FastAPI, Path, Request
from fastapi.responses import JSONResponse, RedirectResponse, Response
from stac_fastapi.pgstac.db import get_connection
from starlette.concurrency import run_in_threadpool

from ingest.access.policy import AccessPolicy, Decision, decide
from ingest.access.tokens import InvalidToken, IssuerUnavailable, Verifier
from ingest.adapters.s3 import ObjectStore
from ingest.errors import IngestError
from ingest.settings import Settings

log = logging.getLogger(__name__)

REALM = "eo-ingest"


def _segment() -> Any:
    return Path(..., min_length=1, max_length=256, pattern=r"^[^/\\]+$")


_COLLECTION_SQL = "SELECT content -> 'ingest:access' FROM pgstac.collections WHERE id = $1"
_ITEM_SQL = "SELECT pgstac.get_item($1, $2)"


def _problem(status: int, message: str, headers: dict[str, str] | None = None) -> JSONResponse:
    return JSONResponse({"code": str(status), "description": message}, status_code=status, headers=headers)


def _unauthorized(reason: str | None) -> JSONResponse:
    # RFC 6750: no error code when no token was sent; invalid_token with a description otherwise
    challenge = f'Bearer realm="{REALM}"'
    if reason is not None:
        challenge += f', error="invalid_token", error_description="{reason}"'
    return _problem(
        401, reason or "a bearer token is needed for this collection's assets", {"WWW-Authenticate": challenge}
    )


def bearer(request: Request) -> str | None:
    """The bearer token sent, None when none; InvalidToken when the header is malformed."""
    header = request.headers.get("authorization")
    if header is None:
        return None
    scheme, _, token = header.strip().partition(" ")
    if scheme.lower() != "bearer" or not token.strip() or " " in token.strip():
        raise InvalidToken("the Authorization header is not 'Bearer <token>'")
    return token.strip()


def object_key(href: str, store: ObjectStore, collection: str, item_id: str) -> str | None:
    """Pure. The key of an asset href when it lies under the item's own prefix in this store."""
    prefix = f"s3://{store.bucket}/"
    if not href.startswith(prefix):
        return None
    key = href[len(prefix) :]
    try:
        own = store.item_prefix(collection, item_id)
    except IngestError:  # an id the store would not name (check_segment): not ours
        return None
    if not key.startswith(own) or any(part in ("", ".", "..") for part in key[len(own) :].split("/")):
        return None
    return key


def add_gateway(app: FastAPI, settings: Settings, *, only: Collection[str] | None = None) -> None:
    """The route; ``only``: the asset keys it answers for (None: every asset), others are 404."""
    verifier = Verifier.from_settings(settings)
    store = ObjectStore.from_settings(settings)
    public_endpoint = settings.s3_public_endpoint_url or settings.s3_endpoint_url or None
    claim, ttl = settings.oidc_entitlement_claim, settings.asset_url_ttl_s

    async def asset(
        request: Request, collection_id: str = _segment(), item_id: str = _segment(), asset_key: str = _segment()
    ) -> Response:
        if only is not None and asset_key not in only:
            return _problem(404, f"asset {asset_key} is not served here (only {', '.join(sorted(only))})")
        async with get_connection(request) as conn:
            row = await conn.fetchrow(_COLLECTION_SQL, collection_id)
        if row is None:
            return _problem(404, f"collection {collection_id} does not exist")
        try:
            policy = AccessPolicy.from_published(json.loads(row[0]) if isinstance(row[0], str) else row[0])
        except ValueError:
            log.error("collection %s: its ingest:access cannot be read; its assets are refused", collection_id)
            return _problem(403, f"collection {collection_id}: its access policy cannot be read")
        claims: dict[str, Any] | None = None
        if policy.policy != "public":
            try:
                token = bearer(request)
                claims = None if token is None else await run_in_threadpool(verifier.verify, token)
            except InvalidToken as exc:
                return _unauthorized(exc.message)
            except IssuerUnavailable as exc:
                return _problem(503, exc.message, {"Retry-After": "30"})
            if token is None:
                return _unauthorized(None)
        decision = decide(policy, claims, claim)
        if decision is Decision.FORBIDDEN:
            return _problem(403, f"the token does not hold an entitlement collection {collection_id} asks for")
        if decision is Decision.UNAUTHENTICATED:
            return _unauthorized(None)
        async with get_connection(request) as conn:
            item = await conn.fetchval(_ITEM_SQL, item_id, collection_id)
        if isinstance(item, str):
            item = json.loads(item)
        found = (item or {}).get("assets", {}).get(asset_key) if isinstance(item, dict) else None
        if not isinstance(found, dict):
            return _problem(404, f"item {item_id} of {collection_id} has no asset {asset_key}")
        href = str((found.get("alternate") or {}).get("s3", {}).get("href") or found.get("href", ""))
        key = object_key(href, store, collection_id, item_id)
        if key is None:
            return _problem(404, f"asset {asset_key} of item {item_id} is not an object of this catalogue")
        if request.method == "HEAD":
            return await _head(key)
        url = store.presign(key, method="GET", expires_s=ttl, endpoint_url=public_endpoint)
        return RedirectResponse(url, status_code=307, headers={"Cache-Control": "private, no-store"})

    async def _head(key: str) -> Response:
        # answered here, not redirected: SigV4 signs the method, and a client that keeps the URL its HEAD
        # was redirected to (GDAL's /vsicurl/ does) would send its range GETs to a HEAD-only URL
        try:
            info = await run_in_threadpool(store.head, key)
        except IngestError as exc:
            return _problem(503, f"the object store cannot be reached ({type(exc).__name__})", {"Retry-After": "30"})
        if info is None:
            return _problem(404, "the asset's object is not in the store")
        return Response(
            status_code=200,
            headers={
                "Content-Length": str(info.size), "Content-Type": info.content_type or "application/octet-stream",
                "Accept-Ranges": "bytes", "ETag": info.etag, "Cache-Control": "private, no-store",
                "Last-Modified": format_datetime(info.last_modified.astimezone(UTC), usegmt=True),
            },
        )  # fmt: skip

    app.add_api_route(
        "/collections/{collection_id}/items/{item_id}/assets/{asset_key}",
        asset,
        methods=["GET", "HEAD"],
        name="An asset's bytes (a redirect to the store)",
        response_model=None,
        tags=["Assets"],
    )
