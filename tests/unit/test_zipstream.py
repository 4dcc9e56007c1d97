"""The streaming zip reader: archives unpacked from their bytes in order, checked against the central
directory at the end; hostile or corrupt archives refused as soon as the stream shows it."""

from __future__ import annotations

import hashlib
import io
import os
import random
import stat
import struct
import zipfile
import zlib
from pathlib import Path

import pytest

from ingest.stages.unpack import UnpackLimits
from ingest.stages.zipstream import (
    DigestPlan,
    NotStreamable,
    StreamedMember,
    StreamingUnzip,
    ZipStreamError,
    file_crc32,
)
from tests.zips import Unseekable

FILES = {
    "P.SAFE/manifest.safe": b"<xfdu/>",
    "P.SAFE/GRANULE/a.jp2": os.urandom(200_000),
    "P.SAFE/GRANULE/zeros.bin": b"\0" * 150_000,
    "P.SAFE/empty.txt": b"",
}


def _zip(
    files: dict[str, bytes] = FILES,
    method: int = zipfile.ZIP_DEFLATED,
    *,
    streamed: bool = False,
    zip64: bool = False,
    links: dict[str, str] | None = None,
    dirs: tuple[str, ...] = (),
) -> bytes:
    raw = Unseekable() if streamed else io.BytesIO()
    with zipfile.ZipFile(raw, "w", method) as zf:
        for d in dirs:
            zf.writestr(zipfile.ZipInfo(d), b"")
        for name, data in files.items():
            with zf.open(name, "w", force_zip64=zip64) as f:
                f.write(data)
        for name, target in (links or {}).items():
            info = zipfile.ZipInfo(name)
            info.external_attr = (stat.S_IFLNK | 0o777) << 16
            zf.writestr(info, target)
    return (raw.out if isinstance(raw, Unseekable) else raw).getvalue()


def _feed(unzip: StreamingUnzip, data: bytes, chunk: int | None = None, seed: int = 1) -> None:
    rnd = random.Random(seed)
    i = 0
    while i < len(data):
        n = chunk or rnd.randint(1, 70_000)
        unzip.feed(data[i : i + n])
        i += n


def _unzip(dest: Path, data: bytes, chunk: int | None = None, **kw: object) -> list[StreamedMember]:
    unzip = StreamingUnzip(dest, **kw)  # type: ignore[arg-type]
    _feed(unzip, data, chunk)
    return unzip.finish()


def _md5_plan(_path: str, _size: int | None) -> DigestPlan:
    return DigestPlan("md5", crc=True)


# ----------------------------------------------------------------------------- structure helpers


def _central(data: bytes) -> list[int]:
    """Offsets of the central directory entries."""
    cd_size, cd_offset = struct.unpack_from("<LL", data, len(data) - 22 + 12)
    out, pos = [], cd_offset
    while pos < cd_offset + cd_size:
        out.append(pos)
        nlen, xlen, clen = struct.unpack_from("<3H", data, pos + 28)
        pos += 46 + nlen + xlen + clen
    return out


def _local(data: bytes, name: str) -> int:
    return next(i.header_offset for i in zipfile.ZipFile(io.BytesIO(data)).infolist() if i.filename == name)


def _cd_entry(data: bytes, name: str) -> int:
    for pos in _central(data):
        nlen = struct.unpack_from("<H", data, pos + 28)[0]
        if data[pos + 46 : pos + 46 + nlen].decode() == name:
            return pos
    raise KeyError(name)


def _patch(data: bytes, at: int, value: bytes) -> bytes:
    return data[:at] + value + data[at + len(value) :]


# ----------------------------------------------------------------------------- valid archives


@pytest.mark.parametrize("method", [zipfile.ZIP_STORED, zipfile.ZIP_DEFLATED])
@pytest.mark.parametrize("zip64", [False, True])
@pytest.mark.parametrize("threaded", [False, True])
def test_archives_unpack_with_their_digests(tmp_path: Path, method: int, zip64: bool, threaded: bool) -> None:
    data = _zip(method=method, zip64=zip64, dirs=("P.SAFE/AUX_DATA/",))
    members = _unzip(tmp_path / "out", data, plan=_md5_plan, threaded=threaded, archive_size=len(data))
    for name, content in FILES.items():
        assert (tmp_path / "out" / name).read_bytes() == content
    assert (tmp_path / "out" / "P.SAFE" / "AUX_DATA").is_dir()
    by_name = {m.name: m for m in members}
    for name, content in FILES.items():
        m = by_name[name]
        assert m.digest == hashlib.md5(content).hexdigest() and m.crc == zlib.crc32(content) and m.size == len(content)


