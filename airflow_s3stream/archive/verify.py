"""One sequential verification pass over a ZIP (and the BagIt bag inside it), in bounded memory.

    report = verify_archive(S3ObjectSource(client, bucket, key), VerifyConfig(mode="auto"))

The archive is opened through :class:`~airflow_s3stream.s3.reader.RangedReader` (one suffix GET,
plus one for a large central directory), then every member is streamed once in archive order:
structure and size checked by the ZIP layer as it inflates, CRC-32 and every needed digest
computed behind it on worker threads (:mod:`~airflow_s3stream.archive.digests`), small tag files
kept for the BagIt checks. Per-member problems become findings in the report, in archive order;
an unreadable archive raises :class:`~airflow_s3stream.errors.ArchiveError` or
:class:`~airflow_s3stream.errors.BagError`.
"""

from __future__ import annotations

import os
import time
from dataclasses import dataclass, field

from airflow_s3stream.archive.bagit import BagCheck, BagLayout
from airflow_s3stream.archive.digests import DEFAULT_MAX_PENDING, DigestPipeline, MemberDigests
from airflow_s3stream.archive.report import Finding, VerificationReport
from airflow_s3stream.archive.zip import (
    DescriptorMismatchError,
    Expansion,
    MemberError,
    ZipArchive,
    ZipEntry,
    ZipLimits,
    crc_mismatch,
)
from airflow_s3stream.errors import BagError
from airflow_s3stream.s3.reader import ByteSource, RangedReader, ReaderConfig
from airflow_s3stream.units import MiB

__all__ = ["MODES", "VerifyConfig", "default_hash_threads", "verify_archive"]

MODES = ("auto", "zip", "bagit")
MAX_TAG_FILE_BYTES = 256 * MiB  # a tag file (manifest) larger than this is not kept in memory
CRC32 = "crc32"  # the digest lane that checks the ZIP's CRC-32


def default_hash_threads() -> int:
    """Digest workers for this machine: the CPUs this process may use, less the reading thread's, at most 2."""
    cpus = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1
    return max(0, min(2, cpus - 1))


@dataclass(frozen=True)
class VerifyConfig:
    """What to check and how to read.

    :param mode: ``zip`` (structure and CRC-32), ``bagit`` (also every BagIt rule) or ``auto``
        (``bagit`` when a ``bagit.txt`` is found at the root or in the single top-level directory).
    :param reader: block size, tail size, parallel prefetch and retry policy of the reader.
    :param limits: zip-bomb guards.
    :param max_tag_file_bytes: largest tag file (manifest, bag-info) held in memory, in bytes.
    :param hash_threads: threads computing CRC-32 and the digests beside the reading thread, which
        keeps its share of them (hashlib and zlib release the GIL); 0 computes them all inline.
        Default: one less than the CPUs this process may use, at most 2 (on 2 CPUs, one worker:
        a second one only waits for a core the reading thread and the first worker hold).
    :param hash_queue_bytes: bytes of inflated data that may wait for those threads.
    """

    mode: str = "auto"
    reader: ReaderConfig = field(default_factory=ReaderConfig)
    limits: ZipLimits = field(default_factory=ZipLimits)
    max_tag_file_bytes: int = MAX_TAG_FILE_BYTES
    hash_threads: int = field(default_factory=default_hash_threads)
    hash_queue_bytes: int = DEFAULT_MAX_PENDING

    def __post_init__(self) -> None:
        if self.mode not in MODES:
            raise ValueError(f"mode must be one of {', '.join(MODES)}, got {self.mode!r}")
        if not 0 <= self.hash_threads <= 16:
            raise ValueError(f"hash_threads must be within 0..16, got {self.hash_threads}")
        if self.hash_queue_bytes < 64 * 1024:
            raise ValueError(f"hash_queue_bytes must be at least 64 KiB, got {self.hash_queue_bytes}")


@dataclass
class _Streamed:
    """One member after its bytes went by: what the ZIP layer found, and what the digests will say."""

    entry: ZipEntry
    size: int = 0
    content: bytes | None = None
    error: MemberError | None = None


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
            with DigestPipeline(config.hash_threads, config.hash_queue_bytes) as digests:
                _stream_members(archive, check, config, report, digests)
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
    digests: DigestPipeline,
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
        member = _stream_one(archive, entry, check, config, expansion=expansion, digests=digests)
        digests.submit(member)
        for done in digests.ready():
            _record(done, check, report)
        if expansion.tripped:  # an archive-wide bomb guard fired: expand nothing else
            break
    for done in digests.drain():
        _record(done, check, report)
    if check is None:
        report.payload_files = report.members_checked
        report.payload_bytes = report.uncompressed_bytes


def _stream_one(
    archive: ZipArchive,
    entry: ZipEntry,
    check: BagCheck | None,
    config: VerifyConfig,
    *,
    expansion: Expansion,
    digests: DigestPipeline,
) -> MemberDigests:
    """Stream one member through the ZIP layer's checks, feeding its digests; never raises MemberError."""
    algorithms = [CRC32, *(check.algorithms_for(entry.name) if check else [])]
    streamed = _Streamed(entry)
    member = digests.begin(algorithms, entry.file_size, token=streamed)
    keep = check is not None and check.keeps_content(entry.name) and entry.file_size <= config.max_tag_file_bytes
    content = bytearray() if keep else None
    try:
        for chunk in archive.iter_data(entry, expansion, check_crc=False):
            streamed.size += len(chunk)
            member.update(chunk)
            if content is not None:
                content += chunk
    except MemberError as exc:
        streamed.error = exc
    streamed.content = bytes(content) if content is not None else None
    return member


def _record(member: MemberDigests, check: BagCheck | None, report: VerificationReport) -> None:
    """Report one member whose digests are complete: its first error, or what the bag check needs."""
    streamed: _Streamed = member.token
    entry, error = streamed.entry, streamed.error
    if error is None or isinstance(error, DescriptorMismatchError):  # all its data went by: the CRC-32 comes first
        error = crc_mismatch(entry, member.value(CRC32)) or error
    if error is not None:
        report.errors.append(Finding(error.member, error.reason))
        if check is not None:
            check.record_failure(entry.name)
        return
    report.members_checked += 1
    report.uncompressed_bytes += streamed.size
    if check is not None:
        hexdigests = member.hexdigests()
        del hexdigests[CRC32]
        check.record(entry.name, streamed.size, hexdigests, streamed.content)
