"""pgstac through pypgstac: the only module that imports pypgstac. Errors leave as IngestErrors.

Items are written with pypgstac's ``delsert``: per partition, the incoming ids are first deleted from
the whole collection (the parent ``items`` table, so every date partition) and then inserted. It is
the only mode that can never leave a duplicate: with ``upsert`` an item whose datetime moved to
another month (``partition_trunc = 'month'``) or year keeps its old row next to the new one, and
search returns both (tests/integration/test_pgstac_load.py shows it). pgstac's default, partitioning
by collection only, would make ``upsert`` safe too, but an operator may repartition a large collection
by month at any time (``UPDATE collections SET partition_trunc``), and correctness should not hang on
that; delsert costs little more (benchmarks/load.py).

A call to ``load_items`` works in batches. Each batch is checked as a whole before any of it is
written (id, collection published, geometry, datetimes); an invalid item fails the call naming the
item, nothing of its batch is written and the earlier batches stay (they were valid, and reloading
them is harmless). pypgstac commits each (batch, partition) separately, so an outage in the middle of
a batch can leave part of it written; the caller's retry of the same call repairs that.

Collection extents are derived data: after every load, delete and collection upsert, the extent of
each touched collection is recomputed from its items (bbox = union of the item geometries' bounds,
interval = [earliest datetime, latest end_datetime]). A collection without items shows its
configured extent (the one in the document last given to ``upsert_collections``, kept in the
collection's ``private`` column, which pgstac never serves).
"""

from __future__ import annotations

import itertools
from collections.abc import Callable, Iterable, Iterator, Sequence
from contextlib import contextmanager
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import psycopg
from psycopg.types.json import Jsonb
from pypgstac.db import PgstacDB
from pypgstac.load import Loader, Methods

from ingest.dsn import password_of, where
from ingest.errors import ConfigError, DatabaseUnavailable, IngestError, InvalidProduct
from ingest.settings import scrub
from ingest.state.db import connect, lost

Item = dict[str, Any]

_CONFIGURED_EXTENT = "configured_extent"  # key in pgstac.collections.private


def _one_line(exc: psycopg.Error) -> str:
    diag = exc.diag
    text = diag.message_primary or str(exc).strip().split("\n", 1)[0] or type(exc).__name__
    if diag.message_detail:
        text += f" ({diag.message_detail})"
    return text if len(text) <= 300 else text[:297] + "..."


@contextmanager
def pgstac_db(dsn: str) -> Iterator[PgstacDB]:
    # Our own connection: it fails fast with our message (pypgstac's pool retries for 30 s on a dead
    # server), and a pool connection of pypgstac's registers an atexit hook that a daemon would pile up.
    with connect(dsn=dsn, autocommit=True) as conn:  # pypgstac's loader expects autocommit
        # pypgstac's SQL is unqualified; UTC because it compares datetimes as ISO strings against
        # values read back from the server
        conn.execute("SET search_path TO pgstac, public")
        conn.execute("SET TIME ZONE 'UTC'")
        db = PgstacDB(dsn=dsn, connection=conn)
        try:
            yield db
        except psycopg.OperationalError as exc:
            what = "database connection lost: " if lost(exc, conn) else ""  # a restart, not a refusal
            raise DatabaseUnavailable(
                f"{what}pgstac at {where(dsn)}: {scrub(_one_line(exc), dsn, password_of(dsn))}"
            ) from None
        except psycopg.Error as exc:
            raise IngestError(
                f"pgstac at {where(dsn)} refused: {scrub(_one_line(exc), dsn, password_of(dsn))}"
            ) from None
        finally:
            db.close()


# ----------------------------------------------------------------------------- collections


