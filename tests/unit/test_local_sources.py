"""The test-only local sources: a local file as a ByteSource, a local directory as bag payload."""

from __future__ import annotations

from pathlib import Path

import pytest

from airflow_s3stream.errors import SourceError
from tests.support.local_sources import LocalFileSource, local_payload


def test_local_file_source_serves_its_tail_and_bounded_ranges(tmp_path: Path) -> None:
    path = tmp_path / "data.bin"
    path.write_bytes(bytes(range(256)) * 4)
    source = LocalFileSource(path)

    tail = source.open_tail(10)
    assert (tail.size, tail.data) == (1024, (bytes(range(256)) * 4)[-10:])
    assert source.open_tail(5000).data == path.read_bytes()

    stream = source.open_range(250, 260)
    assert stream.read() == bytes([250, 251, 252, 253, 254, 255, 0, 1, 2, 3])
    assert stream.read() == b""
    stream.close()


def test_a_missing_local_file_is_a_source_error_naming_it(tmp_path: Path) -> None:
    with pytest.raises(SourceError, match=r"file://.*nope\.bin: no such file"):
        LocalFileSource(tmp_path / "nope.bin").open_tail(10)


def test_local_payload_yields_every_file_in_path_order_in_chunks(tmp_path: Path) -> None:
    (tmp_path / "b" / "c").mkdir(parents=True)
    (tmp_path / "b" / "c" / "deep.txt").write_bytes(b"x" * 10)
    (tmp_path / "a.txt").write_bytes(b"hello")
    (tmp_path / "empty").mkdir()

    files = list(local_payload(tmp_path, chunk=4))

    assert [(f.path, f.size) for f in files] == [("a.txt", 5), ("b/c/deep.txt", 10)]
    assert [list(f.chunks()) for f in files] == [[b"hell", b"o"], [b"xxxx", b"xxxx", b"xx"]]
    assert files[0].source == f"file://{tmp_path / 'a.txt'}"
