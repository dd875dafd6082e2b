"""Request bodies for parts: seekable, zero-copy readers over a file range or an in-memory buffer.

botocore (with awscrt installed it signs through CRT) copies a ``bytearray`` body into a
``BytesIO`` before signing, and joins a ``bytes`` body to the request headers before sending: both
double the memory of every part in flight. A seekable reader is used as it is: signing streams it
for the payload SHA-256 (over plain HTTP), and the HTTP connection streams it again.
:func:`part_body` wraps it in a C ``io.BufferedReader`` because the CRT signer reads 4 KiB at a
time, which would otherwise be one Python call per 4 KiB.
"""

from __future__ import annotations

import hashlib
import io
import os
from typing import Any

from airflow_s3stream.errors import SourceChangedError

__all__ = ["BODY_READ_BUFFER", "BufferBody", "FileRange", "hashing_raw", "part_body"]

BODY_READ_BUFFER = 1024 * 1024  # bytes read from a part body at a time, whoever asks for less


class _RangeBody(io.RawIOBase):
    """Common seek/tell/len of a read-only body of ``length`` bytes.

    :meth:`hash_md5` makes the body hash what it hands out: botocore reads a body once to sign it
    and once more to send it, seeking back to 0 in between. The first pass that reads every byte in
    order gives the MD5 (compared with the part's ETag afterwards); later passes hand out the same
    bytes and are not hashed again. So the MD5 costs no read of its own before the request.
    """

    def __init__(self, length: int) -> None:
        super().__init__()
        self._length = length
        self._pos = 0
        self._md5: Any = None
        self._hashed = 0  # bytes of the current pass hashed, in order; -1 after a jump

    def hash_md5(self) -> None:
        """From now on, hash every pass that starts at byte 0 (see :meth:`md5_hexdigest`)."""
        self._md5 = hashlib.md5(usedforsecurity=False)
        self._hashed = 0 if self._pos == 0 else -1

    def md5_hexdigest(self) -> str:
        """The MD5 of the first pass that read all ``length`` bytes in order, else ''."""
        if self._md5 is None or self._hashed != self._length:
            return ""
        return str(self._md5.hexdigest())

    def _hash(self, data: Any, at: int) -> None:
        if self._md5 is None or self._hashed < 0 or self._hashed == self._length:
            return
        if at != self._hashed:
            self._hashed = -1  # not a pass in order: this one says nothing
            return
        self._md5.update(data)
        self._hashed += len(data)

    def readable(self) -> bool:
        return True

    def seekable(self) -> bool:
        return True

    def tell(self) -> int:
        return self._pos

    def __len__(self) -> int:
        return self._length

    def seek(self, pos: int, whence: int = io.SEEK_SET) -> int:
        base = {io.SEEK_SET: 0, io.SEEK_CUR: self._pos, io.SEEK_END: self._length}[whence]
        self._pos = max(0, min(self._length, base + pos))
        if self._md5 is not None and self._pos == 0 and self._hashed != self._length:  # a new pass
            self._md5 = hashlib.md5(usedforsecurity=False)
            self._hashed = 0
        return self._pos

    def _span(self, size: int | None) -> int:
        remaining = self._length - self._pos
        return remaining if size is None or size < 0 else max(0, min(size, remaining))


class BufferBody(_RangeBody):
    """Seekable reader over a ``bytearray``/``bytes`` part buffer, without copying it."""

    def __init__(self, buffer: bytes | bytearray | memoryview) -> None:
        self._view = memoryview(buffer).cast("B")
        super().__init__(len(self._view))

    def read(self, size: int | None = -1) -> bytes:
        n = self._span(size)
        data = bytes(self._view[self._pos : self._pos + n])
        self._hash(data, self._pos)
        self._pos += n
        return data

    def readinto(self, buffer: Any) -> int:
        out = memoryview(buffer).cast("B")
        n = self._span(len(out))
        out[:n] = self._view[self._pos : self._pos + n]
        self._hash(out[:n], self._pos)
        self._pos += n
        return n


class FileRange(_RangeBody):
    """Seekable reader over ``length`` bytes at ``offset`` of an open file descriptor.

    Safe to use from several threads at once on the same descriptor (``os.pread`` keeps no
    shared file position). botocore seeks it back to 0 to retry a request. ``name`` (the path)
    names the file in errors. Reads are always whole: a file that ends before the range does
    raises :class:`SourceChangedError` instead of handing the request a short body.
    """

    def __init__(self, fd: int, offset: int, length: int, name: str = "") -> None:
        super().__init__(length)
        self._fd = fd
        self._offset = offset
        self._name = name or f"file descriptor {fd}"

    def _shrank(self, at: int) -> SourceChangedError:
        return SourceChangedError(f"source file {self._name} shrank while it was being uploaded (short read at {at})")

    def read(self, size: int | None = -1) -> bytes:
        n = self._span(size)
        if n == 0:
            return b""
        data = os.pread(self._fd, n, self._offset + self._pos)
        if len(data) < n:
            raise self._shrank(self._offset + self._pos + len(data))
        self._hash(data, self._pos)
        self._pos += n
        return data

    def readinto(self, buffer: Any) -> int:
        view = memoryview(buffer).cast("B")
        n = self._span(len(view))
        done = 0
        while done < n:  # a read may legitimately return less than asked (signals, some filesystems)
            got = os.preadv(self._fd, [view[done:n]], self._offset + self._pos + done)
            if got == 0:
                raise self._shrank(self._offset + self._pos + done)
            done += got
        self._hash(view[:n], self._pos)
        self._pos += n
        return n


def hashing_raw(body: Any) -> _RangeBody | None:
    """The range body under a :func:`part_body` reader (what can hash what is sent), or ``None``."""
    raw = getattr(body, "raw", body)
    return raw if isinstance(raw, _RangeBody) else None


def part_body(raw: _RangeBody) -> io.BufferedReader:
    """``raw`` behind a 1 MiB C read buffer: what UploadPart gets as its ``Body``."""
    return io.BufferedReader(raw, buffer_size=BODY_READ_BUFFER)
