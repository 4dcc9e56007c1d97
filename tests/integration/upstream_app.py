"""The federation's catalogue in the registration tests: stac-fastapi-pgstac itself (Transactions
extension on, its own database), with writes guarded as a federation guards them: a bearer token of
the real OpenID provider (verified with ingest's own verifier: PyJWT, discovery, JWKS).

Run by uvicorn as a factory (``--factory tests.integration.upstream_app:create_app``). Environment:
the PG* variables of stac-fastapi-pgstac, ``UPSTREAM_ISSUER`` (discovery URL) and ``UPSTREAM_AUDIENCE``,
and ``UPSTREAM_DIE_AFTER=N``: the process ends (``os._exit``, as a crash) on its N+1th item write.
"""

from __future__ import annotations

import json
import os
from typing import Any

from stac_fastapi.pgstac.app import create_app as stac_app

from ingest.access.tokens import InvalidToken, IssuerUnavailable, Verifier
from ingest.settings import OidcIssuer

Scope = dict[str, Any]


def create_app() -> Any:
    app = stac_app()
    verifier = Verifier(
        [OidcIssuer(discovery_url=os.environ["UPSTREAM_ISSUER"], audience=os.environ["UPSTREAM_AUDIENCE"])],
        algorithms=["RS256", "ES256", "PS256"],
        leeway_s=5,
        refresh_s=300,
    )
    die_after = int(os.environ.get("UPSTREAM_DIE_AFTER", "-1"))
    writes = 0

    async def guarded(scope: Scope, receive: Any, send: Any) -> None:
        nonlocal writes
        if scope["type"] == "http" and scope["method"] in ("POST", "PUT", "PATCH", "DELETE"):
            auth = dict(scope["headers"]).get(b"authorization", b"").decode()
            try:
                if not auth.startswith("Bearer "):
                    raise InvalidToken("no bearer token")
                verifier.verify(auth.removeprefix("Bearer "))
            except (InvalidToken, IssuerUnavailable) as exc:
                await _refuse(send, 401, str(exc))
                return
            if "/items" in scope["path"]:
                if writes == die_after:
                    os._exit(9)
                writes += 1
        await app(scope, receive, send)

    return guarded


async def _refuse(send: Any, status: int, detail: str) -> None:
    body = json.dumps({"code": "Unauthorized", "description": detail}).encode()
    await send({"type": "http.response.start", "status": status,
                "headers": [(b"content-type", b"application/json"), (b"www-authenticate", b"Bearer")]})  # fmt: skip
    await send({"type": "http.response.body", "body": body})
