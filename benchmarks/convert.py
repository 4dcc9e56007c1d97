"""Benchmark: COG conversion of a generated Sentinel-2 L2A product, against references in the same run.

    .venv/bin/python benchmarks/convert.py [--size 5490] [--workers N] [--dir DIR]

Generates an L2A product whose 10 m bands are --size px (10980 is a real tile: expect ~10 min
in all; the JPEG 2000 files are laid out like ESA's), takes its raster assets the way the pipeline
does (``describe.raster_sources``: data bands and true-colour images) with the kinds and COG profile
of collections/sentinel-2-l2a.yaml, and measures:

1. one band (red, 10 m): ``convert_band`` against ``gdal_translate -of COG`` with the same
   compression, predictor, block size, nodata and overview resampling, single-threaded like one
   worker of ours (skipped when gdal-bin is not installed), and against the COG driver of the
   GDAL inside rasterio (the library we use, in-process). Both references compute their
   overviews (OVERVIEWS=IGNORE_EXISTING) as we do: by default the COG driver would take the
   JPEG 2000's own reduced resolutions instead (and GDAL 3.10 then reads them through the VRT
   very slowly: 76 s instead of 13 s for a 5490 px band);
2. every band one after another with ``convert_band``;
3. the peak RSS of one process converting the red band and the true-colour image (the largest);
4. every band one after another with ``convert_band``;
5. every band with ``convert_product`` (--workers processes, default one per core).

MB/s counts decoded pixels (width x height x bands x bytes per sample), so bands of different
resolutions and types add up fairly.
"""

from __future__ import annotations

import argparse
import os
import re
import shutil
import subprocess
import sys
import tempfile
import time
import warnings
from datetime import UTC, datetime
from pathlib import Path

import numpy as np
import rasterio
from rasterio.shutil import copy as rio_copy

from ingest.collections import CogProfile, load_spec
from ingest.devtools.generator import generate_s2
from ingest.stages import describe
from ingest.stages.artifacts import CogSource
from ingest.stages.convert import GDAL_ENV, convert_band, convert_product

ROOT = Path(__file__).resolve().parents[1]
REFERENCE_BAND = "red"
SPEC = load_spec(ROOT / "collections" / "sentinel-2-l2a.yaml")


