"""Memory stays flat and within the budget: the peak RSS of an export does not grow with the rows.

Each export runs in a fresh subprocess (``PostgresToS3StreamOperator.execute({})`` with the
session's ``AIRFLOW_CONN_*``); its peak RSS is the child's own ``VmHWM``
(:mod:`tests.support.memory`). Ten times the rows must not cost more than a quarter more memory,
and at the default ``memory_budget`` (128 MiB) no format adds more than the budget to an idle
process that has imported what the task imports (for Parquet, pyarrow's libraries too). The exporting child
imports pyarrow only inside the export, as a task does, so Arrow's allocator is chosen as in
production (jemalloc for Arrow's C++ allocations too, not only for those made from Python).
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
from typing import Any

import pytest

MiB = 1024 * 1024
CHILD = textwrap.dedent(
    """
    import json, os, sys
    from airflow_s3stream.operators import PostgresToS3StreamOperator
    from tests.support.memory import peak_rss_kib
    from airflow_s3stream.hooks.s3 import S3StreamHook
    bucket, rows, fmt, knobs = sys.argv[1], int(sys.argv[2]), sys.argv[3], json.loads(sys.argv[4])
    if rows == 0:  # the idle task runtime: the same imports and an S3 client, no export
        if fmt.startswith("parquet"):
            import pyarrow.parquet  # its libraries loaded too: the tasks of a worker share them
        S3StreamHook().get_s3_client()
        print(json.dumps({"rows": 0, "peak_kib": peak_rss_kib()}))
        raise SystemExit(0)
    assert "pyarrow" not in sys.modules  # as in a task: the export imports pyarrow itself
    fmt, _, compression = fmt.partition("+")
    sql = ("SELECT g AS id, md5(g::text) AS customer, g * 1.25 AS amount, now() AS ts, "
           "repeat('x', 40) AS pad FROM generate_series(1, %(n)s) g")
    op = PostgresToS3StreamOperator(task_id="mem", sql=sql, parameters={"n": rows}, s3_bucket=bucket,
                                    s3_key=f"mem/{fmt}/{rows}", file_format=fmt, compression=compression or None,
                                    **knobs)
    result = op.execute({})
    print(json.dumps({**result, "peak_kib": peak_rss_kib(), "arrow_pool": os.environ.get("ARROW_DEFAULT_MEMORY_POOL")}))
    """
)


SMALL_KNOBS = {"part_size": 5 * MiB, "max_concurrency": 4}


def run_export(
    bucket: str, rows: int, file_format: str, knobs: dict[str, Any] | None = None
) -> tuple[float, dict[str, Any]]:
    """(peak RSS MiB, XCom result) of one export in a fresh child process (``rows=0``: idle)."""
    knobs = SMALL_KNOBS if knobs is None else knobs
    with open(os.devnull, "w") as devnull:
        proc = subprocess.Popen(
            [sys.executable, "-c", CHILD, bucket, str(rows), file_format, json.dumps(knobs)],
            stdout=subprocess.PIPE,
            stderr=devnull,
            env={**os.environ, "PYTHONPATH": os.getcwd()},
            text=True,
        )
        assert proc.stdout is not None
        out = proc.stdout.read()
        status = proc.wait()
    assert status == 0, out[-2000:]
    result = json.loads([line for line in out.splitlines() if line.startswith("{")][-1])
    return result["peak_kib"] / 1024, result


@pytest.mark.slow
@pytest.mark.parametrize("file_format", ["csv", "parquet"])
def test_peak_memory_is_flat_across_a_tenfold_row_count(bucket: str, file_format: str) -> None:
    small_rss, small = run_export(bucket, 100_000, file_format)
    large_rss, large = run_export(bucket, 1_000_000, file_format)
    assert small["rows"] == 100_000 and large["rows"] == 1_000_000
    assert large["bytes"] > 8 * small["bytes"] > 5 * MiB  # the large export really moved ten times the data
    assert large_rss <= 1.25 * small_rss, (small_rss, large_rss)


@pytest.mark.slow
@pytest.mark.parametrize("file_format", ["csv", "csv+zstd", "jsonl", "parquet", "parquet+zstd"])
def test_default_budget_adds_at_most_128_mib_over_an_idle_task(bucket: str, file_format: str) -> None:
    idle_rss, _ = run_export(bucket, 0, file_format, {})
    rss, result = run_export(bucket, 1_000_000, file_format, {})
    assert result["rows"] == 1_000_000
    if file_format.startswith("parquet"):  # Arrow's C++ pool was chosen before pyarrow was first imported
        assert result["arrow_pool"] == "jemalloc", result["arrow_pool"]
    print(f"\n{file_format}: idle {idle_rss:.0f} MiB, export {rss:.0f} MiB, added {rss - idle_rss:.0f} MiB")
    assert rss - idle_rss <= 128, (idle_rss, rss)


def test_a_high_zstd_level_is_held_to_the_budget_and_still_decodes(bucket: str, s3_client: Any) -> None:
    import zstandard

    rss_19, result = run_export(bucket, 300_000, "csv+zstd", {"compression_level": 19})
    idle_rss, _ = run_export(bucket, 0, "csv", {})
    assert rss_19 - idle_rss <= 128, (idle_rss, rss_19)  # level 19's own state is ~81 MiB, shrunk to 16
    key = result["files"][0]["key"]
    data = zstandard.ZstdDecompressor().decompress(
        s3_client.get_object(Bucket=bucket, Key=key)["Body"].read(), max_output_size=1 << 30
    )
    assert data.count(b"\n") == 300_001
