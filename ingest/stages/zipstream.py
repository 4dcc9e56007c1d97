"""Unpack a zip archive while it downloads: each member is written and hashed as its bytes arrive.

A zip's local headers come in archive order, each right before its member's data; the central
directory at the end is the archive's own table of contents. ``StreamingUnzip`` is fed the archive's
bytes in order (``feed``) and

* checks each local header as it arrives, before anything of that member is written: the names
  rules of ``unpack`` (no absolute path, no ``..``, no backslash or NUL), no duplicate name, no name
  that is both a file and a directory, no encryption, the entry count, the expanded-size and
  expansion-ratio limits (while inflating too, so a lying header stops at the limit);
* writes members into its destination (a ``.partial`` directory the caller renames once everything
  is verified) and hands their bytes to a digest thread (CRC-32, plus the manifest's algorithm);
* at the end (``finish``) checks the central directory against what was streamed: every entry at the
  offset, with the name, method, sizes and CRC-32 of a streamed member, no entry missing or extra,
  the end records consistent; links (known only from the central directory) must stay inside the
  tree and are only then made links, so nothing is ever written through one.

What is hostile or corrupt raises ``ZipStreamError`` (the caller makes the product invalid, unless
the archive checksum shows a transfer error). An archive that may be valid but cannot be read in one
pass (a stored member with a data descriptor, a method other than stored/deflated, data before or
between entries) raises ``NotStreamable``: the caller unpacks it from disk with ``unpack`` instead.

Digests are computed on another thread (hashlib and zlib release the GIL on large buffers), so
hashing overlaps the network read and the writes on a second core.
"""

from __future__ import annotations

import hashlib
import os
import shutil
import stat
import struct
import zlib
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path, PurePosixPath
from typing import Any

from ingest.stages.checksums import SerialWorker
from ingest.stages.unpack import UnpackLimits, check_link_target, check_name

LOCAL_SIG = b"PK\x03\x04"
CENTRAL_SIG = b"PK\x01\x02"
EOCD_SIG = b"PK\x05\x06"
ZIP64_EOCD_SIG = b"PK\x06\x06"
ZIP64_LOCATOR_SIG = b"PK\x06\x07"
DESCRIPTOR_SIG = b"PK\x07\x08"

_LOCAL = struct.Struct("<4s5H3L2H")  # sig, version, flags, method, time, date, crc, csize, usize, nlen, xlen
_CENTRAL = struct.Struct("<4s4B4H3L5H2L")  # ... crc, csize, usize, nlen, xlen, clen, disk, iattr, eattr, offset
_EOCD = struct.Struct("<4s4H2LH")  # sig, disk, cd disk, entries here, entries, cd size, cd offset, comment len
_ZIP64_EOCD = struct.Struct("<4sQ2H2L4Q")
_ZIP64_LOCATOR = struct.Struct("<4sLQL")

STORED, DEFLATED = 0, 8
_FLAG_ENCRYPTED, _FLAG_DESCRIPTOR, _FLAG_UTF8 = 0x1, 0x8, 0x800
_MAX32, _MAX16 = 0xFFFFFFFF, 0xFFFF
_BATCH_BYTES = 1 << 20  # bytes handed to the writer and the digest thread at once
_BATCH_PIECES = 256  # and at most this many pieces (writev's IOV_MAX is 1024)
_INFLATE_PIECE = 1 << 20  # inflate output per call: limits are checked between pieces
_MAX_TAIL = 64 << 20  # central directory + end records held in memory
_MAX_LINK = 4096  # a link member holds a path


class ZipStreamError(ValueError):
    """The archive is hostile or corrupt; the message names the entry and the cause."""


class NotStreamable(Exception):
    """The archive may be valid but cannot be unpacked in one pass: unpack it from disk instead."""


@dataclass(frozen=True)
class DigestPlan:
    """What to compute over one member's bytes while it streams."""

    algorithm: str | None = None  # hashlib name (the manifest's), None for none
    crc: bool = True  # False: the caller verifies this member by a stronger digest instead


