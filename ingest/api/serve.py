"""``ingest serve``: the read-only STAC API the federation queries (stac-fastapi-pgstac 7.2 on our pgstac).

* Read-only twice over: the Transaction and Bulk Transaction extensions are never registered (POST,
  PUT, PATCH and DELETE on collections and items answer 404/405), and the process connects only as
  the API's own role, which the database lets read and nothing else (``ingest.reader``); start-up
  refuses a superuser or any role that can write items.
* Everything comes from our settings, nothing from the environment stac-fastapi would read
  (``ENABLED_EXTENSIONS``, ``PGUSER``, a ``.env``...): both of its settings classes are built from
  explicit values only, so an unrelated variable cannot switch transactions on or move the database.
* ``numberMatched``: pgstac counts matches only when its ``context`` setting is on (off by default).
  We set it per connection (the ``pgstac.context`` GUC, ``INGEST_API_CONTEXT``), so it applies to the
  API alone and an operator's choice in ``pgstac.pgstac_settings`` is left as it is. Counted afresh by
  every search (``pgstac.context_stats_ttl`` 0): pgstac would otherwise answer, for a day, a count that
  any writing session's search cached in ``search_wheres``, whatever was loaded or deleted since.
* Extensions: query, sort, fields, filter (CQL2 text and JSON) and token paging on ``/search`` and on
  ``/collections/{id}/items``; collection search with free text. Free text on item search is left
  out: pgstac matches ``q`` against item title/description/keywords only, and our items have none,
  so it would advertise a conformance class that never finds anything.
* Searches answer current items only: an older processing marked ``deprecated`` is found by naming
  ``deprecated`` in the filter, or by id (``ingest.api.current``).
"""

from __future__ import annotations

import json
import logging
import os
import signal
import sys
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from fastapi import FastAPI, HTTPException, Request
from pydantic_settings import BaseSettings, PydanticBaseSettingsSource
from stac_fastapi.extensions.sort import ItemCollectionSortExtension, SearchSortExtension
from stac_fastapi.extensions.sort.sort import SortConformanceClasses
from stac_fastapi.pgstac.app import instantiate_api
from stac_fastapi.pgstac.config import PostgresSettings, ServerSettings
from stac_fastapi.pgstac.config import Settings as PgstacApiSettings
from stac_fastapi.pgstac.core import CoreCrudClient, health_check
from stac_fastapi.pgstac.db import close_db_connection, connect_to_db
from stac_fastapi.pgstac.models.extensions import Extensions

from ingest import dsn, logs
from ingest.access import hrefs
from ingest.access.gateway import add_gateway
from ingest.access.policy import AccessPolicy
from ingest.api import errors, http
from ingest.api.bounds import Limits, Refused, filter_tree
from ingest.api.current import current_only
from ingest.api.deletions import add_deleted_items
from ingest.api.guard import Guard
from ingest.api.policies import add_policies
from ingest.collections import STAC_VERSION
from ingest.errors import ConfigError
from ingest.reader import check_serving_role, inspect_role
from ingest.settings import Settings, load_settings
from ingest.web.browser import add_browser

log = logging.getLogger(__name__)

# keys of stac-fastapi-pgstac's extension maps (models/extensions.py); "collection_search" turns on
# /collections search, where "free_text" applies (its search map has no free-text entry)
ENABLED_EXTENSIONS = ("query", "sort", "fields", "filter", "pagination", "collection_search", "free_text")
THUMBNAIL_KEY = "thumbnail"  # ingest.stages.preview.ASSET_KEY (not imported: it pulls in rasterio)
APPLICATION_NAME = "ingest-serve"  # how the API's sessions show in pg_stat_activity

# stac-fastapi 7 announces sort v1.1.0 only; pystac-client 0.9 recognises v1.0.x only and warns that
# the server cannot sort. The `sortby` accepted here is v1.0.0's (GET "+a,-b", POST [{field, direction}],
# tested with pystac-client), so announcing v1.0.0 as well is true of this server.
SORT_V1_0 = {
    "search": "https://api.stacspec.org/v1.0.0/item-search#sort",
    "items": "https://api.stacspec.org/v1.0.0/ogcapi-features#sort",
}


