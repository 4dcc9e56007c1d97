"""Process-wide settings: environment variables with the ``INGEST_`` prefix, then ``.env`` files.

Precedence (highest first): real environment, ``.env`` in the working directory, the connection file
that ``ingest stack up`` writes (``<stack_dir>/stack.env``), the defaults below. Secrets are
``SecretStr``: they print as ``**********`` and are only unwrapped at the adapter that needs them.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Annotated, Any, Literal
from urllib.parse import urlsplit

from pydantic import BaseModel, ConfigDict, Field, SecretStr, ValidationError, ValidationInfo, field_validator
from pydantic_settings import BaseSettings, NoDecode, SettingsConfigDict

from ingest import dsn
from ingest.errors import ConfigError

ENV_PREFIX = "INGEST_"
DEFAULT_STACK_DIR = Path(".stack")


def _http_url(v: str) -> str:
    parts = urlsplit(v)
    if parts.scheme not in ("https", "http") or not parts.hostname:
        raise ValueError(f"must be an http:// or https:// URL, got {v!r}")
    return v


class OidcIssuer(BaseModel):
    """An OpenID provider whose access tokens the asset gateway accepts (``ingest.access.tokens``)."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    discovery_url: str = Field(description="its .well-known/openid-configuration URL")
    audience: str = Field(min_length=1, description="the aud a token must carry for this site")

    @field_validator("discovery_url")
    @classmethod
    def _url(cls, v: str) -> str:
        return _http_url(v)


