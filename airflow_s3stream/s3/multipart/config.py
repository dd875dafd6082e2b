"""The multipart engine's one configuration object, its defaults, and part sizing.

All knobs of the multipart engine live in :class:`MultipartConfig` (like s3transfer's
``TransferConfig``). :class:`PartSizer` owns the 10,000-part arithmetic: for a known size it picks
one part size that fits; for a stream of unknown size it grows the part size as the upload goes on,
so the part limit is never reached. :func:`plan_parts` turns a known size into byte ranges. S3's
limits themselves are in :mod:`airflow_s3stream.s3.limits`.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import NamedTuple

from airflow_s3stream.errors import ConfigurationError
from airflow_s3stream.s3.limits import S3_MAX_PART_SIZE, S3_MAX_PARTS, S3_MIN_PART_SIZE
from airflow_s3stream.s3.retry import RetryPolicy
from airflow_s3stream.units import GiB, KiB, MiB

__all__ = [
    "AUTO_PREFERRED_ALGORITHM",
    "CHECKSUM_ALGORITHMS",
    "CHECKSUM_AUTO",
    "CHECKSUM_MD5",
    "DEFAULT_MAX_CONCURRENCY",
    "DEFAULT_PART_SIZE",
    "GiB",
    "KiB",
    "MiB",
    "MultipartConfig",
    "PartRange",
    "PartSizer",
    "plan_parts",
    "validate_max_concurrency",
    "validate_part_size",
]


DEFAULT_PART_SIZE = 16 * MiB  # bytes; 1 GB = 64 parts; memory ~ (max_concurrency + 1) x part size
DEFAULT_MAX_CONCURRENCY = 8  # parts in flight at once
MAX_CONCURRENCY = 64  # parts in flight at most (each a thread and a pooled connection)
GROWTH_TIER_PARTS = 1_000  # unknown size: the part size doubles after every 1,000 parts

# name -> (checksum types S3 accepts for multipart uploads, default type)
CHECKSUM_ALGORITHMS: dict[str, tuple[frozenset[str], str]] = {
    "CRC32C": (frozenset({"COMPOSITE", "FULL_OBJECT"}), "COMPOSITE"),
    "CRC32": (frozenset({"COMPOSITE", "FULL_OBJECT"}), "COMPOSITE"),
    "CRC64NVME": (frozenset({"FULL_OBJECT"}), "FULL_OBJECT"),
    # Content-MD5 per request; the object's multipart ETag md5(part MD5s)-N is composite by nature.
    "MD5": (frozenset({"COMPOSITE"}), "COMPOSITE"),
}
CHECKSUM_MD5 = "MD5"  # Content-MD5 only: what every S3-compatible store accepts
CHECKSUM_AUTO = "auto"  # AUTO_PREFERRED_ALGORITHM where the store checks it, else MD5 (s3/store_checks.py)
AUTO_PREFERRED_ALGORITHM = "CRC32C"  # what "auto" sends first (S3's recommended additional checksum)


def validate_part_size(part_size: int, name: str = "part_size") -> int:
    """Return ``part_size`` if S3 accepts it (5 MiB..5 GiB), else raise :class:`ConfigurationError`."""
    if isinstance(part_size, bool) or not isinstance(part_size, int):
        raise ConfigurationError(f"{name} must be an integer number of bytes, got {part_size!r}")
    if not S3_MIN_PART_SIZE <= part_size <= S3_MAX_PART_SIZE:
        raise ConfigurationError(
            f"{name}={part_size} bytes is outside S3's limits: at least {S3_MIN_PART_SIZE} (5 MiB) "
            f"and at most {S3_MAX_PART_SIZE} (5 GiB)"
        )
    return part_size


def validate_max_concurrency(max_concurrency: int) -> int:
    """Return ``max_concurrency`` if it is 1..:data:`MAX_CONCURRENCY`, else raise :class:`ConfigurationError`."""
    if isinstance(max_concurrency, bool) or not isinstance(max_concurrency, int):
        raise ConfigurationError(f"max_concurrency must be an integer, got {max_concurrency!r}")
    if not 1 <= max_concurrency <= MAX_CONCURRENCY:
        raise ConfigurationError(f"max_concurrency must be between 1 and {MAX_CONCURRENCY}, got {max_concurrency}")
    return max_concurrency


@dataclass(frozen=True)
class MultipartConfig:
    """Every knob of the multipart engine, with its default.

    :param part_size: bytes per part; ``None`` picks :data:`DEFAULT_PART_SIZE`, raised as needed to
        stay within 10,000 parts. An explicit value must be 5 MiB..5 GiB (checked here).
    :param max_concurrency: parts uploading at once. Memory is about
        ``(max_concurrency + 1) x part_size`` for a streamed writer.
    :param checksum_algorithm: ``auto`` (default), ``CRC32C``, ``CRC32``, ``CRC64NVME`` or ``MD5``.
        A CRC is computed locally, sent with every part (``x-amz-checksum-*``) and checked by S3.
        ``MD5`` sends a ``Content-MD5`` per request and no ``x-amz-checksum-*`` header at all (every
        S3-compatible store checks it); each part's ETag and the object's multipart ETag are then
        compared with the local MD5s. ``auto`` sends CRC32C where the store checks it and MD5 where
        it ignores additional checksums (Ceph RGW 16, moto) or refuses them (Backblaze B2, some
        MinIO / RGW / OBS versions), as one probe per endpoint finds at the first upload
        (:mod:`airflow_s3stream.s3.store_checks`); a refusal met later still switches that upload
        to MD5 once. Explicit algorithms are never changed.
    :param checksum_type: ``COMPOSITE`` (checksum of part checksums, default for CRC32/CRC32C/MD5) or
        ``FULL_OBJECT`` (the only type for CRC64NVME); ``None`` picks the algorithm's default. With
        ``auto`` it applies while CRC32C is used.
    :param verify_part_etag: compute each part's MD5 and compare it with the ETag the server
        returns when that ETag looks like an MD5. This is what catches bytes corrupted in transit on
        servers that do not check the additional checksum (moto, some S3-compatible stores); real S3
        refuses a wrong CRC itself. Costs about 1.7 s of CPU per GB. ``"auto"`` (default): on,
        until the server echoes our checksum in an UploadPart answer (as S3 does when it has
        checked it), then off for the rest of the upload. ``True``/``False``: always / never.
    :param verify_after_complete: HeadObject (``ChecksumMode=ENABLED``) after completion and compare
        size, checksum and multipart ETag with the local values (see :mod:`.verify`).
    :param retry: per-request retry policy (throttling, 5xx, resets, timeouts).
    :param progress_interval: seconds between progress log lines.
    """

    part_size: int | None = None
    max_concurrency: int = DEFAULT_MAX_CONCURRENCY
    checksum_algorithm: str = CHECKSUM_AUTO
    checksum_type: str | None = None
    verify_part_etag: bool | str = "auto"
    verify_after_complete: bool = True
    retry: RetryPolicy = field(default_factory=RetryPolicy)
    progress_interval: float = 5.0

    def __post_init__(self) -> None:
        if self.part_size is not None:
            validate_part_size(self.part_size)
        validate_max_concurrency(self.max_concurrency)
        algorithm = self.checksum_algorithm.upper() if isinstance(self.checksum_algorithm, str) else None
        if algorithm == CHECKSUM_AUTO.upper():
            algorithm = CHECKSUM_AUTO
        elif algorithm not in CHECKSUM_ALGORITHMS:
            raise ConfigurationError(
                f"checksum_algorithm must be {CHECKSUM_AUTO!r} or one of {sorted(CHECKSUM_ALGORITHMS)}, "
                f"got {self.checksum_algorithm!r}"
            )
        object.__setattr__(self, "checksum_algorithm", algorithm)
        types, default_type = CHECKSUM_ALGORITHMS[AUTO_PREFERRED_ALGORITHM if algorithm == CHECKSUM_AUTO else algorithm]
        if not isinstance(self.checksum_type, (str, type(None))):
            raise ConfigurationError(f"checksum_type must be a string or None, got {self.checksum_type!r}")
        ctype = (self.checksum_type or default_type).upper()
        if ctype not in types:
            accepted = f"S3 accepts {sorted(types)}"
            if algorithm == CHECKSUM_MD5:
                accepted = "a multipart ETag (MD5 of the part MD5s) is always COMPOSITE"
            raise ConfigurationError(f"checksum_type {ctype!r} is not available for {algorithm}; {accepted}")
        object.__setattr__(self, "checksum_type", ctype)
        if self.verify_part_etag not in (True, False, "auto"):
            raise ConfigurationError(f"verify_part_etag must be True, False or 'auto', got {self.verify_part_etag!r}")
        if self.progress_interval <= 0:
            raise ConfigurationError(f"progress_interval must be positive, got {self.progress_interval}")

    @property
    def full_object(self) -> bool:
        """True when the object's checksum is a CRC of all its bytes (not of the part checksums)."""
        return self.checksum_type == "FULL_OBJECT"


