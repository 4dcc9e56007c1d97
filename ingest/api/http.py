"""uvicorn's HTTP protocol with a header timeout.

uvicorn (0.38) closes idle keep-alive connections but gives a client that opens a connection, or
starts a request, unlimited time to finish its headers: a few hundred slow clients hold every
connection of a worker. This protocol closes a connection whose request headers are not complete
within ``header_timeout_s`` of the connection opening or of the request's first byte. The body has
its own deadline in ``ingest.api.guard``.
"""

from __future__ import annotations

import asyncio
from typing import Any

from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol

# set from the settings in each server process before it accepts connections (configure())
_header_timeout_s = 10.0


def configure(header_timeout_s: float) -> None:
    global _header_timeout_s
    _header_timeout_s = header_timeout_s


class HeaderTimeoutProtocol(HttpToolsProtocol):
    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._header_timer: asyncio.TimerHandle | None = None

    def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
        super().connection_made(transport)
        self._arm()

    def on_message_begin(self) -> None:
        super().on_message_begin()
        self._arm()

    def on_headers_complete(self) -> None:
        self._disarm()
        super().on_headers_complete()

    def connection_lost(self, exc: Exception | None) -> None:
        self._disarm()
        super().connection_lost(exc)

    def _arm(self) -> None:
        if self._header_timer is None:
            self._header_timer = self.loop.call_later(_header_timeout_s, self._headers_too_slow)

    def _disarm(self) -> None:
        if self._header_timer is not None:
            self._header_timer.cancel()
            self._header_timer = None

    def _headers_too_slow(self) -> None:
        self._header_timer = None
        if not self.transport.is_closing():
            self.transport.close()
