"""ZIP reading for archives in S3: structure parsed from bytes, members streamed and checked.

``records`` parses (no I/O), ``members`` streams one member, ``archive`` ties them to a file
object such as :class:`~airflow_s3stream.s3.reader.RangedReader`.
"""

from __future__ import annotations

from airflow_s3stream.archive.zip.archive import NameWarning, ZipArchive
from airflow_s3stream.archive.zip.directory import CentralDirectory
from airflow_s3stream.archive.zip.members import (
    DEFAULT_MAX_RATIO,
    METHOD_NAMES,
    REACHABLE_RATIOS,
    DescriptorMismatchError,
    Expansion,
    MemberError,
    ZipLimits,
    crc_mismatch,
    iter_member_data,
)
from airflow_s3stream.archive.zip.records import ZipEntry, unsafe_name_reason

__all__ = [
    "DEFAULT_MAX_RATIO",
    "METHOD_NAMES",
    "REACHABLE_RATIOS",
    "CentralDirectory",
    "DescriptorMismatchError",
    "Expansion",
    "MemberError",
    "NameWarning",
    "ZipArchive",
    "ZipEntry",
    "ZipLimits",
    "crc_mismatch",
    "iter_member_data",
    "unsafe_name_reason",
]
