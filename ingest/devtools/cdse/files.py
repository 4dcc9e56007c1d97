"""What the CDSE-like server reads from product files: MD5 and BLAKE3 of the zip, a few metadata values.

Each zip is read once per (size, mtime, inode): the facts are kept in memory, computed when a search
or a product request first needs them, and ahead of that by :meth:`FileFacts.warm` on a background
thread, so large catalogues are not hashed during a request. A product without a file (synthetic
catalogues) has no facts: CDSE shows such products with an empty ``Checksum`` list too.
"""

from __future__ import annotations

import hashlib
import logging
import os
import re
import threading
import zipfile
from collections.abc import Iterable
from datetime import UTC, datetime
from pathlib import Path

from blake3 import blake3

from ingest.devtools.catalog import product_path
from ingest.devtools.cdse.catalogue import FileFacts

logger = logging.getLogger(__name__)

CHUNK = 1 << 20
MAX_METADATA = 8 << 20  # bytes of a metadata member read (manifest.safe, MTD_MSIL*.xml)
_CLOUD = re.compile(rb"<Cloud_Coverage_Assessment>\s*([0-9.]+)\s*</Cloud_Coverage_Assessment>")
_S2_DIRECTION = re.compile(rb"<SENSING_ORBIT_DIRECTION>\s*([A-Z]+)\s*</SENSING_ORBIT_DIRECTION>")
_S1_DIRECTION = re.compile(rb"<s1:pass>\s*([A-Z]+)\s*</s1:pass>")


def read_facts(path: Path) -> FileFacts:
    """Hash ``path`` (MD5 and BLAKE3 in one pass) and read its metadata member; OSError if unreadable."""
    md5 = hashlib.md5(usedforsecurity=False)
    b3 = blake3(max_threads=blake3.AUTO)
    with open(path, "rb") as f:
        st = os.fstat(f.fileno())
        buffer = memoryview(bytearray(CHUNK))
        while n := f.readinto(buffer):
            md5.update(buffer[:n])
            b3.update(buffer[:n])
    cloud, direction = _metadata(path)
    return FileFacts(
        size=st.st_size,
        mtime_ns=st.st_mtime_ns,
        md5=md5.hexdigest(),
        blake3=b3.hexdigest(),
        checksum_date=datetime.fromtimestamp(st.st_mtime, UTC),
        cloud_cover=cloud,
        orbit_direction=direction,
    )


def _metadata(path: Path) -> tuple[float | None, str | None]:
    """(cloud cover, orbit direction) from the product's own metadata, when the zip holds them."""
    try:
        with zipfile.ZipFile(path) as zf:
            for info in zf.infolist():
                name = info.filename
                parts = name.split("/")
                if len(parts) != 2 or info.file_size > MAX_METADATA:
                    continue
                if re.fullmatch(r"MTD_MSIL[12][AC]\.xml", parts[1]):
                    data = zf.read(info)
                    cloud = _CLOUD.search(data)
                    direction = _S2_DIRECTION.search(data)
                    return (
                        float(cloud.group(1)) if cloud else None,
                        direction.group(1).decode() if direction else None,
                    )
                if parts[1] == "manifest.safe" and parts[0].startswith("S1"):
                    direction = _S1_DIRECTION.search(zf.read(info))
                    return None, direction.group(1).decode() if direction else None
    except (zipfile.BadZipFile, OSError, ValueError, RuntimeError) as exc:  # a corrupt test product
        logger.debug("%s: no metadata read: %s", path, exc)
    return None, None


class FileFactsCache:
    """Facts per product id, recomputed only when the file changes; thread-safe."""

    def __init__(self, root: Path) -> None:
        self.root = Path(root)
        self._lock = threading.Lock()
        self._facts: dict[str, tuple[tuple[int, int, int], FileFacts]] = {}
        self._busy: dict[str, threading.Lock] = {}
        self.computed = 0  # files hashed so far (tests assert a file is hashed once)

    def get(self, product_id: str) -> FileFacts | None:
        """The facts of a product's file, None when it has no (readable) file."""
        try:
            path = product_path(self.root, product_id)
            st = os.stat(path)
        except (ValueError, OSError):
            return None
        key = (st.st_size, st.st_mtime_ns, st.st_ino)
        with self._lock:
            known = self._facts.get(product_id)
            if known is not None and known[0] == key:
                return known[1]
            busy = self._busy.setdefault(product_id, threading.Lock())
        with busy:  # one reader per file: a second request waits for the first one's result
            with self._lock:
                known = self._facts.get(product_id)
                if known is not None and known[0] == key:
                    return known[1]
            try:
                facts = read_facts(path)
            except OSError as exc:
                logger.warning("%s: cannot read: %s", path, exc)
                return None
            with self._lock:
                self._facts[product_id] = ((facts.size, facts.mtime_ns, st.st_ino), facts)
                self.computed += 1
            return facts

    def cached(self, product_id: str) -> FileFacts | None:
        """The facts if already known (never reads a file)."""
        with self._lock:
            known = self._facts.get(product_id)
        return known[1] if known is not None else None

    def warm(self, product_ids: Iterable[str], stop: threading.Event) -> None:
        """Compute the facts of ``product_ids`` (on a background thread) until ``stop`` is set."""
        for product_id in product_ids:
            if stop.is_set():
                return
            self.get(product_id)
