"""``ingest serve``: the read-only STAC API as a real OS process on 127.0.0.1, searched with pystac-client
and plain HTTP as a federation broker would (a small synthetic catalogue, two collections)."""

from __future__ import annotations

import json
import secrets
import time
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import psycopg
import pytest
import requests
from psycopg import errors
from pystac_client import Client
from requests.adapters import HTTPAdapter

from ingest.adapters import pgstac
from ingest.errors import DatabaseUnavailable
from ingest.reader import check_serving_role, inspect_role, role_of
from tests.conftest import Stack, run_cli
from tests.integration.api import (
    AFRICA,
    EUROPE,
    T0,
    ApiDatabase,
    ApiServer,
    api_database,
    api_server,
    hours,
    publish,
    rfc3339,
    serve_env,
    stac_item,
    with_user,
)

# (collection, id, datetime, bbox, updated): coll-a alternates Europe/Africa, one item a day in
# January; coll-b is all Europe, in February; `updated` grows by one hour per item
Row = tuple[str, str, datetime, tuple[float, float, float, float], datetime]
CATALOGUE: list[Row] = [
    ("coll-a", f"a{i:02d}", datetime(2024, 1, 1 + i, 10, tzinfo=UTC), EUROPE if i % 2 == 0 else AFRICA, T0 + hours(i))
    for i in range(12)
] + [("coll-b", f"b{i}", datetime(2024, 2, 1 + i, 10, tzinfo=UTC), EUROPE, T0 + hours(100 + i)) for i in range(8)]


def ids_where(pred: Any) -> set[str]:
    return {iid for cid, iid, dt, bbox, upd in CATALOGUE if pred(cid, iid, dt, bbox, upd)}


@pytest.fixture(scope="module")
def db(stack: Stack, migrated_template: str) -> Iterator[ApiDatabase]:
    with api_database(stack, migrated_template) as d:
        publish(d.admin_dsn, "coll-a", "coll-b")
        pgstac.load_items(d.admin_dsn, [stac_item(*row) for row in CATALOGUE])
        yield d


@pytest.fixture(scope="module")
def server(db: ApiDatabase, tmp_path_factory: pytest.TempPathFactory) -> Iterator[ApiServer]:
    env = {"INGEST_API_TITLE": "Test site", "INGEST_API_DESCRIPTION": "A member", "INGEST_API_LANDING_ID": "test-site"}
    with api_server(db.reader_dsn, tmp_path_factory.mktemp("serve"), **env) as s:
        yield s


@pytest.fixture(scope="module")
def client(server: ApiServer) -> Client:
    return Client.open(server.url)


def found(client: Client, method: str, **params: Any) -> set[str]:
    return {i.id for i in client.search(method=method, max_items=None, **params).items()}


# ----------------------------------------------------------------------------- landing page, health


def test_landing_page_conformance_and_health(server: ApiServer) -> None:
    started = time.perf_counter()
    landing = requests.get(server.url + "/", timeout=5)
    elapsed = time.perf_counter() - started
    assert landing.status_code == 200 and elapsed < 1.0, elapsed  # a broker skips members slower than 30 s
    doc = landing.json()
    assert (doc["id"], doc["title"], doc["description"]) == ("test-site", "Test site", "A member")
    collection = requests.get(server.url + "/collections/coll-a", timeout=5).json()
    assert doc["stac_version"] == collection["stac_version"] == "1.1.0"
    conforms = set(doc["conformsTo"])
    for cls in ("/core", "/item-search", "/ogcapi-features", "/collections", "/filter", "#sort", "#fields", "#query"):
        assert any(cls in c for c in conforms), cls
    assert not any("transaction" in c for c in conforms)
    assert requests.get(server.url + "/healthz", timeout=5).json()["pgstac"]["status"] == "UP"
    assert requests.get(server.url + "/_mgmt/ping", timeout=5).status_code == 200


def test_links_follow_the_https_proxy_in_front(server: ApiServer) -> None:
    headers = {"X-Forwarded-Proto": "https", "X-Forwarded-Host": "stac.example.org"}
    doc = requests.get(server.url + "/collections", headers=headers, timeout=5).json()
    ours = {"self", "root", "parent", "items", "queryables", "collection"}
    hrefs = [link["href"] for c in doc["collections"] for link in c["links"] if link["rel"] in ours]
    assert len(hrefs) > 4 and all(h.startswith("https://stac.example.org/") for h in hrefs), hrefs


def test_cors_allows_any_origin_by_default(server: ApiServer) -> None:
    r = requests.get(server.url + "/collections", headers={"Origin": "https://broker.example.org"}, timeout=5)
    assert r.headers.get("access-control-allow-origin") == "*"


# ----------------------------------------------------------------------------- pystac-client


