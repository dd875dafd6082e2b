"""The memory budget: one number per task, every buffer size derived from it, explicit knobs kept."""

from __future__ import annotations

import pytest

from airflow_s3stream.budget import DEFAULT_MEMORY_BUDGET, MemoryBudget
from airflow_s3stream.errors import ConfigurationError
from airflow_s3stream.export.compression import zstd_parameters
from airflow_s3stream.operators import PostgresToS3StreamOperator, S3MultipartUploadOperator

MiB = 1024 * 1024


def test_default_budget_gives_8_mib_parts_7_in_flight_within_half_of_it() -> None:
    part_size, in_flight = MemoryBudget().parts()
    assert (part_size, in_flight) == (8 * MiB, 7)
    assert (in_flight + 1) * part_size <= DEFAULT_MEMORY_BUDGET // 2


@pytest.mark.parametrize("total", [32 * MiB, 64 * MiB, 100 * MiB, 256 * MiB, 2048 * MiB])
def test_part_buffers_always_fit_in_half_the_budget_and_parts_stay_legal(total: int) -> None:
    part_size, in_flight = MemoryBudget(total).parts()
    assert 5 * MiB <= part_size <= 16 * MiB and 1 <= in_flight <= 16
    assert (in_flight + 1) * part_size <= total // 2


def test_explicit_knobs_win_and_the_other_one_still_follows_the_budget() -> None:
    assert MemoryBudget().parts(part_size=32 * MiB, max_concurrency=2) == (32 * MiB, 2)
    assert MemoryBudget().parts(max_concurrency=3) == (16 * MiB, 3)  # 64 MiB / 4 slots
    assert MemoryBudget().parts(part_size=16 * MiB) == (16 * MiB, 3)


def test_row_group_rows_follow_the_measured_row_width() -> None:
    budget = MemoryBudget()
    assert budget.row_group_rows(100.0) == budget.row_group_bytes // 100
    assert budget.row_group_rows(10_000.0) < budget.row_group_rows(100.0)
    assert budget.row_group_rows(1e9) == 1024 and budget.row_group_rows(0.0) == 1024 * 1024


@pytest.mark.parametrize("level", [3, 9, 19, 22])
def test_zstd_state_is_held_to_the_compressor_share(level: int) -> None:
    share = MemoryBudget().compressor_bytes
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


def test_operators_derive_their_buffers_from_the_budget() -> None:
    export = PostgresToS3StreamOperator(task_id="e", sql="SELECT 1", s3_bucket="b", s3_key="k", memory_budget=256 * MiB)
    assert (export.upload_config.part_size, export.upload_config.max_concurrency) == (16 * MiB, 7)
    upload = S3MultipartUploadOperator(task_id="u", source="/tmp/x", s3_bucket="b", s3_key="k")
    assert (upload.config.part_size, upload.config.max_concurrency) == (8 * MiB, 7)


def test_the_verifiers_digest_queue_is_a_sixteenth_of_the_budget() -> None:
    from airflow_s3stream.operators import S3ZipVerifyOperator

    assert MemoryBudget(128 * MiB).digest_queue_bytes == 8 * MiB
    assert MemoryBudget(32 * MiB).digest_queue_bytes == 2 * MiB  # the smallest budget accepted
    verify = S3ZipVerifyOperator(task_id="v", s3_bucket="b", s3_key="k.zip", memory_budget=256 * MiB)
    assert verify.hash_queue_bytes == 16 * MiB
