"""What a reconciliation found and what its repair did, as an operator reads it and as ``--json`` prints it. Pure."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from ingest.upstream.compare import KINDS, Differences, Kind

EXAMPLES = 10  # per kind in the text report; --json lists every id

_TITLE: dict[Kind, str] = {
    "missing": "missing here",
    "gone": "gone upstream",
    "superseded": "superseded",
    "checksum": "checksum changed",
}
_MEANS: dict[Kind, str] = {
    "missing": "listed upstream, never recorded here",
    "gone": "catalogued here, no longer listed upstream",
    "superseded": "upstream lists a newer processing of a product held here",
    "checksum": "same id, upstream checksum differs from the one recorded",
}


def _short(checksum: str) -> str:
    """A checksum as the text report shows it (the JSON has it whole)."""
    return checksum if len(checksum) <= 20 else checksum[:16] + "..."


def _iso(when: datetime) -> str:
    return when.astimezone(UTC).isoformat(timespec="seconds").replace("+00:00", "Z")


@dataclass
class Repair:
    """What ``--repair`` did, and what it left (each with why)."""

    queued: list[str] = field(default_factory=list)  # missing, or newer processings: recorded and queued
    reprocess: list[str] = field(default_factory=list)  # checksum changed: given back to the pipeline, queued
    retired: list[str] = field(default_factory=list)  # gone upstream, retired (item and objects removed)
    left: list[tuple[Kind, str, str]] = field(default_factory=list)  # (kind, product id, why)

    def left_of(self, kind: Kind) -> int:
        return sum(1 for k, _, _ in self.left if k == kind)

    def lines(self) -> list[str]:
        out = [
            f"  repair: {len(self.queued)} product(s) recorded and queued, {len(self.reprocess)} queued to be"
            f" processed again (checksum changed), {len(self.retired)} retired"
        ]
        out += [f"  left {kind} {pid}: {why}" for kind, pid, why in self.left[:EXAMPLES]]
        if len(self.left) > EXAMPLES:
            out.append(f"  ... and {len(self.left) - EXAMPLES} more left (--json lists them)")
        return out

    def to_dict(self) -> dict[str, Any]:
        return {
            "queued": self.queued,
            "reprocess": self.reprocess,
            "retired": self.retired,
            "left": [{"kind": k, "id": i, "why": w} for k, i, w in self.left],
        }


@dataclass
class Report:
    collection: str
    start: datetime
    end: datetime
    bbox: tuple[float, float, float, float] | None
    removed: str  # the collection's upstream.removed policy: keep | retire
    started_at: datetime
    scheduled: bool = False
    finished_at: datetime | None = None
    pages: int = 0  # search pages read
    chunks: int = 0  # windows of a day searched
    differences: Differences = field(default_factory=Differences)
    repair: Repair | None = None

    @property
    def seconds(self) -> float:
        return ((self.finished_at or self.started_at) - self.started_at).total_seconds()

    @property
    def found(self) -> int:
        return self.differences.found

    def counts(self) -> dict[Kind, int]:
        return self.differences.counts()

    @property
    def unrepaired(self) -> int:
        """Differences this run leaves as they were: all of them without a repair."""
        return self.found if self.repair is None else len(self.repair.left)

    @property
    def exit_code(self) -> int:
        """0: no difference, or every one repaired (or its repair under way); 1: differences remain."""
        return 1 if self.unrepaired else 0

    def summary(self) -> str:
        if not self.found:
            return f"{self.collection}: no difference with upstream"
        parts = ", ".join(f"{n} {_TITLE[k]}" for k, n in self.counts().items() if n)
        return f"{self.collection}: {self.found} difference(s): {parts}"

    def _examples(self, kind: Kind) -> list[str]:
        d = self.differences
        if kind == "missing":
            return d.missing
        if kind == "gone":
            return [f"{g}  (upstream.removed: {self.removed})" for g in d.gone]
        if kind == "superseded":
            return [
                f"{s.old} -> {s.new}  (newer {'not recorded here' if s.new_state is None else s.new_state}"
                f"{'; old one still listed' if s.old_listed else ''})"
                for s in d.superseded
            ]
        return [
            f"{c.id}  ({c.state}): recorded {_short(c.recorded)}, upstream {_short(c.upstream)}" for c in d.checksum
        ]

    def lines(self, examples: int = EXAMPLES) -> list[str]:
        d = self.differences
        area = f" over {','.join(f'{v:g}' for v in self.bbox)}" if self.bbox else ""
        out = [
            f"{self.collection}: sensed {_iso(self.start)} .. {_iso(self.end)}{area}: {d.listed} listed upstream,"
            f" {d.held} catalogued here ({self.pages} page(s) in {self.chunks} day(s), {self.seconds:.1f} s)"
        ]
        for kind in KINDS:
            out.append(f"  {_TITLE[kind]:17} {d.count(kind):6}   {_MEANS[kind]}")
        for kind in KINDS:
            shown = self._examples(kind)
            out += [f"  {kind:10} {line}" for line in shown[:examples]]
            if len(shown) > examples:
                out.append(f"  {kind:10} ... and {len(shown) - examples} more (--json lists them all)")
        beside = [
            f"{d.pending} recorded and on their way" if d.pending else "",
            f"{d.invalid} recorded invalid (ingest retry --state invalid)" if d.invalid else "",
            f"{d.retired} retired here" if d.retired else "",
            f"{d.older} older processing(s) of what is listed or held" if d.older else "",
            f"{len(d.replaced)} held with a newer processing held too (both kept)" if d.replaced else "",
            f"{d.not_comparable} checksum(s) not comparable" if d.not_comparable else "",
        ]
        if any(beside):
            out.append("  not differences: " + "; ".join(b for b in beside if b))
        out.append(self.summary())
        if self.repair is not None:
            out += self.repair.lines()
        return out

    def to_dict(self) -> dict[str, Any]:
        d = self.differences
        return {
            "collection": self.collection,
            "start": _iso(self.start),
            "end": _iso(self.end),
            "bbox": list(self.bbox) if self.bbox else None,
            "started_at": _iso(self.started_at),
            "finished_at": _iso(self.finished_at) if self.finished_at else None,
            "seconds": round(self.seconds, 3),
            "scheduled": self.scheduled,
            "pages": self.pages,
            "listed": d.listed,
            "catalogued": d.held,
            "counts": self.counts(),
            "missing": d.missing,
            "gone": d.gone,
            "superseded": [
                {"old": s.old, "new": s.new, "new_state": s.new_state, "old_listed": s.old_listed} for s in d.superseded
            ],
            "checksum": [
                {"id": c.id, "state": c.state, "recorded": c.recorded, "upstream": c.upstream} for c in d.checksum
            ],
            "not_differences": {
                "pending": d.pending,
                "invalid": d.invalid,
                "retired": d.retired,
                "older": d.older,
                "not_comparable": d.not_comparable,
                "replaced": [{"old": r.old, "new": r.new, "old_listed": r.old_listed} for r in d.replaced],
            },
            "removed": self.removed,
            "repair": self.repair.to_dict() if self.repair is not None else None,
            "exit_code": self.exit_code,
        }
