"""The provider, through EODAG: the only module that imports eodag. Errors leave as IngestErrors.

Two kinds of provider, chosen by configuration alone:

* a STAC API (the embedded local provider, or a site's own catalogue): ``INGEST_PROVIDER_URL`` is
  set; we write an EODAG provider file for it (``StacSearch`` + ``HTTPDownload``) into our work
  directory and load *only* that file, so EODAG never reaches for any other network address;
* an EODAG built-in provider (``cop_dataspace``, ``creodias``, ...): ``INGEST_PROVIDER_URL`` is
  empty; EODAG's own configuration is used, white-listed to that one provider, with credentials
  from ``INGEST_PROVIDER_USERNAME`` / ``INGEST_PROVIDER_PASSWORD``.

Downloads are never extracted by EODAG (``extract: false``): we verify the archive's checksum and
unpack it ourselves, safely (EODAG neither verifies nor refuses hostile paths). ``stream`` hands the
archive's bytes over as EODAG's download plugin receives them (``EOProduct.stream_download``), so
acquisition unpacks and verifies while the download runs instead of writing the zip first;
``download`` writes the zip to disk (for archives that cannot be unpacked in one pass).
"""

from __future__ import annotations

import json
import logging
import os
import shutil
import tempfile
import threading
import urllib.error
from collections.abc import Callable, Iterable, Iterator
from contextlib import contextmanager
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import yaml

from ingest.adapters.eodag_config import CHECKSUMS, builtin_overrides, preferred_checksum, stac_provider_config
from ingest.errors import (
    ConfigError,
    InvalidProduct,
    ProductGone,
    ProductOffline,
    ProviderCredentialsRefused,
    ProviderThrottled,
    ProviderUnavailable,
    SearchIncomplete,
    TransientProductError,
)
from ingest.settings import Settings, scrub
from ingest.stages.artifacts import ArchiveStream, ProviderProduct

log = logging.getLogger(__name__)

PAGE_SIZE = 100
STREAM_CHUNK = 1 << 20  # bytes per piece of a streamed download

# EODAG reads these at gateway construction; together they keep it off the network (DESIGN.md)
_EODAG_ENV_KEYS = (
    "EODAG_CFG_DIR",
    "EODAG_PROVIDERS_CFG_DIR",
    "EODAG_STRICT_COLLECTIONS",
    "EODAG_EXT_COLLECTIONS_CFG_URI",
    "EODAG_PROVIDERS_WHITELIST",
)


def _parse_time(value: Any) -> datetime | None:
    if not value or not isinstance(value, str):
        return None
    try:
        dt = datetime.fromisoformat(value.replace("Z", "+00:00"))
    except ValueError:
        return None
    return dt if dt.tzinfo else dt.replace(tzinfo=UTC)


def _to_int(value: Any) -> int | None:
    try:
        return int(value) if value not in (None, "") else None
    except (TypeError, ValueError):
        return None


def packaged_config(name: str) -> dict[str, Any]:
    """A built-in provider's configuration as EODAG ships it (empty for a name it does not know)."""
    from importlib import resources

    path = resources.files("eodag") / "resources" / "providers" / f"{name}.yml"
    if not path.is_file():
        return {}
    doc = yaml.safe_load(path.read_text())
    return doc.get(name, {}) if isinstance(doc, dict) else {}


_BUILD_LOCK = threading.Lock()  # EODAG reads its configuration from os.environ: one gateway built at a time


