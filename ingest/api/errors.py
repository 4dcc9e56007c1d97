"""Errors of the libraries behind the API translated at our boundary: what the database refuses about
a request is the client's 400, a database that is away or a search cut by ``statement_timeout`` is a
503, and only our own bugs are a 500 (logged with their traceback, answered without one).

pgstac raises its own messages (``RAISE EXCEPTION``: "Invalid paging token: ...", "Operator x Not
Supported.") for bad input; those are passed on. Syntax errors of the SQL pgstac builds from a
request (odd ``sortby``, free text) are answered without the SQL.
"""

from __future__ import annotations

import logging

import asyncpg
from fastapi import FastAPI, Request
from starlette.responses import JSONResponse, Response

log = logging.getLogger(__name__)

RETRY_AFTER_S = "5"
# the database is away or going away: the request may succeed later
_UNAVAILABLE: tuple[type[Exception], ...] = (
    asyncpg.exceptions.PostgresConnectionError,
    asyncpg.exceptions.ConnectionDoesNotExistError,
    asyncpg.exceptions.InterfaceError,
    asyncpg.exceptions.CannotConnectNowError,
    asyncpg.exceptions.AdminShutdownError,
    asyncpg.exceptions.CrashShutdownError,
    asyncpg.exceptions.TooManyConnectionsError,
    asyncpg.exceptions.InsufficientResourcesError,
    ConnectionError,
    TimeoutError,
)


def _body(code: str, description: str) -> dict[str, str]:
    return {"code": code, "description": description}


def _first_line(text: str, limit: int = 300) -> str:
    line = " ".join(str(text).split())
    return line if len(line) <= limit else line[: limit - 1] + "…"


def translate(exc: BaseException, statement_timeout_s: float) -> tuple[int, dict[str, str]]:
    """Status and body for an exception that escaped the routes (pure, so it is tested alone)."""
    if isinstance(exc, asyncpg.exceptions.QueryCanceledError):
        return 503, _body(
            "SearchTimeout", f"the search took longer than {statement_timeout_s:g} s; narrow it (bbox, datetime, limit)"
        )
    if isinstance(exc, _UNAVAILABLE):
        return 503, _body("ServiceUnavailable", "the catalogue database is unavailable; try again shortly")
    if isinstance(exc, asyncpg.exceptions.RaiseError):  # pgstac's own words about the request
        return 400, _body("BadRequest", _first_line(exc.args[0] if exc.args else str(exc)))
    if isinstance(exc, asyncpg.exceptions.DataError):  # SQLSTATE class 22: a value it cannot use
        return 400, _body("BadRequest", "a value the catalogue cannot search with: " + _first_line(str(exc)))
    if isinstance(exc, asyncpg.exceptions.InsufficientPrivilegeError):
        return 500, _body("InternalServerError", "internal error")
    if isinstance(exc, asyncpg.exceptions.SyntaxOrAccessError):  # class 42, from SQL built of the request
        return 400, _body("BadRequest", "the search cannot be run as given (check sortby, q, filter and query)")
    return 500, _body("InternalServerError", "internal error")


def install(app: FastAPI, *, statement_timeout_s: float) -> None:
    async def handle(request: Request, exc: Exception) -> Response:
        status, body = translate(exc, statement_timeout_s)
        where = f"{request.method} {request.url.path}"
        if status >= 500 and body["code"] == "InternalServerError":
            log.error("%s failed: %s", where, type(exc).__name__, exc_info=exc)
        else:
            log.warning("%s answered %d: %s: %s", where, status, type(exc).__name__, _first_line(str(exc)))
        headers = {"Retry-After": RETRY_AFTER_S} if status == 503 else None
        return JSONResponse(body, status_code=status, headers=headers)

    app.add_exception_handler(asyncpg.exceptions.PostgresError, handle)
    for exc_type in _UNAVAILABLE:
        app.add_exception_handler(exc_type, handle)
    app.add_exception_handler(Exception, handle)