def test_collections(client: Client) -> None:
    assert {c.id for c in client.get_collections()} == {"coll-a", "coll-b"}
    coll = client.get_collection("coll-a")
    assert coll is not None
    assert coll.id == "coll-a"
    assert {i.id for i in coll.get_items()} == ids_where(lambda c, *_: c == "coll-a")


@pytest.mark.parametrize("method", ["GET", "POST"])
def test_search_with_core_parameters(client: Client, method: str) -> None:
    # only what a broker sends when it strips query/filter/sortby/fields
    assert found(client, method, bbox=list(AFRICA)) == ids_where(lambda c, i, d, b, u: b == AFRICA)
    assert found(client, method, datetime="2024-01-05T00:00:00Z/2024-02-02T23:59:59Z") == {
        f"a{i:02d}" for i in range(4, 12)
    } | {"b0", "b1"}
    assert found(client, method, collections=["coll-b"]) == ids_where(lambda c, *_: c == "coll-b")
    assert found(client, method, ids=["a03", "b5"]) == {"a03", "b5"}
    assert found(client, method, collections=["coll-a"], bbox=list(EUROPE), datetime="2024-01-01/2024-01-06") == {
        "a00",
        "a02",
        "a04",
    }


@pytest.mark.parametrize("method", ["GET", "POST"])
def test_number_matched_and_paging_links(client: Client, method: str) -> None:
    search = client.search(method=method, collections=["coll-a"], limit=5)
    pages = list(search.pages_as_dicts())
    assert [len(p["features"]) for p in pages] == [5, 5, 2]
    assert all(p["numberMatched"] == 12 for p in pages)
    assert search.matched() == 12


@pytest.mark.parametrize(("method", "lang"), [("GET", "cql2-text"), ("POST", "cql2-json")])
def test_cql2_filter_on_updated(client: Client, method: str, lang: str) -> None:
    since = T0 + hours(10)
    text = f"updated >= TIMESTAMP('{rfc3339(since)}')"
    as_json = {"op": ">=", "args": [{"property": "updated"}, {"timestamp": rfc3339(since)}]}
    got = client.search(
        method=method, filter=text if lang == "cql2-text" else as_json, filter_lang=lang, sortby="+properties.updated"
    )
    items = list(got.items())
    assert {i.id for i in items} == ids_where(lambda c, i, d, b, u: u >= since)
    updated = [i.properties["updated"] for i in items]
    assert updated == sorted(updated)


def test_queryables_are_self_contained_and_the_filters_still_work(server: ApiServer, client: Client) -> None:
    # no $ref to another host: a client dereferencing them (STAC Browser does) needs nothing but us
    for path in ("/queryables", "/collections/coll-a/queryables"):
        doc = requests.get(server.url + path, timeout=10).json()
        assert "$ref" not in json.dumps(doc), path
        assert {"id", "geometry", "datetime", "created", "updated"} <= set(doc["properties"]), path
        assert doc["properties"]["geometry"]["format"] == "geometry-any"
    by_id = {"op": "=", "args": [{"property": "id"}, "a03"]}
    assert [i.id for i in client.search(method="POST", filter=by_id, filter_lang="cql2-json").items()] == ["a03"]
    w, s, e, n = AFRICA
    africa = {"type": "Polygon", "coordinates": [[[w, s], [e, s], [e, n], [w, n], [w, s]]]}
    spatial = client.search(method="POST", filter={"op": "s_intersects", "args": [{"property": "geometry"}, africa]},
                            filter_lang="cql2-json")  # fmt: skip
    assert {i.id for i in spatial.items()} == ids_where(lambda c, i, d, b, u: b == AFRICA)


def test_sort_fields_and_query(client: Client) -> None:
    asc = [i.id for i in client.search(collections=["coll-b"], sortby="+datetime").items()]
    assert asc == [f"b{i}" for i in range(8)]
    page = next(
        client.search(collections=["coll-b"], fields={"include": ["id"], "exclude": ["assets"]}).pages_as_dicts()
    )
    assert all("assets" not in f for f in page["features"])
    assert found(client, "POST", query={"platform": {"eq": "sentinel-2b"}}, ids=["a01"]) == {"a01"}
    assert found(client, "POST", query={"platform": {"eq": "sentinel-2a"}}) == set()


def test_collection_search_free_text(server: ApiServer) -> None:
    doc = requests.get(server.url + "/collections", params={"q": "nothing-is-called-this"}, timeout=5).json()
    assert doc["collections"] == []


# ----------------------------------------------------------------------------- read-only


