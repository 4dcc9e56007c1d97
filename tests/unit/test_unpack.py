"""Safe unpacking: hostile and corrupt archives are refused with the product and the cause."""

from __future__ import annotations

import stat
import zipfile
from pathlib import Path

import pytest

from ingest.errors import InvalidProduct
from ingest.stages.checksums import parse_checksum, to_multihash
from ingest.stages.unpack import UnpackLimits, find_safe, unpack


def _zip(path: Path, entries: dict[str, bytes], links: dict[str, str] | None = None) -> Path:
    with zipfile.ZipFile(path, "w", zipfile.ZIP_DEFLATED) as zf:
        for name, data in entries.items():
            zf.writestr(name, data)
        for name, target in (links or {}).items():
            info = zipfile.ZipInfo(name)
            info.external_attr = (stat.S_IFLNK | 0o777) << 16
            zf.writestr(info, target)
    return path


def test_good_archive_unpacks_atomically(tmp_path: Path) -> None:
    z = _zip(tmp_path / "p.zip", {"P.SAFE/manifest.safe": b"<x/>", "P.SAFE/GRANULE/a.jp2": b"1" * 100})
    out = unpack(z, tmp_path / "out", product_id="P")
    assert (out / "P.SAFE" / "GRANULE" / "a.jp2").read_bytes() == b"1" * 100
    assert find_safe(out, "P").name == "P.SAFE"
    assert not (tmp_path / "out.partial").exists()


@pytest.mark.parametrize(
    "name,cause",
    [
        ("../evil.txt", "climbs out"),
        ("P.SAFE/../../evil.txt", "climbs out"),
        ("/etc/evil.txt", "absolute path"),
        ("C:/evil.txt", "absolute path"),
        ("P.SAFE\\..\\evil.txt", "backslash"),
    ],
)
def test_hostile_names_are_refused(tmp_path: Path, name: str, cause: str) -> None:
    z = _zip(tmp_path / "p.zip", {"P.SAFE/ok": b"ok", name: b"pwned"})
    with pytest.raises(InvalidProduct, match=cause) as err:
        unpack(z, tmp_path / "work" / "out", product_id="PRODUCT_X")
    assert "PRODUCT_X" in str(err.value)
    assert not list(tmp_path.rglob("evil.txt")) and not Path("/etc/evil.txt").exists()
    assert not (tmp_path / "work" / "out").exists() and not (tmp_path / "work" / "out.partial").exists()


def test_links_leaving_the_tree_are_refused_and_inner_links_kept(tmp_path: Path) -> None:
    z = _zip(tmp_path / "bad.zip", {"P.SAFE/a": b"a"}, links={"P.SAFE/l": "../../outside"})
    with pytest.raises(InvalidProduct, match="points outside"):
        unpack(z, tmp_path / "o1", product_id="P")
    z = _zip(tmp_path / "abs.zip", {"P.SAFE/a": b"a"}, links={"P.SAFE/l": "/etc/passwd"})
    with pytest.raises(InvalidProduct, match="points outside"):
        unpack(z, tmp_path / "o2", product_id="P")
    z = _zip(tmp_path / "ok.zip", {"P.SAFE/a": b"a"}, links={"P.SAFE/l": "a"})
    out = unpack(z, tmp_path / "o3", product_id="P")
    assert (out / "P.SAFE" / "l").is_symlink()


def test_oversized_and_bomb_archives_are_refused(tmp_path: Path) -> None:
    z = _zip(tmp_path / "big.zip", {"P.SAFE/zeros": b"\0" * 5_000_000})
    with pytest.raises(InvalidProduct, match="expansion ratio"):
        unpack(z, tmp_path / "o1", product_id="P", limits=UnpackLimits(max_ratio=100))
    with pytest.raises(InvalidProduct, match="over the limit"):
        unpack(z, tmp_path / "o2", product_id="P", limits=UnpackLimits(max_total_bytes=1_000_000, max_ratio=1e9))
    with pytest.raises(InvalidProduct, match="entries exceed"):
        unpack(z, tmp_path / "o3", product_id="P", limits=UnpackLimits(max_entries=0))


def test_corrupt_archives_are_refused(tmp_path: Path) -> None:
    z = _zip(tmp_path / "c.zip", {"P.SAFE/data": bytes(range(256)) * 400})
    raw = bytearray(z.read_bytes())
    raw[len(raw) // 3] ^= 0xFF  # inside the compressed data: CRC or inflate error
    z.write_bytes(bytes(raw))
    with pytest.raises(InvalidProduct, match="corrupt archive"):
        unpack(z, tmp_path / "o", product_id="P")
    (tmp_path / "n.zip").write_bytes(b"this is not a zip at all")
    with pytest.raises(InvalidProduct, match="File is not a zip file"):
        unpack(tmp_path / "n.zip", tmp_path / "o2", product_id="P")
    assert not (tmp_path / "o").exists() and not (tmp_path / "o.partial").exists()


def test_multihash_round_trip_and_errors() -> None:
    h = "a" * 64
    mh = to_multihash("sha256", h)
    assert mh == "1220" + h
    assert parse_checksum(mh).algorithm == "sha256"
    md5 = to_multihash("md5", "b" * 32)
    assert md5.startswith("d50110") and parse_checksum(md5).hexdigest == "b" * 32
    assert parse_checksum("MD5:" + "C" * 32).hexdigest == "c" * 32
    for bad in ("1220abcd", "zz", "crc32:1234", "sha256:abc"):
        with pytest.raises(ValueError):
            parse_checksum(bad)
