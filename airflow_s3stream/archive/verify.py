"""One sequential verification pass over a ZIP (and the BagIt bag inside it), in bounded memory.

    report = verify_archive(S3ObjectSource(client, bucket, key), VerifyConfig(mode="auto"))

The archive is opened through :class:`~airflow_s3stream.s3.reader.RangedReader` (one suffix GET,
plus one for a large central directory), then every member is streamed once in archive order:
CRC-32 and size checked by the ZIP layer, every needed digest computed at the same time, small
tag files kept for the BagIt checks. Per-member problems become findings in the report; an
unreadable archive raises :class:`~airflow_s3stream.errors.ArchiveError` or
:class:`~airflow_s3stream.errors.BagError`.
"""

from __future__ import annotations

import hashlib
import time
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field

from airflow_s3stream.archive.bagit import BagCheck, BagLayout
from airflow_s3stream.archive.report import Finding, VerificationReport
from airflow_s3stream.archive.zip import Expansion, MemberError, ZipArchive, ZipEntry, ZipLimits
from airflow_s3stream.errors import BagError
from airflow_s3stream.s3.reader import ByteSource, RangedReader, ReaderConfig

__all__ = ["MODES", "VerifyConfig", "verify_archive"]

MODES = ("auto", "zip", "bagit")
MiB = 1024 * 1024
MAX_TAG_FILE_BYTES = 256 * MiB  # a tag file (manifest) larger than this is not kept in memory
PARALLEL_HASH_MIN = 64 * 1024  # bytes; smaller chunks are hashed inline (thread hand-off costs more)


@dataclass(frozen=True)
class VerifyConfig:
    """What to check and how to read.

    :param mode: ``zip`` (structure and CRC-32), ``bagit`` (also every BagIt rule) or ``auto``
        (``bagit`` when a ``bagit.txt`` is found at the root or in the single top-level directory).
    :param reader: block size, tail size, parallel prefetch and retry policy of the reader.
    :param limits: zip-bomb guards.
    :param max_tag_file_bytes: largest tag file (manifest, bag-info) held in memory, in bytes.
    :param hash_threads: threads computing digests while the next chunk is read and inflated
        (hashlib releases the GIL); 0 hashes inline. Costs one extra chunk of memory.
    """

    mode: str = "auto"
    reader: ReaderConfig = field(default_factory=ReaderConfig)
    limits: ZipLimits = field(default_factory=ZipLimits)
    max_tag_file_bytes: int = MAX_TAG_FILE_BYTES
    hash_threads: int = 2

    def __post_init__(self) -> None:
        if self.mode not in MODES:
            raise ValueError(f"mode must be one of {', '.join(MODES)}, got {self.mode!r}")
        if not 0 <= self.hash_threads <= 16:
            raise ValueError(f"hash_threads must be within 0..16, got {self.hash_threads}")


class _Digests:
    """Every digest of one member, computed on a worker pool while the caller reads ahead."""

    def __init__(self, algorithms: list[str], pool: ThreadPoolExecutor | None) -> None:
        self._hashers = [(alg, hashlib.new(alg)) for alg in algorithms]
        self._pool = pool if algorithms else None
        self._pending: list[Future[None]] = []

    def update(self, chunk: bytes) -> None:
        self._wait()
        if self._pool is not None and len(chunk) >= PARALLEL_HASH_MIN:
            self._pending = [self._pool.submit(h.update, chunk) for _, h in self._hashers]
        else:
            for _, hasher in self._hashers:
                hasher.update(chunk)

    def _wait(self) -> None:
        for future in self._pending:
            future.result()
        self._pending = []

    def hexdigests(self) -> dict[str, str]:
        self._wait()
        return {alg: h.hexdigest() for alg, h in self._hashers}


