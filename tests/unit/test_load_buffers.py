"""The load's buffer sizes follow the memory budget (TaskResources.for_load); explicit knobs win."""

from __future__ import annotations

import pytest

from airflow_s3stream.errors import ConfigurationError
from airflow_s3stream.load.buffers import MAX_BATCH_ROWS, MIN_BATCH_ROWS
from airflow_s3stream.operators import S3ToPostgresStreamOperator
from airflow_s3stream.resources import TaskResources
from airflow_s3stream.units import MiB


def test_default_budget_gives_8_mib_blocks_16_chunks_ahead_and_parquet_row_groups_up_to_16_mib_whole() -> None:
    buffers = TaskResources.for_load().load
    assert (buffers.block_size, buffers.read_ahead, buffers.parquet_read_size) == (8 * MiB, 16, 1 * MiB)
    assert buffers.batch_bytes == 1 * MiB and buffers.batch_rows is None
    assert (buffers.parquet_row_group_read, buffers.parquet_read_ahead) == (16 * MiB, 4)


@pytest.mark.parametrize("total", [32 * MiB, 64 * MiB, 128 * MiB, 512 * MiB, 4096 * MiB])
@pytest.mark.parametrize("prefetch", [0, 2, 6])
def test_reader_window_and_queue_fit_in_half_the_budget(total: int, prefetch: int) -> None:
    buffers = TaskResources.for_load(total, prefetch_blocks=prefetch).load
    window = buffers.block_size * (prefetch + 2)
    assert 1 * MiB <= buffers.block_size <= 8 * MiB and 2 <= buffers.read_ahead <= 16
    assert window <= max(total // 4, (prefetch + 2) * MiB) and buffers.read_ahead * MiB <= total // 4


def test_parquet_batch_rows_follow_the_row_width_within_bounds() -> None:
    buffers = TaskResources.for_load().load
    assert buffers.parquet_batch_rows(64.0) == 16 * 1024  # 1 MiB of 64-byte rows
    assert buffers.parquet_batch_rows(1.0) == MAX_BATCH_ROWS
    assert buffers.parquet_batch_rows(10 * MiB) == MIN_BATCH_ROWS
    assert buffers.parquet_batch_rows(0.0) == MAX_BATCH_ROWS  # an empty file


def test_explicit_knobs_win() -> None:
    buffers = TaskResources.for_load(block_size=3 * MiB, read_ahead=5, batch_rows=777).load
    assert (buffers.block_size, buffers.read_ahead, buffers.parquet_read_size) == (3 * MiB, 5, 3 * MiB)
    assert buffers.parquet_batch_rows(64.0) == 777


def test_the_operator_sizes_its_reader_from_memory_budget_and_refuses_bad_values_at_parse_time() -> None:
    op = S3ToPostgresStreamOperator(task_id="t", s3_bucket="b", s3_key="k", table="t", memory_budget=64 * MiB)
    assert (op.reader_config.block_size, op.buffers.read_ahead, op.buffers.batch_bytes) == (8 * MiB, 16, 512 * 1024)
    with pytest.raises(ConfigurationError, match="memory_budget"):
        S3ToPostgresStreamOperator(task_id="t", s3_bucket="b", s3_key="k", table="t", memory_budget=1024)
    with pytest.raises(ConfigurationError, match="read_ahead must be a positive integer"):
        S3ToPostgresStreamOperator(task_id="t", s3_bucket="b", s3_key="k", table="t", read_ahead=0)
