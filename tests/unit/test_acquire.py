"""Acquisition with a downloader that streams: unpacked and verified while the bytes arrive, the tree in
place only once everything checked; transfer errors retried, bad archives invalid, odd ones unpacked
from disk instead."""

from __future__ import annotations

import hashlib
import io
import os
import struct
import zipfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest

from ingest.errors import InvalidProduct, TransientProductError
from ingest.retry import RetryPolicy
from ingest.stages import acquire as acq
from ingest.stages.acquire import acquire
from ingest.stages.artifacts import ArchiveStream, ProviderProduct
from ingest.stages.checksums import to_multihash
from ingest.stages.unpack import UnpackLimits
from tests.zips import Unseekable

PID = "S2B_MSIL2A_20260101T100000_N0510_R001_T31TDH_20260101T120000"
BIG = acq.CRC_DEFER_BYTES + 1000  # above it, manifest-listed members get no CRC-32 while streaming


def _manifest(files: dict[str, bytes], algorithm: str = "MD5") -> bytes:
    rows = "".join(
        f'<dataObject ID="o{i}"><byteStream size="{len(data)}"><fileLocation href="./{name}"/>'
        f'<checksum checksumName="{algorithm}">{hashlib.new(algorithm.lower().replace("-", "_"), data).hexdigest()}'
        "</checksum></byteStream></dataObject>"
        for i, (name, data) in enumerate(files.items())
    )
    return f"<xfdu><dataObjectSection>{rows}</dataObjectSection></xfdu>".encode()


def _product_zip(
    listed: dict[str, bytes],
    *,
    unlisted: dict[str, bytes] | None = None,
    method: int = zipfile.ZIP_STORED,
    manifest_first: bool = False,
    algorithm: str = "MD5",
    tamper: str | None = None,
    extra: dict[str, bytes] | None = None,
) -> bytes:
    manifest = _manifest(listed, algorithm)
    members = {f"{PID}.SAFE/{k}": v for k, v in {**listed, **(unlisted or {})}.items()}
    if tamper:
        data = members[f"{PID}.SAFE/{tamper}"]
        members[f"{PID}.SAFE/{tamper}"] = data[:-1] + bytes([data[-1] ^ 0xFF])  # changed whatever the byte was
    raw = io.BytesIO()
    with zipfile.ZipFile(raw, "w", method) as zf:
        if manifest_first:
            zf.writestr(f"{PID}.SAFE/manifest.safe", manifest)
        for name, data in {**members, **(extra or {})}.items():
            zf.writestr(name, data)
        if not manifest_first:
            zf.writestr(f"{PID}.SAFE/manifest.safe", manifest)
    return raw.getvalue()


class FakeProvider:
    """Streams an archive (optionally cut short or with a byte flipped, for the first ``bad_tries``)."""

    def __init__(self, archive: bytes, *, cut: bool = False, flip_at: int | None = None, bad_tries: int = 99) -> None:
        self.archive, self.cut, self.flip_at, self.bad_tries = archive, cut, flip_at, bad_tries
        self.streams = self.downloads = 0

    def _bytes(self) -> bytes:
        data = self.archive
        if self.flip_at is not None and self.streams + self.downloads <= self.bad_tries:
            data = data[: self.flip_at] + bytes([data[self.flip_at] ^ 0xFF]) + data[self.flip_at + 1 :]
        return data

    @contextmanager
    def stream(self, product: ProviderProduct) -> Iterator[ArchiveStream]:
        self.streams += 1
        data, cut = self._bytes(), self.cut and self.streams <= self.bad_tries

        def chunks() -> Iterator[bytes]:
            for i in range(0, len(data), 50_000):
                if cut and i > len(data) // 2:
                    raise TransientProductError("download interrupted: connection reset", product_id=product.id)
                yield data[i : i + 50_000]

        yield ArchiveStream(chunks(), len(data))

    def download(self, product: ProviderProduct, dest_dir: Path) -> Path:
        self.downloads += 1
        dest_dir.mkdir(parents=True, exist_ok=True)
        path = dest_dir / f"{product.id}.zip"
        path.write_bytes(self._bytes())
        return path


def _product(archive: bytes, *, checksum: bool = True) -> ProviderProduct:
    mh = to_multihash("sha256", hashlib.sha256(archive).hexdigest()) if checksum else None
    return ProviderProduct(PID, "S2_MSI_L2A", "local", "http://x", mh, len(archive), None, None, None)


def _acquire(
    provider: FakeProvider, product: ProviderProduct, work: Path, tries: int = 2, **kw: object
) -> acq.Acquired:
    return acquire(
        provider, product, work, policy=RetryPolicy(max_attempts=tries, base_delay_s=0, jitter=0),
        limits=UnpackLimits(), sleep=lambda _s: None, **kw,  # type: ignore[arg-type]
    )  # fmt: skip


def _nothing_left(work: Path) -> None:
    assert not (work / "unpacked").exists() and not (work / "unpacked.partial").exists()
    assert not list(work.rglob("*.zip"))


LISTED = {"GRANULE/B02.jp2": os.urandom(BIG), "GRANULE/B03.jp2": os.urandom(300_000), "MTD_MSIL2A.xml": b"<mtd/>"}


