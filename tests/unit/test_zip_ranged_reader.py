"""RangedReader as a file object, over a local file source (the S3 behaviour is in integration tests)."""

from __future__ import annotations

import io
import os
import random
import zipfile
from pathlib import Path
from typing import Any

import pytest

from airflow_s3stream.errors import SourceError
from airflow_s3stream.s3.reader import RangedReader, ReaderConfig
from tests.support.local_sources import LocalFileSource

KiB, MiB = 1024, 1024 * 1024


@pytest.fixture
def blob(tmp_path: Path) -> tuple[Path, bytes]:
    data = os.urandom(3 * MiB + 12345)
    path = tmp_path / "blob"
    path.write_bytes(data)
    return path, data


@pytest.mark.parametrize("prefetch", [0, 3])
def test_random_seeks_and_reads_return_the_same_bytes_as_the_file(blob: tuple[Path, bytes], prefetch: int) -> None:
    path, data = blob
    rng = random.Random(7)
    config = ReaderConfig(block_size=256 * KiB, tail_size=64 * KiB, prefetch_blocks=prefetch)
    with RangedReader(LocalFileSource(path), config) as reader:
        assert reader.size == len(data)
        for _ in range(300):
            pos, n = rng.randrange(len(data) + 10), rng.randrange(1, 600 * KiB)
            assert reader.seek(pos) == pos
            assert reader.read(n) == data[pos : pos + n]
            assert reader.tell() == pos + len(data[pos : pos + n])
        reader.seek(-5, io.SEEK_END)
        assert reader.read() == data[-5:]


def test_open_costs_one_request_and_a_sequential_pass_one_more(blob: tuple[Path, bytes]) -> None:
    path, data = blob
    config = ReaderConfig(block_size=256 * KiB, tail_size=64 * KiB, prefetch_blocks=0)
    with RangedReader(LocalFileSource(path), config) as reader:
        assert reader.stats.requests == 1
        assert reader.read(len(data) - 100) == data[:-100]
        assert reader.stats.requests == 2
        assert reader.stats.bytes_fetched == len(data)  # tail once, the rest once


def test_parallel_prefetch_uses_one_request_per_block(blob: tuple[Path, bytes]) -> None:
    path, data = blob
    block = 256 * KiB
    config = ReaderConfig(block_size=block, tail_size=64 * KiB, prefetch_blocks=4)
    with RangedReader(LocalFileSource(path), config) as reader:
        assert reader.read() == data
        blocks = -(-(len(data) - 64 * KiB) // block)
        assert reader.stats.requests == 1 + blocks


def test_zipfile_reads_an_archive_through_the_reader(tmp_path: Path) -> None:
    path = tmp_path / "a.zip"
    with zipfile.ZipFile(path, "w") as zf:
        zf.writestr("x.txt", b"x" * 100_000)
    with RangedReader(LocalFileSource(path)) as reader, zipfile.ZipFile(reader) as zf:
        assert zf.read("x.txt") == b"x" * 100_000


def test_missing_file_names_the_source(tmp_path: Path) -> None:
    with pytest.raises(SourceError, match="no such file"):
        RangedReader(LocalFileSource(tmp_path / "nope.zip"))


@pytest.mark.parametrize(
    "kwargs",
    [{"block_size": 1000}, {"tail_size": 10}, {"prefetch_blocks": -1}, {"prefetch_blocks": 65}, {"max_streams": 1}],
)
def test_invalid_reader_config_is_rejected(kwargs: dict[str, Any]) -> None:
    with pytest.raises(ValueError):
        ReaderConfig(**kwargs)
