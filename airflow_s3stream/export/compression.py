"""Streaming whole-object compression for CSV and JSON Lines: none, gzip or zstd.

A :class:`StreamCompressor` turns a sequence of byte chunks into the bytes of one complete
compressed stream (``compress`` per chunk, ``flush`` once at the end), holding only the codec's
window in memory. gzip output is a standard single-member gzip file (zlib with ``wbits=31``);
zstd output is one zstd frame with the content checksum on, so ``zstd -d`` verifies it.
"""

from __future__ import annotations

import zlib
from typing import Any, Protocol

__all__ = ["StreamCompressor", "open_compressor", "zstd_parameters"]

ZSTD_MIN_WINDOW_LOG = 17  # 128 KiB: below this a frame compresses poorly

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
    def __init__(self, level: int, max_memory: int | None) -> None:
        import zstandard

        params = zstd_parameters(level, max_memory)
        self._obj = zstandard.ZstdCompressor(compression_params=params).compressobj()

    def compress(self, data: bytes | bytearray) -> bytes:
        return bytes(self._obj.compress(data))

    def flush(self) -> bytes:
        return bytes(self._obj.flush())


def zstd_parameters(level: int, max_memory: int | None) -> Any:
    """zstd parameters for ``level`` whose compression state fits in ``max_memory`` bytes (``None``:
    the level's own). A high level's window, hash and chain tables are shrunk together until the
    state fits (a smaller window, a little less ratio); the level's search strategy is kept."""
    import zstandard

    base = zstandard.ZstdCompressionParameters.from_level(level, write_checksum=True)
    if max_memory is None or base.estimated_compression_context_size() <= max_memory:
        return base
    for window_log in range(base.window_log - 1, ZSTD_MIN_WINDOW_LOG - 1, -1):
        params = zstandard.ZstdCompressionParameters.from_level(
            level,
            write_checksum=True,
            window_log=window_log,
            chain_log=min(base.chain_log, window_log),
            hash_log=min(base.hash_log, window_log - 1),
        )
        if params.estimated_compression_context_size() <= max_memory:
            return params
    return params


def open_compressor(compression: str | None, level: int | None, max_memory: int | None = None) -> StreamCompressor:
    """A fresh compressor for one object (``compression`` is None, ``gzip`` or ``zstd``) whose state
    stays within ``max_memory`` bytes (gzip's is at most 256 KiB whatever the level)."""
    if compression is None:
        return _Identity()
    if compression == "gzip":
        return zlib.compressobj(level if level is not None else 6, zlib.DEFLATED, _GZIP_WBITS)
    if compression == "zstd":
        return _Zstd(level if level is not None else 3, max_memory)
    raise ValueError(f"unknown compression {compression!r}")
