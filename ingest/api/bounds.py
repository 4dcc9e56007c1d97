"""What a request to the public API may hold, checked before any library parses it (pure).

Every check here stands in front of a measured failure of the libraries behind it: cql2 0.6's parser
overflows its stack (a segfault, the whole worker gone) on about 1,600 nested parentheses, and its
``Expr.validate()`` (which stac-fastapi-pgstac runs on every GET filter) takes about 10 MB per nested
``NOT``; pgstac builds SQL from ``sortby``, ``q`` and paging tokens and fails on odd ones; Python's
``json`` turns ``NaN`` and ``1e999`` into floats nobody can search with. So the text is scanned
cheaply first (sizes, bracket depth), parsed only when the scan passed, and the parsed value walked
without recursion. A refusal is a :class:`Refused` naming the parameter and the bound.

``limit`` above the bound is served as the bound, not refused: OGC API Features says a larger limit
"SHALL NOT result in an error".
"""

from __future__ import annotations

import json
import math
import re
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from ingest.settings import Settings

# the list-valued parameters, and which of them are comma-separated on GET
LIST_PARAMS = ("ids", "collections", "fields")
MAX_NAME_CHARS = 1024  # one id, collection id or field name
MAX_TOKEN_CHARS = 2048  # pgstac's are "next:" / "prev:" + collection + id
# JSON documents (bodies, query, intersects, cql2-json) nest this deep at most before parsing; the
# filter's own depth is then checked on its tree
MAX_JSON_DEPTH = 64
# free text: words, "quoted phrases", +word, -word, AND/OR and commas; what pgstac's q_to_tsquery
# turns into a valid tsquery
_FREE_TEXT = re.compile(r'^(?:\s*(?:[+-]?[\w@]+(?:[-.][\w@]+)*|"[\w@\s.-]*")\s*,?)*\s*$')
# CQL2's predicates (basic, advanced comparison, spatial, temporal, array): what a filter and the
# operands of and/or/not must be
_TEMPORAL = (
    "after before contains disjoint during equals finishedby finishes intersects meets metby overlappedby overlaps "
    "startedby starts"
)
PREDICATES = frozenset(
    {"and", "or", "not", "=", "<>", "<", "<=", ">", ">=", "like", "between", "in", "isnull"}
    | {f"s_{r}" for r in ("intersects", "equals", "disjoint", "touches", "within", "overlaps", "crosses", "contains")}
    | {f"a_{r}" for r in ("equals", "contains", "containedby", "overlaps")}
    | {f"t_{r}" for r in _TEMPORAL.split()}
)
_FIELD = re.compile(r"^[A-Za-z_][\w:\-]*(?:\.[A-Za-z_][\w:\-]*)*$")
_RFC3339 = re.compile(r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d(?:\.\d+)?(?:Z|[+-]\d\d:\d\d)$", re.I)
# datetimes must survive conversion to UTC and a day of arithmetic either side (pgstac and asyncpg
# overflow at the calendar's edges)
_EARLIEST = datetime(1, 1, 2, tzinfo=UTC)
_LATEST = datetime(9999, 12, 30, tzinfo=UTC)


class Refused(Exception):
    """A request outside the bounds: the HTTP status and one line for the client."""

    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status
        self.message = message


@dataclass(frozen=True)
class Limits:
    max_query_bytes: int = 16_384
    max_body_bytes: int = 1_048_576
    max_list_length: int = 250
    max_sortby: int = 8
    max_filter_depth: int = 10
    max_filter_nodes: int = 1000
    max_geometry_vertices: int = 10_000
    max_limit: int = 1000
    max_free_text_terms: int = 20

    @classmethod
    def from_settings(cls, s: Settings) -> Limits:
        return cls(
            max_query_bytes=s.api_max_query_bytes,
            max_body_bytes=s.api_max_body_bytes,
            max_list_length=s.api_max_list_length,
            max_sortby=s.api_max_sortby,
            max_filter_depth=s.api_max_filter_depth,
            max_filter_nodes=s.api_max_filter_nodes,
            max_geometry_vertices=s.api_max_geometry_vertices,
            max_limit=s.api_max_limit,
            max_free_text_terms=s.api_max_free_text_terms,
        )


def bad(message: str) -> Refused:
    return Refused(400, message)


# ----------------------------------------------------------------------------- cheap scans


def nesting_depth(text: str, *, quotes: str, escape: str | None) -> int:
    """Deepest bracket nesting of ``text`` outside quoted strings, in one pass and no recursion.

    ``escape``: the character that escapes the next one inside a string (JSON's backslash), or None
    for doubled quotes (CQL2 text's ``''``, which this scan reads as a string closed and reopened)."""
    depth = deepest = 0
    quote: str | None = None
    skip = False
    for ch in text:
        if quote is not None:
            if skip:
                skip = False
            elif ch == escape:
                skip = True
            elif ch == quote:
                quote = None
        elif ch in quotes:
            quote = ch
        elif ch in "([{":
            depth += 1
            deepest = max(deepest, depth)
        elif ch in ")]}":
            depth -= 1
    return deepest


def _reject_constant(name: str) -> float:
    raise ValueError(f"{name} is not a JSON number")


def _finite(text: str) -> float:
    value = float(text)
    if not math.isfinite(value):
        raise ValueError(f"{text} is out of range")
    return value


def load_json(text: str, what: str) -> Any:
    """Parse a JSON document after a depth scan: no NaN, Infinity or overflowing numbers."""
    if nesting_depth(text, quotes='"', escape="\\") > MAX_JSON_DEPTH:
        raise bad(f"{what}: JSON nested deeper than {MAX_JSON_DEPTH} levels")
    try:
        return json.loads(text, parse_constant=_reject_constant, parse_float=_finite)
    except (ValueError, RecursionError) as exc:
        raise bad(f"{what}: not valid JSON ({_one_line(str(exc))})") from None


# ----------------------------------------------------------------------------- values


def walk(value: Any) -> Iterator[tuple[Any, int]]:
    """Every value inside a parsed JSON document with its container depth, pre-order, without
    recursion. Keys are not values: a key holding a NUL is reported as the string itself."""
    stack: list[tuple[Any, int]] = [(value, 0)]
    while stack:
        node, depth = stack.pop()
        yield node, depth
        if isinstance(node, dict):
            stack.extend((v, depth + 1) for v in node.values())
            bad_key = next((k for k in node if "\x00" in k), None)
            if bad_key is not None:
                yield bad_key, depth + 1
        elif isinstance(node, list):
            stack.extend((v, depth + 1) for v in node)


def check_strings(value: Any, what: str) -> None:
    """No NUL in any string: PostgreSQL's text cannot hold one and refuses the whole query."""
    for node, _ in walk(value):
        if isinstance(node, str) and "\x00" in node:
            raise bad(f"{what}: NUL character in a value")


def count_vertices(geometry: Any, what: str, limits: Limits) -> int:
    """Vertices of a GeoJSON geometry (collections included); refuses past the bound."""
    total = 0
    for node, _ in walk(geometry):
        if isinstance(node, list) and node and all(isinstance(c, int | float) for c in node):
            total += 1
            if total > limits.max_geometry_vertices:
                raise bad(f"{what}: geometry has more than {limits.max_geometry_vertices} vertices")
    return total


# GeoJSON types and how deep their positions lie in "coordinates"
_POSITION_DEPTH = {"Point": 0, "MultiPoint": 1, "LineString": 1, "MultiLineString": 2, "Polygon": 2, "MultiPolygon": 3}


def check_geometry(geometry: Any, what: str, limits: Limits) -> None:
    """A GeoJSON geometry PostGIS can take as it is: known type, positions of 2 or 3 finite numbers at
    the type's depth, lines of 2 positions or more, closed rings of 4 or more (PostGIS would answer
    an empty result for a 2-point "polygon", or fail in SQL), and a bounded number of vertices."""
    count_vertices(geometry, what, limits)
    stack = [geometry]
    while stack:
        g = stack.pop()
        kind = g.get("type") if isinstance(g, dict) else None
        if kind == "GeometryCollection":
            members = g.get("geometries")
            if not isinstance(members, list):
                raise bad(f"{what}: a GeometryCollection needs a list of geometries")
            stack.extend(members)
            continue
        if kind not in _POSITION_DEPTH:
            raise bad(f"{what}: not a GeoJSON geometry (type {str(kind)[:40]!r})")
        _check_coordinates(g.get("coordinates"), _POSITION_DEPTH[kind], kind, what)


def _check_coordinates(coords: Any, depth: int, kind: str, what: str) -> None:
    level: list[Any] = [coords]
    for d in range(depth):  # down to the lists of positions, checking each is a list
        if not all(isinstance(c, list) for c in level):
            raise bad(f"{what}: {kind} coordinates nested wrongly")
        if d == depth - 1:
            least, closed = (2, False) if kind in ("LineString", "MultiLineString") else (1, False)
            if kind in ("Polygon", "MultiPolygon"):
                least, closed = 4, True
            for positions in level:
                if len(positions) < least or (closed and positions[0] != positions[-1]):
                    what_is = "a closed ring of 4 positions or more" if closed else f"{least} positions or more"
                    raise bad(f"{what}: {kind} needs {what_is}")
        level = [c for sub in level for c in sub]
    for position in level:
        if (
            not isinstance(position, list)
            or len(position) not in (2, 3)
            or not all(isinstance(n, int | float) and not isinstance(n, bool) and math.isfinite(n) for n in position)
        ):
            raise bad(f"{what}: {kind} positions are 2 or 3 finite numbers")


def check_filter_tree(tree: Any, limits: Limits) -> None:
    """Depth in operations and size in nodes of a CQL2 JSON tree."""
    ops_on_path: list[int] = []  # operations on the path down to the node at each depth (pre-order walk)
    for nodes, (node, depth) in enumerate(walk(tree), 1):
        if nodes > limits.max_filter_nodes:
            raise bad(f"filter: more than {limits.max_filter_nodes} values and operations")
        if depth > MAX_JSON_DEPTH:
            raise bad(f"filter: nested deeper than {MAX_JSON_DEPTH} levels")
        if isinstance(node, str) and "\x00" in node:
            raise bad("filter: NUL character in a value")
        if isinstance(node, dict) and (node.get("type") in _POSITION_DEPTH or node.get("type") == "GeometryCollection"):
            check_geometry(node, "filter", limits)
        del ops_on_path[depth:]
        ops = (ops_on_path[-1] if ops_on_path else 0) + (isinstance(node, dict) and "op" in node)
        if ops > limits.max_filter_depth:
            raise bad(f"filter: operations nested deeper than {limits.max_filter_depth}")
        ops_on_path.append(ops)
    count_vertices(tree, "filter", limits)


def check_boolean(tree: Any) -> None:
    """The filter and every operand of its and/or/not are predicates: what cql2's ``validate()`` was
    run for on GET (a bare property or a number would reach pgstac as a WHERE clause that is no
    condition), without its cost: it takes ~10 MB per nesting level, and hundreds of MB for a small
    invalid expression such as ``casei(id) = 1 = 2`` (measured, cql2 0.6)."""
    stack = [tree]
    while stack:
        node = stack.pop()
        if isinstance(node, bool):
            continue
        op = node.get("op") if isinstance(node, dict) else None
        if not isinstance(op, str) or op.lower() not in PREDICATES:
            raise bad(f"filter: {_one_line(json.dumps(node), 80)} is not a condition (a comparison, like, in, ...)")
        if op.lower() in ("and", "or", "not"):
            args = node.get("args")
            if not isinstance(args, list) or not args or (op.lower() == "not" and len(args) != 1):
                raise bad(f"filter: {op} needs {'one condition' if op.lower() == 'not' else 'conditions'}")
            stack.extend(args)


def filter_tree(value: Any, lang: str | None, limits: Limits) -> dict[str, Any] | bool:
    """A CQL2 filter as GET or POST carries it (text, a JSON string, or a JSON object), checked and
    as CQL2 JSON."""
    if isinstance(value, dict):
        tree: Any = value
    elif not isinstance(value, str):
        raise bad("filter: must be CQL2 text or a CQL2 JSON object")
    elif lang == "cql2-json":
        tree = load_json(value, "filter")
    else:
        if "\x00" in value:
            raise bad("filter: NUL character in a value")
        # parentheses bound the parser's recursion; geometry literals nest up to 3 more (MULTIPOLYGON)
        if nesting_depth(value, quotes="'\"", escape=None) > limits.max_filter_depth + 3:
            raise bad(f"filter: parentheses nested deeper than {limits.max_filter_depth + 3}")
        import cql2

        try:
            tree = cql2.Expr(value).to_json()
        except Exception as exc:  # cql2 raises bare Exceptions (ParseError, ValidationError...)
            raise bad(f"filter: not valid CQL2 text ({_one_line(str(exc))})") from None
    check_filter_tree(tree, limits)
    check_boolean(tree)
    return tree  # type: ignore[no-any-return]


def check_filter(value: Any, lang: str | None, limits: Limits) -> None:
    filter_tree(value, lang, limits)


def check_datetime(value: Any, what: str) -> None:
    """An RFC 3339 instant or interval (``a/b``, ``../b``, ``a/..``) the database can compare."""
    if not isinstance(value, str):
        raise bad(f"{what}: must be an RFC 3339 date-time or interval")
    parts = value.split("/")
    if len(parts) > 2:
        raise bad(f"{what}: an interval has one '/'")
    for part in parts:
        if part in ("", "..") and len(parts) == 2:
            continue
        if not _RFC3339.match(part):
            raise bad(f"{what}: {part[:40]!r} is not an RFC 3339 date-time")
        try:
            instant = datetime.fromisoformat(part.upper().replace("Z", "+00:00")).astimezone(UTC)
        except (ValueError, OverflowError):
            raise bad(f"{what}: {part[:40]!r} is not a date-time in range") from None
        if not _EARLIEST <= instant <= _LATEST:
            raise bad(f"{what}: {part[:40]!r} is outside 0001-01-02..9999-12-30 (UTC)")


def check_bbox(values: Iterable[Any], what: str = "bbox") -> None:
    numbers = list(values)
    if len(numbers) not in (4, 6):
        raise bad(f"{what}: needs 4 or 6 numbers")
    for n in numbers:
        if isinstance(n, bool) or not isinstance(n, int | float) or not math.isfinite(n):
            raise bad(f"{what}: {n!r} is not a finite number")


def check_names(values: list[Any], what: str, limits: Limits) -> None:
    if len(values) > limits.max_list_length:
        raise bad(f"{what}: more than {limits.max_list_length} entries")
    for v in values:
        if not isinstance(v, str):
            raise bad(f"{what}: entries must be strings")
        if not v.strip():
            raise bad(f"{what}: empty entry")
        if len(v) > MAX_NAME_CHARS:
            raise bad(f"{what}: an entry is longer than {MAX_NAME_CHARS} characters")
        if "\x00" in v:
            raise bad(f"{what}: NUL character in an entry")


def check_sort_field(field: Any) -> None:
    if not isinstance(field, str) or not _FIELD.match(field) or field == "properties":
        raise bad(f"sortby: {str(field)[:80]!r} is not a property name (e.g. datetime, properties.eo:cloud_cover)")


def check_sortby_get(value: str, limits: Limits) -> None:
    keys = value.split(",")
    if len(keys) > limits.max_sortby:
        raise bad(f"sortby: more than {limits.max_sortby} sort keys")
    for key in keys:
        key = key.strip()
        check_sort_field(key[1:] if key[:1] in "+-" else key)


def check_sortby_post(value: Any, limits: Limits) -> None:
    if not isinstance(value, list):
        raise bad("sortby: must be a list of {field, direction}")
    if len(value) > limits.max_sortby:
        raise bad(f"sortby: more than {limits.max_sortby} sort keys")
    for entry in value:
        if not isinstance(entry, dict):
            raise bad("sortby: must be a list of {field, direction}")
        check_sort_field(entry.get("field"))


def check_free_text(value: str, limits: Limits) -> None:
    if "\x00" in value:
        raise bad("q: NUL character")
    if value.count('"') % 2 or not _FREE_TEXT.match(value):
        raise bad('q: free text takes words, "quoted phrases", +word, -word, AND, OR and commas')
    terms = len(re.findall(r'"[^"]*"|[\w@]+', value))
    if terms > limits.max_free_text_terms:
        raise bad(f"q: more than {limits.max_free_text_terms} terms")


def check_token(value: Any) -> None:
    """Only the size and the characters: what a token points at is for pgstac (or /deleted-items) to
    find, and an unknown one is answered 400 there (ingest.api.errors)."""
    if not isinstance(value, str) or len(value) > MAX_TOKEN_CHARS:
        raise bad("token: not a paging token of this server (follow the next/prev links)")
    if "\x00" in value:
        raise bad("token: NUL character")


def clamp_limit(value: Any, limits: Limits) -> Any:
    """A larger limit is served as the bound; anything that is not an integer is left to the API's
    own validation (which answers 400)."""
    if isinstance(value, int) and not isinstance(value, bool) and value > limits.max_limit:
        return limits.max_limit
    if isinstance(value, str) and value.strip().isdigit() and int(value) > limits.max_limit:
        return str(limits.max_limit)
    return value


# ----------------------------------------------------------------------------- requests


def check_query_params(pairs: list[tuple[str, str]], limits: Limits) -> list[tuple[str, str]]:
    """The query of any GET: each known parameter checked; the pairs back, ``limit`` clamped."""
    out: list[tuple[str, str]] = []
    params = dict(pairs)  # the API reads the last of repeated parameters, so does the check
    for name, value in pairs:
        if "\x00" in name or "\x00" in value:
            raise bad(f"{name[:40]}: NUL character")
    for name, value in params.items():
        if name in LIST_PARAMS:
            check_names(value.split(","), name, limits)
        elif name == "bbox":
            try:
                check_bbox(_finite(v) for v in value.split(","))
            except ValueError:
                raise bad("bbox: needs 4 or 6 comma-separated finite numbers") from None
        elif name == "datetime":
            check_datetime(value, name)
        elif name == "intersects":
            check_geometry(load_json(value, name), name, limits)
        elif name == "query":
            _check_query_ext(load_json(value, name), limits)
        elif name == "filter":
            check_filter(value, params.get("filter-lang"), limits)
        elif name == "sortby":
            check_sortby_get(value, limits)
        elif name == "q":
            check_free_text(value, limits)
        elif name == "token":
            check_token(value)
    for name, value in pairs:
        out.append((name, str(clamp_limit(value, limits)) if name == "limit" else value))
    return out


def check_search_body(body: object, limits: Limits) -> dict[str, Any]:
    """The body of POST /search: a JSON object whose known members are checked; ``limit`` clamped."""
    if not isinstance(body, dict):
        raise bad("the body of POST /search must be a JSON object")
    check_strings(body, "body")
    for name in ("ids", "collections"):
        if name in body and body[name] is not None:
            if not isinstance(body[name], list):
                raise bad(f"{name}: must be a list of strings")
            check_names(body[name], name, limits)
    if body.get("bbox") is not None:
        if not isinstance(body["bbox"], list):
            raise bad("bbox: needs 4 or 6 numbers")
        check_bbox(body["bbox"])
    if body.get("intersects") is not None:
        check_geometry(body["intersects"], "intersects", limits)
    if body.get("datetime") is not None:
        check_datetime(body["datetime"], "datetime")
    if body.get("query") is not None:
        _check_query_ext(body["query"], limits)
    if body.get("filter") is not None:
        check_filter(body["filter"], body.get("filter-lang"), limits)
    if body.get("sortby") is not None:
        check_sortby_post(body["sortby"], limits)
    if body.get("fields") is not None:
        fields = body["fields"]
        if not isinstance(fields, dict):
            raise bad("fields: must be an object with include and exclude lists")
        for part in ("include", "exclude"):
            if fields.get(part) is not None:
                if not isinstance(fields[part], list):
                    raise bad(f"fields.{part}: must be a list of strings")
                check_names(fields[part], f"fields.{part}", limits)
    if body.get("token") is not None:
        check_token(body["token"])
    if "limit" in body:
        body = {**body, "limit": clamp_limit(body["limit"], limits)}
    return body


def _check_query_ext(query: Any, limits: Limits) -> None:
    """The query extension: {property: {operator: value}}; operators are the API's to check."""
    if not isinstance(query, dict):
        raise bad("query: must be a JSON object of {property: {operator: value}}")
    if len(query) > limits.max_list_length:
        raise bad(f"query: more than {limits.max_list_length} properties")
    for nodes, (node, _) in enumerate(walk(query), 1):
        if nodes > limits.max_filter_nodes:
            raise bad(f"query: more than {limits.max_filter_nodes} values")
        if isinstance(node, str) and "\x00" in node:
            raise bad("query: NUL character in a value")


def _one_line(text: str, limit: int = 200) -> str:
    line = " ".join(text.split())
    return line if len(line) <= limit else line[: limit - 1] + "…"
