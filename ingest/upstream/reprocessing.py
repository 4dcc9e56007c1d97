"""The reprocessing policy: what becomes of a product once a newer processing of the same acquisition is
catalogued here (``upstream: {reprocessing: replace|keep}`` in the collection YAML).

``replace`` (the default): the older product is retired once the newer one is catalogued.

* Another item id (Sentinel-3 ids carry the processing): through retention's crash-safe path
  (``retirements.retire`` then ``retention.finish``, under the collection's retention lock): its item out
  of pgstac and into ``/deleted-items``, its objects deleted.
* The same item id (Sentinel-2 and Sentinel-1 ids leave the processing out): the newer product's item
  has already replaced the older one's in pgstac and its objects were written under the same prefix.
  The item is the newer one's now: it is neither deleted nor listed in ``/deleted-items`` (a harvester
  would drop the current item). The older product moves to ``retired`` with an event naming its
  successor and no retirement row, and the objects under the prefix that the newer item does not name
  (what the older processing had and the newer one has not) are deleted: no orphans.
* An older processing that comes to be processed after the newer one is catalogued (out of order: a
  reconciliation, a late harvest) is never processed: it moves from where it waits to ``retired`` with an
  event naming the newer product, before it is claimed (nothing downloaded, nothing written).

``keep``: both stay, each under an item id of its own, the older ones marked deprecated with the STAC
version extension (``ingest.upstream.versions``); nothing is retired here.

Only names that order their processings take part (Sentinel-2 and Sentinel-3, ``names.parse``); Sentinel-1
names do not (the unique id is a CRC) and other names have no acquisition: such products are left alone.
"""

from __future__ import annotations

import logging
import uuid
from collections.abc import Collection, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime

import psycopg

from ingest import retention
from ingest.adapters import pgstac
from ingest.adapters.s3 import ObjectStore
from ingest.audit.plan import Layout
from ingest.collections import CollectionSpec
from ingest.errors import IngestError, StateConflict
from ingest.settings import Settings
from ingest.state import repo
from ingest.state import retirements as rt
from ingest.state.machine import State, can_transition
from ingest.upstream import records
from ingest.upstream.names import ProductName, parse

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Held:
    """A product of the collection recorded here."""

    id: str
    state: str
    item_id: str | None


@dataclass(frozen=True)
class Decision:
    """What the policy does once ``product`` is (or is about to be) catalogued."""

    retire_shared: tuple[str, ...] = ()  # older catalogued products whose item is this product's item
    retire: tuple[str, ...] = ()  # older catalogued products with an item of their own
    superseded_by: str | None = None  # a newer processing of the same acquisition is catalogued already
    reasons: dict[str, str] = field(default_factory=dict, compare=False)

    @property
    def empty(self) -> bool:
        return not (self.retire_shared or self.retire or self.superseded_by)


def decide(policy: str, product: str, item_id: str | None, held: Sequence[Held]) -> Decision:
    """Pure. ``product``: the product catalogued (``item_id`` its item) or about to be processed (``item_id``
    None); ``held``: other products of the collection. Only catalogued held products of the same
    acquisition whose names order the two processings count."""
    me = parse(product)
    if policy != "replace" or me is None or me.version is None:
        return Decision()
    shared: list[str] = []
    own: list[str] = []
    newer: list[ProductName] = []
    reasons: dict[str, str] = {}
    for h in held:
        if h.id == product or h.state != State.CATALOGUED.value:
            continue
        other = parse(h.id)
        if other is None:
            continue
        is_newer = me.newer_than(other)
        if is_newer is None:
            continue
        if not is_newer:
            if other.version != me.version:
                newer.append(other)
            continue
        reasons[h.id] = f"replaced by the newer processing {product} ({other.processing} -> {me.processing})"
        (shared if item_id is not None and h.item_id == item_id else own).append(h.id)
    newest = max(newer, key=lambda n: n.version or ()).id if newer else None
    return Decision(tuple(sorted(shared)), tuple(sorted(own)), newest, reasons)


# Other catalogued products of the collection that may be processings of the same acquisition: sensed
# within a day of it (names parsed in Python), or sharing its item. Read through the (collection, state)
# index: linear in the collection's catalogued products (an index on sensing_at would bound it).
_HELD = """
SELECT p.id, p.state, p.item_id FROM ingest.products p, ingest.products me
WHERE me.id = %(id)s AND p.collection = me.collection AND p.state = 'catalogued' AND p.id <> me.id
  AND left(p.id, 3) = left(me.id, 3)
  AND (p.item_id = %(item)s OR p.sensing_at IS NULL OR me.sensing_at IS NULL
       OR p.sensing_at BETWEEN me.sensing_at - interval '1 day' AND me.sensing_at + interval '1 day')
ORDER BY p.id
"""