class _InitOnly(BaseSettings):
    """Settings from the values passed to the constructor only: not the environment, not a .env file."""

    @classmethod
    def settings_customise_sources(
        cls,
        settings_cls: type[BaseSettings],
        init_settings: PydanticBaseSettingsSource,
        env_settings: PydanticBaseSettingsSource,
        dotenv_settings: PydanticBaseSettingsSource,
        file_secret_settings: PydanticBaseSettingsSource,
    ) -> tuple[PydanticBaseSettingsSource, ...]:
        return (init_settings,)


class _ApiSettings(_InitOnly, PgstacApiSettings):  # type: ignore[misc]
    pass


class _PostgresSettings(_InitOnly, PostgresSettings):  # type: ignore[misc]
    pass


@dataclass(frozen=True)
class GatewayView:
    """What served documents need of the gateway's configuration."""

    bucket: str
    discovery_urls: tuple[str, ...]
    only: tuple[str, ...] | None = None  # the gateway is off: it serves these assets (thumbnails) alone


_POLICIES_SQL = "SELECT id, content -> 'ingest:access' FROM pgstac.collections WHERE id = ANY($1::text[])"


def _protected(published: object) -> bool:
    try:
        doc = json.loads(published) if isinstance(published, str) else published
        return AccessPolicy.from_published(doc).policy != "public"
    except ValueError:
        return True  # unreadable: the gateway refuses it, so say a token is needed


class _Client(CoreCrudClient):  # type: ignore[misc]
    """stac-fastapi-pgstac's client, with the GET filter turned into CQL2 JSON by ``bounds.filter_tree``
    instead of cql2's ``Expr.validate()``: validate() takes ~10 MB per nesting level and hundreds of
    MB for small invalid expressions (``casei(id) = 1 = 2``: 266 MB, measured), and the guard has
    checked the filter already. pgstac refuses what is still wrong (ingest.api.errors: 400)."""

    limits = Limits()
    harvesting: dict[str, Any] = {}  # noqa: RUF012 - set per app on a subclass, as limits is
    gateway: GatewayView | None = None  # the asset gateway is on (INGEST_ASSET_GATEWAY)

    async def landing_page(self, **kwargs: Any) -> Any:
        page = await super().landing_page(**kwargs)
        page["ingest:harvesting"] = self.harvesting  # the rule that makes an `updated` watermark safe
        root = next((link["href"] for link in page.get("links", []) if link.get("rel") == "root"), None)
        if root:  # the same catalogue for people: STAC Browser on this API (ingest.web.browser)
            href = f"{root.rstrip('/')}/browser/"
            page["links"].append({"rel": "alternate", "type": "text/html", "title": "STAC Browser", "href": href})
        return page

    async def _search_base(self, search_request: Any, request: Request) -> Any:
        # every search funnels through here (item lists, /search GET and POST, an item by id)
        tree, query = getattr(search_request, "filter_expr", None), getattr(search_request, "query", None)
        run, keep = current_only(tree, by_ids=bool(search_request.ids), query=query)
        if run is not tree:
            search_request.filter_expr, search_request.filter_lang, search_request.query = run, "cql2-json", keep
        # pgstac reads per-search settings from `conf` (context, timing, base_url...): not the client's to set
        search_request.conf = None
        found = await super()._search_base(search_request, request=request)
        if self.gateway is not None:
            await self._through_gateway(found, request)
        return found

    async def _through_gateway(self, found: Any, request: Request) -> None:
        """Asset hrefs to the gateway, the Authentication extension's fields (ingest.access.hrefs)."""
        features = found.get("features") or []
        ids = sorted({str(f["collection"]) for f in features if isinstance(f, dict) and f.get("collection")})
        gw = self.gateway
        if not ids or gw is None:
            return
        if gw.only is not None and not any(hrefs.serves_any(f, gw.bucket, gw.only) for f in features):
            return  # the gateway is off and nothing here is an s3:// thumbnail: no policy to look up
        async with request.app.state.get_connection(request, "r") as conn:
            rows = await conn.fetch(_POLICIES_SQL, ids)
        protected = {r[0]: _protected(r[1]) for r in rows}
        base = str(request.base_url)
        found["features"] = [
            hrefs.rewrite_item(
                f, base_url=base, bucket=gw.bucket, protected=protected.get(f.get("collection"), True),
                discovery_urls=gw.discovery_urls, only=gw.only,
            )
            if isinstance(f, dict) else f
            for f in features
        ]  # fmt: skip

    async def get_collection(self, collection_id: str, request: Request, **kwargs: Any) -> Any:
        got = await super().get_collection(collection_id, request=request, **kwargs)
        return hrefs.describe_collection(got, self.gateway.discovery_urls) if self.gateway is not None else got

    async def all_collections(self, request: Request, *args: Any, **kwargs: Any) -> Any:
        got = await super().all_collections(request, *args, **kwargs)
        if self.gateway is not None and isinstance(got, dict):
            urls = self.gateway.discovery_urls
            got["collections"] = [hrefs.describe_collection(c, urls) for c in got.get("collections") or []]
        return got

    def _clean_search_args(
        self,
        base_args: dict[str, Any],
        filter_query: str | None = None,
        filter_lang: str | None = None,
        **kwargs: Any,
    ) -> dict[str, Any]:
        clean: dict[str, Any] = super()._clean_search_args(base_args, **kwargs)
        if filter_query:
            try:
                clean["filter"] = filter_tree(filter_query, filter_lang, self.limits)
            except Refused as refusal:
                raise HTTPException(refusal.status, refusal.message) from None
            clean["filter_lang"] = "cql2-json"
        return clean


