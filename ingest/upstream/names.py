"""Which acquisition a Sentinel product name is, and which of two processings of it is newer. Pure.

The providers reprocess: a new processing baseline of Sentinel-2 (``N0400`` -> ``N0500``), a
non-time-critical Sentinel-3 product after the near-real-time one, a Sentinel-1 slice remade with a
new IPF. The new product has another name, so the ids alone say "one product gone, another new". The
names say more: ``parse`` splits a name into the *acquisition* (what stays the same between
processings: ``key``) and the *processing* (``version``: greater is newer; None when the name does not
order them, Sentinel-1).

Naming conventions (ESA product specifications; real names in the tests):

* **Sentinel-2** ``S2A_MSIL1C_20200808T010311_N0500_R045_T54PXA_20230413T212505``: mission, product
  level, datatake sensing start, processing baseline, relative orbit, tile, product discriminator.
  Same acquisition = mission, level, datatake sensing start, relative orbit, tile. Newer = higher
  baseline, then the later discriminator (the processing time of the whole datatake).
* **Sentinel-1** ``S1A_IW_GRDH_1SDV_20210809T173953_20210809T174018_039156_049F13_6FF8``: mission,
  mode, product type and resolution class, processing level, class, polarisation, start, stop,
  absolute orbit, mission datatake id, product unique id (a CRC-16 of the product, ``_COG`` after it
  for the COG format). Same acquisition = all but the stop time and the unique id: the datatake and
  the slice's start time within it (slices of one datatake share everything else; the relative orbit
  follows from the absolute one); the COG format is another product line, never a reprocessing. The
  unique id is a checksum, not a sequence: which of two is newer is for the provider's publication
  time to say (``version`` None).
* **Sentinel-3** ``S3A_OL_1_EFR____20211021T073827_20211021T074112_20211021T091357_0164_077_334_4320_LN1_O_NR_002``:
  mission, instrument, level, product type (6 characters, ``_``-padded), start, stop, creation time,
  then duration, cycle, relative orbit and frame (along-track coordinate; ``____`` for stripes),
  centre, platform, timeliness (NR near real time, ST short time critical, NT non time critical) and
  baseline collection. Same acquisition = mission, instrument, level, type, cycle, relative orbit and
  frame (the frame places the product on the orbit: an NR and the NT frame of it start a few seconds
  apart), or the start time for stripes and products without a frame. Newer = later timeliness
  (NR < ST < NT), then higher baseline collection, then the later creation time.

Anything else (the pre-2016 long Sentinel-2 names, auxiliary files, other missions) has no
acquisition: ``parse`` returns None, and such products are compared by id alone.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

# what a provider may append to the name of the product's folder or archive
_SUFFIXES = (".zip", ".SAFE", ".SEN3", ".safe", ".sen3")

_S2 = re.compile(
    r"(?P<mission>S2[A-D])_MSI(?P<level>L[0-2][A-C])_(?P<sensing>\d{8}T\d{6})_N(?P<baseline>\d{4})"
    r"_R(?P<orbit>\d{3})_T(?P<tile>\d{2}[A-Z]{3})_(?P<discriminator>\d{8}T\d{6})"
)
_S1 = re.compile(
    r"(?P<mission>S1[A-D])_(?P<mode>IW|EW|WV|EN|S[1-6]|N[1-6]|Z[1-6EIW]|RF)_(?P<type>RAW|SLC|GRD|OCN|ETA)"
    r"(?P<resolution>[FHM_])_(?P<level>[0-2])(?P<klass>[SAN])(?P<polarisation>SH|SV|DH|DV|HH|HV|VV|VH)"
    r"_(?P<start>\d{8}T\d{6})_(?P<stop>\d{8}T\d{6})_(?P<orbit>\d{6})_(?P<datatake>[0-9A-F]{6})"
    r"_(?P<unique>[0-9A-F]{4})(?P<cog>_COG)?"
)
_S3 = re.compile(
    r"(?P<mission>S3[A-D_])_(?P<instrument>[A-Z]{2})_(?P<level>[0-2_])_(?P<type>[A-Z0-9_]{6})"
    r"_(?P<start>\d{8}T\d{6})_(?P<stop>\d{8}T\d{6})_(?P<created>\d{8}T\d{6})"
    r"_(?P<duration>[0-9_]{4})_(?P<cycle>[0-9_]{3})_(?P<orbit>[0-9_]{3})_(?P<frame>[0-9_]{4})"
    r"_(?P<centre>[A-Z0-9_]{3})_(?P<platform>[A-Z_])_(?P<timeliness>[A-Z_]{2})_(?P<collection>[A-Z0-9_]{3})"
)
_TIMELINESS = {"NR": 0, "ST": 1, "NT": 2}  # anything else (AL: any; __) ranks with NR


@dataclass(frozen=True)
class ProductName:
    """A product name read as an acquisition and a processing of it."""

    id: str
    mission: str  # S1A, S2B, S3A
    key: tuple[str, ...]  # the same for every processing of one acquisition
    version: tuple[int | str, ...] | None  # greater is newer; None: the name does not order processings
    processing: str  # what an operator reads: "N0500 20230413T212505", "NT 002 20211022T101010", "6FF8"

    def newer_than(self, other: ProductName) -> bool | None:
        """Whether this is a newer processing of the same acquisition as ``other``; None when the names
        cannot say (not the same acquisition, or no order in the names)."""
        if self.key != other.key or self.version is None or other.version is None:
            return None
        return self.version > other.version


def _stem(product_id: str) -> str:
    for suffix in _SUFFIXES:
        if product_id.endswith(suffix):
            return product_id[: -len(suffix)]
    return product_id


def parse(product_id: str) -> ProductName | None:
    """The acquisition and processing a Sentinel-1, -2 or -3 product name says; None for other names."""
    stem = _stem(product_id)
    if m := _S2.fullmatch(stem):
        g = m.groupdict()
        return ProductName(
            id=product_id,
            mission=g["mission"],
            key=("S2", g["mission"], g["level"], g["sensing"], g["orbit"], g["tile"]),
            version=(int(g["baseline"]), g["discriminator"]),
            processing=f"N{g['baseline']} {g['discriminator']}",
        )
    if m := _S1.fullmatch(stem):
        g = m.groupdict()
        return ProductName(
            id=product_id,
            mission=g["mission"],
            key=(
                "S1", g["mission"], g["mode"], g["type"] + g["resolution"], g["level"] + g["klass"],
                g["polarisation"], g["start"], g["orbit"], g["datatake"], "COG" if g["cog"] else "SAFE",
            ),
            version=None,
            processing=g["unique"],
        )  # fmt: skip
    if m := _S3.fullmatch(stem):
        g = m.groupdict()
        framed = g["frame"].isdigit() and g["orbit"].isdigit()
        where = ("frame", g["frame"]) if framed else ("start", g["start"])
        collection = g["collection"]
        return ProductName(
            id=product_id,
            mission=g["mission"],
            key=("S3", g["mission"], g["instrument"], g["level"], g["type"], g["cycle"], g["orbit"], *where),
            version=(
                _TIMELINESS.get(g["timeliness"], 0),
                int(collection) if collection.isdigit() else -1,
                g["created"],
            ),
            processing=f"{g['timeliness']} {collection} {g['created']}",
        )
    return None
