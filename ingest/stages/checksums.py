"""Checksums: provider archive checksums (multihash or 'algo:hex') and SAFE manifest MD5s. Pure."""

from __future__ import annotations

import hashlib
import xml.etree.ElementTree as ET
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

CHUNK = 1 << 20

# multihash codes (https://github.com/multiformats/multicodec) -> hashlib names
_MULTIHASH = {0x11: "sha1", 0x12: "sha256", 0x13: "sha512", 0xD5: "md5"}
_NAMES = {
    "md5": "md5",
    "sha1": "sha1",
    "sha256": "sha256",
    "sha-256": "sha256",
    "sha2-256": "sha256",
    "sha512": "sha512",
}


@dataclass(frozen=True)
class Checksum:
    algorithm: str  # hashlib name
    hexdigest: str

    def new(self) -> hashlib._Hash:
        return hashlib.new(self.algorithm)


def _varint(data: bytes) -> tuple[int, int]:
    value, shift = 0, 0
    for i, b in enumerate(data):
        value |= (b & 0x7F) << shift
        if not b & 0x80:
            return value, i + 1
        shift += 7
    raise ValueError("truncated varint")


def parse_checksum(text: str) -> Checksum:
    """'1220<hex>' (STAC file:checksum multihash) or 'sha256:<hex>' / 'MD5:<hex>' into a Checksum."""
    text = text.strip()
    if ":" in text:
        algo, _, hexd = text.partition(":")
        name = _NAMES.get(algo.strip().lower())
        if name is None:
            raise ValueError(f"unsupported checksum algorithm {algo!r}")
        return _checked(Checksum(name, hexd.strip().lower()))
    try:
        raw = bytes.fromhex(text)
    except ValueError:
        raise ValueError(f"checksum is neither multihash hex nor 'algo:hex': {text[:80]!r}") from None
    code, n = _varint(raw)
    length, m = _varint(raw[n:])
    digest = raw[n + m :]
    if code not in _MULTIHASH:
        raise ValueError(f"unsupported multihash code 0x{code:x}")
    if len(digest) != length:
        raise ValueError("multihash length does not match its digest")
    return _checked(Checksum(_MULTIHASH[code], digest.hex()))


def _checked(c: Checksum) -> Checksum:
    if len(c.hexdigest) != hashlib.new(c.algorithm).digest_size * 2:
        raise ValueError(f"{c.algorithm} digest has the wrong length")
    int(c.hexdigest, 16)
    return c


def to_multihash(algorithm: str, hexdigest: str) -> str:
    code = {v: k for k, v in _MULTIHASH.items()}[algorithm]
    digest = bytes.fromhex(hexdigest)
    prefix = bytes([code]) if code < 0x80 else bytes([(code & 0x7F) | 0x80, code >> 7])
    return (prefix + bytes([len(digest)]) + digest).hex()


def file_digest(path: Path, algorithm: str = "sha256") -> str:
    h = hashlib.new(algorithm)
    with open(path, "rb") as f:
        while chunk := f.read(CHUNK):
            h.update(chunk)
    return h.hexdigest()


# ----------------------------------------------------------------------------- manifest.safe


_MANIFEST_ALGOS = {"MD5": "md5", "SHA3-256": "sha3_256", "SHA-256": "sha256", "SHA256": "sha256"}


def manifest_checksums(safe_dir: Path) -> dict[str, Checksum]:
    """Relative path -> checksum for every dataObject of a SAFE ``manifest.safe`` that carries one.

    Older products list MD5, products since about 2021 SHA3-256; both are checked.
    """
    tree = ET.parse(safe_dir / "manifest.safe")  # noqa: S314 - local file we just unpacked, no DTDs
    out: dict[str, Checksum] = {}
    for obj in tree.iter():
        if not obj.tag.endswith("dataObject"):
            continue
        href: str | None = None
        checksum: Checksum | None = None
        for el in obj.iter():
            if el.tag.endswith("fileLocation"):
                href = el.get("href")
            elif el.tag.endswith("checksum"):
                algo = _MANIFEST_ALGOS.get((el.get("checksumName") or "").upper())
                if algo and el.text:
                    checksum = Checksum(algo, el.text.strip().lower())
        if href and checksum:
            out[href[2:] if href.startswith("./") else href] = checksum
    return out


@dataclass(frozen=True)
class ManifestProblem:
    path: str
    problem: str  # "missing" | "<algorithm> mismatch" | "outside the product"


def verify_manifest(safe_dir: Path, *, skip_missing: Iterable[str] = ()) -> tuple[int, list[ManifestProblem]]:
    """Check every file the manifest lists; returns (files checked, problems)."""
    skip = set(skip_missing)
    root = safe_dir.resolve()
    problems: list[ManifestProblem] = []
    checked = 0
    for rel, checksum in sorted(manifest_checksums(safe_dir).items()):
        path = (safe_dir / rel).resolve()
        if not path.is_relative_to(root):
            problems.append(ManifestProblem(rel, "outside the product"))
            continue
        if not path.is_file():
            if rel not in skip:
                problems.append(ManifestProblem(rel, "missing"))
            continue
        checked += 1
        if file_digest(path, checksum.algorithm) != checksum.hexdigest:
            problems.append(ManifestProblem(rel, f"{checksum.algorithm} mismatch"))
    return checked, problems
