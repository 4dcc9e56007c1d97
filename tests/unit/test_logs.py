"""Log lines: JSON off a terminal, and no configured secret in any part of a record."""

from __future__ import annotations

import json
import logging
import subprocess
import sys
from collections.abc import Iterator
from contextlib import contextmanager

import pytest
from pydantic import SecretStr

from ingest import logs
from ingest.settings import Settings

DB_PASSWORD = "db-Pa55word-x1"
API_PASSWORD = "api-Pa55word-y2"
S3_SECRET = "s3SecretKey/abc+def"
PROVIDER_PASSWORD = "provider-pw-z3"
SECRETS = (DB_PASSWORD, API_PASSWORD, S3_SECRET, PROVIDER_PASSWORD, "AKIDLOCAL12345")


def configured() -> Settings:
    return Settings(
        database_url=SecretStr(f"postgresql://ingest:{DB_PASSWORD}@db.example:5432/ingest"),
        api_database_url=SecretStr(f"postgresql://reader:{API_PASSWORD}@db.example:5432/ingest"),
        s3_access_key_id=SecretStr("AKIDLOCAL12345"),
        s3_secret_access_key=SecretStr(S3_SECRET),
        provider_username=SecretStr("someone@example.org"),
        provider_password=SecretStr(PROVIDER_PASSWORD),
        _env_file=None,  # type: ignore[call-arg]
    )


@contextmanager
def logging_to_stderr(json_lines: bool, settings: Settings | None = None) -> Iterator[None]:
    """The CLI's set-up, in the test's own body (where capsys has replaced sys.stderr)."""
    root = logging.getLogger()
    handlers, level = root.handlers[:], root.level
    logs.setup("INFO", json_lines=json_lines)
    if settings is not None:
        logs.register_secrets(settings)
    try:
        yield
    finally:
        root.handlers[:] = handlers
        root.setLevel(level)


def lines(capsys: pytest.CaptureFixture[str]) -> list[dict[str, object]]:
    err = capsys.readouterr().err
    return [json.loads(line) for line in err.splitlines() if line.strip()]


def test_secrets_are_redacted_in_message_arguments_extras_and_tracebacks(capsys: pytest.CaptureFixture[str]) -> None:
    settings = configured()
    dsn = settings.require_database_url()
    log = logging.getLogger("ingest.test")
    with logging_to_stderr(json_lines=True, settings=settings):
        log.info("connecting to %s", dsn)
        log.warning(f"S3 said: bad signature for {S3_SECRET}")
        log.info("login", extra={"detail": f"user someone@example.org password {PROVIDER_PASSWORD}"})
        try:
            raise RuntimeError(f"cannot connect: {dsn} and {API_PASSWORD}")
        except RuntimeError:
            log.exception("failed")
        logging.getLogger("some.library").error("url http://u:%s@host/x", "not-configured-pw")
    out = lines(capsys)
    assert len(out) == 5
    text = json.dumps(out)
    for secret in SECRETS:
        assert secret not in text, secret
    assert out[0]["msg"] == "connecting to postgresql://ingest:***@db.example:5432/ingest"  # still says where
    assert "***" in str(out[2]["detail"]) and "RuntimeError" in str(out[3]["exc"])
    assert out[4]["msg"] == "url http://u:***@host/x"  # any password in a URL, configured or not


def test_ordinary_words_are_left_alone(capsys: pytest.CaptureFixture[str]) -> None:
    with logging_to_stderr(json_lines=True, settings=configured()):
        logging.getLogger("ingest.test").info("harvest sentinel-2-l2a: 3 new", extra={"collection": "sentinel-2-l2a"})
    (doc,) = lines(capsys)
    assert doc["msg"] == "harvest sentinel-2-l2a: 3 new" and doc["collection"] == "sentinel-2-l2a"
    assert {"ts", "level", "logger", "msg"} <= doc.keys() and doc["level"] == "info"


def test_text_format_on_a_terminal_is_not_json(capsys: pytest.CaptureFixture[str]) -> None:
    with logging_to_stderr(json_lines=False):
        logging.getLogger("ingest.test").info("readable %s", "line")
    err = capsys.readouterr().err.strip()
    assert err.endswith("INFO    ingest.test: readable line") and not err.startswith("{")


def test_python_warnings_become_json_lines_too() -> None:
    # in a process of its own: pytest captures warnings in its own way
    code = (
        "import warnings\n"
        "from ingest import logs\n"
        "logs.setup('INFO', json_lines=True)\n"
        "warnings.warn('the exterior ring is wound clockwise', UserWarning)\n"
    )
    out = subprocess.run([sys.executable, "-W", "always", "-c", code], capture_output=True, text=True, timeout=60)
    assert out.returncode == 0, out.stderr
    docs = [json.loads(line) for line in out.stderr.splitlines()]
    assert [d["logger"] for d in docs] == ["py.warnings"]
    assert "wound clockwise" in str(docs[0]["msg"])


def test_tokens_and_presigned_signatures_are_redacted_though_never_configured(
    capsys: pytest.CaptureFixture[str],
) -> None:
    # minted at run time, so no setting names them: EODAG logs CDSE download URLs with ?token=
    jwt = "eyJhbGciOiJSUzI1NiJ9.eyJzdWIiOiJ1c2VyIn0.c2lnbmF0dXJlLWJ5dGVz"
    said = [
        f"GET http://127.0.0.1:1/odata/v1/Products(abc)/$value?token={jwt}",
        "GET https://s3.example/b/k.tif?X-Amz-Credential=AKIDX%2F2026&X-Amz-Signature=0123456789abcdef&x=1",
        "Authorization: Bearer opaque-token-value-1234",
        f"token endpoint said {{'access_token': '{jwt}'}}",
    ]
    with logging_to_stderr(json_lines=True):
        for text in said:
            logging.getLogger("eodag.download").warning(text)
    out = [str(line["msg"]) for line in lines(capsys)]
    assert len(out) == len(said)
    for line in out:
        for secret in (jwt, "0123456789abcdef", "AKIDX", "opaque-token-value-1234"):
            assert secret not in line, line
    assert out[0].endswith("$value?token=***") and "x=1" in out[1] and out[2] == "Authorization: Bearer ***"
