"""Streaming one member: every method, CRC-32/size checks, local-header cross-check, guards."""

from __future__ import annotations

import io
import os
import struct
import zipfile
from pathlib import Path
from typing import Any

import pytest

from airflow_s3stream.archive.zip import DEFAULT_MAX_RATIO, Expansion, MemberError, ZipArchive, ZipLimits
from tests.support.bags import zip_bytes

CONTENT = b"The quick brown fox jumps over the lazy dog.\n" * 20_000 + os.urandom(50_000)


def _archive(data: bytes, limits: ZipLimits | None = None) -> ZipArchive:
    return ZipArchive.open(io.BytesIO(data), len(data), limits)


def _read_all(archive: ZipArchive, name: str, expansion: Expansion | None = None) -> bytes:
    (entry,) = [e for e in archive.entries if e.name == name]
    return b"".join(archive.iter_data(entry, expansion))


@pytest.mark.parametrize("method", [zipfile.ZIP_STORED, zipfile.ZIP_DEFLATED, zipfile.ZIP_BZIP2, zipfile.ZIP_LZMA])
def test_every_supported_method_streams_the_exact_bytes(method: int) -> None:
    archive = _archive(zip_bytes({"m": CONTENT, "empty": b""}, method))
    assert _read_all(archive, "m") == CONTENT
    assert _read_all(archive, "empty") == b""


def test_output_is_produced_in_bounded_chunks_even_for_highly_compressible_members() -> None:
    archive = _archive(zip_bytes({"zeros": bytes(40 << 20)}), ZipLimits(max_ratio=2000))
    (entry,) = archive.entries
    sizes = [len(c) for c in archive.iter_data(entry)]
    assert sum(sizes) == 40 << 20 and max(sizes) <= 4 << 20


def _flip_data_byte(data: bytes, name: str, at: int = 10) -> bytes:
    info = zipfile.ZipFile(io.BytesIO(data)).getinfo(name)
    nlen, xlen = struct.unpack_from("<2H", data, info.header_offset + 26)
    pos = info.header_offset + 30 + nlen + xlen + at
    return data[:pos] + bytes([data[pos] ^ 0xFF]) + data[pos + 1 :]


def test_corrupted_stored_member_fails_its_crc_check_naming_it() -> None:
    data = _flip_data_byte(zip_bytes({"ok": b"fine", "bad.bin": CONTENT}, zipfile.ZIP_STORED), "bad.bin")
    archive = _archive(data)
    assert _read_all(archive, "ok") == b"fine"
    with pytest.raises(MemberError, match=r"member bad.bin: CRC-32 mismatch \(expected [0-9a-f]{8}, got [0-9a-f]{8}\)"):
        _read_all(archive, "bad.bin")


def test_corrupted_deflate_stream_is_reported_not_raised_from_zlib() -> None:
    data = _flip_data_byte(zip_bytes({"d": CONTENT}), "d", at=3)
    with pytest.raises(MemberError, match=r"member d: (corrupt compressed data|CRC-32 mismatch|size mismatch)"):
        _read_all(_archive(data), "d")


def test_local_header_naming_another_file_is_caught() -> None:
    data = bytearray(zip_bytes({"aaaa": b"1", "bbbb": b"2"}, zipfile.ZIP_STORED))
    info = zipfile.ZipFile(io.BytesIO(bytes(data))).getinfo("bbbb")
    data[info.header_offset + 30 : info.header_offset + 34] = b"cccc"
    with pytest.raises(MemberError, match="member bbbb: local header names b'cccc'"):
        _read_all(_archive(bytes(data)), "bbbb")


def test_local_header_size_disagreeing_with_the_directory_is_caught() -> None:
    data = bytearray(zip_bytes({"sized": b"12345"}, zipfile.ZIP_STORED))
    struct.pack_into("<L", data, 18, 4)  # local compressed size
    with pytest.raises(MemberError, match="member sized: local header compressed size 4 differs"):
        _read_all(_archive(bytes(data)), "sized")


def test_missing_local_header_is_caught() -> None:
    data = bytearray(zip_bytes({"a": b"1"}))
    data[0:4] = b"XXXX"
    with pytest.raises(MemberError, match="member a: no local file header at offset 0"):
        _read_all(_archive(bytes(data)), "a")


def test_encrypted_member_is_reported_without_reading_it() -> None:
    data = bytearray(zip_bytes({"secret": b"x"}, zipfile.ZIP_STORED))
    cd = data.find(b"PK\x01\x02")
    data[cd + 8] |= 0x01
    data[8] |= 0x01
    with pytest.raises(MemberError, match="member secret: encrypted"):
        _read_all(_archive(bytes(data)), "secret")


def test_unsupported_method_is_reported_for_that_member() -> None:
    data = bytearray(zip_bytes({"odd": b"x"}, zipfile.ZIP_STORED))
    cd = data.find(b"PK\x01\x02")
    struct.pack_into("<H", data, cd + 10, 99)  # AE-x
    with pytest.raises(MemberError, match="member odd: unsupported compression method 99"):
        _read_all(_archive(bytes(data)), "odd")


def test_expansion_ratio_guard_stops_a_zip_bomb_member() -> None:
    archive = _archive(zip_bytes({"bomb": bytes(64 << 20)}), ZipLimits(max_ratio=100))
    with pytest.raises(MemberError, match=r"member bomb: expansion ratio \d+:1 exceeds max_ratio 100:1"):
        _read_all(archive, "bomb")