def api_settings(settings: Settings) -> PgstacApiSettings:
    return _ApiSettings(
        stac_fastapi_title=settings.api_title,
        stac_fastapi_description=settings.api_description,
        stac_fastapi_landing_id=settings.api_landing_id,
        stac_fastapi_version=_version(),
        enabled_extensions=list(ENABLED_EXTENSIONS),
        enable_transactions_extensions=False,
        enable_catalogs_extension=False,
        cors_origins=list(settings.api_cors_origins),
        cors_methods=["GET", "POST", "OPTIONS"],  # POST: /search and the broker's POST /search
        cors_headers=["Content-Type", "Accept"],
        openapi_url="/api",
        docs_url="/api.html",
    )


def postgres_settings(settings: Settings) -> PostgresSettings:
    info = dsn.parse(require_api_dsn(settings), setting="INGEST_API_DATABASE_URL")
    if not info.user or info.password is None:
        raise ConfigError(f"INGEST_API_DATABASE_URL needs a user and a password: {info.where}")
    return _PostgresSettings(
        pguser=info.user,
        pgpassword=info.password,
        pghost=info.host,
        pgport=info.port,
        pgdatabase=info.dbname,
        server_settings=ServerSettings(
            search_path="pgstac,public",
            application_name=APPLICATION_NAME,
            statement_timeout=_ms(settings.api_statement_timeout_s),
            idle_in_transaction_session_timeout=_ms(settings.api_idle_in_transaction_timeout_s),
            # GUCs pgstac reads before its settings table: readonly = no row in pgstac.searches or
            # search_wheres per distinct search (a public API would let anyone fill the database);
            # context_stats_ttl 0 = never a count another session cached there (stale after any load)
            **{"pgstac.context": settings.api_context, "pgstac.readonly": "true", "pgstac.context_stats_ttl": "0"},
        ),
    )


def _ms(seconds: float) -> str:
    return f"{max(1, round(seconds * 1000))}ms"  # as ingest.reader sets them on the role


