"""STAC Browser at ``/browser/`` on ``ingest serve``.

The files are Radiant Earth's STAC Browser 4, built by ``scripts/bootstrap.sh`` from its npm package
with our locked toolchain (``web/stac-browser``; README, Browsing the catalogue) for the path prefix
``/browser/`` in hash mode, so deep links never reach the server and no rewrite is needed. Its run-time
configuration, ``/browser/config.js``, is answered here: the catalogue is this API's own root
(``INGEST_API_PUBLIC_URL`` when set, else the URL the request came to) and its title ours.

Only GET and HEAD; a name that resolves outside the build (``..``, a symlink out) or is not a file is a
404, the build missing a 503 naming the set-up command; never a 500.
"""

from __future__ import annotations

import json
import logging
import mimetypes
from pathlib import Path

from fastapi import FastAPI, Request
from starlette.responses import FileResponse, PlainTextResponse, RedirectResponse, Response

from ingest.settings import Settings

log = logging.getLogger(__name__)

PREFIX = "/browser"
DEFAULT_DIR = Path(__file__).resolve().parents[2] / "web" / "stac-browser" / "dist"
_METHODS = ["GET", "HEAD"]
_MISSING = "STAC Browser is not built here: run scripts/bootstrap.sh (it builds web/stac-browser)\n"
# hashed names (js/app.3f2a1c.js) never change; index.html and the service worker must be read anew
_IMMUTABLE = ("js/", "css/", "fonts/", "img/")


def browser_dir(settings: Settings) -> Path:
    return settings.browser_dir or DEFAULT_DIR


def run_time_config(catalog_url: str, title: str) -> str:
    """Pure. The script STAC Browser's index.html loads before it starts."""
    config = {"catalogUrl": catalog_url, "catalogTitle": title}
    return f"window.STAC_BROWSER_CONFIG = {json.dumps(config, ensure_ascii=True)};\n"


def resolve(root: Path, name: str) -> Path | None:
    """The file ``name`` names under ``root``, or None (outside it, not a file, hidden)."""
    if any(part.startswith(".") for part in Path(name).parts):
        return None  # the build's .inputs stamp, and any dot-file
    try:
        path = (root / (name or "index.html")).resolve()
    except (OSError, ValueError):
        return None
    return path if path.is_relative_to(root.resolve()) and path.is_file() else None


def add_browser(app: FastAPI, settings: Settings) -> None:
    root = browser_dir(settings)
    if not (root / "index.html").is_file():
        log.warning("STAC Browser not found in %s: /browser/ answers 503 (run scripts/bootstrap.sh)", root.name)
    title = settings.api_title

    async def redirect(request: Request) -> Response:
        return RedirectResponse(f"{request.scope.get('root_path', '')}{PREFIX}/", status_code=308)

    async def config(request: Request) -> Response:
        api = settings.api_public_url or str(request.base_url).rstrip("/")
        body = run_time_config(f"{api}/", title)
        return Response(body, media_type="text/javascript", headers={"Cache-Control": "no-cache"})

    async def page(request: Request) -> Response:
        if not (root / "index.html").is_file():
            return PlainTextResponse(_MISSING, status_code=503)
        name = str(request.path_params.get("name", ""))
        path = resolve(root, name)
        if path is None:
            return PlainTextResponse(f"not found: {PREFIX}/{name}\n", status_code=404)
        media = mimetypes.guess_type(path.name)[0] or "application/octet-stream"
        cache = "public, max-age=31536000, immutable" if name.startswith(_IMMUTABLE) else "no-cache"
        return FileResponse(path, media_type=media, headers={"Cache-Control": cache})

    for path, endpoint in ((PREFIX, redirect), (f"{PREFIX}/config.js", config), (f"{PREFIX}/", page),
                           (f"{PREFIX}/{{name:path}}", page)):  # fmt: skip
        app.add_api_route(path, endpoint, methods=_METHODS, include_in_schema=False, response_model=None)
