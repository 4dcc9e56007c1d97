"""Logging set-up: readable lines on a terminal, one JSON object per line otherwise."""

from __future__ import annotations

import json
import logging
import sys
from datetime import UTC, datetime

_RESERVED = set(vars(logging.LogRecord("", 0, "", 0, "", None, None))) | {"message", "asctime"}


class JsonFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        doc = {
            "ts": datetime.fromtimestamp(record.created, UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z"),
            "level": record.levelname.lower(),
            "logger": record.name,
            "msg": record.getMessage(),
        }
        doc.update({k: v for k, v in vars(record).items() if k not in _RESERVED and not k.startswith("_")})
        if record.exc_info:
            doc["exc"] = self.formatException(record.exc_info)
        return json.dumps(doc, default=str)


class QuietLibraries(logging.Filter):
    """Libraries log tracebacks for errors we catch and report ourselves in one line: keep their
    message, drop the traceback (``--debug`` shows everything). Not uvicorn's: an exception it logs
    escaped the API's request handling, nobody reports it otherwise, and the traceback is the clue."""

    def filter(self, record: logging.LogRecord) -> bool:
        if not record.name.startswith(("ingest", "uvicorn.error")) and logging.getLogger().level > logging.DEBUG:
            record.exc_info = None
            record.exc_text = None
        return True


def setup(level: str = "INFO", *, json_lines: bool | None = None) -> None:
    if json_lines is None:
        json_lines = not sys.stderr.isatty()
    handler = logging.StreamHandler(sys.stderr)
    if json_lines:
        handler.setFormatter(JsonFormatter())
    else:
        handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)-7s %(name)s: %(message)s", "%H:%M:%S"))
    handler.addFilter(QuietLibraries())
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level)
    for noisy in ("botocore", "boto3", "urllib3", "s3transfer", "eodag", "rasterio", "alembic", "psycopg.pool"):
        logging.getLogger(noisy).setLevel(max(logging.WARNING, root.level))
    # one INFO line per registered blueprint and per deferred job: noise at the scale of a harvest
    for chatty in ("procrastinate.blueprints", "procrastinate.jobs"):
        logging.getLogger(chatty).setLevel(max(logging.WARNING, root.level))
    # stac-fastapi builds settings from the environment when imported and warns that the API's title is
    # a default; `ingest serve` sets its own from INGEST_API_*
    logging.getLogger("stac_fastapi.types.config").setLevel(max(logging.ERROR, root.level))
    # EODAG warns about every built-in provider it skips; we load only the configured one
    logging.getLogger("eodag.provider").setLevel(max(logging.ERROR, root.level))
