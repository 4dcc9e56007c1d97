"""The audit's pure part: which keys assets name, the merge of a listing with items, orphan verdicts,
what a repair may delete, and what the report says. No store, no database."""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from ingest.audit import plan, report
from ingest.audit.plan import Expected, ItemMatch, Layout, Problem, Unowned, item_assets, match
from ingest.audit.report import BrokenItem, Report
from ingest.stages.checksums import to_multihash

T0 = datetime(2026, 11, 30, 12, 0, tzinfo=UTC)
PREFIX = "ingest/c/"
LAYOUT = Layout("bkt", PREFIX, "https://data.example.org")


@dataclass(frozen=True)
class Obj:
    key: str
    size: int
    last_modified: datetime = T0


def asset(key: str, size: int = 10, checksum: str | None = None) -> dict[str, Any]:
    return {"href": f"s3://bkt/{key}", "file:size": size, **({"file:checksum": checksum} if checksum else {})}


def items(*specs: tuple[str, dict[str, Any]]) -> list[plan.ItemAssets]:
    return [item_assets(item_id, assets, "u1", LAYOUT) for item_id, assets in specs]


def test_key_of_takes_our_bucket_and_prefix_only_s3_alternate_first() -> None:
    assert LAYOUT.key_of({"href": "s3://bkt/ingest/c/I/B04.tif"}) == "ingest/c/I/B04.tif"
    assert LAYOUT.key_of({"href": "https://data.example.org/ingest/c/I/B04.tif"}) == "ingest/c/I/B04.tif"
    https_with_alternate = {"href": "https://cdn.example.org/x", "alternate": {"s3": {"href": "s3://bkt/ingest/c/I/a"}}}
    assert LAYOUT.key_of(https_with_alternate) == "ingest/c/I/a"
    for not_ours in (
        {"href": "s3://other-bucket/ingest/c/I/B04.tif"},
        {"href": "s3://bkt/ingest/other-collection/I/B04.tif"},  # our bucket, not this collection's prefix
        {"href": "https://scihub.example.org/ingest/c/I/B04.tif"},
        {"href": "s3://bkt-2/ingest/c/I/B04.tif"},  # a bucket whose name starts like ours
        {"href": 42},
        {},
    ):
        assert LAYOUT.key_of(not_ours) is None, not_ours
    assert Layout("bkt", PREFIX).key_of({"href": "https://data.example.org/ingest/c/I/a"}) is None


def test_item_assets_sorts_what_the_merge_the_heads_and_nobody_checks() -> None:
    sha = hashlib.sha256(b"x").hexdigest()
    got = item_assets(
        "I",
        {
            "B04": asset("ingest/c/I/B04.tif", 7, to_multihash("sha256", sha)),
            "meta": asset("ingest/c/I/metadata/m.xml", checksum="md5:" + "0" * 32),
            "odd": asset("ingest/c/OTHER/odd.tif"),  # ours, under another item's prefix
            "thumb": {"href": "https://elsewhere.example.org/t.png"},
            "red": "𒍟※",  # pgstac's mark for an item_assets entry the item lacks
            "sizeless": {"href": "s3://bkt/ingest/c/I/s.tif", "file:size": True},
        },
        "2026-11-01T00:00:00Z",
        LAYOUT,
    )
    assert got.expected == (
        Expected("B04", "ingest/c/I/B04.tif", 7, sha),
        Expected("meta", "ingest/c/I/metadata/m.xml", 10, None),  # not SHA-256: nothing to compare deep
        Expected("sizeless", "ingest/c/I/s.tif", None, None),
    )
    assert got.elsewhere == (Expected("odd", "ingest/c/OTHER/odd.tif", 10, None),)
    assert (got.unchecked, got.group, got.updated) == (1, "I/", "2026-11-01T00:00:00Z")
    slashed = item_assets("a/b", {"x": asset("ingest/c/a/b/x.tif")}, None, LAYOUT)
    assert slashed.group is None and slashed.expected == () and len(slashed.elsewhere) == 1


