"""``upstream.reprocessing: keep``: every processing of an acquisition stays catalogued, each under an
item id of its own, the older ones marked with the STAC version extension (v1.2.0).

* **Item ids**: the id stactools makes leaves the processing out for Sentinel-2 (and Sentinel-1), so in a
  ``keep`` collection the processing is appended (``S2B_T33UUP_20230815T101609_L2A_N0500_20230815T130355``):
  two processings never share an item or an S3 prefix. Items catalogued before a collection switched to
  ``keep`` keep their ids; the links below join them all the same.
* **Chains**: the catalogued processings of one acquisition, oldest first. Every one but the newest gets
  ``deprecated: true``, a ``successor-version`` link (the next newer) and a ``latest-version`` link (the
  newest); every one but the oldest a ``predecessor-version`` link (the next older); each its
  ``version`` (the processing: ``N0500 20230815T130355``). Hrefs are relative to the API root
  (``collections/{c}/items/{id}``): stac-fastapi-pgstac resolves stored links against the request's base
  URL, so they hold behind any proxy.
* **When**: at the load of a processing (``ingest.pipeline``), under a lock of the acquisition, before
  the product becomes ``catalogued``: its own item first, then the older ones it changes. A crash in
  between leaves the product short of ``catalogued``; its next attempt computes the chain again and loads
  the same documents (idempotent). A changed item gets a new ``updated``, so a harvester polling on
  ``updated`` sees it.
* **Searches** answer the current processing only (``ingest.api.current``) unless a client asks by naming
  ``deprecated`` in its filter or items by id.

Pure parts (``keep_item_id``, ``chain``, ``mark``) take no I/O; ``linked`` reads the siblings' items.
"""

from __future__ import annotations

import copy
import zlib
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager, suppress
from dataclasses import dataclass
from datetime import datetime
from typing import Any

import psycopg

from ingest.adapters import pgstac
from ingest.collections import CollectionSpec
from ingest.upstream import reprocessing
from ingest.upstream.names import ProductName, parse

VERSION_EXT = "https://stac-extensions.github.io/version/v1.2.0/schema.json"
RELS = ("latest-version", "predecessor-version", "successor-version")
LOCK_TIMEOUT_S = 60  # another worker loading a processing of the same acquisition: seconds, not minutes
_LOCK_CLASS = 0x76657273  # "vers": the first key of the two-key advisory lock


def _name(spec: CollectionSpec, product_id: str) -> ProductName | None:
    if spec.upstream.reprocessing != "keep":
        return None
    name = parse(product_id)
    return name if name is not None and name.version is not None else None


def applies(spec: CollectionSpec, product_id: str) -> bool:
    """Whether the product takes part in version chains: a ``keep`` collection, a name that orders its
    processings (Sentinel-2, Sentinel-3)."""
    return _name(spec, product_id) is not None


def keep_item_id(spec: CollectionSpec, product_id: str, built: str) -> str:
    """Pure. The item id of ``product_id`` given the id stactools ``built``: with the processing appended
    when the product takes part in chains and the id does not say it already."""
    name = _name(spec, product_id)
    if name is None:
        return built
    tag = name.processing.replace(" ", "_")
    return built if tag in built else f"{built}_{tag}"


@dataclass(frozen=True)
class Member:
    """A catalogued processing of the acquisition: its product name and item id."""

    name: ProductName
    item_id: str


@dataclass(frozen=True)
class Place:
    """Where an item stands in its chain."""

    version: str
    deprecated: bool
    predecessor: str | None = None
    successor: str | None = None
    latest: str | None = None


def chain(members: Sequence[Member]) -> dict[str, Place]:
    """Pure. Each member's place (by item id), oldest first; members of another acquisition than the
    newest's, or without an order, are left out."""
    ordered = sorted(
        (m for m in members if m.name.version is not None), key=lambda m: m.name.version or ()
    )  # fmt: skip
    if not ordered:
        return {}
    key = ordered[-1].name.key
    ordered = [m for m in ordered if m.name.key == key]
    by_item: dict[str, Member] = {}
    for m in ordered:  # one item twice (a re-load): its newest processing counts
        by_item.pop(m.item_id, None)
        by_item[m.item_id] = m
    ids = list(by_item)
    latest = ids[-1]
    places: dict[str, Place] = {}
    for i, item_id in enumerate(ids):
        current = item_id == latest
        places[item_id] = Place(
            version=by_item[item_id].name.processing,
            deprecated=not current,
            predecessor=ids[i - 1] if i > 0 else None,
            successor=None if current else ids[i + 1],
            latest=None if current else latest,
        )
    return places


