"""``--repair``: what can be done about each kind of difference, with the functions that already do it.

* missing, and the newer processing of a superseded product: recorded ``discovered`` and queued, the
  way a harvest or a backfill records and queues a new product (``harvest.to_discovered``,
  ``repo.insert_discovered``, ``ProductQueue.enqueue``). A newer processing already recorded and on
  its way is queued again (a no-op when its job waits); an invalid one is left (``ingest retry``).
  What then becomes of the older product is the replacement policy's call: ``replacement``, the hook.
* checksum changed: the product goes back to the pipeline with the provider's new checksum, size,
  download link and publication time recorded, attempts reset, and is queued: catalogued (and
  discovered) through ``claimed`` as ``ingest process --force`` and the audit's repair do
  (``ops.requeue_for_repair``), failed and invalid ones (any state that may go back to discovered)
  straight back as ``ingest retry`` does. One in flight is left: the next reconciliation sees it again.
* gone upstream: retired only when the collection says ``upstream: {removed: retire}``, through
  retention's crash-safe path (``retirements.retire`` then ``retention.finish``: item out of pgstac and
  into ``/deleted-items``, objects deleted), under the collection's retention lock. Never when the
  provider listed nothing at all for that day (a provider answering empty is likelier than a day
  withdrawn; ``--force`` overrides), nor when another live product shares the item (two processings of
  one acquisition make the same item id).
"""

from __future__ import annotations

import logging
import uuid
from collections.abc import Callable, Mapping, Sequence
from contextlib import AbstractContextManager, nullcontext
from datetime import UTC, datetime
from typing import Any, Literal

import psycopg

from ingest import ops, retention
from ingest.adapters.queue import ProductQueue
from ingest.adapters.s3 import ObjectStore
from ingest.collections import CollectionSpec
from ingest.errors import StateConflict
from ingest.harvest import to_discovered
from ingest.settings import Settings
from ingest.stages.artifacts import ProviderProduct
from ingest.state import repo
from ingest.state import retirements as rt
from ingest.state.machine import IN_FLIGHT, State, can_transition
from ingest.upstream import records
from ingest.upstream.compare import Differences, Replaced, Superseded
from ingest.upstream.report import Repair

log = logging.getLogger(__name__)

INSERT_BATCH = 500  # rows per insert statement (9 parameters each: far below PostgreSQL's limit)
_ON_ITS_WAY = {State.DISCOVERED.value, State.FAILED.value}
_IN_FLIGHT = {s.value for s in IN_FLIGHT}
_STATES = {s.value for s in State}


def replacement(spec: CollectionSpec, pair: Superseded | Replaced) -> Literal["keep"]:
    """The replacement policy's hook: what becomes of a product of ours once a newer processing of the
    same acquisition is listed (``Superseded``) or catalogued here too (``Replaced``).

    The reprocessing policy (``upstream.reprocessing``) is applied by the pipeline once the newer one is
    catalogued (``ingest.upstream.reprocessing.after_catalogued``), and an older one is never processed
    after a newer one is catalogued: a repair queues the newer one and the pipeline does the rest. Here
    nothing more is done; a pair left ``Replaced`` (``keep``, or a retirement that failed) is reported.
    """
    return "keep"


