"""Entries of the local provider's catalogue (:mod:`ingest.devtools.catalog`) shown as CDSE OData products. Pure.

Every value an EODAG ``cop_dataspace`` search filters or maps on comes from the product name (what CDSE's
own attributes derive from), from the entry's STAC properties where it has them, and from the
product's metadata file when the server has read it (:class:`FileFacts`: cloud cover, orbit
direction). ``Collection/Name`` and ``productType`` are the values of the ``products:`` section of
EODAG's ``cop_dataspace.yml``: for S1 GRD that is ``GRD``, where CDSE's own documentation and CREODIAS'
answers show ``IW_GRDH_1S`` (EODAG works against what it filters on, so we answer to ``GRD``).
"""

from __future__ import annotations

import re
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from ingest.devtools.catalog import ProviderEntry, parse_datetime
from ingest.devtools.cdse.odata import Attribute, AttributeType, ChecksumValue, Product

# uuid5 namespace of our product ids: the same name always gets the same Id
ID_NAMESPACE = uuid.UUID("6f1d2e4a-3b7c-5d8e-9f0a-1b2c3d4e5f60")

# EODAG collection id -> (CDSE collection, productType), as cop_dataspace.yml's products: section says
COLLECTIONS: dict[str, tuple[str, str]] = {
    "S2_MSI_L1C": ("SENTINEL-2", "S2MSI1C"),
    "S2_MSI_L2A": ("SENTINEL-2", "S2MSI2A"),
    "S1_SAR_GRD": ("SENTINEL-1", "GRD"),
    "S1_SAR_SLC": ("SENTINEL-1", "SLC"),
    "S1_SAR_OCN": ("SENTINEL-1", "OCN"),
    "S1_SAR_RAW": ("SENTINEL-1", "RAW"),
    "S3_EFR": ("SENTINEL-3", "OL_1_EFR___"),
    "S3_ERR": ("SENTINEL-3", "OL_1_ERR___"),
    "S3_OLCI_L2LFR": ("SENTINEL-3", "OL_2_LFR___"),
    "S3_OLCI_L2WFR": ("SENTINEL-3", "OL_2_WFR___"),
    "S3_SLSTR_L1RBT": ("SENTINEL-3", "SL_1_RBT___"),
    "S3_SLSTR_L2LST": ("SENTINEL-3", "SL_2_LST___"),
    "S3_SLSTR_L2WST": ("SENTINEL-3", "SL_2_WST___"),
    "S3_SLSTR_L2FRP": ("SENTINEL-3", "SL_2_FRP___"),
    "S3_SRA": ("SENTINEL-3", "SR_1_SRA___"),
}

_S2_NAME = re.compile(
    r"^S2(?P<sat>[A-D])_MSI(?P<level>L1C|L2A)_(?P<sensing>\d{8}T\d{6})_N(?P<baseline>\d{4})_R(?P<rorbit>\d{3})"
    r"_T(?P<tile>[0-9]{2}[A-Z]{3})_(?P<generation>\d{8}T\d{6})"
)
_S1_NAME = re.compile(
    r"^S1(?P<sat>[A-D])_(?P<mode>IW|EW|SM|WV|S[1-6])_(?P<type>GRD|SLC|OCN|RAW)(?P<res>[FHM_])_(?P<level>\d)"
    r"(?P<cls>[SA])(?P<pol>SH|SV|DH|DV|HH|VV|HV|VH)_(?P<start>\d{8}T\d{6})_(?P<stop>\d{8}T\d{6})"
    r"_(?P<orbit>\d{6})_(?P<datatake>[0-9A-F]{6})_(?P<crc>[0-9A-F]{4})"
)
_S3_NAME = re.compile(
    r"^S3(?P<sat>[A-D])_(?P<type>(?P<instrument>OL|SL|SR|SY|MW|DO)_\d_[A-Z0-9_]{6})_(?P<start>\d{8}T\d{6})"
    r"_(?P<stop>\d{8}T\d{6})"
)
_POLARISATIONS = {"SH": "HH", "SV": "VV", "DH": "HH&HV", "DV": "VV&VH", "HH": "HH", "VV": "VV", "HV": "HV", "VH": "VH"}
_S3_INSTRUMENTS = {"OL": "OLCI", "SL": "SLSTR", "SR": "SRAL", "SY": "SYNERGY", "MW": "MWR", "DO": "DORIS"}


