"""What a product is, and which stactools package describes it: one entry per product kind.

A kind is known three ways, which must agree: the collection's EODAG collection id (or its own id),
the product's folder name, and what stactools reads in its metadata (``check_level``). The folder
name is searched, not matched: unpacked folder names may carry a prefix (the ESA fixture is
``esa_S2B_...``).

Sentinel-3 products are SEN3 folders (``xfdumanifest.xml`` and netCDF files); stactools-sentinel3
makes one item per product with the netCDF files it knows as ``data`` assets, the rest of the
manifest's files are added (``_add_unlisted_files``), and the collections keep them all as they are
(``ingest.stages.describe``). stactools opens each netCDF it lists (``skip_nc=False``: the variables'
shapes and band details come from them), so a file that is not netCDF is refused here first, with
its name, rather than surfacing as a netCDF library error.
"""

from __future__ import annotations

import mimetypes
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

import pystac

from ingest.collections import CollectionSpec
from ingest.errors import ConfigError, InvalidProduct
from ingest.stages.manifest import manifest_entries

Mission = Literal["s1", "s2", "s3"]

NETCDF_MEDIA_TYPE = "application/x-netcdf"
# netCDF classic (CDF\x01), 64-bit offset (\x02), 64-bit data (\x05); netCDF-4 is HDF5
_NETCDF_MAGIC = (b"CDF\x01", b"CDF\x02", b"CDF\x05", b"\x89HDF\r\n\x1a\n")
# HDF5 allows a user block before its signature, at 0, 512, 1024, 2048, ... bytes
_HDF5_OFFSETS = (0, 512, 1024, 2048, 4096)


@dataclass(frozen=True)
class Kind:
    label: str  # for messages
    mission: Mission
    level: str  # processing:level
    stactools: str  # the distribution that makes the item, recorded in processing:software
    eodag: str  # EODAG's collection id
    collection: str  # our collection id (collections/<id>.yaml)
    name: re.Pattern[str]  # searched in the product's folder name
    expected: str  # what the metadata must say (check_level): S2 level, S1 product type, S3 productType


def _s3(label: str, level: str, eodag: str, collection: str, code: str) -> Kind:
    return Kind(
        label=f"Sentinel-3 {label}", mission="s3", level=level, stactools="stactools-sentinel3", eodag=eodag,
        collection=collection, name=re.compile(rf"S3[A-D]_{code}_"), expected=f"{code}___",
    )  # fmt: skip


KINDS: tuple[Kind, ...] = (
    Kind("Sentinel-2 L1C", "s2", "L1C", "stactools-sentinel2", "S2_MSI_L1C", "sentinel-2-l1c",
         re.compile(r"S2[A-D]_MSIL1C_"), "L1C"),
    Kind("Sentinel-2 L2A", "s2", "L2A", "stactools-sentinel2", "S2_MSI_L2A", "sentinel-2-l2a",
         re.compile(r"S2[A-D]_MSIL2A_"), "L2A"),
    Kind("Sentinel-1 GRD", "s1", "L1", "stactools-sentinel1", "S1_SAR_GRD", "sentinel-1-grd",
         re.compile(r"S1[A-D]_[A-Z0-9]{2}_GRD[HMF]_"), "GRD"),
    _s3("OLCI L1 EFR", "L1", "S3_EFR", "sentinel-3-olci-l1-efr", "OL_1_EFR"),
    _s3("OLCI L1 ERR", "L1", "S3_ERR", "sentinel-3-olci-l1-err", "OL_1_ERR"),
    _s3("OLCI L2 LFR", "L2", "S3_OLCI_L2LFR", "sentinel-3-olci-l2-lfr", "OL_2_LFR"),
    _s3("OLCI L2 WFR", "L2", "S3_OLCI_L2WFR", "sentinel-3-olci-l2-wfr", "OL_2_WFR"),
    _s3("SLSTR L1 RBT", "L1", "S3_SLSTR_L1RBT", "sentinel-3-slstr-l1-rbt", "SL_1_RBT"),
    _s3("SLSTR L2 LST", "L2", "S3_SLSTR_L2LST", "sentinel-3-slstr-l2-lst", "SL_2_LST"),
    _s3("SLSTR L2 FRP", "L2", "S3_SLSTR_L2FRP", "sentinel-3-slstr-l2-frp", "SL_2_FRP"),
    _s3("SLSTR L2 WST", "L2", "S3_SLSTR_L2WST", "sentinel-3-slstr-l2-wst", "SL_2_WST"),
)  # fmt: skip
_FOLDER_SUFFIX: dict[Mission, str] = {"s1": ".safe", "s2": ".safe", "s3": ".sen3"}


def of_spec(spec: CollectionSpec) -> Kind | None:
    """The kind a collection holds, from its EODAG collection id, else its own id."""
    return next((k for k in KINDS if k.eodag == spec.source.eodag_collection), None) or next(
        (k for k in KINDS if k.collection == spec.id), None
    )


def of_name(name: str) -> Kind | None:
    return next((k for k in KINDS if k.name.search(name)), None)