@pytest.mark.parametrize(
    ("verb", "path"),
    [
        ("POST", "/collections"),
        ("PUT", "/collections/coll-a"),
        ("PATCH", "/collections/coll-a"),
        ("DELETE", "/collections/coll-a"),
        ("POST", "/collections/coll-a/items"),
        ("PUT", "/collections/coll-a/items/a00"),
        ("PATCH", "/collections/coll-a/items/a00"),
        ("DELETE", "/collections/coll-a/items/a00"),
        ("POST", "/collections/coll-a/bulk_items"),
    ],
)
def test_transaction_endpoints_do_not_exist(server: ApiServer, verb: str, path: str) -> None:
    body = stac_item("coll-a", "a00", datetime(2030, 1, 1, tzinfo=UTC), EUROPE, T0)
    r = requests.request(verb, server.url + path, json=body, timeout=5)
    assert r.status_code in (404, 405), (r.status_code, r.text[:200])
    assert requests.get(server.url + "/collections/coll-a/items/a00", timeout=5).json()["properties"]["datetime"] == (
        "2024-01-01T10:00:00Z"
    )


@pytest.mark.parametrize(
    "statement",
    [
        "INSERT INTO pgstac.items (id, collection, geometry, datetime, end_datetime, content) "
        "SELECT 'x', collection, geometry, datetime, end_datetime, content FROM pgstac.items LIMIT 1",
        "UPDATE pgstac.items SET content = '{}'",
        "DELETE FROM pgstac.items",
        "DELETE FROM pgstac.collections",
        "SELECT pgstac.delete_item('a00', 'coll-a')",
        'SELECT pgstac.create_collection(\'{"id": "evil"}\'::jsonb)',
        "UPDATE pgstac.pgstac_settings SET value = 'off'",
        "CREATE TABLE public.evil (x int)",
        "INSERT INTO ingest.products (id) VALUES ('x')",
    ],
)
def test_the_server_role_cannot_write(db: ApiDatabase, statement: str) -> None:
    with psycopg.connect(db.reader_dsn, autocommit=True) as conn, pytest.raises(errors.InsufficientPrivilege):
        conn.execute(statement)
    assert pgstac.get_item(db.admin_dsn, "coll-a", "a00") is not None


def test_serve_refuses_the_migration_superuser(db: ApiDatabase) -> None:
    out = run_cli("serve", "--port", "1", env=serve_env(db.admin_dsn), timeout=60)
    assert out.returncode == 78, out.stderr
    lines = out.stderr.strip().splitlines()
    assert len(lines) == 1 and "superuser" in lines[0] and "INGEST_API_DATABASE_URL" in lines[0], out.stderr
    assert db.admin_dsn.split("@")[0].split(":")[-1] not in out.stderr  # no password


def test_serve_without_a_reader_says_how_to_make_one(tmp_path: Path) -> None:
    env = {k: v for k, v in serve_env("x").items() if k != "INGEST_API_DATABASE_URL"}
    out = run_cli("serve", env=env, cwd=tmp_path, timeout=60)
    assert out.returncode == 78 and "create-reader" in out.stderr, out.stderr


# ----------------------------------------------------------------------------- the API's role


def test_stack_up_makes_the_api_role(stack: Stack) -> None:
    dsn = stack.env["INGEST_API_DATABASE_URL"]
    role = inspect_role(dsn)
    check_serving_role(role)  # read-only, member of pgstac_read
    assert role.name == "ingest_api"


def test_create_reader_makes_a_role_that_can_only_read(stack: Stack, migrated_db: str) -> None:
    role = "reader_" + secrets.token_hex(4)
    first, second = (with_user(migrated_db, role, secrets.token_urlsafe(12)) for _ in range(2))
    timeouts = {"INGEST_API_STATEMENT_TIMEOUT_S": "0.5", "INGEST_API_IDLE_IN_TRANSACTION_TIMEOUT_S": "2"}
    try:
        for api_dsn in (first, second):  # again: the password is reset, nothing else changes
            env = {"INGEST_DATABASE_URL": migrated_db, "INGEST_API_DATABASE_URL": api_dsn, **timeouts}
            out = run_cli("db", "create-reader", env=env)
            assert out.returncode == 0, out.stderr
            assert role in out.stdout and role_of(api_dsn)[1] not in out.stdout + out.stderr
        assert inspect_role(second).name == role
        with pytest.raises(DatabaseUnavailable, match="password authentication failed"):
            inspect_role(first)
        with psycopg.connect(migrated_db) as conn:
            row = conn.execute("SELECT rolconfig FROM pg_roles WHERE rolname = %s", [role]).fetchone()
        assert row is not None and set(row[0]) == {
            "search_path=pgstac, public",
            "statement_timeout=500ms",
            "idle_in_transaction_session_timeout=2000ms",
        }
        with psycopg.connect(second) as conn:
            assert conn.execute("SELECT count(*) FROM pgstac.collections").fetchone() is not None
            assert conn.execute("SHOW search_path").fetchone() == ("pgstac, public",)
            # the role's own bound, whatever the client set up: a longer statement is cancelled
            started = time.monotonic()
            with pytest.raises(errors.QueryCanceled, match="statement timeout"):
                conn.execute("SELECT pg_sleep(5)")
            assert time.monotonic() - started < 4
    finally:
        with psycopg.connect(stack.database("postgres"), autocommit=True) as conn:
            conn.execute(f"DROP ROLE IF EXISTS {role}")


