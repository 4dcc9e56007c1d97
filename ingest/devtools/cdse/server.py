"""The CDSE-like provider server: the local provider's catalogue root, spoken as the Copernicus Data Space.

One origin answers for CDSE's three hosts, paths kept, so that EODAG's built-in ``cop_dataspace``
provider works unchanged once its URLs point here (:mod:`ingest.devtools.cdse.eodag_config`)::

    GET  /odata/v1/Products?$filter=...&$orderby=...&$top=...&$skip=...&$count=True&$expand=...
    GET  /odata/v1/Products(<Id>)                       one product
    GET|HEAD /odata/v1/Products(<Id>)/$value            the zip (token as ?token= or Bearer; Range)
    GET  /auth/realms/CDSE/.well-known/openid-configuration
    GET  /auth/realms/CDSE/protocol/openid-connect/certs
    POST /auth/realms/CDSE/protocol/openid-connect/token
    GET|PUT|PATCH|DELETE /_faults    GET|DELETE /_stats   (as the local provider's, plus "cdse" counters)

It is the local provider (:class:`~ingest.devtools.provider.ProviderServer`: index reloading, fault
knobs, request counters, Range downloads) with another handler. ``/_stats`` adds the downloads
running at once and their high-water marks, overall and per user, and the sessions and grants of
the OpenID provider. Run it alone with ``python -m ingest.devtools.cdse --root DIR``.
"""

from __future__ import annotations

import gc
import logging
import re
import threading
import uuid
from collections import OrderedDict
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any, Self, cast
from urllib.parse import parse_qsl, urlsplit

from ingest.devtools.catalog import ProviderEntry, gc_paused
from ingest.devtools.cdse import odata
from ingest.devtools.cdse.catalogue import FileFacts, product_name, product_uuid, to_product
from ingest.devtools.cdse.faults import CdseFaults, FaultCounters
from ingest.devtools.cdse.files import FileFactsCache
from ingest.devtools.cdse.limits import TOO_MANY_BODY, DownloadSlots, LimitExceeded
from ingest.devtools.cdse.oidc import REALM_PATH, InvalidToken, OpenIdProvider, TokenRequestError
from ingest.devtools.provider import Faults, ProviderServer, _Handler

logger = logging.getLogger(__name__)

PRODUCTS_PATH = "/odata/v1/Products"
_PRODUCT_RE = re.compile(r"^/odata/v1/Products\((?P<id>[^)/]*)\)(?P<value>/\$value)?$")
_SEARCH_CACHE = 64

# what CDSE's download service answers for a token it refuses: code and message as seen in the field
# (DAT-ZIP-604, -109, -609); no code is known for a bad signature
_TOKEN_ERRORS: dict[str, dict[str, str]] = {
    "missing": {"code": "DAT-ZIP-604", "message": "Token not found"},
    "expired": {"code": "DAT-ZIP-109", "message": "Token is expired"},
    "audience": {"code": "DAT-ZIP-609", "message": "Token audience not allowed"},
}


@dataclass(frozen=True)
class _Catalogue:
    """The products of one index generation (and one set of offline products and known files)."""

    key: tuple[Any, ...]
    products: Sequence[odata.Product]
    by_id: Mapping[str, odata.Product]  # OData Id -> product
    entries: Mapping[str, ProviderEntry]  # catalogue id -> entry