def upsert_collections(dsn: str, collections: Iterable[dict[str, Any]]) -> None:
    """Insert or replace collection documents; their ``extent`` is taken as the configured extent.

    The published extent is then recomputed from the items, in the same transaction, so a re-sync
    never shows the configured extent of a collection that has items.
    """
    docs = list(collections)
    if not docs:
        return
    with pgstac_db(dsn) as db:
        conn = db.connect()
        with conn.transaction():
            Loader(db).load_collections(iter(docs), insert_mode=Methods.upsert)
            for doc in docs:
                conn.execute(
                    "UPDATE pgstac.collections SET private = coalesce(private, '{}') || jsonb_build_object(%s::text,"
                    " content -> 'extent') WHERE id = %s",
                    [_CONFIGURED_EXTENT, doc["id"]],
                )
                _refresh_extent(conn, doc["id"])


def get_collection(dsn: str, collection_id: str) -> dict[str, Any] | None:
    with pgstac_db(dsn) as db:
        row = db.query_one("SELECT content FROM pgstac.collections WHERE id = %s", [collection_id])
    return row if isinstance(row, dict) else None


def collection_ids(dsn: str) -> list[str]:
    with pgstac_db(dsn) as db:
        return [r[0] for r in db.query("SELECT id FROM pgstac.collections ORDER BY id")]


def version(dsn: str) -> str | None:
    with pgstac_db(dsn) as db:
        return db.version


# ----------------------------------------------------------------------------- queryables

# Item properties the federation's harvesters filter and sort on ("what was created or updated since").
# pgstac reads a property it has no queryable for as text, so `updated >= TIMESTAMP(...)` fails
# (text >= timestamptz); registered with the to_tstz wrapper it compares as a time, and a BTREE index
# on `updated` keeps the incremental harvest cheap in a large catalogue (`created` is rarer: no index).
_TIME = {"type": "string", "format": "date-time"}
HARVEST_QUERYABLES: dict[str, tuple[dict[str, Any], str | None]] = {
    "created": ({"title": "Created", "description": "First catalogued (UTC)", **_TIME}, None),
    "updated": ({"title": "Updated", "description": "Last (re)loaded (UTC)", **_TIME}, "BTREE"),
}

# pgstac ships `id` and `geometry` as $refs into schemas.stacspec.org and geojson.org: every client that
# dereferences the queryables (STAC Browser's filter form does, on each collection page) fetches them,
# and fails where those hosts are unreachable. Self-contained, with what the filter needs to know;
# the geometry as OGC API - Features Part 3 writes a spatial queryable.
SELF_CONTAINED_QUERYABLES: dict[str, dict[str, Any]] = {
    "id": {"title": "Item ID", "description": "Item identifier", "type": "string", "minLength": 1},
    "geometry": {"title": "Item Geometry", "description": "Item footprint (GeoJSON)", "format": "geometry-any"},
}


def ensure_queryables(dsn: str) -> list[str]:
    """Register HARVEST_QUERYABLES for every collection and make pgstac's own SELF_CONTAINED_QUERYABLES
    self-contained; returns the names that were changed.

    Needs pgstac's admin or ingest role (``ingest db migrate``). A queryable already registered the same
    way is left alone: pgstac's upsert replaces the row, which would rebuild its index on every item
    partition at each migration."""
    changed = []
    with pgstac_db(dsn) as db:
        conn = db.connect()
        for name, (definition, index) in HARVEST_QUERYABLES.items():
            same = conn.execute(
                "SELECT 1 FROM pgstac.queryables WHERE name = %s AND collection_ids IS NULL AND definition = %s"
                " AND property_wrapper = 'to_tstz' AND upper(coalesce(property_index_type, '')) = %s",
                [name, Jsonb(definition), (index or "").upper()],
            ).fetchone()
            if same is None:
                conn.execute(
                    "SELECT pgstac.upsert_queryable(%s, %s, 'to_tstz', %s, NULL)", [name, Jsonb(definition), index]
                )
                changed.append(name)
        for name, definition in SELF_CONTAINED_QUERYABLES.items():
            cur = conn.execute(
                "UPDATE pgstac.queryables SET definition = %s"
                " WHERE name = %s AND collection_ids IS NULL AND definition IS DISTINCT FROM %s",
                [Jsonb(definition), name, Jsonb(definition)],
            )
            if cur.rowcount:
                changed.append(name)
    return changed


