"""The OData subset the Copernicus Data Space catalogue speaks: query options, ``$filter``, product JSON. Pure.

What is understood is what CDSE documents (documentation.dataspace.copernicus.eu/APIs/OData.html) and
what EODAG's ``cop_dataspace`` configuration writes:

* ``$filter``: ``and`` / ``or`` / ``not`` / parentheses; ``eq ne gt ge lt le`` between a property
  (``Name``, ``Id``, ``PublicationDate``, ``ModificationDate``, ``OriginDate``, ``ContentDate/Start``,
  ``ContentDate/End``, ``Collection/Name``, ``Online``, ``ContentLength``, ...) and a literal (``'text'``,
  number, ``2020-08-16T00:00:00.000Z`` or a plain date, ``true``/``false``/``null``); ``contains``,
  ``startswith``, ``endswith``; ``OData.CSC.Intersects(area=geography'SRID=4326;POLYGON((...))')``;
  ``Attributes/OData.CSC.<Type>Attribute/any(att:att/Name eq '...' and att/OData.CSC.<Type>Attribute/Value
  <op> <literal>)``;
* ``$orderby`` on ``ContentDate/Start``, ``ContentDate/End``, ``PublicationDate``, ``ModificationDate``
  (``asc``/``desc``), always completed by ``Id`` so that ``$skip`` paging is exact;
* ``$top`` (default 20, at most 1000), ``$skip`` (at most 10000), ``$count``, ``$expand=Attributes|Assets``.

Anything else is a :class:`ODataError` (a 400, or the 422 CDSE answers for out-of-range numbers).
The type cast in ``Attributes/OData.CSC.<Type>Attribute`` is checked for syntax only: attributes are
matched by name, values compared after coercion (EODAG writes ``IntegerAttribute`` beside a quoted
``StringAttribute`` value for ``spatialResolution``; CDSE stores it as a string).
"""

from __future__ import annotations

import math
import re
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, date, datetime
from typing import Any, Literal
from urllib.parse import urlencode

import shapely
import shapely.wkt
from shapely.errors import GEOSException, ShapelyError
from shapely.geometry import shape
from shapely.geometry.base import BaseGeometry

DEFAULT_TOP = 20
MAX_TOP = 1000
MAX_SKIP = 10_000
ATTRIBUTE_TYPES = ("String", "Integer", "Double", "DateTimeOffset", "Boolean")
ORDERABLE = ("ContentDate/Start", "ContentDate/End", "PublicationDate", "ModificationDate")
EXPANDABLE = ("Attributes", "Assets")
EVICTION_DATE = "9999-12-31T23:59:59.999999Z"  # what CDSE shows for a product it keeps

Scalar = str | int | float | bool | datetime | None
AttributeType = Literal["String", "Integer", "Double", "DateTimeOffset", "Boolean"]


class ODataError(ValueError):
    """A request the catalogue refuses: ``status`` 400 (syntax), or 422 for a number out of range."""

    def __init__(
        self, message: str, status: int = 400, *, parameter: str = "", value: str = "", bound: tuple[str, int] = ("", 0)
    ) -> None:
        super().__init__(message)
        self.status = status
        self.parameter = parameter
        self.value = value
        self.bound = bound

    def body(self) -> dict[str, Any]:
        if self.status == 422:  # the FastAPI shape CDSE documents for $skip > 10000
            kind, limit = self.bound
            detail = {
                "type": "less_than_equal" if kind == "le" else "greater_than_equal",
                "loc": ["query", self.parameter],
                "msg": str(self),
                "input": self.value,
                "ctx": {kind: limit},
            }
            return {"detail": [detail]}
        return {"error": {"code": "BadRequest", "message": str(self), "target": self.parameter or None}}


# ---------------------------------------------------------------------------------------------
# the product as the catalogue holds it


@dataclass(frozen=True, slots=True)  # slots: tens of thousands of them, fewer objects for the collector
class Attribute:
    name: str
    value: str | int | float | bool | datetime
    type: AttributeType

    def to_json(self) -> dict[str, Any]:
        value = format_datetime(self.value) if isinstance(self.value, datetime) else self.value
        return {
            "@odata.type": f"#OData.CSC.{self.type}Attribute",
            "Name": self.name,
            "Value": value,
            "ValueType": self.type,
        }