def product_kind(folder: Path, spec: CollectionSpec) -> Kind:
    """What the product is, from its name; the collection must agree when it says what it holds."""
    expected, found = of_spec(spec), of_name(folder.name)
    if expected and found and expected != found:
        raise InvalidProduct(f"{folder.name}: a {found.label} product, but collection {spec.id} holds {expected.label}")
    kind = found or expected
    if kind is None:
        raise ConfigError(
            f"collection {spec.id}: cannot describe {folder.name} (known: Sentinel-2 L1C/L2A and Sentinel-1 GRD "
            "SAFE, Sentinel-3 OLCI/SLSTR SEN3)"
        )
    return kind


def check_folder(kind: Kind, root: Path) -> None:
    suffix = _FOLDER_SUFFIX[kind.mission]
    if root.suffix.lower() != suffix or not root.is_dir():
        # stactools-sentinel2 takes any other href for the Sinergise S3 layout and fails obscurely
        raise InvalidProduct(f"{root.name}: cannot describe: not an unpacked {suffix.upper()} folder")
    if kind.mission == "s3":
        _check_netcdf(root)


def _check_netcdf(root: Path) -> None:
    bad = sorted(p.name for p in root.glob("*.nc") if p.is_file() and not is_netcdf(p))
    if bad:
        raise InvalidProduct(f"{root.name}: not netCDF (no netCDF or HDF5 signature): {', '.join(bad)}")


def is_netcdf(path: Path) -> bool:
    """Whether the file starts as netCDF classic or netCDF-4 (HDF5) files do."""
    with path.open("rb") as f:
        head = f.read(_HDF5_OFFSETS[-1] + 8)
    if head.startswith(_NETCDF_MAGIC[:3]):
        return True
    return any(head[o : o + 8] == _NETCDF_MAGIC[3] for o in _HDF5_OFFSETS)


def create_item(kind: Kind, root: Path) -> pystac.Item:
    # imported here: stactools-sentinel1 pulls in requests and more at import time
    if kind.mission == "s2":
        from stactools.sentinel2.stac import create_item as create_s2_item

        item: pystac.Item = create_s2_item(str(root))
        return item
    if kind.mission == "s3":
        from stactools.sentinel3.stac import create_item as create_s3_item

        s3: pystac.Item = create_s3_item(str(root))
        _lower_case_names(s3)
        _add_unlisted_files(s3, root)
        return s3
    from stactools.sentinel1.formats import Format
    from stactools.sentinel1.grd.stac import create_item as create_grd_item

    grd: pystac.Item = create_grd_item(str(root), archive_format=Format.SAFE)
    return grd


def _add_unlisted_files(item: pystac.Item, root: Path) -> None:
    """Every file of the manifest that stactools-sentinel3 0.5 makes no asset of, as an asset.

    It lists the measurements it knows and leaves the rest out: an OLCI L1 item has its 21 radiances
    but not ``geo_coordinates.nc``, the tie-point grids or the quality flags, without which the
    swath's pixels cannot be located or screened; an SLSTR RBT item has 11 of the product's 97
    netCDF files. Keyed as stactools keys its own (the manifest's dataObject ID in kebab case:
    ``geoCoordinatesData`` -> ``geo-coordinates``), described by the manifest's ``textInfo``.
    """
    from stactools.sentinel3.stac import sen3_to_kebab

    described = {Path(a.href).resolve() for a in item.assets.values()}
    for entry in manifest_entries(root):
        path = root / entry.path
        if path.resolve() in described or not path.is_file():
            continue  # a listed file the product lacks fails the manifest check before this
        key = sen3_to_kebab(entry.object_id) if entry.object_id else path.stem.lower()
        if key in item.assets:
            key = sen3_to_kebab(path.stem)
        netcdf = path.suffix.lower() == ".nc"
        item.add_asset(
            key,
            pystac.Asset(
                href=str(path),
                media_type=NETCDF_MEDIA_TYPE if netcdf else mimetypes.guess_type(path.name)[0],
                description=entry.text_info,
                roles=["data"] if netcdf else ["metadata"],
            ),
        )


def _lower_case_names(item: pystac.Item) -> None:
    # stactools-sentinel3 writes "Sentinel-3A" / "Sentinel-3" / ["OLCI"]; the S1 and S2 packages, and STAC's
    # best practice, write lower case: one spelling, so that a search by platform finds every mission
    props = item.properties
    for key in ("platform", "constellation"):
        if isinstance(props.get(key), str):
            props[key] = props[key].lower()
    if isinstance(props.get("instruments"), list):
        props["instruments"] = [str(i).lower() for i in props["instruments"]]


def check_level(item: pystac.Item, kind: Kind, name: str) -> None:
    """The metadata, not only the folder name, must say the product is of the expected kind."""
    if kind.mission == "s2":
        found = item.id.rsplit("_", 1)[-1]  # stactools ids end with _L1C / _L2A
    elif kind.mission == "s3":
        found = str(item.properties.get("s3:product_type"))  # the manifest's (s3:product_name is the folder's)
    else:
        found = str(item.properties.get("sar:product_type"))
    if found != kind.expected:
        raise InvalidProduct(f"{name}: its metadata says {found}, expected a {kind.label} product")


def product_name(item: pystac.Item) -> str:
    """The upstream product name for messages (S2 and S3 item ids are not the folder name)."""
    props = item.properties
    return str(props.get("s2:product_uri") or props.get("s1:product_identifier") or item.id)
