"""One TaskResources per task: the memory budget turned into sizes, one pool rule, the retry policy."""

from __future__ import annotations

from collections.abc import Callable

import pytest

from airflow_s3stream.errors import ConfigurationError
from airflow_s3stream.operators import (
    PostgresToS3StreamOperator,
    S3MultipartUploadOperator,
    S3StreamCommitOperator,
    S3ToBagItZipOperator,
    S3ToPostgresStreamOperator,
    S3ZipVerifyOperator,
)
from airflow_s3stream.resources import (
    MIN_POOL_CONNECTIONS,
    SPARE_CONNECTIONS,
    TaskResources,
    pool_connections,
)
from airflow_s3stream.s3.limits import S3_MAX_PART_SIZE, S3_MIN_PART_SIZE
from airflow_s3stream.s3.retry import RetryPolicy
from airflow_s3stream.units import GiB, MiB

BUDGETS = [64 * MiB, 96 * MiB, 128 * MiB, 200 * MiB, 256 * MiB, 512 * MiB, 1 * GiB, 1536 * MiB, 2 * GiB]
WITH_PARTS: dict[str, Callable[[int], TaskResources]] = {
    "upload": TaskResources.for_upload,
    "export": TaskResources.for_export,
    "package": lambda budget: TaskResources.for_package(budget, prefetch_objects=16),
}


def test_the_default_budget_keeps_todays_sizes() -> None:
    upload, export = TaskResources.for_upload(), TaskResources.for_export()
    assert (upload.parts.part_size, upload.parts.in_flight) == (8 * MiB, 7)
    assert export.parts == upload.parts
    assert (export.row_group_bytes, export.compressor_bytes) == (8 * MiB, 16 * MiB)
    verify = TaskResources.for_verify()
    assert (verify.reader.block_size, verify.reader.max_streams, verify.digest_queue_bytes) == (
        8 * MiB,
        6,
        8 * MiB,
    )
    load = TaskResources.for_load()
    assert (load.reader.block_size, load.load.read_ahead) == (8 * MiB, 16)


@pytest.mark.parametrize("kind", sorted(WITH_PARTS))
@pytest.mark.parametrize("budget", BUDGETS)
def test_parts_are_legal_and_their_buffers_fit_in_half_the_budget(kind: str, budget: int) -> None:
    parts = WITH_PARTS[kind](budget).parts
    assert S3_MIN_PART_SIZE <= parts.part_size <= min(16 * MiB, S3_MAX_PART_SIZE)
    assert parts.part_size % MiB == 0
    assert 1 <= parts.in_flight <= 16
    assert parts.held_bytes == (parts.in_flight + 1) * parts.part_size <= budget // 2


@pytest.mark.parametrize("budget", BUDGETS)
def test_the_exports_row_group_and_compressor_shares_fit_beside_its_parts(budget: int) -> None:
    export = TaskResources.for_export(budget)
    assert export.row_group_bytes == budget // 16 and export.compressor_bytes == budget // 8
    assert export.parts.held_bytes + export.row_group_bytes + export.compressor_bytes <= budget


@pytest.mark.parametrize("budget", BUDGETS)
def test_the_verifiers_read_ahead_fits_in_half_the_budget_within_the_readers_limits(budget: int) -> None:
    verify = TaskResources.for_verify(budget)
    window = verify.reader
    assert 2 <= window.max_streams <= 64
    assert window.held_bytes <= budget // 2
    assert verify.digest_queue_bytes == budget // 16


@pytest.mark.parametrize("budget", BUDGETS)
@pytest.mark.parametrize("prefetch", [0, 2, 6])
def test_the_loads_window_and_queue_each_fit_in_a_quarter(budget: int, prefetch: int) -> None:
    load = TaskResources.for_load(budget, prefetch_blocks=prefetch)
    assert load.load.block_size * (prefetch + 2) <= budget // 4
    assert load.load.read_ahead * MiB <= budget // 4
    assert load.reader.block_size == load.load.block_size


@pytest.mark.parametrize(
    "resources",
    [
        TaskResources.for_upload(),
        TaskResources.for_export(2 * GiB),
        TaskResources.for_package(prefetch_objects=40),
        TaskResources.for_verify(2 * GiB),
        TaskResources.for_load(prefetch_blocks=30),
        TaskResources.for_commit(max_concurrency=50),
    ],
    ids=["upload", "export", "package", "verify", "load", "commit"],
)
def test_every_kind_of_task_gets_a_pool_from_the_one_rule(resources: TaskResources) -> None:
    parallel = resources.pool_connections - SPARE_CONNECTIONS
    assert resources.pool_connections == pool_connections(parallel)
    assert resources.pool_connections >= MIN_POOL_CONNECTIONS


def test_the_pool_holds_every_parallel_request_plus_spares_and_never_less_than_botocores() -> None:
    assert pool_connections(1) == MIN_POOL_CONNECTIONS == 10
    assert pool_connections(7) == 7 + SPARE_CONNECTIONS
    assert TaskResources.for_upload().pool_connections == 11  # 7 parts in flight
    assert TaskResources.for_verify().pool_connections == 10  # 6 streams
    assert TaskResources.for_commit(max_concurrency=8).pool_connections == 12  # 8 completes
    bag = TaskResources.for_package(prefetch_objects=16)
    assert bag.pool_connections == 7 + 16 + SPARE_CONNECTIONS  # parts and sources share one client
    apart = TaskResources.for_package(prefetch_objects=16, separate_source=True)
    assert (apart.pool_connections, apart.source_pool_connections) == (11, 16 + SPARE_CONNECTIONS)


