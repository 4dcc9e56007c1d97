"""Benchmark: what the thumbnail costs per product, against that product's COG conversion in the same run.

    .venv/bin/python benchmarks/thumbnails.py [--s2-sizes 1098,5490] [--s1-samples 2614,26144] [--repeat 5]

For each size, generates a Sentinel-2 L2A product (--s2-sizes: 10 m width; 10980 is a real tile and the
generator's default) and a Sentinel-1 GRD product (--s1-samples: measurement width, lines in the real
ratio; 26144 is the generator's default), converts it as the pipeline does (``convert_product``, one
worker per core, the collection's COG profile), then makes its thumbnail (``preview.make_thumbnail``:
S2 from the true-colour COG's overviews, S1 from the quick-look) --repeat times. Prints the conversion
time, the median thumbnail time and their ratio.
"""

from __future__ import annotations

import argparse
import shutil
import statistics
import tempfile
import time
import warnings
from datetime import datetime
from pathlib import Path

from ingest.collections import load_spec
from ingest.devtools.generator import generate_s1_grd, generate_s2
from ingest.stages import describe, preview
from ingest.stages.convert import convert_product

ROOT = Path(__file__).resolve().parents[1]
SENSING = datetime(2026, 3, 1, 10, 0, 0)


def measure(safe: Path, collection: str, work: Path, repeat: int) -> tuple[float, float, str]:
    spec = load_spec(ROOT / "collections" / f"{collection}.yaml")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        item = describe.build_item(safe, spec)
    t0 = time.perf_counter()
    cogs = convert_product(describe.raster_sources(item, spec), work / "cog", spec.cog)
    converted = time.perf_counter() - t0
    times, made = [], ""
    for n in range(repeat):
        t0 = time.perf_counter()
        thumb = preview.make_thumbnail(item, cogs, work / f"preview-{n}", safe.name)
        times.append(time.perf_counter() - t0)
        if thumb.file is None:
            raise SystemExit(f"{safe.name}: no thumbnail: {thumb.note}")
        made = f"{thumb.shape}, {thumb.file.path.stat().st_size / 1024:.0f} KB"
    return converted, statistics.median(times), made


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--s2-sizes", default="1098,5490")
    parser.add_argument("--s1-samples", default="2614,13072")
    parser.add_argument("--repeat", type=int, default=5)
    args = parser.parse_args()
    print(
        f"{'product':<28} {'convert s':>10} {'thumbnail s (median)':>21} {'ratio':>8}  thumbnail (rows, cols), PNG size"
    )
    for size in (int(s) for s in args.s2_sizes.split(",") if s):
        work = Path(tempfile.mkdtemp(prefix="bench-thumb-"))
        try:
            safe = generate_s2(work / "in", level="L2A", sensing=SENSING, size=size)
            conv, thumb, shape = measure(safe, "sentinel-2-l2a", work, args.repeat)
            print(f"{f'S2 L2A {size} px':<28} {conv:>10.2f} {thumb:>21.4f} {thumb / conv:>8.2%}  {shape}")
        finally:
            shutil.rmtree(work, ignore_errors=True)
    for samples in (int(s) for s in args.s1_samples.split(",") if s):
        work = Path(tempfile.mkdtemp(prefix="bench-thumb-"))
        try:
            lines = samples * 16676 // 26144
            safe = generate_s1_grd(work / "in", sensing=SENSING, lines=lines, samples=samples)
            conv, thumb, shape = measure(safe, "sentinel-1-grd", work, args.repeat)
            print(f"{f'S1 GRD {samples}x{lines}':<28} {conv:>10.2f} {thumb:>21.4f} {thumb / conv:>8.2%}  {shape}")
        finally:
            shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
