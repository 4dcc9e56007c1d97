"""The API's bounds (ingest.api.bounds), pure: each family of hostile shapes passes up to its bound and
is refused past it, fast and without recursion, whatever the depth."""

from __future__ import annotations

import contextlib
import resource
import time
from collections.abc import Callable
from typing import Any

import pytest

from ingest.api.bounds import (
    Limits,
    Refused,
    check_datetime,
    check_filter,
    check_free_text,
    check_query_params,
    check_search_body,
    load_json,
    nesting_depth,
)

LIMITS = Limits()
D = LIMITS.max_filter_depth


def text_not(n: int) -> str:
    return "NOT " * n + "id = 'x'"


def text_parens(n: int) -> str:
    return "(" * n + "id = 'x'" + ")" * n


def text_nested_and(n: int) -> str:
    # n - 1 nested ands around one comparison: n operations deep
    return "(id = 'x' and " * (n - 1) + "id = 'y'" + ")" * (n - 1)


def json_not(n: int) -> dict[str, Any]:
    tree: dict[str, Any] = {"op": "=", "args": [{"property": "id"}, "x"]}
    for _ in range(n - 1):
        tree = {"op": "not", "args": [tree]}
    return tree


def json_or_chain(n: int) -> dict[str, Any]:
    tree: dict[str, Any] = {"op": "=", "args": [{"property": "id"}, "x"]}
    for _ in range(n - 1):
        tree = {"op": "or", "args": [{"op": "=", "args": [{"property": "id"}, "y"]}, tree]}
    return tree


def json_text(n: int) -> str:
    # built as text: json.dumps itself recurses
    return '{"op":"not","args":[' * (n - 1) + '{"op":"=","args":[{"property":"id"},"x"]}' + "]}" * (n - 1)


# (name, builder of a filter of size n, filter-lang, largest n that passes). Nested ``and``s are
# flattened by cql2 (one operation), so their bound is the parentheses' (depth + 3, for WKT)
FAMILIES: list[tuple[str, Callable[[int], Any], str | None, int]] = [
    ("NOT chain", lambda n: text_not(n - 1), "cql2-text", D),
    ("nested and", text_nested_and, "cql2-text", D + 4),
    ("nested JSON not", json_not, "cql2-json", D),
    ("nested JSON or", json_or_chain, "cql2-json", D),
    ("nested JSON not as text", json_text, "cql2-json", D),
]


