"""The CDSE-like provider's OData: $filter as EODAG's cop_dataspace writes it, query options, product JSON."""

from __future__ import annotations

import json
from collections.abc import Sequence
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, parse_qsl, urlsplit

import pytest
import yaml
from hypothesis import given, settings
from hypothesis import strategies as st

from ingest.devtools.catalog import ProviderEntry
from ingest.devtools.cdse import odata
from ingest.devtools.cdse.catalogue import COLLECTIONS, FileFacts, product_uuid, to_product
from ingest.devtools.cdse.odata import ODataError, compile_filter, parse_query

FIXTURES = Path(__file__).resolve().parents[1] / "fixtures" / "eodag" / "provider_responses"
T0 = datetime(2026, 1, 1, tzinfo=UTC)
S2 = "S2A_MSIL1C_20260101T001000_N0510_R051_T31TDH_20260101T015107"
S2B = "S2B_MSIL2A_20260102T103000_N0511_R108_T32TLR_20260102T130000"
S1 = "S1A_IW_GRDH_1SDV_20260101T002000_20260101T002025_039156_049F17_966B"
S3 = "S3A_OL_1_EFR____20260101T073827_20260101T074112_20260101T091357_0164_077_334_4320_PS1_O_NR_004"


def square(x: float, y: float, d: float = 1.0) -> dict[str, Any]:
    ring = [[x, y], [x + d, y], [x + d, y + d], [x, y + d], [x, y]]
    return {"type": "Polygon", "coordinates": [ring]}


def entry(product_id: str, collection: str, minutes: int, *, x: float = 3.0, **props: Any) -> ProviderEntry:
    sensing = T0 + timedelta(minutes=minutes)
    return ProviderEntry(
        id=product_id,
        collection=collection,
        geometry=square(x, 45.0),
        bbox=[],
        datetime=sensing,
        published=sensing + timedelta(hours=6),
        size=1000 + minutes,
        checksum="0" * 64,
        properties=props,
    )


FACTS = FileFacts(
    size=1234,
    mtime_ns=0,
    md5="ab" * 16,
    blake3="cd" * 32,
    checksum_date=T0,
    cloud_cover=12.5,
    orbit_direction="DESCENDING",
)
L1C = to_product(entry(S2, "S2_MSI_L1C", 10), FACTS)
L2A = to_product(entry(S2B, "S2_MSI_L2A", 60 * 34, x=10.0, **{"eo:cloud_cover": 80.0}))
GRD = to_product(entry(S1, "S1_SAR_GRD", 20, x=20.0))
EFR = to_product(entry(S3, "S3_EFR", 30, x=30.0))
ALL = [L1C, L2A, GRD, EFR]


def names(filter_text: str, products: Sequence[odata.Product] = ALL) -> set[str]:
    predicate = compile_filter(filter_text)
    return {p.key for p in products if predicate(p, None)}


def string_attr(name: str, value: str) -> str:  # as cop_dataspace.yml writes it
    return (
        f"Attributes/OData.CSC.StringAttribute/any(att:att/Name eq '{name}' and "
        f"att/OData.CSC.StringAttribute/Value eq '{value}')"
    )


# ---------------------------------------------------------------------------------------------
# $filter: every shape of EODAG's cop_dataspace configuration


def test_collection_and_product_type_as_eodag_writes_them() -> None:
    assert names("Collection/Name eq 'SENTINEL-2'") == {S2, S2B}
    assert names(f"Collection/Name eq 'SENTINEL-2' and {string_attr('productType', 'S2MSI1C')}") == {S2}
    assert names(string_attr("productType", "GRD")) == {S1}
    assert names(string_attr("productType", "OL_1_EFR___")) == {S3}
    assert names(string_attr("platformSerialIdentifier", "B")) == {S2B}
    assert names(string_attr("tileId", "31TDH")) == {S2}
    assert names(string_attr("platformShortName", "SENTINEL-1")) == {S1}
    assert names(string_attr("polarisationChannels", "VV&VH")) == {S1}


