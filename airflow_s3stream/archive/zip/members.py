"""Streaming one ZIP member: local-header cross-check, decompression, CRC-32 and size checks.

:func:`iter_member_data` seeks a file object (normally a :class:`~airflow_s3stream.s3.reader.RangedReader`)
to a member's local header, checks it against the central-directory entry, and yields the
uncompressed bytes chunk by chunk. CRC-32 and the uncompressed size are checked as the bytes
flow; a mismatch raises :class:`MemberError` after the last chunk. Nothing is held beyond one
chunk, so a member of any size streams in bounded memory. A caller that computes the CRC-32 on
another thread passes ``check_crc=False`` and checks it with :func:`crc_mismatch`.
"""

from __future__ import annotations

import bz2
import lzma
import struct
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any, Protocol

from airflow_s3stream.archive.zip.codec import INFLATE_ERRORS, crc32, raw_inflater
from airflow_s3stream.archive.zip.records import LOCAL_HEADER_SIZE, LOCAL_SIG, ZipEntry, parse_local_header
from airflow_s3stream.errors import ArchiveError
from airflow_s3stream.units import KiB, MiB, TiB

__all__ = [
    "DEFAULT_MAX_RATIO",
    "METHOD_NAMES",
    "READ_CHUNK",
    "REACHABLE_RATIOS",
    "Expansion",
    "DescriptorMismatchError",
    "MemberError",
    "SeekableFile",
    "ZipLimits",
    "crc_mismatch",
    "iter_member_data",
]


ZIP64_MARKER = 0xFFFFFFFF  # a 32-bit size field whose value is in the ZIP64 extra field
# Compressed bytes read per step, and at most as many uncompressed bytes per decompress() call:
# pieces this small come from the heap and are reused, where a MiB would be a fresh mapping,
# page-faulted on every call, under release_large_buffers() (budget.py).
READ_CHUNK = 64 * KiB
OUT_CHUNK = 64 * KiB

METHOD_STORED, METHOD_DEFLATE, METHOD_BZIP2, METHOD_LZMA = 0, 8, 12, 14  # APPNOTE 4.4.5
METHOD_NAMES = {METHOD_STORED: "stored", METHOD_DEFLATE: "deflate", METHOD_BZIP2: "bzip2", METHOD_LZMA: "lzma"}


DEFAULT_MAX_RATIO = 200.0  # uncompressed:compressed; deflate alone reaches ~1,030:1 on zeros
# Ratios a method can reach (measured on 200 MiB of zeros, the best case for every method):
# deflate 1,029:1 (its ceiling is ~1,032:1), lzma 7,071:1, bzip2 1,184,832:1.
REACHABLE_RATIOS = {"deflate": 1032, "lzma": 7071, "bzip2": 1184832}


@dataclass(frozen=True)
class ZipLimits:
    """Zip-bomb guards.

    :param max_ratio: largest expansion ratio accepted, uncompressed bytes produced divided by
        compressed bytes read so far. Checked for each member once it has produced more than
        ``ratio_floor`` bytes, and for the whole pass (all members together) once that has.
        The default, 200:1, is far above ordinary data (text 3-10:1, logs up to ~50:1) and far
        below what every method reaches on a bomb (deflate ~1,032:1, lzma ~7,000:1, bzip2
        ~1,180,000:1), so a deflate bomb trips it too. Raise it for archives of zero-filled images.
    :param ratio_floor: below this many uncompressed bytes the ratio is not checked (bytes).
    :param max_total_uncompressed: bytes all members together may expand to.
    """

    max_ratio: float = DEFAULT_MAX_RATIO
    ratio_floor: int = 1 * MiB
    max_total_uncompressed: int = 16 * TiB

    def __post_init__(self) -> None:
        if self.max_ratio <= 1:
            raise ValueError(f"max_ratio must exceed 1, got {self.max_ratio}")
        if self.max_total_uncompressed <= 0:
            raise ValueError(f"max_total_uncompressed must be positive, got {self.max_total_uncompressed}")
        if self.ratio_floor < 0:
            raise ValueError(f"ratio_floor must not be negative, got {self.ratio_floor}")


@dataclass
class Expansion:
    """Running totals of one pass over many members: the archive-wide guards' state.

    :attr:`tripped` is set once a limit of the whole pass fired; nothing more should be expanded.
    """

    left: int  # uncompressed bytes still allowed
    produced: int = 0
    consumed: int = 0
    tripped: bool = False

    @classmethod
    def of(cls, limits: ZipLimits) -> Expansion:
        return cls(limits.max_total_uncompressed)


class SeekableFile(Protocol):
    """What the ZIP layer needs of a file: ``read`` and ``seek`` (a RangedReader, a local file)."""

    def read(self, size: int = ..., /) -> bytes: ...

    def seek(self, offset: int, whence: int = ..., /) -> int: ...