def verify_archive(source: ByteSource, config: VerifyConfig | None = None) -> VerificationReport:
    """Verify the ZIP behind ``source`` in one pass; returns the report (``report.valid``).

    :raises ArchiveError: zero-byte object, not a ZIP, truncated or corrupt central directory.
    :raises BagError: ``mode="bagit"`` but no ``bagit.txt`` where a bag's declaration belongs.
    :raises SourceError: the object does not exist or cannot be read.
    :raises ObjectChangedError: the object was replaced while being read.
    :raises TransientError: the endpoint kept failing after the reader's retries.
    """
    config = config or VerifyConfig()
    started = time.monotonic()
    with RangedReader(source, config.reader) as reader:
        report = VerificationReport(source.describe(), mode="zip", archive_bytes=reader.size)
        try:
            archive = ZipArchive.open(reader, reader.size, config.limits)
            check = _bag_check(archive, config.mode, source.describe())
            if check is not None:
                report.mode, report.bag_root = "bagit", check.layout.root
            with ThreadPoolExecutor(max(1, config.hash_threads), thread_name_prefix="digest") as pool:
                _stream_members(archive, check, config, report, pool if config.hash_threads else None)
            if check is not None:
                result = check.finish()
                report.payload_files, report.payload_bytes = result.payload_files, result.payload_bytes
                report.algorithms = result.algorithms
                report.fetch_entries = len(result.fetch)
                if result.declaration:
                    report.bagit_version = "{}.{}".format(*result.declaration.version)
                report.errors += result.errors
                report.warnings += result.warnings
        finally:
            report.requests = reader.stats.requests
            report.bytes_read = reader.stats.bytes_fetched
            report.seconds = time.monotonic() - started
    return report


def _bag_check(archive: ZipArchive, mode: str, where: str) -> BagCheck | None:
    if mode == "zip":
        return None
    layout = BagLayout.find(archive.directory.names())
    if layout is None:
        if mode == "bagit":
            raise BagError(f"{where}: not a bag: no bagit.txt at the root or in a single top-level directory")
        return None
    payload = layout.root + "data/"
    # BagCheck needs only the tag-level names (to find the manifests), not every payload name.
    return BagCheck(layout, [n for n in archive.directory.names() if not n.startswith(payload)])


def _stream_members(
    archive: ZipArchive,
    check: BagCheck | None,
    config: VerifyConfig,
    report: VerificationReport,
    pool: ThreadPoolExecutor | None,
) -> None:
    for warning in archive.name_warnings():
        target = report.errors if warning.reason.startswith("unsafe") else report.warnings
        target.append(Finding(warning.member, warning.reason))
    skip = bytearray(len(archive.directory))  # one byte per entry: overlapping members are not streamed
    for index, overlap in archive.overlapping():
        report.errors.append(Finding(overlap.member, overlap.reason))
        skip[index] = 1
    expansion = Expansion.of(config.limits)
    for entry in archive.in_archive_order():
        report.members_total += 1
        if entry.is_dir or skip[entry.index]:
            continue
        try:
            size, digests, content = _stream_one(archive, entry, check, config, expansion, pool=pool)
        except MemberError as exc:
            report.errors.append(Finding(exc.member, exc.reason))
            if check is not None:
                check.record_failure(entry.name)
            if expansion.tripped:  # an archive-wide bomb guard fired: expand nothing else
                break
            continue
        report.members_checked += 1
        report.uncompressed_bytes += size
        if check is not None:
            check.record(entry.name, size, digests, content)
    if check is None:
        report.payload_files = report.members_checked
        report.payload_bytes = report.uncompressed_bytes


def _stream_one(
    archive: ZipArchive,
    entry: ZipEntry,
    check: BagCheck | None,
    config: VerifyConfig,
    expansion: Expansion,
    *,
    pool: ThreadPoolExecutor | None,
) -> tuple[int, dict[str, str], bytes | None]:
    digests = _Digests(check.algorithms_for(entry.name) if check else [], pool)
    keep = check is not None and check.keeps_content(entry.name) and entry.file_size <= config.max_tag_file_bytes
    content = bytearray() if keep else None
    size = 0
    for chunk in archive.iter_data(entry, expansion):
        size += len(chunk)
        digests.update(chunk)
        if content is not None:
            content += chunk
    return size, digests.hexdigests(), bytes(content) if content is not None else None
