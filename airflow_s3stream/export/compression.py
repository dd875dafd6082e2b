"""Streaming whole-object compression for CSV and JSON Lines: none, gzip or zstd.

A :class:`StreamCompressor` turns a sequence of byte chunks into the bytes of one complete
compressed stream (``compress`` per chunk, ``flush`` once at the end), holding only the codec's
window in memory. gzip output is a standard single-member gzip file (zlib with ``wbits=31``);
zstd output is one zstd frame with the content checksum on, so ``zstd -d`` verifies it.
"""

from __future__ import annotations

import zlib
from typing import Protocol

__all__ = ["StreamCompressor", "open_compressor"]

_GZIP_WBITS = 31  # 16 + 15: zlib writes a gzip header and trailer (see zlib.compressobj)


class StreamCompressor(Protocol):
    """Bytes in, compressed bytes out; ``flush`` ends the stream."""

    def compress(self, data: bytes | bytearray) -> bytes: ...

    def flush(self) -> bytes: ...


class _Identity:
    def compress(self, data: bytes | bytearray) -> bytes:
        return bytes(data)  # a copy: the caller reuses its buffer

    def flush(self) -> bytes:
        return b""


class _Zstd:
    def __init__(self, level: int) -> None:
        import zstandard

        self._obj = zstandard.ZstdCompressor(level=level, write_checksum=True).compressobj()

    def compress(self, data: bytes | bytearray) -> bytes:
        return bytes(self._obj.compress(data))

    def flush(self) -> bytes:
        return bytes(self._obj.flush())


def open_compressor(compression: str | None, level: int | None) -> StreamCompressor:
    """A fresh compressor for one object (``compression`` is None, ``gzip`` or ``zstd``)."""
    if compression is None:
        return _Identity()
    if compression == "gzip":
        return zlib.compressobj(level if level is not None else 6, zlib.DEFLATED, _GZIP_WBITS)
    if compression == "zstd":
        return _Zstd(level if level is not None else 3)
    raise ValueError(f"unknown compression {compression!r}")