@dataclass(frozen=True, slots=True)
class ChecksumValue:
    algorithm: str  # "MD5", "BLAKE3"
    value: str
    date: datetime


@dataclass(frozen=True, slots=True)
class Product:
    """One OData ``Product``; ``key`` is the id of the catalogue entry it shows."""

    key: str
    id: str
    name: str
    collection: str
    content_length: int
    origin_date: datetime
    publication_date: datetime
    modification_date: datetime
    content_start: datetime
    content_end: datetime
    footprint: Mapping[str, Any]  # GeoJSON
    bbox: tuple[float, float, float, float]
    s3_path: str
    attributes: tuple[Attribute, ...] = ()
    online: bool = True
    content_type: str = "application/octet-stream"

    _attribute_map: dict[str, tuple[Attribute, ...]] | None = field(default=None, init=False, repr=False, compare=False)
    _shape: BaseGeometry | None = field(default=None, init=False, repr=False, compare=False)

    @property
    def attribute_map(self) -> dict[str, tuple[Attribute, ...]]:
        """Attributes by name, made when first needed (frozen: set once with object.__setattr__)."""
        if self._attribute_map is None:
            by_name: dict[str, tuple[Attribute, ...]] = {}
            for a in self.attributes:
                previous = by_name.get(a.name)
                by_name[a.name] = (a,) if previous is None else (*previous, a)
            object.__setattr__(self, "_attribute_map", by_name)
            return by_name
        return self._attribute_map

    @property
    def shape(self) -> BaseGeometry:
        """The footprint as a shapely geometry, made when first needed (only Intersects needs it)."""
        if self._shape is None:
            geometry = shape(self.footprint)
            object.__setattr__(self, "_shape", geometry)
            return geometry
        return self._shape

    def value_of(self, path: str) -> Scalar:
        """The value of a property path (``Name``, ``ContentDate/Start``, ...)."""
        return _PROPERTIES[path](self)


_PROPERTIES: dict[str, Callable[[Product], Scalar]] = {
    "Id": lambda p: p.id,
    "Name": lambda p: p.name,
    "ContentType": lambda p: p.content_type,
    "ContentLength": lambda p: p.content_length,
    "OriginDate": lambda p: p.origin_date,
    "PublicationDate": lambda p: p.publication_date,
    "ModificationDate": lambda p: p.modification_date,
    "Online": lambda p: p.online,
    "S3Path": lambda p: p.s3_path,
    "ContentDate/Start": lambda p: p.content_start,
    "ContentDate/End": lambda p: p.content_end,
    "Collection/Name": lambda p: p.collection,
}


def format_datetime(value: datetime) -> str:
    """CDSE's form: UTC, always six fractional digits, ``Z``."""
    return value.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def footprint_ewkt(geometry: Mapping[str, Any]) -> str:
    """``geography'SRID=4326;POLYGON ((...))'`` as CDSE writes ``Footprint``."""
    wkt = shapely.to_wkt(shape(geometry), rounding_precision=-1, trim=True)
    return f"geography'SRID=4326;{wkt}'"


def product_json(
    product: Product,
    *,
    checksums: Sequence[ChecksumValue] = (),
    expand: Iterable[str] = (),
    assets: Sequence[Mapping[str, Any]] = (),
) -> dict[str, Any]:
    """The JSON of one product, in the order of CDSE's answers (see tests/fixtures/eodag/provider_responses)."""
    out: dict[str, Any] = {
        "@odata.mediaContentType": "application/octet-stream",
        "Id": product.id,
        "Name": product.name,
        "ContentType": product.content_type,
        "ContentLength": product.content_length,
        "OriginDate": format_datetime(product.origin_date),
        "PublicationDate": format_datetime(product.publication_date),
        "ModificationDate": format_datetime(product.modification_date),
        "Online": product.online,
        "EvictionDate": EVICTION_DATE,
        "S3Path": product.s3_path,
        "Checksum": [
            {"Value": c.value, "Algorithm": c.algorithm, "ChecksumDate": format_datetime(c.date)} for c in checksums
        ],
        "ContentDate": {
            "Start": format_datetime(product.content_start),
            "End": format_datetime(product.content_end),
        },
        "Footprint": footprint_ewkt(product.footprint),
        "GeoFootprint": dict(product.footprint),
    }
    expand = set(expand)
    if "Attributes" in expand:
        out["Attributes"] = [a.to_json() for a in product.attributes]
    if "Assets" in expand:
        out["Assets"] = [dict(a) for a in assets]
    return out