def test_explicit_knobs_win_and_the_other_one_still_follows_the_budget() -> None:
    assert TaskResources.for_upload(part_size=32 * MiB, max_concurrency=2).parts.held_bytes == 3 * 32 * MiB
    assert TaskResources.for_upload(max_concurrency=3).parts.part_size == 16 * MiB  # 64 MiB / 4 slots
    assert TaskResources.for_export(part_size=16 * MiB).parts.in_flight == 3
    assert TaskResources.for_verify(max_streams=16).reader.max_streams == 16
    assert TaskResources.for_verify(prefetch_blocks=12).reader.streams == 12


@pytest.mark.parametrize(
    ("build", "message"),
    [
        (lambda: TaskResources.for_upload(part_size=4 * MiB), r"part_size=4194304 bytes is outside S3's limits"),
        (lambda: TaskResources.for_export(max_concurrency=0), r"max_concurrency must be between 1 and 64, got 0"),
        (lambda: TaskResources.for_commit(max_concurrency=65), r"max_concurrency must be between 1 and 64"),
        (lambda: TaskResources.for_package(prefetch_objects=0), r"prefetch_objects must be a positive integer"),
        (lambda: TaskResources.for_verify(block_size=0), r"block_size must be a positive integer"),
        (lambda: TaskResources.for_load(read_ahead=0), r"read_ahead must be a positive integer"),
        (lambda: TaskResources.for_upload(max_attempts=0), r"max_attempts must be a positive integer, got 0"),
        (lambda: TaskResources.for_load(16 * MiB), r"memory_budget=16777216 bytes is below the minimum"),
    ],
)
def test_a_knob_out_of_range_is_refused_naming_it(build: Callable[[], TaskResources], message: str) -> None:
    with pytest.raises(ConfigurationError, match=message):
        build()


def test_the_retry_policy_is_max_attempts_when_given_else_the_default() -> None:
    assert TaskResources.for_export(max_attempts=3).retry == RetryPolicy(max_attempts=3)
    assert TaskResources.for_verify().retry == RetryPolicy()


def test_a_size_the_kind_of_task_does_not_use_is_absent() -> None:
    with pytest.raises(LookupError, match="no parts"):
        _ = TaskResources.for_verify().parts
    with pytest.raises(LookupError, match="no reader window"):
        _ = TaskResources.for_upload().reader
    with pytest.raises(LookupError, match="no load buffers"):
        _ = TaskResources.for_export().load
    with pytest.raises(LookupError, match="no Parquet row group"):
        TaskResources.for_load().row_group_rows(100.0)


def test_the_exports_row_groups_follow_the_measured_row_width() -> None:
    export = TaskResources.for_export()
    assert export.row_group_rows(100.0) == export.row_group_bytes // 100
    assert export.row_group_rows(10_000.0) < export.row_group_rows(100.0)
    assert export.row_group_rows(1e9) == 1024 and export.row_group_rows(0.0) == 1024 * 1024


def test_operators_build_their_resources_once_at_parse_time() -> None:
    export = PostgresToS3StreamOperator(task_id="e", sql="SELECT 1", s3_bucket="b", s3_key="k", memory_budget=256 * MiB)
    assert (export.upload_config.part_size, export.upload_config.max_concurrency) == (16 * MiB, 7)
    assert export.options.resources is export.task_resources  # the row group and compressor follow the same budget
    upload = S3MultipartUploadOperator(task_id="u", source="/tmp/x", s3_bucket="b", s3_key="k", max_attempts=2)
    assert (upload.config.part_size, upload.config.max_concurrency, upload.config.retry.max_attempts) == (8 * MiB, 7, 2)
    verify = S3ZipVerifyOperator(task_id="v", s3_bucket="b", s3_key="k.zip", memory_budget=256 * MiB)
    assert (verify.hash_queue_bytes, verify.reader_config.max_streams) == (16 * MiB, 14)
    big = S3ZipVerifyOperator(task_id="v", s3_bucket="b", s3_key="k.zip", memory_budget=2 * GiB)
    assert big.reader_config.max_streams == 64  # the reader's ceiling, not past it
    bag = S3ToBagItZipOperator(task_id="p", source_bucket="s", s3_bucket="b", s3_key="k.zip", memory_budget=64 * MiB)
    assert (bag.multipart_config.part_size, bag.multipart_config.max_concurrency) == (5 * MiB, 5)
    load = S3ToPostgresStreamOperator(task_id="l", s3_bucket="b", s3_key="k", table="t", prefetch_blocks=2)
    assert (load.reader_config.block_size, load.task_resources.pool_connections) == (8 * MiB, 10)
    commit = S3StreamCommitOperator(task_id="c", s3_bucket="b", s3_prefix="p", staged=[], max_concurrency=4)
    assert commit.task_resources.pool_connections == 10