def test_data_descriptors_and_one_byte_chunks(tmp_path: Path) -> None:
    # a writer that cannot seek puts sizes and CRC after the (deflated) data: the end is found by inflating
    data = _zip(streamed=True, zip64=True)
    assert zipfile.ZipFile(io.BytesIO(data)).infolist()[0].flag_bits & 0x08
    members = _unzip(tmp_path / "a", data, chunk=1, plan=_md5_plan)
    assert {m.name for m in members} == set(FILES)
    assert all((tmp_path / "a" / n).read_bytes() == c for n, c in FILES.items())
    _unzip(tmp_path / "b", _zip(streamed=True), chunk=7)


def test_inner_links_are_made_links_at_the_end(tmp_path: Path) -> None:
    data = _zip({"P.SAFE/a": b"a"}, links={"P.SAFE/l": "a", "P.SAFE/sub/up": "../a"})
    _unzip(tmp_path / "out", data)
    assert os.readlink(tmp_path / "out" / "P.SAFE" / "l") == "a"
    assert (tmp_path / "out" / "P.SAFE" / "sub" / "up").read_bytes() == b"a"


def test_members_covered_by_a_stronger_digest_can_skip_the_crc(tmp_path: Path) -> None:
    members = _unzip(tmp_path / "out", _zip(), plan=lambda _p, _s: DigestPlan("sha3_256", crc=False))
    data = FILES["P.SAFE/GRANULE/a.jp2"]
    m = next(m for m in members if m.name == "P.SAFE/GRANULE/a.jp2")
    assert m.crc is None and m.declared_crc == zlib.crc32(data) and m.digest == hashlib.sha3_256(data).hexdigest()
    assert file_crc32(tmp_path / "out" / m.path) == m.declared_crc


def test_member_callback_sees_complete_files(tmp_path: Path) -> None:
    seen: dict[str, bytes] = {}
    _unzip(tmp_path / "out", _zip(), on_member=lambda m, p: seen.__setitem__(m.name, p.read_bytes()))
    assert seen == FILES


# ----------------------------------------------------------------------------- hostile entries


@pytest.mark.parametrize(
    ("name", "cause"),
    [
        ("../evil.txt", "climbs out"),
        ("P.SAFE/../../evil.txt", "climbs out"),
        ("/tmp/evil.txt", "absolute path"),
        ("C:/evil.txt", "absolute path"),
        ("P.SAFE\\..\\evil.txt", "backslash"),
    ],
)
def test_hostile_entry_mid_stream_stops_before_anything_of_it_is_written(tmp_path: Path, name: str, cause: str) -> None:
    files = {"P.SAFE/first": os.urandom(100_000), name: b"pwned", "P.SAFE/after": b"after"}
    data = _zip(files)
    evil_at = _local(data, name)
    unzip = StreamingUnzip(tmp_path / "out")
    with pytest.raises(ZipStreamError, match=cause):
        for i in range(0, len(data), 1000):
            unzip.feed(data[i : i + 1000])
            assert i < evil_at + 30 + len(name.encode()), "the hostile header went unnoticed"
    # refused once its header was complete: the member before it is there, nothing of it or after it
    assert (tmp_path / "out" / "P.SAFE" / "first").read_bytes() == files["P.SAFE/first"]
    assert not (tmp_path / "out" / "P.SAFE" / "after").exists()
    assert not list(tmp_path.rglob("evil.txt")) and not Path("/tmp/evil.txt").exists()
    with pytest.raises(ZipStreamError, match="already refused"):
        unzip.feed(b"more")


def test_links_leaving_the_tree_are_refused_and_never_made(tmp_path: Path) -> None:
    for i, target in enumerate(["../../outside", "/etc/passwd", "sub/../../.."]):
        unzip = StreamingUnzip(tmp_path / f"o{i}")
        _feed(unzip, _zip({"P.SAFE/a": b"a"}, links={"P.SAFE/l": target}))
        with pytest.raises(ZipStreamError, match="points outside"):
            unzip.finish()
        assert not (tmp_path / f"o{i}" / "P.SAFE" / "l").is_symlink()


def test_nothing_is_written_through_a_link(tmp_path: Path) -> None:
    # the link is only a link at the end; a member "under" it collides with it while streaming
    raw = io.BytesIO()
    with zipfile.ZipFile(raw, "w") as zf:
        info = zipfile.ZipInfo("P.SAFE/l")
        info.external_attr = (stat.S_IFLNK | 0o777) << 16
        zf.writestr(info, "/etc")
        zf.writestr("P.SAFE/l/cron.d/evil", b"x")
    with pytest.raises(ZipStreamError, match=r"lies under 'P\.SAFE/l', which is a file"):
        _unzip(tmp_path / "out", raw.getvalue())
    assert not list(tmp_path.rglob("evil"))


