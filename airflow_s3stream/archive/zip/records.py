"""ZIP structure as pure functions over bytes: EOCD, ZIP64 locator/record, central directory.

Nothing here does I/O. :func:`locate_central_directory` takes the tail of the archive and says
where the central directory is; :func:`parse_central_directory` turns its bytes into
:class:`ZipEntry` records. Layouts follow PKWARE APPNOTE.TXT 6.3.10 (sections 4.3.6-4.3.16).
"""

from __future__ import annotations

import struct
from dataclasses import dataclass, field

from airflow_s3stream.errors import ArchiveError

__all__ = [
    "CentralDirectoryLocation",
    "LocalHeader",
    "ZipEntry",
    "locate_central_directory",
    "parse_central_directory",
    "parse_local_header",
    "unsafe_name_reason",
    "zip64_values",
]

EOCD_SIG = b"PK\x05\x06"
ZIP64_LOCATOR_SIG = b"PK\x06\x07"
ZIP64_EOCD_SIG = b"PK\x06\x06"
CENTRAL_SIG = b"PK\x01\x02"
LOCAL_SIG = b"PK\x03\x04"
DESCRIPTOR_SIG = b"PK\x07\x08"

EOCD = struct.Struct("<4s4H2LH")  # APPNOTE 4.3.16, 22 bytes + comment
ZIP64_LOCATOR = struct.Struct("<4sLQL")  # 4.3.15, 20 bytes
ZIP64_EOCD = struct.Struct("<4sQ2H2L4Q")  # 4.3.14, 56 bytes + extensible data
CENTRAL = struct.Struct("<4s4B4HL2L5H2L")  # 4.3.12, 46 bytes + name + extra + comment
LOCAL = struct.Struct("<4s2B4HL2L2H")  # 4.3.7, 30 bytes + name + extra
LOCAL_HEADER_SIZE = LOCAL.size
MAX_COMMENT = 0xFFFF  # the EOCD comment length is a 16-bit field
EOCD_SEARCH = EOCD.size + MAX_COMMENT  # the EOCD lies within this many bytes of the end

FLAG_ENCRYPTED = 0x0001
FLAG_DATA_DESCRIPTOR = 0x0008
FLAG_UTF8 = 0x0800
ZIP64_EXTRA_ID = 0x0001


@dataclass(frozen=True)
class CentralDirectoryLocation:
    """Where the central directory is and how many entries it claims (from EOCD/ZIP64 EOCD)."""

    offset: int
    size: int
    entries: int
    zip64: bool
    archive_start: int = 0  # bytes prepended to the archive (self-extractors); 0 normally


@dataclass(frozen=True)
class ZipEntry:
    """One central-directory record, with ZIP64 sizes and offsets already applied."""

    name: str
    method: int
    flags: int
    crc32: int
    compressed_size: int
    file_size: int
    header_offset: int
    is_dir: bool
    raw_name: bytes = field(repr=False, default=b"")
    index: int = field(repr=False, compare=False, default=-1)  # position in the central directory (-1: unknown)

    @property
    def encrypted(self) -> bool:
        return bool(self.flags & FLAG_ENCRYPTED)

    @property
    def has_data_descriptor(self) -> bool:
        return bool(self.flags & FLAG_DATA_DESCRIPTOR)


@dataclass(frozen=True)
class LocalHeader:
    """A local file header: what it says and how many bytes it occupies before the data."""

    raw_name: bytes
    method: int
    flags: int
    crc32: int
    compressed_size: int
    file_size: int
    length: int  # 30 + name + extra


def _find_eocd(tail: bytes) -> int:
    """Index of the EOCD record in ``tail``, or -1.

    The signature can also occur inside the archive comment, so the record whose comment length
    reaches exactly the end wins; failing that (trailing junk), the last candidate.
    """
    fallback = -1
    idx = len(tail)
    floor = max(0, len(tail) - EOCD_SEARCH)
    while (idx := tail.rfind(EOCD_SIG, floor, idx)) >= 0:
        if len(tail) - idx >= EOCD.size:
            (comment_len,) = struct.unpack_from("<H", tail, idx + 20)
            if idx + EOCD.size + comment_len == len(tail):
                return idx
            fallback = max(fallback, idx)
    return fallback