def context(expand: Iterable[str], *, entity: bool = False) -> str:
    """``@odata.context``: ``$metadata#Products(Attributes(),Assets())`` for a search with both expanded."""
    parts = [f"{e}()" for e in EXPANDABLE if e in set(expand)]
    base = "$metadata#Products" + (f"({','.join(parts)})" if parts else "")
    return base + "/$entity" if entity else base


# ---------------------------------------------------------------------------------------------
# query options


@dataclass(frozen=True)
class OrderKey:
    path: str
    descending: bool = False


@dataclass
class Query:
    filter_text: str = ""
    predicate: Predicate | None = None
    orderby: tuple[OrderKey, ...] = ()
    top: int = DEFAULT_TOP
    skip: int = 0
    count: bool = False
    expand: frozenset[str] = frozenset()
    pairs: list[tuple[str, str]] = field(default_factory=list)  # the request's query, for @odata.nextLink

    @property
    def page(self) -> int:
        """1-based page number of this request (``$skip`` / ``$top``)."""
        return self.skip // self.top + 1 if self.top else 1

    def matches(self, product: Product) -> bool:
        return self.predicate is None or self.predicate(product, None)

    def next_link(self, url: str, total: int) -> str | None:
        """``@odata.nextLink`` (the request with ``$skip`` advanced), or None on the last page.

        Encoded as CDSE encodes it (``%24skip=``): EODAG finds the skip with ``parse_qs`` only when the
        ``$`` is quoted (a bare ``$skip`` in the link makes it index the link string with a string)."""
        nxt = self.skip + self.top
        if self.top == 0 or nxt >= total or nxt > MAX_SKIP:
            return None
        pairs = [(k, v) for k, v in self.pairs if k != "$skip"]
        pairs.append(("$skip", str(nxt)))
        return f"{url}?{urlencode(pairs)}"


_KNOWN_OPTIONS = {"$filter", "$orderby", "$top", "$skip", "$count", "$expand", "$format"}
_TRUE = {"True", "true", "1"}
_FALSE = {"False", "false", "0"}


def parse_query(pairs: Sequence[tuple[str, str]]) -> Query:
    """Parse the query options of ``GET /odata/v1/Products`` (``pairs`` as ``parse_qsl`` gives them)."""
    q = Query(pairs=list(pairs))
    seen: dict[str, str] = {}
    expand: set[str] = set()
    for key, value in pairs:
        if key.startswith("$") and key not in _KNOWN_OPTIONS:
            raise ODataError(f"unsupported query option {key!r}; supported: {sorted(_KNOWN_OPTIONS)}", parameter=key)
        if key == "$expand":  # repeated by EODAG: $expand=Attributes&$expand=Assets
            for item in value.split(","):
                item = item.strip()
                if item not in EXPANDABLE:
                    raise ODataError(f"cannot expand {item!r}; expandable: {list(EXPANDABLE)}", parameter=key)
                expand.add(item)
            continue
        if key in seen and key.startswith("$"):
            raise ODataError(f"query option {key} given twice", parameter=key)
        seen[key] = value
    q.expand = frozenset(expand)
    if "$filter" in seen and seen["$filter"].strip():
        q.filter_text = seen["$filter"]
        q.predicate = compile_filter(q.filter_text)
    if "$orderby" in seen:
        q.orderby = parse_orderby(seen["$orderby"])
    q.top = _bounded_int(seen, "$top", DEFAULT_TOP, MAX_TOP)
    q.skip = _bounded_int(seen, "$skip", 0, MAX_SKIP)
    if "$count" in seen:
        value = seen["$count"].strip()
        if value not in _TRUE | _FALSE:
            raise ODataError(f"$count must be one of True, true, 1, False, false, 0; got {value!r}", parameter="$count")
        q.count = value in _TRUE
    return q


