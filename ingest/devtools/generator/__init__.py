"""Synthetic-but-valid Sentinel products for tests and benchmarks.

``generate_s2`` writes a Sentinel-2 L1C/L2A SAFE product, ``generate_s1_grd`` a Sentinel-1 GRD
SAFE product and ``generate_s3`` a Sentinel-3 SEN3 product (OLCI L1 EFR, OLCI L2 LFR, SLSTR L1
RBT, SLSTR L2 LST) whose metadata and rasters follow the layout of real products closely enough
for ``stactools-sentinel2`` / ``-sentinel1`` / ``-sentinel3`` to accept them and yield items with
the same asset keys and STAC extensions as for real products. ``zip_product`` packs a SAFE or
SEN3 directory reproducibly. Manifests are written with the checksums real ones carry (MD5, or SHA3-256 as S2
baseline 03.xx does); ``ingest.stages.manifest`` reads and verifies them.

Everything is deterministic: on a given platform the same arguments (including ``seed``) give
byte-identical files (floating-point details of numpy/BLAS may differ between machines).
Pixel values come from seeded smooth fields plus seeded noise and are reproducible through
``s2_band_pixels`` and ``s1_measurement_pixels``, so tests can compare what was written.

What the generated products leave out, compared with real ones (none of it is read by
stactools): HTML/, rep_info/, AUX_DATA/, the QI_DATA masks and quality reports, the datastrip
QI_DATA reports, S1 support/*.xsd, the spectral-response curves, detector-wise viewing-angle
grids and the orbit/attitude/Doppler lists of the S1 annotation; in S3 calibration and
ancillary netCDF files, the secondary variables (see ``sentinel3_specs``).
"""

# One module per mission over the shared helpers in ``common``; this package re-exports the
# public names, plus the private ones the unit tests reach for.
from ingest.devtools.generator.common import _jp2_layout as _jp2_layout
from ingest.devtools.generator.common import _Jp2Spec as _Jp2Spec
from ingest.devtools.generator.common import _write_jp2_group as _write_jp2_group
from ingest.devtools.generator.common import zip_product
from ingest.devtools.generator.sentinel1 import _S1_GROUND_SPEED as _S1_GROUND_SPEED
from ingest.devtools.generator.sentinel1 import generate_s1_grd, s1_measurement_pixels
from ingest.devtools.generator.sentinel1 import open_s1_measurement as open_s1_measurement
from ingest.devtools.generator.sentinel2 import _S2_BAND_ORDER as _S2_BAND_ORDER
from ingest.devtools.generator.sentinel2 import _S2_JP2_BLOCK as _S2_JP2_BLOCK
from ingest.devtools.generator.sentinel2 import _S2_JP2_LEVELS as _S2_JP2_LEVELS
from ingest.devtools.generator.sentinel2 import Level as Level
from ingest.devtools.generator.sentinel2 import (
    S2TileGrid,
    generate_s2,
    s2_band_pixels,
    s2_footprint,
    s2_image_files,
    s2_tile_grid,
)
from ingest.devtools.generator.sentinel2 import _S2Model as _S2Model
from ingest.devtools.generator.sentinel3 import S3_PRODUCT_TYPES, generate_s3

__all__ = [
    "S3_PRODUCT_TYPES",
    "S2TileGrid",
    "generate_s1_grd",
    "generate_s2",
    "generate_s3",
    "s1_measurement_pixels",
    "s2_band_pixels",
    "s2_footprint",
    "s2_image_files",
    "s2_tile_grid",
    "zip_product",
]