@pytest.mark.parametrize("method", [zipfile.ZIP_STORED, zipfile.ZIP_DEFLATED])
def test_streamed_product_is_unpacked_and_verified_in_one_pass(tmp_path: Path, method: int) -> None:
    archive = _product_zip(LISTED, unlisted={"INSPIRE.xml": b"<i/>"}, method=method)
    provider = FakeProvider(archive)
    got = _acquire(provider, _product(archive), tmp_path)
    assert (provider.streams, provider.downloads) == (1, 0)
    assert got.safe_dir == tmp_path / "unpacked" / f"{PID}.SAFE" and got.files_verified == 3
    assert got.archive_bytes == len(archive) and got.tries == 1
    for name, data in LISTED.items():
        assert (got.safe_dir / name).read_bytes() == data
    assert not (tmp_path / "unpacked.partial").exists() and not (tmp_path / "download").exists()
    assert "download + unpack + digests (streamed)" in got.timings


def test_manifest_mismatch_is_invalid_and_leaves_nothing(tmp_path: Path) -> None:
    archive = _product_zip(LISTED, tamper="GRANULE/B02.jp2")
    with pytest.raises(InvalidProduct, match=r"disagree with manifest\.safe: GRANULE/B02\.jp2: MD5 mismatch") as err:
        _acquire(FakeProvider(archive), _product(archive), tmp_path)
    assert PID in str(err.value)
    _nothing_left(tmp_path)


def test_manifest_in_another_algorithm_is_verified_all_the_same(tmp_path: Path) -> None:
    acq._last_algorithm.pop("S2_MSI_L2A", None)
    for first in (False, True):  # manifest after the data (rehashed from disk), or before (hashed as it streams)
        archive = _product_zip(LISTED, algorithm="SHA3-256", manifest_first=first)
        got = _acquire(FakeProvider(archive), _product(archive), tmp_path / str(first))
        assert got.files_verified == 3
        bad = _product_zip(LISTED, algorithm="SHA3-256", manifest_first=first, tamper="GRANULE/B03.jp2")
        with pytest.raises(InvalidProduct, match=r"B03\.jp2: SHA3-256 mismatch"):
            _acquire(FakeProvider(bad), _product(bad), tmp_path / f"bad{first}")
    assert acq._last_algorithm["S2_MSI_L2A"] == "sha3_256"  # the next product of the collection guesses right
    acq._last_algorithm.pop("S2_MSI_L2A")


def test_hostile_entry_mid_stream_is_invalid(tmp_path: Path) -> None:
    archive = _product_zip(LISTED, extra={"../../escape": b"x"})
    with pytest.raises(InvalidProduct, match=r"unsafe or corrupt archive .*\.zip: entry '../../escape' climbs out"):
        _acquire(FakeProvider(archive), _product(archive), tmp_path / "work")
    assert not list(tmp_path.rglob("escape"))
    _nothing_left(tmp_path / "work")


def test_transfer_corruption_is_retried_and_wins_over_the_broken_zip_it_causes(tmp_path: Path) -> None:
    archive = _product_zip(LISTED)
    cd = archive.rindex(b"PK\x01\x02")  # a byte of the central directory: the zip reads as corrupt too
    provider = FakeProvider(archive, flip_at=cd + 20)
    with pytest.raises(InvalidProduct, match=r"differs from the provider's .* on all 2 downloads"):
        _acquire(provider, _product(archive), tmp_path)
    assert provider.streams == 2
    _nothing_left(tmp_path)
    provider = FakeProvider(archive, flip_at=cd + 20, bad_tries=1)  # the second try gets good bytes
    assert _acquire(provider, _product(archive), tmp_path).tries == 2


def test_corrupt_archive_with_a_matching_checksum_is_invalid(tmp_path: Path) -> None:
    archive = _product_zip(LISTED)
    cd = archive.rindex(b"PK\x01\x02")
    broken = archive[: cd + 16] + b"\0\0\0\0" + archive[cd + 20 :]  # a CRC-32 in the central directory
    with pytest.raises(InvalidProduct, match=r"unsafe or corrupt archive .*CRC-32"):
        _acquire(FakeProvider(broken), _product(broken), tmp_path)
    _nothing_left(tmp_path)


def test_cut_stream_is_retried_and_leaves_no_partial_tree(tmp_path: Path) -> None:
    archive = _product_zip(LISTED)
    provider = FakeProvider(archive, cut=True, bad_tries=1)
    got = _acquire(provider, _product(archive), tmp_path)
    assert got.tries == 2 and got.files_verified == 3
    provider = FakeProvider(archive, cut=True)
    with pytest.raises(TransientProductError, match="interrupted"):
        _acquire(provider, _product(archive), tmp_path / "again")
    _nothing_left(tmp_path / "again")