def test_merge_pairs_objects_with_items_in_key_order_not_id_order() -> None:
    # "A-1/" sorts before "A/" ('-' < '/'): the items come in that order, as pgstac is asked to give them
    the_items = items(
        ("A-1", {"x": asset("ingest/c/A-1/x.tif")}),
        ("A", {"x": asset("ingest/c/A/x.tif"), "y": asset("ingest/c/A/y.tif", 5), "z": asset("ingest/c/A/z.tif")}),
        ("B", {"x": asset("ingest/c/B/x.tif")}),
    )
    listing = [
        Obj("ingest/c/0-loose.txt", 1),  # directly under the collection prefix
        Obj("ingest/c/A-1/x.tif", 10),
        Obj("ingest/c/A/extra.bin", 3),  # under a live item, named by none of its assets
        Obj("ingest/c/A/x.tif", 10),
        Obj("ingest/c/A/y.tif", 6),  # recorded 5
        Obj("ingest/c/AA/left.tif", 2),  # a prefix no item has
        Obj("ingest/c/C/tail.tif", 4),  # after the last item
    ]
    out = list(match(the_items, listing, PREFIX))
    kinds = [(type(o).__name__, o.item.item_id if isinstance(o, ItemMatch) else o.obj.key) for o in out]
    assert kinds == [
        ("Unowned", "ingest/c/0-loose.txt"),
        ("ItemMatch", "A-1"),
        ("ItemMatch", "A"),
        ("Unowned", "ingest/c/A/extra.bin"),
        ("Unowned", "ingest/c/AA/left.tif"),
        ("ItemMatch", "B"),
        ("Unowned", "ingest/c/C/tail.tif"),
    ]
    a_1, a, b = (o for o in out if isinstance(o, ItemMatch))
    assert a_1.problems == () and [e.asset for e, _ in a_1.present] == ["x"]
    assert a.problems == (
        Problem("y", "ingest/c/A/y.tif", "size", 5, 6),
        Problem("z", "ingest/c/A/z.tif", "missing", 10, None),
    )
    assert b.problems == (Problem("x", "ingest/c/B/x.tif", "missing", 10, None),)
    strays = {o.obj.key: (o.group, o.in_item, o.item_updated) for o in out if isinstance(o, Unowned)}
    assert strays == {
        "ingest/c/0-loose.txt": (None, False, None),
        "ingest/c/A/extra.bin": ("A", True, "u1"),
        "ingest/c/AA/left.tif": ("AA", False, None),
        "ingest/c/C/tail.tif": ("C", False, None),
    }


def test_merge_is_lazy_and_refuses_streams_out_of_order() -> None:
    def endless() -> Any:
        n = 0
        while True:
            yield item_assets(f"I{n:09d}", {}, None, LAYOUT)
            n += 1

    first = next(match(endless(), iter([]), PREFIX))
    assert isinstance(first, ItemMatch) and first.item.item_id == "I000000000"
    with pytest.raises(ValueError, match="items are not in key order"):
        list(match(items(("B", {}), ("A", {})), [], PREFIX))
    with pytest.raises(ValueError, match="returned 'elsewhere/x'"):
        list(match([], [Obj("elsewhere/x", 1)], PREFIX))


def test_two_assets_naming_one_object_are_both_satisfied() -> None:
    (m,) = (o for o in match(items(("I", {"a": asset("ingest/c/I/x"), "b": asset("ingest/c/I/x")})),
                             [Obj("ingest/c/I/x", 10)], PREFIX) if isinstance(o, ItemMatch))  # fmt: skip
    assert m.problems == () and len(m.present) == 2


def test_deep_comparison_and_problem_texts() -> None:
    e = Expected("B04", "k", 10, "ab" * 32)
    assert plan.compare_sha256(e, "ab" * 32) is None
    assert plan.compare_sha256(Expected("B04", "k", 10, None), "cd" * 32) is None  # nothing recorded to compare
    wrong = plan.compare_sha256(e, "cd" * 32)
    assert wrong is not None and wrong.text() == f"B04 sha256 {'cd' * 32}, recorded {'ab' * 32}"
    unmarked = plan.compare_sha256(e, None)
    assert unmarked is not None and unmarked.text().startswith("B04 sha256 not in its metadata")
    assert plan.compare_size(e, None) == Problem("B04", "k", "missing", 10)
    assert plan.compare_size(Expected("B04", "k", None, None), Obj("k", 3)) is None  # no size recorded
    assert Problem("B04", "k", "size", 10, 3).text() == "B04 is 3 bytes, recorded 10"


def test_judge_owned_recent_orphan() -> None:
    cutoff = T0 - timedelta(hours=1)
    old, new = T0 - timedelta(hours=2), T0 - timedelta(minutes=5)
    assert plan.judge(Unowned(Obj("ingest/c/P/x", 1, old), "P"), claimed={"P"}, cutoff=cutoff) == "owned"
    assert plan.judge(Unowned(Obj("ingest/c/Q/x", 1, new), "Q"), claimed={"P"}, cutoff=cutoff) == "recent"
    assert plan.judge(Unowned(Obj("ingest/c/Q/x", 1, old), "Q"), claimed={"P"}, cutoff=cutoff) == "orphan"
    assert plan.judge(Unowned(Obj("ingest/c/loose", 1, old), None), claimed={"P"}, cutoff=cutoff) == "orphan"


