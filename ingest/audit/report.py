"""What an audit found and what a repair did, as an operator reads it and as ``--json`` prints it. Pure."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from ingest.audit.plan import Problem, Unowned
from ingest.errors import IngestError
from ingest.units import human_size

# Findings kept in detail per collection; beyond, they are counted only. A store that lost everything
# would otherwise hold every asset of the catalogue in memory (and print it).
LISTED = 10_000


class AuditFindings(IngestError):
    """The audit found broken items or orphan objects (EX_DATAERR: the catalogue and the store disagree)."""

    exit_code = 65


@dataclass(frozen=True)
class BrokenItem:
    item_id: str
    product_id: str | None  # None: an item no product of ours made
    state: str | None
    problems: tuple[Problem, ...]

    def line(self) -> str:
        owner = f"product {self.product_id}, {self.state}" if self.product_id else "no product of ours"
        return f"  broken {self.item_id} ({owner}): " + "; ".join(p.text() for p in self.problems)

    def to_dict(self) -> dict[str, Any]:
        return {
            "item_id": self.item_id,
            "product_id": self.product_id,
            "state": self.state,
            "problems": [
                {"asset": p.asset, "key": p.key, "problem": p.kind, "expected": p.expected, "found": p.found}
                for p in self.problems
            ],
        }


def _iso(when: datetime) -> str:
    return when.astimezone(UTC).isoformat(timespec="seconds").replace("+00:00", "Z")


def _orphan(u: Unowned) -> dict[str, Any]:
    return {
        "key": u.obj.key,
        "size": u.obj.size,
        "last_modified": _iso(u.obj.last_modified),
        "inside_item": u.group if u.in_item else None,
    }


@dataclass
class Repair:
    requeued: list[str] = field(default_factory=list)  # product ids given back to the queue
    items_left: list[tuple[str, str]] = field(default_factory=list)  # (item id, why it was not re-queued)
    deleted: list[str] = field(default_factory=list)  # orphan keys deleted
    orphans_left: list[tuple[str, str]] = field(default_factory=list)  # (key, why it stays)

    def lines(self) -> list[str]:
        out = [
            f"  repair: {len(self.requeued)} product(s) re-queued (a worker processing them mends their items),"
            f" {len(self.deleted)} orphan object(s) deleted"
        ]
        out += [f"  not re-queued {item}: {why}" for item, why in self.items_left]
        out += [f"  left {key}: {why}" for key, why in self.orphans_left]
        return out

    def to_dict(self) -> dict[str, Any]:
        return {
            "requeued": self.requeued,
            "items_left": [{"item_id": i, "why": w} for i, w in self.items_left],
            "deleted": self.deleted,
            "orphans_left": [{"key": k, "why": w} for k, w in self.orphans_left],
        }


@dataclass
class Report:
    collection: str
    started_at: datetime
    deep: bool = False
    scheduled: bool = False
    finished_at: datetime | None = None
    items: int = 0  # items checked
    assets: int = 0  # assets checked (their objects looked for)
    present: int = 0  # of those, found with the recorded size
    unchecked_assets: int = 0  # hrefs outside our bucket and collection prefix: not ours to check
    objects: int = 0  # objects listed under the collection prefix
    in_flight: int = 0  # items skipped: their product is being processed right now
    recent: int = 0  # unowned objects newer than the grace: perhaps an upload still running
    without_checksum: int = 0  # --deep: assets with no SHA-256 recorded to compare
    broken: list[BrokenItem] = field(default_factory=list)
    broken_count: int = 0
    orphans: list[Unowned] = field(default_factory=list)
    orphan_count: int = 0
    orphan_bytes: int = 0
    audit_id: int | None = None
    repair: Repair | None = None

    @property
    def found(self) -> bool:
        return bool(self.broken_count or self.orphan_count)

    @property
    def seconds(self) -> float:
        return ((self.finished_at or self.started_at) - self.started_at).total_seconds()

    def add_broken(self, item: BrokenItem) -> None:
        self.broken_count += 1
        if len(self.broken) < LISTED:
            self.broken.append(item)

    def add_orphan(self, u: Unowned) -> None:
        self.orphan_count += 1
        self.orphan_bytes += u.obj.size
        if len(self.orphans) < LISTED:
            self.orphans.append(u)

    def summary(self) -> str:
        if not self.found:
            return f"{self.collection}: every item whole, no orphan object"
        return (
            f"{self.collection}: {self.broken_count} broken item(s), {self.orphan_count} orphan object(s)"
            f" ({human_size(self.orphan_bytes)})"
        )

    def lines(self) -> list[str]:
        skipped = [
            f"{self.unchecked_assets} asset(s) outside this store's prefix not ours to check"
            if self.unchecked_assets
            else "",
            f"{self.in_flight} item(s) being processed skipped" if self.in_flight else "",
            f"{self.recent} object(s) too recent to judge" if self.recent else "",
            f"{self.without_checksum} asset(s) without a SHA-256 to compare" if self.without_checksum else "",
        ]
        head = (
            f"{self.collection}: {self.items} items, {self.assets} assets, {self.objects} objects checked"
            f" in {self.seconds:.1f} s{' (deep)' if self.deep else ''}"
        )
        out = [head + "".join(f"; {s}" for s in skipped if s)]
        out += [b.line() for b in self.broken]
        out += [f"  orphan {u.obj.key} ({human_size(u.obj.size)}, {_iso(u.obj.last_modified)})" for u in self.orphans]
        if len(self.broken) < self.broken_count or len(self.orphans) < self.orphan_count:
            out.append(f"  (the first {LISTED} broken items and orphans are listed)")
        out.append(self.summary())
        if self.repair is not None:
            out += self.repair.lines()
        return out

    def to_dict(self) -> dict[str, Any]:
        return {
            "collection": self.collection,
            "audit_id": self.audit_id,
            "started_at": _iso(self.started_at),
            "finished_at": _iso(self.finished_at) if self.finished_at else None,
            "seconds": round(self.seconds, 3),
            "deep": self.deep,
            "scheduled": self.scheduled,
            "items": self.items,
            "assets": self.assets,
            "present": self.present,
            "unchecked_assets": self.unchecked_assets,
            "objects": self.objects,
            "in_flight": self.in_flight,
            "recent_objects": self.recent,
            "without_checksum": self.without_checksum,
            "broken_items": self.broken_count,
            "orphan_objects": self.orphan_count,
            "orphan_bytes": self.orphan_bytes,
            "broken": [b.to_dict() for b in self.broken],
            "orphans": [_orphan(u) for u in self.orphans],
            "listed_in_full": len(self.broken) == self.broken_count and len(self.orphans) == self.orphan_count,
            "repair": self.repair.to_dict() if self.repair is not None else None,
        }