@pytest.mark.parametrize(
    ("op", "value", "expected"),
    [
        ("le", "12.5", {S2}),
        ("lt", "12.5", set()),
        ("ge", "12.5", {S2, S2B}),
        ("gt", "50", {S2B}),
        ("eq", "80", {S2B}),
    ],
)
def test_double_attribute_comparisons(op: str, value: str, expected: set[str]) -> None:
    text = (
        "Attributes/OData.CSC.DoubleAttribute/any(att:att/Name eq 'cloudCover' and "
        f"att/OData.CSC.DoubleAttribute/Value {op} {value})"
    )
    assert names(text) == expected


def test_integer_attribute_with_the_string_value_cast_eodag_writes() -> None:
    # cop_dataspace.yml: IntegerAttribute outside, StringAttribute/Value inside, unquoted number
    text = (
        "Attributes/OData.CSC.IntegerAttribute/any(att:att/Name eq 'orbitNumber' and "
        "att/OData.CSC.StringAttribute/Value eq 39156)"
    )
    assert names(text) == {S1}
    rel = (
        "Attributes/OData.CSC.IntegerAttribute/any(att:att/Name eq 'relativeOrbitNumber' and "
        "att/OData.CSC.IntegerAttribute/Value {} {})"
    )
    assert names(rel.format("eq", 51)) == {S2}
    assert names(rel.format("gt", 100)) == {S2B}  # 108
    assert names(rel.format("le", 59)) == {S2, S1}  # S1A absolute orbit 39156 is relative orbit 59


def test_dates() -> None:
    published = L1C.publication_date
    assert names(f"PublicationDate gt {odata.format_datetime(published - timedelta(seconds=1))}") >= {S2}
    assert S2 not in names(f"PublicationDate gt {odata.format_datetime(published)}")
    assert S2 in names(f"PublicationDate lt {odata.format_datetime(published + timedelta(microseconds=1))}")
    assert names("ContentDate/Start lt 2026-01-01T00:15:00.000Z") == {S2}
    assert names("ContentDate/End gt 2026-01-01T00:20:10.000Z") == {S1, S3, S2B}  # S1's stop is 00:20:25
    assert names("ContentDate/Start ge 2026-01-02") == {S2B}  # a plain date is midnight UTC
    assert names("ModificationDate lt 2026-01-01T06:25:00+00:00") == {S2, S1}
    assert names("OriginDate le 2026-01-01T06:10:00Z") == {S2}
    attr = (
        "Attributes/OData.CSC.DateTimeOffsetAttribute/any(att:att/Name eq 'processingDate' and "
        "att/OData.CSC.DateTimeOffsetAttribute/Value eq 2026-01-01T01:51:07.000Z)"
    )
    assert names(attr) == {S2}


def test_intersects_as_eodag_writes_it() -> None:
    # shapely's WKT (what EODAG's to_ewkt gives): a space after POLYGON
    area = "SRID=4326;POLYGON ((2.5 44.5, 4.5 44.5, 4.5 46.5, 2.5 46.5, 2.5 44.5))"
    assert names(f"OData.CSC.Intersects(area=geography'{area}')") == {S2}
    point = "OData.CSC.Intersects(area=geography'SRID=4326;POINT(20.5 45.5)')"
    assert names(point) == {S1}
    wide = "OData.CSC.Intersects(area=geography'SRID=4326;POLYGON((0 40,40 40,40 50,0 50,0 40))')"
    assert names(f"{wide} and Collection/Name eq 'SENTINEL-3'") == {S3}


def test_name_functions_booleans_and_structure() -> None:
    assert names("contains(Name,'T31TDH')") == {S2}
    assert names("startswith(Name,'S1A_IW')") == {S1}
    assert names("endswith(Name,'.SEN3')") == {S3}
    assert names("not contains(Name,'S2')") == {S1, S3}
    assert names("Name eq 'S1A_IW_GRDH_1SDV_20260101T002000_20260101T002025_039156_049F17_966B.SAFE'") == {S1}
    assert names(f"Id eq '{product_uuid(S2 + '.SAFE')}'") == {S2}
    assert names("Collection/Name eq 'SENTINEL-1' or Collection/Name eq 'SENTINEL-3'") == {S1, S3}
    # and binds tighter than or; parentheses change that
    assert names("Collection/Name eq 'SENTINEL-1' or Collection/Name eq 'SENTINEL-3' and contains(Name,'S1A')") == {S1}
    assert names("(Collection/Name eq 'SENTINEL-1' or Collection/Name eq 'SENTINEL-3') and contains(Name,'S3')") == {S3}
    assert names("Online eq true") == set(ALL_KEYS)
    assert names("Online") == set(ALL_KEYS)
    assert names("ContentLength gt 1020") == {S2, S3, S2B}  # 1234 (its file), 1030, 3040
    assert names("Name ne null") == set(ALL_KEYS)
    assert names("Attributes/any()") == set(ALL_KEYS)


