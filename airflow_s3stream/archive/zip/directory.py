"""The central directory held compactly: parallel arrays, streamed in bounded chunks.

A verifier of a million-entry archive must not build a million Python objects. :class:`CentralDirectory`
keeps each field of every entry in a typed :mod:`array` (about 40 bytes per entry plus the raw
name), and hands out a :class:`~airflow_s3stream.archive.zip.records.ZipEntry` only for the entry
being looked at. :meth:`CentralDirectory.read` streams the directory from a file object in chunks
of ``CHUNK`` bytes, so a forged directory size costs no more memory than the chunk: parsing stops
at the first record that is not one.

Record parsing (:func:`parse_record`) is a pure function over bytes; the read loop is thin.
"""

from __future__ import annotations

from array import array
from collections.abc import Iterator, Sequence
from typing import Protocol, overload

from airflow_s3stream.archive.zip.records import (
    CENTRAL,
    CENTRAL_SIG,
    FLAG_UTF8,
    LOCAL_HEADER_SIZE,
    CentralDirectoryLocation,
    ZipEntry,
    zip64_values,
)
from airflow_s3stream.errors import ArchiveError
from airflow_s3stream.units import KiB

__all__ = ["CHUNK", "CentralDirectory", "RawRecord", "parse_record"]

CHUNK = 1024 * KiB  # bytes of directory read per step; a single record is at most 46 + 3 * 65,535 bytes

RawRecord = tuple[int, int, int, int, int, int, bytes]  # flags, method, crc, csize, usize, offset, raw name


class _Readable(Protocol):
    def read(self, size: int = ..., /) -> bytes: ...

    def seek(self, offset: int, whence: int = ..., /) -> int: ...


def parse_record(buf: bytes | memoryview, pos: int, index: int, where: int) -> tuple[RawRecord, int] | None:
    """One central-directory record at ``buf[pos:]``, ZIP64 values applied; ``None`` if ``buf``
    ends before the record does (the caller reads more and calls again).

    :param index: the record's number, and ``where`` its offset in the archive (for messages).
    :raises ArchiveError: the bytes at ``pos`` are not a central-directory record.
    """
    if len(buf) - pos < CENTRAL.size:
        return None
    if bytes(buf[pos : pos + 4]) != CENTRAL_SIG:
        raise ArchiveError(f"central directory entry {index} at offset {where}: bad signature")
    (_, _vm, _sys, _ve, _se, flags, method, _t, _d, crc, csize, usize, nlen, xlen, clen, _disk, _ia, _ea,
     offset) = CENTRAL.unpack_from(buf, pos)  # fmt: skip
    end = pos + CENTRAL.size + nlen + xlen + clen
    if end > len(buf):
        return None
    start = pos + CENTRAL.size
    raw_name = bytes(buf[start : start + nlen])
    needs = [usize == 0xFFFFFFFF, csize == 0xFFFFFFFF, offset == 0xFFFFFFFF]
    if any(needs):
        try:
            values = iter(zip64_values(bytes(buf[start + nlen : start + nlen + xlen]), needs))
        except ArchiveError as exc:
            raise ArchiveError(f"central directory entry {index} at offset {where}: {exc}") from None
        usize = next(values) if needs[0] else usize
        csize = next(values) if needs[1] else csize
        offset = next(values) if needs[2] else offset
    return (flags, method, crc, csize, usize, offset, raw_name), end


