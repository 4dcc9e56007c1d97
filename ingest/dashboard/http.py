"""The dashboard's routes on the daemon's endpoint (``ingest.metrics.Endpoint``): the page, its
assets (ours in ``static/``, the map library and world outline from ``npm/node_modules``, installed
by scripts/bootstrap.sh with ``npm ci``: nothing is fetched from the internet by the page) and the
JSON data, built at most once per ``ttl_s`` whatever the number of readers.

A database that does not answer gives a 503 with the cause in JSON (the page shows it); it is
remembered for ``ttl_s`` too, so reloads cannot hammer a database that is struggling.
"""

from __future__ import annotations

import json
import logging
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import psycopg

from ingest import collections as col
from ingest.dashboard import footprints
from ingest.dashboard.data import status_document
from ingest.errors import first_line
from ingest.settings import Settings, scrub

log = logging.getLogger(__name__)

PREFIX = "/dashboard"
HERE = Path(__file__).resolve().parent
_NPM = HERE / "npm" / "node_modules"
_JS, _CSS, _JSON = "text/javascript; charset=utf-8", "text/css; charset=utf-8", "application/json"
# what the page may load, by the name it asks for: nothing else under the package is reachable
ASSETS: dict[str, tuple[Path, str]] = {
    "dashboard.js": (HERE / "static" / "dashboard.js", _JS),
    "dashboard.css": (HERE / "static" / "dashboard.css", _CSS),
    "leaflet.js": (_NPM / "leaflet" / "dist" / "leaflet.js", _JS),
    "leaflet.css": (_NPM / "leaflet" / "dist" / "leaflet.css", _CSS),
    "topojson-client.min.js": (_NPM / "topojson-client" / "dist" / "topojson-client.min.js", _JS),
    "countries-110m.json": (_NPM / "world-atlas" / "countries-110m.json", _JSON),
}
INDEX = HERE / "static" / "index.html"

Response = tuple[int, bytes, str]


def _json(status: int, doc: Any) -> Response:
    return status, json.dumps(doc, default=str).encode(), "application/json"


@dataclass
class Dashboard:
    """``route(path)`` answers every path under ``/dashboard``."""

    settings: Settings
    ttl_s: float = 5.0
    _lock: threading.Lock = field(default_factory=threading.Lock)
    _cached: tuple[float, Response] | None = None

    def route(self, path: str) -> Response:
        if path in (PREFIX, PREFIX + "/", PREFIX + "/index.html"):
            return 200, INDEX.read_bytes(), "text/html; charset=utf-8"
        if path == PREFIX + "/data.json":
            return self.data()
        name = path.removeprefix(PREFIX + "/static/")
        if name in ASSETS:
            file, content_type = ASSETS[name]
            try:
                return 200, file.read_bytes(), content_type
            except FileNotFoundError:
                return 503, b"the dashboard's npm packages are not installed: run scripts/bootstrap.sh\n", "text/plain"
        return 404, f"not found: {path} (the dashboard is at {PREFIX}/)\n".encode(), "text/plain; charset=utf-8"

    def data(self) -> Response:
        """The cached document; the first reader after ``ttl_s`` builds it while the others wait for it."""
        with self._lock:
            if self._cached is not None and time.monotonic() - self._cached[0] < self.ttl_s:
                return self._cached[1]
            answer = self._build()
            self._cached = (time.monotonic(), answer)
            return answer

    def _build(self) -> Response:
        from ingest.state.db import connect

        try:
            specs = col.load_all(self.settings.collections_dir)
            ordered = [specs[i] for i in sorted(specs)]
            timeout = min(self.settings.db_connect_timeout_s, 5)
            with connect(dsn=self.settings.require_database_url(), timeout_s=timeout) as conn:
                conn.execute("SET statement_timeout = 20000")
                doc = status_document(conn, ordered, self.settings)
                try:  # a footprint PostGIS cannot read costs the map, not the figures
                    doc["map"] = footprints.as_document(footprints.cells(conn, [s.id for s in ordered]), doc["now"])
                except (psycopg.DataError, psycopg.InternalError) as exc:  # PostGIS says XX000
                    doc["map"] = {**footprints.as_document([], doc["now"]), "error": self._why("map", exc)}
        except Exception as exc:  # the endpoint's thread serves on: say what is wrong instead
            return _json(503, {"error": self._why("data", exc)})
        return _json(200, doc)

    def _why(self, what: str, exc: BaseException) -> str:
        why = scrub(first_line(exc), *self.settings.secrets())
        log.warning("dashboard: %s not read: %s", what, why)
        return why