class MemberError(ArchiveError):
    """One member cannot be verified; ``member`` names it and the message says why."""

    def __init__(self, member: str, reason: str) -> None:
        super().__init__(f"member {member}: {reason}")
        self.member, self.reason = member, reason


class DescriptorMismatchError(MemberError):
    """The data descriptor after a member's data is missing or disagrees with the central directory."""


def crc_mismatch(entry: ZipEntry, crc: int) -> MemberError | None:
    """The error for a member whose data has CRC-32 ``crc``, or None when it matches the directory."""
    if crc == entry.crc32:
        return None
    return MemberError(entry.name, f"CRC-32 mismatch (expected {entry.crc32:08x}, got {crc:08x})")


class _Decompressor(Protocol):
    def decompress(self, data: bytes, max_length: int = ...) -> bytes: ...


class _Stored:
    def decompress(self, data: bytes, max_length: int = -1) -> bytes:
        return data


class _LzmaZip:
    """LZMA as ZIP stores it (APPNOTE 5.8.8): a 4-byte version/size header, then raw LZMA1."""

    def __init__(self) -> None:
        self._head = b""
        self._inner: Any = None

    def decompress(self, data: bytes, max_length: int = -1) -> bytes:
        if self._inner is None:
            self._head += data
            if len(self._head) < 4:
                return b""
            (psize,) = struct.unpack_from("<H", self._head, 2)
            if len(self._head) < 4 + psize:
                return b""
            props = self._head[4 : 4 + psize]
            filt = lzma._decode_filter_properties(lzma.FILTER_LZMA1, props)  # type: ignore[attr-defined]
            self._inner = lzma.LZMADecompressor(lzma.FORMAT_RAW, filters=[filt])
            data, self._head = self._head[4 + psize :], b""
        out: bytes = self._inner.decompress(data, max_length)
        return out

    @property
    def needs_input(self) -> bool:
        return self._inner is None or bool(self._inner.needs_input)

    @property
    def eof(self) -> bool:
        return self._inner is not None and bool(self._inner.eof)


def _decompressor(method: int) -> Any:
    if method == METHOD_STORED:
        return _Stored()
    if method == METHOD_DEFLATE:
        return raw_inflater()
    if method == METHOD_BZIP2:
        return bz2.BZ2Decompressor()
    if method == METHOD_LZMA:
        return _LzmaZip()
    return None


def _check_local_header(fp: SeekableFile, entry: ZipEntry) -> int:
    """Read and cross-check the local header; returns the offset of the member's data."""
    fp.seek(entry.header_offset)
    head = fp.read(LOCAL_HEADER_SIZE)
    if len(head) < LOCAL_HEADER_SIZE or head[:4] != LOCAL_SIG:
        raise MemberError(entry.name, f"no local file header at offset {entry.header_offset} (truncated or corrupt)")
    local = parse_local_header(head, f"member {entry.name}")
    rest = fp.read(local.length - LOCAL_HEADER_SIZE)
    if len(rest) != local.length - LOCAL_HEADER_SIZE:
        raise MemberError(entry.name, "local header runs past the end of the archive (truncated)")
    local = parse_local_header(head + rest, f"member {entry.name}")
    if local.raw_name != entry.raw_name:
        raise MemberError(entry.name, f"local header names {local.raw_name!r}, central directory {entry.raw_name!r}")
    if local.method != entry.method:
        raise MemberError(entry.name, f"local header method {local.method} differs from central directory")
    if not (local.flags & 0x0008):  # without a data descriptor the local header carries the real values
        if local.crc32 != entry.crc32:
            raise MemberError(
                entry.name, f"local header CRC-32 {local.crc32:08x} differs from central directory {entry.crc32:08x}"
            )
        if local.compressed_size not in (entry.compressed_size, ZIP64_MARKER):
            raise MemberError(
                entry.name,
                f"local header compressed size {local.compressed_size} differs from central directory "
                f"{entry.compressed_size}",
            )
    return entry.header_offset + local.length


def _check_data_descriptor(fp: SeekableFile, entry: ZipEntry) -> None:
    """Compare the data descriptor after the data with the central directory (APPNOTE 4.3.9)."""
    raw = fp.read(24)
    if raw[:4] == b"PK\x07\x08":
        raw = raw[4:]
    if len(raw) < 4:
        raise DescriptorMismatchError(entry.name, "data descriptor missing (truncated)")
    (crc,) = struct.unpack_from("<L", raw)
    if crc != entry.crc32:
        raise DescriptorMismatchError(entry.name, f"data descriptor CRC-32 {crc:08x} differs from central directory")


