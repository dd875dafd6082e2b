"""Splitting into parts, re-runs, manifests and empty results of PostgresToS3StreamOperator."""

from __future__ import annotations

import csv
import io
import json
from typing import Any

import pyarrow.parquet as pq
import pytest
from airflow.sdk.exceptions import AirflowFailException

from airflow_s3stream.errors import ConfigurationError
from airflow_s3stream.operators import PostgresToS3StreamOperator


def keys(client: Any, bucket: str) -> list[str]:
    return sorted(o["Key"] for o in client.list_objects_v2(Bucket=bucket).get("Contents", []))


def body(client: Any, bucket: str, key: str) -> bytes:
    return bytes(client.get_object(Bucket=bucket, Key=key)["Body"].read())


def run(bucket: str, sql: str, key: str = "daily/2024-01-01", **kwargs: Any) -> dict[str, Any]:
    op = PostgresToS3StreamOperator(task_id="export", sql=sql, s3_bucket=bucket, s3_key=key, **kwargs)
    return op.execute({})


def numbers(n: int) -> str:
    return f"SELECT g AS id, 'row ' || g AS label FROM generate_series(1, {n}) g"


def test_max_rows_per_file_writes_numbered_complete_csv_parts(bucket: str, s3_client: Any) -> None:
    result = run(bucket, numbers(2500), max_rows_per_file=1000)
    assert [f["key"] for f in result["files"]] == [f"daily/2024-01-01/part-0000{i}.csv" for i in range(3)]
    assert [f["rows"] for f in result["files"]] == [1000, 1000, 500]
    ids: list[int] = []
    for f in result["files"]:
        rows = list(csv.reader(io.StringIO(body(s3_client, bucket, f["key"]).decode())))
        assert rows[0] == ["id", "label"]  # every part is a complete file with its header
        ids += [int(r[0]) for r in rows[1:]]
    assert ids == list(range(1, 2501))


def test_max_bytes_per_file_splits_parquet_at_row_groups(bucket: str, s3_client: Any) -> None:
    result = run(
        bucket,
        "SELECT g AS id, md5(g::text) AS h FROM generate_series(1, 200000) g",
        file_format="parquet",
        max_bytes_per_file=1_000_000,
        compression="zstd",
    )
    assert len(result["files"]) > 1
    total = 0
    for f in result["files"]:
        table = pq.read_table(io.BytesIO(body(s3_client, bucket, f["key"])))  # each has its footer
        assert table.num_rows == f["rows"]
        total += table.num_rows
    assert total == result["rows"] == 200000


def test_rerun_overwrites_parts_and_removes_stale_ones_then_writes_manifest_last(bucket: str, s3_client: Any) -> None:
    first = run(bucket, numbers(5000), max_rows_per_file=1000, write_manifest=True, compression="gzip")
    assert len(first["files"]) == 5
    s3_client.put_object(Bucket=bucket, Key="daily/2024-01-01/notes.txt", Body=b"not ours")
    second = run(bucket, numbers(1500), max_rows_per_file=1000, write_manifest=True, compression="gzip")
    assert keys(s3_client, bucket) == [
        "daily/2024-01-01/_manifest.json",
        "daily/2024-01-01/notes.txt",
        "daily/2024-01-01/part-00000.csv.gz",
        "daily/2024-01-01/part-00001.csv.gz",
    ]
    manifest = json.loads(body(s3_client, bucket, "daily/2024-01-01/_manifest.json"))
    assert manifest["rows"] == 1500 and second["manifest_key"] == "daily/2024-01-01/_manifest.json"
    assert [(f["key"], f["rows"]) for f in manifest["files"]] == [
        ("daily/2024-01-01/part-00000.csv.gz", 1000),
        ("daily/2024-01-01/part-00001.csv.gz", 500),
    ]
    assert all(f["checksum"]["value"] for f in manifest["files"])
    assert manifest["columns"] == [{"name": "id", "type": "int4"}, {"name": "label", "type": "text"}]
    sizes = {k: s3_client.head_object(Bucket=bucket, Key=k)["ContentLength"] for k in keys(s3_client, bucket)}
    assert [sizes[f["key"]] for f in manifest["files"]] == [f["bytes"] for f in manifest["files"]]
    manifest_time = s3_client.head_object(Bucket=bucket, Key="daily/2024-01-01/_manifest.json")["LastModified"]
    part_time = s3_client.head_object(Bucket=bucket, Key="daily/2024-01-01/part-00001.csv.gz")["LastModified"]
    assert manifest_time >= part_time


def test_empty_result_writes_a_header_only_csv_by_default(bucket: str, s3_client: Any) -> None:
    result = run(bucket, numbers(0), key="e/none")
    assert result["rows"] == 0 and [f["key"] for f in result["files"]] == ["e/none.csv"]
    assert body(s3_client, bucket, "e/none.csv") == b"id,label\n"


def test_empty_result_parquet_keeps_the_schema(bucket: str, s3_client: Any) -> None:
    run(bucket, numbers(0), key="e/none", file_format="parquet")
    table = pq.read_table(io.BytesIO(body(s3_client, bucket, "e/none.parquet")))
    assert table.num_rows == 0 and table.schema.names == ["id", "label"]


def test_empty_result_can_write_nothing(bucket: str, s3_client: Any) -> None:
    result = run(bucket, numbers(0), key="e/none", empty_result="skip", file_format="jsonl")
    assert result["files"] == [] and result["rows"] == 0
    assert keys(s3_client, bucket) == []


@pytest.mark.parametrize("file_format", ["csv", "parquet"])
def test_empty_result_fail_fails_the_task_naming_the_query_and_interval(
    bucket: str, s3_client: Any, file_format: str
) -> None:
    sql = "SELECT g AS id FROM generate_series(1, 10) g WHERE g > %(start)s AND g < %(end)s"
    with pytest.raises(AirflowFailException) as failure:
        run(bucket, sql, key="e/none", empty_result="fail", file_format=file_format, parameters={"start": 5, "end": 6})
    message = str(failure.value)
    assert "no rows" in message and "generate_series" in message and "'start': 5" in message, message
    assert f"s3://{bucket}/e/none" in message
    assert keys(s3_client, bucket) == []
    assert s3_client.list_multipart_uploads(Bucket=bucket).get("Uploads", []) == []


def test_empty_result_fail_exports_rows_as_usual(bucket: str) -> None:
    assert run(bucket, numbers(3), key="e/some", empty_result="fail")["rows"] == 3


def test_empty_result_is_validated_at_parse_time() -> None:
    with pytest.raises(ConfigurationError, match="fail"):
        PostgresToS3StreamOperator(task_id="x", sql="SELECT 1", s3_bucket="b", s3_key="k", empty_result="error")