def refresh_extent(dsn: str, collection_id: str) -> dict[str, Any] | None:
    """Recompute and publish a collection's extent; returns the published extent.

    None: no such collection, or no items and no configured extent recorded (the extent is left as is).

    Loads, deletes and upserts do this already; this is for repairs (e.g. after items were changed
    outside this module).
    """
    with pgstac_db(dsn) as db:
        return _refresh_extent(db.connect(), collection_id)


def _rfc3339(value: datetime) -> str:
    return value.astimezone(UTC).isoformat().replace("+00:00", "Z")


def _refresh_extent(conn: psycopg.Connection[Any], collection_id: str) -> dict[str, Any] | None:
    with conn.transaction():
        # Row lock first, then aggregate in a new statement: its snapshot then holds every item committed
        # before a concurrent refresher released the row, so the last writer never publishes a stale union.
        # NO KEY: the items' foreign key takes KEY SHARE on this row, and loaders must not wait for us.
        locked = conn.execute(
            "SELECT private -> %s FROM pgstac.collections WHERE id = %s FOR NO KEY UPDATE",
            [_CONFIGURED_EXTENT, collection_id],
        ).fetchone()
        if locked is None:
            return None
        stats = conn.execute(
            "SELECT min(datetime), max(end_datetime), st_xmin(st_extent(geometry)), st_ymin(st_extent(geometry)),"
            " st_xmax(st_extent(geometry)), st_ymax(st_extent(geometry)) FROM pgstac.items WHERE collection = %s",
            [collection_id],
        ).fetchone()
        assert stats is not None  # an aggregate always returns a row
        start, end, *bbox = stats
        extent: dict[str, Any] | None
        if start is None:
            extent = locked[0]  # no items: the configured extent (None if never upserted here: leave it)
        else:
            extent = {
                "spatial": {"bbox": [[float(v) for v in bbox]]},
                "temporal": {"interval": [[_rfc3339(start), _rfc3339(end)]]},
            }
        if extent is None:
            return None
        conn.execute(
            "UPDATE pgstac.collections SET content = jsonb_set(content, '{extent}', %s)"
            " WHERE id = %s AND content -> 'extent' IS DISTINCT FROM %s",
            [Jsonb(extent), collection_id, Jsonb(extent)],
        )
        return extent


# ----------------------------------------------------------------------------- items


def _utc(value: object) -> datetime:
    if not isinstance(value, str):
        raise ValueError(f"{value!r} is not an RFC 3339 string")
    try:
        parsed = datetime.fromisoformat(value)
    except ValueError:
        raise ValueError(f"{value!r} is not an RFC 3339 date-time") from None
    if parsed.tzinfo is None:
        raise ValueError(f"{value!r} has no UTC offset")
    return parsed.astimezone(UTC)


class _Loader(Loader):
    """pypgstac's Loader, with the row's datetimes in one canonical UTC form.

    pypgstac compares datetimes as strings and names month/year partitions after the string's
    prefix: '10:00:00Z' sorts after '10:00:00.5Z', and '2024-01-31T23:00:00-05:00' goes to January.
    Both end in CheckViolation retries with back-off (measured: 167 s, then the batch fails). The
    canonical form is the one pypgstac gets back from the server (isoformat in UTC). Only the
    datetime columns change; the stored item keeps its own strings.
    """

    def format_item(self, _item: Path | str | dict[str, Any]) -> dict[str, Any]:
        try:
            out = super().format_item(_item)
        except psycopg.Error:
            raise
        except Exception as exc:  # pypgstac raises bare Exception, TypeError, ... on malformed input
            item = _item if isinstance(_item, dict) else {}
            raise _invalid(item, str(exc) or type(exc).__name__) from None
        out["datetime"] = _utc(out["datetime"]).isoformat()
        out["end_datetime"] = _utc(out["end_datetime"]).isoformat()
        _, key, trunc, _ = self.collection_json(out["collection"])
        if trunc in ("year", "month"):
            out["partition"] = f"_items_{key}_{out['datetime'].replace('-', '')[: 4 if trunc == 'year' else 6]}"
        return out