class Repairer:
    """Repairs one window after another (``chunk``); queues at the end (``finish``)."""

    def __init__(
        self,
        conn: psycopg.Connection,
        settings: Settings,
        store: ObjectStore,
        spec: CollectionSpec,
        *,
        force: bool = False,
        queue: Callable[[Settings], ProductQueue] = ProductQueue,
        queue_lock: AbstractContextManager[Any] | None = None,
    ) -> None:
        """``queue_lock``: held while enqueueing (the scheduler serialises its queue writes)."""
        self.conn, self.settings, self.store, self.spec, self.force = conn, settings, store, spec, force
        self.queue, self.queue_lock = queue, queue_lock or nullcontext()
        self.result = Repair()
        self.run_id = f"reconcile-{datetime.now(UTC):%Y%m%dT%H%M%SZ}-{uuid.uuid4().hex[:8]}"
        self._enqueue: list[str] = []

    def chunk(self, diff: Differences, listed: Mapping[str, ProviderProduct], *, day: str) -> None:
        """Repair what ``diff`` found in one window; ``listed``: the provider's products of that window."""
        self._record(diff, listed)
        self._reprocess(diff, listed)
        self._retire(diff.gone, listed_nothing=not listed, day=day)
        pairs: list[Superseded | Replaced] = [*diff.superseded, *diff.replaced]
        for pair in pairs:
            replacement(self.spec, pair)  # "keep": nothing to do yet

    def finish(self) -> Repair:
        if self._enqueue:
            with self.queue_lock, self.queue(self.settings) as q:
                q.enqueue(self._enqueue)
        log.info(
            "reconcile %s: repair recorded and queued %d, queued %d to be processed again, retired %d; left %d",
            self.spec.id, len(self.result.queued), len(self.result.reprocess), len(self.result.retired),
            len(self.result.left), extra={"collection": self.spec.id},
        )  # fmt: skip
        return self.result

    # ------------------------------------------------------------------ missing, superseded

    def _record(self, diff: Differences, listed: Mapping[str, ProviderProduct]) -> None:
        r = self.result
        new = [listed[i] for i in diff.missing]
        for s in diff.superseded:
            if s.new_state is None:
                new.append(listed[s.new])
            elif s.new_state == State.INVALID.value:
                r.left.append(
                    ("superseded", s.new, "the newer processing is invalid here (ingest retry --state invalid)")
                )
            else:  # on its way: queued again when due (a job now does no harm), or being processed
                if s.new_state in _ON_ITS_WAY:
                    self._enqueue.append(s.new)
                r.queued.append(s.new)
        for start in range(0, len(new), INSERT_BATCH):
            batch = new[start : start + INSERT_BATCH]
            inserted = repo.insert_discovered(self.conn, [to_discovered(self.spec, p) for p in batch])
            self._enqueue += inserted
            r.queued += [p.id for p in batch]  # not inserted: recorded meanwhile (a harvest), queued by it

    # ------------------------------------------------------------------ checksum changed

    def _reprocess(self, diff: Differences, listed: Mapping[str, ProviderProduct]) -> None:
        r = self.result
        by_state: dict[str, list[tuple[str, str]]] = {}
        fields: dict[str, dict[str, Any]] = {}
        for c in diff.checksum:
            p = listed[c.id]
            fields[c.id] = {
                "upstream_checksum": p.checksum, "size_bytes": p.size, "download_url": p.download_url,
                "published_at": p.published,
            }  # fmt: skip
            by_state.setdefault(c.state, []).append((c.id, f"upstream checksum changed: {c.recorded} -> {c.upstream}"))
        through_claim = by_state.pop(State.CATALOGUED.value, []) + by_state.pop(State.DISCOVERED.value, [])
        moved = ops.requeue_for_repair(
            self.conn, through_claim, by="reconcile", states=(State.CATALOGUED, State.DISCOVERED), fields=fields
        )
        r.left += [("checksum", pid, "changed state meanwhile") for pid, _ in through_claim if pid not in moved]
        for state, rest in by_state.items():  # failed, invalid (and any state that may go back)
            back = State(state) if state in _STATES else None
            if back is None or back in IN_FLIGHT or not can_transition(back, State.DISCOVERED):
                why = "being processed now: the next reconcile looks again" if back in IN_FLIGHT else f"it is {state}"
                r.left += [("checksum", pid, why) for pid, _ in rest]
                continue
            for pid, why in rest:
                try:
                    repo.transition(
                        self.conn, pid, back, State.DISCOVERED, message=f"reconcile: {why}; queued to be processed",
                        set_fields={**fields[pid], "attempts": 0, "next_attempt_at": None},
                    )  # fmt: skip
                except StateConflict:
                    r.left.append(("checksum", pid, "changed state meanwhile"))
                    continue
                moved.append(pid)
        self._enqueue += moved
        r.reprocess += moved

    # ------------------------------------------------------------------ gone upstream

    def _retire(self, gone: Sequence[str], *, listed_nothing: bool, day: str) -> None:
        r, c = self.result, self.spec.id
        if not gone:
            return
        if self.spec.upstream.removed == "keep":
            where = f" in {self.spec.path}" if self.spec.path else ""
            r.left += [("gone", pid, f"kept (upstream.removed: keep{where})") for pid in gone]
            return
        if listed_nothing and not self.force:
            why = f"upstream listed nothing at all for {day}: not retired unless --force"
            r.left += [("gone", pid, why) for pid in gone]
            return
        shared = records.item_shared(self.conn, c, gone)
        r.left += [("gone", pid, f"its item is also product {other}'s: not retired") for pid, other in shared.items()]
        sizes = records.retirement_details(self.conn, c, [pid for pid in gone if pid not in shared])
        reason = f"gone upstream: no longer listed by the provider (reconcile {self.run_id})"
        chosen = [(pid, reason, sizes[pid]) for pid in gone if pid in sizes]
        r.left += [("gone", pid, "no longer catalogued") for pid in gone if pid not in shared and pid not in sizes]
        if not chosen:
            return
        moved: list[str] = []
        done = retention.Report(c, run_id=self.run_id)
        try:
            with retention.exclusive(self.conn, c):
                batch = self.settings.retention_batch_size
                for start in range(0, len(chosen), batch):
                    moved += rt.retire(self.conn, c, self.run_id, chosen[start : start + batch], cause="upstream")
                retention.finish(
                    self.conn, c, pgstac_dsn=self.settings.require_database_url(), store=self.store, report=done,
                    batch_size=batch,
                )  # fmt: skip
        except retention.RetentionRunning as exc:
            r.left += [("gone", pid, exc.message) for pid, _, _ in chosen]
            return
        r.retired += moved
        r.left += [("gone", pid, "changed state meanwhile") for pid, _, _ in chosen if pid not in moved]
        r.left += [("gone", "-", f"retired, but: {e}") for e in done.errors]
