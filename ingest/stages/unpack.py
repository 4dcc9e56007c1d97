"""Safe unpacking of product archives.

zipfile's own extractall silently *rewrites* hostile names; we refuse the archive instead, because a
product with an absolute path, a '..' component or a link leaving the tree is not a product we want.
Size limits guard against zip bombs. Extraction goes to a temporary sibling directory renamed into
place at the end, so a partial tree never looks complete.
"""

from __future__ import annotations

import hashlib
import os
import shutil
import stat
import zipfile
import zlib
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path, PurePosixPath

from ingest.errors import InvalidProduct
from ingest.stages.checksums import SerialWorker

CHUNK = 4 << 20


@dataclass(frozen=True)
class UnpackLimits:
    max_total_bytes: int = 20 * 1024**3
    max_ratio: float = 200.0  # expanded / compressed, over the whole archive
    max_entries: int = 20_000


def check_name(name: str) -> PurePosixPath:
    """An entry name as a relative path; ValueError for absolute paths, '..', backslashes, NUL."""
    if "\\" in name or "\0" in name:
        raise ValueError(f"entry {name!r} has a backslash or NUL in its name")
    p = PurePosixPath(name)
    if p.is_absolute() or (p.parts and p.parts[0].endswith(":")):
        raise ValueError(f"entry {name!r} has an absolute path")
    if ".." in p.parts:
        raise ValueError(f"entry {name!r} climbs out with '..'")
    return p


def _is_link(info: zipfile.ZipInfo) -> bool:
    return stat.S_ISLNK(info.external_attr >> 16)


def check_link_target(name: str, target: str) -> None:
    """ValueError unless link entry ``name`` pointing at ``target`` stays inside the archive's tree."""
    p, t = PurePosixPath(name), PurePosixPath(target)
    resolved = PurePosixPath(os.path.normpath(str(p.parent / t)))
    if t.is_absolute() or resolved.parts[:1] == ("..",) or ".." in resolved.parts:
        raise ValueError(f"link {name!r} points outside the archive ({t})")


def check_archive(zf: zipfile.ZipFile, archive_size: int, limits: UnpackLimits) -> int:
    """Validate every entry before writing anything; returns the expanded size."""
    infos = zf.infolist()
    if len(infos) > limits.max_entries:
        raise ValueError(f"{len(infos)} entries exceed the limit of {limits.max_entries}")
    total = 0
    for info in infos:
        check_name(info.filename)
        if _is_link(info):
            check_link_target(info.filename, zf.read(info).decode("utf-8", "replace"))
        total += info.file_size
    if total > limits.max_total_bytes:
        raise ValueError(f"expands to {total} bytes, over the limit of {limits.max_total_bytes}")
    if archive_size > 0 and total / archive_size > limits.max_ratio:
        raise ValueError(f"expansion ratio {total / archive_size:.0f} exceeds {limits.max_ratio:.0f}")
    return total


def unpack(
    archive: Path,
    dest: Path,
    *,
    product_id: str,
    limits: UnpackLimits = UnpackLimits(),
    algorithms: Mapping[str, str] | None = None,
    digests: dict[str, str] | None = None,
) -> Path:
    """Unpack ``archive`` into ``dest`` (which must not exist); returns ``dest``.

    ``algorithms`` maps member names to hashlib algorithms: those members are hashed while they are
    written and their hex digests put into ``digests`` (one read of the data instead of two).
    Raises InvalidProduct naming the product and the cause for any hostile or corrupt archive.
    """
    tmp = dest.with_name(dest.name + ".partial")
    shutil.rmtree(tmp, ignore_errors=True)
    hashes: dict[str, hashlib._Hash] = {}
    worker = SerialWorker("unpack-digests")  # hashing overlaps reading, CRC-checking and writing
    try:
        with zipfile.ZipFile(archive) as zf:
            expected = check_archive(zf, archive.stat().st_size, limits)
            tmp.mkdir(parents=True)
            written = 0
            for info in zf.infolist():
                target = tmp / info.filename
                if info.is_dir():
                    target.mkdir(parents=True, exist_ok=True)
                    continue
                target.parent.mkdir(parents=True, exist_ok=True)
                if _is_link(info):
                    os.symlink(zf.read(info).decode(), target)
                    continue
                algorithm = (algorithms or {}).get(info.filename)
                h = hashlib.new(algorithm) if algorithm else None
                if h is not None:
                    hashes[info.filename] = h
                with zf.open(info) as src, open(target, "wb") as out:
                    while chunk := src.read(CHUNK):
                        written += len(chunk)
                        if written > expected:  # header lied about sizes: a bomb in disguise
                            raise ValueError("archive expands beyond its declared size")
                        out.write(chunk)
                        if h is not None:
                            worker.submit(h.update, chunk)
        worker.join()
        if digests is not None:
            digests.update({name: h.hexdigest() for name, h in hashes.items()})
    except (zipfile.BadZipFile, zipfile.LargeZipFile, zlib.error, EOFError, ValueError, NotImplementedError) as exc:
        worker.close()
        shutil.rmtree(tmp, ignore_errors=True)
        raise InvalidProduct(f"unsafe or corrupt archive {archive.name}: {exc}", product_id=product_id) from None
    except BaseException:  # e.g. disk full (OSError): not the archive's fault, may pass
        worker.close()
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    tmp.rename(dest)
    return dest


PRODUCT_SUFFIXES = (".SAFE", ".SEN3")


def find_safe(root: Path, product_id: str) -> Path:
    """The single product directory (``*.SAFE``, Sentinel-3 ``*.SEN3``) inside an unpacked product."""
    found = [p for p in root.iterdir() if p.is_dir() and p.suffix in PRODUCT_SUFFIXES]
    if len(found) != 1:
        names = ", ".join(sorted(p.name for p in root.iterdir())) or "nothing"
        raise InvalidProduct(
            f"expected one .SAFE or .SEN3 directory in the archive, found: {names}", product_id=product_id
        )
    return found[0]
