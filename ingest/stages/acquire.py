"""Acquire one product: download, verify the archive checksum, unpack safely, verify the manifest.

With a downloader that can stream (``EodagProvider.stream``), all of it happens while the bytes
arrive: the archive digest on one thread, the zip unpacked member by member as its local headers
come (``zipstream``), each member's manifest digest and CRC-32 on two other threads; the archive
is never written to disk. The central directory, the archive checksum and the manifest are then
checked before the tree is renamed into place. An archive that cannot be read in one pass
(``NotStreamable``) is downloaded to disk and unpacked from there, as a downloader without
``stream`` always does.

What may pass (5xx, truncated body, a byte flipped in transit) is retried here with backoff, up to
the configured number of tries; what cannot (hostile or corrupt archive, manifest mismatch, a
checksum that stays wrong over every try) is InvalidProduct. Nothing half-done survives: the
archive is only kept under its final name once downloaded, and the tree only appears unpacked once
complete and verified (``unpacked.partial`` until then).
"""

from __future__ import annotations

import logging
import shutil
import time
import zipfile
import zlib
from collections import Counter
from collections.abc import Callable, Iterable, Mapping
from concurrent.futures import ThreadPoolExecutor
from contextlib import AbstractContextManager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Protocol, runtime_checkable

from ingest.errors import IngestError, InvalidProduct, TransientProductError
from ingest.quota.errors import ProviderLimited
from ingest.retry import RetryPolicy, decide
from ingest.stages.artifacts import ArchiveStream, ProviderProduct
from ingest.stages.checksums import Checksum, FollowingHasher, StreamHasher, file_digest, parse_checksum
from ingest.stages.manifest import (
    MANIFEST_NAMES,
    ManifestEntry,
    ManifestError,
    manifest_file,
    parse_manifest,
    verify_manifest,
)
from ingest.stages.unpack import UnpackLimits, find_safe, unpack
from ingest.stages.zipstream import (
    DigestPlan,
    NotStreamable,
    StreamedMember,
    StreamingUnzip,
    ZipStreamError,
    file_crc32,
)

log = logging.getLogger(__name__)

# Members larger than this that the manifest will verify get no CRC-32 while streaming: their MD5 /
# SHA3-256 checks the same bytes, more strongly. Those the manifest does not cover get it after.
CRC_DEFER_BYTES = 4 << 20
# A manifest larger than this is not read ahead of the verification (it reads it anyway).
MANIFEST_MAX_BYTES = 64 << 20

# The manifest usually comes last in an archive: until it has been read, members are hashed with
# the algorithm the previous manifest of the same collection used (a guess: a wrong one costs a
# second read of the file, never a wrong verdict).
_last_algorithm: dict[str, str] = {}


class Downloader(Protocol):
    def download(self, product: ProviderProduct, dest_dir: Path) -> Path: ...


@runtime_checkable
class StreamingDownloader(Protocol):
    def download(self, product: ProviderProduct, dest_dir: Path) -> Path: ...

    def stream(self, product: ProviderProduct) -> AbstractContextManager[ArchiveStream]: ...


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
    verify_archive_bytes(product, archive.stat().st_size, lambda algorithm: digest or file_digest(archive, algorithm))


def verify_archive_bytes(product: ProviderProduct, size: int, digest: Callable[[str], str | None]) -> None:
    """``verify_archive`` given the archive's size and a way to get its digest in an algorithm."""
    if product.size is not None and size != product.size:
        raise TransientProductError(
            f"archive is {size} bytes, the provider announced {product.size} (truncated download?)",
            product_id=product.id,
        )
    expected = expected_checksum(product)
    if expected is None:
        return
    actual = digest(expected.algorithm)
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
    name = manifest_file(safe).name  # manifest.safe, or a Sentinel-3 xfdumanifest.xml
    if problems:
        shown = "; ".join(str(p) for p in problems[:5]) + (f" (+{len(problems) - 5} more)" if len(problems) > 5 else "")
        raise InvalidProduct(f"{len(problems)} file(s) disagree with {name}: {shown}", product_id=product_id)
    if checked == 0:
        raise InvalidProduct(f"{name} lists no file with a checksum we can verify", product_id=product_id)
    return checked