class PartSizer:
    """Part sizes for one upload: fixed for a known size, growing for an unknown one.

    Known ``total_size``: ``max(part_size, ceil(total_size / 10,000))``, rounded up to a MiB, for
    every part. Unknown size: ``part_size x 2 ** ((n - 1) // 1,000)`` for part ``n`` (capped at
    5 GiB), which holds 1,023,000 x part_size bytes (16 TiB from 16 MiB) within 10,000 parts.
    """

    def __init__(self, total_size: int | None, part_size: int | None = None) -> None:
        base = part_size if part_size is not None else DEFAULT_PART_SIZE
        validate_part_size(base)
        if total_size is not None and total_size < 0:
            raise ConfigurationError(f"size must not be negative, got {total_size}")
        self.total_size = total_size
        if total_size is not None:
            needed = -(-total_size // S3_MAX_PARTS)
            needed = -(-needed // MiB) * MiB
            base = max(base, needed)
            if base > S3_MAX_PART_SIZE:
                raise ConfigurationError(
                    f"{total_size} bytes do not fit in {S3_MAX_PARTS} parts of at most {S3_MAX_PART_SIZE} bytes"
                )
        self.base = base

    def size_of(self, number: int) -> int:
        """Bytes in part ``number`` (1-based) when it is a full part."""
        if not 1 <= number <= S3_MAX_PARTS:
            raise ConfigurationError(f"part number {number} is outside 1..{S3_MAX_PARTS}")
        if self.total_size is not None:
            return self.base
        return min(S3_MAX_PART_SIZE, self.base * 2 ** ((number - 1) // GROWTH_TIER_PARTS))


class PartRange(NamedTuple):
    """One part of a known-size source: 1-based ``number``, byte ``offset`` and ``length``."""

    number: int
    offset: int
    length: int


def plan_parts(total_size: int, part_size: int) -> list[PartRange]:
    """Split ``total_size`` bytes into parts of ``part_size`` (the last one shorter).

    Raises :class:`ConfigurationError` when that needs more than 10,000 parts.
    """
    count = max(1, -(-total_size // part_size))
    if count > S3_MAX_PARTS:
        raise ConfigurationError(f"{total_size} bytes in parts of {part_size} need {count} parts (max {S3_MAX_PARTS})")
    return [PartRange(n + 1, n * part_size, min(part_size, total_size - n * part_size)) for n in range(count)]