def test_archive_that_cannot_stream_is_downloaded_and_unpacked_from_disk(tmp_path: Path) -> None:
    raw = Unseekable()
    with zipfile.ZipFile(raw, "w", zipfile.ZIP_STORED) as zf:  # stored members with data descriptors
        for name, data in LISTED.items():
            zf.writestr(f"{PID}.SAFE/{name}", data)
        zf.writestr(f"{PID}.SAFE/manifest.safe", _manifest(LISTED))
    archive = raw.out.getvalue()
    provider = FakeProvider(archive)
    got = _acquire(provider, _product(archive), tmp_path)
    assert (provider.streams, provider.downloads) == (1, 1) and got.files_verified == 3
    assert "unpack + manifest checksums" in got.timings
    assert not (tmp_path / "download").exists()


def test_no_streaming_when_asked(tmp_path: Path) -> None:
    archive = _product_zip(LISTED)
    provider = FakeProvider(archive)
    assert _acquire(provider, _product(archive), tmp_path, stream=False).files_verified == 3
    assert (provider.streams, provider.downloads) == (0, 1)


def _set_crc(archive: bytes, name: str, crc: int) -> bytes:
    """Give member ``name`` another CRC-32 in its local header and the central directory alike."""
    info = next(i for i in zipfile.ZipFile(io.BytesIO(archive)).infolist() if i.filename.endswith(name))
    value = struct.pack("<L", crc)
    archive = archive[: info.header_offset + 14] + value + archive[info.header_offset + 18 :]
    pos = struct.unpack_from("<L", archive, len(archive) - 22 + 16)[0]  # the end record's directory offset
    while archive[pos : pos + 4] == b"PK\x01\x02":
        nlen, xlen, clen = struct.unpack_from("<3H", archive, pos + 28)
        if archive[pos + 46 : pos + 46 + nlen].decode().endswith(name):
            return archive[: pos + 16] + value + archive[pos + 20 :]
        pos += 46 + nlen + xlen + clen
    raise KeyError(name)


def test_large_members_are_checked_by_crc_unless_the_manifest_verifies_them(tmp_path: Path) -> None:
    acq._last_algorithm.pop("S2_MSI_L2A", None)
    # a large member the manifest does not list: its CRC-32 is checked after the stream, from disk
    archive = _set_crc(_product_zip(LISTED, unlisted={"AUX/big.bin": os.urandom(BIG)}), "AUX/big.bin", 0)
    with pytest.raises(InvalidProduct, match=r"entry '.*AUX/big\.bin': bad CRC-32$"):  # found after the stream
        _acquire(FakeProvider(archive), _product(archive), tmp_path / "unlisted")
    _nothing_left(tmp_path / "unlisted")
    # a large listed member with altered bytes and a CRC-32 made to match them: its MD5 refuses it
    tampered = _product_zip(LISTED, tamper="GRANULE/B02.jp2")
    with pytest.raises(InvalidProduct, match=r"B02\.jp2: MD5 mismatch"):
        _acquire(FakeProvider(tampered), _product(tampered), tmp_path / "listed")
    # small members always get their CRC-32 while streaming
    archive = _set_crc(_product_zip(LISTED), "MTD_MSIL2A.xml", 0)
    with pytest.raises(InvalidProduct, match=r"MTD_MSIL2A\.xml': bad CRC-32"):
        _acquire(FakeProvider(archive), _product(archive), tmp_path / "small")


def test_stream_ending_short_without_a_checksum_is_a_transfer_error(tmp_path: Path) -> None:
    class Short(FakeProvider):
        def _bytes(self) -> bytes:  # the connection closed early, cleanly: no error from the transport
            return self.archive[:-100]

    archive = _product_zip(LISTED)
    provider = Short(archive)
    with pytest.raises(TransientProductError, match=r"truncated download\?"):
        _acquire(provider, _product(archive, checksum=False), tmp_path)
    assert provider.streams == 2  # tried again, not judged invalid
    _nothing_left(tmp_path)
    hostile = _product_zip(LISTED, extra={"/etc/evil": b"x"})  # a bad archive that arrived whole stays invalid
    with pytest.raises(InvalidProduct, match="absolute path"):
        _acquire(FakeProvider(hostile), _product(hostile, checksum=False), tmp_path / "hostile")


@pytest.mark.parametrize("streamed", [True, False])
def test_a_blake3_checksum_is_verified_and_a_wrong_one_is_invalid(tmp_path: Path, streamed: bool) -> None:
    # what the Copernicus Data Space offers beside MD5; the reference digest is the blake3 package's own
    from blake3 import blake3

    archive = _product_zip(LISTED)
    good = ProviderProduct(
        PID, "S2_MSI_L2A", "cop_dataspace", "http://x", "BLAKE3:" + blake3(archive).hexdigest(), None, None, None, None
    )
    acquired = _acquire(FakeProvider(archive), good, tmp_path / "ok", stream=streamed)
    assert (acquired.safe_dir / "MTD_MSIL2A.xml").read_bytes() == b"<mtd/>"
    bad = ProviderProduct(PID, "S2_MSI_L2A", "cop_dataspace", "http://x", "blake3:" + "0" * 64, None, None, None, None)
    with pytest.raises(InvalidProduct, match="blake3"):
        _acquire(FakeProvider(archive), bad, tmp_path / "bad", stream=streamed)
    _nothing_left(tmp_path / "bad")
