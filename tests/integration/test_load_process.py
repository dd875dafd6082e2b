"""The load as a task process sees it: flat memory at two sizes within the default memory budget,
and a clean exit after Parquet.

Each load runs in a fresh child process (the operator for memory, with the session's
``AIRFLOW_CONN_*``; the engine for the 20 Parquet runs, to keep them quick). The child reports its
own peak RSS (``VmHWM`` of its address space): ``ru_maxrss`` from ``wait4`` would also count the
pytest process it was forked from, whose RSS grows with the objects the in-process moto server holds.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
from typing import Any

import pytest

from airflow_s3stream.budget import DEFAULT_MEMORY_BUDGET
from airflow_s3stream.operators import PostgresToS3StreamOperator

MiB = 1024 * 1024
SOURCE_SQL = (
    "SELECT g AS id, md5(g::text) AS customer, g * 1.25 AS amount, now() AS ts, repeat('x', 40) AS pad "
    "FROM generate_series(1, %(n)s) g"
)
TABLE_DDL = "CREATE TABLE {t} (id int8, customer text, amount numeric, ts timestamptz, pad text)"

OPERATOR_CHILD = textwrap.dedent(
    """
    import json, sys
    from airflow_s3stream.operators import S3ToPostgresStreamOperator
    bucket, key, table = sys.argv[1:4]
    op = S3ToPostgresStreamOperator(task_id="mem", s3_bucket=bucket, s3_key=key, table=table)
    result = op.execute({})
    hwm = [line for line in open("/proc/self/status") if line.startswith("VmHWM:")][0]
    print(json.dumps({**result, "peak_rss_kib": int(hwm.split()[1])}))
    """
)
IDLE_CHILD = textwrap.dedent(
    """
    import json
    from airflow_s3stream.operators import S3ToPostgresStreamOperator
    hwm = [line for line in open("/proc/self/status") if line.startswith("VmHWM:")][0]
    print(json.dumps({"peak_rss_kib": int(hwm.split()[1])}))
    """
)
ENGINE_CHILD = textwrap.dedent(
    """
    import json, sys, tempfile
    import boto3, psycopg
    from botocore.config import Config
    from airflow_s3stream.load import LoadOptions, LoadStep, SourceSpec, load_into_postgres
    tempfile.tempdir = "/nonexistent/s3stream-no-disk"  # a spool to local disk would fail here
    endpoint, key_id, secret, region, pg_uri, bucket, key, table = sys.argv[1:9]
    client = boto3.client("s3", endpoint_url=endpoint, aws_access_key_id=key_id, aws_secret_access_key=secret,
                          region_name=region, config=Config(s3={"addressing_style": "path"},
                                                            retries={"total_max_attempts": 1}))
    with psycopg.connect(pg_uri) as conn:
        result = load_into_postgres(conn, client, table=table, steps=[LoadStep(SourceSpec(bucket, key))],
                                    options=LoadOptions(mode="replace"))
    print(json.dumps(result.to_dict()))
    """
)


def run_child(code: str, *args: str) -> tuple[int, str]:
    """(exit status, stdout) of ``code`` run in a fresh interpreter."""
    with open(os.devnull, "w") as devnull:
        proc = subprocess.Popen(
            [sys.executable, "-c", code, *args],
            stdout=subprocess.PIPE,
            stderr=devnull,
            env={**os.environ, "PYTHONPATH": os.getcwd()},
            text=True,
        )
        assert proc.stdout is not None
        out = proc.stdout.read()
        _, status, _ = os.wait4(proc.pid, 0)
    return status, out


def result_of(out: str) -> dict[str, Any]:
    return dict(json.loads([line for line in out.splitlines() if line.startswith("{")][-1]))


def export(bucket: str, key: str, rows: int, file_format: str) -> dict[str, Any]:
    return PostgresToS3StreamOperator(
        task_id="export", sql=SOURCE_SQL, parameters={"n": rows}, s3_bucket=bucket, s3_key=key, file_format=file_format
    ).execute({})


@pytest.mark.slow
@pytest.mark.parametrize("file_format", ["csv", "parquet"])
def test_peak_memory_is_flat_across_a_tenfold_row_count_and_within_the_default_budget(
    pg_conn: Any, bucket: str, file_format: str
) -> None:
    schema = str(pg_conn.execute("SELECT current_schema()").fetchone()[0])
    status, out = run_child(IDLE_CHILD)
    assert status == 0, out[-2000:]
    idle_rss = result_of(out)["peak_rss_kib"] / 1024
    measured = {}
    for rows in (100_000, 1_000_000):
        exported = export(bucket, f"mem/{rows}", rows, file_format)
        table = f"{schema}.t{rows}"
        pg_conn.execute(TABLE_DDL.format(t=table))
        status, out = run_child(OPERATOR_CHILD, bucket, exported["files"][0]["key"], table)
        assert status == 0, out[-2000:]
        loaded = result_of(out)
        assert loaded["rows"] == rows
        rss = loaded["peak_rss_kib"] / 1024
        assert pg_conn.execute(f"SELECT count(*) FROM {table}").fetchone()[0] == rows
        measured[rows] = (rss, exported["bytes"])
    (small_rss, small_bytes), (large_rss, large_bytes) = measured[100_000], measured[1_000_000]
    assert large_bytes > 8 * small_bytes > 3 * MiB  # the large load really moved ten times the data
    assert large_rss <= 1.25 * small_rss, (small_rss, large_rss)
    # The default memory_budget (128 MiB) bounds what a 1M-row load adds to an idle process that
    # has imported the operator: buffers, and the fixed costs of pyarrow, botocore and psycopg.
    print(f"{file_format}: idle {idle_rss:.1f} MiB, 100k {small_rss:.1f} MiB, 1M {large_rss:.1f} MiB")
    assert large_rss - idle_rss <= DEFAULT_MEMORY_BUDGET / MiB, (idle_rss, large_rss)


@pytest.mark.slow
def test_a_parquet_load_process_exits_cleanly_twenty_times_out_of_twenty(
    pg_conn: Any, pg_uri: str, bucket: str, s3: Any
) -> None:
    """pyarrow 26 aborts at exit (134) after reading Parquet from a Python file object; the load
    reads natively on pyarrow's S3FileSystem (no disk: the child has no usable temporary directory),
    whose S3 layer pyarrow finalizes at exit, so every run must exit 0."""
    schema = str(pg_conn.execute("SELECT current_schema()").fetchone()[0])
    exported = export(bucket, "trap/orders", 3_000, "parquet")
    table = f"{schema}.trap"
    pg_conn.execute(TABLE_DDL.format(t=table))
    args = (s3.endpoint_url, s3.access_key_id, s3.secret_access_key, s3.region, pg_uri, bucket)
    statuses = []
    for _ in range(20):
        status, out = run_child(ENGINE_CHILD, *args, exported["files"][0]["key"], table)
        statuses.append(status)
        if status == 0:
            assert result_of(out)["rows"] == 3_000
    assert statuses == [0] * 20
    assert pg_conn.execute(f"SELECT count(*) FROM {table}").fetchone()[0] == 3_000