def test_duplicate_and_colliding_names_are_refused(tmp_path: Path) -> None:
    raw = io.BytesIO()
    with zipfile.ZipFile(raw, "w") as zf, pytest.warns(UserWarning, match="Duplicate name"):
        zf.writestr("P.SAFE/a", b"1")
        zf.writestr("P.SAFE/a", b"2")
    with pytest.raises(ZipStreamError, match="appears twice"):
        _unzip(tmp_path / "o1", raw.getvalue())
    with pytest.raises(ZipStreamError, match="both a file and a directory"):
        _unzip(tmp_path / "o2", _zip({"P.SAFE/a/b": b"1", "P.SAFE/a": b"2"}))


def test_limits_act_while_streaming(tmp_path: Path) -> None:
    bomb = _zip({"P.SAFE/zeros": b"\0" * 5_000_000})
    with pytest.raises(ZipStreamError, match="expansion ratio"):  # the archive size is known: at the header
        _unzip(tmp_path / "o1", bomb, limits=UnpackLimits(max_ratio=100), archive_size=len(bomb))
    with pytest.raises(ZipStreamError, match="expansion ratio"):  # unknown until the end
        _unzip(tmp_path / "o2", bomb, limits=UnpackLimits(max_ratio=100))
    with pytest.raises(ZipStreamError, match="over the limit"):
        _unzip(tmp_path / "o3", bomb, limits=UnpackLimits(max_total_bytes=1_000_000, max_ratio=1e9))
    with pytest.raises(ZipStreamError, match="entries exceed"):
        _unzip(tmp_path / "o4", bomb, limits=UnpackLimits(max_entries=0))
    # sizes unknown until the data descriptor: the inflated bytes are counted as they come
    unzip = StreamingUnzip(tmp_path / "o5", limits=UnpackLimits(max_total_bytes=1_000_000, max_ratio=1e9))
    with pytest.raises(ZipStreamError, match="over the limit"):
        _feed(unzip, _zip({"P.SAFE/zeros": b"\0" * 5_000_000}, streamed=True))
    assert (tmp_path / "o5" / "P.SAFE" / "zeros").stat().st_size <= 1_000_000 + (1 << 20)


def test_a_header_lying_about_the_size_stops_at_the_declared_size(tmp_path: Path) -> None:
    data = _zip({"P.SAFE/zeros": b"\0" * 3_000_000})
    at = _local(data, "P.SAFE/zeros")
    data = _patch(data, at + 22, struct.pack("<L", 1000))  # expanded size in the local header
    with pytest.raises(ZipStreamError, match="expands beyond its declared size 1000"):
        _unzip(tmp_path / "out", data)
    assert (tmp_path / "out" / "P.SAFE" / "zeros").stat().st_size < 2 << 20


# ----------------------------------------------------------------------------- corrupt archives


def test_data_descriptor_crc_disagreeing_with_the_central_directory(tmp_path: Path) -> None:
    data = _zip({"P.SAFE/a": b"a" * 5000, "P.SAFE/b": b"b" * 5000}, streamed=True)
    info = next(i for i in zipfile.ZipFile(io.BytesIO(data)).infolist() if i.filename == "P.SAFE/a")
    descriptor = info.header_offset + 30 + len(info.filename) + len(info.extra) + info.compress_size
    assert data[descriptor : descriptor + 4] == b"PK\x07\x08"
    bad = _patch(data, descriptor + 4, struct.pack("<L", info.CRC ^ 1))
    with pytest.raises(ZipStreamError, match=r"'P.SAFE/a': CRC-32 .* data descriptor, .* in the central directory"):
        _unzip(tmp_path / "o1", bad)
    # a descriptor whose sizes are not the data's
    bad = _patch(data, descriptor + 8, struct.pack("<L", info.compress_size + 1))
    with pytest.raises(ZipStreamError, match=r"data descriptor of 'P\.SAFE/a' disagrees"):
        _unzip(tmp_path / "o2", bad)


