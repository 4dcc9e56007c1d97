"""SAFE manifests (``manifest.safe``, Sentinel-3 ``xfdumanifest.xml``): list and verify the files. Pure.

Manifests come from downloads, so they are untrusted: DTDs are refused, size is capped, and hrefs
must stay inside the product.
"""

from __future__ import annotations

import xml.etree.ElementTree as ET
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path

from ingest.stages.checksums import Checksum, file_digest

MANIFEST_NAMES = ("manifest.safe", "xfdumanifest.xml")
_MAX_BYTES = 64 * 1024 * 1024  # real manifests are < 1 MB
# manifest checksumName -> hashlib name; older products carry MD5, S2 since baseline 03.xx SHA3-256
ALGORITHMS = {"MD5": "md5", "SHA3-256": "sha3_256", "SHA-256": "sha256", "SHA256": "sha256", "SHA-1": "sha1"}


class ManifestError(ValueError):
    """The manifest is missing, unreadable or lists something it must not."""


@dataclass(frozen=True)
class ManifestEntry:
    """One file listed in a manifest's ``dataObjectSection``."""

    path: str  # relative POSIX path inside the product, without "./"
    size: int | None
    checksum_name: str | None  # as written, upper-cased: "MD5", "SHA3-256"
    checksum: Checksum | None  # None when absent or of an algorithm we do not know
    object_id: str | None
    text_info: str | None = None  # the file's description (Sentinel-3 ``textInfo``)


@dataclass(frozen=True)
class ManifestProblem:
    path: str
    problem: str  # "missing" | "size N != M" | "<algorithm> mismatch" | "unsupported checksum X"

    def __str__(self) -> str:
        return f"{self.path}: {self.problem}"


def manifest_file(safe: Path) -> Path:
    """The manifest of a product directory (or ``safe`` itself when it is the manifest file)."""
    if safe.is_file():
        return safe
    for name in MANIFEST_NAMES:
        if (safe / name).is_file():
            return safe / name
    raise ManifestError(f"no {' or '.join(MANIFEST_NAMES)} in {safe.name}")


def _local(tag: object) -> str:
    return tag.rsplit("}", 1)[-1] if isinstance(tag, str) else ""


def _clean_href(href: str) -> str:
    rel = href.strip().replace("\\", "/")
    while rel.startswith("./"):
        rel = rel[2:]
    parts = rel.split("/")
    if not rel or rel.startswith("/") or ":" in parts[0] or ".." in parts or "" in parts:
        raise ManifestError(f"manifest href {href!r} is not a relative path inside the product")
    return rel


def _parse(data: bytes, name: str) -> ET.Element:
    if len(data) > _MAX_BYTES:
        raise ManifestError(f"{name}: {len(data)} bytes is too large for a manifest")
    if b"<!DOCTYPE" in data or b"<!ENTITY" in data:
        raise ManifestError(f"{name}: manifests must not contain DTD declarations")
    try:
        # DTDs refused above and ElementTree resolves no external entities, so stdlib parsing is safe
        return ET.fromstring(data)  # noqa: S314
    except ET.ParseError as e:
        raise ManifestError(f"{name} is not well-formed XML: {e}") from e


def manifest_entries(safe: Path) -> list[ManifestEntry]:
    """Files listed in the manifest, in manifest order; conflicting duplicates raise ManifestError."""
    path = manifest_file(safe)
    return parse_manifest(path.read_bytes(), path.name)


def parse_manifest(data: bytes, name: str = "manifest.safe") -> list[ManifestEntry]:
    """``manifest_entries`` of a manifest's bytes (e.g. read from an archive before unpacking)."""
    entries: dict[str, ManifestEntry] = {}
    for obj in _parse(data, name).iter():
        if _local(obj.tag) != "dataObject":
            continue
        for stream in (el for el in obj.iter() if _local(el.tag) == "byteStream"):
            location = next((el for el in stream if _local(el.tag) == "fileLocation"), None)
            href = location.get("href") if location is not None else None
            if href is None:
                continue
            checksum_el = next((el for el in stream if _local(el.tag) == "checksum"), None)
            name = (checksum_el.get("checksumName") or "").strip().upper() if checksum_el is not None else ""
            digest = (checksum_el.text or "").strip().lower() if checksum_el is not None else ""
            algorithm = ALGORITHMS.get(name)
            size = (stream.get("size") or "").strip()
            entry = ManifestEntry(
                path=_clean_href(href),
                size=int(size) if size.isdigit() else None,
                checksum_name=name or None,
                checksum=Checksum(algorithm, digest) if algorithm and digest else None,
                object_id=obj.get("ID"),
                text_info=_text_info(location),
            )
            previous = entries.get(entry.path)
            if previous is not None and (previous.checksum, previous.size) != (entry.checksum, entry.size):
                raise ManifestError(f"manifest lists {entry.path} twice with different size/checksum")
            entries.setdefault(entry.path, entry)
    return list(entries.values())


def _text_info(location: ET.Element | None) -> str | None:
    text = location.get("textInfo", "").strip() if location is not None else ""
    return text or None


def manifest_checksums(safe: Path) -> dict[str, Checksum]:
    """Relative path -> checksum of every listed file that carries a checksum we can compute."""
    return {e.path: e.checksum for e in manifest_entries(safe) if e.checksum is not None}


def verify_manifest(
    safe: Path, *, skip_missing: Iterable[str] = (), known: Mapping[str, Checksum] | None = None
) -> tuple[int, list[ManifestProblem]]:
    """Check every listed file: present, of the listed size, with the listed checksum.

    Returns (files whose checksum was verified, problems). ``skip_missing`` names files whose absence
    is expected (e.g. parts a provider does not ship). ``known`` holds digests already computed
    (while unpacking), so those files are not read a second time.
    """
    skip = set(skip_missing)
    base = manifest_file(safe).parent
    problems: list[ManifestProblem] = []
    checked = 0
    for entry in manifest_entries(safe):
        path = base / entry.path
        if not path.is_file():
            if entry.path not in skip:
                problems.append(ManifestProblem(entry.path, "missing"))
            continue
        size = path.stat().st_size
        if entry.size is not None and size != entry.size:
            problems.append(ManifestProblem(entry.path, f"size {size} != {entry.size}"))
        elif entry.checksum is not None:
            checked += 1
            seen = (known or {}).get(entry.path)
            if seen is not None and seen.algorithm == entry.checksum.algorithm:
                digest = seen.hexdigest
            else:
                digest = file_digest(path, entry.checksum.algorithm)
            if digest != entry.checksum.hexdigest:
                problems.append(ManifestProblem(entry.path, f"{entry.checksum_name} mismatch"))
        elif entry.checksum_name:
            problems.append(ManifestProblem(entry.path, f"unsupported checksum {entry.checksum_name}"))
    return checked, problems