@pytest.mark.parametrize(("name", "build", "lang", "bound"), FAMILIES, ids=[f[0] for f in FAMILIES])
def test_filter_depth_passes_up_to_the_bound_and_is_refused_past_it(
    name: str, build: Callable[[int], Any], lang: str | None, bound: int
) -> None:
    for depth in (1, 2, bound // 2, bound):
        check_filter(build(depth), lang, LIMITS)
    for depth in (bound + 1, 2 * bound, 1600):
        with pytest.raises(Refused) as refused:
            check_filter(build(depth), lang, LIMITS)
        assert refused.value.status == 400
        assert "filter" in refused.value.message


@pytest.mark.parametrize("depth", [D + 4, 1600, 100_000])
def test_parentheses_are_counted_before_the_parser_sees_them(depth: int) -> None:
    # cql2 0.6 segfaults on ~1,600 nested parentheses: the scan refuses long before
    started = time.monotonic()
    with pytest.raises(Refused, match="parentheses nested deeper"):
        check_filter(text_parens(depth), "cql2-text", LIMITS)
    assert time.monotonic() - started < 1.0


def test_parentheses_within_the_bound_and_quoted_ones_pass() -> None:
    check_filter(text_parens(D), "cql2-text", LIMITS)
    check_filter("id = '" + "(" * 5000 + "'", "cql2-text", LIMITS)  # inside a string: not nesting


def test_deep_json_is_refused_by_the_scan_not_by_a_recursion_error() -> None:
    for text in ("[" * 100_000 + "]" * 100_000, '{"a":' * 50_000 + "1" + "}" * 50_000):
        with pytest.raises(Refused, match="nested deeper"):
            load_json(text, "body")
    assert nesting_depth('"[[[[" [ ]', quotes='"', escape="\\") == 1
    assert nesting_depth(r'"\"[[" [[ ]]', quotes='"', escape="\\") == 2


def test_node_count_bounds_wide_filters() -> None:
    ok = " or ".join(f"id = 'x{i}'" for i in range(LIMITS.max_filter_nodes // 10))
    check_filter(ok, "cql2-text", LIMITS)
    wide = " or ".join(f"id = 'x{i}'" for i in range(LIMITS.max_filter_nodes))
    with pytest.raises(Refused, match="values and operations"):
        check_filter(wide, "cql2-text", LIMITS)


def polygon(vertices: int) -> dict[str, Any]:
    ring = [[i * 1e-6, 0.0] for i in range(vertices - 1)] + [[0.0, 0.0]]
    return {"type": "Polygon", "coordinates": [ring]}


def test_geometry_vertices_are_bounded_in_intersects_and_in_filters() -> None:
    n = LIMITS.max_geometry_vertices
    check_search_body({"intersects": polygon(n)}, LIMITS)
    with pytest.raises(Refused, match="vertices"):
        check_search_body({"intersects": polygon(n + 1)}, LIMITS)
    small = Limits(max_geometry_vertices=10, max_filter_nodes=100_000)
    in_filter = {"op": "s_intersects", "args": [{"property": "geometry"}, polygon(11)]}
    with pytest.raises(Refused, match="vertices"):
        check_filter(in_filter, "cql2-json", small)


def test_nested_geometry_arrays_are_refused() -> None:
    nested = "[" * 1000 + "0.0, 0.0" + "]" * 1000
    text = '{"intersects": {"type": "Polygon", "coordinates": ' + nested + "}}"
    with pytest.raises(Refused, match="nested deeper"):
        load_json(text, "body")


def test_memory_stays_flat_across_every_family_past_its_bound() -> None:
    before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    for _, build, lang, _ in FAMILIES:
        for depth in (D, 100, 1000):
            with contextlib.suppress(Refused):
                check_filter(build(depth), lang, LIMITS)
    grown_mb = (resource.getrusage(resource.RUSAGE_SELF).ru_maxrss - before) / 1024
    assert grown_mb < 64, f"checking the filters grew the process by {grown_mb:.0f} MB"


@pytest.mark.parametrize(
    "value",
    [
        "0001-01-01T00:00:00+14:00",
        "9999-12-31T23:59:59-14:00",
        "0001-01-01T00:00:00Z/..",
        "../9999-12-31T23:59:59Z",
        "2024-13-01T00:00:00Z",
        "2024-01-01",
        "a/b/c",
        "",
        "2024-01-01T00:00:00",
    ],
)
def test_datetimes_outside_the_calendar_or_not_rfc3339_are_refused(value: str) -> None:
    with pytest.raises(Refused):
        check_datetime(value, "datetime")


@pytest.mark.parametrize(
    "value",
    ["2024-01-01T00:00:00Z", "2024-01-01t10:00:00.5+02:00", "../2024-01-01T00:00:00Z", "2024-01-01T00:00:00Z/.."],
)
def test_ordinary_datetimes_pass(value: str) -> None:
    check_datetime(value, "datetime")


@pytest.mark.parametrize("q", ["' ( ! & :* <->", "a <-> b", "a & b", "x:*", '"unclosed', "(a)"])
def test_free_text_outside_the_grammar_is_refused(q: str) -> None:
    with pytest.raises(Refused, match="q:"):
        check_free_text(q, LIMITS)


@pytest.mark.parametrize("q", ["sentinel", "sentinel-2 l2a", '"level 2" OR radar', "+optical -radar", "a, b, c"])
def test_free_text_of_the_grammar_passes(q: str) -> None:
    check_free_text(q, LIMITS)


def test_free_text_terms_are_bounded() -> None:
    with pytest.raises(Refused, match="terms"):
        check_free_text(" ".join(["w"] * 3000), LIMITS)


@pytest.mark.parametrize(
    ("pairs", "fragment"),
    [
        ([("ids", "a\x00b")], "NUL"),
        ([("fields", ",,,")], "empty entry"),
        ([("sortby", "properties.")], "sortby"),
        ([("sortby", "properties")], "sortby"),
        ([("sortby", "+")], "sortby"),
        ([("sortby", ",".join(f"p{i}" for i in range(9)))], "sort keys"),
        ([("bbox", "nan,0,1,1")], "bbox"),
        ([("bbox", "1e999,0,1,1")], "bbox"),
        ([("bbox", "0,0,1")], "bbox"),
        ([("query", "{bad")], "not valid JSON"),
        ([("query", "[1]")], "query"),
        ([("intersects", "{bad")], "not valid JSON"),
        ([("intersects", "NaN")], "not valid JSON"),
        ([("collections", ",".join(f"c{i}" for i in range(251)))], "entries"),
        ([("token", "x" * 5000)], "token"),
    ],
)
def test_bad_query_parameters_are_refused_with_the_parameter_named(pairs: list[tuple[str, str]], fragment: str) -> None:
    with pytest.raises(Refused) as refused:
        check_query_params(pairs, LIMITS)
    assert refused.value.status == 400
    assert fragment in refused.value.message


def test_limit_above_the_bound_is_clamped_not_refused() -> None:
    assert check_query_params([("limit", "100000000000")], LIMITS) == [("limit", str(LIMITS.max_limit))]
    assert check_query_params([("limit", "10")], LIMITS) == [("limit", "10")]
    assert check_search_body({"limit": 10**12}, LIMITS)["limit"] == LIMITS.max_limit


@pytest.mark.parametrize(
    ("body", "fragment"),
    [
        (None, "JSON object"),
        ([], "JSON object"),
        (1, "JSON object"),
        ({"ids": "a"}, "list of strings"),
        ({"ids": ["a\x00"]}, "NUL"),
        ({"bbox": [0, 0, 1]}, "bbox"),
        ({"sortby": [{"field": f"p{i}"} for i in range(1000)]}, "sort keys"),
        ({"sortby": "datetime"}, "sortby"),
        ({"fields": {"include": [f"f{i}" for i in range(10_000)]}}, "entries"),
        ({"fields": {"include": [""]}}, "empty entry"),
        ({"fields": ["id"]}, "fields"),
        ({"datetime": "9999-12-31T23:59:59-14:00"}, "datetime"),
        ({"intersects": [0, 0]}, "geometry"),
        ({"filter": 5}, "filter"),
    ],
)
def test_bad_search_bodies_are_refused_with_the_member_named(body: Any, fragment: str) -> None:
    with pytest.raises(Refused) as refused:
        check_search_body(body, LIMITS)
    assert fragment in refused.value.message


@pytest.mark.parametrize(
    ("geometry", "fragment"),
    [
        ({"type": "Polygon", "coordinates": [[[0, 0], [1, 1]]]}, "closed ring"),
        ({"type": "Polygon", "coordinates": [[[0, 0], [1, 0], [1, 1], [0, 1]]]}, "closed ring"),
        ({"type": "LineString", "coordinates": [[0, 0]]}, "2 positions"),
        ({"type": "Point", "coordinates": [0, 0, 0, 0]}, "2 or 3 finite numbers"),
        ({"type": "Point", "coordinates": ["a", 0]}, "2 or 3 finite numbers"),
        ({"type": "Polygon", "coordinates": [0, 0]}, "nested wrongly"),
        ({"type": "Circle", "coordinates": [0, 0]}, "not a GeoJSON geometry"),
        ({"type": "GeometryCollection", "geometries": {}}, "list of geometries"),
        ({"coordinates": [0, 0]}, "not a GeoJSON geometry"),
    ],
)
def test_malformed_geometries_are_refused(geometry: dict[str, Any], fragment: str) -> None:
    with pytest.raises(Refused, match=fragment):
        check_search_body({"intersects": geometry}, LIMITS)
    if geometry.get("type") in ("Polygon", "LineString", "Point"):
        with pytest.raises(Refused, match=fragment):
            check_filter({"op": "s_intersects", "args": [{"property": "geometry"}, geometry]}, "cql2-json", LIMITS)


def test_wellformed_geometries_pass() -> None:
    ring = [[0, 0], [1, 0], [1, 1], [0, 0]]
    for g in (
        {"type": "Point", "coordinates": [1.5, 2]},
        {"type": "Polygon", "coordinates": [ring]},
        {"type": "MultiPolygon", "coordinates": [[ring], [ring]]},
        {"type": "GeometryCollection", "geometries": [{"type": "LineString", "coordinates": [[0, 0], [1, 1]]}]},
    ):
        check_search_body({"intersects": g}, LIMITS)
    check_filter("s_intersects(geometry, POLYGON((0 0, 1 0, 1 1, 0 0)))", "cql2-text", LIMITS)


@pytest.mark.parametrize(
    "text", ["id", "1", "eo:cloud_cover + 1", "casei(id)", "NOT id", "id = 'a' AND eo:cloud_cover", "'x'"]
)
def test_filters_that_are_no_condition_are_refused(text: str) -> None:
    with pytest.raises(Refused, match="not a condition"):
        check_filter(text, "cql2-text", LIMITS)


@pytest.mark.parametrize(
    "text",
    ["id = 'a'", "casei(id) = casei('A')", "true", "id IN ('a', 'b') AND NOT eo:cloud_cover > 5", "id LIKE 'a%'"],
)
def test_conditions_pass(text: str) -> None:
    check_filter(text, "cql2-text", LIMITS)