class CdseServer(ProviderServer):
    """``with CdseServer(root) as s: s.url``: the catalogue at ``root`` served as CDSE serves its own.

    ``users`` maps usernames to passwords (default: one user, see ``oidc.DEFAULT_USERS``); token
    lifetimes, the session limit per user and the concurrent downloads per user are CDSE's by default.
    """

    def __init__(
        self,
        root: Path,
        host: str = "127.0.0.1",
        port: int = 0,
        faults: Faults | None = None,
        *,
        public_url: str | None = None,
        users: Mapping[str, str] | None = None,
        access_lifetime_s: float = 600.0,
        refresh_lifetime_s: float = 3600.0,
        max_sessions: int = 100,
        max_downloads: int = 4,
        warm: bool = True,
    ) -> None:
        # before the base class's __init__, which calls set_faults
        self._counters = FaultCounters(CdseFaults())
        self.oidc = OpenIdProvider(
            users, access_lifetime_s=access_lifetime_s, refresh_lifetime_s=refresh_lifetime_s, max_sessions=max_sessions
        )
        self.slots = DownloadSlots(max_downloads)
        self.files = FileFactsCache(root)
        self._catalogue_lock = threading.Lock()
        self._catalogue: _Catalogue | None = None
        self._built: dict[str, tuple[ProviderEntry, FileFacts | None, odata.Product]] = {}
        self._searches: OrderedDict[tuple[Any, ...], list[odata.Product]] = OrderedDict()
        self._warm = warm
        self._stop_warming = threading.Event()
        self._warmer: threading.Thread | None = None
        super().__init__(root, host, port, faults, public_url=public_url, handler=_CdseHandler)

    # -- lifecycle: a background thread hashes the product files ahead of requests ------------

    def start(self) -> Self:
        super().start()
        self._start_warming()
        return self

    def serve_forever(self) -> None:
        self._start_warming()
        super().serve_forever()

    def stop(self) -> None:
        self._stop_warming.set()
        super().stop()
        if self._warmer is not None:
            self._warmer.join(timeout=10)
            self._warmer = None

    def _start_warming(self) -> None:
        if self._warm and self._warmer is None:
            self._warmer = threading.Thread(target=self._warm_loop, name=f"cdse-hash-{self.port}", daemon=True)
            self._warmer.start()

    def _warm_loop(self) -> None:
        done = -1
        while not self._stop_warming.is_set():
            snap = self.index.snapshot()
            if snap.generation != done:
                self.files.warm([e.id for e in reversed(snap.entries)], self._stop_warming)  # newest first
                done = snap.generation
            self._stop_warming.wait(1.0)

    # -- faults ----------------------------------------------------------------------------

    @property
    def faults(self) -> CdseFaults:
        f = super().faults
        return f if isinstance(f, CdseFaults) else CdseFaults.from_dict(f.to_dict())

    def set_faults(self, faults: Faults) -> None:
        """Replace the fault knobs (a plain :class:`Faults` is taken as CDSE faults with defaults)."""
        cdse = faults if isinstance(faults, CdseFaults) else CdseFaults.from_dict(faults.to_dict())
        super().set_faults(cdse)
        self._counters = FaultCounters(CdseFaults.from_dict(cdse.to_dict()))

    @property
    def counters(self) -> FaultCounters:
        return self._counters

    def _product_fault(self, product_id: str) -> str | None:
        """Per-product fault of a catalogue entry, keyed by its id, OData Id or Name."""
        name = product_name(product_id)
        with self._fault_lock:
            products = self._faults.products
            if not products:
                return None
            return products.get(product_id) or products.get(name) or products.get(product_uuid(name))

    # -- the catalogue as OData products -----------------------------------------------------

    def catalogue(self) -> _Catalogue:
        """The products now: rebuilt when the index, the offline set or the known files change."""
        snap = self.index.snapshot()
        with self._fault_lock:  # not self.faults: that copies every knob
            offline = frozenset(getattr(self._faults, "offline", ()))
        key = (snap.generation, offline, self.files.computed)
        with self._catalogue_lock:
            if self._catalogue is not None and self._catalogue.key == key:
                return self._catalogue
            with gc_paused():  # ~15 objects a product: the collector would run thousands of times
                built = {entry.id: self._build(entry, offline) for entry in snap.entries}
                products = [b[2] for b in built.values()]
                self._built = built
                self._catalogue = _Catalogue(
                    key=key,
                    products=products,
                    by_id={p.id: p for p in products},
                    entries={e.id: e for e in snap.entries},
                )
            # long-lived from here: out of the collector's sight, or its next full pass walks them all
            # (2 s for 60,000 products, in the middle of a request); freed by reference counting as ever
            gc.freeze()
            self._searches.clear()
            return self._catalogue

    def _build(
        self, entry: ProviderEntry, offline: frozenset[str]
    ) -> tuple[ProviderEntry, FileFacts | None, odata.Product]:
        """An entry's product, reused from the previous catalogue when neither it nor its file changed."""
        facts = self.files.cached(entry.id)
        previous = self._built.get(entry.id)
        if previous is not None and previous[0] is entry and previous[1] is facts:
            product = previous[2]
        else:
            product = to_product(entry, facts)
        online = not (offline and self._is_offline(product, offline))
        if online != product.online:
            product = replace(product, online=online)
        return (entry, facts, product)

    @staticmethod
    def _is_offline(product: odata.Product, offline: frozenset[str]) -> bool:
        return product.key in offline or product.id in offline or product.name in offline

    def odata_search(self, query: odata.Query) -> tuple[list[odata.Product], int]:
        """(the products of this page, how many match), paging on a cached, fully ordered match list."""
        catalogue = self.catalogue()
        key = (catalogue.key, query.filter_text, query.orderby)
        with self._catalogue_lock:
            matches = self._searches.get(key)
            if matches is not None:
                self._searches.move_to_end(key)
        if matches is None:
            with gc_paused():  # attribute maps and shapes are made here, the first time a filter needs them
                matches = odata.sort_products((p for p in catalogue.products if query.matches(p)), query.orderby)
            with self._catalogue_lock:
                self._searches[key] = matches
                while len(self._searches) > _SEARCH_CACHE:
                    self._searches.popitem(last=False)
        return matches[query.skip : query.skip + query.top], len(matches)

    def render(self, catalogue: _Catalogue, product: odata.Product, expand: frozenset[str]) -> dict[str, Any]:
        """The JSON of a product, with its checksums (its file hashed now if it was not yet)."""
        entry = catalogue.entries.get(product.key)
        facts = self.files.get(product.key)
        if entry is not None and facts is not None:  # the attributes the file gave (cloud cover, ...)
            product = to_product(entry, facts, online=product.online)
        checksums = facts.checksums() if facts is not None else ()
        return odata.product_json(product, checksums=checksums, expand=expand)

    def stats_dict(self) -> dict[str, Any]:
        return {
            **self.stats.to_dict(),
            "cdse": {
                "downloads": self.slots.to_dict(),
                "tokens": self.oidc.to_dict(),
                "files_hashed": self.files.computed,
            },
        }

    def reset_stats(self) -> None:
        self.stats.reset()
        self.slots.reset()
        self.oidc.reset_counters()


