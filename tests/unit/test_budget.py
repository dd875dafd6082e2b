"""The memory budget: one number per task, checked at parse time; the shares are in resources.py."""

from __future__ import annotations

import pytest

from airflow_s3stream.budget import DEFAULT_MEMORY_BUDGET, MIN_MEMORY_BUDGET, check_memory_budget, rows_within
from airflow_s3stream.errors import ConfigurationError
from airflow_s3stream.export.compression import zstd_parameters
from airflow_s3stream.operators import PostgresToS3StreamOperator, S3MultipartUploadOperator
from airflow_s3stream.resources import TaskResources
from airflow_s3stream.units import MiB


def test_the_default_budget_is_128_mib_and_the_smallest_accepted_is_32_mib() -> None:
    assert (128 * MiB, 32 * MiB) == (DEFAULT_MEMORY_BUDGET, MIN_MEMORY_BUDGET)
    assert check_memory_budget(MIN_MEMORY_BUDGET) == MIN_MEMORY_BUDGET


@pytest.mark.parametrize(
    ("value", "message"),
    [
        (32 * MiB - 1, r"memory_budget=33554431 bytes is below the minimum 33554432 \(32 MiB\)"),
        ("big", r"memory_budget must be an integer number of bytes, got 'big'"),
        (True, r"memory_budget must be an integer number of bytes, got True"),
        (64.0 * MiB, r"memory_budget must be an integer number of bytes, got 67108864.0"),
    ],
)
def test_a_budget_that_is_not_a_number_of_bytes_or_too_small_is_refused_naming_it(value: object, message: str) -> None:
    with pytest.raises(ConfigurationError, match=message):
        check_memory_budget(value)


def test_rows_within_a_share_follow_the_row_width_between_the_bounds() -> None:
    assert rows_within(8 * MiB, 100.0, 1024, 1024 * 1024) == 8 * MiB // 100
    assert rows_within(8 * MiB, 1e9, 1024, 1024 * 1024) == 1024  # wider than the share: the floor
    assert rows_within(8 * MiB, 0.0, 1024, 1024 * 1024) == 1024 * 1024  # no width known: the ceiling


@pytest.mark.parametrize("level", [3, 9, 19, 22])
def test_zstd_state_is_held_to_the_compressor_share(level: int) -> None:
    share = TaskResources.for_export().compressor_bytes
    params = zstd_parameters(level, share)
    assert params.estimated_compression_context_size() <= share
    assert (
        zstd_parameters(level, None).estimated_compression_context_size() >= params.estimated_compression_context_size()
    )


def test_a_budget_too_small_is_refused_at_parse_time_naming_the_task() -> None:
    with pytest.raises(ConfigurationError, match=r"export: memory_budget=1048576 bytes is below the minimum"):
        PostgresToS3StreamOperator(task_id="export", sql="SELECT 1", s3_bucket="b", s3_key="k", memory_budget=MiB)
    with pytest.raises(ConfigurationError, match=r"upload: memory_budget must be an integer"):
        S3MultipartUploadOperator(task_id="upload", source="/tmp/x", s3_bucket="b", s3_key="k", memory_budget="big")  # type: ignore[arg-type]
