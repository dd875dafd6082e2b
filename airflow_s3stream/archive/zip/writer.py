"""Writing a ZIP64 archive as one forward stream, for a sink that cannot seek (a multipart upload).

Every member is written as local header, data, data descriptor (APPNOTE 4.3.9): sizes and CRC-32
are not known before the data has passed, and the sink cannot go back to patch the header. Every
member carries a ZIP64 extra field and 8-byte descriptor sizes, so members and archives past 4 GiB
need nothing special. Members are deflated or stored; a stored member with a data descriptor is
valid ZIP that every central-directory reader (zipfile, Info-ZIP, 7-Zip, this package's verifier)
reads; only a reader that streams local headers without the directory could not find its end.

The central directory is kept in compact arrays (about 40 bytes per member plus its name) and
written at the end in chunks, so memory does not grow with member sizes and little with their count.

    with ZipStreamWriter(sink) as zw:
        zw.add("bag/data/a.txt", iter_chunks(), observe=hasher.update)
"""

from __future__ import annotations

import struct
import time
import zlib
from array import array
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from types import TracebackType
from typing import Protocol

from airflow_s3stream.archive.zip.codec import crc32
from airflow_s3stream.archive.zip.records import CENTRAL_SIG, DESCRIPTOR_SIG, LOCAL_SIG
from airflow_s3stream.errors import ArchiveError

__all__ = ["METHOD_DEFLATE", "METHOD_STORED", "MemberWritten", "ZipStreamWriter"]

METHOD_STORED, METHOD_DEFLATE = 0, 8  # APPNOTE 4.4.5
VERSION = 45  # 4.5: ZIP64 (APPNOTE 4.4.3.2)
MADE_BY = (3 << 8) | VERSION  # Unix, so the external attributes carry permissions
FLAGS = 0x0008 | 0x0800  # data descriptor follows; names are UTF-8
FILE_MODE = 0o100644 << 16  # regular file, rw-r--r--
ZIP64_ID = 0x0001
U32 = 0xFFFFFFFF
U16 = 0xFFFF
MAX_NAME = 0xFFFF  # the name length is a 16-bit field
FLUSH_AT = 256 * 1024  # bytes of directory records gathered before one write to the sink

_LOCAL = struct.Struct("<4s5H3L2H")  # 30 bytes
_ZIP64_LOCAL = struct.Struct("<2H2Q")  # sizes 0 in the local header: the descriptor has them
_DESCRIPTOR = struct.Struct("<4sL2Q")  # signature, CRC-32, compressed, uncompressed (8 bytes each)
_CENTRAL = struct.Struct("<4s6H3L5H2L")  # 46 bytes
_ZIP64_CENTRAL = struct.Struct("<2H3Q")  # uncompressed, compressed, offset
_ZIP64_EOCD = struct.Struct("<4sQ2H2L4Q")
_ZIP64_LOCATOR = struct.Struct("<4sLQL")
_EOCD = struct.Struct("<4s4H2LH")


class Sink(Protocol):
    def write(self, data: bytes, /) -> int: ...


@dataclass(frozen=True)
class MemberWritten:
    """What one member became: its name, sizes and CRC-32."""

    name: str
    size: int  # uncompressed bytes
    compressed_size: int
    crc32: int