ALL_KEYS = [p.key for p in ALL]


def test_a_full_eodag_query_string_filter() -> None:
    # what EODAG 4.10 sent for S2_MSI_L1C with a geometry and a publication window (urlencoded by it)
    text = (
        "Collection/Name eq 'SENTINEL-2' and OData.CSC.Intersects(area=geography'SRID=4326;POLYGON ((2 44, 5 44, 5 47, "
        "2 47, 2 44))') and Attributes/OData.CSC.StringAttribute/any(att:att/Name eq 'productType' and "
        "att/OData.CSC.StringAttribute/Value eq 'S2MSI1C') and PublicationDate gt 2026-01-01T00:00:00.000Z and "
        "PublicationDate lt 2026-01-02T00:00:00.000Z"
    )
    assert names(text) == {S2}


@pytest.mark.parametrize(
    "text",
    [
        "Name eq",
        "Name eq 'unterminated",
        "Name eq 'a' and",
        "(Name eq 'a'",
        "Name eq 'a')",
        "Bogus eq 'x'",
        "Name like 'x'",
        "Name has 'x'",
        "ContentLength add 1 eq 2",
        "contains(Name)",
        "contains(Name, Id)",
        "frobnicate(Name,'x')",
        "OData.CSC.Intersects(area=geography'SRID=3857;POINT(1 2)')",
        "OData.CSC.Intersects(area=geography'SRID=4326;POLYGON((0 0, 1 1))')",
        "OData.CSC.Intersects(area=geography'SRID=4326;POLYGON((0 0,1 0,0 1,1 1,0 0))')",  # self-intersecting
        "OData.CSC.Intersects(area='POINT(1 2)')",
        "Attributes/OData.CSC.FooAttribute/any(att:att/Name eq 'x')",
        "Attributes/OData.CSC.StringAttribute/any(att:att/Colour eq 'x')",
        "Attributes/OData.CSC.StringAttribute/any(att:att/Name eq 'x' and att/OData.CSC.Bar/Value eq 1)",
        "Attributes/any(a:Attributes/any(b:b/Name eq 'x'))",
        "PublicationDate gt 2026-13-45T00:00:00Z",
        "Name eq 'a' ; drop table",
        "ContentLength gt 1e999",
        "(" * 150 + "Name eq 'a'" + ")" * 150,
        "",
        "   ",
    ],
)
def test_what_cannot_be_parsed_is_a_400(text: str) -> None:
    with pytest.raises(ODataError) as err:
        compile_filter(text)
    assert err.value.status == 400
    body = err.value.body()
    assert body["error"]["code"] == "BadRequest" and "$filter" in body["error"]["message"]


@settings(max_examples=300, deadline=None)
@given(
    st.text(
        alphabet=st.sampled_from(list("()',:=/ .-0123456789abcdeqltgnorANDNameIdOData.CSCAttributes"))
        | st.characters(),
        max_size=80,
    )
)
def test_any_text_parses_or_is_an_odata_error(text: str) -> None:
    try:
        predicate = compile_filter(text)
    except ODataError as exc:
        assert exc.status == 400
        return
    for product in ALL:  # and what parses evaluates without raising
        predicate(product, None)


# ---------------------------------------------------------------------------------------------
# query options


