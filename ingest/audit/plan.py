"""The audit's pure part: which objects an item's assets name, and one pass matching a listing to items.

Items arrive by their key prefix ``{item id}/`` in byte order (the pgstac query sorts with
``COLLATE "C"``), objects in the store's listing order, in which each item's objects are contiguous
(byte order on S3, MinIO and Ceph; folder by folder on SeaweedFS). So a single merge, reading the
listing a few groups ahead, pairs every object with the item whose prefix it lies under while holding
about one item's objects at a time: memory follows an item, not the catalogue, and no object needs a
HEAD.

An object no asset names is ``Unowned``; whether it is an orphan depends on who else may own its
prefix (a pending retirement, a product being processed) and on its age (an upload in progress),
which ``judge`` decides. Orphans are deleted a whole item prefix at a time (``by_prefix``), the only
deletion the store adapter offers: never a prefix a live item shares, never a prefix written to since
the audit (``unchanged``), and none at all when orphans outnumber what the items name
(``refuse_deletion``).
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any, Literal, Protocol

from ingest.stages.checksums import parse_checksum

Kind = Literal["missing", "size", "checksum"]
Verdict = Literal["orphan", "recent", "owned"]


class Listed(Protocol):
    """An entry of a listing (the store adapter's ListedObject)."""

    @property
    def key(self) -> str: ...
    @property
    def size(self) -> int: ...
    @property
    def last_modified(self) -> datetime: ...


@dataclass(frozen=True)
class Layout:
    """Where this store keeps a collection: only keys under ``collection_prefix`` of ``bucket`` are ours."""

    bucket: str
    collection_prefix: str  # "ingest/sentinel-2-l2a/"
    public_base_url: str | None = None

    def key_of(self, asset: Mapping[str, Any]) -> str | None:
        """The key under the collection prefix that an asset names (its ``s3://`` alternate first, as
        describe writes it next to an HTTPS href), or None when it names anything else."""
        alternate = asset.get("alternate")
        s3 = alternate.get("s3") if isinstance(alternate, Mapping) else None
        for href in (s3.get("href") if isinstance(s3, Mapping) else None, asset.get("href")):
            if not isinstance(href, str):
                continue
            for base in (f"s3://{self.bucket}/", f"{self.public_base_url}/" if self.public_base_url else None):
                if base and href.startswith(base):
                    key = href[len(base) :]
                    return key if key.startswith(self.collection_prefix) else None
        return None


@dataclass(frozen=True)
class Expected:
    """An object an asset names, with what the item recorded about it."""

    asset: str
    key: str
    size: int | None  # file:size; None: not recorded (presence is still checked)
    sha256: str | None  # from file:checksum when it is a SHA-256 multihash


@dataclass(frozen=True)
class ItemAssets:
    item_id: str
    updated: str | None  # the item's ``updated``: a changed value at confirmation means it was reloaded
    expected: tuple[Expected, ...]  # under the item's own prefix: checked by the merge
    elsewhere: tuple[Expected, ...]  # under the collection prefix but not the item's own: one HEAD each
    unchecked: int  # assets naming something outside our bucket and collection prefix

    @property
    def group(self) -> str | None:
        """The item's prefix relative to the collection's; None when its id cannot be a key segment."""
        return None if "/" in self.item_id or not self.item_id else self.item_id + "/"


def _size(asset: Mapping[str, Any]) -> int | None:
    size = asset.get("file:size")
    return size if isinstance(size, int) and not isinstance(size, bool) else None


def _sha256(asset: Mapping[str, Any]) -> str | None:
    text = asset.get("file:checksum")
    if not isinstance(text, str):
        return None
    try:
        checksum = parse_checksum(text)
    except ValueError:
        return None
    return checksum.hexdigest if checksum.algorithm == "sha256" else None


def item_assets(item_id: str, assets: Mapping[str, Any], updated: str | None, layout: Layout) -> ItemAssets:
    """What one item expects of the store. Values that are not objects are skipped: pgstac stores items
    stripped against the collection's item_assets and marks the assets an item lacks with a string."""
    own = f"{layout.collection_prefix}{item_id}/"
    expected: list[Expected] = []
    elsewhere: list[Expected] = []
    unchecked = 0
    for name, asset in sorted(assets.items()):
        if not isinstance(asset, Mapping):
            continue
        key = layout.key_of(asset)
        if key is None:
            unchecked += 1
            continue
        entry = Expected(name, key, _size(asset), _sha256(asset))
        (expected if "/" not in item_id and key.startswith(own) else elsewhere).append(entry)
    return ItemAssets(item_id, updated, tuple(expected), tuple(elsewhere), unchecked)


@dataclass(frozen=True)
class Problem:
    asset: str
    key: str
    kind: Kind
    expected: int | str | None = None  # the recorded size or SHA-256
    found: int | str | None = None  # what the store has (None: nothing, or no SHA-256 in its metadata)

    def text(self) -> str:
        if self.kind == "missing":
            return f"{self.asset} missing"
        if self.kind == "size":
            return f"{self.asset} is {self.found} bytes, recorded {self.expected}"
        return f"{self.asset} sha256 {self.found or 'not in its metadata'}, recorded {self.expected}"


def compare_size(e: Expected, found: Listed | None) -> Problem | None:
    if found is None:
        return Problem(e.asset, e.key, "missing", e.size)
    if e.size is not None and found.size != e.size:
        return Problem(e.asset, e.key, "size", e.size, found.size)
    return None


def compare_sha256(e: Expected, found: str | None) -> Problem | None:
    """The deep check: the SHA-256 the upload stored in the object's metadata against ``file:checksum``."""
    if e.sha256 is None or found == e.sha256:
        return None
    return Problem(e.asset, e.key, "checksum", e.sha256, found)


@dataclass(frozen=True)
class ItemMatch:
    item: ItemAssets
    problems: tuple[Problem, ...]  # missing or of another size than recorded
    present: tuple[tuple[Expected, Listed], ...]  # there with the recorded size (what --deep looks at)


@dataclass(frozen=True)
class Unowned:
    """A listed object no asset of the item whose prefix it lies under names (or under no item)."""

    obj: Listed
    group: str | None  # the item-id segment of its key; None when it lies directly under the collection prefix
    item_updated: str | None = None  # set when a catalogued item has this prefix
    in_item: bool = False


def group_of(relative: str) -> str | None:
    head, slash, _ = relative.partition("/")
    return head if slash and head else None


def _runs(objects: Iterable[Listed], prefix: str) -> Iterator[tuple[str | None, list[tuple[str, Listed]]]]:
    """The listing as runs of one group each. A group's keys are contiguous in any listing order (they
    share the prefix ``{group}/``), but the order of the groups is the server's: S3, MinIO and Ceph
    list in byte order of the whole key (``X-2/a`` before ``X/a``), SeaweedFS folder by folder (``X``
    before ``X-2``)."""
    group: str | None = None
    run: list[tuple[str, Listed]] = []
    for obj in objects:
        if not obj.key.startswith(prefix):
            raise ValueError(f"the listing of {prefix!r} returned {obj.key!r}")
        rel = obj.key[len(prefix) :]
        g = group_of(rel)
        if run and g != group:
            yield group, run
            run = []
        group = g
        run.append((rel, obj))
    if run:
        yield group, run


def _passed(listed: str, item: str) -> bool:
    """``listed`` comes after ``item`` in both listing orders: nothing of ``item`` can follow it."""
    return listed > item and listed + "/" > item + "/"


def match(items: Iterable[ItemAssets], objects: Iterable[Listed], prefix: str) -> Iterator[ItemMatch | Unowned]:
    """Merge items (sorted by ``{group}/``, byte order) with the listing of ``prefix``, lazily.

    Yields one ItemMatch per item, in order, and one Unowned per object no asset of its item names,
    as soon as the merge has passed it. The listing is read ahead group by group until the item's
    group is found or passed in either server order (``_runs``): a few groups at most. Raises
    ValueError when the items are out of order.
    """
    runs = _runs(objects, prefix)
    ahead: dict[str | None, list[tuple[str, Listed]]] = {}  # groups read and not matched yet
    done = False

    def read_until(group: str) -> None:
        nonlocal done
        while not done and group not in ahead:
            try:
                g, run = next(runs)
            except StopIteration:
                done = True
                return
            ahead.setdefault(g, []).extend(run)
            if g is not None and _passed(g, group):
                return

    def unowned_before(group: str) -> Iterator[Unowned]:
        for g in [g for g in ahead if g is None or g + "/" < group + "/"]:
            for rel, obj in ahead.pop(g):
                yield Unowned(obj, group_of(rel))

    last_group = ""
    for item in items:
        if item.group is None:  # not a key segment: its assets are all "elsewhere"
            yield ItemMatch(item, (), ())
            continue
        group = item.group.rstrip("/")
        if group + "/" <= last_group + "/" and last_group:
            raise ValueError(f"items are not in key order ({group!r} after {last_group!r})")
        last_group = group
        read_until(group)
        yield from unowned_before(group)
        found = {obj.key: obj for _, obj in ahead.pop(group, [])}
        problems: list[Problem] = []
        present: list[tuple[Expected, Listed]] = []
        for e in item.expected:
            obj = found.get(e.key)
            problem = compare_size(e, obj)
            if problem is not None:
                problems.append(problem)
            elif obj is not None:
                present.append((e, obj))
        yield ItemMatch(item, tuple(problems), tuple(present))
        named = {e.key for e in item.expected}
        for key, obj in found.items():
            if key not in named:
                yield Unowned(obj, item.item_id, item.updated, in_item=True)
    for g, run in runs:
        ahead.setdefault(g, []).extend(run)
    for run in ahead.values():
        for rel, obj in run:
            yield Unowned(obj, group_of(rel))


def judge(u: Unowned, *, claimed: frozenset[str] | set[str], cutoff: datetime) -> Verdict:
    """``owned``: its prefix belongs to a pending retirement or to a product on its way (failed, in
    flight, re-queued), which will delete or reuse it; ``recent``: written after ``cutoff``, perhaps by
    an upload still running, whose item is not loaded yet; otherwise an orphan."""
    if u.group is not None and u.group in claimed:
        return "owned"
    if u.obj.last_modified > cutoff:
        return "recent"
    return "orphan"


def by_prefix(orphans: Sequence[Unowned]) -> tuple[dict[str, list[Unowned]], list[tuple[Unowned, str]]]:
    """Orphans grouped by the item prefix that can be deleted as a whole, and those that must stay (why).

    A prefix is deletable when no item has it: inside a live item's prefix, deleting the prefix would
    take the item's own objects along."""
    groups: dict[str, list[Unowned]] = {}
    stay: list[tuple[Unowned, str]] = []
    for u in orphans:
        if u.in_item:
            stay.append((u, f"inside the prefix of item {u.group}, which the catalogue serves; delete it by hand"))
        elif u.group is None:
            stay.append((u, "not under an item prefix; delete it by hand"))
        else:
            groups.setdefault(u.group, []).append(u)
    return groups, stay


def unchanged(orphans: Sequence[Unowned], listed_now: Sequence[Listed]) -> bool:
    """The re-listing of a prefix holds exactly the orphans the audit found there, unchanged: nothing
    new was written under it since (an upload that started meanwhile must not lose its objects)."""
    then = {u.obj.key: (u.obj.size, u.obj.last_modified) for u in orphans}
    now = {o.key: (o.size, o.last_modified) for o in listed_now}
    return then == now


def refuse_deletion(orphans: int, present: int) -> str | None:
    """Why no orphan may be deleted, or None. More orphans than objects the items name is what a
    database and a bucket that do not belong together look like (a restore, a wrong DSN): an audit
    would then call the catalogue's own objects orphans, and a repair must not empty the store."""
    if orphans > present:
        return (
            f"{orphans} orphans but only {present} objects named by items: is this the right database"
            " for this bucket? Delete them by hand if they really are garbage"
        )
    return None