@dataclass
class StreamedMember:
    name: str  # as in the archive
    path: str  # normalised relative POSIX path ("" parts and "." removed)
    offset: int  # of its local header in the archive
    flags: int
    method: int
    is_dir: bool
    declared_crc: int | None  # from the local header or the data descriptor
    declared_size: int | None  # expanded size from the local header (None with a data descriptor)
    compressed: int = 0  # bytes of member data in the archive
    size: int = 0  # bytes written
    crc: int | None = None  # computed CRC-32 (None: not computed, see DigestPlan.crc)
    algorithm: str | None = None
    digest: str | None = None  # hex digest in ``algorithm``
    is_link: bool = False  # known from the central directory only


class _Digests:
    """One member's running digests (updated on the digest thread only)."""

    __slots__ = ("crc", "h")

    def __init__(self, plan: DigestPlan) -> None:
        self.h = hashlib.new(plan.algorithm) if plan.algorithm else None
        self.crc: int | None = 0 if plan.crc else None

    def update(self, pieces: list[Any]) -> None:
        h, crc = self.h, self.crc
        for piece in pieces:
            if h is not None:
                h.update(piece)
            if crc is not None:
                crc = zlib.crc32(piece, crc)
        self.crc = crc


def _decode_name(raw: bytes, flags: int) -> str:
    return raw.decode("utf-8" if flags & _FLAG_UTF8 else "cp437")


def _zip64_values(extra: bytes, wanted: list[bool], where: str) -> list[int | None]:
    """Values of the zip64 extra field (0x0001) for the fields marked ``wanted``, in field order
    (expanded size, compressed size, header offset: 8 bytes each; disk number: 4)."""
    values: list[int | None] = [None] * len(wanted)
    i = 0
    while i + 4 <= len(extra):
        tag, size = struct.unpack_from("<2H", extra, i)
        if i + 4 + size > len(extra):
            raise ZipStreamError(f"{where}: malformed extra field")
        if tag == 0x0001:
            j, stop = i + 4, i + 4 + size
            for n, want in enumerate(wanted):
                if not want:
                    continue
                width = 4 if n == 3 else 8
                if j + width > stop:
                    raise ZipStreamError(f"{where}: zip64 extra field too short")
                values[n] = int.from_bytes(extra[j : j + width], "little")
                j += width
            return values
        i += 4 + size
    if any(wanted):
        raise ZipStreamError(f"{where}: sizes marked zip64 but no zip64 extra field")
    return values


def _has_zip64(extra: bytes) -> bool:
    i = 0
    while i + 4 <= len(extra):
        tag, size = struct.unpack_from("<2H", extra, i)
        if tag == 0x0001:
            return True
        i += 4 + size
    return False


