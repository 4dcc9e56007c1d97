"""Benchmark: download + verification of one large product vs curl of the same URL, same run.

    .venv/bin/python benchmarks/acquire.py [--size-mb 1024]

Writes a SAFE-like product of incompressible files (with a manifest carrying their MD5s, as real
products do) into a temporary provider root, serves it with the local provider in a separate
process, downloads it once with curl (reference) and once through the acquisition stage (EODAG
download + archive SHA-256 + safe unpack + manifest MD5s), and prints times and the ratio.
"""

from __future__ import annotations

import argparse
import hashlib
import os
import shutil
import subprocess
import sys
import tempfile
import time
import zipfile
from datetime import UTC, datetime
from pathlib import Path

from ingest.adapters.eodag import EodagProvider
from ingest.devtools.catalog import add_product
from ingest.retry import RetryPolicy
from ingest.settings import Settings
from ingest.stages.acquire import acquire
from ingest.stages.artifacts import ProviderProduct
from ingest.stages.unpack import UnpackLimits

PID = "S2B_MSIL2A_20260101T100000_N0510_R001_T31TDH_20260101T120000"


def make_product(work: Path, size_mb: int) -> Path:
    safe = work / f"{PID}.SAFE"
    (safe / "GRANULE").mkdir(parents=True)
    n_files = max(1, size_mb // 128)
    rows = []
    for i in range(n_files):
        path = safe / "GRANULE" / f"band_{i:02d}.jp2"
        md5 = hashlib.md5()  # noqa: S324 - what SAFE manifests use
        with path.open("wb") as f:
            for _ in range(size_mb // n_files):
                block = os.urandom(1 << 20)
                md5.update(block)
                f.write(block)
        rows.append(
            f'<dataObject ID="b{i}"><byteStream mimeType="application/octet-stream" size="{path.stat().st_size}">'
            f'<fileLocation locatorType="URL" href="./GRANULE/{path.name}"/>'
            f'<checksum checksumName="MD5">{md5.hexdigest()}</checksum></byteStream></dataObject>'
        )
    (safe / "manifest.safe").write_text(f"<xfdu><dataObjectSection>{''.join(rows)}</dataObjectSection></xfdu>")
    archive = work / f"{PID}.zip"
    with zipfile.ZipFile(archive, "w", zipfile.ZIP_STORED) as zf:  # JP2 is stored, as in real products
        for p in sorted(safe.rglob("*")):
            zf.write(p, p.relative_to(work).as_posix())
    shutil.rmtree(safe)
    return archive


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--size-mb", type=int, default=1024)
    ap.add_argument("--dir", type=Path, default=None, help="scratch directory (default: a temporary one)")
    args = ap.parse_args()
    scratch = Path(tempfile.mkdtemp(prefix="bench-acquire-", dir=args.dir))
    try:
        t = time.perf_counter()
        archive = make_product(scratch / "src", args.size_mb) if (scratch / "src").mkdir() is None else None
        assert archive is not None
        root = scratch / "provider"
        geometry = {"type": "Polygon", "coordinates": [[[1, 43], [2, 43], [2, 44], [1, 44], [1, 43]]]}
        when = datetime(2026, 1, 1, tzinfo=UTC)
        entry = add_product(root, archive, collection="S2_MSI_L2A", geometry=geometry, datetime=when, published=when)
        print(f"product: {entry.size / 1e6:.0f} MB archive, prepared in {time.perf_counter() - t:.1f} s")
        server = subprocess.Popen(
            [sys.executable, "-m", "ingest.devtools.provider", "--root", str(root), "--port", "0",
             "--log-level", "WARNING"],
            stdout=subprocess.PIPE, text=True,
        )  # fmt: skip
        try:
            assert server.stdout is not None
            url = server.stdout.readline().strip()
            link = f"{url}/download/{PID}.zip"
            curl_runs = []
            for _ in range(2):  # the first run also warms the server's page cache; the best one counts
                t = time.perf_counter()
                subprocess.run(["curl", "-sf", "-o", str(scratch / "curl.zip"), link], check=True)
                curl_runs.append(time.perf_counter() - t)
                (scratch / "curl.zip").unlink()
            curl_s = min(curl_runs)
            settings = Settings(provider_url=url, work_dir=scratch / "work", _env_file=None)  # type: ignore[call-arg]
            product = ProviderProduct(
                PID, "S2_MSI_L2A", "local", link, entry.multihash, entry.size, when, when, geometry
            )
            provider = EodagProvider(settings)
            provider._gateway()  # configuration time is not download time
            t = time.perf_counter()
            got = acquire(
                provider, product, scratch / "work" / PID, policy=RetryPolicy(max_attempts=1),
                limits=UnpackLimits(max_total_bytes=args.size_mb * 2 << 20),
            )  # fmt: skip
            ours_s = time.perf_counter() - t
        finally:
            server.terminate()
            server.wait()
        mb = entry.size / 1e6
        print(f"curl to disk:               {curl_s:6.2f} s  {mb / curl_s:7.0f} MB/s")
        print(f"download + verify + unpack: {ours_s:6.2f} s  {mb / ours_s:7.0f} MB/s  ({got.files_verified} files)")
        for stage, seconds in got.timings.items():
            print(f"  {stage:24} {seconds:6.2f} s")
        streamed = got.timings["download + archive checksum"]
        print(f"ratio download + provider checksum / curl: {streamed / curl_s:5.2f}  (target <= 1.20)")
        print(f"ratio everything (+ unpack + MD5s) / curl: {ours_s / curl_s:5.2f}")
    finally:
        shutil.rmtree(scratch, ignore_errors=True)


if __name__ == "__main__":
    main()
