"""What served items and collections say about access when the gateway is on. Pure.

* Every asset stored here (``s3://`` href in this store's bucket) gets the gateway's URL as ``href``;
  the ``s3://`` form stays in ``alternate.s3.href`` for operators who hold keys.
* Items and collections carry the STAC Authentication extension (v1.1.0): ``auth:schemes`` with one
  ``openIdConnect`` scheme per configured issuer (its discovery URL), and, in a collection that is not
  public, ``auth:refs`` on those assets naming them: a client knows it needs a token and where to get one.
"""

from __future__ import annotations

import copy
from collections.abc import Collection, Mapping, Sequence
from typing import Any
from urllib.parse import quote

AUTH_EXT = "https://stac-extensions.github.io/authentication/v1.1.0/schema.json"


def schemes(discovery_urls: Sequence[str]) -> dict[str, dict[str, str]]:
    names = ["oidc"] if len(discovery_urls) == 1 else [f"oidc-{n + 1}" for n in range(len(discovery_urls))]
    return {
        name: {"type": "openIdConnect", "openIdConnectUrl": url, "description": "a bearer token from this issuer"}
        for name, url in zip(names, discovery_urls, strict=True)
    }


def gateway_url(base_url: str, collection: str, item_id: str, key: str) -> str:
    c, i, k = (quote(s, safe="") for s in (collection, item_id, key))
    return f"{base_url.rstrip('/')}/collections/{c}/items/{i}/assets/{k}"


def serves_any(item: object, bucket: str, only: Collection[str]) -> bool:
    """Whether ``rewrite_item(..., only=only)`` would change an asset of ``item``."""
    assets = item.get("assets") if isinstance(item, Mapping) else None
    return isinstance(assets, Mapping) and any(
        isinstance(a, Mapping) and str(a.get("href", "")).startswith(f"s3://{bucket}/")
        for k, a in assets.items()
        if k in only
    )


def rewrite_item(
    item: Mapping[str, Any],
    *,
    base_url: str,
    bucket: str,
    protected: bool,
    discovery_urls: Sequence[str],
    only: Collection[str] | None = None,
) -> dict[str, Any]:
    """``item`` as served through the gateway (``protected``: its collection's policy is not public).

    ``only``: rewrite these asset keys alone, and only when their href is ``s3://`` (the gateway is off
    and answers for them: an https href is reachable as it is)."""
    out = copy.deepcopy(dict(item))
    collection, item_id = out.get("collection"), out.get("id")
    if not isinstance(collection, str) or not isinstance(item_id, str):
        return out
    refs = list(schemes(discovery_urls)) if protected else []
    for key, asset in (out.get("assets") or {}).items():
        if not isinstance(asset, dict):
            continue
        if only is not None and (key not in only or not str(asset.get("href", "")).startswith("s3://")):
            continue
        s3 = (asset.get("alternate") or {}).get("s3", {}).get("href") or asset.get("href")
        if not isinstance(s3, str) or not s3.startswith(f"s3://{bucket}/"):
            continue  # not an object of this store: left as it is
        asset["href"] = gateway_url(base_url, collection, item_id, key)
        asset.setdefault("alternate", {}).setdefault("s3", {})["href"] = s3
        if refs:
            asset["auth:refs"] = refs
    if discovery_urls:
        out.setdefault("properties", {})["auth:schemes"] = schemes(discovery_urls)
        out["stac_extensions"] = [*(e for e in out.get("stac_extensions", []) if e != AUTH_EXT), AUTH_EXT]
    return out


def describe_collection(collection: Mapping[str, Any], discovery_urls: Sequence[str]) -> dict[str, Any]:
    """A served collection with the issuers' schemes."""
    out = dict(collection)
    if discovery_urls:
        out["auth:schemes"] = schemes(discovery_urls)
        out["stac_extensions"] = [*(e for e in out.get("stac_extensions", []) if e != AUTH_EXT), AUTH_EXT]
    return out
