"""Benchmark: download + verification of one large product vs curl of the same URL, same run.

    .venv/bin/python benchmarks/acquire.py [--size-mb 1024] [--rounds 3] [--no-file-path]

Writes a SAFE-like product of incompressible files (with a manifest carrying their MD5s, as real
products do) into a temporary provider root and serves it with the local provider in a separate
process. After a warm-up curl, each round downloads it with curl to disk (the reference), then
through the acquisition stage streamed (EODAG's download plugin streaming, archive SHA-256, zip
unpacked while it arrives, manifest MD5s and CRC-32s on other threads, central directory and manifest
checked at the end), then through the former path (EODAG download to disk with the SHA-256 computed
as it is written, then safe unpack + manifest MD5s; skipped with --no-file-path), then the floor:
curl again while two threads compute the digests that cannot be skipped (MD5 and SHA-256 of as many
bytes, from memory) at the same time; on a machine with few cores that floor says how close to
curl any verification can get. Prints each round's times and ratios to that round's curl, and the
best and worst ratio.
"""

from __future__ import annotations

import argparse
import hashlib
import os
import shutil
import subprocess
import sys
import tempfile
import threading
import time
import zipfile
from datetime import UTC, datetime
from pathlib import Path

from ingest.adapters.eodag import EodagProvider
from ingest.devtools.catalog import add_product
from ingest.retry import RetryPolicy
from ingest.settings import Settings
from ingest.stages.acquire import Acquired, acquire
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
    ap.add_argument("--rounds", type=int, default=3, help="rounds of curl / streamed / file path")
    ap.add_argument("--no-file-path", dest="file_path", action="store_false", help="skip the former path")
    args = ap.parse_args()
    scratch = Path(tempfile.mkdtemp(prefix="bench-acquire-", dir=args.dir))
    try:
        t = time.perf_counter()
        (scratch / "src").mkdir()
        archive = make_product(scratch / "src", args.size_mb)
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

            def curl() -> float:
                t = time.perf_counter()
                subprocess.run(["curl", "-sf", "-o", str(scratch / "curl.zip"), link], check=True)
                seconds = time.perf_counter() - t
                (scratch / "curl.zip").unlink()
                return seconds

            settings = Settings(provider_url=url, work_dir=scratch / "work", _env_file=None)  # type: ignore[call-arg]
            product = ProviderProduct(
                PID, "S2_MSI_L2A", "local", link, entry.multihash, entry.size, when, when, geometry
            )
            provider = EodagProvider(settings)
            provider._gateway()  # configuration time is not download time
            limits = UnpackLimits(max_total_bytes=args.size_mb * 2 << 20)

            def ours(stream: bool) -> tuple[float, Acquired]:
                t = time.perf_counter()
                got = acquire(
                    provider, product, scratch / "work" / PID, policy=RetryPolicy(max_attempts=1), limits=limits,
                    stream=stream,
                )  # fmt: skip
                seconds = time.perf_counter() - t
                shutil.rmtree(scratch / "work" / PID)
                return seconds, got

            block = os.urandom(64 << 20)

            def floor() -> float:
                """curl to disk while MD5 and SHA-256 of the archive's size run on two threads."""

                def digest(algorithm: str) -> None:
                    h = hashlib.new(algorithm)
                    for _ in range(entry.size // len(block) + 1):
                        h.update(block)

                threads = [threading.Thread(target=digest, args=(a,)) for a in ("md5", "sha256")]
                t = time.perf_counter()
                for th in threads:
                    th.start()
                subprocess.run(["curl", "-sf", "-o", str(scratch / "curl.zip"), link], check=True)
                for th in threads:
                    th.join()
                seconds = time.perf_counter() - t
                (scratch / "curl.zip").unlink()
                return seconds

            curl()  # warm-up: the server's page cache, the first touch of memory
            mb = entry.size / 1e6
            print(f"{'round':5} {'curl s':>7} {'streamed s':>10} {'ratio':>6} {'file path s':>11} {'ratio':>6}"
                  f" {'floor s':>7} {'ratio':>6}")  # fmt: skip
            streamed_ratios, file_ratios, floor_ratios = [], [], []
            for r in range(args.rounds):
                curl_s = curl()
                streamed_s, got = ours(True)
                streamed_ratios.append(streamed_s / curl_s)
                line = f"{r + 1:5} {curl_s:7.2f} {streamed_s:10.2f} {streamed_s / curl_s:6.2f}"
                if args.file_path:
                    file_s, old = ours(False)
                    file_ratios.append(file_s / curl_s)
                    line += f" {file_s:11.2f} {file_s / curl_s:6.2f}"
                else:
                    line += f" {'-':>11} {'-':>6}"
                floor_s = floor()
                floor_ratios.append(floor_s / curl_s)
                line += f" {floor_s:7.2f} {floor_s / curl_s:6.2f}"
                print(line)
                for stage, seconds in got.timings.items():
                    print(f"      streamed: {stage:40} {seconds:6.2f} s")
                if args.file_path:
                    for stage, seconds in old.timings.items():
                        print(f"      file path: {stage:39} {seconds:6.2f} s")
        finally:
            server.terminate()
            server.wait()
        print(f"product {mb:.0f} MB, {got.files_verified} files verified against manifest.safe")
        print(f"ratio streamed (download + unpack + all checks) / curl: best {min(streamed_ratios):.2f}, "
              f"worst {max(streamed_ratios):.2f}  (target <= 1.20)")  # fmt: skip
        if file_ratios:
            print(f"ratio file path (download, then unpack) / curl:         best {min(file_ratios):.2f}, "
                  f"worst {max(file_ratios):.2f}")  # fmt: skip
        print(f"ratio floor (curl + MD5 + SHA-256 on two threads) / curl: best {min(floor_ratios):.2f}, "
              f"worst {max(floor_ratios):.2f}  ({os.cpu_count()} cores)")  # fmt: skip
    finally:
        shutil.rmtree(scratch, ignore_errors=True)


if __name__ == "__main__":
    main()