def require_api_dsn(settings: Settings) -> str:
    if settings.api_database_url is None:
        raise ConfigError(
            "no API database role configured: set INGEST_API_DATABASE_URL to a read-only role "
            "(`ingest db create-reader` makes it; `ingest stack up` does for the local stack)"
        )
    return settings.api_database_url.get_secret_value()


def _version() -> str:
    from importlib.metadata import PackageNotFoundError, version

    try:
        return version("eo-ingest")
    except PackageNotFoundError:
        return "0"


def build_app(settings: Settings) -> FastAPI:
    """The FastAPI application; connects to the database when it starts (lifespan), not here."""
    stac_settings = api_settings(settings)
    pg = postgres_settings(settings)

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        await connect_to_db(app, postgres_settings=pg, add_write_connection_pool=False)
        yield
        await close_db_connection(app)

    limits = Limits.from_settings(settings)
    # instantiate_api builds the client itself: the limits ride on a subclass
    # without the gateway, thumbnails still go through its route: an s3:// href is nothing a browser shows
    only = None if settings.asset_gateway else (THUMBNAIL_KEY,)
    gateway = GatewayView(settings.s3_bucket, tuple(i.discovery_url for i in settings.oidc_issuers), only)
    client = type("Client", (_Client,), {"limits": limits, "harvesting": harvesting(settings), "gateway": gateway})
    api = instantiate_api(
        client=client, extensions=_extensions(stac_settings), settings=stac_settings, lifespan=lifespan
    )
    # StacApi passes title and description to its client but not the landing id, which the client
    # took from stac-fastapi's module-level (environment) settings at import
    api.client.landing_page_id = settings.api_landing_id
    # stac-fastapi 7 stamps the landing page with stac-pydantic's 1.0.0; our collections and items are 1.1.0
    api.client.stac_version = STAC_VERSION
    app: FastAPI = api.app
    _add_healthz(app)
    add_deleted_items(app, settle_s=settings.api_deletions_settle_s)
    add_policies(app)
    add_gateway(app, settings, only=only)
    add_browser(app, settings)
    errors.install(app, statement_timeout_s=settings.api_statement_timeout_s)
    # added last, so outermost: it sees the request before stac-fastapi's middlewares and routes
    app.add_middleware(Guard, limits=limits, body_timeout_s=settings.api_body_timeout_s)
    http.configure(settings.api_header_timeout_s)
    return app


def harvesting(settings: Settings) -> dict[str, Any]:
    """What a harvester must know to copy the catalogue exactly (README: Harvesters)."""
    settle, deletions = settings.updated_settle_s, settings.api_deletions_settle_s
    return {
        "updated_settle_s": settle,
        "deleted_items_settle_s": deletions,
        "rule": (
            f"Search updated >= W - {settle:g} s, sorted by updated, where W is the newest updated seen so far:"
            f" an item is visible at most {settle:g} s after its updated. Deletions: GET /deleted-items?since="
            " the previous answer's until. Collections with versions answer current items only unless the"
            " filter names deprecated."
        ),
    }


def _extensions(stac_settings: PgstacApiSettings) -> Extensions:
    search_sort = SearchSortExtension(
        conformance_classes=[SortConformanceClasses.ITEM_SEARCH_SORT, SORT_V1_0["search"]]
    )
    items_sort = ItemCollectionSortExtension(
        conformance_classes=[SortConformanceClasses.FEATURES_SORT, SORT_V1_0["items"]]
    )
    return Extensions(
        search_map={"sort": search_sort}, item_collection_map={"sort": items_sort}, settings=stac_settings
    )


def _add_healthz(app: FastAPI) -> None:
    """``/healthz``: 200 when the database answers pgstac's version, 503 otherwise (stac-fastapi's own
    ``/_mgmt/health`` under the name probes and load balancers look for; ``/_mgmt/ping`` stays the
    liveness probe that does not touch the database)."""
    endpoint: Callable[[Request], Any] = health_check
    app.add_api_route(
        "/healthz", endpoint, methods=["GET"], name="Health (database)", response_model=None, include_in_schema=False
    )