def locate_central_directory(tail: bytes, tail_start: int, archive_size: int) -> CentralDirectoryLocation:
    """Find the central directory from the last bytes of the archive.

    :param tail: the final ``len(tail)`` bytes of the archive (ideally >= 65,557 + 76 bytes).
    :param tail_start: offset of ``tail[0]`` in the archive.
    :param archive_size: total archive size in bytes.
    :raises ArchiveError: zero-byte object, no EOCD (not a ZIP), or a directory that lies outside
        the archive (truncated).
    """
    if archive_size == 0:
        raise ArchiveError("zero-byte object: not a ZIP archive")
    idx = _find_eocd(tail)
    if idx < 0:
        if tail.startswith(LOCAL_SIG) or LOCAL_SIG in tail[:4096]:
            raise ArchiveError("truncated ZIP: local headers present but no end-of-central-directory record")
        raise ArchiveError("not a ZIP archive: no end-of-central-directory record")
    _, _disk, _cd_disk, _n_disk, entries, cd_size, cd_offset, _comment_len = EOCD.unpack_from(tail, idx)
    eocd_pos = tail_start + idx
    zip64 = False
    loc_idx = idx - ZIP64_LOCATOR.size
    if loc_idx >= 0 and tail[loc_idx : loc_idx + 4] == ZIP64_LOCATOR_SIG:
        _, _d, z64_offset, _ndisks = ZIP64_LOCATOR.unpack_from(tail, loc_idx)
        rec = z64_offset - tail_start
        if rec < 0 or rec + ZIP64_EOCD.size > len(tail) or tail[rec : rec + 4] != ZIP64_EOCD_SIG:
            raise ArchiveError(f"ZIP64 end-of-central-directory record missing at offset {z64_offset}")
        fields = ZIP64_EOCD.unpack_from(tail, rec)
        entries, cd_size, cd_offset = fields[7], fields[8], fields[9]
        eocd_pos = z64_offset
        zip64 = True
    # Bytes prepended to the archive shift every offset (self-extracting archives).
    archive_start = eocd_pos - cd_size - cd_offset
    if archive_start < 0 or cd_offset + cd_size > archive_size:
        raise ArchiveError(
            f"truncated ZIP: central directory claims bytes {cd_offset}..{cd_offset + cd_size} "
            f"but the archive has {archive_size}"
        )
    return CentralDirectoryLocation(cd_offset + archive_start, cd_size, entries, zip64, archive_start)


def zip64_values(extra: bytes, needs: list[bool]) -> list[int]:
    """Values from the ZIP64 extra field for the fields flagged in ``needs`` (APPNOTE 4.5.3)."""
    pos = 0
    while pos + 4 <= len(extra):
        tag, size = struct.unpack_from("<2H", extra, pos)
        if tag == ZIP64_EXTRA_ID:
            data = extra[pos + 4 : pos + 4 + size]
            count = sum(needs)
            if len(data) < 8 * count:
                raise ArchiveError("ZIP64 extra field too short")
            return list(struct.unpack_from(f"<{count}Q", data))
        pos += 4 + size
    if any(needs):
        raise ArchiveError("ZIP64 extra field missing")
    return []


def _decode_name(raw: bytes, flags: int) -> str:
    if flags & FLAG_UTF8:
        return raw.decode("utf-8", errors="replace")
    return raw.decode("cp437")


def parse_central_directory(data: bytes, location: CentralDirectoryLocation) -> list[ZipEntry]:
    """Parse ``location.entries`` central-directory records from ``data``.

    Header offsets are returned relative to the physical object (``archive_start`` added).

    :raises ArchiveError: a bad signature or a record running past the directory.
    """
    entries: list[ZipEntry] = []
    pos = 0
    for i in range(location.entries):
        if pos + CENTRAL.size > len(data) or data[pos : pos + 4] != CENTRAL_SIG:
            raise ArchiveError(f"central directory entry {i} at offset {location.offset + pos}: bad signature")
        (_, _vm, _sys, _ve, _se, flags, method, _t, _d, crc, csize, usize, nlen, xlen, clen, _disk, _ia, _ea,
         offset) = CENTRAL.unpack_from(data, pos)  # fmt: skip
        start = pos + CENTRAL.size
        raw_name = data[start : start + nlen]
        extra = data[start + nlen : start + nlen + xlen]
        pos = start + nlen + xlen + clen
        if pos > len(data):
            raise ArchiveError(f"central directory entry {i} runs past the end of the directory")
        needs = [usize == 0xFFFFFFFF, csize == 0xFFFFFFFF, offset == 0xFFFFFFFF]
        values = iter(zip64_values(extra, needs))
        usize = next(values) if needs[0] else usize
        csize = next(values) if needs[1] else csize
        offset = next(values) if needs[2] else offset
        name = _decode_name(raw_name, flags)
        entries.append(
            ZipEntry(
                name=name,
                method=method,
                flags=flags,
                crc32=crc,
                compressed_size=csize,
                file_size=usize,
                header_offset=offset + location.archive_start,
                is_dir=name.endswith("/"),
                raw_name=raw_name,
                index=i,
            )
        )
    return entries


def parse_local_header(data: bytes, where: str) -> LocalHeader:
    """Parse the 30 fixed bytes plus name and extra of a local file header.

    :param data: at least 30 bytes; the name and extra must follow when ``length`` is used.
    :raises ArchiveError: bad signature (names ``where``).
    """
    if len(data) < LOCAL.size or data[:4] != LOCAL_SIG:
        raise ArchiveError(f"{where}: no local file header at its recorded offset")
    _, _ve, _sys, flags, method, _t, _d, crc, csize, usize, nlen, xlen = LOCAL.unpack_from(data)
    raw_name = data[LOCAL.size : LOCAL.size + nlen]
    return LocalHeader(raw_name, method, flags, crc, csize, usize, LOCAL.size + nlen + xlen)


def unsafe_name_reason(name: str) -> str | None:
    """Why extracting ``name`` would be unsafe (absolute, ``..``, backslash), or None."""
    if "\\" in name:
        return "contains a backslash"
    if name.startswith("/") or (len(name) > 1 and name[1] == ":"):
        return "is an absolute path"
    if ".." in name.split("/"):
        return "contains a '..' component"
    return None