def _bounded_int(seen: dict[str, str], key: str, default: int, maximum: int) -> int:
    if key not in seen:
        return default
    text = seen[key].strip()
    try:
        value = int(text)
    except ValueError:
        raise ODataError(f"{key} must be an integer, got {text!r}", parameter=key) from None
    if value < 0:
        raise ODataError("Input should be greater than or equal to 0", 422, parameter=key, value=text, bound=("ge", 0))
    if value > maximum:
        message = f"Input should be less than or equal to {maximum}"
        raise ODataError(message, 422, parameter=key, value=text, bound=("le", maximum))
    return value


def parse_orderby(text: str) -> tuple[OrderKey, ...]:
    keys: list[OrderKey] = []
    for item in text.split(","):
        words = item.split()
        if not words or len(words) > 2:
            raise ODataError(f"bad $orderby item {item.strip()!r}", parameter="$orderby")
        path = words[0]
        if path not in ORDERABLE:
            raise ODataError(f"cannot order by {path!r}; orderable: {list(ORDERABLE)}", parameter="$orderby")
        direction = words[1].lower() if len(words) == 2 else "asc"
        if direction not in ("asc", "desc"):
            raise ODataError(f"$orderby direction must be asc or desc, got {words[1]!r}", parameter="$orderby")
        keys.append(OrderKey(path, direction == "desc"))
    return tuple(keys)


def sort_products(products: Iterable[Product], orderby: Sequence[OrderKey]) -> list[Product]:
    """Products in ``orderby`` order, ties (and no ``orderby``) broken by Id, ascending."""
    out = sorted(products, key=lambda p: p.id)
    for key in reversed(orderby):  # stable sorts, least significant key first
        getter: Callable[[Product], Any] = _PROPERTIES[key.path]
        out.sort(key=getter, reverse=key.descending)
    return out


# ---------------------------------------------------------------------------------------------
# $filter: tokens


@dataclass(frozen=True)
class Token:
    kind: str  # "(", ")", ",", ":", "=", "str", "geo", "datetime", "number", "name", "end"
    text: str
    pos: int


_TOKEN_RE = re.compile(
    r"""
    (?P<ws>\s+)
  | (?P<geo>geography'(?:[^']|'')*')
  | (?P<str>'(?:[^']|'')*')
  | (?P<datetime>\d{4}-\d{2}-\d{2}(?:T\d{2}:\d{2}(?::\d{2}(?:\.\d+)?)?(?:Z|[+-]\d{2}:?\d{2})?)?)
  | (?P<number>[+-]?(?:\d+\.?\d*|\.\d+)(?:[eE][+-]?\d+)?)
  | (?P<name>[A-Za-z_][A-Za-z0-9_]*(?:[./][A-Za-z_][A-Za-z0-9_]*)*)
  | (?P<punct>[(),:=])
    """,
    re.VERBOSE | re.IGNORECASE,
)


def tokenize(text: str) -> list[Token]:
    tokens: list[Token] = []
    pos = 0
    while pos < len(text):
        m = _TOKEN_RE.match(text, pos)
        if m is None:
            raise ODataError(f"$filter: unexpected character {text[pos]!r} at position {pos}", parameter="$filter")
        kind = m.lastgroup or ""
        if kind != "ws":
            tokens.append(Token(m.group() if kind == "punct" else kind, m.group(), pos))
        pos = m.end()
    tokens.append(Token("end", "", len(text)))
    return tokens


# ---------------------------------------------------------------------------------------------
# $filter: parse straight into closures over (product, attribute-in-a-lambda)

Predicate = Callable[[Product, Attribute | None], bool]
Getter = Callable[[Product, Attribute | None], Scalar]

_COMPARISONS = {"eq", "ne", "gt", "ge", "lt", "le"}
_STRING_FUNCTIONS: dict[str, Callable[[str, str], bool]] = {
    "contains": lambda a, b: b in a,
    "startswith": lambda a, b: a.startswith(b),
    "endswith": lambda a, b: a.endswith(b),
}
_ANY_RE = re.compile(r"^Attributes(?:/OData\.CSC\.(?P<type>[A-Za-z]+)Attribute)?/(?P<op>any|all)$")
_CAST_RE = re.compile(r"^OData\.CSC\.(?P<type>[A-Za-z]+)Attribute$")