def _invalid(item: dict[str, Any], cause: str) -> InvalidProduct:
    return InvalidProduct(f"item {item.get('id')!r} of collection {item.get('collection')!r} rejected: {cause}")


def _check(item: object, known: set[str]) -> tuple[str, str]:
    """(collection, id) of a loadable item; raises naming the item otherwise (nothing is written)."""
    if not isinstance(item, dict):
        raise InvalidProduct(f"not a STAC item: a {type(item).__name__}")
    iid, cid = item.get("id"), item.get("collection")
    if not isinstance(iid, str) or not iid:
        raise _invalid(item, "no id")
    if not isinstance(cid, str) or cid not in known:
        raise ConfigError(
            f"item {iid!r}: collection {cid!r} is not in pgstac (publish it first: ingest collections sync)"
        )
    geometry = item.get("geometry")
    if not isinstance(geometry, dict) or not isinstance(geometry.get("type"), str):
        raise _invalid(item, "no geometry (pgstac stores only items with one)")
    props = item.get("properties")
    if not isinstance(props, dict):
        raise _invalid(item, "no properties")
    try:
        # pypgstac's rule: a range when both ends are given, else the instant
        if props.get("start_datetime") is not None and props.get("end_datetime") is not None:
            if _utc(props["start_datetime"]) > _utc(props["end_datetime"]):
                raise ValueError("start_datetime is after end_datetime")
        elif props.get("datetime") is not None:
            _utc(props["datetime"])
        else:
            raise ValueError("no datetime, nor start_datetime and end_datetime")
    except ValueError as exc:
        raise _invalid(item, str(exc)) from None
    return cid, iid


def _batches(items: Iterable[Item], size: int) -> Iterator[list[Item]]:
    it = iter(items)
    while batch := list(itertools.islice(it, size)):
        yield batch


def load_items(dsn: str, items: Iterable[Item], *, batch_size: int = 500) -> int:
    """Insert or replace items (any collections) in batches; returns the number of items written.

    Idempotent. An id repeated within a batch is written once (the last one wins). Raises
    InvalidProduct (bad item) or ConfigError (collection not published) naming the item, with nothing
    of its batch written; DatabaseUnavailable when pgstac cannot be reached.
    """
    if batch_size < 1:
        raise ValueError("batch_size must be at least 1")
    batches = _batches(items, batch_size)
    first = next(batches, None)
    if first is None:
        return 0
    loaded = 0
    touched: set[str] = set()
    with pgstac_db(dsn) as db:
        conn = db.connect()
        loader = _Loader(db)
        known = {r[0] for r in conn.execute("SELECT id FROM pgstac.collections")}
        try:
            for batch in itertools.chain([first], batches):
                # keyed by (collection, id): twice the same id in one partition breaks pypgstac's insert
                unique = {_check(item, known): item for item in batch}
                loader.load_items(iter(unique.values()), insert_mode=Methods.delsert, chunksize=len(unique))
                touched.update(cid for cid, _ in unique)
                loaded += len(unique)
        except (InvalidProduct, ConfigError) as exc:
            for cid in sorted(touched):  # the earlier batches are committed: extents follow them
                _refresh_extent(conn, cid)
            raise type(exc)(f"{exc.message}; none of its batch written, {loaded} items before it were") from None
        for cid in sorted(touched):
            _refresh_extent(conn, cid)
    return loaded


def delete_items(
    dsn: str,
    collection_id: str,
    item_ids: Sequence[str],
    *,
    batch_size: int = 1000,
    on_deleted: Callable[[psycopg.Connection[Any], list[str]], None] | None = None,
) -> int:
    """Delete items of one collection by id (unknown ids are ignored); returns how many were deleted.

    One transaction, extent refresh included: a crash removes nothing, and no reader ever sees the
    items gone with the old extent. ``on_deleted(conn, ids)`` runs after each batch's delete in that
    transaction, so a caller's record of the deletion (same database) commits with it or not at all.
    """
    if not item_ids:
        return 0
    deleted = 0
    with pgstac_db(dsn) as db:
        conn = db.connect()
        with conn.transaction():
            for start in range(0, len(item_ids), batch_size):
                batch = list(item_ids[start : start + batch_size])
                cur = conn.execute(
                    "DELETE FROM pgstac.items WHERE collection = %s AND id = ANY(%s)", [collection_id, batch]
                )
                deleted += cur.rowcount
                if on_deleted is not None:
                    on_deleted(conn, batch)
            if deleted:
                _refresh_extent(conn, collection_id)
    return deleted