def test_only_whole_prefixes_without_an_item_are_deletable() -> None:
    a1, a2 = Unowned(Obj("ingest/c/G/a", 1), "G"), Unowned(Obj("ingest/c/G/b", 2), "G")
    inside = Unowned(Obj("ingest/c/I/extra", 3), "I", "u1", in_item=True)
    loose = Unowned(Obj("ingest/c/loose", 4), None)
    groups, stay = plan.by_prefix([a1, inside, a2, loose])
    assert groups == {"G": [a1, a2]}
    assert [(u.obj.key, why.split(",")[0]) for u, why in stay] == [
        ("ingest/c/I/extra", "inside the prefix of item I"),
        ("ingest/c/loose", "not under an item prefix; delete it by hand"),
    ]
    assert plan.unchanged([a1, a2], [Obj("ingest/c/G/a", 1), Obj("ingest/c/G/b", 2)])
    assert not plan.unchanged([a1, a2], [Obj("ingest/c/G/a", 1), Obj("ingest/c/G/b", 2), Obj("ingest/c/G/new", 1)])
    assert not plan.unchanged([a1, a2], [Obj("ingest/c/G/a", 1), Obj("ingest/c/G/b", 2, T0 + timedelta(seconds=1))])


def test_report_counts_past_what_it_lists(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(report, "LISTED", 2)
    r = Report("c", T0, finished_at=T0 + timedelta(seconds=2.5), items=4, assets=9, objects=8, unchecked_assets=1)
    assert not r.found and r.summary() == "c: every item whole, no orphan object"
    for i in range(3):
        r.add_broken(BrokenItem(f"I{i}", f"P{i}", "catalogued", (Problem("B04", f"k{i}", "missing", 10),)))
    r.add_orphan(Unowned(Obj("ingest/c/G/a", 1500), "G"))
    doc = r.to_dict()
    assert (doc["broken_items"], len(doc["broken"]), doc["orphan_objects"], doc["listed_in_full"]) == (3, 2, 1, False)
    assert doc["broken"][0] == {
        "item_id": "I0",
        "product_id": "P0",
        "state": "catalogued",
        "problems": [{"asset": "B04", "key": "k0", "problem": "missing", "expected": 10, "found": None}],
    }
    assert doc["orphans"] == [
        {"key": "ingest/c/G/a", "size": 1500, "last_modified": "2026-11-30T12:00:00Z", "inside_item": None}
    ]
    lines = r.lines()
    assert lines[0] == (
        "c: 4 items, 9 assets, 8 objects checked in 2.5 s; 1 asset(s) outside this store's prefix not ours to check"
    )
    assert lines[1] == "  broken I0 (product P0, catalogued): B04 missing"
    assert "  orphan ingest/c/G/a (1.5 kB, 2026-11-30T12:00:00Z)" in lines
    assert "  (the first 2 broken items and orphans are listed)" in lines
    assert lines[-1] == "c: 3 broken item(s), 1 orphan object(s) (1.5 kB)"


def test_more_orphans_than_named_objects_refuses_every_deletion() -> None:
    assert plan.refuse_deletion(orphans=3, present=80) is None
    refused = plan.refuse_deletion(orphans=40_000, present=0)  # an empty database in front of a full bucket
    assert refused is not None and "right database" in refused


@pytest.mark.parametrize(
    "listing",
    [
        # S3, MinIO, Ceph: byte order of the whole key ('-' and '.' sort before '/')
        ["ingest/c/X-2/a.tif", "ingest/c/X.b/a.tif", "ingest/c/X/a.tif", "ingest/c/X/metadata.xml", "ingest/c/loose"],
        # SeaweedFS: folder by folder (a name before the names it is a prefix of)
        ["ingest/c/X/a.tif", "ingest/c/X/metadata.xml", "ingest/c/X-2/a.tif", "ingest/c/X.b/a.tif", "ingest/c/loose"],
    ],
    ids=["byte-order", "folder-order"],
)
def test_the_merge_takes_either_servers_listing_order(listing: list[str]) -> None:
    # items as pgstac sends them: by "{id}/" in byte order
    the_items = items(
        ("X-2", {"a": asset("ingest/c/X-2/a.tif")}),
        ("X.b", {"a": asset("ingest/c/X.b/a.tif")}),
        ("X", {"a": asset("ingest/c/X/a.tif")}),
    )
    out = list(match(the_items, [Obj(k, 10) for k in listing], PREFIX))
    matched = [o for o in out if isinstance(o, ItemMatch)]
    assert [m.item.item_id for m in matched] == ["X-2", "X.b", "X"]
    assert all(m.problems == () and len(m.present) == 1 for m in matched)
    unowned = sorted(o.obj.key for o in out if not isinstance(o, ItemMatch))
    assert unowned == ["ingest/c/X/metadata.xml", "ingest/c/loose"]