def mark(doc: Mapping[str, Any], place: Place | None, *, updated: datetime | None = None) -> dict[str, Any]:
    """Pure. ``doc`` with its version fields and links as ``place`` says (None: alone, no version links
    and not deprecated); ``updated`` stamped when that changed anything."""
    out = copy.deepcopy(dict(doc))
    props = out.setdefault("properties", {})
    collection = out.get("collection")
    links = [link for link in out.get("links", []) if link.get("rel") not in RELS]
    props.pop("deprecated", None)
    if place is None:
        props.pop("version", None)
    else:
        props["version"] = place.version
        if place.deprecated:
            props["deprecated"] = True
        for rel, target in (
            ("latest-version", place.latest),
            ("predecessor-version", place.predecessor),
            ("successor-version", place.successor),
        ):
            if target is not None:
                links.append(
                    {"rel": rel, "href": f"collections/{collection}/items/{target}", "type": "application/geo+json"}
                )
    out["links"] = links
    extensions = [e for e in out.get("stac_extensions", []) if e != VERSION_EXT]
    if place is not None:
        extensions.append(VERSION_EXT)
    out["stac_extensions"] = extensions
    if updated is not None and _versioned(out) != _versioned(doc):
        props["updated"] = updated.isoformat().replace("+00:00", "Z")
    return out


def _versioned(doc: Mapping[str, Any]) -> tuple[Any, ...]:
    props = doc.get("properties", {})
    links = sorted((link.get("rel"), link.get("href")) for link in doc.get("links", []) if link.get("rel") in RELS)
    return props.get("version"), props.get("deprecated"), tuple(links), VERSION_EXT in doc.get("stac_extensions", [])


def linked(
    conn: psycopg.Connection, pgstac_dsn: str, spec: CollectionSpec, product_id: str, doc: dict[str, Any], now: datetime
) -> list[dict[str, Any]]:
    """The documents to load for ``product_id`` about to be catalogued as ``doc``: its own (marked) first,
    then every sibling item whose place in the chain changes. Call under ``locked``."""
    me = _name(spec, product_id)
    if me is None:
        return [doc]
    members = [Member(me, doc["id"])]
    docs: dict[str, dict[str, Any]] = {}
    for h in reprocessing.held(conn, product_id, doc["id"]):
        other = parse(h.id)
        if other is None or other.key != me.key or other.version is None or not h.item_id or h.item_id == doc["id"]:
            continue
        found = pgstac.get_item(pgstac_dsn, spec.id, h.item_id)
        if found is None:  # catalogued without its item (a retirement under way): not a version to link
            continue
        members.append(Member(other, h.item_id))
        docs[h.item_id] = found
    places = chain(members)
    out = [mark(doc, places.get(doc["id"]) if len(places) > 1 else None, updated=now)]
    for item_id, old in docs.items():
        new = mark(old, places.get(item_id) if len(places) > 1 else None, updated=now)
        if _versioned(new) != _versioned(old):
            out.append(new)
    return out


@contextmanager
def locked(conn: psycopg.Connection, spec: CollectionSpec, product_id: str) -> Iterator[None]:
    """Hold the acquisition's lock (a session advisory lock: gone with a killed holder's connection) so
    that two workers loading processings of one acquisition see each other's; waits LOCK_TIMEOUT_S at
    most (then psycopg's LockNotAvailable: the product's attempt fails and is retried)."""
    name = _name(spec, product_id)
    if name is None:
        yield
        return
    key = zlib.crc32("|".join((spec.id, *name.key)).encode()) - 2**31  # int4, stable across processes
    with conn.transaction():  # on a caller's open transaction a savepoint: its lock_timeout is given back
        row = conn.execute("SELECT current_setting('lock_timeout')").fetchone()
        conn.execute("SELECT set_config('lock_timeout', %s, true)", [f"{LOCK_TIMEOUT_S}s"])
        conn.execute("SELECT pg_advisory_lock(%s, %s)", [_LOCK_CLASS, key])
        conn.execute("SELECT set_config('lock_timeout', %s, true)", [row[0] if row else "0"])
    try:
        yield
    finally:
        with suppress(psycopg.Error), conn.transaction():  # a broken connection has dropped the lock itself
            conn.execute("SELECT pg_advisory_unlock(%s, %s)", [_LOCK_CLASS, key])