def test_default_ratio_guard_fires_for_a_deflate_bomb() -> None:
    # deflate cannot exceed ~1,032:1, so a default above that (the old 1,100:1) never fired
    assert DEFAULT_MAX_RATIO < 1032
    archive = _archive(zip_bytes({"bomb.bin": bytes(32 << 20)}, zipfile.ZIP_DEFLATED))
    with pytest.raises(MemberError, match=r"member bomb.bin: expansion ratio \d+:1 exceeds max_ratio 200:1"):
        _read_all(archive, "bomb.bin")


def test_ordinary_compressible_data_passes_the_default_ratio_guard() -> None:
    lines = (b"%08d,2024-01-01T00:00:00Z,GET /api/items/%d 200 %d ms\n" % (i, i % 977, i % 89) for i in range(200_000))
    text = b"".join(lines)
    archive = _archive(zip_bytes({"access.log": text}, zipfile.ZIP_DEFLATED))
    assert _read_all(archive, "access.log", Expansion.of(archive.limits)) == text


def test_total_ratio_guard_catches_a_bomb_split_into_small_members() -> None:
    # every member stays under ratio_floor (1 MiB), so only the archive-wide ratio can see the bomb
    members = {f"part{i:03d}": bytes(768 << 10) for i in range(40)}
    archive = _archive(zip_bytes(members, zipfile.ZIP_DEFLATED))
    expansion = Expansion.of(archive.limits)
    with pytest.raises(MemberError, match=r"archive-wide expansion ratio \d+:1 exceeds max_ratio 200:1"):
        for name in members:
            _read_all(archive, name, expansion)
    assert expansion.tripped


def test_total_uncompressed_budget_spans_members() -> None:
    limits = ZipLimits(max_total_uncompressed=150_000)
    archive = _archive(zip_bytes({"a": os.urandom(100_000), "b": os.urandom(100_000)}), limits)
    expansion = Expansion.of(limits)
    _read_all(archive, "a", expansion)
    with pytest.raises(MemberError, match="member b: total uncompressed size exceeds max_total_uncompressed 150000"):
        _read_all(archive, "b", expansion)
    assert expansion.tripped


def test_declared_size_smaller_than_data_is_caught() -> None:
    data = bytearray(zip_bytes({"s": CONTENT}))
    cd = data.find(b"PK\x01\x02")
    struct.pack_into("<L", data, cd + 24, 1000)  # uncompressed size in the central directory
    with pytest.raises(MemberError, match="member s: expands past its declared size of 1000 bytes"):
        _read_all(_archive(bytes(data)), "s")


def test_data_descriptor_members_from_a_non_seekable_writer_stream() -> None:
    from tests.support.bags import NonSeekable

    sink = NonSeekable()
    with zipfile.ZipFile(sink, "w", zipfile.ZIP_DEFLATED) as zf, zf.open("streamed", "w") as member:
        member.write(CONTENT)
    archive = _archive(bytes(sink.buf))
    (entry,) = archive.entries
    assert entry.has_data_descriptor
    assert _read_all(archive, "streamed") == CONTENT


def test_members_sharing_their_bytes_are_flagged_as_overlapping() -> None:
    data = bytearray(zip_bytes({"a": bytes(10_000), "b": bytes(10_000)}))
    cd = data.find(b"PK\x01\x02")
    second = data.find(b"PK\x01\x02", cd + 4)
    struct.pack_into("<L", data, second + 42, 0)  # b's local header offset -> a's header
    assert [(o.member, o.reason) for o in _archive(bytes(data)).overlaps()] == [
        ("b", "overlaps member a (zip bomb or corrupt archive)")
    ]


def test_overlapping_members_fail_verification_without_being_expanded(tmp_path: Any) -> None:
    from airflow_s3stream.archive.verify import verify_archive
    from tests.support.local_sources import LocalFileSource

    data = bytearray(zip_bytes({"a": bytes(10_000), "b": bytes(10_000)}))
    second = data.find(b"PK\x01\x02", data.find(b"PK\x01\x02") + 4)
    struct.pack_into("<L", data, second + 42, 0)
    path = tmp_path / "overlap.zip"
    path.write_bytes(bytes(data))
    report = verify_archive(LocalFileSource(path))
    assert [str(e) for e in report.errors] == ["b: overlaps member a (zip bomb or corrupt archive)"]
    assert report.members_checked == 1


@pytest.mark.timeout(60)
def test_a_deflate_stream_damaged_mid_way_ends_the_member_with_an_error_naming_it(tmp_path: Path) -> None:
    """A flipped byte can end a deflate stream early with input left over: the member fails, the
    verification goes on to the next one and ends (it once spun on the leftover input for ever)."""
    from airflow_s3stream.archive.verify import VerifyConfig, verify_archive
    from tests.support.local_sources import LocalFileSource

    pattern = bytes((i * 7919) % 251 for i in range(200_000))  # the demo's sample "noise"
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w", zipfile.ZIP_DEFLATED) as zf:
        zf.writestr("bag/noise.bin", pattern)
        zf.writestr("bag/after.txt", b"still checked")
    body = bytearray(buf.getvalue())
    info = zipfile.ZipFile(io.BytesIO(bytes(body))).getinfo("bag/noise.bin")
    fields = struct.unpack_from("<4s5H3I2H", body, info.header_offset)
    data_start = info.header_offset + 30 + fields[-2] + fields[-1]
    body[data_start + info.compress_size // 2] ^= 0xFF
    path = tmp_path / "damaged.zip"
    path.write_bytes(bytes(body))

    report = verify_archive(LocalFileSource(path), VerifyConfig(mode="zip"))

    assert not report.valid
    assert "bag/noise.bin" in [e.member for e in report.errors], [str(e) for e in report.errors]
    assert "bag/after.txt" not in [e.member for e in report.errors]
