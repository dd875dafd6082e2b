"""``split_key_range`` (used by the partitioned-export example DAG): every key in exactly one range."""

from __future__ import annotations

import itertools

import pytest

from airflow_s3stream.export.partitions import split_key_range


@pytest.mark.parametrize(
    ("lowest", "highest", "partitions"), [(1, 100, 4), (-7, 13, 3), (5, 5, 4), (0, 9, 10), (3, 1003, 7)]
)
def test_ranges_are_contiguous_half_open_and_cover_every_key_once(
    lowest: int,
    highest: int,
    partitions: int,
) -> None:
    ranges = split_key_range(lowest, highest, partitions)
    assert ranges[0][0] == lowest
    assert ranges[-1][1] == highest + 1
    assert all(lo < hi for lo, hi in ranges)  # no empty range
    assert all(a[1] == b[0] for a, b in itertools.pairwise(ranges))
    covered = [key for lo, hi in ranges for key in range(lo, hi)]
    assert covered == list(range(lowest, highest + 1))
    assert len(ranges) == min(partitions, highest - lowest + 1)
    sizes = [hi - lo for lo, hi in ranges]
    assert max(sizes) - min(sizes) <= 1  # balanced


def test_an_empty_table_still_gets_one_range_so_one_file_is_written() -> None:
    assert split_key_range(None, None, 8) == [(0, 0)]