def compile_filter(text: str) -> Predicate:
    """A ``$filter`` expression as a predicate over products; ODataError when it cannot be understood."""
    if len(text) > 100_000:
        raise ODataError("$filter longer than 100000 characters", parameter="$filter")
    parser = _Parser(tokenize(text), text)
    predicate = parser.expression()
    parser.expect("end")
    return predicate


class _Parser:
    def __init__(self, tokens: list[Token], text: str) -> None:
        self.tokens = tokens
        self.text = text
        self.i = 0
        self.lambda_var: str | None = None
        self.depth = 0

    # -- plumbing --------------------------------------------------------------------------

    @property
    def tok(self) -> Token:
        return self.tokens[self.i]

    def advance(self) -> Token:
        tok = self.tokens[self.i]
        self.i += 1
        return tok

    def error(self, message: str, tok: Token | None = None) -> ODataError:
        tok = tok or self.tok
        where = f"at position {tok.pos}" if tok.kind != "end" else "at the end"
        return ODataError(f"$filter: {message} {where}", parameter="$filter")

    def expect(self, kind: str) -> Token:
        if self.tok.kind != kind:
            found = repr(self.tok.text) if self.tok.kind != "end" else "nothing"
            raise self.error(f"expected {kind!r}, found {found}")
        return self.advance()

    def keyword(self, word: str) -> bool:
        if self.tok.kind == "name" and self.tok.text == word:
            self.advance()
            return True
        return False

    # -- boolean structure -----------------------------------------------------------------

    def expression(self) -> Predicate:
        self.depth += 1
        if self.depth > 100:
            raise self.error("expression nested too deeply")
        items = [self.conjunction()]
        while self.keyword("or"):
            items.append(self.conjunction())
        self.depth -= 1
        if len(items) == 1:
            return items[0]
        return lambda p, a: any(f(p, a) for f in items)

    def conjunction(self) -> Predicate:
        items = [self.negation()]
        while self.keyword("and"):
            items.append(self.negation())
        if len(items) == 1:
            return items[0]
        return lambda p, a: all(f(p, a) for f in items)

    def negation(self) -> Predicate:
        if self.keyword("not"):
            inner = self.negation()
            return lambda p, a: not inner(p, a)
        return self.primary()

    def primary(self) -> Predicate:
        tok = self.tok
        if tok.kind == "(":
            self.advance()
            inner = self.expression()
            self.expect(")")
            return inner
        if tok.kind == "name" and self.tokens[self.i + 1].kind == "(":
            return self.call()
        left = self.operand()
        op = self.tok
        if op.kind == "name" and op.text in _COMPARISONS:
            self.advance()
            right = self.operand()
            return _comparison(op.text, left, right)
        if op.kind == "name" and op.text in ("has", "in", "add", "sub", "mul", "div", "mod"):
            raise self.error(f"operator {op.text!r} is not supported")
        if tok.kind == "name" and tok.text == "Online":  # a boolean property on its own
            return lambda p, a: bool(left(p, a))
        raise self.error("expected a comparison operator (eq, ne, gt, ge, lt, le)", op)

    # -- functions and lambdas -------------------------------------------------------------

    def call(self) -> Predicate:
        name_tok = self.advance()
        name = name_tok.text
        self.expect("(")
        m = _ANY_RE.match(name)
        if m:
            return self.lambda_call(m.group("type"), m.group("op"), name_tok)
        if name in _STRING_FUNCTIONS:
            subject = self.operand()
            self.expect(",")
            literal = self.tok
            if literal.kind != "str":
                raise self.error(f"{name}() needs a string literal as its second argument")
            self.advance()
            self.expect(")")
            needle = _string(literal.text)
            test = _STRING_FUNCTIONS[name]

            def string_function(p: Product, a: Attribute | None) -> bool:
                value = subject(p, a)
                return isinstance(value, str) and test(value, needle)

            return string_function
        if name == "OData.CSC.Intersects":
            return self.intersects()
        raise self.error(f"unknown function {name!r}", name_tok)

    def lambda_call(self, type_name: str | None, op: str, name_tok: Token) -> Predicate:
        if type_name is not None and type_name not in ATTRIBUTE_TYPES:
            raise self.error(f"unknown attribute type OData.CSC.{type_name}Attribute", name_tok)
        if self.lambda_var is not None:
            raise self.error("nested lambda expressions are not supported", name_tok)
        if self.tok.kind == ")":  # Attributes/any(): the product has attributes
            self.advance()
            return lambda p, a: bool(p.attributes) if op == "any" else True
        var = self.expect("name").text
        if var in _COMPARISONS or var in ("and", "or", "not"):
            raise self.error(f"bad lambda variable {var!r}")
        self.expect(":")
        self.lambda_var = var
        start = self.i
        body = self.expression()
        names = _name_equalities(self.tokens[start : self.i], var)
        self.lambda_var = None
        self.expect(")")
        if op == "all":
            return lambda p, a: all(body(p, att) for att in p.attributes)
        if names:  # the usual shape, att/Name eq '...' and ...: look the attribute up by name
            (wanted,) = names

            def any_named(p: Product, a: Attribute | None) -> bool:
                return any(body(p, att) for att in p.attribute_map.get(wanted, ()))

            return any_named
        return lambda p, a: any(body(p, att) for att in p.attributes)

    def intersects(self) -> Predicate:
        if self.tok.kind == "name" and self.tok.text == "area":
            self.advance()
            self.expect("=")
        geo = self.tok
        if geo.kind != "geo":
            raise self.error("OData.CSC.Intersects needs area=geography'SRID=4326;...'")
        self.advance()
        self.expect(")")
        area = _geography(geo.text[len("geography") :], self.error)
        shapely.prepare(area)
        minx, miny, maxx, maxy = area.bounds

        def intersects(p: Product, a: Attribute | None) -> bool:
            b = p.bbox
            if b[0] > maxx or b[2] < minx or b[1] > maxy or b[3] < miny:
                return False
            return bool(area.intersects(p.shape))

        return intersects

    # -- operands --------------------------------------------------------------------------

    def operand(self) -> Getter:
        tok = self.advance()
        if tok.kind == "str":
            s = _string(tok.text)
            return lambda p, a: s
        if tok.kind == "number":
            n = _number(tok.text)
            return lambda p, a: n
        if tok.kind == "datetime":
            try:
                d = parse_literal_datetime(tok.text)
            except ValueError:
                raise self.error(f"bad date-time {tok.text!r}", tok) from None
            return lambda p, a: d
        if tok.kind == "name":
            return self.path(tok)
        found = repr(tok.text) if tok.kind != "end" else "nothing"
        raise self.error(f"expected a property or a literal, found {found}", tok)

    def path(self, tok: Token) -> Getter:
        text = tok.text
        if text in ("true", "false"):
            flag = text == "true"
            return lambda p, a: flag
        if text == "null":
            return lambda p, a: None
        var = self.lambda_var
        if var is not None and (text == var or text.startswith(var + "/")):
            parts = text.split("/")[1:]
            if len(parts) == 2:
                m = _CAST_RE.match(parts[0])
                if m is None or m.group("type") not in ATTRIBUTE_TYPES:
                    raise self.error(f"bad attribute type cast {parts[0]!r}", tok)
                parts = parts[1:]
            if parts == ["Name"]:
                return lambda p, a: a.name if a is not None else None
            if parts == ["Value"]:
                return lambda p, a: a.value if a is not None else None
            if parts == ["ValueType"]:
                return lambda p, a: a.type if a is not None else None
            raise self.error(f"unknown attribute property {text!r} (Name, Value, ValueType)", tok)
        getter = _PROPERTIES.get(text)
        if getter is None:
            raise self.error(f"unknown property {text!r}; known: {sorted(_PROPERTIES)}", tok)
        return lambda p, a: getter(p)


