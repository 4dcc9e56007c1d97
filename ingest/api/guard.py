"""The API's front door: an ASGI middleware that holds every request to ``ingest.api.bounds`` before
stac-fastapi, FastAPI or any parser behind them sees it.

It is pure ASGI (no ``BaseHTTPMiddleware``): it reads the raw query string and body once, answers a
refusal itself (JSON ``{code, description}`` as stac-fastapi's own errors), and hands the app the
same request, or one with ``limit`` clamped. The body must arrive within ``body_timeout_s`` (a client
that announces more than it sends would otherwise hold a connection and a worker slot for ever).
"""

from __future__ import annotations

import asyncio
import json
import re
import time
from typing import Any
from urllib.parse import parse_qsl, quote, urlencode

from starlette.types import ASGIApp, Message, Receive, Scope, Send

from ingest.api.bounds import Limits, Refused, bad, check_query_params, check_search_body, load_json

MAX_PATH_CHARS = 4096
# headers that end up in the links of every response (proxy_headers, stac-fastapi's ProxyHeaderMiddleware)
_HOST_HEADERS = (b"host", b"x-forwarded-host")
_URL_HEADERS = (b"x-forwarded-proto", b"x-forwarded-port", b"x-forwarded-prefix", b"forwarded")
_HOST = re.compile(rb"^[A-Za-z0-9._\-]+(?::\d{1,5})?$|^\[[0-9A-Fa-f:.]+\](?::\d{1,5})?$")
_PRINTABLE = re.compile(rb"^[\x20-\x7e]*$")
_CODES = {
    400: "BadRequest",
    408: "RequestTimeout",
    413: "PayloadTooLarge",
    414: "URITooLong",
    415: "UnsupportedMediaType",
}


class Guard:
    def __init__(self, app: ASGIApp, *, limits: Limits, body_timeout_s: float) -> None:
        self.app = app
        self.limits = limits
        self.body_timeout_s = body_timeout_s

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        try:
            scope = self._checked_head(scope)
            body: bytes | None = None
            if scope["method"] in ("POST", "PUT", "PATCH"):
                body = await self._read_body(scope, receive)
                if scope["method"] == "POST" and scope["path"].rstrip("/").endswith("/search"):
                    scope, body = self._checked_search(scope, body)
        except Refused as refusal:
            await respond(send, refusal.status, refusal.message)
            return
        except _Disconnected:
            return
        if body is None:
            await self.app(scope, receive, send)
        else:
            await self.app(scope, _replay(body, receive), send)

    def _checked_head(self, scope: Scope) -> Scope:
        for name, value in scope["headers"]:
            if name in _HOST_HEADERS:
                if not all(_HOST.match(part.strip()) for part in value.split(b",")):
                    raise bad(f"{name.decode()} header: not a host name")
            elif name in _URL_HEADERS and not _PRINTABLE.match(value):
                raise bad(f"{name.decode()} header: not printable ASCII")
        path: str = scope["path"]
        if "\x00" in path:
            raise bad("path: NUL character")
        if len(path) > MAX_PATH_CHARS:
            raise Refused(414, f"path longer than {MAX_PATH_CHARS} characters")
        raw: bytes = scope.get("query_string", b"")
        if not raw:
            return scope
        if len(raw) > self.limits.max_query_bytes:
            bound = self.limits.max_query_bytes
            raise Refused(414, f"query string longer than {bound} bytes (INGEST_API_MAX_QUERY_BYTES)")
        try:
            pairs = parse_qsl(raw.decode("ascii"), keep_blank_values=True, encoding="utf-8", errors="strict")
        except UnicodeDecodeError:
            raise bad("query string: not percent-encoded UTF-8") from None
        checked = check_query_params(pairs, self.limits)
        if checked == pairs:
            return scope
        return {**scope, "query_string": urlencode(checked, quote_via=quote).encode("ascii")}

    async def _read_body(self, scope: Scope, receive: Receive) -> bytes:
        declared = _header(scope, b"content-length")
        if declared is not None and (not declared.isdigit() or int(declared) > self.limits.max_body_bytes):
            raise Refused(413, f"body larger than {self.limits.max_body_bytes} bytes (INGEST_API_MAX_BODY_BYTES)")
        deadline = time.monotonic() + self.body_timeout_s
        chunks: list[bytes] = []
        size = 0
        more = True
        while more:
            try:
                message = await asyncio.wait_for(receive(), max(deadline - time.monotonic(), 0.001))
            except TimeoutError:
                raise Refused(408, f"body not received within {self.body_timeout_s:g} s") from None
            if message["type"] == "http.disconnect":
                raise _Disconnected
            chunk = message.get("body", b"")
            size += len(chunk)
            if size > self.limits.max_body_bytes:
                raise Refused(413, f"body larger than {self.limits.max_body_bytes} bytes (INGEST_API_MAX_BODY_BYTES)")
            chunks.append(chunk)
            more = message.get("more_body", False)
        return b"".join(chunks)

    def _checked_search(self, scope: Scope, body: bytes) -> tuple[Scope, bytes]:
        ctype = (_header(scope, b"content-type") or "").split(";")[0].strip().lower()
        if ctype and ctype != "application/json" and not ctype.endswith("+json"):
            raise Refused(415, "POST /search takes a JSON body (Content-Type: application/json)")
        try:
            text = body.decode("utf-8")
        except UnicodeDecodeError:
            raise bad("body: not UTF-8") from None
        parsed: Any = load_json(text, "body")
        checked = check_search_body(parsed, self.limits)
        if checked == parsed:
            return scope, body
        new = json.dumps(checked).encode()
        headers = [(k, v) for k, v in scope["headers"] if k != b"content-length"]
        headers.append((b"content-length", str(len(new)).encode()))
        return {**scope, "headers": headers}, new


class _Disconnected(Exception):
    """The client went away while sending its body: nothing to answer."""


def _header(scope: Scope, name: bytes) -> str | None:
    for k, v in scope["headers"]:
        if k == name:
            return bytes(v).decode("latin-1")
    return None


def _replay(body: bytes, receive: Receive) -> Receive:
    """The body read by the guard, then the client's own messages (a disconnect) as they come."""
    sent = False

    async def replay() -> Message:
        nonlocal sent
        if not sent:
            sent = True
            return {"type": "http.request", "body": body, "more_body": False}
        return await receive()

    return replay


async def respond(send: Send, status: int, message: str, headers: list[tuple[bytes, bytes]] | None = None) -> None:
    payload = json.dumps({"code": _CODES.get(status, "Error"), "description": message}).encode()
    await send(
        {
            "type": "http.response.start",
            "status": status,
            "headers": [
                (b"content-type", b"application/json"),
                (b"content-length", str(len(payload)).encode()),
                *(headers or []),
                # the rest of a refused body is never read: the connection cannot be reused
                *([(b"connection", b"close")] if status in (408, 413) else []),
            ],
        }
    )
    await send({"type": "http.response.body", "body": payload})
