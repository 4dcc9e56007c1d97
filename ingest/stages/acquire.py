"""Acquire one product: download, verify the archive checksum, unpack safely, verify the manifest.

What may pass (5xx, truncated body, a byte flipped in transit) is retried here with backoff, up to
the configured number of tries; what cannot (hostile or corrupt archive, manifest mismatch, a
checksum that stays wrong over every try) is InvalidProduct. Nothing half-done survives: the
archive is only kept under its final name once downloaded, and the tree only appears unpacked once
complete (see ``unpack``).
"""

from __future__ import annotations

import logging
import shutil
import time
import zipfile
import zlib
from collections.abc import Callable, Mapping
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Protocol

from ingest.errors import IngestError, InvalidProduct, TransientProductError
from ingest.retry import RetryPolicy, decide
from ingest.stages.artifacts import ProviderProduct
from ingest.stages.checksums import Checksum, FollowingHasher, file_digest, parse_checksum
from ingest.stages.manifest import MANIFEST_NAMES, ManifestError, parse_manifest, verify_manifest
from ingest.stages.unpack import UnpackLimits, find_safe, unpack

log = logging.getLogger(__name__)


class Downloader(Protocol):
    def download(self, product: ProviderProduct, dest_dir: Path) -> Path: ...


class ChecksumMismatch(TransientProductError):
    """The archive's digest differs from the provider's: a transit error until it keeps happening."""


@dataclass(frozen=True)
class Acquired:
    safe_dir: Path
    archive_bytes: int
    files_verified: int
    tries: int
    seconds: float
    timings: dict[str, float] = field(default_factory=dict)  # seconds per step of the successful try


def expected_checksum(product: ProviderProduct) -> Checksum | None:
    if not product.checksum:
        return None
    try:
        return parse_checksum(product.checksum)
    except ValueError as exc:
        raise InvalidProduct(
            f"provider checksum {product.checksum[:80]!r} unusable: {exc}", product_id=product.id
        ) from None


def verify_archive(product: ProviderProduct, archive: Path, digest: str | None = None) -> None:
    """Size and provider checksum of the downloaded archive (when the provider gives them).

    ``digest``: the archive's digest in the provider's algorithm, when already computed while streaming.
    """
    size = archive.stat().st_size
    if product.size is not None and size != product.size:
        raise TransientProductError(
            f"archive is {size} bytes, the provider announced {product.size} (truncated download?)",
            product_id=product.id,
        )
    expected = expected_checksum(product)
    if expected is None:
        return
    actual = digest or file_digest(archive, expected.algorithm)
    if actual != expected.hexdigest:
        raise ChecksumMismatch(
            f"archive {expected.algorithm} {actual} differs from the provider's {expected.hexdigest}",
            product_id=product.id,
        )


def verify_unpacked(product_id: str, safe: Path, known: Mapping[str, Checksum] | None = None) -> int:
    """Every file the SAFE manifest lists is present with its size and checksum; returns files checked."""
    try:
        checked, problems = verify_manifest(safe, known=known)
    except ManifestError as exc:
        raise InvalidProduct(f"manifest: {exc}", product_id=product_id) from None
    if problems:
        shown = "; ".join(str(p) for p in problems[:5]) + (f" (+{len(problems) - 5} more)" if len(problems) > 5 else "")
        raise InvalidProduct(f"{len(problems)} file(s) disagree with manifest.safe: {shown}", product_id=product_id)
    if checked == 0:
        raise InvalidProduct("manifest.safe lists no file with a checksum we can verify", product_id=product_id)
    return checked


def manifest_algorithms(archive: Path) -> dict[str, str]:
    """Member name -> algorithm of the archive's manifest entries, read before unpacking.

    Best effort: an archive without a readable manifest gets no digests here, and the full
    verification after unpacking reports what is wrong with it.
    """
    try:
        with zipfile.ZipFile(archive) as zf:
            names = [n for n in zf.namelist() if n.count("/") == 1 and n.rsplit("/", 1)[1] in MANIFEST_NAMES]
            if len(names) != 1 or zf.getinfo(names[0]).file_size > 64 << 20:
                return {}
            top = names[0].split("/", 1)[0]
            entries = parse_manifest(zf.read(names[0]))
    except (zipfile.BadZipFile, zlib.error, ManifestError, OSError, EOFError):
        return {}
    return {f"{top}/{e.path}": e.checksum.algorithm for e in entries if e.checksum is not None}


def _unpack_verified(
    product: ProviderProduct, archive: Path, digest: str | None, unpacked: Path, limits: UnpackLimits
) -> tuple[Path, int]:
    """Unpack (hashing members on the way) while the archive check runs on the other core."""
    algorithms = manifest_algorithms(archive)
    digests: dict[str, str] = {}
    with ThreadPoolExecutor(1, thread_name_prefix="archive-checksum") as pool:
        checksum = pool.submit(verify_archive, product, archive, digest)  # hashlib releases the GIL
        try:
            unpack(archive, unpacked, product_id=product.id, limits=limits, algorithms=algorithms, digests=digests)
        except BaseException:
            checksum.result()  # a wrong archive checksum explains a failed unpack: it wins
            raise
        checksum.result()
    safe = find_safe(unpacked, product.id)
    prefix = safe.name + "/"
    known = {
        name.removeprefix(prefix): Checksum(algorithms[name], digest)
        for name, digest in digests.items()
        if name.startswith(prefix)
    }
    return safe, verify_unpacked(product.id, safe, known)


def acquire(
    downloader: Downloader,
    product: ProviderProduct,
    work_dir: Path,
    *,
    policy: RetryPolicy,
    limits: UnpackLimits,
    sleep: Callable[[float], None] = time.sleep,
) -> Acquired:
    """Download into ``work_dir/download``, unpack into ``work_dir/unpacked``; returns the SAFE path."""
    started = time.monotonic()
    download_dir, unpacked = work_dir / "download", work_dir / "unpacked"
    tries = 0
    timings: dict[str, float] = {}
    while True:
        tries += 1
        shutil.rmtree(download_dir, ignore_errors=True)
        shutil.rmtree(unpacked, ignore_errors=True)  # from a previous try or an interrupted attempt
        try:
            t = time.monotonic()
            expected = expected_checksum(product)
            if expected is None:
                archive, digest = downloader.download(product, download_dir), None
            else:
                # the provider checksum is computed while the bytes arrive, not after
                with FollowingHasher(download_dir, expected.algorithm) as hasher:
                    archive = downloader.download(product, download_dir)
                    digest = hasher.finish(archive)
            timings["download + archive checksum"] = time.monotonic() - t
            t = time.monotonic()
            safe, files = _unpack_verified(product, archive, digest, unpacked, limits)
            timings["unpack + manifest checksums"] = time.monotonic() - t
            archive_bytes = archive.stat().st_size
            break
        except IngestError as exc:
            decision = decide(policy, tries, exc)
            if not decision.retry:
                shutil.rmtree(unpacked, ignore_errors=True)
                if isinstance(exc, ChecksumMismatch):
                    # the same wrong bytes on every try: the provider's archive itself is bad
                    raise InvalidProduct(f"{exc.message} on all {tries} downloads", product_id=product.id) from None
                raise
            assert decision.delay is not None
            log.warning(
                "%s: download try %d failed (%s); retrying in %.1f s",
                product.id,
                tries,
                exc.message,
                decision.delay.total_seconds(),
            )
            sleep(decision.delay.total_seconds())
        finally:
            shutil.rmtree(download_dir, ignore_errors=True)  # the archive is not needed once unpacked
    return Acquired(safe, archive_bytes, files, tries, time.monotonic() - started, timings)
