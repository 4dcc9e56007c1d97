"""SAFE manifests: real ones (MD5, SHA3-256, Sentinel-3 xfdu) list and verify; hostile ones are refused."""

from __future__ import annotations

from pathlib import Path

import pytest

from ingest.stages.manifest import ManifestError, manifest_checksums, manifest_entries, verify_manifest
from tests.conftest import FIXTURES, REAL_S1_GRD, REAL_S2_L1C, REAL_S2_L2A_N0214, REAL_S2_L2A_N0400

L1C, L2A_JP2, L2A_N0400, S1 = REAL_S2_L1C, REAL_S2_L2A_N0214, REAL_S2_L2A_N0400, REAL_S1_GRD


def test_real_manifests_list_their_files() -> None:
    s3 = next((FIXTURES / "sentinel3" / "safe").glob("S3A_OL_1_EFR____*.SEN3"))  # the one vendored
    for safe, count, algorithm in [(S1, 11, "md5"), (L2A_JP2, 123, "md5"), (L2A_N0400, 41, "md5"),
                                   (s3, 29, "md5"), (L1C, 97, "sha3_256")]:  # fmt: skip
        sums = manifest_checksums(safe)
        assert len(sums) == count, safe.name
        assert {c.algorithm for c in sums.values()} == {algorithm}
        assert all(not rel.startswith(("./", "/")) for rel in sums)
    # real hrefs are "./GRANULE/..." and "./MTD_MSIL2A.xml"
    assert "MTD_MSIL2A.xml" in manifest_checksums(L2A_JP2)
    assert any(rel.startswith("GRANULE/") and rel.endswith(".jp2") for rel in manifest_checksums(L1C))


def test_real_products_verify_what_they_carry() -> None:
    # S1: real annotation XML matches its MD5; measurements are 0-byte stand-ins, previews absent
    _, problems = verify_manifest(S1)
    assert not [p for p in problems if p.path.startswith("annotation/")]
    assert {p.path.split("/")[0] for p in problems} == {"measurement", "preview"}
    assert all(p.problem.startswith("size 0 != ") for p in problems if p.path.startswith("measurement/"))
    # L1C (SHA3-256): the metadata XML present verifies; the rasters are not in the fixture
    checked, problems = verify_manifest(L1C)
    assert checked >= 2
    assert {p.problem for p in problems} == {"missing"}
    assert not any(p.path == "MTD_MSIL1C.xml" or p.path.endswith("MTD_TL.xml") for p in problems)


def _manifest(tmp_path: Path, stream: str) -> Path:
    (tmp_path / "manifest.safe").write_text(
        f"<XFDU><dataObjectSection><dataObject ID='x'><byteStream size='1'>{stream}</byteStream>"
        "</dataObject></dataObjectSection></XFDU>"
    )
    return tmp_path


@pytest.mark.parametrize("href", ["../etc/passwd", "/abs/file", "file:///x", "a//b", "./"])
def test_hrefs_outside_the_product_are_refused(tmp_path: Path, href: str) -> None:
    _manifest(tmp_path, f'<fileLocation href="{href}"/><checksum checksumName="MD5">00</checksum>')
    with pytest.raises(ManifestError, match="relative path inside"):
        manifest_entries(tmp_path)


def test_dtd_and_malformed_xml_are_refused(tmp_path: Path) -> None:
    (tmp_path / "manifest.safe").write_text('<?xml version="1.0"?><!DOCTYPE x [<!ENTITY a "b">]><x>&a;</x>')
    with pytest.raises(ManifestError, match="DTD"):
        manifest_entries(tmp_path)
    (tmp_path / "manifest.safe").write_text("<XFDU><dataObject>")
    with pytest.raises(ManifestError, match="not well-formed"):
        manifest_entries(tmp_path)
    with pytest.raises(ManifestError, match=r"no manifest\.safe"):
        manifest_entries(tmp_path / "nowhere")


def test_verify_reports_each_kind_of_problem(tmp_path: Path) -> None:
    (tmp_path / "ok").write_bytes(b"a")
    (tmp_path / "bad").write_bytes(b"b")
    (tmp_path / "long").write_bytes(b"cc")
    (tmp_path / "odd").write_bytes(b"d")
    md5_a, md5_x = "0cc175b9c0f1b6a831c399e269772661", "0" * 32
    listed = [("ok", "MD5", md5_a), ("bad", "MD5", md5_x), ("long", "MD5", md5_x), ("gone", "MD5", md5_x),
              ("odd", "CRC32", "1234")]  # fmt: skip
    (tmp_path / "manifest.safe").write_text(
        "<XFDU><dataObjectSection>"
        + "".join(
            f"<dataObject ID='{n}'><byteStream size='1'><fileLocation href='./{n}'/>"
            f"<checksum checksumName='{algo}'>{d}</checksum></byteStream></dataObject>"
            for n, algo, d in listed
        )
        + "</dataObjectSection></XFDU>"
    )
    checked, problems = verify_manifest(tmp_path)
    assert checked == 2
    assert {str(p) for p in problems} == {
        "bad: MD5 mismatch", "long: size 2 != 1", "gone: missing", "odd: unsupported checksum CRC32",
    }  # fmt: skip
    assert "gone" not in {p.path for p in verify_manifest(tmp_path, skip_missing=["gone"])[1]}
