"""Checksums of parts and of whole objects, computed locally the way S3 computes them.

CRC32C/CRC32/CRC64NVME come from ``awscrt`` (installed by ``botocore[crt]``), which also combines
two CRCs without re-reading data, so parts checksummed in parallel still give the full-object CRC.
With the ``MD5`` algorithm no CRC is computed, only the MD5 sent as ``Content-MD5``. S3 reports a
composite checksum as ``base64(CRC(part digest 1 || ... || part digest N))-N`` and a multipart ETag
as ``hex(MD5(part MD5 1 || ... || part MD5 N))-N``.
"""

from __future__ import annotations

import base64
import hashlib
import re
from collections.abc import Callable, Iterable
from dataclasses import dataclass

from awscrt import checksums as crt

from airflow_s3stream.s3.checksum_headers import content_md5_of_hex

__all__ = [
    "CHECKSUM_WIDTH",
    "PartDigest",
    "PartHasher",
    "combine_full_object",
    "composite_checksum",
    "content_md5",
    "crc_of",
    "decode_checksum",
    "encode_checksum",
    "looks_like_md5",
    "multipart_etag",
]

# algorithm -> width of the CRC in bytes
CHECKSUM_WIDTH = {"CRC32": 4, "CRC32C": 4, "CRC64NVME": 8}

_UPDATE: dict[str, Callable[[bytes | bytearray | memoryview, int], int]] = {
    "CRC32": crt.crc32,
    "CRC32C": crt.crc32c,
    "CRC64NVME": crt.crc64nvme,
}
_COMBINE: dict[str, Callable[[int, int, int], int]] = {
    "CRC32": crt.combine_crc32,
    "CRC32C": crt.combine_crc32c,
    "CRC64NVME": crt.combine_crc64nvme,
}
_MD5_ETAG = re.compile(r'^"?([0-9a-fA-F]{32})"?$')


def encode_checksum(algorithm: str, value: int) -> str:
    """The base64 text S3 uses for a CRC value (big-endian bytes)."""
    return base64.b64encode(value.to_bytes(CHECKSUM_WIDTH[algorithm], "big")).decode("ascii")


def decode_checksum(text: str) -> int:
    """Inverse of :func:`encode_checksum` (ignores a ``-N`` composite suffix)."""
    return int.from_bytes(base64.b64decode(text.split("-", 1)[0]), "big")


def crc_of(algorithm: str, data: bytes | bytearray | memoryview, previous: int = 0) -> int:
    """CRC of ``data`` with ``algorithm``, continuing from ``previous``."""
    return _UPDATE[algorithm](data, previous)


@dataclass(frozen=True)
class PartDigest:
    """What we computed locally for one part: its size, CRC (as int) and MD5 (hex, or '')."""

    size: int
    crc: int
    md5: str = ""


class PartHasher:
    """Incremental CRC (+ optional MD5) of one part's bytes; cheap to feed in large blocks.

    ``algorithm`` ``MD5`` computes the MD5 only (``crc`` stays 0), whatever ``md5`` says.
    """

    def __init__(self, algorithm: str, md5: bool) -> None:
        self.algorithm = algorithm
        self._update = _UPDATE.get(algorithm) if algorithm != "MD5" else None
        if self._update is None and algorithm != "MD5":
            raise KeyError(f"no checksum algorithm {algorithm!r}")
        self._crc = 0
        self._md5 = hashlib.md5(usedforsecurity=False) if md5 or algorithm == "MD5" else None
        self._size = 0

    def update(self, data: bytes | bytearray | memoryview) -> None:
        if self._update is not None:
            self._crc = self._update(data, self._crc)
        if self._md5 is not None:
            self._md5.update(data)
        self._size += len(data)

    def digest(self) -> PartDigest:
        return PartDigest(self._size, self._crc, self._md5.hexdigest() if self._md5 is not None else "")

    @classmethod
    def of(cls, algorithm: str, md5: bool, data: bytes | bytearray | memoryview) -> PartDigest:
        hasher = cls(algorithm, md5)
        hasher.update(data)
        return hasher.digest()


def combine_full_object(algorithm: str, parts: Iterable[tuple[int, int]]) -> int:
    """Full-object CRC from ``(crc, size)`` of consecutive parts, without the data."""
    combine = _COMBINE[algorithm]
    total = 0
    for crc, size in parts:
        total = combine(total, crc, size)
    return total


def composite_checksum(algorithm: str, part_crcs: list[int]) -> str:
    """S3's composite checksum text, ``base64(CRC(digest 1 || ... || digest N))-N``."""
    width = CHECKSUM_WIDTH[algorithm]
    joined = b"".join(crc.to_bytes(width, "big") for crc in part_crcs)
    return f"{encode_checksum(algorithm, _UPDATE[algorithm](joined, 0))}-{len(part_crcs)}"


content_md5 = content_md5_of_hex  # the Content-MD5 of an MD5 given in hex (encoded in checksum_headers)


def looks_like_md5(etag: str) -> bool:
    """True when ``etag`` is a plain MD5 (32 hex digits, quoted or not), as S3 returns for parts."""
    return bool(_MD5_ETAG.match(etag or ""))


def multipart_etag(part_md5s: list[str]) -> str:
    """The ETag S3 gives a multipart object without SSE-KMS/SSE-C: ``md5(md5s)-N`` (unquoted)."""
    joined = b"".join(bytes.fromhex(m) for m in part_md5s)
    return f"{hashlib.md5(joined, usedforsecurity=False).hexdigest()}-{len(part_md5s)}"
