"""``reprocessing: keep``: item ids per processing, version chains and the version extension's fields
(``ingest.upstream.versions``), and the current-only filter of searches (``ingest.api.current``). Pure."""

from __future__ import annotations

import json
from datetime import UTC, datetime
from typing import Any

import pytest

from ingest import collections as col
from ingest.api.current import CURRENT, current_only
from ingest.stac_validation import InvalidStac, validate_item
from ingest.upstream.names import parse
from ingest.upstream.versions import VERSION_EXT, Member, Place, chain, keep_item_id, mark
from tests.conftest import ROOT

OLD = "S2A_MSIL1C_20200808T010311_N0400_R045_T54PXA_20220101T000000"
NEW = "S2A_MSIL1C_20200808T010311_N0500_R045_T54PXA_20230413T212505"
NEWEST = "S2A_MSIL1C_20200808T010311_N0510_R045_T54PXA_20240101T000000"
OTHER_TILE = "S2A_MSIL1C_20200808T010311_N0400_R045_T54PXB_20220101T000000"
S1 = "S1A_IW_GRDH_1SDV_20210809T173953_20210809T174018_039156_049F13_6FF8"
BUILT = "S2A_T54PXA_20200808T010311_L1C"
NOW = datetime(2026, 12, 2, 10, 0, tzinfo=UTC)


def spec(policy: str) -> col.CollectionSpec:
    base = col.load_spec(ROOT / "collections" / "sentinel-2-l1c.yaml")
    return base.model_copy(update={"upstream": base.upstream.model_copy(update={"reprocessing": policy})})


def member(pid: str) -> Member:
    name = parse(pid)
    assert name is not None
    return Member(name, keep_item_id(spec("keep"), pid, BUILT))


def test_keep_gives_each_processing_an_item_id_of_its_own_replace_leaves_the_id() -> None:
    keep = spec("keep")
    ids = {keep_item_id(keep, pid, BUILT) for pid in (OLD, NEW, NEWEST)}
    assert ids == {f"{BUILT}_N0400_20220101T000000", f"{BUILT}_N0500_20230413T212505", f"{BUILT}_N0510_20240101T000000"}
    assert keep_item_id(keep, NEW, f"{BUILT}_N0500_20230413T212505") == f"{BUILT}_N0500_20230413T212505"  # said once
    assert keep_item_id(spec("replace"), NEW, BUILT) == BUILT
    assert keep_item_id(keep, S1, "S1A_IW_GRDH_1SDV_20210809T173953_20210809T174018_039156_049F13") == (
        "S1A_IW_GRDH_1SDV_20210809T173953_20210809T174018_039156_049F13"
    )  # Sentinel-1 names do not order processings: no chain, no suffix


def test_a_chain_links_each_processing_to_its_neighbours_and_the_newest() -> None:
    old, new, newest = member(OLD), member(NEW), member(NEWEST)
    places = chain([newest, old, new])  # in any order
    assert list(places) == [old.item_id, new.item_id, newest.item_id]
    assert places[old.item_id] == Place("N0400 20220101T000000", True, None, new.item_id, newest.item_id)
    assert places[new.item_id] == Place("N0500 20230413T212505", True, old.item_id, newest.item_id, newest.item_id)
    assert places[newest.item_id] == Place("N0510 20240101T000000", False, new.item_id, None, None)


def test_a_chain_leaves_out_other_acquisitions() -> None:
    places = chain([member(NEW), member(OTHER_TILE)])
    assert list(places) == [member(NEW).item_id]  # the other tile is another acquisition
    assert chain([]) == {}


def item(item_id: str, **props: Any) -> dict[str, Any]:
    doc: dict[str, Any] = json.loads((ROOT / "tests" / "golden" / "s2-l1c-n0301.json").read_text())
    doc["id"] = item_id
    doc["properties"].update({k: "2026-01-01T00:00:00Z" for k, v in doc["properties"].items() if v == "<now>"}, **props)
    return doc


def test_mark_writes_valid_version_fields_and_links_and_stamps_updated_only_on_a_change() -> None:
    old, new = member(OLD), member(NEW)
    places = chain([old, new])
    doc = item(old.item_id)
    before = json.dumps(doc, sort_keys=True)
    marked = mark(doc, places[old.item_id], updated=NOW)
    assert json.dumps(doc, sort_keys=True) == before  # the input is left alone
    p = marked["properties"]
    assert (p["version"], p["deprecated"], p["updated"]) == ("N0400 20220101T000000", True, "2026-12-02T10:00:00Z")
    rels = {(link["rel"], link["href"]) for link in marked["links"] if "version" in link["rel"]}
    assert rels == {
        ("successor-version", f"collections/sentinel-2-l1c/items/{new.item_id}"),
        ("latest-version", f"collections/sentinel-2-l1c/items/{new.item_id}"),
    }
    assert VERSION_EXT in marked["stac_extensions"]
    assert validate_item(marked).not_checked == validate_item(doc).not_checked  # the version schema is shipped
    with pytest.raises(InvalidStac, match=r"version/v1\.2\.0"):  # and checked
        validate_item({**marked, "properties": {**p, "deprecated": "yes"}})
    again = mark(marked, places[old.item_id], updated=datetime(2030, 1, 1, tzinfo=UTC))
    assert again == marked  # nothing changed: updated is not touched
    current = mark(item(new.item_id), places[new.item_id], updated=NOW)
    assert "deprecated" not in current["properties"]
    assert [link["rel"] for link in current["links"] if "version" in link["rel"]] == ["predecessor-version"]
    alone = mark(marked, None, updated=NOW)
    assert {"version", "deprecated"} & set(alone["properties"]) == set()
    assert VERSION_EXT not in alone["stac_extensions"] and not [x for x in alone["links"] if "version" in x["rel"]]


@pytest.mark.parametrize(
    ("tree", "by_ids", "expected"),
    [
        (None, False, CURRENT),
        ({"op": "=", "args": [{"property": "platform"}, "sentinel-2a"]}, False, "and"),
        ({"op": "=", "args": [{"property": "deprecated"}, True]}, False, "as is"),
        ({"op": "not", "args": [{"op": "isNull", "args": [{"property": "deprecated"}]}]}, False, "as is"),
        (None, True, None),
    ],
)
def test_searches_answer_current_items_unless_asked(tree: Any, by_ids: bool, expected: Any) -> None:
    got, query = current_only(tree, by_ids=by_ids)
    assert query is None
    if expected == "and":
        assert got == {"op": "and", "args": [tree, CURRENT]}
    elif expected == "as is":
        assert got is tree
    else:
        assert got == expected


def test_a_query_search_runs_as_the_filter_pgstac_would_make_of_it_and_current() -> None:
    query = {"platform": {"eq": "sentinel-2a"}, "eo:cloud_cover": {"lt": 10, "gte": 1}, "constellation": "sentinel-2"}
    as_cql2 = {
        "op": "and",
        "args": [
            {"op": "eq", "args": [{"property": "platform"}, "sentinel-2a"]},
            {"op": "lt", "args": [{"property": "eo:cloud_cover"}, 10]},
            {"op": "gte", "args": [{"property": "eo:cloud_cover"}, 1]},
            {"op": "eq", "args": [{"property": "constellation"}, "sentinel-2"]},
        ],
    }
    assert current_only(None, by_ids=False, query=query) == ({"op": "and", "args": [as_cql2, CURRENT]}, None)
    asked = {"deprecated": {"eq": True}}
    assert current_only(None, by_ids=False, query=asked) == (None, asked)