def test_query_options_as_eodag_sends_them() -> None:
    qs = (
        "$filter=Collection/Name%20eq%20%27SENTINEL-2%27&$orderby=ContentDate/Start%20asc&$count=True"
        "&$top=20&$skip=40&$expand=Attributes&$expand=Assets"
    )
    q = parse_query(parse_qsl(qs, keep_blank_values=True))
    assert q.filter_text == "Collection/Name eq 'SENTINEL-2'"
    assert q.orderby == (odata.OrderKey("ContentDate/Start"),)
    assert (q.top, q.skip, q.count, q.page) == (20, 40, True, 3)
    assert q.expand == {"Attributes", "Assets"}
    defaults = parse_query([])
    assert (defaults.top, defaults.skip, defaults.count, defaults.expand) == (20, 0, False, frozenset())


@pytest.mark.parametrize(
    ("pairs", "status"),
    [
        ([("$top", "1001")], 422),
        ([("$top", "-1")], 422),
        ([("$skip", "10001")], 422),
        ([("$top", "ten")], 400),
        ([("$count", "yes")], 400),
        ([("$expand", "Locations")], 400),
        ([("$orderby", "Name")], 400),
        ([("$orderby", "PublicationDate sideways")], 400),
        ([("$select", "Name")], 400),
        ([("$top", "1"), ("$top", "2")], 400),
    ],
)
def test_bad_options(pairs: list[tuple[str, str]], status: int) -> None:
    with pytest.raises(ODataError) as err:
        parse_query(pairs)
    assert err.value.status == status


def test_out_of_range_skip_answers_the_documented_422_body() -> None:
    with pytest.raises(ODataError) as err:
        parse_query([("$skip", "10001")])
    assert err.value.body() == {
        "detail": [
            {
                "type": "less_than_equal",
                "loc": ["query", "$skip"],
                "msg": "Input should be less than or equal to 10000",
                "input": "10001",
                "ctx": {"le": 10000},
            }
        ]
    }


def test_orderby_is_completed_by_id_so_paging_is_exact() -> None:
    same = [
        to_product(entry(f"S2A_MSIL1C_20260101T00{i}000_N0510_R051_T31TDH_20260101T015107", "S2_MSI_L1C", 0))
        for i in range(5)
    ]  # equal ContentDate/Start: the order is the Ids'
    by_id = sorted(same, key=lambda p: p.id)
    for direction in ("asc", "desc"):
        ordered = odata.sort_products(same, odata.parse_orderby(f"ContentDate/Start {direction}"))
        assert [p.id for p in ordered] == [p.id for p in by_id]
    mixed = odata.sort_products(ALL, odata.parse_orderby("PublicationDate desc"))
    assert [p.key for p in mixed] == [S2B, S3, S1, S2]
    two = odata.sort_products(ALL, odata.parse_orderby("ContentDate/End desc, PublicationDate"))
    assert two[0].key == S2B


def test_next_link_is_encoded_as_cdse_encodes_it() -> None:
    pairs = [
        ("$filter", "Collection/Name eq 'SENTINEL-2'"),
        ("$top", "2"),
        ("$skip", "0"),
        ("$expand", "Attributes"),
        ("$expand", "Assets"),
    ]
    q = parse_query(pairs)
    link = q.next_link("http://127.0.0.1:1/odata/v1/Products", total=5)
    assert link is not None
    assert "%24skip=2" in link and "$skip" not in link  # EODAG parses the skip only from an encoded $
    parsed = parse_qs(urlsplit(link).query)
    assert parsed["$skip"] == ["2"] and parsed["$expand"] == ["Attributes", "Assets"]
    assert parsed["$filter"] == ["Collection/Name eq 'SENTINEL-2'"]
    assert parse_query([("$top", "2"), ("$skip", "4")]).next_link("u", total=6) is None  # last page
    assert parse_query([("$top", "1000"), ("$skip", "9500")]).next_link("u", total=20_000) is None  # beyond 10000


# ---------------------------------------------------------------------------------------------
# the JSON of a product, held against real CDSE and CREODIAS answers


def fixture(name: str) -> dict[str, Any]:
    data: dict[str, Any] = json.loads((FIXTURES / name).read_text())
    return data


