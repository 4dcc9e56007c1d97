"""Put products on the local provider: generate (or take a real SAFE), zip, index.

Used by ``ingest dev generate``, the demo, the integration tests and the benchmarks. The provider
collection ids are EODAG's (``S2_MSI_L2A``, ``S2_MSI_L1C``, ``S1_SAR_GRD``, ``S3_EFR``,
``S3_OLCI_L2LFR``, ``S3_SLSTR_L1RBT``, ``S3_SLSTR_L2LST``), so the generated provider
configuration maps them one to one.
"""

from __future__ import annotations

import shutil
import tempfile
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any, Literal

from ingest.devtools import generator
from ingest.devtools.catalog import ProviderEntry, add_product
from ingest.devtools.generator.sentinel3 import ProductType

Kind = Literal["S2_MSI_L2A", "S2_MSI_L1C", "S1_SAR_GRD", "S3_EFR", "S3_OLCI_L2LFR", "S3_SLSTR_L1RBT", "S3_SLSTR_L2LST"]
KINDS: tuple[Kind, ...] = ("S2_MSI_L2A", "S2_MSI_L1C", "S1_SAR_GRD")
S3_KINDS: tuple[Kind, ...] = ("S3_EFR", "S3_OLCI_L2LFR", "S3_SLSTR_L1RBT", "S3_SLSTR_L2LST")
_S3_PRODUCT_TYPES: dict[Kind, ProductType] = {
    "S3_EFR": "OL_1_EFR___",
    "S3_OLCI_L2LFR": "OL_2_LFR___",
    "S3_SLSTR_L1RBT": "SL_1_RBT___",
    "S3_SLSTR_L2LST": "SL_2_LST___",
}
_TILES = ("31TDH", "31TCJ", "32TLR", "33UUP", "30TXN", "31UFQ")


def safe_geometry(safe: Path) -> dict[str, Any]:
    """The product footprint as GeoJSON, read the way stactools reads it (so it equals the item's)."""
    if safe.name.startswith("S1"):
        from stactools.sentinel1.formats import Format
        from stactools.sentinel1.grd.stac import create_item as s1_create_item

        item = s1_create_item(str(safe), archive_format=Format.SAFE)
    elif safe.name.startswith("S3"):
        from stactools.sentinel3.stac import create_item as s3_create_item

        item = s3_create_item(str(safe), skip_nc=True)  # the footprint is the manifest's
    else:
        from stactools.sentinel2.stac import create_item as s2_create_item

        item = s2_create_item(str(safe))
    if item.geometry is None:
        raise ValueError(f"{safe.name}: stactools found no footprint")
    return dict(item.geometry)


def publish_safe(root: Path, safe: Path, *, collection: str, sensing: datetime, published: datetime) -> ProviderEntry:
    """Zip ``safe`` (a ``.SAFE`` or ``.SEN3`` folder) reproducibly and add it to the provider at ``root``."""
    geometry = safe_geometry(safe)
    with tempfile.TemporaryDirectory(prefix=".publish-", dir=root if root.is_dir() else None) as tmp:
        zipped = generator.zip_product(safe, Path(tmp) / f"{safe.name.removesuffix('.SAFE').removesuffix('.SEN3')}.zip")
        return add_product(
            root, zipped, collection=collection, geometry=geometry, datetime=sensing, published=published, move=True
        )


@dataclass(frozen=True)
class ProductPlan:
    kind: Kind
    sensing: datetime
    published: datetime
    seed: int
    tile: str = "31TDH"
    center: tuple[float, float] = (3.37, 45.49)


def generate(plan: ProductPlan, out_dir: Path, *, size: int) -> Path:
    """Write the planned product into ``out_dir``; ``size``: S2 10 m width (S1: samples, S3: columns)."""
    naive = plan.sensing.astimezone(UTC).replace(tzinfo=None)
    if plan.kind in _S3_PRODUCT_TYPES:
        return generator.generate_s3(
            out_dir,
            product_type=_S3_PRODUCT_TYPES[plan.kind],
            sensing=naive,
            size=max(16, size),
            seed=plan.seed,
            center=plan.center,
        )
    if plan.kind == "S1_SAR_GRD":
        lines = max(20, size * 16676 // 26144)
        return generator.generate_s1_grd(
            out_dir, sensing=naive, lines=lines, samples=max(20, size), seed=plan.seed, center=plan.center
        )
    level: Literal["L1C", "L2A"] = "L2A" if plan.kind == "S2_MSI_L2A" else "L1C"
    return generator.generate_s2(out_dir, level=level, tile=plan.tile, sensing=naive, size=size, seed=plan.seed)


def publish_generated(root: Path, plan: ProductPlan, *, size: int) -> ProviderEntry:
    root.mkdir(parents=True, exist_ok=True)
    work = Path(tempfile.mkdtemp(prefix=".generate-", dir=root))
    try:
        safe = generate(plan, work, size=size)
        return publish_safe(root, safe, collection=plan.kind, sensing=plan.sensing, published=plan.published)
    finally:
        shutil.rmtree(work, ignore_errors=True)


def plan_products(
    count: int, *, kinds: tuple[Kind, ...] = KINDS, start: datetime, seed: int = 0, publication_delay_h: float = 6.0
) -> Iterator[ProductPlan]:
    """``count`` distinct products, round-robin over ``kinds``, one sensing every 10 minutes from ``start``.

    Publication follows sensing by ``publication_delay_h`` (L2A a day later, as in reality).
    """
    for i in range(count):
        kind = kinds[i % len(kinds)]
        sensing = start + timedelta(minutes=10 * i)
        delay = timedelta(hours=publication_delay_h + (24 if kind == "S2_MSI_L2A" else 0))
        yield ProductPlan(
            kind=kind,
            sensing=sensing,
            published=sensing + delay,
            seed=seed + i,
            tile=_TILES[(i // len(kinds)) % len(_TILES)],
            center=(3.37 + 0.5 * (i % 7), 45.49 - 0.4 * (i % 5)),
        )