class _CdseHandler(_Handler):
    server_version = "ingest-dev-cdse/1"
    _area = "odata"  # which family of error bodies this request gets: odata, download, oidc

    @property
    def cdse(self) -> CdseServer:
        return cast(CdseServer, self.server.provider)

    # -- error bodies, each service its own shape --------------------------------------------

    def _dispatch(self, method: str) -> None:
        path = urlsplit(self.path).path
        if path.startswith(REALM_PATH):
            self._area = "oidc"
        elif path.endswith(("/$value", "/%24value")):
            self._area = "download"
        else:
            self._area = "odata"
        super()._dispatch(method)

    def _error(self, status: int, code: str, description: str) -> None:
        if self._area == "download":
            return self._send_json(status, {"message": description})
        if self._area == "oidc":
            return self._send_json(status, {"error": code, "error_description": description})
        self._send_json(status, {"error": {"code": code, "message": description}})

    def _injected(self, path: str) -> bool:
        """Answer the request-level faults (503 first N, 500 rate, 429 first N / rate); True if answered."""
        if self._injected_fault(path):
            return True
        if self.cdse.counters.too_many():
            retry = self.cdse.faults.retry_after_s
            headers = {"Retry-After": str(retry)} if retry is not None else {}
            body: dict[str, Any] = (
                {"message": "Too Many Requests"}
                if self._area == "download"
                else {"error": {"code": "TooManyRequests", "message": "Too Many Requests"}}
            )
            self._send_json(429, body, headers=headers)
            return True
        return False

    # -- routing ---------------------------------------------------------------------------

    def _route(self, method: str, path: str, query: str, body: bytes) -> None:
        if path == "/_faults":
            return self._faults(method, body)
        if path == "/_stats":
            if method == "DELETE":
                self.cdse.reset_stats()
            elif method != "GET":
                return self._not_allowed("GET, DELETE")
            return self._send_json(200, self.cdse.stats_dict())
        if path.startswith(REALM_PATH + "/") or path == REALM_PATH:
            return self._oidc(method, path[len(REALM_PATH) :], body)
        if path == PRODUCTS_PATH:
            if method not in ("GET", "HEAD"):
                return self._not_allowed("GET, HEAD")
            if self._injected(path):
                return None
            return self._odata_search(path, query)
        m = _PRODUCT_RE.match(path)
        if m is not None:
            if method not in ("GET", "HEAD"):
                return self._not_allowed("GET, HEAD")
            if m.group("value"):
                if self._injected(path):
                    return None
                return self._value(m.group("id"), query)
            return self._one(m.group("id"), query)
        if path == "/":
            return self._send_json(200, self._landing())
        return self._error(404, "NotFound", f"no route for {path}")

    # -- OData -----------------------------------------------------------------------------

    def _odata_search(self, path: str, query: str) -> None:
        try:
            q = odata.parse_query(parse_qsl(query, keep_blank_values=True))
        except odata.ODataError as exc:
            return self._send_json(exc.status, exc.body())
        if self.cdse.counters.page_fails(q.page):
            return self._error(500, "InternalServerError", f"injected fault on page {q.page}")
        page, total = self.cdse.odata_search(q)
        catalogue = self.cdse.catalogue()
        url = f"{self._base_url()}{path}"
        payload: dict[str, Any] = {"@odata.context": odata.context(q.expand)}
        if q.count:
            payload["@odata.count"] = total
        payload["value"] = [self.cdse.render(catalogue, p, q.expand) for p in page]
        link = q.next_link(url, total)
        if link is not None:
            payload["@odata.nextLink"] = link
        self._send_json(200, payload)

    def _lookup(self, raw_id: str) -> odata.Product | None:
        product_id = raw_id.strip("'")  # OData allows Products('<Id>') as well as Products(<Id>)
        return self.cdse.catalogue().by_id.get(product_id)

    def _one(self, raw_id: str, query: str) -> None:
        if not _is_uuid(raw_id.strip("'")):
            return self._error(400, "BadRequest", f"not a product Id (a UUID): {raw_id!r}")
        try:
            q = odata.parse_query([(k, v) for k, v in parse_qsl(query, keep_blank_values=True) if k == "$expand"])
        except odata.ODataError as exc:
            return self._send_json(exc.status, exc.body())
        catalogue = self.cdse.catalogue()
        product = catalogue.by_id.get(raw_id.strip("'"))  # OData allows Products('<Id>') as well
        if product is None:
            return self._error(404, "NotFound", f"no product with Id {raw_id}")
        body = self.cdse.render(catalogue, product, q.expand)
        self._send_json(200, {"@odata.context": odata.context(q.expand, entity=True), **body})

    # -- the download service ----------------------------------------------------------------

    def _value(self, raw_id: str, query: str) -> None:
        token = dict(parse_qsl(query)).get("token")
        auth = self.headers.get("Authorization", "")
        if not token and auth.lower().startswith("bearer "):
            token = auth[7:].strip()
        try:
            claims = self.cdse.oidc.verify_access(token)
        except InvalidToken as exc:
            body = _TOKEN_ERRORS.get(exc.reason, {"message": "Invalid token"})
            return self._send_json(401, body)
        if not _is_uuid(raw_id.strip("'")):
            return self._send_json(422, {"code": "DAT-ZIP-111", "message": f"Invalid product Id {raw_id!r}"})
        product = self._lookup(raw_id)
        if product is None:
            return self._send_json(404, {"message": f"Product {raw_id} not found"})
        if not product.online:  # CDSE: offline (deferred) products are ordered in the Data Workspace first
            status = self.cdse.faults.offline_status
            message = f"Product {product.name} is offline; order it before downloading"
            return self._send_json(status, {"message": message})
        if self._method == "HEAD":
            return self._download(product.key)
        try:
            self.cdse.slots.acquire(claims.user)
        except LimitExceeded:
            return self._send_json(429, dict(TOO_MANY_BODY))
        try:
            self._download(product.key)
        finally:
            self.cdse.slots.release(claims.user)

    # -- the OpenID provider ---------------------------------------------------------------

    def _oidc(self, method: str, sub: str, body: bytes) -> None:
        base = self._base_url()
        if sub == "/.well-known/openid-configuration":
            if method not in ("GET", "HEAD"):
                return self._not_allowed("GET, HEAD")
            return self._send_json(200, self.cdse.oidc.discovery(base))
        if sub == "/protocol/openid-connect/certs":
            if method not in ("GET", "HEAD"):
                return self._not_allowed("GET, HEAD")
            return self._send_json(200, self.cdse.oidc.jwks())
        if sub == "/protocol/openid-connect/token":
            if method != "POST":
                return self._not_allowed("POST")
            if self.cdse.faults.token_down:
                return self._error(503, "temporarily_unavailable", "injected fault: the token endpoint is down")
            try:
                form = dict(parse_qsl(body.decode("utf-8"), keep_blank_values=True))
            except UnicodeDecodeError:
                return self._error(400, "invalid_request", "form body is not UTF-8")
            try:
                answer = self.cdse.oidc.token(form, base)
            except TokenRequestError as exc:
                return self._send_json(exc.status, exc.body)
            return self._send_json(200, answer, headers={"Cache-Control": "no-store", "Pragma": "no-cache"})
        return self._error(404, "not_found", f"no realm endpoint {sub}")

    def _landing(self) -> dict[str, Any]:
        base = self._base_url()
        return {
            "title": "ingest CDSE-like provider (development and tests)",
            "odata": f"{base}{PRODUCTS_PATH}",
            "openid_configuration": f"{base}{REALM_PATH}/.well-known/openid-configuration",
            "faults": f"{base}/_faults",
            "stats": f"{base}/_stats",
        }


def _is_uuid(text: str) -> bool:
    try:
        uuid.UUID(text)
    except ValueError:
        return False
    return len(text) == 36