def test_product_json_has_the_fields_of_a_real_cdse_answer() -> None:
    real = fixture("cop_dataspace_search.json")
    real_product = real["value"][0]
    ours = odata.product_json(L1C, checksums=FACTS.checksums(), expand={"Attributes", "Assets"})
    assert list(ours) == list(real_product)  # same fields, same order
    assert [list(c) for c in ours["Checksum"]] == [list(c) for c in real_product["Checksum"]]
    assert [c["Algorithm"] for c in ours["Checksum"]] == [c["Algorithm"] for c in real_product["Checksum"]]
    assert list(ours["ContentDate"]) == list(real_product["ContentDate"])
    real_attr_keys = {tuple(a) for a in real_product["Attributes"]}
    assert {tuple(a) for a in ours["Attributes"]} == real_attr_keys
    types = {a["Name"]: a["@odata.type"] for a in real_product["Attributes"]}
    for a in ours["Attributes"]:
        if a["Name"] in types:
            assert a["@odata.type"] == types[a["Name"]], a["Name"]
            assert a["ValueType"] == a["@odata.type"].removeprefix("#OData.CSC.").removesuffix("Attribute")
    shared = {"productType", "tileId", "platformShortName", "platformSerialIdentifier", "processingDate", "cloudCover"}
    assert shared <= {a["Name"] for a in ours["Attributes"]}
    assert ours["Footprint"].startswith("geography'SRID=4326;POLYGON ((") and ours["Footprint"].endswith("))'")
    assert real_product["Footprint"].startswith("geography'SRID=4326;POLYGON ((")
    assert ours["GeoFootprint"]["type"] == "Polygon"
    for key in ("OriginDate", "PublicationDate", "ModificationDate", "EvictionDate"):
        assert len(ours[key]) == len(real_product[key]) and ours[key].endswith("Z")  # 6 fraction digits, Z
    assert ours["Name"] == S2 + ".SAFE" and ours["Id"] == product_uuid(S2 + ".SAFE")
    assert ours["S3Path"].startswith("/eodata/Sentinel-2/MSI/L1C/2026/01/01/") and ours["S3Path"].endswith(".SAFE")
    assert real["@odata.context"] == odata.context({"Attributes", "Assets"})


def test_top_level_shape_of_a_counted_search() -> None:
    real = fixture("creodias_odata_search_s1_grd.json")
    assert list(real) == ["@odata.context", "@odata.count", "value", "@odata.nextLink"]
    assert real["@odata.context"] == odata.context({"Attributes"})
    assert odata.context(()) == "$metadata#Products"
    assert odata.context({"Assets"}, entity=True) == "$metadata#Products(Assets())/$entity"
    # the S1 GRD attribute names EODAG maps come out of our names as CREODIAS' answer has them
    real_names = {a["Name"] for a in real["value"][0]["Attributes"]}
    ours = {a.name for a in GRD.attributes}
    for name in ("orbitNumber", "relativeOrbitNumber", "swathIdentifier", "polarisationChannels", "productType"):
        assert name in real_names and name in ours


def test_product_names_and_collections() -> None:
    assert GRD.name.endswith(".SAFE") and EFR.name == S3 + ".SEN3"
    assert (GRD.collection, EFR.collection, L2A.collection) == ("SENTINEL-1", "SENTINEL-3", "SENTINEL-2")
    assert GRD.content_end == T0 + timedelta(minutes=20, seconds=25)  # the stop time of the name
    attrs = {a.name: a.value for a in GRD.attributes}
    assert attrs["orbitNumber"] == 39156 and attrs["relativeOrbitNumber"] == 59 and attrs["swathIdentifier"] == "IW"
    assert {a.name: a.value for a in L1C.attributes}["orbitDirection"] == "DESCENDING"  # from the file's metadata
    assert L1C.content_length == FACTS.size
    # an unknown collection id falls back on the product name
    guessed = to_product(entry(S2, "whatever", 0))
    assert (guessed.collection, {a.name: a.value for a in guessed.attributes}["productType"]) == (
        "SENTINEL-2",
        "S2MSI1C",
    )


def test_collection_table_matches_eodag_cop_dataspace_configuration() -> None:
    import eodag

    yml = Path(eodag.__file__).parent / "resources" / "providers" / "cop_dataspace.yml"
    products = yaml.safe_load(yml.read_text())["cop_dataspace"]["products"]
    for eodag_id, (collection, product_type) in COLLECTIONS.items():
        assert products[eodag_id]["_collection"] == collection, eodag_id
        assert products[eodag_id]["product:type"] == product_type, eodag_id
