"""The STAC API's set-up without a database: settings, the routes it exposes, the serving-role checks."""

from __future__ import annotations

import base64
import hashlib
import hmac
from typing import Any

import pytest
from pydantic import SecretStr

from ingest.api.serve import api_settings, build_app, postgres_settings
from ingest.errors import ConfigError
from ingest.reader import ServingRole, check_serving_role, role_of, scram_verifier
from ingest.settings import Settings

DSN = "postgresql://api:s%40cret@db.example.org:6543/cat"


def settings(**kw: Any) -> Settings:
    return Settings(_env_file=None, api_database_url=SecretStr(DSN), **kw)  # type: ignore[call-arg]


@pytest.mark.parametrize(
    ("raw", "expected"),
    [
        ("*", ["*"]),
        ("https://a.example.org, https://b.example.org", ["https://a.example.org", "https://b.example.org"]),
        ('["https://a.example.org"]', ["https://a.example.org"]),
    ],
)
def test_cors_origins_from_one_variable(monkeypatch: pytest.MonkeyPatch, raw: str, expected: list[str]) -> None:
    monkeypatch.setenv("INGEST_API_CORS_ORIGINS", raw)
    assert Settings(_env_file=None).api_cors_origins == expected  # type: ignore[call-arg]


def test_stac_fastapi_reads_nothing_from_the_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    # what would switch transactions on, or point the API at another database, in a bare stac-fastapi
    monkeypatch.setenv("ENABLE_TRANSACTIONS_EXTENSIONS", "true")
    monkeypatch.setenv("ENABLED_EXTENSIONS", "transaction")
    monkeypatch.setenv("PGHOST", "elsewhere.example.org")
    monkeypatch.setenv("STAC_FASTAPI_TITLE", "not ours")
    s = settings(api_title="Ours", api_context="auto")
    api = api_settings(s)
    assert api.enable_transactions_extensions is False and "transaction" not in api.enabled_extensions
    assert api.stac_fastapi_title == "Ours"
    pg = postgres_settings(s)
    assert (pg.pguser, pg.pgpassword, pg.pghost, pg.pgport, pg.pgdatabase) == (
        "api",
        "s@cret",
        "db.example.org",
        6543,
        "cat",
    )
    assert pg.server_settings.model_dump()["pgstac.context"] == "auto"


def test_the_api_sessions_are_bounded_and_write_no_search_cache() -> None:
    server = postgres_settings(settings(api_statement_timeout_s=2.5)).server_settings.model_dump()
    assert server["statement_timeout"] == "2500ms"
    assert server["idle_in_transaction_session_timeout"] == "15000ms"
    assert server["pgstac.readonly"] == "true"


def test_the_guard_is_the_outermost_middleware() -> None:
    from ingest.api.guard import Guard

    app = build_app(settings())
    assert app.user_middleware[0].cls is Guard  # type: ignore[comparison-overlap]


def test_the_app_has_no_write_routes() -> None:
    paths = build_app(settings()).openapi()["paths"]
    writes = {(verb.upper(), path) for path, ops in paths.items() for verb in ops if verb not in {"get", "head"}}
    assert writes == {("POST", "/search")}
    assert {"/", "/conformance", "/collections", "/search", "/queryables", "/_mgmt/ping"} <= set(paths)


def test_serve_needs_the_api_role() -> None:
    with pytest.raises(ConfigError, match=r"INGEST_API_DATABASE_URL.*create-reader"):
        build_app(Settings(_env_file=None))  # type: ignore[call-arg]


def role(**kw: object) -> ServingRole:
    base: dict[str, object] = {
        "name": "api",
        "superuser": False,
        "can_write_items": False,
        "pgstac_installed": True,
        "reads_pgstac": True,
        "pgstac_version": "0.10.0",
    }
    return ServingRole(**{**base, **kw})  # type: ignore[arg-type]


@pytest.mark.parametrize(
    ("kw", "message"),
    [
        ({"superuser": True}, "refusing to serve as api: it is a superuser"),
        ({"can_write_items": True}, "refusing to serve as api: it can write pgstac.items"),
        ({"pgstac_installed": False, "reads_pgstac": False}, "ingest db migrate"),
        ({"reads_pgstac": False}, "not a member of pgstac_read"),
    ],
)
def test_unfit_serving_roles_are_refused_in_one_line(kw: dict[str, object], message: str) -> None:
    with pytest.raises(ConfigError, match=message) as exc:
        check_serving_role(role(**kw))
    assert "\n" not in str(exc.value)


def test_a_reader_role_is_fit() -> None:
    check_serving_role(role())


def test_role_of_needs_user_and_password() -> None:
    assert role_of(DSN) == ("api", "s@cret")
    with pytest.raises(ConfigError, match="must name the API's role and its password"):
        role_of("postgresql://db.example.org/cat")


def test_scram_verifier_passes_rfc7677s_exchange() -> None:
    # RFC 7677's example exchange (password "pencil"): a server holding our verifier accepts the
    # client's proof and answers the server signature the RFC gives
    salt = base64.b64decode("W22ZaJ0SNY7soEsUEjb6gQ==")
    nonce = "rOprNGfwEbeRWgbNEkqO%hvYDpWUa2RaTCAfuxFIlj)hNlF$k0"
    auth_message = f"n=user,r=rOprNGfwEbeRWgbNEkqO,r={nonce},s=W22ZaJ0SNY7soEsUEjb6gQ==,i=4096,c=biws,r={nonce}"
    proof = base64.b64decode("dHzbZapWIk4jUhN+Ute9ytag9zjfMHgsqmmiz7AndVQ=")

    head, keys = scram_verifier("pencil", salt=salt).split("$", 2)[1:]
    assert head == "4096:W22ZaJ0SNY7soEsUEjb6gQ=="
    stored_key, server_key = (base64.b64decode(k) for k in keys.split(":"))
    client_signature = hmac.new(stored_key, auth_message.encode(), "sha256").digest()
    client_key = bytes(a ^ b for a, b in zip(proof, client_signature, strict=True))
    assert hashlib.sha256(client_key).digest() == stored_key
    server_signature = hmac.new(server_key, auth_message.encode(), "sha256").digest()
    assert base64.b64encode(server_signature).decode() == "6rriTRBi23WpRR/wtup+mMhUZUn/dB5nLTJRsjl95G4="


def test_a_keyword_form_api_dsn_serves_too() -> None:
    keyword = "host=db.example.org port=6543 user=api password='s@c ret' dbname=cat"
    pg = postgres_settings(Settings(_env_file=None, api_database_url=SecretStr(keyword)))  # type: ignore[call-arg]
    assert (pg.pguser, pg.pgpassword, pg.pghost, pg.pgport, pg.pgdatabase) == (
        "api",
        "s@c ret",
        "db.example.org",
        6543,
        "cat",
    )