class EodagProvider:
    """One configured provider, shared by the threads of a process: one gateway, so one login and one
    token, refreshed by EODAG before it expires (CDSE counts every new login as a session, and a
    fleet that logs in per download is refused). EODAG's auth plugin has no lock of its own: the
    first transfer signs in alone, the others wait for its token."""

    def __init__(self, settings: Settings, *, collections: dict[str, str] | None = None) -> None:
        self.name = settings.provider
        self.url = settings.provider_url
        self._settings = settings
        self._collections = dict(collections or {})
        self._cfg_root = settings.work_dir.resolve() / "eodag"
        self._dag: Any = None
        self._signing_in = threading.Lock()
        self._signed_in = False
        # called before every search request: the fleet's request rate (ingest.quota), set by the composer
        self.before_request: Callable[[], object] = lambda: None
        # told of a search refused with 429/503 (status, Retry-After, cause): the fleet's pause
        self.refused: Callable[[int, str | None, str], object] = lambda _status, _after, _cause: None

    # ------------------------------------------------------------------ set-up

    def _environment(self) -> dict[str, str]:
        cfg = self._cfg_root / self.name
        (cfg / "user").mkdir(parents=True, exist_ok=True)
        ext = cfg / "ext_collections.json"
        ext.write_text("{}")  # external collection list: a local, empty file, never the web
        env = {
            "EODAG_CFG_DIR": str(cfg / "user"),
            "EODAG_STRICT_COLLECTIONS": "true",
            "EODAG_EXT_COLLECTIONS_CFG_URI": str(ext),
        }
        # our user configuration, always: without one EODAG copies its template, which names every provider
        (cfg / "user" / "eodag.yml").write_text("{}\n")
        if self.url:
            providers = cfg / "providers"
            providers.mkdir(exist_ok=True)
            for stale in providers.glob("*.yml"):
                stale.unlink()
            doc = stac_provider_config(
                self.name,
                self.url,
                self._collections,
                retries=self._settings.provider_search_retries,
                timeout_s=self._settings.provider_timeout_s,
            )
            (providers / f"{self.name}.yml").write_text(yaml.safe_dump(doc, sort_keys=False))
            env["EODAG_PROVIDERS_CFG_DIR"] = str(providers)
        else:
            env["EODAG_PROVIDERS_WHITELIST"] = json.dumps([self.name])
            overrides = builtin_overrides(self.name, packaged_config(self.name), self._settings.provider_mirror_url)
            (cfg / "user" / "eodag.yml").write_text(yaml.safe_dump({self.name: overrides}, sort_keys=False))
            prefix = f"EODAG__{self.name.upper()}__AUTH__CREDENTIALS__"
            user, password = self._settings.provider_username, self._settings.provider_password
            if user is not None:
                env[prefix + "USERNAME"] = user.get_secret_value()
            if password is not None:
                env[prefix + "PASSWORD"] = password.get_secret_value()
        return env

    def _gateway(self) -> Any:
        if self._dag is not None:
            return self._dag
        with _BUILD_LOCK:
            if self._dag is None:
                self._dag = self._build()
        return self._dag

    @contextmanager
    def _first_signs_in(self) -> Iterator[None]:
        """Around the start of a transfer: the first one holds the others back until it has a token."""
        if self._signed_in:
            yield
            return
        with self._signing_in:
            yield
            self._signed_in = True

    def _build(self) -> Any:
        env = self._environment()
        for key in _EODAG_ENV_KEYS:
            os.environ.pop(key, None)
        os.environ.update(env)
        try:
            from eodag import EODataAccessGateway

            dag = EODataAccessGateway()
        except Exception as exc:  # EODAG raises many types while reading its configuration
            raise ConfigError(f"provider {self.name!r}: EODAG configuration failed: {self._clean(exc)}") from None
        if self.name not in dag.providers:
            raise ConfigError(
                f"provider {self.name!r} is not available in EODAG (set INGEST_PROVIDER_URL for a STAC API, "
                "or INGEST_PROVIDER to an EODAG provider such as cop_dataspace)"
            )
        return dag

    def _clean(self, exc: BaseException) -> str:
        text = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        return scrub(text, self._settings.provider_password)

    def _where(self) -> str:
        return f"provider {self.name!r}" + (f" at {self.url}" if self.url else "")

    def probe_url(self) -> str:
        """The address `ingest healthcheck` asks to see the provider answer: the STAC API root, or the
        search endpoint EODAG's configuration names for a built-in provider (no search is run)."""
        if self.url:
            return self.url
        provider = self._gateway().providers[self.name]
        for config in (getattr(provider, "search_config", None), getattr(provider, "api_config", None)):
            endpoint = getattr(config, "api_endpoint", None)
            if isinstance(endpoint, str) and endpoint.startswith(("http://", "https://")):
                return endpoint
        url = getattr(provider, "url", None)
        if isinstance(url, str) and url:
            return url
        raise ConfigError(f"provider {self.name!r}: EODAG's configuration names no endpoint to check")

    # ------------------------------------------------------------------ search

    def search(
        self,
        collection: str,
        *,
        published_after: datetime | None = None,
        published_before: datetime | None = None,
        start: datetime | None = None,
        end: datetime | None = None,
        bbox: tuple[float, float, float, float] | None = None,
        geometry: dict[str, Any] | None = None,
        filters: dict[str, Any] | None = None,
        page_size: int = PAGE_SIZE,
    ) -> Iterator[list[ProviderProduct]]:
        """Pages of products, oldest publication first; a failing provider raises ProviderUnavailable."""
        from eodag.utils.exceptions import EodagError

        dag = self._gateway()
        kwargs: dict[str, Any] = {"collection": collection, "provider": self.name, **(filters or {})}
        if published_after is not None:
            kwargs["published_after"] = published_after.astimezone(UTC).isoformat()
        if published_before is not None:
            kwargs["published_before"] = published_before.astimezone(UTC).isoformat()
        if start is not None:
            # OData's filter is "ContentDate/End gt start": strictly after, so a product sensed at the
            # instant a window (a backfill chunk) begins would be in no window. 1 ms earlier, it is in
            # this one (and perhaps the previous one too: recording a product twice is a no-op)
            edge = start - timedelta(milliseconds=1) if not self.url else start
            kwargs["start"] = edge.astimezone(UTC).isoformat()
        if end is not None:
            kwargs["end"] = end.astimezone(UTC).isoformat()
        if geometry is not None:
            kwargs["geom"] = geometry
        elif bbox is not None:
            kwargs["geom"] = list(bbox)
        try:
            self.before_request()
            # OData pages no further than $skip 10,000 and then ends as if nothing were left: the count
            # tells a search that stopped short from one that is complete
            counted = {"count": True} if not self.url else {}
            first = dag.search(
                limit=page_size, raise_errors=True, sort_by=[("published", "ASC")], validate=False,
                **counted, **kwargs,
            )  # fmt: skip
            seen = len(first)
            yield self._page(first)
            pages = iter(first.next_page(update=False))  # lazy: each next() asks the provider for a page
            while True:
                self.before_request()
                page = next(pages, None)
                if page is None:
                    break
                seen += len(page)
                yield self._page(page)
        except EodagError as exc:
            status = _http_status(exc)
            said = f"search on {self._where()} for {collection} failed: {self._clean(exc)}"
            if status in (429, 503):  # the provider's word for "too much": the fleet pauses it
                self.refused(status, _retry_after(exc), said)
            raise ProviderUnavailable(said) from None
        except OSError as exc:  # requests' connection errors are OSErrors
            raise ProviderUnavailable(f"{self._where()} unreachable: {self._clean(exc)}") from None
        matched = _to_int(getattr(first, "number_matched", None))
        if matched is not None and seen < matched:
            raise SearchIncomplete(
                f"search on {self._where()} for {collection} stopped at {seen:,} of {matched:,} products: the "
                "provider pages no further; search a shorter window (a backfill's --chunk)"
            )

    def _page(self, result: Any) -> list[ProviderProduct]:
        out = []
        for p in result:
            props = p.properties
            geometry = p.geometry.__geo_interface__ if getattr(p, "geometry", None) is not None else None
            out.append(
                ProviderProduct(
                    id=str(props.get("title") or props["id"]),
                    collection=str(p.collection),
                    provider=self.name,
                    download_url=props.get("eodag:download_link") or None,
                    checksum=preferred_checksum(props.get(CHECKSUMS)) or props.get("file:checksum") or None,
                    size=_to_int(props.get("file:size")),
                    published=_parse_time(props.get("published")),
                    sensing=_parse_time(props.get("datetime") or props.get("start_datetime")),
                    geometry=json.loads(json.dumps(geometry)) if geometry else None,  # tuples -> lists
                    online=props.get("order:status") != "orderable",  # OData's Online: false
                )
            )
        return out

    # ------------------------------------------------------------------ download

    def _online(self, product: ProviderProduct) -> ProviderProduct:
        """``product`` when it is online; one known offline is looked up again first (it may be back
        from the long-term archive). Raises ProductOffline while it is not."""
        if product.online:
            return product
        from eodag.utils.exceptions import EodagError

        dag = self._gateway()
        try:
            result = dag.search(
                id=product.id, collection=product.collection, provider=self.name, raise_errors=True, validate=False
            )
        except EodagError as exc:
            raise TransientProductError(
                f"looking up the product failed: {self._clean(exc)}", product_id=product.id
            ) from None
        except OSError as exc:
            raise TransientProductError(
                f"{self._where()} unreachable: {self._clean(exc)}", product_id=product.id
            ) from None
        now = next((p for p in self._page(result) if p.id == product.id), None)
        if now is None:
            raise ProductGone("the provider no longer lists this product", product_id=product.id)
        if not now.online:
            raise ProductOffline("offline at the provider (long-term archive)", product_id=product.id)
        return now

    def _eo_product(self, product: ProviderProduct) -> Any:
        from eodag.api.product import EOProduct

        if not product.download_url:
            raise InvalidProduct("the provider gave no download link", product_id=product.id)
        properties: dict[str, Any] = {
            "id": product.id,
            "title": product.id,
            "eodag:download_link": product.download_url,
            "geometry": product.geometry or "POLYGON((180 -90, 180 90, -180 90, -180 -90, 180 -90))",
        }
        return EOProduct(self.name, properties, collection=product.collection)

    def download(self, product: ProviderProduct, dest_dir: Path) -> Path:
        """Download the product's archive into ``dest_dir``; returns the archive path.

        Raises TransientProductError for what may pass (5xx, truncated body, timeout, also 401/403:
        credentials get fixed) and ProductGone when the provider no longer has the product (404/410).
        """
        from eodag.utils import ProgressCallback
        from eodag.utils.exceptions import EodagError

        eo = self._eo_product(self._online(product))
        dag = self._gateway()
        dest_dir.mkdir(parents=True, exist_ok=True)
        # EODAG keeps a record of finished downloads and would skip a "known" product: a fresh
        # directory per attempt means every attempt really downloads, and nothing half-written stays
        scratch = Path(tempfile.mkdtemp(prefix=".download-", dir=dest_dir))
        try:
            try:
                with self._first_signs_in():
                    path = Path(
                        dag.download(
                            eo,
                            progress_callback=ProgressCallback(disable=True),
                            output_dir=str(scratch),
                            extract=False,
                            wait=0.001,
                            timeout=0,
                        )
                    )
            except EodagError as exc:
                raise self._download_error(product, exc) from None
            except OSError as exc:  # requests: ChunkedEncodingError, ConnectionError, ...
                raise TransientProductError(
                    f"download interrupted: {self._clean(exc)}", product_id=product.id
                ) from None
            archive = path if path.is_file() else next(iter(sorted(path.rglob("*.zip"))), None)
            if archive is None:
                raise InvalidProduct("the provider did not send a zip archive", product_id=product.id)
            final = dest_dir / f"{product.id}.zip"
            os.replace(archive, final)
            return final
        finally:
            shutil.rmtree(scratch, ignore_errors=True)

    @contextmanager
    def stream(self, product: ProviderProduct) -> Iterator[ArchiveStream]:
        """The product's archive as EODAG's download plugin receives it (nothing is written to disk).

        The same HTTP request as ``download`` (EODAG's ``HTTPDownload``, through
        ``EOProduct.stream_download``), with the same errors: TransientProductError for what may pass,
        also while iterating (a body cut short), ProductGone for 404/410. The connection is closed
        when the block ends, read to the end or not.
        """
        from eodag.utils.exceptions import EodagError

        eo = self._eo_product(self._online(product))
        dag = self._gateway()
        try:
            with self._first_signs_in():
                dag._setup_downloader(eo)  # what dag.download() does first: the provider's download plugin
                response = eo.stream_download(wait=0.001, timeout=0)
        except EodagError as exc:
            raise self._download_error(product, exc) from None
        except OSError as exc:  # requests' connection errors
            raise TransientProductError(f"download interrupted: {self._clean(exc)}", product_id=product.id) from None
        raw = getattr(eo, "_stream", None)  # the requests response EODAG streams from
        try:
            yield ArchiveStream(self._chunks(product, response.content, raw), _to_int(getattr(response, "size", None)))
        finally:
            if raw is not None:
                raw.close()

    def _chunks(self, product: ProviderProduct, chunks: Iterable[bytes], raw: Any) -> Iterator[bytes]:
        from eodag.utils.exceptions import EodagError

        try:
            if hasattr(raw, "iter_content"):
                # EODAG iterates its response 64 KiB at a time: for 1 GB that loop costs more CPU than
                # the writes (measured 0.55 s against 0.2 s in 1 MiB pieces, on a 2-core machine where
                # the digests need the other core). After EODAG's first piece (read when it checked the
                # response), the rest of the same response is read in 1 MiB pieces.
                it = iter(chunks)
                yield next(it)
                yield from raw.iter_content(chunk_size=STREAM_CHUNK)
            else:
                yield from chunks
        except StopIteration:
            return
        except EodagError as exc:
            raise self._download_error(product, exc) from None
        except OSError as exc:  # requests: ChunkedEncodingError (body cut short), ConnectionError, timeouts
            raise TransientProductError(f"download interrupted: {self._clean(exc)}", product_id=product.id) from None

    def _download_error(self, product: ProviderProduct, exc: BaseException) -> Exception:
        from eodag.utils.exceptions import AuthenticationError, MisconfiguredError, NotAvailableError

        if isinstance(exc, NotAvailableError):  # EODAG's word for a product it must order first
            return ProductOffline("offline at the provider (long-term archive)", product_id=product.id)

        status, retry_after = _http_status(exc), _retry_after(exc)
        if isinstance(exc, MisconfiguredError):  # EODAG checks the credentials are there before signing in
            return ProviderCredentialsRefused(
                f"{self._where()} needs credentials: {self._clean(exc)} (INGEST_PROVIDER_USERNAME and "
                "INGEST_PROVIDER_PASSWORD)",
                status=401, retry_after=None, product_id=product.id,
            )  # fmt: skip
        if isinstance(exc, AuthenticationError):
            if status is None or status >= 500 or status == 429:  # the sign-in service is down or busy
                cause = f"HTTP {status}" if status else self._clean(exc)
                return ProviderThrottled(
                    f"{self._where()}: its sign-in did not answer ({cause})",
                    status=status or 503, retry_after=retry_after, product_id=product.id,
                )  # fmt: skip
            return ProviderCredentialsRefused(
                f"{self._where()} refused the credentials (HTTP {status} at sign-in): check "
                "INGEST_PROVIDER_USERNAME and INGEST_PROVIDER_PASSWORD",
                status=status, retry_after=None, product_id=product.id,
            )  # fmt: skip
        if status in (429, 503):
            after = f" (Retry-After: {retry_after})" if retry_after else ""
            return ProviderThrottled(
                f"{self._where()} answered HTTP {status} on download{after}",
                status=status, retry_after=retry_after, product_id=product.id,
            )  # fmt: skip
        if status in (404, 410):
            return ProductGone(
                f"the provider no longer has this product (HTTP {status} on download)", product_id=product.id
            )
        cause = f"HTTP {status}" if status else self._clean(exc)
        return TransientProductError(f"download failed: {cause}", product_id=product.id)


def _retry_after(exc: BaseException) -> str | None:
    seen: BaseException | None = exc
    while seen is not None:  # a requests response's headers, or a urllib error's own
        for holder in (getattr(seen, "response", None), seen if isinstance(seen, urllib.error.HTTPError) else None):
            value = getattr(holder, "headers", None) and holder.headers.get("Retry-After")  # type: ignore[union-attr]
            if value:
                return str(value)[:64]
        seen = seen.__cause__ or seen.__context__
    return None


def _http_status(exc: BaseException) -> int | None:
    """The HTTP status behind an EODAG error: its own (RequestError), a requests response's, or a
    urllib error's (EODAG searches OData through urllib)."""
    seen: BaseException | None = exc
    while seen is not None:
        for code in (getattr(seen, "status_code", None), getattr(getattr(seen, "response", None), "status_code", None)):
            if isinstance(code, int):
                return code
        if isinstance(seen, urllib.error.HTTPError):
            return seen.code
        seen = seen.__cause__ or seen.__context__
    return None
