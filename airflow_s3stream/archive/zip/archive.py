"""A ZIP archive opened from a seekable file object: its central directory and member streams.

:meth:`ZipArchive.open` reads only the end of the file and then streams the central directory in
bounded chunks into a compact :class:`~airflow_s3stream.archive.zip.directory.CentralDirectory`
(for a :class:`~airflow_s3stream.s3.reader.RangedReader` that is the tail fetched at open, plus
one GET if the directory is larger). Members are then streamed in archive order with
:meth:`ZipArchive.iter_data`. The cross-checks (unsafe and colliding names, overlapping members)
run over the arrays and yield their findings one at a time, so neither the entry count nor a
hostile archive's pile of findings makes memory grow beyond the arrays.
"""

from __future__ import annotations

import unicodedata
from array import array
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass, field

from airflow_s3stream.archive.zip.directory import CentralDirectory
from airflow_s3stream.archive.zip.members import Expansion, SeekableFile, ZipLimits, iter_member_data
from airflow_s3stream.archive.zip.records import (
    EOCD_SEARCH,
    LOCAL_HEADER_SIZE,
    ZIP64_EOCD,
    ZIP64_LOCATOR,
    CentralDirectoryLocation,
    ZipEntry,
    locate_central_directory,
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


def _folded(name: str) -> str:
    return unicodedata.normalize("NFC", name).casefold()


HASH_BUCKETS = 4  # the duplicate search holds a quarter of the hashes as Python ints at a time


def _repeated(hashes: array[int]) -> set[int]:
    """The values that occur more than once in ``hashes``, in ``HASH_BUCKETS`` passes (C-level
    list and set building; about 20 bytes per entry at a time for a million entries)."""
    repeated: set[int] = set()
    for bucket in range(HASH_BUCKETS):
        values = [h for h in hashes if h % HASH_BUCKETS == bucket]
        if len(set(values)) != len(values):
            repeated.update(h for h, n in Counter(values).items() if n > 1)
        del values
    return repeated


@dataclass
class ZipArchive:
    """The parsed central directory of an archive, plus the file object to stream members from."""

    fp: SeekableFile
    size: int
    location: CentralDirectoryLocation
    directory: CentralDirectory
    limits: ZipLimits = field(default_factory=ZipLimits)

    @classmethod
    def open(cls, fp: SeekableFile, size: int, limits: ZipLimits | None = None) -> ZipArchive:
        """Parse the end records and stream the central directory of the ``size``-byte archive in ``fp``.

        :raises ArchiveError: zero-byte, not a ZIP, truncated, or a corrupt central directory.
        """
        tail_start = max(0, size - TAIL_NEEDED)
        fp.seek(tail_start)
        tail = fp.read(size - tail_start)
        if len(tail) != size - tail_start:
            raise ArchiveError(f"truncated ZIP: read {len(tail)} of the last {size - tail_start} bytes")
        location = locate_central_directory(tail, tail_start, size)
        del tail
        directory = CentralDirectory.read(fp, location)
        return cls(fp, size, location, directory, limits or ZipLimits())

    @property
    def entries(self) -> CentralDirectory:
        """Every entry in directory order (a sequence of :class:`ZipEntry`, built on access)."""
        return self.directory

    def in_archive_order(self) -> Iterator[ZipEntry]:
        """Entries sorted by where their data lies, so one forward pass reads them all."""
        for i in self.directory.archive_order():
            yield self.directory[i]

    def name_warnings(self) -> Iterator[NameWarning]:
        """Unsafe names, then names that collide exactly, by case or by Unicode normalization.

        Collisions are found over one 64-bit hash per name (8 bytes an entry); only names whose
        hash repeats are compared as strings, in a second pass.
        """
        directory = self.directory
        hashes = array("q")
        for i in range(len(directory)):
            name = directory.name(i)
            reason = unsafe_name_reason(name)
            if reason:
                yield NameWarning(name, f"unsafe name: {reason}")
            hashes.append(hash(_folded(name)))
        repeated = _repeated(hashes)
        if not repeated:
            return
        seen: dict[str, str] = {}
        for i, h in enumerate(hashes):
            if h not in repeated:
                continue
            name = directory.name(i)
            folded = _folded(name)
            other = seen.get(folded)
            if other is None:
                seen[folded] = name
                continue
            kind = "duplicate name" if other == name else f"differs from {other!r} only by case or normalization"
            yield NameWarning(name, kind)

    def overlapping(self) -> Iterator[tuple[int, NameWarning]]:
        """(entry index, finding) for every member whose bytes start inside the previous member's:
        the overlapping-file zip bomb (or corruption). The bound used is the smallest the previous
        member can occupy."""
        d = self.directory
        previous = -1
        for i in d.archive_order():
            if previous >= 0:
                start = d.header_offset[previous]
                end = start + LOCAL_HEADER_SIZE + d.name_length(previous) + d.compressed_size[previous]
                if d.header_offset[i] < end:
                    yield i, NameWarning(d.name(i), f"overlaps member {d.name(previous)} (zip bomb or corrupt archive)")
                    continue  # a member inside another is skipped; the next is compared with the outer one
            previous = i

    def overlaps(self) -> list[NameWarning]:
        """The findings of :meth:`overlapping`, as a list."""
        return [warning for _, warning in self.overlapping()]

    def iter_data(
        self, entry: ZipEntry, expansion: Expansion | None = None, *, check_crc: bool = True
    ) -> Iterator[bytes]:
        """Uncompressed bytes of ``entry``, checked as they flow (see :func:`iter_member_data`)."""
        return iter_member_data(self.fp, entry, self.limits, expansion, check_crc=check_crc)