class RegisterTarget(BaseModel):
    """A federation catalogue that ``ingest register`` pushes our collections and items to
    (``ingest.federation``): a STAC API with the Transactions extension."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    name: str = Field(pattern=r"^[a-z0-9][a-z0-9_-]{0,62}$", description="names its cursor and its job")
    url: str = Field(description="the upstream STAC API's root")
    collections: list[str] = Field(default=[], description="the collections pushed; empty: every one")
    token: SecretStr | None = Field(default=None, description="a static bearer token")
    token_url: str | None = Field(default=None, description="OAuth2 token endpoint (client credentials)")
    client_id: str | None = None
    client_secret: SecretStr | None = None
    scope: str | None = None
    interval_s: float = Field(default=3600.0, ge=10, description="how often the scheduler pushes")
    batch: int = Field(default=100, ge=1, le=1000, description="new items per request (an ItemCollection)")

    @field_validator("url", "token_url")
    @classmethod
    def _url(cls, v: str | None) -> str | None:
        return None if v is None else _http_url(v).rstrip("/")

    def model_post_init(self, _context: Any) -> None:
        if self.token_url is not None and (self.client_id is None or self.client_secret is None):
            raise ValueError(f"target {self.name}: token_url needs client_id and client_secret")
        if self.token is not None and self.token_url is not None:
            raise ValueError(f"target {self.name}: a static token or client credentials, not both")


class Settings(BaseSettings):
    model_config = SettingsConfigDict(
        env_prefix=ENV_PREFIX,
        env_file=(str(DEFAULT_STACK_DIR / "stack.env"), ".env"),
        env_file_encoding="utf-8",
        extra="ignore",  # non-INGEST_ keys in a shared .env are not ours; unknown INGEST_ keys are checked below
        validate_default=True,
        hide_input_in_errors=True,  # a rejected DSN is a secret: pydantic's own error text must not show it
    )

    # --- database (PostgreSQL + PostGIS + pgstac; the ingest schema lives beside pgstac) ---
    database_url: SecretStr | None = Field(
        default=None,
        description="PostgreSQL DSN: a URL (postgresql://user:password@host:port/db) or libpq keywords "
        "(host=... port=... user=... password=... dbname=...). "
        "Written to <stack_dir>/stack.env by `ingest stack up` for the local stack.",
    )
    db_connect_timeout_s: int = Field(default=5, ge=1)

    # --- object store ---
    s3_endpoint_url: str | None = Field(
        default=None, description="S3 endpoint for non-AWS stores (SeaweedFS, MinIO, Ceph); empty for AWS."
    )
    s3_region: str = "us-east-1"
    s3_bucket: str = "eo-catalogue"
    s3_prefix: str = Field(default="ingest", description="Key prefix under which every object is written.")
    s3_access_key_id: SecretStr | None = None
    s3_secret_access_key: SecretStr | None = None
    s3_multipart_threshold_mib: int = Field(default=64, ge=5, description="Files at least this big are sent in parts.")
    s3_multipart_chunksize_mib: int = Field(default=32, ge=5, le=5120, description="Part size of multipart uploads.")
    s3_connect_timeout_s: float = Field(default=2.0, gt=0)
    s3_read_timeout_s: float = Field(default=30.0, gt=0)
    s3_max_attempts: int = Field(default=3, ge=1, description="Tries per S3 request (botocore standard retries).")
    public_base_url: str | None = Field(
        default=None, description="HTTPS base that serves the bucket; assets get HTTPS hrefs when set."
    )
    s3_public_endpoint_url: str | None = Field(
        default=None,
        description="S3 endpoint as clients reach it, written into items with s3:// hrefs (storage fields); "
        "empty = INGEST_S3_ENDPOINT_URL.",
    )
    s3_requester_pays: bool = Field(
        default=False, description="The bucket is requester-pays: items say so (storage:requester_pays)."
    )

    # --- provider (EODAG) ---
    provider: str = Field(default="local", description="Provider name used for every collection by default.")
    provider_url: str = Field(
        default="http://127.0.0.1:15800",
        description="Root of the provider's STAC API (the local provider by default); "
        "empty to use INGEST_PROVIDER as an EODAG built-in provider (cop_dataspace, creodias, ...).",
    )
    provider_mirror_url: str = Field(
        default="",
        description="For a built-in provider: an origin (scheme://host[:port]) that answers for every address of "
        "its EODAG configuration, paths kept (a site's mirror, or `ingest dev provider --flavour cdse`); "
        "empty: the real service.",
    )
    provider_username: SecretStr | None = Field(default=None, description="Credentials of a built-in provider.")
    provider_password: SecretStr | None = None
    provider_search_retries: int = Field(default=3, ge=0, description="Retries of a failing search request (5xx).")
    provider_timeout_s: float = Field(default=60.0, gt=0, description="Timeout of one search request.")

    # --- provider limits (issue 16) ---
    # held by the whole fleet through the database (ingest.quota): every worker on every machine shares them
    provider_max_downloads: int = Field(
        default=4, ge=1, le=1024, description="Downloads from one provider at once, across every worker and machine."
    )
    provider_max_requests_per_s: float = Field(
        default=10.0, ge=0, description="Requests to one provider per second, across the fleet; 0 = unlimited."
    )
    provider_slot_wait_s: float = Field(
        default=300.0,
        ge=0,
        description="How long a product waits for a download slot (or for a provider pause to end) before "
        "it gives up and is queued again.",
    )
    provider_pause_base_s: float = Field(
        default=10.0, gt=0, description="First fleet-wide pause after a 429/503 without Retry-After; doubles."
    )
    provider_pause_max_s: float = Field(
        default=900.0, gt=0, description="Longest fleet-wide pause after a 429/503 (Retry-After included)."
    )

    offline_recheck_s: float = Field(
        default=3600.0,
        gt=0,
        description="A product offline at the provider (its long-term archive) is looked at again this often.",
    )

    # --- download and unpack ---
    download_attempts: int = Field(default=3, ge=1, description="Tries per download within one processing attempt.")
    download_backoff_s: float = Field(default=2.0, ge=0, description="First wait between download tries; doubles.")
    unpack_max_bytes: int = Field(default=20 * 1024**3, ge=1, description="Refuse archives expanding beyond this.")
    unpack_max_ratio: float = Field(default=200.0, gt=1, description="Refuse archives expanding more than this.")

    # --- conversion and upload ---
    convert_workers: int | None = Field(
        default=None, ge=1, description="Bands converted at once per product; empty = one per CPU core."
    )
    upload_workers: int = Field(default=4, ge=1, description="Objects of a product uploaded at once.")

    # --- product retries (a failed product comes back after a growing delay, then stays failed) ---
    retry_max_attempts: int = Field(default=5, ge=1, description="Processing attempts before a product stays failed.")
    retry_base_delay_s: float = Field(default=60.0, ge=0, description="Delay before the 2nd attempt; doubles after.")

    # --- daemon: workers, scheduler, reconciler ---
    worker_concurrency: int = Field(default=1, ge=1, description="Products a worker process handles at once.")
    worker_heartbeat_s: float = Field(default=10.0, gt=0, description="How often a worker says it is alive.")
    stall_timeout_s: float = Field(
        default=60.0, gt=0, description="A running job whose worker is silent this long is given to another."
    )
    orphan_after_s: float = Field(
        default=3600.0,
        gt=0,
        description="A product in flight this long with no job is released (e.g. a CLI run killed).",
    )
    shutdown_grace_s: float = Field(
        default=30.0, ge=0, description="On SIGTERM, time to finish the current product before releasing it."
    )
    reconcile_interval_s: float = Field(default=60.0, gt=0, description="How often the scheduler reconciles.")
    retention_batch_size: int = Field(
        default=1000, ge=1, le=100_000, description="Products retired, unlisted and deleted per transaction."
    )
    leader_poll_s: float = Field(default=5.0, gt=0, description="How often a standby scheduler tries to take over.")

    # --- STAC API (`ingest serve`): read-only, as its own login role, never the migration superuser ---
    api_database_url: SecretStr | None = Field(
        default=None,
        description="DSN of the API's login role (granted pgstac_read only); `ingest db create-reader` makes "
        "the role from it. Written to <stack_dir>/stack.env by `ingest stack up` for the local stack.",
    )
    api_title: str = Field(default="eo-ingest STAC API", description="Title of the landing page.")
    api_description: str = Field(
        default="Copernicus Sentinel products catalogued by eo-ingest", description="Description of the landing page."
    )
    api_landing_id: str = Field(default="eo-ingest", description="Id of the landing page (catalog id).")
    api_deletions_settle_s: float = Field(
        default=60.0,
        ge=0,
        description="/deleted-items holds back deletions younger than this (see ingest.api.deletions).",
    )
    # --- federated access to assets (ingest.access) ---
    asset_gateway: bool = Field(
        default=False,
        description="ingest serve answers /collections/{c}/items/{i}/assets/{key} (token checked, 307 to a "
        "presigned URL) and served asset hrefs point there.",
    )
    asset_url_ttl_s: int = Field(default=300, ge=10, le=43200, description="Lifetime of the presigned URLs.")
    oidc_issuers: list[OidcIssuer] = Field(
        default=[], description='JSON list of {"discovery_url", "audience"}: the OpenID providers whose tokens count.'
    )
    oidc_entitlement_claim: str = Field(
        default="eduperson_entitlement", min_length=1, description="The claim an entitlements policy reads."
    )
    oidc_algorithms: Annotated[list[str], NoDecode] = Field(
        default=["RS256", "RS384", "RS512", "PS256", "PS384", "PS512", "ES256", "ES384"],
        description="Token signature algorithms accepted (asymmetric only): comma-separated.",
    )
    oidc_leeway_s: float = Field(default=30.0, ge=0, le=300, description="Clock skew allowed on exp/nbf/iat.")
    oidc_refresh_s: float = Field(
        default=300.0, ge=1, description="Discovery and JWKS are fetched again after this (at once on an unknown kid)."
    )
    # --- registration with federation catalogues (ingest.federation) ---
    register_targets: list[RegisterTarget] = Field(
        default=[],
        description='JSON list of {"name", "url", "token" or "token_url"+"client_id"+"client_secret", '
        '"collections", "interval_s"}: the upstream catalogues `ingest register` pushes to.',
    )
    browser_dir: Path | None = Field(
        default=None,
        description="The built STAC Browser that `ingest serve` serves at /browser/ (default: web/stac-browser/dist).",
    )
    api_public_url: str | None = Field(
        default=None,
        description="This STAC API's URL as the federation reaches it: the asset gateway's hrefs in pushed items.",
    )
    updated_settle_s: float = Field(
        default=60.0,
        ge=1,
        description="An item's load commits at most this long after the `updated` it carries (a later commit "
        "is stamped anew): harvesters re-read from their newest `updated` minus this (ingest.catalog.loading).",
    )
    api_cors_origins: Annotated[list[str], NoDecode] = Field(
        default=["*"], description="Origins browsers may call the API from: comma-separated, or * for any."
    )
    api_context: Literal["on", "auto", "off"] = Field(
        default="on",
        description="pgstac's context setting for the API's searches: on = exact numberMatched, "
        "auto = estimated above pgstac's cost thresholds, off = no numberMatched.",
    )

    # --- STAC API bounds: checked before any parser sees the request (ingest.api.bounds) ---
    api_workers: int = Field(
        default=2, ge=1, le=64, description="Worker processes of `ingest serve`; a dead one is replaced."
    )
    api_tls_cert_file: Path | None = Field(
        default=None, description="PEM certificate (chain) for `ingest serve` to terminate TLS itself; with the key."
    )
    api_tls_key_file: Path | None = Field(default=None, description="PEM private key of INGEST_API_TLS_CERT_FILE.")
    api_max_query_bytes: int = Field(default=16_384, ge=1024, description="Longest query string (414 above).")
    api_max_body_bytes: int = Field(default=1_048_576, ge=1024, description="Largest request body (413 above).")
    api_max_list_length: int = Field(
        default=250, ge=1, description="Most entries in ids, collections and fields of one request."
    )
    api_max_sortby: int = Field(default=8, ge=1, description="Most sort keys in one request.")
    api_max_filter_depth: int = Field(
        default=10, ge=1, le=100, description="Deepest nesting of operations in a CQL2 filter."
    )
    api_max_filter_nodes: int = Field(default=1000, ge=10, description="Most values and operations in a CQL2 filter.")
    api_max_geometry_vertices: int = Field(
        default=10_000, ge=4, description="Most vertices in an intersects geometry (or one in a filter)."
    )
    api_max_limit: int = Field(
        default=1000, ge=1, le=10_000, description="Largest page; a larger limit is served as this (OGC API)."
    )
    api_max_free_text_terms: int = Field(default=20, ge=1, description="Most words in a collection search q.")
    api_body_timeout_s: float = Field(
        default=10.0, gt=0, description="Time a client has to send a request body (408 after)."
    )
    api_header_timeout_s: float = Field(
        default=10.0, gt=0, description="Time a client has to send a request's headers (connection closed after)."
    )
    api_statement_timeout_s: float = Field(
        default=15.0, gt=0, description="statement_timeout of the API's database sessions (and its role)."
    )
    api_idle_in_transaction_timeout_s: float = Field(
        default=15.0, gt=0, description="idle_in_transaction_session_timeout of the API's sessions (and its role)."
    )

    # --- files ---
    collections_dir: Path = Path("collections")
    work_dir: Path = Path(".work")
    stack_dir: Path = DEFAULT_STACK_DIR

    # --- local stack ports (only used by `ingest stack`) ---
    stack_pg_port: int = Field(default=15432, ge=1024, le=65535)
    stack_s3_port: int = Field(default=15900, ge=1024, le=65535)

    log_level: str = "INFO"

    # --- operating: metrics and health endpoints of the long-running processes (scheduler, worker) ---
    metrics_port: int = Field(
        default=0,
        ge=0,
        le=65535,
        description="Port of /metrics, /livez and /readyz on `ingest scheduler`, `worker` and `run`; 0 = off.",
    )
    metrics_host: str = Field(
        default="127.0.0.1", description="Address the metrics endpoint listens on (0.0.0.0 in a container)."
    )
    dashboard_cache_s: float = Field(
        default=5.0,
        ge=0,
        description="The scheduler's /dashboard/data.json is built at most once per this many seconds.",
    )

    @field_validator("log_level")
    @classmethod
    def _known_level(cls, v: str) -> str:
        v = v.upper()
        if v not in {"DEBUG", "INFO", "WARNING", "ERROR"}:
            raise ValueError("must be one of DEBUG, INFO, WARNING, ERROR")
        return v

    @field_validator("api_cors_origins", "oidc_algorithms", mode="before")
    @classmethod
    def _comma_list(cls, v: object) -> object:
        # one environment variable, so a comma-separated list (a JSON list is accepted too)
        if isinstance(v, str):
            v = json.loads(v) if v.lstrip().startswith("[") else [o.strip() for o in v.split(",") if o.strip()]
        return v

    @field_validator("oidc_algorithms")
    @classmethod
    def _asymmetric_only(cls, v: list[str]) -> list[str]:
        # an HMAC "public key" is a shared secret anyone can read, and "none" is no signature at all
        known = {"RS256", "RS384", "RS512", "PS256", "PS384", "PS512", "ES256", "ES384", "ES512", "EdDSA"}
        if not v or any(a not in known for a in v):
            raise ValueError(f"must be a non-empty list of {', '.join(sorted(known))}")
        return v

    @field_validator("database_url", "api_database_url")
    @classmethod
    def _dsn(cls, v: SecretStr | None, info: ValidationInfo) -> SecretStr | None:
        # after SecretStr is made, so pydantic's own error text can only show it masked
        if v is None or not v.get_secret_value().strip():
            return None  # blank is unset, as in a .env line "INGEST_API_DATABASE_URL="
        try:
            dsn.parse(v.get_secret_value(), setting=ENV_PREFIX + str(info.field_name).upper())
        except ConfigError as exc:
            raise ValueError(exc.message) from None
        return v

    @field_validator("api_public_url")
    @classmethod
    def _public_url(cls, v: str | None) -> str | None:
        return _http_url(v).rstrip("/") if v else None

    @field_validator("register_targets")
    @classmethod
    def _unique_targets(cls, v: list[RegisterTarget]) -> list[RegisterTarget]:
        names = [t.name for t in v]
        if len(set(names)) != len(names):
            raise ValueError("target names must be unique")
        return v

    @field_validator("s3_public_endpoint_url")
    @classmethod
    def _endpoint_url(cls, v: str | None) -> str | None:
        # written into every item: a client must be able to use it as it is
        return _http_url(v).rstrip("/") if v else None

    def secrets(self, *, whole_dsns: bool = True) -> tuple[SecretStr | None, ...]:
        """Every configured secret (DSNs whole and their passwords alone, S3 keys, provider credentials):
        never to be printed. A message may quote a password without its DSN (libpq's keyword form
        spreads it over the string), hence the passwords alone; ``whole_dsns=False`` for the log filter,
        where the rest of a DSN is what an operator needs to read."""
        dsns = (self.database_url, self.api_database_url)
        passwords = (dsn.password_of(d.get_secret_value()) if d is not None else None for d in dsns)
        return (
            *(dsns if whole_dsns else ()),
            *(SecretStr(p) if p else None for p in passwords),
            self.s3_access_key_id,
            self.s3_secret_access_key,
            self.provider_username,
            self.provider_password,
            *(t.token for t in self.register_targets),
            *(t.client_secret for t in self.register_targets),
        )

    def require_database_url(self) -> str:
        if self.database_url is None:
            raise ConfigError(
                "no database configured: run `ingest stack up` for the local stack or set INGEST_DATABASE_URL"
            )
        return self.database_url.get_secret_value()


def _unknown_env_settings(environ: dict[str, str]) -> list[str]:
    """pydantic-settings silently ignores unknown prefixed variables; a typo deserves an error."""
    known = {ENV_PREFIX + name.upper() for name in Settings.model_fields}
    return sorted(k for k in environ if k.startswith(ENV_PREFIX) and k not in known)


def load_settings(**overrides: Any) -> Settings:
    """Build Settings, turning every validation problem into one ConfigError line."""
    from dotenv import dotenv_values

    unknown = _unknown_env_settings(dict(os.environ))
    if unknown:
        raise ConfigError(f"unknown setting(s) in the environment: {', '.join(unknown)}")
    # the stack's connection file follows INGEST_STACK_DIR; .env (later) wins over it
    stack_dir = Path(os.environ.get(ENV_PREFIX + "STACK_DIR", str(DEFAULT_STACK_DIR)))
    env_files = (str(stack_dir / "stack.env"), ".env")
    for f in env_files:
        if Path(f).is_file():
            values = {k: v or "" for k, v in dotenv_values(f).items()}
            unknown = _unknown_env_settings(values)
            if unknown:
                raise ConfigError(f"unknown setting(s) in {f}: {', '.join(unknown)}")
    try:
        return Settings(_env_file=env_files, **overrides)  # type: ignore[call-arg]
    except ValidationError as exc:
        problems = []
        for err in exc.errors():
            loc = ".".join(str(p) for p in err["loc"]) or "?"
            name = ENV_PREFIX + loc.upper() if err["type"] != "extra_forbidden" else loc
            msg = "unknown setting" if err["type"] == "extra_forbidden" else err["msg"]
            msg = msg.removeprefix("Value error, ")  # our validators' own words, never the value
            problems.append(msg if msg.startswith(name + ": ") else f"{name}: {msg}")
        raise ConfigError("invalid settings: " + "; ".join(problems)) from None


def scrub(text: str, *secrets: SecretStr | str | None) -> str:
    """Remove every given secret from a message (library errors sometimes echo DSNs or passwords)."""
    values = {s.get_secret_value() if isinstance(s, SecretStr) else s for s in secrets if s is not None}
    for value in sorted(values - {""}, key=len, reverse=True):  # a DSN before the password inside it
        text = text.replace(value, "***")
    return text
