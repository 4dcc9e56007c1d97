"""``ingest serve`` without its guard (``ingest.api.guard``): only for ``benchmarks/guard.py``, which
measures what the bounds cost an ordinary search. Takes ``--port N --workers 1``; never serve with it."""

from __future__ import annotations

import argparse

from fastapi import FastAPI

from ingest import logs
from ingest.api import serve
from ingest.api.guard import Guard
from ingest.settings import Settings, load_settings

_build = serve.build_app


def _without_guard(settings: Settings) -> FastAPI:
    app = _build(settings)
    # the middleware stack is built at the first request: dropping the entry now removes the guard
    app.user_middleware = [m for m in app.user_middleware if m.cls is not Guard]  # type: ignore[comparison-overlap]
    return app


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--port", type=int, required=True)
    ap.add_argument("--workers", type=int, choices=(1,), default=1)
    args = ap.parse_args()
    settings = load_settings()
    logs.setup(settings.log_level)
    serve.build_app = _without_guard  # run() builds its one app through the module's name
    serve.run(settings, host="127.0.0.1", port=args.port, workers=1)


if __name__ == "__main__":
    main()
