"""Memory stays flat: the peak RSS of an export does not grow with the number of rows.

Each export runs in a fresh subprocess (``PostgresToS3StreamOperator.execute({})`` with the
session's ``AIRFLOW_CONN_*``); its peak RSS comes from ``os.wait4``. Ten times the rows must not
cost more than a quarter more memory.
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
    import json, sys
    from airflow_s3stream.operators import PostgresToS3StreamOperator
    bucket, rows, fmt = sys.argv[1], int(sys.argv[2]), sys.argv[3]
    sql = ("SELECT g AS id, md5(g::text) AS customer, g * 1.25 AS amount, now() AS ts, "
           "repeat('x', 40) AS pad FROM generate_series(1, %(n)s) g")
    op = PostgresToS3StreamOperator(task_id="mem", sql=sql, parameters={"n": rows}, s3_bucket=bucket,
                                    s3_key=f"mem/{fmt}/{rows}", file_format=fmt, part_size=5 * 1024 * 1024,
                                    max_concurrency=4)
    print(json.dumps(op.execute({})))
    """
)


def run_export(bucket: str, rows: int, file_format: str) -> tuple[float, dict[str, Any]]:
    """(peak RSS MiB, XCom result) of one export in a fresh child process."""
    with open(os.devnull, "w") as devnull:
        proc = subprocess.Popen(
            [sys.executable, "-c", CHILD, bucket, str(rows), file_format],
            stdout=subprocess.PIPE,
            stderr=devnull,
            env={**os.environ, "PYTHONPATH": os.getcwd()},
            text=True,
        )
        assert proc.stdout is not None
        out = proc.stdout.read()
        _, status, usage = os.wait4(proc.pid, 0)
    assert status == 0, out[-2000:]
    result = json.loads([line for line in out.splitlines() if line.startswith("{")][-1])
    return usage.ru_maxrss / 1024, result


@pytest.mark.slow
@pytest.mark.parametrize("file_format", ["csv", "parquet"])
def test_peak_memory_is_flat_across_a_tenfold_row_count(bucket: str, file_format: str) -> None:
    small_rss, small = run_export(bucket, 100_000, file_format)
    large_rss, large = run_export(bucket, 1_000_000, file_format)
    assert small["rows"] == 100_000 and large["rows"] == 1_000_000
    assert large["bytes"] > 8 * small["bytes"] > 5 * MiB  # the large export really moved ten times the data
    assert large_rss <= 1.25 * small_rss, (small_rss, large_rss)