class StreamingUnzip:
    """Unpack a zip archive from its bytes in order (see the module docstring).

    ``dest`` must not exist; it is created and filled. ``archive_size``, when known (Content-Length,
    the provider's size), lets the expansion-ratio limit act while streaming; it is checked again on
    the real size at the end. ``plan(path, declared_size)`` says what to hash per member (default:
    CRC-32 only); ``on_member(member, file)`` is called on the streaming thread when a member is
    complete on disk. Digests are computed on ``digest_threads`` threads (members taken in turn), or on
    the calling thread with ``threaded=False``.
    """

    def __init__(
        self,
        dest: Path,
        *,
        limits: UnpackLimits | None = None,
        archive_size: int | None = None,
        plan: Callable[[str, int | None], DigestPlan] | None = None,
        on_member: Callable[[StreamedMember, Path], None] | None = None,
        threaded: bool = True,
        digest_threads: int = 2,
    ) -> None:
        self.dest = dest
        self.limits = limits or UnpackLimits()
        self.archive_size = archive_size
        self._plan = plan or (lambda _path, _size: DigestPlan())
        self._on_member = on_member
        self.members: list[StreamedMember] = []
        self._files: set[str] = set()
        self._dirs: set[str] = set()
        self._made: set[Path] = set()
        self._declared_total = 0
        self._written_total = 0
        self._offset = 0  # archive bytes consumed
        self._buf = bytearray()  # header bytes waiting to be complete
        self._state = "header"  # header | stored | deflate | descriptor | tail
        self._member: StreamedMember | None = None
        self._digests: _Digests | None = None
        self._digests_of: dict[int, _Digests] = {}  # by local header offset
        self._remaining = 0  # member data bytes still to come (stored / deflated with known size)
        self._inflater: Any = None
        self._zip64_member = False
        self._fd = -1
        self._pieces: list[Any] = []
        self._piece_bytes = 0
        self._tail = bytearray()
        self._tail_offset = 0
        self._failed = False
        # members go round-robin to the digest threads: one member's MD5 is a serial chain, several
        # members' chains can share both cores with the network read and the archive checksum
        self._workers = [SerialWorker(f"zip-digests-{i}") for i in range(digest_threads if threaded else 0)]
        self._worker: SerialWorker | None = None  # the current member's
        dest.mkdir(parents=True)

    # ------------------------------------------------------------------ feeding

    def feed(self, data: bytes | bytearray | memoryview) -> None:
        """Consume the next bytes of the archive. Raises ZipStreamError / NotStreamable."""
        if self._failed:
            raise ZipStreamError("the archive was already refused")
        try:
            self._feed(memoryview(data))
        except BaseException:
            self._failed = True
            self.abort()
            raise

    def _feed(self, mv: memoryview) -> None:
        while len(mv):
            state = self._state
            if state == "stored":
                n = min(len(mv), self._remaining)
                self._stored(mv[:n])
                mv = mv[n:]
                self._remaining -= n
                self._offset += n
                if self._remaining == 0:
                    self._end_member()
            elif state == "deflate":
                mv = self._deflate(mv)
            elif state == "tail":
                if len(self._tail) + len(mv) > _MAX_TAIL:
                    raise ZipStreamError(f"central directory larger than {_MAX_TAIL} bytes")
                self._tail += mv
                self._offset += len(mv)
                return
            else:  # header or descriptor: gather bytes until the record is complete
                take = min(len(mv), 64 * 1024)
                self._buf += mv[:take]
                mv = mv[take:]
                rest = self._parse_records()
                if rest:  # bytes past the record(s): give them back to the loop
                    mv = memoryview(bytes(rest) + bytes(mv)) if len(mv) else memoryview(bytes(rest))

    def _parse_records(self) -> bytearray:
        """Parse as many header/descriptor records as ``_buf`` holds; return bytes beyond them."""
        while True:
            if self._state == "descriptor":
                if not self._descriptor():
                    return bytearray()
            elif self._state == "header":
                if not self._header():
                    return bytearray()
            else:
                rest, self._buf = self._buf, bytearray()
                return rest

    def _header(self) -> bool:
        buf = self._buf
        if len(buf) < 4:
            return False
        sig = bytes(buf[:4])
        if sig in (CENTRAL_SIG, EOCD_SIG, ZIP64_EOCD_SIG):
            self._state, self._tail_offset = "tail", self._offset
            return True
        if sig != LOCAL_SIG:
            where = "the start" if self._offset == 0 else f"offset {self._offset}"
            raise NotStreamable(f"no zip entry at {where} (found {sig!r})")
        if len(buf) < _LOCAL.size:
            return False
        _, _, flags, method, _, _, crc, csize, usize, nlen, xlen = _LOCAL.unpack_from(buf)
        end = _LOCAL.size + nlen + xlen
        if len(buf) < end:
            return False
        raw_name = bytes(buf[_LOCAL.size : _LOCAL.size + nlen])
        extra = bytes(buf[_LOCAL.size + nlen : end])
        name = _decode_name(raw_name, flags)
        del buf[:end]
        self._start_member(name, flags, method, crc, csize, usize, extra, end)
        return True

    def _start_member(
        self, name: str, flags: int, method: int, crc: int, csize: int, usize: int, extra: bytes, header_len: int
    ) -> None:
        offset = self._offset
        self._offset += header_len
        count = len(self.members) + 1
        if count > self.limits.max_entries:
            raise ZipStreamError(f"{count} entries exceed the limit of {self.limits.max_entries}")
        path = self._check_path(name)
        if flags & _FLAG_ENCRYPTED:
            raise ZipStreamError(f"entry {name!r} is encrypted")
        if method not in (STORED, DEFLATED):
            raise NotStreamable(f"entry {name!r} uses compression method {method}")
        descriptor = bool(flags & _FLAG_DESCRIPTOR)
        if descriptor and method == STORED:
            raise NotStreamable(f"stored entry {name!r} has a data descriptor (its length is unknown)")
        self._zip64_member = _has_zip64(extra)
        declared_crc: int | None = None
        declared_size: int | None = None
        if not descriptor:
            big = _zip64_values(extra, [usize == _MAX32, csize == _MAX32], f"entry {name!r}")
            usize = big[0] if big[0] is not None else usize
            csize = big[1] if big[1] is not None else csize
            declared_crc, declared_size = crc, usize
            if method == STORED and csize != usize:
                raise ZipStreamError(f"stored entry {name!r} declares {csize} bytes stored for {usize} expanded")
            self._declared_total += usize
            self._check_totals(self._declared_total)
        is_dir = name.endswith("/")
        member = StreamedMember(name, path, offset, flags, method, is_dir, declared_crc, declared_size)
        self.members.append(member)
        self._member = member
        if is_dir:
            self._mkdir(self.dest / path)
            self._fd = -1
            self._digests = None
        else:
            target = self.dest / path
            self._mkdir(target.parent)
            self._fd = os.open(target, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_CLOEXEC, 0o666)
            plan = self._plan(path, declared_size)
            member.algorithm = plan.algorithm
            self._digests = _Digests(plan)
            self._digests_of[offset] = self._digests
            if self._workers:
                self._worker = self._workers[len(self._digests_of) % len(self._workers)]
        if method == DEFLATED:
            self._inflater = zlib.decompressobj(-15)
            self._remaining = -1 if descriptor else csize
            self._state = "deflate"
            if self._remaining == 0:
                raise ZipStreamError(f"deflated entry {name!r} has no data")
        else:
            self._remaining = csize
            self._state = "stored"
            if csize == 0:
                self._end_member()

    def _check_path(self, name: str) -> str:
        try:
            p = check_name(name)
        except ValueError as exc:
            raise ZipStreamError(str(exc)) from None
        path = p.as_posix()
        if path in ("", "."):
            raise ZipStreamError(f"entry {name!r} has an empty name")
        is_dir = name.endswith("/")
        if path in self._files:
            raise ZipStreamError(f"entry {name!r} " + ("is both a file and a directory" if is_dir else "appears twice"))
        if not is_dir and path in self._dirs:
            raise ZipStreamError(f"entry {name!r} is both a file and a directory")
        for parent in PurePosixPath(path).parents:
            q = parent.as_posix()
            if q == ".":
                break
            if q in self._files:
                raise ZipStreamError(f"entry {name!r} lies under {q!r}, which is a file")
            self._dirs.add(q)
        if is_dir:
            self._dirs.add(path)
        else:
            self._files.add(path)
        return path

    def _mkdir(self, path: Path) -> None:
        if path not in self._made:
            path.mkdir(parents=True, exist_ok=True)
            self._made.add(path)

    def _check_totals(self, total: int) -> None:
        if total > self.limits.max_total_bytes:
            raise ZipStreamError(f"expands to at least {total} bytes, over the limit of {self.limits.max_total_bytes}")
        size = self.archive_size
        if size and total / size > self.limits.max_ratio:
            raise ZipStreamError(f"expansion ratio {total / size:.0f} exceeds {self.limits.max_ratio:.0f}")

    # ------------------------------------------------------------------ member data

    def _stored(self, piece: memoryview) -> None:
        member = self._member
        assert member is not None
        member.compressed += len(piece)
        self._emit(piece)

    def _emit(self, piece: Any) -> None:
        member = self._member
        assert member is not None
        n = len(piece)
        if not n:
            return
        member.size += n
        if member.is_dir:
            raise ZipStreamError(f"directory entry {member.name!r} holds data")
        if member.declared_size is not None and member.size > member.declared_size:
            raise ZipStreamError(f"entry {member.name!r} expands beyond its declared size {member.declared_size}")
        self._written_total += n
        if self._written_total > self._declared_total:  # sizes not declared (descriptor): count as we go
            self._check_totals(self._written_total)
        self._pieces.append(piece)
        self._piece_bytes += n
        if self._piece_bytes >= _BATCH_BYTES or len(self._pieces) >= _BATCH_PIECES:
            self._flush()

    def _flush(self) -> None:
        pieces, self._pieces, self._piece_bytes = self._pieces, [], 0
        if not pieces:
            return
        _write_all(self._fd, pieces)
        digests = self._digests
        if digests is not None:
            if self._worker is not None:
                self._worker.submit(digests.update, pieces)
            else:
                digests.update(pieces)

    def _deflate(self, mv: memoryview) -> memoryview:
        """Inflate what belongs to the current member; returns the bytes past its end."""
        member, d = self._member, self._inflater
        assert member is not None and d is not None
        known = self._remaining >= 0
        data = mv[: self._remaining] if known else mv
        rest = mv[len(data) :]
        try:
            out = d.decompress(data, _INFLATE_PIECE)
            self._emit(out)
            while not d.eof and (d.unconsumed_tail or len(out) == _INFLATE_PIECE):
                out = d.decompress(d.unconsumed_tail, _INFLATE_PIECE)
                self._emit(out)
        except zlib.error as exc:
            raise ZipStreamError(f"entry {member.name!r}: {exc}") from None
        used = len(data) - len(d.unused_data)
        member.compressed += used
        self._offset += used
        if known:
            self._remaining -= len(data)
            if d.eof and (d.unused_data or self._remaining):
                raise ZipStreamError(f"entry {member.name!r}: deflate data ends before its declared compressed size")
            if self._remaining == 0:
                if not d.eof:
                    raise ZipStreamError(f"entry {member.name!r}: deflate data incomplete at its declared size")
                self._end_member()
            return rest
        if not d.eof:
            return rest  # all of ``mv`` was deflate data
        leftover = bytes(d.unused_data)
        self._state = "descriptor"
        self._buf = bytearray()
        return memoryview(leftover + bytes(rest)) if len(rest) else memoryview(leftover)

    def _descriptor(self) -> bool:
        """The data descriptor after a deflated member of unknown length: its layout (signature or
        not, 4- or 8-byte sizes) is the one whose sizes match what was streamed. A valid archive has
        at least an end record after it, so waiting for the longest layout never waits forever."""
        member = self._member
        assert member is not None
        buf = self._buf
        if len(buf) < 4:
            return False
        base = 4 if bytes(buf[:4]) == DESCRIPTOR_SIG else 0
        if len(buf) < base + 20:
            return False
        for width in (8, 4) if self._zip64_member else (4, 8):
            end = base + 4 + 2 * width
            crc = int.from_bytes(buf[base : base + 4], "little")
            csize = int.from_bytes(buf[base + 4 : base + 4 + width], "little")
            usize = int.from_bytes(buf[base + 4 + width : end], "little")
            if (csize, usize) == (member.compressed, member.size):
                member.declared_crc = crc
                self._offset += end
                del buf[:end]
                self._end_member()
                return True
        raise ZipStreamError(
            f"data descriptor of {member.name!r} disagrees with its data "
            f"({member.compressed} bytes stored, {member.size} expanded)"
        )

    def _end_member(self) -> None:
        member = self._member
        assert member is not None
        if member.declared_size is not None and member.size != member.declared_size:
            raise ZipStreamError(
                f"entry {member.name!r} is corrupt: it expands to {member.size} bytes, not {member.declared_size}"
            )
        self._flush()
        if self._fd >= 0:
            os.close(self._fd)
            self._fd = -1
            if self._on_member is not None:
                self._on_member(member, self.dest / member.path)
        self._member, self._inflater = None, None
        self._state = "header"

    # ------------------------------------------------------------------ the end

    def finish(self) -> list[StreamedMember]:
        """Check the central directory against the streamed members; make the links. Returns the members."""
        if self._failed:
            raise ZipStreamError("the archive was already refused")
        try:
            return self._finish()
        except BaseException:
            self._failed = True
            self.abort()
            raise

    def _finish(self) -> list[StreamedMember]:
        if self._state != "tail":
            if self._member is not None:
                raise ZipStreamError(f"archive truncated inside entry {self._member.name!r}")
            raise ZipStreamError("archive truncated: no central directory")
        workers, self._workers, self._worker = self._workers, [], None
        for worker in workers:
            worker.join()
        for member in self.members:
            d = self._digests_of.get(member.offset)
            if d is not None:
                member.crc = d.crc
                member.digest = d.h.hexdigest() if d.h is not None else None
        entries = self._central_directory()
        by_offset = {m.offset: m for m in self.members}
        seen: set[int] = set()
        links: list[StreamedMember] = []
        for name, _flags, method, crc, csize, usize, offset, mode in entries:
            found = by_offset.get(offset)
            if found is None or offset in seen:
                raise ZipStreamError(f"central directory entry {name!r} points to no streamed entry (offset {offset})")
            member = found
            seen.add(offset)
            if name != member.name:
                raise ZipStreamError(f"central directory says {name!r} where the entry is {member.name!r}")
            if method != member.method:
                raise ZipStreamError(f"entry {name!r}: compression method differs in the central directory")
            if (csize, usize) != (member.compressed, member.size):
                raise ZipStreamError(
                    f"entry {name!r}: central directory says {csize} bytes stored, {usize} expanded; "
                    f"the archive holds {member.compressed} and {member.size}"
                )
            if member.declared_crc is not None and member.declared_crc != crc:
                raise ZipStreamError(
                    f"entry {name!r}: CRC-32 {member.declared_crc:08x} in its local header or data descriptor, "
                    f"{crc:08x} in the central directory"
                )
            if member.crc is not None and member.crc != crc:
                raise ZipStreamError(f"entry {name!r}: bad CRC-32 {member.crc:08x}, the archive says {crc:08x}")
            if member.declared_crc is None:
                member.declared_crc = crc
            if stat.S_ISLNK(mode >> 16) and not member.is_dir:
                links.append(member)
        if len(seen) != len(self.members):
            missing = [m.name for m in self.members if m.offset not in seen]
            raise ZipStreamError(f"entries missing from the central directory: {', '.join(missing[:5])}")
        total = sum(m.size for m in self.members)
        size = self._offset
        if size and total / size > self.limits.max_ratio:
            raise ZipStreamError(f"expansion ratio {total / size:.0f} exceeds {self.limits.max_ratio:.0f}")
        for member in links:
            self._make_link(member)
        return self.members

    def _central_directory(self) -> list[tuple[str, int, int, int, int, int, int, int]]:
        tail, pos = bytes(self._tail), 0
        entries = []
        while tail[pos : pos + 4] == CENTRAL_SIG:
            if pos + _CENTRAL.size > len(tail):
                raise ZipStreamError("archive truncated inside its central directory")
            fields = _CENTRAL.unpack_from(tail, pos)
            flags, method, crc, csize, usize, nlen, xlen, clen, disk, _, eattr, offset = fields[5:7] + fields[9:]
            end = pos + _CENTRAL.size + nlen + xlen + clen
            if end > len(tail):
                raise ZipStreamError("archive truncated inside its central directory")
            name = _decode_name(tail[pos + _CENTRAL.size : pos + _CENTRAL.size + nlen], flags)
            extra = tail[pos + _CENTRAL.size + nlen : pos + _CENTRAL.size + nlen + xlen]
            big = _zip64_values(
                extra, [usize == _MAX32, csize == _MAX32, offset == _MAX32, disk == _MAX16], f"entry {name!r}"
            )
            usize = usize if big[0] is None else big[0]
            csize = csize if big[1] is None else big[1]
            offset = offset if big[2] is None else big[2]
            disk = disk if big[3] is None else big[3]
            if disk != 0:
                raise ZipStreamError(f"entry {name!r} is on another disk (split archives are not products)")
            entries.append((name, flags, method, crc, csize, usize, offset, eattr))
            pos = end
        cd_size = pos
        count, cd_offset, cd_len = len(entries), self._tail_offset, cd_size
        z64: tuple[int, int, int] | None = None
        if tail[pos : pos + 4] == ZIP64_EOCD_SIG:
            if pos + _ZIP64_EOCD.size > len(tail):
                raise ZipStreamError("archive truncated inside its end records")
            rec = _ZIP64_EOCD.unpack_from(tail, pos)
            if rec[4] != 0 or rec[5] != 0:
                raise ZipStreamError("split archives are not products")
            z64 = (rec[7], rec[8], rec[9])  # entries, cd size, cd offset
            z64_at = self._tail_offset + pos
            pos += 12 + rec[1]
            if tail[pos : pos + 4] != ZIP64_LOCATOR_SIG or pos + _ZIP64_LOCATOR.size > len(tail):
                raise ZipStreamError("zip64 end record without its locator")
            loc = _ZIP64_LOCATOR.unpack_from(tail, pos)
            if loc[2] != z64_at:
                raise ZipStreamError("zip64 locator points elsewhere than the zip64 end record")
            pos += _ZIP64_LOCATOR.size
        if tail[pos : pos + 4] != EOCD_SIG or pos + _EOCD.size > len(tail):
            raise ZipStreamError("archive truncated: no end of central directory record")
        _, disk, cd_disk, here, total, size, offset, clen = _EOCD.unpack_from(tail, pos)
        if pos + _EOCD.size + clen > len(tail):
            raise ZipStreamError("archive truncated inside its comment")
        if z64 is not None:
            total = z64[0] if total == _MAX16 else total
            size = z64[1] if size == _MAX32 else size
            offset = z64[2] if offset == _MAX32 else offset
            here = total if here == _MAX16 else here
        if disk != 0 or cd_disk != 0 or here != total:
            raise ZipStreamError("split archives are not products")
        if (total, size, offset) != (count, cd_len, cd_offset):
            raise ZipStreamError(
                f"end record says {total} entries, {size} bytes at {offset}; "
                f"the central directory has {count} entries, {cd_len} bytes at {cd_offset}"
            )
        return entries

    def _make_link(self, member: StreamedMember) -> None:
        path = self.dest / member.path
        if member.size > _MAX_LINK:
            raise ZipStreamError(f"link {member.name!r} holds {member.size} bytes, not a path")
        try:
            target = path.read_bytes().decode("utf-8")
            check_link_target(member.name, target)
        except ValueError as exc:  # UnicodeDecodeError too
            raise ZipStreamError(str(exc)) from None
        path.unlink()
        os.symlink(target, path)

    def abort(self) -> None:
        """Stop: close what is open and wait for the digest thread (the caller removes ``dest``)."""
        if self._fd >= 0:
            os.close(self._fd)
            self._fd = -1
        self._pieces, self._piece_bytes = [], 0
        workers, self._workers, self._worker = self._workers, [], None
        for worker in workers:
            worker.close()  # already failing: the first error is the one reported

    def remove(self) -> None:
        self.abort()
        shutil.rmtree(self.dest, ignore_errors=True)

    def __enter__(self) -> StreamingUnzip:
        return self

    def __exit__(self, *exc: object) -> None:
        self.abort()


def _write_all(fd: int, pieces: list[Any]) -> None:
    n = os.writev(fd, pieces)
    total = sum(len(p) for p in pieces)
    if n == total:
        return
    rest = memoryview(b"".join(bytes(p) for p in pieces))[n:]  # a short write (nearly full disk): finish it
    while len(rest):
        rest = rest[os.write(fd, rest) :]


def file_crc32(path: Path) -> int:
    crc = 0
    with open(path, "rb") as f:
        while chunk := f.read(4 << 20):
            crc = zlib.crc32(chunk, crc)
    return crc