def test_create_reader_refuses_a_superuser_name(stack: Stack, migrated_db: str) -> None:
    env = {"INGEST_DATABASE_URL": migrated_db, "INGEST_API_DATABASE_URL": migrated_db}
    out = run_cli("db", "create-reader", env=env)
    assert out.returncode == 78 and "is a superuser" in out.stderr, out.stderr


# ----------------------------------------------------------------------------- EODAG


def test_eodag_with_the_api_as_a_stac_provider_finds_the_same_items(
    server: ApiServer, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # what the README tells a user to do: add our API as a STAC provider, search, page through all
    for key, value in {
        "EODAG_CFG_DIR": str(tmp_path / "cfg"),  # off the network and off the user's own configuration
        "EODAG_PROVIDERS_CFG_DIR": str(tmp_path / "providers"),
        "EODAG_STRICT_COLLECTIONS": "true",
        "EODAG_EXT_COLLECTIONS_CFG_URI": str(tmp_path / "ext.json"),
    }.items():
        monkeypatch.setenv(key, value)
    (tmp_path / "providers").mkdir()
    (tmp_path / "ext.json").write_text("{}")
    from eodag import EODataAccessGateway

    dag = EODataAccessGateway()
    dag.add_provider("member", server.url, search={"api_endpoint": f"{server.url}/search", "need_auth": False})
    found = dag.search_all(collection="coll-a", provider="member", geom=list(EUROPE), start="2024-01-03", limit=2)
    got = [p.properties["id"] for p in found]
    assert sorted(got) == sorted(ids_where(lambda c, i, d, b, u: c == "coll-a" and b == EUROPE and d.day >= 3))


# ----------------------------------------------------------------------------- stac-api-validator

STAC_EXTENSIONS = "https://stac-extensions.github.io/"


@pytest.fixture
def schemas_offline(monkeypatch: pytest.MonkeyPatch) -> None:
    """JSON schemas answered from local copies (pystac's core schemas, our extension schemas), as the
    validator would fetch them from the web; every other request goes out as usual (to our server)."""
    from pystac.validation.local_validator import get_local_schema_cache

    from ingest.stac_validation import SCHEMA_DIR

    core = get_local_schema_cache()
    send = HTTPAdapter.send

    def local(url: str) -> bytes | None:
        if url in core:
            return json.dumps(core[url]).encode()
        path = SCHEMA_DIR / url.removeprefix(STAC_EXTENSIONS)
        return path.read_bytes() if url.startswith(STAC_EXTENSIONS) and path.is_file() else None

    def offline_send(self: HTTPAdapter, request: requests.PreparedRequest, *args: Any, **kwargs: Any) -> Any:
        body = local(str(request.url))
        if body is None:
            return send(self, request, *args, **kwargs)
        response = requests.Response()
        response.status_code, response.url, response.request = 200, str(request.url), request
        response._content = body
        response.headers["Content-Type"] = "application/json"
        return response

    monkeypatch.setattr(HTTPAdapter, "send", offline_send)


@pytest.mark.usefixtures("schemas_offline")
def test_stac_api_validator_passes(server: ApiServer) -> None:
    """The conformance classes the issue asks for, paging included. (Not here: the validator's sort test
    POSTs `collections` as a string, which the spec does not allow and stac-fastapi rejects; its fields
    test wants application/geo+json where stac-fastapi-pgstac answers application/json.)"""
    from stac_api_validator.validations import QueryConfig, validate_api

    _warnings, errors = validate_api(
        root_url=server.url + "/",
        ccs_to_validate=["core", "item-search", "features", "collections", "filter"],
        collection="coll-a",
        geometry=json.dumps({"type": "Polygon", "coordinates": [[[10, 45], [11, 45], [11, 46], [10, 46], [10, 45]]]}),
        auth_bearer_token=None,
        auth_query_parameter=None,
        fields_nested_property=None,
        validate_pagination=True,
        query_config=QueryConfig(*[None] * 13),
        transaction_collection=None,
        headers=None,
    )
    assert list(errors) == [], "\n".join(map(str, errors))


def test_several_worker_processes_serve_the_same_api(db: ApiDatabase, tmp_path: Path) -> None:
    with api_server(db.reader_dsn, tmp_path, "--workers", "2", INGEST_API_LANDING_ID="multi") as s:
        assert {requests.get(s.url + "/", timeout=5).json()["id"] for _ in range(4)} == {"multi"}
        assert requests.get(s.url + "/healthz", timeout=5).status_code == 200
