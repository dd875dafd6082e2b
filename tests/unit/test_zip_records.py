"""The ZIP structure parser: end records, ZIP64, central directory, names."""

from __future__ import annotations

import io
import struct
import zipfile

import pytest

from airflow_s3stream.archive.zip import ZipArchive, unsafe_name_reason
from airflow_s3stream.archive.zip.records import locate_central_directory, parse_central_directory
from airflow_s3stream.errors import ArchiveError
from tests.support.bags import zip_bytes


def _open(data: bytes) -> ZipArchive:
    return ZipArchive.open(io.BytesIO(data), len(data))


def test_central_directory_matches_zipfile_for_every_field() -> None:
    data = zip_bytes({"a.txt": b"hello" * 100, "sub/b.bin": bytes(range(256)), "empty": b""})
    ours = {e.name: e for e in _open(data).entries}
    for info in zipfile.ZipFile(io.BytesIO(data)).infolist():
        entry = ours[info.filename]
        assert (entry.crc32, entry.compressed_size) == (info.CRC, info.compress_size)
        assert (entry.file_size, entry.header_offset, entry.method) == (info.file_size, info.header_offset, 8)


def test_archive_comment_up_to_64_kib_does_not_hide_the_end_record() -> None:
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w") as zf:
        zf.writestr("x", b"x")
        zf.comment = b"PK\x05\x06" + b"c" * 65000  # a fake signature inside the comment
    assert [e.name for e in _open(buf.getvalue()).entries] == ["x"]


def test_zero_byte_object_is_reported_as_such() -> None:
    with pytest.raises(ArchiveError, match="zero-byte"):
        locate_central_directory(b"", 0, 0)


def test_random_bytes_are_not_a_zip() -> None:
    with pytest.raises(ArchiveError, match="not a ZIP archive"):
        _open(b"%PDF-1.7 " + bytes(5000))


def test_archive_cut_before_its_central_directory_is_truncated() -> None:
    data = zip_bytes({f"m{i}": bytes(1000) for i in range(10)})
    with pytest.raises(ArchiveError, match="truncated"):
        _open(data[: len(data) // 2])


def test_archive_cut_inside_its_central_directory_is_truncated() -> None:
    data = zip_bytes({f"m{i}": b"z" * 100 for i in range(50)})
    eocd = data.rfind(b"PK\x05\x06")
    cut = data[: eocd - 200] + data[eocd:]  # end record intact, directory shortened
    with pytest.raises(ArchiveError, match=r"truncated|signature|overlaps"):
        _open(cut)


def test_names_use_utf8_flag_or_cp437() -> None:
    data = zip_bytes({"caf\u00e9.txt": b"1"})
    (entry,) = _open(data).entries
    assert entry.name == "caf\u00e9.txt" and entry.flags & 0x800
    raw = bytearray(data)  # clear the UTF-8 flag: the same bytes now read as cp437
    cd = raw.find(b"PK\x01\x02")
    flags = struct.unpack_from("<H", raw, cd + 8)[0] & ~0x800
    struct.pack_into("<H", raw, cd + 8, flags)
    loc = locate_central_directory(bytes(raw), 0, len(raw))
    (entry,) = parse_central_directory(bytes(raw[loc.offset : loc.offset + loc.size]), loc)
    assert entry.name == "caf\u251c\u2310.txt"


def test_zip64_end_records_and_more_than_65535_entries() -> None:
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w", zipfile.ZIP_STORED) as zf:
        for i in range(65_540):
            zf.writestr(f"{i}", b"")
    archive = _open(buf.getvalue())
    assert archive.location.zip64 and len(archive.entries) == 65_540


@pytest.mark.parametrize(
    ("name", "reason"),
    [
        ("/etc/passwd", "absolute"),
        ("C:/x", "absolute"),
        ("a/../../b", "'..'"),
        ("dir\\file", "backslash"),
    ],
)
def test_unsafe_names_are_flagged(name: str, reason: str) -> None:
    assert reason in (unsafe_name_reason(name) or "")


def test_ordinary_names_are_safe() -> None:
    assert unsafe_name_reason("bag/data/a..b.txt") is None


def test_names_colliding_by_case_or_normalization_are_warned() -> None:
    data = zip_bytes({"a/Readme.txt": b"1", "a/README.txt": b"2", "caf\u00e9": b"3", "cafe\u0301": b"4"})
    reasons = {w.member: w.reason for w in _open(data).name_warnings()}
    assert "only by case" in reasons["a/README.txt"] and "normalization" in reasons["cafe\u0301"]
