"""A ZIP archive opened from a seekable file object: its central directory and member streams.

:meth:`ZipArchive.open` reads only the end of the file (for a
:class:`~airflow_s3stream.s3.reader.RangedReader` that is the tail fetched at open, plus one GET if
the central directory is larger), so listing costs at most two requests. Members are then
streamed in archive order with :meth:`ZipArchive.iter_data`.
"""

from __future__ import annotations

import unicodedata
from collections.abc import Iterator
from dataclasses import dataclass, field

from airflow_s3stream.archive.zip.members import SeekableFile, ZipLimits, iter_member_data
from airflow_s3stream.archive.zip.records import (
    EOCD_SEARCH,
    LOCAL_HEADER_SIZE,
    ZIP64_EOCD,
    ZIP64_LOCATOR,
    CentralDirectoryLocation,
    ZipEntry,
    locate_central_directory,
    parse_central_directory,
    unsafe_name_reason,
)
from airflow_s3stream.errors import ArchiveError

__all__ = ["NameWarning", "ZipArchive"]

TAIL_NEEDED = EOCD_SEARCH + ZIP64_LOCATOR.size + ZIP64_EOCD.size  # bytes that hold every end record


@dataclass(frozen=True)
class NameWarning:
    """A member name that is unsafe to extract or that collides with another one."""

    member: str
    reason: str


@dataclass
class ZipArchive:
    """The parsed central directory of an archive, plus the file object to stream members from."""

    fp: SeekableFile
    size: int
    location: CentralDirectoryLocation
    entries: list[ZipEntry]
    limits: ZipLimits = field(default_factory=ZipLimits)

    @classmethod
    def open(cls, fp: SeekableFile, size: int, limits: ZipLimits | None = None) -> ZipArchive:
        """Parse the end records and central directory of the ``size``-byte archive in ``fp``.

        :raises ArchiveError: zero-byte, not a ZIP, truncated, or a corrupt central directory.
        """
        tail_start = max(0, size - TAIL_NEEDED)
        fp.seek(tail_start)
        tail = fp.read(size - tail_start)
        if len(tail) != size - tail_start:
            raise ArchiveError(f"truncated ZIP: read {len(tail)} of the last {size - tail_start} bytes")
        location = locate_central_directory(tail, tail_start, size)
        fp.seek(location.offset)
        directory = fp.read(location.size)
        if len(directory) != location.size:
            raise ArchiveError("truncated ZIP: central directory cut off")
        entries = parse_central_directory(directory, location)
        for entry in entries:
            if entry.header_offset + 30 + entry.compressed_size > location.offset:
                raise ArchiveError(
                    f"member {entry.name}: data at {entry.header_offset} overlaps the central directory "
                    "(truncated or corrupt archive)"
                )
        return cls(fp, size, location, entries, limits or ZipLimits())

    def in_archive_order(self) -> list[ZipEntry]:
        """Entries sorted by where their data lies, so one forward pass reads them all."""
        return sorted(self.entries, key=lambda e: e.header_offset)

    def name_warnings(self) -> list[NameWarning]:
        """Unsafe names and names that collide exactly, by case or by Unicode normalization."""
        warnings: list[NameWarning] = []
        seen: dict[str, str] = {}
        for entry in self.entries:
            reason = unsafe_name_reason(entry.name)
            if reason:
                warnings.append(NameWarning(entry.name, f"unsafe name: {reason}"))
            folded = unicodedata.normalize("NFC", entry.name).casefold()
            other = seen.get(folded)
            if other is not None:
                kind = (
                    "duplicate name" if other == entry.name else f"differs from {other!r} only by case or normalization"
                )
                warnings.append(NameWarning(entry.name, kind))
            else:
                seen[folded] = entry.name
        return warnings

    def overlaps(self) -> list[NameWarning]:
        """Members whose bytes start inside the previous member's: the overlapping-file zip bomb
        (or corruption). The bound used is the smallest the previous member can occupy."""
        found: list[NameWarning] = []
        previous: ZipEntry | None = None
        for entry in self.in_archive_order():
            if previous is not None:
                end = previous.header_offset + LOCAL_HEADER_SIZE + len(previous.raw_name) + previous.compressed_size
                if entry.header_offset < end:
                    found.append(
                        NameWarning(entry.name, f"overlaps member {previous.name} (zip bomb or corrupt archive)")
                    )
            previous = entry
        return found

    def iter_data(self, entry: ZipEntry, budget: list[int] | None = None) -> Iterator[bytes]:
        """Uncompressed bytes of ``entry``, checked as they flow (see :func:`iter_member_data`)."""
        return iter_member_data(self.fp, entry, self.limits, budget)