@dataclass(frozen=True)
class FileFacts:
    """What the server learnt from a product's file: checksums and a few metadata values."""

    size: int
    mtime_ns: int
    md5: str
    blake3: str
    checksum_date: datetime
    cloud_cover: float | None = None
    orbit_direction: str | None = None

    def checksums(self) -> tuple[ChecksumValue, ...]:
        return (
            ChecksumValue("MD5", self.md5, self.checksum_date),
            ChecksumValue("BLAKE3", self.blake3, self.checksum_date),
        )


def product_uuid(name: str) -> str:
    """The OData ``Id`` of a product: a uuid5 of its name, stable across restarts."""
    return str(uuid.uuid5(ID_NAMESPACE, name))


def product_name(entry_id: str) -> str:
    """``<id>.SEN3`` for Sentinel-3 products, ``<id>.SAFE`` otherwise (as CDSE names them)."""
    return f"{entry_id}.SEN3" if entry_id.startswith("S3") else f"{entry_id}.SAFE"


def collection_of(entry: ProviderEntry) -> tuple[str, str | None]:
    """(CDSE collection, productType) of an entry: its EODAG collection id, else its product name."""
    known = COLLECTIONS.get(entry.collection)
    if known is not None:
        return known
    if (m := _S2_NAME.match(entry.id)) is not None:
        return "SENTINEL-2", f"S2MSI{m.group('level')[1:]}"
    if (m := _S1_NAME.match(entry.id)) is not None:
        return "SENTINEL-1", m.group("type")
    if (m := _S3_NAME.match(entry.id)) is not None:
        return "SENTINEL-3", m.group("type")
    return entry.collection.upper(), None


def _compact(text: str) -> datetime:
    """``20260101T001000`` (as in product names), by hand: strptime costs 20 times more."""
    t = text
    return datetime(int(t[0:4]), int(t[4:6]), int(t[6:8]), int(t[9:11]), int(t[11:13]), int(t[13:15]), tzinfo=UTC)


def _bbox(entry: ProviderEntry) -> tuple[float, float, float, float]:
    b = entry.bbox
    if len(b) == 6:
        return (b[0], b[1], b[3], b[4])
    return (b[0], b[1], b[2], b[3])


def _datetime_property(props: dict[str, Any], key: str) -> datetime | None:
    value = props.get(key)
    if isinstance(value, str):
        try:
            return parse_datetime(value)
        except ValueError:
            return None
    return None


def to_product(entry: ProviderEntry, facts: FileFacts | None = None, *, online: bool = True) -> Product:
    """The OData product of a catalogue entry (``facts``: what its file told us, when read)."""
    name = product_name(entry.id)
    collection, product_type = collection_of(entry)
    props = entry.properties
    start = _datetime_property(props, "start_datetime") or entry.datetime
    end = _datetime_property(props, "end_datetime")
    attrs: dict[str, tuple[Any, AttributeType]] = {}

    def put(key: str, value: Any, kind: AttributeType = "String") -> None:
        if value is not None and value != "":
            attrs[key] = (value, kind)

    put("origin", "ESA")
    put("productType", product_type)
    platform = _name_attributes(entry.id, put)
    if platform is not None:
        put("platformSerialIdentifier", platform)
    put("platformShortName", collection if collection.startswith("SENTINEL-") else None)
    stop = _S1_NAME.match(entry.id) or _S3_NAME.match(entry.id)
    if stop is not None:
        end = end or _compact(stop.group("stop"))
    # STAC properties of the entry (a catalogue built from other sources) win over the name
    put("cloudCover", _number(props.get("eo:cloud_cover")), "Double")
    put("orbitNumber", _integer(props.get("sat:absolute_orbit")), "Integer")
    put("relativeOrbitNumber", _integer(props.get("sat:relative_orbit")), "Integer")
    if isinstance(props.get("sat:orbit_state"), str):
        put("orbitDirection", props["sat:orbit_state"].upper())
    if facts is not None:
        if facts.cloud_cover is not None and "cloudCover" not in attrs:
            put("cloudCover", facts.cloud_cover, "Double")
        if facts.orbit_direction and "orbitDirection" not in attrs:
            put("orbitDirection", facts.orbit_direction.upper())
    end = end or start
    put("beginningDateTime", start, "DateTimeOffset")
    put("endingDateTime", end, "DateTimeOffset")
    return Product(
        key=entry.id,
        id=product_uuid(name),
        name=name,
        collection=collection,
        content_length=facts.size if facts is not None else entry.size,
        origin_date=entry.published,
        publication_date=entry.published,
        modification_date=entry.published,
        content_start=start,
        content_end=end,
        footprint=entry.geometry,
        bbox=_bbox(entry),
        s3_path=_s3_path(collection, product_type, start, name),
        attributes=tuple(Attribute(k, v, t) for k, (v, t) in attrs.items()),
        online=online,
    )


