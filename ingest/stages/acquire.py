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
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol

from ingest.errors import IngestError, InvalidProduct, TransientProductError
from ingest.retry import RetryPolicy, decide
from ingest.stages.artifacts import ProviderProduct
from ingest.stages.checksums import file_digest, parse_checksum
from ingest.stages.manifest import ManifestError, verify_manifest
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


def verify_archive(product: ProviderProduct, archive: Path) -> None:
    """Size and provider checksum of the downloaded archive (when the provider gives them)."""
    size = archive.stat().st_size
    if product.size is not None and size != product.size:
        raise TransientProductError(
            f"archive is {size} bytes, the provider announced {product.size} (truncated download?)",
            product_id=product.id,
        )
    if not product.checksum:
        return
    try:
        expected = parse_checksum(product.checksum)
    except ValueError as exc:
        raise InvalidProduct(
            f"provider checksum {product.checksum[:80]!r} unusable: {exc}", product_id=product.id
        ) from None
    actual = file_digest(archive, expected.algorithm)
    if actual != expected.hexdigest:
        raise ChecksumMismatch(
            f"archive {expected.algorithm} {actual} differs from the provider's {expected.hexdigest}",
            product_id=product.id,
        )


def verify_unpacked(product_id: str, safe: Path) -> int:
    """Every file the SAFE manifest lists is present with its size and checksum; returns files checked."""
    try:
        checked, problems = verify_manifest(safe)
    except ManifestError as exc:
        raise InvalidProduct(f"manifest: {exc}", product_id=product_id) from None
    if problems:
        shown = "; ".join(str(p) for p in problems[:5]) + (f" (+{len(problems) - 5} more)" if len(problems) > 5 else "")
        raise InvalidProduct(f"{len(problems)} file(s) disagree with manifest.safe: {shown}", product_id=product_id)
    if checked == 0:
        raise InvalidProduct("manifest.safe lists no file with a checksum we can verify", product_id=product_id)
    return checked


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
    shutil.rmtree(unpacked, ignore_errors=True)  # a previous, interrupted attempt
    tries = 0
    while True:
        tries += 1
        shutil.rmtree(download_dir, ignore_errors=True)
        try:
            archive = downloader.download(product, download_dir)
            verify_archive(product, archive)
            break
        except IngestError as exc:
            decision = decide(policy, tries, exc)
            if not decision.retry:
                shutil.rmtree(download_dir, ignore_errors=True)
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
    archive_bytes = archive.stat().st_size
    try:
        safe = find_safe(unpack(archive, unpacked, product_id=product.id, limits=limits), product.id)
        files = verify_unpacked(product.id, safe)
    except InvalidProduct:
        shutil.rmtree(unpacked, ignore_errors=True)
        raise
    finally:
        shutil.rmtree(download_dir, ignore_errors=True)  # the archive is not needed once unpacked
    return Acquired(safe, archive_bytes, files, tries, time.monotonic() - started)
