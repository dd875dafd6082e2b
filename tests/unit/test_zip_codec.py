"""The ZIP codec (ISA-L when installed, else zlib) gives zlib's results bit for bit, and a damaged
deflate stream raises one of the errors the member reader turns into a finding."""

from __future__ import annotations

import os
import zlib

import pytest

from airflow_s3stream.archive.zip import codec


def test_crc32_equals_zlib_chunk_by_chunk() -> None:
    data = os.urandom(3 * 1024 * 1024 + 17)
    value = 0
    for start in range(0, len(data), 65536 + 3):
        value = codec.crc32(data[start : start + 65536 + 3], value)
    assert value == zlib.crc32(data)
    assert codec.crc32(b"") == 0 and codec.crc32(b"a", 0) == zlib.crc32(b"a")


def test_the_installed_isal_is_the_one_used() -> None:
    """The dependency is installed here, so the fast path is what runs (the fallback is zlib)."""
    from isal import isal_zlib

    assert codec._crc32 is isal_zlib.crc32


def test_raw_inflater_decodes_a_raw_deflate_stream_in_bounded_pieces() -> None:
    data = (b"lorem ipsum " * 50000) + os.urandom(100000)
    packer = zlib.compressobj(6, zlib.DEFLATED, -15)
    packed = packer.compress(data) + packer.flush()
    inflater = codec.raw_inflater()
    out = bytearray(inflater.decompress(packed, 65536))
    while inflater.unconsumed_tail:
        piece = inflater.decompress(inflater.unconsumed_tail, 65536)
        assert len(piece) <= 65536
        out += piece
    out += inflater.flush()
    assert bytes(out) == data and inflater.eof


def test_a_damaged_deflate_stream_raises_an_inflate_error() -> None:
    with pytest.raises(codec.INFLATE_ERRORS):
        codec.raw_inflater().decompress(b"\xff" * 64)