def _name_equalities(tokens: Sequence[Token], var: str) -> list[str]:
    """The name in a lambda body of the form ``var/Name eq '<name>' and ...`` (top-level and only), else []."""
    depth = 0
    for t in tokens:
        if t.kind == "(":
            depth += 1
        elif t.kind == ")":
            depth -= 1
        elif t.kind == "name" and t.text in ("or", "not") and depth == 0:
            return []
    if (
        len(tokens) >= 3
        and tokens[0].kind == "name"
        and tokens[0].text == f"{var}/Name"
        and tokens[1].text == "eq"
        and tokens[2].kind == "str"
        and (len(tokens) == 3 or tokens[3].text == "and")
    ):
        return [_string(tokens[2].text)]
    return []


def _string(literal: str) -> str:
    return literal[1:-1].replace("''", "'")


def _number(text: str) -> int | float:
    try:
        return int(text)
    except ValueError:
        value = float(text)
        if not math.isfinite(value):
            raise ODataError(f"$filter: number out of range {text!r}", parameter="$filter") from None
        return value


def parse_literal_datetime(text: str) -> datetime:
    """An OData date-time (or plain date) literal; naive values are UTC."""
    if len(text) == 10:
        d = date.fromisoformat(text)
        return datetime(d.year, d.month, d.day, tzinfo=UTC)
    value = datetime.fromisoformat(text.upper().replace("Z", "+00:00"))
    return value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)


