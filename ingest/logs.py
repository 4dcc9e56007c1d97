"""Logging set-up: readable lines on a terminal, one JSON object per line otherwise; secrets redacted.

Every record passes ``REDACTOR`` before it is formatted: the configured secrets (database passwords
and DSNs, S3 keys, provider credentials: ``register_secrets(settings)``, done when the CLI loads its
settings), any password written in a URL (``scheme://user:password@host``), any ``password=...``
pair (a keyword-form DSN), tokens (``?token=``, ``Bearer ...``, anything shaped as a JWT) and the
signature of presigned URLs become ``***``, in the message, its arguments, the extra fields and the
traceback alike.
"""

from __future__ import annotations

import json
import logging
import re
import sys
from collections.abc import Iterable
from datetime import UTC, datetime
from typing import TYPE_CHECKING
from urllib.parse import quote, unquote

from ingest.dsn import redact_pairs

if TYPE_CHECKING:
    from ingest.settings import Settings

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
        if record.exc_info and not record.exc_text:
            record.exc_text = self.formatException(record.exc_info)
        if record.exc_text:
            doc["exc"] = record.exc_text
        return json.dumps(doc, default=str)


# scheme://user:password@ -> scheme://user:***@ (any URL, configured or not)
_URL_PASSWORD = re.compile(r"(\b[A-Za-z][A-Za-z0-9+.-]*://[^\s:/@]*:)([^\s@/]+)@")
# what a token or a presigned URL carries: EODAG sends CDSE's access token as ``?token=`` and logs the
# URL at debug level; an S3 presigned URL carries its signature and credential
_QUERY_SECRET = re.compile(
    r"(?i)([?&;](?:token|access_token|refresh_token|id_token|x-amz-signature|x-amz-credential|"
    r"x-amz-security-token|signature|sig)=)[^&\s\"'<>]+"
)
_BEARER = re.compile(r"(?i)\b(bearer\s+)[A-Za-z0-9._~+/=-]{8,}")
_JWT = re.compile(r"\beyJ[A-Za-z0-9_-]{5,}\.[A-Za-z0-9_-]{5,}\.[A-Za-z0-9_-]*")  # header.payload.signature
MIN_SECRET_LEN = 4  # shorter values would turn ordinary words into *** (and are not secrets worth the name)


class RedactSecrets(logging.Filter):
    """Replaces configured secrets, URL passwords and password= pairs by ``***`` in everything a record
    will print."""

    def __init__(self) -> None:
        super().__init__()
        self._secrets: set[str] = set()

    def add(self, values: Iterable[str | None]) -> None:
        for value in values:
            if value and len(value) >= MIN_SECRET_LEN:
                # as configured, and as it shows once URL-quoted or unquoted (a DSN's password)
                self._secrets |= {value, quote(value, safe=""), unquote(value)}

    def redact(self, text: str) -> str:
        for secret in sorted(self._secrets, key=len, reverse=True):  # a DSN before the password inside it
            if secret in text:
                text = text.replace(secret, "***")
        text = _URL_PASSWORD.sub(lambda m: m.group(1) + ("***" if m.group(2) != "***" else m.group(2)) + "@", text)
        text = _QUERY_SECRET.sub(lambda m: m.group(1) + "***", text)
        text = _BEARER.sub(lambda m: m.group(1) + "***", text)
        text = _JWT.sub("***", text)
        return redact_pairs(text)

    def filter(self, record: logging.LogRecord) -> bool:
        message = record.getMessage()
        clean = self.redact(message)
        if clean != message or record.args:
            record.msg, record.args = clean, None
        for key, value in vars(record).items():
            if key not in _RESERVED and isinstance(value, str):
                setattr(record, key, self.redact(value))
        if record.exc_info:
            if not record.exc_text:
                record.exc_text = logging.Formatter().formatException(record.exc_info)
            record.exc_text = self.redact(record.exc_text)
        if record.stack_info:
            record.stack_info = self.redact(record.stack_info)
        return True


REDACTOR = RedactSecrets()


def register_secrets(settings: Settings) -> None:
    """Everything secret in the settings never reaches a log line."""
    # a DSN's password only: the rest of it (host, port, database) is what an operator needs to read
    REDACTOR.add(s.get_secret_value() for s in settings.secrets(whole_dsns=False) if s is not None)


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
    handler.addFilter(REDACTOR)  # after QuietLibraries: a dropped traceback need not be redacted
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level)
    # Python warnings (a library's FixWindingWarning, deprecations) as log records: with JSON logs
    # every line on stderr must be JSON
    logging.captureWarnings(True)
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