def create_app() -> FastAPI:
    """Factory for ``uvicorn --factory`` (and for each worker process of ``ingest serve --workers``):
    settings from the environment, logging set up as the CLI does."""
    settings = load_settings()
    logs.setup(settings.log_level)
    return build_app(settings)


def check_database(settings: Settings) -> str:
    """Before listening: the role must be read-only and pgstac there. Returns a line for the log."""
    api_dsn = require_api_dsn(settings)
    role = inspect_role(api_dsn, timeout_s=settings.db_connect_timeout_s)
    check_serving_role(role)
    return f"as role {role.name} on {dsn.where(api_dsn)}, pgstac {role.pgstac_version}"


def tls_files(settings: Settings) -> tuple[Path, Path] | None:
    """The certificate and key to serve HTTPS with, checked before listening; None: plain HTTP."""
    cert, key = settings.api_tls_cert_file, settings.api_tls_key_file
    if cert is None and key is None:
        return None
    if cert is None or key is None:
        raise ConfigError("TLS needs both INGEST_API_TLS_CERT_FILE and INGEST_API_TLS_KEY_FILE")
    import ssl

    try:
        ssl.create_default_context(ssl.Purpose.CLIENT_AUTH).load_cert_chain(cert, key)
    except (OSError, ssl.SSLError) as exc:
        raise ConfigError(f"cannot serve TLS with {cert} and {key}: {exc.strerror or exc}") from None
    return cert, key


def _exit_cleanly(signum: int, frame: object) -> None:
    sys.exit(0)


def run(settings: Settings, *, host: str, port: int, workers: int = 2) -> None:
    """Serve until SIGTERM/SIGINT (uvicorn stops gracefully: running requests finish); exit 0 on SIGTERM.

    With several workers uvicorn's supervisor replaces one that dies, so a crash costs the requests
    that worker had, not the service."""
    import uvicorn

    # uvicorn shuts down on SIGTERM, restores the handler it found and raises the signal again; with
    # the default handler the process would then die of it (exit -15), where a supervisor expects the
    # 0 of a clean stop, as `ingest worker` gives
    signal.signal(signal.SIGTERM, _exit_cleanly)
    tls = tls_files(settings)
    where = check_database(settings)
    log.info("STAC API on %s://%s:%d %s", "https" if tls else "http", host, port, where)
    common: dict[str, Any] = {
        "host": host,
        "port": port,
        "log_config": None,  # keep our logging set-up (JSON lines or text), uvicorn's loggers included
        "proxy_headers": True,  # links follow X-Forwarded-Proto/Host of the HTTPS proxy in front
        "server_header": False,
        "http": http.HeaderTimeoutProtocol,
        "timeout_keep_alive": 5,
        # on SIGTERM running requests get 10 s; a connection that never finishes its TLS handshake (or its
        # request) must not hold the stop for ever
        "timeout_graceful_shutdown": 10,
        # a worker that stops answering its supervisor is killed and replaced (so is one that died)
        "timeout_worker_healthcheck": 10,
    }
    if tls is not None:  # a small site without a proxy: uvicorn terminates TLS (TLS 1.2+, Python's defaults)
        common.update(ssl_certfile=str(tls[0]), ssl_keyfile=str(tls[1]))
    if workers > 1:
        # several processes need an import string; each builds its app from the same settings, and
        # imports stac-fastapi, whose module-level settings warn unless these are in the environment
        os.environ.update(
            STAC_FASTAPI_TITLE=settings.api_title,
            STAC_FASTAPI_DESCRIPTION=settings.api_description,
            STAC_FASTAPI_LANDING_ID=settings.api_landing_id,
            STAC_FASTAPI_VERSION=_version(),
        )
        uvicorn.run("ingest.api.serve:create_app", factory=True, workers=workers, **common)
    else:
        uvicorn.run(build_app(settings), **common)
