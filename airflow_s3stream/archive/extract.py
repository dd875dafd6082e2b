"""Stream members of a ZIP in S3 to other S3 keys: the "extract one file from a huge ZIP" case.

Bytes flow RangedReader -> member stream (CRC-32 checked) -> MultipartWriter; no member is
ever held whole. A member that fails its check aborts its own upload (the writer's context
manager), so nothing half-written is left behind. No Airflow imports: the client is passed in.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from airflow_s3stream.archive.zip import Expansion, ZipArchive, ZipEntry, ZipLimits, unsafe_name_reason
from airflow_s3stream.errors import ArchiveError
from airflow_s3stream.s3.multipart import MultipartConfig, MultipartWriter
from airflow_s3stream.s3.reader import RangedReader, ReaderConfig, S3ObjectSource
from airflow_s3stream.units import GiB

if TYPE_CHECKING:
    from mypy_boto3_s3 import S3Client

__all__ = ["DEFAULT_EXTRACT_MAX_TOTAL", "ExtractedMember", "extract_members"]

# What one extraction may expand to by default: a small worker's share of output, not the
# verifier's "anything" (an extraction writes every byte it expands, to S3, billed).
DEFAULT_EXTRACT_MAX_TOTAL = 4 * GiB


@dataclass(frozen=True)
class ExtractedMember:
    """One member written to ``s3://bucket/key``."""

    member: str
    bucket: str
    key: str
    size: int
    crc32: str  # hex, checked while streaming

    def to_dict(self) -> dict[str, Any]:
        return {"member": self.member, "bucket": self.bucket, "key": self.key, "bytes": self.size, "crc32": self.crc32}


def _select(archive: ZipArchive, members: Sequence[str] | None, where: str) -> list[ZipEntry]:
    files = [e for e in archive.in_archive_order() if not e.is_dir]
    if members is None:
        chosen = files
    else:
        by_name = {e.name: e for e in files}
        missing = [m for m in members if m not in by_name]
        if missing:
            raise ArchiveError(f"{where}: no file member named {', '.join(repr(m) for m in missing)}")
        wanted = set(members)
        chosen = [e for e in files if e.name in wanted]
    for entry in chosen:
        reason = unsafe_name_reason(entry.name)
        if reason:
            raise ArchiveError(f"{where}: member {entry.name} {reason}; refusing to extract it")
    return chosen


def extract_members(
    client: S3Client,
    bucket: str,
    key: str,
    dest_bucket: str,
    *,
    dest_prefix: str,
    members: Sequence[str] | None = None,
    reader_config: ReaderConfig | None = None,
    multipart_config: MultipartConfig | None = None,
    limits: ZipLimits | None = None,
) -> list[ExtractedMember]:
    """Copy ``members`` (all file members when None) of ``s3://bucket/key`` to ``dest_prefix + name``.

    Members are read in archive order in one sequential pass. Every member is checked
    (CRC-32, size, zip-bomb guards) as it streams; a failure aborts that member's upload and
    raises, leaving the members already written complete and nothing partial.

    ``limits.max_total_uncompressed`` (default :data:`DEFAULT_EXTRACT_MAX_TOTAL`, 4 GiB when
    ``limits`` is None) bounds what the extraction writes: when the chosen members' declared
    sizes add up to more, nothing is written at all; a member that expands past its declared size
    fails as it streams, so the bound holds whatever the directory claims.

    :raises ArchiveError: not a ZIP, a requested member is missing, an unsafe member name, the
        members would expand past ``max_total_uncompressed``, or a member fails its check
        (:class:`~airflow_s3stream.archive.zip.MemberError`).
    :raises SourceError, ObjectChangedError, TransientError: see :class:`RangedReader`.
    """
    limits = limits or ZipLimits(max_total_uncompressed=DEFAULT_EXTRACT_MAX_TOTAL)
    source = S3ObjectSource(client, bucket, key)
    done: list[ExtractedMember] = []
    with RangedReader(source, reader_config) as reader:
        archive = ZipArchive.open(reader, reader.size, limits)
        chosen = _select(archive, members, source.describe())
        declared = sum(e.file_size for e in chosen)
        if declared > limits.max_total_uncompressed:
            raise ArchiveError(
                f"{source.describe()}: the {len(chosen)} member(s) to extract expand to {declared} bytes, more than "
                f"max_total_uncompressed {limits.max_total_uncompressed}; nothing was extracted"
            )
        expansion = Expansion.of(limits)
        for entry in chosen:
            target = dest_prefix + entry.name
            size = 0
            with MultipartWriter(
                client, dest_bucket, target, config=multipart_config, expected_size=entry.file_size
            ) as writer:
                for chunk in archive.iter_data(entry, expansion):
                    writer.write(chunk)
                    size += len(chunk)
            done.append(ExtractedMember(entry.name, dest_bucket, target, size, f"{entry.crc32:08x}"))
    return done