def manifest_algorithms(archive: Path) -> dict[str, str]:
    """Member name -> algorithm of the archive's manifest entries, read before unpacking.

    Best effort: an archive without a readable manifest gets no digests here, and the full
    verification after unpacking reports what is wrong with it.
    """
    try:
        with zipfile.ZipFile(archive) as zf:
            names = [n for n in zf.namelist() if n.count("/") == 1 and n.rsplit("/", 1)[1] in MANIFEST_NAMES]
            if len(names) != 1 or zf.getinfo(names[0]).file_size > MANIFEST_MAX_BYTES:
                return {}
            top = names[0].split("/", 1)[0]
            entries = parse_manifest(zf.read(names[0]))
    except (zipfile.BadZipFile, zlib.error, ManifestError, OSError, EOFError):
        return {}
    return _algorithms(top, entries)


def _algorithms(top: str, entries: Iterable[ManifestEntry]) -> dict[str, str]:
    """Archive member name -> checksum algorithm, for the manifest entries of SAFE folder ``top``."""
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


class _DigestHints:
    """What to hash per member while streaming: the manifest's algorithm once the manifest is read
    (members it lists need no CRC-32, the others get one), a guess before (see ``_last_algorithm``)."""

    def __init__(self, collection: str) -> None:
        self.collection = collection
        self.algorithms: dict[str, str] | None = None  # member path -> algorithm, from the manifest

    def plan(self, path: str, size: int | None) -> DigestPlan:
        if self.algorithms is not None:
            algorithm = self.algorithms.get(path)
            return DigestPlan(algorithm, crc=algorithm is None)
        guess = _last_algorithm.get(self.collection, "md5")
        return DigestPlan(guess, crc=size is None or size <= CRC_DEFER_BYTES)

    def member_done(self, member: StreamedMember, path: Path) -> None:
        top, _, name = member.path.partition("/")
        if self.algorithms is not None or name not in MANIFEST_NAMES or member.size > MANIFEST_MAX_BYTES:
            return
        try:
            entries = parse_manifest(path.read_bytes(), name)
        except (ManifestError, OSError):
            return  # the verification after unpacking says what is wrong with it
        self.algorithms = _algorithms(top, entries)
        if self.algorithms:
            _last_algorithm[self.collection] = Counter(self.algorithms.values()).most_common(1)[0][0]

    def listed(self, safe: Path) -> set[str]:
        """Members under ``safe`` the manifest lists with a checksum (read while streaming, the same
        bytes ``verify_unpacked`` then checked); none when it was not read (over MANIFEST_MAX_BYTES)."""
        return {path for path in self.algorithms or {} if path.startswith(safe.name + "/")}