def test_member_whose_bytes_do_not_match_the_crc(tmp_path: Path) -> None:
    data = _zip({"P.SAFE/a": b"a" * 5000}, zipfile.ZIP_STORED)
    at, cd = _local(data, "P.SAFE/a"), _cd_entry(data, "P.SAFE/a")
    # local header and central directory agree with each other, not with the data
    bad = _patch(_patch(data, at + 14, b"\0\0\0\0"), cd + 16, b"\0\0\0\0")
    with pytest.raises(ZipStreamError, match=r"'P\.SAFE/a': bad CRC-32"):
        _unzip(tmp_path / "o1", bad)
    # only the central directory differs
    with pytest.raises(ZipStreamError, match="local header or data descriptor"):
        _unzip(tmp_path / "o2", _patch(data, cd + 16, b"\0\0\0\0"))
    # a flipped byte in deflated data: an inflate error or a CRC mismatch
    data = _zip({"P.SAFE/d": bytes(range(256)) * 400})
    info = zipfile.ZipFile(io.BytesIO(data)).infolist()[0]
    start = info.header_offset + 30 + len(info.filename) + len(info.extra)
    flipped = _patch(data, start + info.compress_size // 2, bytes([data[start + info.compress_size // 2] ^ 0xFF]))
    with pytest.raises(ZipStreamError, match=r"CRC|Error -3|corrupt"):
        _unzip(tmp_path / "o3", flipped)


def test_central_directory_must_match_the_stream(tmp_path: Path) -> None:
    data = _zip({"P.SAFE/a": b"a" * 100, "P.SAFE/b": b"b" * 100}, zipfile.ZIP_STORED)
    cd_b = _cd_entry(data, "P.SAFE/b")
    renamed = _patch(data, cd_b + 46, b"P.SAFE/c")
    with pytest.raises(ZipStreamError, match=r"central directory says 'P\.SAFE/c' where the entry is 'P\.SAFE/b'"):
        _unzip(tmp_path / "o1", renamed)
    resized = _patch(data, cd_b + 24, struct.pack("<L", 99))
    with pytest.raises(ZipStreamError, match="central directory says 100 bytes stored, 99 expanded"):
        _unzip(tmp_path / "o2", resized)
    # an entry streamed but missing from the central directory (end record counts fixed up to match)
    entries = _central(data)
    cd_offset = entries[0]
    eocd = data[-22:]
    dropped = data[: entries[1]] + eocd[:8] + struct.pack("<2H2L", 1, 1, entries[1] - cd_offset, cd_offset) + eocd[20:]
    with pytest.raises(ZipStreamError, match=r"entries missing from the central directory: P\.SAFE/b"):
        _unzip(tmp_path / "o3", dropped)
    # one central directory entry twice: the second points at an entry already matched
    record_b = data[cd_b:-22]
    cd_size = len(data) - 22 - cd_offset + len(record_b)
    doubled = data[:-22] + record_b + eocd[:8] + struct.pack("<2H2L", 3, 3, cd_size, cd_offset) + eocd[20:]
    with pytest.raises(ZipStreamError, match="points to no streamed entry"):
        _unzip(tmp_path / "o4", doubled)
    # end record disagreeing with the central directory
    with pytest.raises(ZipStreamError, match="end record says 3 entries"):
        _unzip(tmp_path / "o5", _patch(data, len(data) - 22 + 8, struct.pack("<2H", 3, 3)))


@pytest.mark.parametrize("where", ["header", "data", "descriptor", "central", "end"])
def test_truncated_streams_are_refused(tmp_path: Path, where: str) -> None:
    data = _zip(streamed=True)
    infos = zipfile.ZipFile(io.BytesIO(data)).infolist()
    cd = _central(data)[0]
    cut = {
        "header": infos[1].header_offset + 10,
        "data": infos[1].header_offset + 100,
        "descriptor": cd - 5,
        "central": cd + 20,
        "end": len(data) - 3,
    }[where]
    unzip = StreamingUnzip(tmp_path / "out")
    _feed(unzip, data[:cut])
    with pytest.raises(ZipStreamError, match="truncated"):
        unzip.finish()


def test_encrypted_entries_are_refused(tmp_path: Path) -> None:
    data = _zip({"P.SAFE/a": b"a"}, zipfile.ZIP_STORED)
    at = _local(data, "P.SAFE/a")
    with pytest.raises(ZipStreamError, match="encrypted"):
        _unzip(tmp_path / "out", _patch(data, at + 6, struct.pack("<H", 1)))


# ----------------------------------------------------------------------------- not streamable


def test_archives_that_need_a_seek_are_handed_back(tmp_path: Path) -> None:
    # stored data followed by a descriptor: its length is only in the central directory
    with pytest.raises(NotStreamable, match="data descriptor"):
        _unzip(tmp_path / "o1", _zip(method=zipfile.ZIP_STORED, streamed=True))
    with pytest.raises(NotStreamable, match="no zip entry at the start"):
        _unzip(tmp_path / "o2", b"#!/bin/sh\n" + _zip())
    with pytest.raises(NotStreamable, match="no zip entry at the start"):
        _unzip(tmp_path / "o3", b"<html>502 Bad Gateway</html>" * 10)
    bz = io.BytesIO()
    with zipfile.ZipFile(bz, "w", zipfile.ZIP_BZIP2) as zf:
        zf.writestr("P.SAFE/a", b"a" * 100)
    with pytest.raises(NotStreamable, match="compression method 12"):
        _unzip(tmp_path / "o4", bz.getvalue())


def test_empty_archive(tmp_path: Path) -> None:
    raw = io.BytesIO()
    zipfile.ZipFile(raw, "w").close()
    assert _unzip(tmp_path / "out", raw.getvalue()) == []