def held(conn: psycopg.Connection, product_id: str, item_id: str | None = None) -> list[Held]:
    name = parse(product_id)
    if name is None or name.version is None:  # takes no part: no query
        return []
    # in a transaction block of its own: on a caller's connection that is not autocommit, a bare read
    # would leave a transaction open, and every change the pipeline makes next would be a savepoint in it
    with conn.transaction():
        return [Held(*row) for row in conn.execute(_HELD, {"id": product_id, "item": item_id}).fetchall()]


def skip_if_superseded(
    conn: psycopg.Connection, spec: CollectionSpec, product_id: str, waiting: Collection[State]
) -> str | None:
    """Before a claim: when a newer processing of the product is catalogued and the collection replaces,
    retire the product where it waits (never processed over the newer one); returns the newer one's id,
    or None (go on)."""
    if spec.upstream.reprocessing != "replace":
        return None
    decision = decide(spec.upstream.reprocessing, product_id, None, held(conn, product_id))
    newer = decision.superseded_by
    if newer is None:
        return None
    states = [s for s in waiting if s is not State.CATALOGUED and can_transition(s, State.RETIRED)]
    message = (
        f"reprocessing: not processed, the newer processing {newer} is catalogued (upstream.reprocessing: replace)"
    )
    try:
        repo.transition(conn, product_id, states, State.RETIRED, message=message, details={"successor": newer})
    except StateConflict:
        return None  # not where it waits: the claim says what it is
    log.info("%s: %s", product_id, message, extra={"collection": spec.id, "product": product_id})
    return newer


def after_catalogued(
    conn: psycopg.Connection,
    settings: Settings,
    store: ObjectStore,
    spec: CollectionSpec,
    product_id: str,
    item_id: str,
) -> Decision:
    """Once ``product_id`` is catalogued as ``item_id``: retire the older processings it replaces."""
    decision = decide(spec.upstream.reprocessing, product_id, item_id, held(conn, product_id, item_id))
    c, where = spec.id, {"collection": spec.id, "product": product_id}
    if decision.superseded_by is not None:  # two processings processed at once, the older one last
        log.warning(
            "%s: catalogued although the newer processing %s is catalogued too (processed at the same time);"
            " both kept: ingest process --force %s to load the newer one again",
            product_id, decision.superseded_by, decision.superseded_by, extra=where,
        )  # fmt: skip
    if not (decision.retire or decision.retire_shared):
        return decision
    run_id = f"reprocessing-{datetime.now(UTC):%Y%m%dT%H%M%SZ}-{uuid.uuid4().hex[:8]}"
    with retention.exclusive(conn, c):
        if decision.retire_shared:
            _sweep(store, spec, item_id, settings)
            for old in decision.retire_shared:
                message = f"reprocessing: {decision.reasons[old]}; item {item_id} is the newer one's now"
                try:
                    repo.transition(
                        conn, old, State.CATALOGUED, State.RETIRED, message=message,
                        details={"successor": product_id, "run": run_id},
                    )  # fmt: skip
                except StateConflict:
                    continue
                log.info("%s: retired: %s", old, message, extra=where)
        if decision.retire:
            if not conn.autocommit:  # pgstac's own connection must see the retirement rows (workers' do)
                raise IngestError("retiring an older processing needs an autocommit connection")
            sizes = records.retirement_details(conn, c, decision.retire)
            chosen = [(pid, decision.reasons[pid], sizes.get(pid)) for pid in decision.retire]
            moved = rt.retire(conn, c, run_id, chosen, cause="reprocessing")
            report = retention.Report(c, run_id=run_id)
            retention.finish(
                conn, c, pgstac_dsn=settings.require_database_url(), store=store, report=report,
                batch_size=settings.retention_batch_size,
            )  # fmt: skip
            log.info("%s: retired %s (replaced by the newer processing)", product_id, ", ".join(moved), extra=where)
            for e in report.errors:
                log.error("%s: retirement of an older processing: %s", product_id, e, extra=where)
    return decision


def _sweep(store: ObjectStore, spec: CollectionSpec, item_id: str, settings: Settings) -> int:
    """Delete the objects under the item's prefix that its (newer) item does not name: what only the
    older processing had."""
    item = pgstac.get_item(settings.require_database_url(), spec.id, item_id)
    if item is None:
        return 0
    layout = Layout(store.bucket, store.collection_prefix(spec.id), store.public_base_url)
    named = {k for a in item.get("assets", {}).values() if (k := layout.key_of(a)) is not None}
    prefix = store.item_prefix(spec.id, item_id)
    stale = [k for k in store.list_keys(prefix) if k.startswith(prefix) and k not in named]
    if stale:
        store.delete_keys(stale, under=prefix)
        log.info("%s/%s: deleted %d objects only the older processing had", spec.id, item_id, len(stale))
    return len(stale)
