"""Checksums: provider archive checksums (STAC ``file:checksum`` multihash or 'algo:hex'), file digests. Pure.

BLAKE3 (what the Copernicus Data Space offers beside MD5) comes from the ``blake3`` package, the
reference implementation's bindings: hashlib has no BLAKE3, and it hashes faster than MD5.
"""

from __future__ import annotations

import contextlib
import hashlib
import os
import queue
import threading
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, BinaryIO, Protocol

CHUNK = 1 << 20

# multihash codes (https://github.com/multiformats/multicodec) -> hashlib names
_MULTIHASH = {0x11: "sha1", 0x12: "sha256", 0x13: "sha512", 0x1E: "blake3", 0xD5: "md5"}
_NAMES = {
    "blake3": "blake3",
    "md5": "md5",
    "sha1": "sha1",
    "sha256": "sha256",
    "sha-256": "sha256",
    "sha2-256": "sha256",
    "sha512": "sha512",
}


class Hasher(Protocol):
    """What hashlib's objects and blake3's have in common, and all this module uses."""

    @property
    def name(self) -> str: ...
    @property
    def digest_size(self) -> int: ...
    def update(self, data: Any, /) -> Any: ...
    def hexdigest(self) -> str: ...


def new_hash(algorithm: str) -> Hasher:
    """A digest by its hashlib name, or ``blake3``."""
    if algorithm == "blake3":
        from blake3 import blake3

        return blake3()
    return hashlib.new(algorithm)


@dataclass(frozen=True)
class Checksum:
    algorithm: str  # hashlib name, or blake3
    hexdigest: str

    def new(self) -> Hasher:
        return new_hash(self.algorithm)


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
    if len(c.hexdigest) != new_hash(c.algorithm).digest_size * 2:
        raise ValueError(f"{c.algorithm} digest has the wrong length")
    int(c.hexdigest, 16)
    return c


def to_multihash(algorithm: str, hexdigest: str) -> str:
    code = {v: k for k, v in _MULTIHASH.items()}[algorithm]
    digest = bytes.fromhex(hexdigest)
    prefix = bytes([code]) if code < 0x80 else bytes([(code & 0x7F) | 0x80, code >> 7])
    return (prefix + bytes([len(digest)]) + digest).hex()


def file_digest(path: Path, algorithm: str = "sha256") -> str:
    h = new_hash(algorithm)
    with open(path, "rb") as f:
        while chunk := f.read(CHUNK):
            h.update(chunk)
    return h.hexdigest()


class FollowingHasher:
    """Hash a file while another party is still writing it (a download in progress).

    A thread waits for the first file matching ``pattern`` under ``directory``, then reads it as it
    grows; ``finish(path)`` reads what is left once the writer is done and returns the hex digest.
    The file may be renamed meanwhile: the open descriptor follows it.
    """

    def __init__(self, directory: Path, algorithm: str, pattern: str = "*.zip", poll_s: float = 0.05) -> None:
        import threading

        self._dir, self._pattern, self._poll = directory, pattern, poll_s
        self._h = new_hash(algorithm)
        self._done = threading.Event()
        self._file: BinaryIO | None = None
        self._error: BaseException | None = None
        self._thread = threading.Thread(target=self._run, name="follow-hash", daemon=True)

    def __enter__(self) -> FollowingHasher:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._done.set()
        self._thread.join()
        if self._file is not None:
            self._file.close()

    def _run(self) -> None:
        try:
            while not self._done.is_set() and self._file is None:
                found = next(iter(sorted(self._dir.rglob(self._pattern))), None) if self._dir.exists() else None
                if found is not None:
                    self._file = open(found, "rb")  # noqa: SIM115 - closed in __exit__
                else:
                    self._done.wait(self._poll)
            while self._file is not None and not self._done.is_set():
                chunk = self._file.read(CHUNK)
                if chunk:
                    self._h.update(chunk)
                else:
                    self._done.wait(self._poll)
        except OSError as exc:
            self._error = exc

    def finish(self, path: Path) -> str:
        """Stop following and hash the rest; falls back to a full read if the file was never seen."""
        self._done.set()
        self._thread.join()
        if (
            self._error is not None
            or self._file is None
            or not os.path.samestat(os.fstat(self._file.fileno()), path.stat())
        ):
            return file_digest(path, self._h.name)
        while chunk := self._file.read(CHUNK):
            self._h.update(chunk)
        return self._h.hexdigest()


class SerialWorker:
    """Run submitted calls in order on one thread; a bounded queue makes the submitter wait when it is
    too far ahead. An exception in a call is raised again by the next ``submit`` or by ``join``."""

    def __init__(self, name: str, depth: int = 32) -> None:
        self._q: queue.Queue[tuple[Callable[..., object], tuple[Any, ...]] | None] = queue.Queue(depth)
        self._error: BaseException | None = None
        self._thread = threading.Thread(target=self._run, name=name, daemon=True)
        self._thread.start()

    def _run(self) -> None:
        while (item := self._q.get()) is not None:
            if self._error is None:
                fn, args = item
                try:
                    fn(*args)
                except BaseException as exc:  # handed to the submitting thread
                    self._error = exc

    def _raise(self) -> None:
        if self._error is not None:
            error, self._error = self._error, None
            raise error

    def submit(self, fn: Callable[..., object], *args: Any) -> None:
        self._raise()
        self._q.put((fn, args))

    def join(self) -> None:
        """Wait for every submitted call; the worker is finished afterwards."""
        if self._thread.is_alive():
            self._q.put(None)
            self._thread.join()
        self._raise()

    def close(self) -> None:
        """``join`` on the way out of a failure: errors of the calls are dropped (the first failure wins)."""
        with contextlib.suppress(BaseException):
            self.join()


class StreamHasher:
    """A digest of bytes handed over in order, computed on a thread of its own.

    ``update`` only queues (batches of about 1 MiB); hashlib releases the GIL while it hashes, so the
    digest runs on another core while the caller keeps receiving. ``hexdigest`` waits for the rest.
    The chunks must not be modified once handed over.
    """

    def __init__(self, algorithm: str, batch_bytes: int = 1 << 20) -> None:
        self.algorithm = algorithm
        self._h = new_hash(algorithm)
        self._limit = batch_bytes
        self._batch: list[Any] = []
        self._pending = 0
        self._worker = SerialWorker(f"{algorithm}-stream")

    def _update(self, batch: list[Any]) -> None:
        for chunk in batch:
            self._h.update(chunk)

    def update(self, chunk: Any) -> None:
        self._batch.append(chunk)
        self._pending += len(chunk)
        if self._pending >= self._limit:
            batch, self._batch, self._pending = self._batch, [], 0
            self._worker.submit(self._update, batch)

    def hexdigest(self) -> str:
        if self._batch:
            batch, self._batch, self._pending = self._batch, [], 0
            self._worker.submit(self._update, batch)
        self._worker.join()
        return self._h.hexdigest()

    def close(self) -> None:
        """Stop the thread without a result (on the way out of a failure)."""
        self._batch = []
        self._worker.close()