def get_item(dsn: str, collection_id: str, item_id: str) -> Item | None:
    """The item as the STAC API serves it (hydrated), or None."""
    with pgstac_db(dsn) as db:
        row = db.connect().execute("SELECT pgstac.get_item(%s, %s)", [item_id, collection_id]).fetchone()
    return row[0] if row is not None and isinstance(row[0], dict) else None


def item_ids(dsn: str, collection_id: str) -> list[str]:
    with pgstac_db(dsn) as db:
        rows = (
            db.connect()
            .execute("SELECT id FROM pgstac.items WHERE collection = %s ORDER BY id", [collection_id])
            .fetchall()
        )
    return [r[0] for r in rows]


def item_pages(
    dsn: str, collection_id: str, *, page_size: int = 500
) -> Iterator[list[tuple[str, dict[str, Any], str | None]]]:
    """A collection's items as (id, assets, ``updated``), in pages, ordered as a store lists their
    objects: by ``{id}/`` in byte order (``COLLATE "C"``, whatever the database's collation).

    The sorted ids come from one server-side cursor (one sort of the ids, read a page at a time),
    each page's assets by their ids through the partition's primary key: the content of only one
    page is in memory. Assets are pgstac's stored form: fields equal to the collection's item_assets
    are stripped (hrefs, sizes and checksums never are).
    """
    with pgstac_db(dsn) as db:
        conn = db.connect()
        with conn.transaction(), conn.cursor(name="item_pages") as ids:
            ids.execute(
                "SELECT id FROM pgstac.items WHERE collection = %s ORDER BY (id || '/') COLLATE \"C\"",
                [collection_id],
            )
            while page := [r[0] for r in ids.fetchmany(page_size)]:
                rows = conn.execute(
                    "SELECT id, content -> 'assets', content -> 'properties' ->> 'updated' FROM pgstac.items"
                    " WHERE collection = %s AND id = ANY(%s)",
                    [collection_id, page],
                ).fetchall()
                found = {r[0]: (r[0], r[1] if isinstance(r[1], dict) else {}, r[2]) for r in rows}
                yield [found[i] for i in page if i in found]


def item_updates(dsn: str, collection_id: str, item_ids: Sequence[str]) -> dict[str, str | None]:
    """The ``updated`` property of those of ``item_ids`` still in the collection."""
    with pgstac_db(dsn) as db:
        rows = (
            db.connect()
            .execute(
                "SELECT id, content -> 'properties' ->> 'updated' FROM pgstac.items WHERE collection = %s"
                " AND id = ANY(%s)",
                [collection_id, list(item_ids)],
            )
            .fetchall()
        )
    return {r[0]: r[1] for r in rows}


def items_updated_since(
    dsn: str, collection_id: str, since: datetime | None, *, page_size: int = 500
) -> Iterator[list[Item]]:
    """A collection's items (hydrated, as the API serves them) whose ``updated`` is at or after
    ``since`` (all when None), in pages of ``page_size``, by id; one server-side cursor."""
    where = "i.collection = %s"
    params: list[Any] = [collection_id]
    if since is not None:
        where += " AND (i.content -> 'properties' ->> 'updated')::timestamptz >= %s"
        params.append(since)
    with pgstac_db(dsn) as db:
        conn = db.connect()
        with conn.transaction(), conn.cursor(name="items_updated_since") as cur:
            cur.execute(
                f"SELECT pgstac.content_hydrate(i) FROM pgstac.items i WHERE {where} ORDER BY i.id",
                params,
            )
            while page := [r[0] for r in cur.fetchmany(page_size)]:
                yield page
