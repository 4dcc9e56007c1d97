"""What a target is sent, and what needs sending. Pure.

A pushed document is ours as our API serves it (asset hrefs through the gateway when it is on, the
Authentication extension), without the links: the target makes its own self/parent/root/collection
links, and ours would point a harvester of the target back at us for the wrong reasons.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from ingest.access import hrefs

STRUCTURAL = frozenset({"self", "root", "parent", "collection", "items", "child", "item", "next", "prev"})


@dataclass(frozen=True)
class PublicForm:
    """How our API presents documents: the gateway (its public base URL) or the stored hrefs."""

    gateway_base: str | None  # the API's public URL when the asset gateway is on
    bucket: str
    discovery_urls: tuple[str, ...]


def _links(doc: Mapping[str, Any]) -> list[Any]:
    return [lk for lk in doc.get("links") or [] if not (isinstance(lk, dict) and lk.get("rel") in STRUCTURAL)]


def public_item(item: Mapping[str, Any], form: PublicForm, *, protected: bool) -> dict[str, Any]:
    out = (
        hrefs.rewrite_item(
            item, base_url=form.gateway_base, bucket=form.bucket, protected=protected,
            discovery_urls=form.discovery_urls,
        )
        if form.gateway_base is not None
        else dict(item)
    )  # fmt: skip
    out["links"] = _links(out)
    return out


def public_collection(collection: Mapping[str, Any], form: PublicForm) -> dict[str, Any]:
    gateway = form.gateway_base is not None
    out = hrefs.describe_collection(collection, form.discovery_urls) if gateway else dict(collection)
    out["links"] = _links(out)
    return out


def digest(doc: Mapping[str, Any]) -> str:
    """SHA-256 of the document's canonical JSON: equal documents, equal digests."""
    text = json.dumps(doc, sort_keys=True, separators=(",", ":"), ensure_ascii=False, default=str)
    return hashlib.sha256(text.encode()).hexdigest()


def read_from(cursor: datetime | None, settle_s: float) -> datetime | None:
    """Where a push reads ``updated`` from: the last complete push's start, less the settle window
    (an item is visible at most that long after its stamp: ``ingest.catalog.loading``); None: all."""
    return None if cursor is None else cursor - timedelta(seconds=settle_s)


def to_send(docs: Sequence[dict[str, Any]], held: Mapping[str, str]) -> list[tuple[dict[str, Any], str]]:
    """The documents (with their digests) the target does not hold as they are."""
    out = []
    for doc in docs:
        d = digest(doc)
        if held.get(str(doc["id"])) != d:
            out.append((doc, d))
    return out