class CentralDirectory(Sequence[ZipEntry]):
    """Every entry of a central directory, in directory order, in compact arrays.

    Indexing or iterating yields a fresh :class:`ZipEntry` per entry (header offsets already
    shifted by ``location.archive_start``); nothing per entry is kept as a Python object.
    """

    def __init__(self, location: CentralDirectoryLocation) -> None:
        self.location = location
        self.header_offset = array("Q")
        self.compressed_size = array("Q")
        self.file_size = array("Q")
        self.crc32 = array("I")
        self.method = array("H")
        self.flags = array("H")
        self._names = bytearray()
        self._name_end = array("Q")
        self._order: Sequence[int] | None = None

    # --- building -------------------------------------------------------------------------
    def append(self, record: RawRecord) -> None:
        """Add one parsed record (see :func:`parse_record`)."""
        flags, method, crc, csize, usize, offset, raw_name = record
        self._order = None
        offset += self.location.archive_start
        if offset + LOCAL_HEADER_SIZE + csize > self.location.offset:
            name = _decode(raw_name, flags)
            raise ArchiveError(
                f"member {name}: data at {offset} overlaps the central directory (truncated or corrupt archive)"
            )
        self.header_offset.append(offset)
        self.compressed_size.append(csize)
        self.file_size.append(usize)
        self.crc32.append(crc)
        self.method.append(method)
        self.flags.append(flags)
        self._names += raw_name
        self._name_end.append(len(self._names))

    @classmethod
    def read(cls, fp: _Readable, location: CentralDirectoryLocation, chunk: int = CHUNK) -> CentralDirectory:
        """Stream ``location.entries`` records from ``fp`` in chunks of ``chunk`` bytes.

        Memory is the arrays plus one chunk, whatever ``location.size`` claims.

        :raises ArchiveError: a bad record, a directory cut off, or an entry whose data would
            overlap the directory.
        """
        directory = cls(location)
        fp.seek(location.offset)
        left = location.size
        buf = b""
        pos = consumed = 0  # consumed: directory bytes before buf[0]
        for index in range(location.entries):
            while (parsed := parse_record(buf, pos, index, location.offset + consumed + pos)) is None:
                if left <= 0:
                    if len(buf) - pos < 4 or buf[pos : pos + 4] != CENTRAL_SIG:
                        raise ArchiveError("truncated ZIP: central directory cut off")
                    raise ArchiveError(f"central directory entry {index} runs past the end of the directory")
                piece = fp.read(min(chunk, left))
                if not piece:
                    raise ArchiveError("truncated ZIP: central directory cut off")
                left -= len(piece)
                consumed += pos
                buf = buf[pos:] + piece
                pos = 0
            record, pos = parsed
            directory.append(record)
        return directory

    # --- Sequence -------------------------------------------------------------------------
    def __len__(self) -> int:
        return len(self.header_offset)

    @overload
    def __getitem__(self, index: int) -> ZipEntry: ...

    @overload
    def __getitem__(self, index: slice) -> list[ZipEntry]: ...

    def __getitem__(self, index: int | slice) -> ZipEntry | list[ZipEntry]:
        if isinstance(index, slice):
            return [self[i] for i in range(*index.indices(len(self)))]
        if index < 0:
            index += len(self)
        raw = self.raw_name(index)
        name = _decode(raw, self.flags[index])
        return ZipEntry(
            name=name,
            method=self.method[index],
            flags=self.flags[index],
            crc32=self.crc32[index],
            compressed_size=self.compressed_size[index],
            file_size=self.file_size[index],
            header_offset=self.header_offset[index],
            is_dir=name.endswith("/"),
            raw_name=raw,
            index=index,
        )

    def __iter__(self) -> Iterator[ZipEntry]:
        for i in range(len(self)):
            yield self[i]

    # --- compact accessors ------------------------------------------------------------------
    def raw_name(self, index: int) -> bytes:
        start = self._name_end[index - 1] if index else 0
        return bytes(self._names[start : self._name_end[index]])

    def name_length(self, index: int) -> int:
        return self._name_end[index] - (self._name_end[index - 1] if index else 0)

    def name(self, index: int) -> str:
        return _decode(self.raw_name(index), self.flags[index])

    def names(self) -> Iterator[str]:
        """Every member name, in directory order."""
        for i in range(len(self)):
            yield self.name(i)

    def archive_order(self) -> Sequence[int]:
        """Entry indices sorted by header offset (a stable sort), so one forward pass reads them all.

        Most writers already store the directory in archive order: that costs one comparison pass
        and no memory. Otherwise one list of packed ints is sorted (about 44 bytes per entry,
        freed on return) into a 4-byte-per-entry index array, computed once.
        """
        if self._order is None:
            self._order = self._sorted_by_offset()
        return self._order

    def _sorted_by_offset(self) -> Sequence[int]:
        offsets = self.header_offset
        if all(offsets[i] <= offsets[i + 1] for i in range(len(offsets) - 1)):
            return range(len(offsets))
        n = len(offsets)
        packed = sorted(offsets[i] * n + i for i in range(n))
        order = array("I" if n < 2**32 else "Q", (p % n for p in packed))
        del packed
        return order


def _decode(raw: bytes, flags: int) -> str:
    if flags & FLAG_UTF8:
        return raw.decode("utf-8", errors="replace")
    return raw.decode("cp437")
