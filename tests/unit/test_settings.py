from __future__ import annotations

from pathlib import Path

import pytest

from ingest.dsn import redact as redact_dsn
from ingest.errors import ConfigError
from ingest.settings import load_settings, scrub


def test_defaults_load_without_any_configuration(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.chdir(tmp_path)
    s = load_settings()
    assert s.s3_bucket == "eo-catalogue"
    assert s.database_url is None
    with pytest.raises(ConfigError, match="no database configured"):
        s.require_database_url()


def test_unknown_prefixed_variable_is_an_error(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("INGEST_S3_BUKET", "typo")
    with pytest.raises(ConfigError, match="INGEST_S3_BUKET"):
        load_settings()


def test_unknown_key_in_dotenv_is_an_error(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.chdir(tmp_path)
    (tmp_path / ".env").write_text("POSTGRES_USER=someone-elses\nINGEST_NOPE=1\n")
    with pytest.raises(ConfigError, match=r"unknown setting\(s\) in .env: INGEST_NOPE"):
        load_settings()
    (tmp_path / ".env").write_text("POSTGRES_USER=someone-elses\nINGEST_S3_BUCKET=b\n")
    assert load_settings().s3_bucket == "b"


def test_invalid_value_names_the_variable(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("INGEST_STACK_PG_PORT", "80")
    with pytest.raises(ConfigError, match="INGEST_STACK_PG_PORT"):
        load_settings()


def test_dotenv_overrides_stack_env_and_environment_overrides_both(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    monkeypatch.chdir(tmp_path)
    (tmp_path / ".stack").mkdir()
    (tmp_path / ".stack" / "stack.env").write_text(
        "INGEST_S3_BUCKET=from-stack\nINGEST_S3_PREFIX=p-stack\nINGEST_S3_REGION=r-stack\n"
    )
    (tmp_path / ".env").write_text("INGEST_S3_BUCKET=from-dotenv\nINGEST_S3_PREFIX=p-dotenv\n")
    monkeypatch.setenv("INGEST_S3_BUCKET", "from-env")
    s = load_settings()
    assert (s.s3_bucket, s.s3_prefix, s.s3_region) == ("from-env", "p-dotenv", "r-stack")


def test_secrets_never_show_in_repr(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("INGEST_DATABASE_URL", "postgresql://u:hunter2@db:5432/x")
    monkeypatch.setenv("INGEST_S3_SECRET_ACCESS_KEY", "s3cr3t-key")
    s = load_settings()
    text = repr(s) + str(s) + s.model_dump_json()
    assert "hunter2" not in text and "s3cr3t-key" not in text
    assert s.require_database_url().endswith("@db:5432/x")


def test_redact_and_scrub() -> None:
    assert redact_dsn("postgresql://u:pw@h:1/db") == "postgresql://u:***@h:1/db"
    assert redact_dsn("postgresql://h/db") == "postgresql://h/db"
    assert scrub("failed for pw at h", "pw", None) == "failed for *** at h"


def test_storage_fields_come_from_the_s3_settings(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    from ingest.pipeline import storage_access

    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("INGEST_S3_ENDPOINT_URL", "http://minio:9000/")
    monkeypatch.setenv("INGEST_S3_REGION", "eu-west-3")
    inside = storage_access(load_settings())
    assert (inside.endpoint_url, inside.region, inside.requester_pays, inside.platform) == (
        "http://minio:9000", "eu-west-3", False, "OTHER",
    )  # fmt: skip
    # the endpoint clients reach may differ from the one the daemon uses (a compose network name)
    monkeypatch.setenv("INGEST_S3_PUBLIC_ENDPOINT_URL", "https://s3.site.example.org/")
    monkeypatch.setenv("INGEST_S3_REQUESTER_PAYS", "true")
    public = storage_access(load_settings())
    assert (public.endpoint_url, public.requester_pays) == ("https://s3.site.example.org", True)
    monkeypatch.setenv("INGEST_S3_ENDPOINT_URL", "")
    monkeypatch.setenv("INGEST_S3_PUBLIC_ENDPOINT_URL", "")
    aws = storage_access(load_settings())
    assert (aws.endpoint_url, aws.platform) == (None, "AWS")
    monkeypatch.setenv("INGEST_S3_PUBLIC_ENDPOINT_URL", "s3.site.example.org")
    with pytest.raises(ConfigError, match=r"INGEST_S3_PUBLIC_ENDPOINT_URL: .*http:// or https://"):
        load_settings()