def _acquire_streamed(
    downloader: StreamingDownloader,
    product: ProviderProduct,
    unpacked: Path,
    limits: UnpackLimits,
    timings: dict[str, float],
) -> tuple[Path, int, int]:
    """Download, unpack and verify in one pass; returns (SAFE path, files verified, archive bytes)."""
    t = time.monotonic()
    tmp = unpacked.with_name(unpacked.name + ".partial")
    expected = expected_checksum(product)
    hints = _DigestHints(product.collection)
    archive_hash = StreamHasher(expected.algorithm) if expected is not None else None
    received = 0
    zip_error: ZipStreamError | None = None
    members: list[StreamedMember] = []
    try:
        with downloader.stream(product) as body:
            unzip = StreamingUnzip(
                tmp, limits=limits, archive_size=product.size or body.size, plan=hints.plan, on_member=hints.member_done
            )
            with unzip:
                for chunk in body.chunks:
                    received += len(chunk)
                    if archive_hash is not None:
                        archive_hash.update(chunk)
                    if zip_error is None:
                        try:
                            unzip.feed(chunk)
                        except ZipStreamError as exc:
                            zip_error = exc  # nothing more is written; size and checksum still need every byte
                if zip_error is None:
                    try:
                        members = unzip.finish()
                    except ZipStreamError as exc:
                        zip_error = exc
        digest = archive_hash.hexdigest() if archive_hash is not None else None
        timings["download + unpack + digests (streamed)"] = time.monotonic() - t
        t = time.monotonic()
        verify_archive_bytes(product, received, lambda _algorithm: digest)  # a transfer error explains a bad zip
        if zip_error is not None:
            raise InvalidProduct(f"unsafe or corrupt archive {product.id}.zip: {zip_error}", product_id=product.id)
        safe = find_safe(tmp, product.id)
        known = {
            m.path.removeprefix(safe.name + "/"): Checksum(m.algorithm, m.digest)
            for m in members
            if m.algorithm and m.digest and m.path.startswith(safe.name + "/")
        }
        files = verify_unpacked(product.id, safe, known)
        _check_deferred_crcs(product, tmp, members, covered=hints.listed(safe))
        timings["central directory + manifest"] = time.monotonic() - t
    except BaseException:
        if archive_hash is not None:
            archive_hash.close()
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    tmp.rename(unpacked)
    return unpacked / safe.name, files, received


def _check_deferred_crcs(
    product: ProviderProduct, root: Path, members: list[StreamedMember], *, covered: set[str]
) -> None:
    """Members streamed without a CRC-32 that the (now verified) manifest does not cover: check it now."""
    for m in members:
        if m.crc is None and not m.is_dir and m.path not in covered and file_crc32(root / m.path) != m.declared_crc:
            raise InvalidProduct(
                f"unsafe or corrupt archive {product.id}.zip: entry {m.name!r}: bad CRC-32", product_id=product.id
            )


def _acquire_from_file(
    downloader: Downloader,
    product: ProviderProduct,
    download_dir: Path,
    unpacked: Path,
    limits: UnpackLimits,
    timings: dict[str, float],
) -> tuple[Path, int, int]:
    """Download the archive to disk (provider checksum computed while it is written), then unpack."""
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
    return safe, files, archive.stat().st_size


def acquire(
    downloader: Downloader,
    product: ProviderProduct,
    work_dir: Path,
    *,
    policy: RetryPolicy,
    limits: UnpackLimits,
    sleep: Callable[[float], None] = time.sleep,
    stream: bool = True,
) -> Acquired:
    """Download and unpack into ``work_dir/unpacked``; returns the SAFE path.

    Streams when the downloader can and ``stream`` is true; otherwise (or for an archive that cannot
    be read in one pass) downloads into ``work_dir/download`` first.
    """
    started = time.monotonic()
    download_dir, unpacked = work_dir / "download", work_dir / "unpacked"
    partial = unpacked.with_name(unpacked.name + ".partial")
    streaming = stream and isinstance(downloader, StreamingDownloader)
    tries = 0
    timings: dict[str, float] = {}
    while True:
        tries += 1
        for stale in (download_dir, unpacked, partial):  # from a previous try or an interrupted attempt
            shutil.rmtree(stale, ignore_errors=True)
        timings.clear()
        try:
            if streaming:
                assert isinstance(downloader, StreamingDownloader)
                try:
                    safe, files, archive_bytes = _acquire_streamed(downloader, product, unpacked, limits, timings)
                    break
                except NotStreamable as exc:
                    log.info("%s: %s; downloading the archive before unpacking it", product.id, exc)
                    streaming = False
                    timings.clear()
            safe, files, archive_bytes = _acquire_from_file(
                downloader, product, download_dir, unpacked, limits, timings
            )
            break
        except ProviderLimited:
            raise  # the provider's limits, not this download: the caller gives the product back
        except IngestError as exc:
            decision = decide(policy, tries, exc)
            if not decision.retry:
                shutil.rmtree(unpacked, ignore_errors=True)
                shutil.rmtree(partial, ignore_errors=True)
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
