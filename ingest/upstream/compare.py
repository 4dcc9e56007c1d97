"""The comparison of the provider's inventory with ours over a window of sensing time. Pure.

Inputs: what the provider lists (``Listed``: one per product of the search, which reads a little
beyond the window on both sides) and our rows (``Ours``: the products recorded under the ids the
provider listed, plus our catalogued products around the window, each flagged ``in_window`` when its
sensing time and item footprint fall in the window and area). Output: ``Differences``.

The four kinds of difference:

* **missing** here: the provider lists a product (sensed in the window) we never recorded, and no
  newer processing of it that it also lists or we hold. A product recorded in any state is *not*
  missing: discovered, failed or in flight, the pipeline owns it (the scheduler's reconciler queues
  what is due); invalid, an operator decided (``ingest retry``); retired, removed on purpose. Those
  are counted beside the differences, never repaired from here.
* **gone** upstream: a catalogued product of ours in the window that the provider no longer lists,
  and of which it lists no newer processing (that is *superseded*) and we hold none (that is a
  replacement, for the replacement policy).
* **superseded**: the provider lists a newer processing (``names``) of a product we hold (catalogued),
  and we do not hold that newer one yet (not recorded, or recorded and not catalogued yet).
* **checksum** changed: the provider lists a product under the id we recorded, with another
  checksum than the one we recorded. Checksums of different algorithms (a provider that moved from
  MD5 to BLAKE3) cannot be compared and are counted as such, not as a difference.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Literal

from ingest.stages.checksums import parse_checksum
from ingest.upstream.names import ProductName, parse

Kind = Literal["missing", "gone", "superseded", "checksum"]
KINDS: tuple[Kind, ...] = ("missing", "gone", "superseded", "checksum")

CATALOGUED = "catalogued"
RETIRED = "retired"
INVALID = "invalid"


@dataclass(frozen=True)
class Listed:
    """A product as the provider lists it (the search's ``ProviderProduct``, what the comparison needs)."""

    id: str
    checksum: str | None
    sensing: datetime | None
    published: datetime | None


@dataclass(frozen=True)
class Ours:
    """A product as we recorded it (``ingest.products``)."""

    id: str
    state: str
    checksum: str | None
    published: datetime | None
    in_window: bool = False  # catalogued, sensed in the window, its item's footprint in the area


@dataclass(frozen=True)
class Superseded:
    old: str  # ours, catalogued
    new: str  # the newer processing the provider lists
    new_state: str | None  # None: never recorded here; else its state (on its way, invalid, ...)
    old_listed: bool  # the provider still lists the old one too


@dataclass(frozen=True)
class ChecksumChanged:
    id: str
    state: str  # ours
    recorded: str
    upstream: str


@dataclass(frozen=True)
class Replaced:
    """A catalogued product of which we catalogued a newer processing too: what becomes of the old one
    is the replacement policy's decision (today: both kept; see ``ingest.upstream.repair.replacement``)."""

    old: str
    new: str
    old_listed: bool


@dataclass
class Differences:
    missing: list[str] = field(default_factory=list)
    gone: list[str] = field(default_factory=list)
    superseded: list[Superseded] = field(default_factory=list)
    checksum: list[ChecksumChanged] = field(default_factory=list)
    # beside the differences
    listed: int = 0  # products the provider lists in the window
    held: int = 0  # catalogued products of ours in the window
    matched: int = 0  # listed in the window under an id we recorded (and did not retire)
    not_comparable: int = 0  # of those, checksums missing on a side or of different algorithms
    pending: int = 0  # listed, recorded, on their way (discovered, failed, in flight)
    invalid: int = 0  # listed, recorded invalid
    retired: int = 0  # listed, retired here (by retention, or as gone upstream)
    older: int = 0  # listed, unrecorded, older than a processing listed too or held here: not wanted
    replaced: list[Replaced] = field(default_factory=list)

    def count(self, kind: Kind) -> int:
        return len(getattr(self, kind))

    def counts(self) -> dict[Kind, int]:
        return {k: self.count(k) for k in KINDS}

    @property
    def found(self) -> int:
        return sum(self.counts().values())


def same_checksum(recorded: str | None, upstream: str | None) -> bool | None:
    """True or False when the two can be compared; None when one is missing or they use different
    algorithms. Both are read as STAC multihash or ``algo:hex`` (case and spelling do not matter);
    text neither form is compared as it is."""
    if not recorded or not upstream:
        return None
    try:
        a, b = parse_checksum(recorded), parse_checksum(upstream)
    except ValueError:
        return recorded.strip().lower() == upstream.strip().lower()
    if a.algorithm != b.algorithm:
        return None
    return a.hexdigest == b.hexdigest


def _newer(a: ProductName, a_published: datetime | None, b: ProductName, b_published: datetime | None) -> bool:
    """``a`` is a newer processing of ``b``'s acquisition: by the names, or, when the names do not
    order processings (Sentinel-1), by the provider's publication time."""
    if a.key != b.key or a.id == b.id:
        return False
    by_name = a.newer_than(b)
    if by_name is not None:
        return by_name
    return a_published is not None and b_published is not None and a_published > b_published


def compare(listed: Iterable[Listed], ours: Iterable[Ours], *, start: datetime, end: datetime) -> Differences:
    """What differs between the provider's list and our rows, for products sensed in ``[start, end)``.

    ``listed`` may hold products sensed outside the window (a search margin): they count as listed, so
    none of ours is called gone for a sensing time the provider rounds differently, but only those in
    the window are judged missing, superseded or changed. A listed product without a sensing time is
    taken as in the window. The same id listed twice counts once (the last).
    """
    up = {p.id: p for p in listed}
    mine = {r.id: r for r in ours}
    names = {i: n for i in {*up, *mine} if (n := parse(i)) is not None}
    by_key: dict[tuple[str, ...], list[str]] = {}
    for i, n in names.items():
        by_key.setdefault(n.key, []).append(i)

    def published(i: str) -> datetime | None:
        return up[i].published if i in up else mine[i].published if i in mine else None

    def newer_ids(i: str, among: Iterable[str]) -> list[str]:
        """Ids of ``among`` that are newer processings of ``i``'s acquisition."""
        n = names.get(i)
        if n is None:
            return []
        return [o for o in among if o in names and _newer(names[o], published(o), n, published(i))]

    def siblings(i: str) -> list[str]:
        n = names.get(i)
        return [o for o in by_key.get(n.key, []) if o != i] if n is not None else []

    def live(i: str) -> bool:
        return i in mine and mine[i].state != RETIRED

    def held(i: str) -> bool:
        return i in mine and mine[i].state == CATALOGUED

    out = Differences()
    for p in up.values():
        if p.sensing is not None and not start <= p.sensing < end:
            continue
        out.listed += 1
        row = mine.get(p.id)
        if row is not None and row.state == RETIRED:
            out.retired += 1
            continue
        if row is not None:
            out.matched += 1
            same = same_checksum(row.checksum, p.checksum)
            if same is None:
                out.not_comparable += 1
            elif not same:
                assert row.checksum is not None and p.checksum is not None  # compared
                out.checksum.append(ChecksumChanged(p.id, row.state, row.checksum, p.checksum))
            if row.state == INVALID:
                out.invalid += 1
            elif row.state != CATALOGUED:
                out.pending += 1
            if row.state == CATALOGUED:
                continue
        # not held: a newer processing of something we hold? Else, if unrecorded, missing or unwanted
        others = siblings(p.id)
        if newer_ids(p.id, [o for o in others if o in up or live(o)]):
            if row is None:
                out.older += 1  # a newer one is listed or ours: that one is judged
            continue
        older_held = [o for o in others if held(o) and p.id in newer_ids(o, [p.id])]
        if older_held:
            old = max(older_held, key=lambda o: (names[o].version or (), published(o) or start, o))
            out.superseded.append(Superseded(old, p.id, row.state if row else None, old in up))
        elif row is None:
            out.missing.append(p.id)
    for r in mine.values():
        if not (r.in_window and r.state == CATALOGUED):
            continue
        out.held += 1
        newer_held = [o for o in newer_ids(r.id, siblings(r.id)) if held(o)]
        if newer_held:
            out.replaced.append(Replaced(r.id, max(newer_held), r.id in up))
            continue
        if r.id in up or newer_ids(r.id, [o for o in siblings(r.id) if o in up]):
            continue  # listed, or superseded by a newer processing listed (reported above)
        out.gone.append(r.id)
    out.missing.sort()
    out.gone.sort()
    out.superseded.sort(key=lambda s: (s.old, s.new))
    out.checksum.sort(key=lambda c: c.id)
    out.replaced.sort(key=lambda r: (r.old, r.new))
    return out


def merge(parts: Sequence[Differences]) -> Differences:
    """The differences of consecutive windows as one (each product is judged in one window only)."""
    out = Differences()
    for d in parts:
        out.missing += d.missing
        out.gone += d.gone
        out.superseded += d.superseded
        out.checksum += d.checksum
        out.replaced += d.replaced
        for name in ("listed", "held", "matched", "not_comparable", "pending", "invalid", "retired", "older"):
            setattr(out, name, getattr(out, name) + getattr(d, name))
    return out