def _dos_time(when: float) -> tuple[int, int]:
    t = time.localtime(when)
    year = max(1980, t.tm_year)
    return (t.tm_hour << 11) | (t.tm_min << 5) | (t.tm_sec // 2), ((year - 1980) << 9) | (t.tm_mon << 5) | t.tm_mday


class ZipStreamWriter:
    """A ZIP64 archive written forward into ``sink`` (anything with ``write``).

    :param method: default method, :data:`METHOD_DEFLATE` or :data:`METHOD_STORED`.
    :param level: zlib level for deflate (1 fastest .. 9 smallest).
    :param modified: member timestamp (seconds since the epoch); default: now.
    """

    def __init__(self, sink: Sink, method: int = METHOD_DEFLATE, level: int = 6, modified: float | None = None) -> None:
        if method not in (METHOD_STORED, METHOD_DEFLATE):
            raise ValueError(f"method must be {METHOD_STORED} (stored) or {METHOD_DEFLATE} (deflate), got {method}")
        self._sink, self.method, self.level = sink, method, level
        self._time, self._date = _dos_time(time.time() if modified is None else modified)
        self.offset = 0  # bytes written so far
        self._crc = array("I")
        self._csize = array("Q")
        self._usize = array("Q")
        self._offsets = array("Q")
        self._methods = array("H")
        self._names = bytearray()
        self._name_end = array("Q")
        self.closed = False

    def __len__(self) -> int:
        return len(self._offsets)

    def _write(self, data: bytes) -> None:
        if data:
            self._sink.write(data)
            self.offset += len(data)

    def add(
        self,
        name: str,
        chunks: Iterable[bytes],
        *,
        method: int | None = None,
        observe: Callable[[bytes], None] | None = None,
    ) -> MemberWritten:
        """Stream one member from ``chunks``; ``observe`` sees every uncompressed chunk (for hashing).

        :raises ArchiveError: a name longer than 65,535 UTF-8 bytes, or the writer is closed.
        """
        if self.closed:
            raise ArchiveError(f"member {name}: the archive is already closed")
        raw = name.encode("utf-8")
        if len(raw) > MAX_NAME:
            raise ArchiveError(f"member {name[:80]}...: name is {len(raw)} bytes, over ZIP's 65,535")
        method = self.method if method is None else method
        start = self.offset
        extra = _ZIP64_LOCAL.pack(ZIP64_ID, 16, 0, 0)
        stamp = (self._time, self._date)
        header = _LOCAL.pack(LOCAL_SIG, VERSION, FLAGS, method, *stamp, 0, U32, U32, len(raw), len(extra))
        self._write(header + raw + extra)
        compressor = zlib.compressobj(self.level, zlib.DEFLATED, -15) if method == METHOD_DEFLATE else None
        crc = size = 0
        data_start = self.offset
        for chunk in chunks:
            if not chunk:
                continue
            crc = crc32(chunk, crc)
            size += len(chunk)
            if observe is not None:
                observe(chunk)
            self._write(compressor.compress(chunk) if compressor is not None else chunk)
        if compressor is not None:
            self._write(compressor.flush())
        csize = self.offset - data_start
        self._write(_DESCRIPTOR.pack(DESCRIPTOR_SIG, crc, csize, size))
        self._crc.append(crc)
        self._csize.append(csize)
        self._usize.append(size)
        self._offsets.append(start)
        self._methods.append(method)
        self._names += raw
        self._name_end.append(len(self._names))
        return MemberWritten(name, size, csize, crc)

    def add_bytes(self, name: str, data: bytes, *, method: int | None = None) -> MemberWritten:
        """One member from bytes in memory (tag files)."""
        return self.add(name, [data], method=method)

    def close(self) -> int:
        """Write the central directory and the end records; returns the archive's size in bytes."""
        if self.closed:
            return self.offset
        self.closed = True
        cd_start = self.offset
        pending: list[bytes] = []
        gathered = 0
        for i in range(len(self._offsets)):
            name = bytes(self._names[self._name_end[i - 1] if i else 0 : self._name_end[i]])
            extra = _ZIP64_CENTRAL.pack(ZIP64_ID, 24, self._usize[i], self._csize[i], self._offsets[i])
            record = _CENTRAL.pack(
                CENTRAL_SIG, MADE_BY, VERSION, FLAGS, self._methods[i], self._time, self._date,
                self._crc[i], U32, U32, len(name), len(extra), 0, 0, 0,
                FILE_MODE, U32,
            )  # fmt: skip
            pending.append(record + name + extra)
            gathered += len(pending[-1])
            if gathered >= FLUSH_AT:
                self._write(b"".join(pending))
                pending, gathered = [], 0
        self._write(b"".join(pending))
        cd_size = self.offset - cd_start
        count = len(self._offsets)
        eocd64_at = self.offset
        self._write(_ZIP64_EOCD.pack(b"PK\x06\x06", 44, MADE_BY, VERSION, 0, 0, count, count, cd_size, cd_start))
        self._write(_ZIP64_LOCATOR.pack(b"PK\x06\x07", 0, eocd64_at, 1))
        self._write(
            _EOCD.pack(b"PK\x05\x06", 0, 0, min(count, U16), min(count, U16), min(cd_size, U32), min(cd_start, U32), 0)
        )
        return self.offset

    def __enter__(self) -> ZipStreamWriter:
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        if exc_type is None:
            self.close()