def _name_attributes(entry_id: str, put: Callable[..., None]) -> str | None:
    """Attributes readable from a Sentinel product name; returns the platform letter."""
    if (m := _S2_NAME.match(entry_id)) is not None:
        level = m.group("level")
        baseline = m.group("baseline")
        put("tileId", m.group("tile"))
        put("relativeOrbitNumber", int(m.group("rorbit")), "Integer")
        put("processingLevel", f"S2MSI{level[1:]}")
        put("processorVersion", f"{baseline[:2]}.{baseline[2:]}")
        put("processingDate", _compact(m.group("generation")), "DateTimeOffset")
        put("instrumentShortName", "MSI")
        put("operationalMode", "INS-NOBS")
        return m.group("sat")
    if (m := _S1_NAME.match(entry_id)) is not None:
        orbit = int(m.group("orbit"))
        offset = 27 if m.group("sat") == "B" else 73  # ESA's relative orbit formulas (S1A's phasing for C, D)
        put("orbitNumber", orbit, "Integer")
        put("relativeOrbitNumber", (orbit - offset) % 175 + 1, "Integer")
        put("swathIdentifier", m.group("mode"))
        put("operationalMode", m.group("mode"))
        put("polarisationChannels", _POLARISATIONS[m.group("pol")])
        put("productClass", m.group("cls"))
        put("datatakeID", str(int(m.group("datatake"), 16)))
        put("instrumentShortName", "SAR")
        put("processingLevel", f"LEVEL{m.group('level')}")
        return m.group("sat")
    if (m := _S3_NAME.match(entry_id)) is not None:
        put("instrumentShortName", _S3_INSTRUMENTS.get(m.group("instrument")))
        return m.group("sat")
    return None


def _s3_path(collection: str, product_type: str | None, start: datetime, name: str) -> str:
    day = start.strftime("%Y/%m/%d")
    mission = collection.title() if collection.startswith("SENTINEL-") else collection
    if product_type and product_type.startswith("S2MSI"):
        return f"/eodata/{mission}/MSI/L{product_type[5:]}/{day}/{name}"
    if collection == "SENTINEL-1":
        return f"/eodata/{mission}/SAR/{product_type or 'UNKNOWN'}/{day}/{name}"
    if collection == "SENTINEL-3" and product_type:
        instrument = _S3_INSTRUMENTS.get(product_type[:2], product_type[:2])
        return f"/eodata/{mission}/{instrument}/{product_type.rstrip('_')}/{day}/{name}"
    return f"/eodata/{mission}/{product_type or 'UNKNOWN'}/{day}/{name}"


def _number(value: Any) -> float | None:
    if isinstance(value, bool) or not isinstance(value, int | float):
        return None
    return float(value)


def _integer(value: Any) -> int | None:
    if isinstance(value, bool) or not isinstance(value, int):
        return None
    return value