def raster_sources(safe: Path) -> list[CogSource]:
    """The raster assets the pipeline converts (data bands and true-colour images), with their kinds."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return describe.raster_sources(describe.build_item(safe, SPEC), SPEC)


def decoded_mb(path: Path) -> float:
    with rasterio.open(path) as src:
        return float(src.width * src.height * src.count * np.dtype(src.dtypes[0]).itemsize) / 1e6


def reference_input(jp2: Path, scratch: Path) -> Path:
    """The band as a VRT without the JPEG 2000's NBITS=15, which GDAL's COG driver would copy and
    then refuse with PREDICTOR=2 (our output is plain 16-bit too). Reading through it costs nothing."""
    vrt = scratch / f"{jp2.stem}.vrt"
    rio_copy(jp2, vrt, driver="VRT")
    vrt.write_text(re.sub(r'\s*<MDI key="NBITS">\d+</MDI>', "", vrt.read_text()))
    return vrt


def gdal_translate(src: Path, dst: Path, profile: CogProfile) -> float | None:
    exe = shutil.which("gdal_translate")
    if exe is None:
        return None
    cmd = [
        exe, "-q", "-of", "COG", "-a_nodata", "0",
        "-co", f"COMPRESS={profile.compress.upper()}", "-co", f"PREDICTOR={profile.predictor}",
        "-co", f"BLOCKSIZE={profile.blocksize}", "-co", "OVERVIEW_RESAMPLING=AVERAGE",
        "-co", "NUM_THREADS=1", "-co", "OVERVIEWS=IGNORE_EXISTING",
        "--config", "GDAL_NUM_THREADS", "1", "--config", "GDAL_CACHEMAX", str(GDAL_ENV["GDAL_CACHEMAX"]),
        str(src), str(dst),
    ]  # fmt: skip
    started = time.perf_counter()
    subprocess.run(cmd, check=True)
    return time.perf_counter() - started


def gdal_bin_version() -> str:
    out = subprocess.run(["gdal_translate", "--version"], capture_output=True, text=True, check=False).stdout
    return out.split(",")[0].strip()


def gdal_cog_driver(src: Path, dst: Path, profile: CogProfile) -> float:
    started = time.perf_counter()
    with rasterio.Env(**GDAL_ENV), rasterio.open(src) as ds:
        rio_copy(
            ds, dst, driver="COG", COMPRESS=profile.compress.upper(), PREDICTOR=profile.predictor,
            BLOCKSIZE=profile.blocksize, OVERVIEW_RESAMPLING="AVERAGE", NUM_THREADS=1, NODATA=0,
            OVERVIEWS="IGNORE_EXISTING",
        )  # fmt: skip
    return time.perf_counter() - started


_RSS_PROBE = """
import resource, sys
from pathlib import Path
from ingest.collections import load_spec
from ingest.stages.artifacts import CogSource
from ingest.stages.convert import convert_band
profile = load_spec(Path(sys.argv[1])).cog
convert_band(CogSource(sys.argv[2], Path(sys.argv[3]), profile.kind_of(sys.argv[2])), Path(sys.argv[4]), profile)
print(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss)
"""


def peak_rss_mb(source: CogSource, dest: Path) -> float:
    """Peak resident memory of a fresh process converting one band (what one pool worker needs)."""
    spec = ROOT / "collections" / "sentinel-2-l2a.yaml"
    out = subprocess.run(
        [sys.executable, "-W", "ignore", "-c", _RSS_PROBE, str(spec), source.asset_key, str(source.path), str(dest)],
        capture_output=True, text=True, check=True, cwd=ROOT,
    )  # fmt: skip
    return int(out.stdout.split()[-1]) / 1024


def line(label: str, seconds: float, mb: float, extra: str = "") -> None:
    print(f"  {label:44} {seconds:7.2f} s  {mb / seconds:6.1f} MB/s  {extra}")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--size", type=int, default=5490, help="10 m band size in px (multiple of 6; 10980 = full)")
    ap.add_argument("--workers", type=int, default=None, help="convert_product workers (default: CPU cores)")
    ap.add_argument("--dir", type=Path, default=None, help="scratch directory (default: a temporary one)")
    args = ap.parse_args()
    profile = SPEC.cog
    scratch = Path(tempfile.mkdtemp(prefix="bench-convert-", dir=args.dir))
    try:
        started = time.perf_counter()
        sensing = datetime(2024, 1, 5, 10, 34, tzinfo=UTC)
        safe = generate_s2(scratch / "src", level="L2A", sensing=sensing, size=args.size, seed=1)
        sources = raster_sources(safe)
        total_mb = sum(decoded_mb(s.path) for s in sources)
        jp2_mb = sum(s.path.stat().st_size for s in sources) / 1e6
        print(
            f"product: L2A {args.size} px, {len(sources)} raster assets, {jp2_mb:.0f} MB JPEG 2000 "
            f"({total_mb:.0f} MB decoded), generated in {time.perf_counter() - started:.1f} s; "
            f"{os.cpu_count()} cores, load {os.getloadavg()[0]:.2f}"
        )

        red = next(s for s in sources if s.asset_key == REFERENCE_BAND)
        band_mb = decoded_mb(red.path)
        print(f"one band ({REFERENCE_BAND}, {red.path.name}, {band_mb:.0f} MB decoded):")
        plain = reference_input(red.path, scratch)
        ref = gdal_translate(plain, scratch / "gdal_translate.tif", profile)
        if ref is None:
            print("  gdal_translate not found (apt-get install gdal-bin): that reference is skipped")
        else:
            line(f"gdal_translate -of COG ({gdal_bin_version()}, 1 thread)", ref, band_mb)
        driver = gdal_cog_driver(plain, scratch / "cog_driver.tif", profile)
        line(f"GDAL COG driver (GDAL {rasterio.__gdal_version__}, in-process)", driver, band_mb)
        ours = convert_band(red, scratch / "one", profile)
        vs = f"(ratio vs gdal_translate {ours.seconds / ref:4.2f})" if ref else ""
        line("convert_band (rio-cogeo)", ours.seconds, band_mb, f"{vs} (vs COG driver {ours.seconds / driver:4.2f})")

        print("peak RSS of one process converting one band (target < 1024 MB):")
        for key in (REFERENCE_BAND, "visual"):
            src = next((s for s in sources if s.asset_key == key), None)
            if src is not None:
                rss = peak_rss_mb(src, scratch / "rss")
                print(f"  {key:10} {decoded_mb(src.path):6.0f} MB decoded  peak RSS {rss:6.0f} MB")

        print(f"all {len(sources)} bands:")
        t = time.perf_counter()
        for s in sources:
            convert_band(s, scratch / "sequential", profile)
        sequential = time.perf_counter() - t
        line("sequential convert_band", sequential, total_mb)
        workers = args.workers or os.cpu_count() or 1
        t = time.perf_counter()
        results = convert_product(sources, scratch / "parallel", profile, workers=args.workers)
        parallel = time.perf_counter() - t
        speed_up = f"speed-up {sequential / parallel:4.2f}"
        line(f"convert_product ({workers} worker processes)", parallel, total_mb, speed_up)
        out_mb = sum(r.size for r in results) / 1e6
        print(f"output: {out_mb:.0f} MB of COGs ({out_mb / jp2_mb:.2f} x the JPEG 2000 size)")
        if ref:
            # throughput of the whole product, in parallel, against one single-threaded gdal_translate
            print(f"ratio MB/s convert_product / gdal_translate: {(total_mb / parallel) / (band_mb / ref):4.2f}")
    finally:
        shutil.rmtree(scratch, ignore_errors=True)


if __name__ == "__main__":
    main()