def _geography(literal: str, error: Callable[[str], ODataError]) -> BaseGeometry:
    text = _string(literal).strip()
    srid, sep, wkt = text.partition(";")
    if sep:
        if srid.replace(" ", "").upper() != "SRID=4326":
            raise error(f"only SRID=4326 is supported, got {srid!r}")
    else:
        wkt = text
    try:
        geom = shapely.wkt.loads(wkt)
    except (ShapelyError, GEOSException, ValueError, TypeError) as exc:
        raise error(f"bad geography {wkt[:80]!r}: {exc}") from None
    if geom.is_empty:
        raise error("empty geography")
    if not geom.is_valid:
        raise error(f"invalid geography: {shapely.is_valid_reason(geom)}")
    return geom


# ---------------------------------------------------------------------------------------------
# comparisons, with the coercions a loosely typed catalogue needs


def _coerce(a: Scalar, b: Scalar) -> tuple[Any, Any] | None:
    """(a, b) made comparable, or None when they cannot be."""
    if a is None or b is None:
        return None
    if isinstance(a, bool) or isinstance(b, bool):
        if isinstance(a, str):
            a = {"true": True, "false": False}.get(a.lower(), a)
        if isinstance(b, str):
            b = {"true": True, "false": False}.get(b.lower(), b)
        return (a, b) if isinstance(a, bool) and isinstance(b, bool) else None
    if isinstance(a, datetime) or isinstance(b, datetime):
        try:
            if isinstance(a, str):
                a = parse_literal_datetime(a)
            if isinstance(b, str):
                b = parse_literal_datetime(b)
        except ValueError:
            return None
        return (a, b) if isinstance(a, datetime) and isinstance(b, datetime) else None
    if isinstance(a, int | float) or isinstance(b, int | float):
        try:
            return float(a), float(b)
        except (TypeError, ValueError):
            return None
    return a, b


_ORDERING: dict[str, Callable[[Any, Any], bool]] = {
    "gt": lambda a, b: a > b,
    "ge": lambda a, b: a >= b,
    "lt": lambda a, b: a < b,
    "le": lambda a, b: a <= b,
}


def _comparison(op: str, left: Getter, right: Getter) -> Predicate:
    if op in ("eq", "ne"):
        negate = op == "ne"

        def equality(p: Product, a: Attribute | None) -> bool:
            x, y = left(p, a), right(p, a)
            if x is None or y is None:
                return (x is y) != negate
            pair = _coerce(x, y)
            return (pair is not None and pair[0] == pair[1]) != negate

        return equality
    compare = _ORDERING[op]

    def ordering(p: Product, a: Attribute | None) -> bool:
        pair = _coerce(left(p, a), right(p, a))
        if pair is None:
            return False
        try:
            return bool(compare(pair[0], pair[1]))
        except TypeError:
            return False

    return ordering