def iter_member_data(
    fp: SeekableFile,
    entry: ZipEntry,
    limits: ZipLimits | None = None,
    expansion: Expansion | None = None,
    *,
    check_crc: bool = True,
) -> Iterator[bytes]:
    """Yield the uncompressed bytes of ``entry`` from ``fp`` (pieces of at most 64 KiB), checking
    them as they flow.

    :param expansion: the running totals of the whole pass (updated in place); the archive-wide
        guards (:attr:`ZipLimits.max_total_uncompressed`, the total ratio) apply only with it.
    :param check_crc: ``False`` leaves the CRC-32 of the yielded bytes to the caller
        (:func:`crc_mismatch`); the data descriptor is still compared with the directory, and a
        mismatch there raises :class:`DescriptorMismatchError`, which a caller should report after a
        CRC-32 mismatch of the same member, as this function would.
    :raises MemberError: encrypted or unsupported method (before any byte), local header
        mismatch, corrupt compressed data, zip-bomb limit, CRC-32 or size mismatch.
    """
    limits = limits or ZipLimits()
    if entry.encrypted:
        raise MemberError(entry.name, "encrypted members cannot be verified")
    decomp = _decompressor(entry.method)
    if decomp is None:
        raise MemberError(entry.name, f"unsupported compression method {entry.method}")
    data_start = _check_local_header(fp, entry)
    fp.seek(data_start)
    left = entry.compressed_size
    crc = produced = consumed = 0
    while left > 0:
        piece = fp.read(min(READ_CHUNK, left))
        if not piece:
            raise MemberError(entry.name, f"data cut off after {consumed} of {entry.compressed_size} bytes (truncated)")
        left -= len(piece)
        consumed += len(piece)
        if expansion is not None:
            expansion.consumed += len(piece)
        for out in _decompress_steps(decomp, piece, entry, final=left == 0):
            produced += len(out)
            if produced > entry.file_size:
                raise MemberError(entry.name, f"expands past its declared size of {entry.file_size} bytes")
            if produced > limits.ratio_floor and produced > limits.max_ratio * consumed:
                raise MemberError(
                    entry.name,
                    f"expansion ratio {produced / consumed:.0f}:1 exceeds max_ratio {limits.max_ratio:g}:1 "
                    "(zip bomb guard)",
                )
            if expansion is not None:
                _charge(expansion, len(out), entry, limits)
            if check_crc:
                crc = crc32(out, crc)
            yield out
    if produced != entry.file_size:
        raise MemberError(entry.name, f"size mismatch (expected {entry.file_size} bytes, got {produced})")
    if check_crc and (mismatch := crc_mismatch(entry, crc)) is not None:
        raise mismatch
    if entry.has_data_descriptor:
        _check_data_descriptor(fp, entry)


def _charge(expansion: Expansion, n: int, entry: ZipEntry, limits: ZipLimits) -> None:
    """Count ``n`` more uncompressed bytes against the whole pass; raise when a pass-wide guard fires."""
    expansion.left -= n
    expansion.produced += n
    if expansion.left < 0:
        expansion.tripped = True
        raise MemberError(
            entry.name,
            f"total uncompressed size exceeds max_total_uncompressed {limits.max_total_uncompressed} bytes "
            "(zip bomb guard)",
        )
    if expansion.produced > limits.ratio_floor and expansion.produced > limits.max_ratio * expansion.consumed:
        expansion.tripped = True
        raise MemberError(
            entry.name,
            f"archive-wide expansion ratio {expansion.produced / max(1, expansion.consumed):.0f}:1 exceeds "
            f"max_ratio {limits.max_ratio:g}:1 (zip bomb guard)",
        )


# what a damaged compressed stream raises, whichever method and library decodes it
_DECODE_ERRORS: tuple[type[Exception], ...] = (*INFLATE_ERRORS, OSError, EOFError, lzma.LZMAError, ValueError)


def _decompress_steps(decomp: Any, data: bytes, entry: ZipEntry, final: bool) -> Iterator[bytes]:
    """Feed ``data`` to ``decomp``, yielding output in pieces of at most OUT_CHUNK bytes."""
    try:
        if isinstance(decomp, _Stored):
            yield data
            return
        if hasattr(decomp, "unconsumed_tail"):  # zlib: leftover input waits in unconsumed_tail
            out = decomp.decompress(data, OUT_CHUNK)
            yield out
            while decomp.unconsumed_tail and not decomp.eof:
                tail = decomp.unconsumed_tail
                out = decomp.decompress(tail, OUT_CHUNK)
                if not out and decomp.unconsumed_tail == tail:  # a damaged stream that cannot go on
                    raise MemberError(entry.name, "corrupt compressed data: the deflate stream stopped making progress")
                yield out
            if final:
                yield decomp.flush()
            return
        # bz2 / lzma: leftover output waits inside until needs_input
        yield decomp.decompress(data, OUT_CHUNK)
        while not decomp.needs_input and not getattr(decomp, "eof", False):
            yield decomp.decompress(b"", OUT_CHUNK)
    except _DECODE_ERRORS as exc:
        raise MemberError(entry.name, f"corrupt compressed data: {exc}") from exc
