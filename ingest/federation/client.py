"""HTTP to one upstream catalogue: a static bearer token or an OAuth2 client-credentials token,
retries with backoff on what may pass (connection errors, 429, 5xx), and the Transactions calls.

Errors are translated here: a target that stays away or refuses our credentials is an
``UpstreamUnavailable`` (the run stops, its cursor stays); a document the target refuses is an
``ItemRejected`` (that document is reported, the others go on).
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from typing import Any
from urllib.parse import quote

import requests

from ingest.errors import UpstreamUnavailable
from ingest.settings import RegisterTarget

log = logging.getLogger(__name__)

ATTEMPTS = 4  # per request: 1 + 3 retries
BACKOFF_S = 1.0  # doubled after each try, capped by MAX_WAIT_S
MAX_WAIT_S = 30.0
TOKEN_MARGIN_S = 30.0  # a token is fetched again this long before it expires
_RETRY = frozenset({429, 500, 502, 503, 504})


class ItemRejected(Exception):
    """The target answered a document with a 4xx: its status and the target's own words."""

    def __init__(self, status: int, detail: str) -> None:
        super().__init__(f"HTTP {status}: {detail}")
        self.status, self.detail = status, detail


def _detail(resp: requests.Response) -> str:
    """The target's reason in one short line (stac-fastapi answers {"code", "description"})."""
    try:
        body = resp.json()
    except ValueError:
        body = resp.text
    if isinstance(body, dict):
        body = body.get("description") or body.get("detail") or body.get("message") or body
    return " ".join(str(body).split())[:300] or resp.reason


class Upstream:
    def __init__(
        self,
        target: RegisterTarget,
        *,
        timeout_s: float = 30.0,
        backoff_s: float = BACKOFF_S,
        sleep: Callable[[float], None] = time.sleep,
    ) -> None:
        self.target = target
        self._timeout, self._backoff, self._sleep = timeout_s, backoff_s, sleep
        self._session = requests.Session()
        self._session.headers["Accept"] = "application/json"
        self._token: tuple[str, float] | None = None  # (access token, monotonic expiry)

    def close(self) -> None:
        self._session.close()

    def __enter__(self) -> Upstream:
        return self

    def __exit__(self, *_: object) -> None:
        self.close()

    # -- authentication ----------------------------------------------------------------------

    def _bearer(self) -> str | None:
        t = self.target
        if t.token is not None:
            return t.token.get_secret_value()
        if t.token_url is None:
            return None
        if self._token is not None and time.monotonic() < self._token[1]:
            return self._token[0]
        assert t.client_id is not None and t.client_secret is not None  # the settings' own check
        form = {"grant_type": "client_credentials", **({"scope": t.scope} if t.scope else {})}
        resp = self._send(
            "POST", t.token_url, data=form, auth=(t.client_id, t.client_secret.get_secret_value()), what="token"
        )
        if resp.status_code != 200:
            raise UpstreamUnavailable(f"target {t.name}: the token endpoint refused: HTTP {resp.status_code}")
        body = resp.json()
        token, expires = body.get("access_token"), body.get("expires_in", 300)
        if not isinstance(token, str) or not token:
            raise UpstreamUnavailable(f"target {t.name}: the token endpoint gave no access_token")
        self._token = (token, time.monotonic() + max(float(expires) - TOKEN_MARGIN_S, 1.0))
        return token

    # -- requests ----------------------------------------------------------------------------

    def _send(self, method: str, url: str, *, what: str, **kw: Any) -> requests.Response:
        """One request with retries; the last answer (which may be an error status) or an UpstreamUnavailable."""
        wait = self._backoff
        for attempt in range(1, ATTEMPTS + 1):
            after: str | None = None
            try:
                resp = self._session.request(method, url, timeout=self._timeout, **kw)
            except requests.RequestException as exc:
                cause = type(exc).__name__  # its text may quote the URL's query: the name says enough
            else:
                if resp.status_code not in _RETRY:
                    return resp
                cause, after = f"HTTP {resp.status_code}", resp.headers.get("Retry-After")
            if attempt == ATTEMPTS:
                break
            delay = min(float(after) if after and after.isdigit() else wait, MAX_WAIT_S)
            log.warning("target %s: %s %s: %s; try %d of %d in %.1f s", self.target.name, method, what, cause,
                        attempt + 1, ATTEMPTS, delay)  # fmt: skip
            self._sleep(delay)
            wait *= 2
        raise UpstreamUnavailable(
            f"target {self.target.name} ({self.target.url}): {what}: {cause} after {ATTEMPTS} tries"
        )

    def _call(self, method: str, path: str, *, what: str, body: dict[str, Any] | None = None) -> requests.Response:
        for fresh in (False, True):
            token = self._bearer()
            headers = {"Authorization": f"Bearer {token}"} if token else {}
            resp = self._send(method, self.target.url + path, what=what, json=body, headers=headers)
            if resp.status_code != 401 or fresh or self.target.token_url is None:
                break
            self._token = None  # revoked or expired early: one new token, then the answer stands
        if resp.status_code in (401, 403):
            raise UpstreamUnavailable(f"target {self.target.name}: {what}: our credentials were refused "
                                      f"(HTTP {resp.status_code})")  # fmt: skip
        return resp

    # -- the Transactions extension ------------------------------------------------------------

    def put_collection(self, doc: dict[str, Any]) -> None:
        cid = quote(str(doc["id"]), safe="")
        resp = self._call("POST", "/collections", what=f"collection {doc['id']}", body=doc)
        if resp.status_code == 409:  # there already: replaced
            resp = self._call("PUT", f"/collections/{cid}", what=f"collection {doc['id']}", body=doc)
        if not resp.ok:
            raise UpstreamUnavailable(f"target {self.target.name}: collection {doc['id']} refused: "
                                      f"HTTP {resp.status_code}: {_detail(resp)}")  # fmt: skip

    def put_item(self, collection: str, doc: dict[str, Any]) -> None:
        c, i = quote(collection, safe=""), quote(str(doc["id"]), safe="")
        what = f"item {doc['id']}"
        resp = self._call("POST", f"/collections/{c}/items", what=what, body=doc)
        if resp.status_code == 409:
            resp = self._call("PUT", f"/collections/{c}/items/{i}", what=what, body=doc)
        if not resp.ok:
            raise ItemRejected(resp.status_code, _detail(resp))

    def post_items(self, collection: str, docs: list[dict[str, Any]]) -> bool:
        """New items as one ItemCollection (the Transactions extension's bulk form); False when the
        target refuses the whole (an item it holds already, one it finds invalid): send them one by one."""
        body = {"type": "FeatureCollection", "features": docs}
        c = quote(collection, safe="")
        resp = self._call("POST", f"/collections/{c}/items", what=f"{len(docs)} items", body=body)
        return resp.ok

    def delete_item(self, collection: str, item_id: str) -> None:
        c, i = quote(collection, safe=""), quote(item_id, safe="")
        resp = self._call("DELETE", f"/collections/{c}/items/{i}", what=f"deletion of {item_id}")
        if not resp.ok and resp.status_code != 404:  # not there: what we wanted
            raise ItemRejected(resp.status_code, _detail(resp))
