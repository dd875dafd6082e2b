"""Parquet read natively from S3 (pyarrow's S3FileSystem): no local disk, the ETag checked around the read."""

from __future__ import annotations

import io
import os
import tempfile
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from airflow_s3stream.errors import ObjectChangedError, SourceError
from airflow_s3stream.hooks.s3 import S3StreamHook
from airflow_s3stream.load import LoadOptions, LoadStep, SourceSpec, load_into_postgres
from airflow_s3stream.load.parquet_input import check_unchanged
from airflow_s3stream.load.sources import LoadFile
from airflow_s3stream.operators import S3ToPostgresStreamOperator
from airflow_s3stream.resources import TaskResources
from airflow_s3stream.s3.retry import RetryPolicy

ROWS = 5_000


def parquet_bytes(rows: int = ROWS, first: int = 0) -> bytes:
    table = pa.table({"id": pa.array(range(first, first + rows), pa.int64()), "name": [f"n{i}" for i in range(rows)]})
    sink = io.BytesIO()
    pq.write_table(table, sink, row_group_size=1_000)
    return sink.getvalue()


@pytest.fixture
def table(pg_conn: Any) -> str:
    pg_conn.execute("CREATE TABLE items (id int8 PRIMARY KEY, name text)")
    pg_conn.execute("INSERT INTO items VALUES (-1, 'old')")
    return f"{pg_conn.execute('SELECT current_schema()').fetchone()[0]}.items"


def ids(pg_conn: Any, table: str) -> list[int]:
    return [r[0] for r in pg_conn.execute(f"SELECT id FROM {table} ORDER BY id")]


def test_parquet_loads_without_touching_local_disk(
    pg_conn: Any, table: str, bucket: str, s3_client: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    s3_client.put_object(Bucket=bucket, Key="in/items.parquet", Body=parquet_bytes())
    # Any temporary file (a spool) would now fail: the directory does not exist.
    monkeypatch.setattr(tempfile, "tempdir", "/nonexistent/s3stream-no-disk")
    result = S3ToPostgresStreamOperator(
        task_id="load", s3_bucket=bucket, s3_key="in/items.parquet", table=table, mode="replace"
    ).execute({})
    assert result["rows"] == ROWS and result["files"][0]["bytes"] == len(parquet_bytes())
    assert ids(pg_conn, table) == list(range(ROWS))


def test_parquet_replaced_while_it_is_read_fails_naming_the_key_and_commits_nothing(
    pg_conn: Any, pg_uri: str, table: str, bucket: str, s3_client: Any
) -> None:
    import psycopg

    key = "in/changing.parquet"
    s3_client.put_object(Bucket=bucket, Key=key, Body=parquet_bytes())
    replaced: list[bool] = []

    def replace_once(_: Any) -> None:  # the first progress report comes after the first batch
        if not replaced:
            s3_client.put_object(Bucket=bucket, Key=key, Body=parquet_bytes(first=100_000))
            replaced.append(True)

    with psycopg.connect(pg_uri) as conn, pytest.raises(ObjectChangedError) as info:
        load_into_postgres(
            conn,
            S3StreamHook().get_s3_client(),
            table=table,
            steps=[LoadStep(SourceSpec(bucket, key))],
            options=LoadOptions(mode="append"),
            buffers=TaskResources.for_load(batch_rows=1_000).load,
            on_progress=replace_once,
            progress_interval=0,
        )
    assert replaced and f"s3://{bucket}/{key}: replaced while it was being read" in str(info.value)
    assert ids(pg_conn, table) == [-1]


def test_check_unchanged_names_a_deleted_object(bucket: str, s3_client: Any) -> None:
    s3_client.put_object(Bucket=bucket, Key="gone.parquet", Body=b"x")
    etag = s3_client.head_object(Bucket=bucket, Key="gone.parquet")["ETag"].strip('"')
    file = LoadFile(bucket, "gone.parquet", 1)
    check_unchanged(s3_client, file, etag, RetryPolicy(max_attempts=1))
    s3_client.delete_object(Bucket=bucket, Key="gone.parquet")
    with pytest.raises(ObjectChangedError, match=rf"s3://{bucket}/gone\.parquet: deleted while it was being read"):
        check_unchanged(s3_client, file, etag, RetryPolicy(max_attempts=1))


def test_parquet_spool_dir_is_the_explicit_fallback_and_is_left_empty(
    pg_conn: Any, table: str, bucket: str, s3_client: Any, tmp_path: Path
) -> None:
    s3_client.put_object(Bucket=bucket, Key="in/items.parquet", Body=parquet_bytes())
    spool_dir = tmp_path / "spool"
    spool_dir.mkdir()
    result = S3ToPostgresStreamOperator(
        task_id="load",
        s3_bucket=bucket,
        s3_key="in/items.parquet",
        table=table,
        mode="replace",
        parquet_spool_dir=str(spool_dir),
    ).execute({})
    assert result["rows"] == ROWS and ids(pg_conn, table) == list(range(ROWS))
    assert os.listdir(spool_dir) == []


def test_arrow_settings_come_from_the_connection_and_never_show_its_secret(s3: Any) -> None:
    settings = S3StreamHook().arrow_s3_settings(max_attempts=2)
    assert (settings.endpoint_url, settings.region, settings.max_attempts) == (s3.endpoint_url, s3.region, 2)
    assert settings.access_key == s3.access_key_id and settings.secret_key == s3.secret_access_key
    assert "secret" not in repr(settings) and s3.secret_access_key not in repr(settings)


def test_binary_copy_loads_the_same_rows_as_the_csv_path(pg_conn: Any, bucket: str, s3_client: Any) -> None:
    import datetime as dt
    import decimal

    pg_conn.execute(
        "CREATE TABLE typed (id int8, small int4, f float4, ok bool, name text, raw bytea, day date, "
        "at timestamptz, amount numeric(12, 2))"
    )
    rows = 3_000
    table = pa.table(
        {
            "id": pa.array(range(rows), pa.int32()),
            "small": pa.array([i % 100 for i in range(rows)], pa.int16()),
            "f": pa.array([i / 7 if i % 5 else None for i in range(rows)], pa.float32()),
            "ok": [i % 2 == 0 for i in range(rows)],
            "name": ['a,"b"\n' + "é" * (i % 3) if i % 4 else "" for i in range(rows)],
            "raw": pa.array([bytes([i % 256, 0, 255]) for i in range(rows)], pa.binary()),
            "day": pa.array([dt.date(2024, 1, 1) + dt.timedelta(days=i % 400) for i in range(rows)], pa.date32()),
            "at": pa.array(
                [dt.datetime(2024, 1, 1, tzinfo=dt.UTC) + dt.timedelta(milliseconds=i * 1001) for i in range(rows)],
                pa.timestamp("ms", tz="UTC"),
            ),
            "amount": pa.array([decimal.Decimal(i) / 100 - 5 for i in range(rows)], pa.decimal128(12, 2)),
        }
    )
    sink = io.BytesIO()
    pq.write_table(table, sink)
    s3_client.put_object(Bucket=bucket, Key="typed.parquet", Body=sink.getvalue())
    schema = pg_conn.execute("SELECT current_schema()").fetchone()[0]
    pg_conn.execute("CREATE TABLE typed_csv (LIKE typed)")
    for target, copy in (("typed", "auto"), ("typed_csv", "csv")):
        S3ToPostgresStreamOperator(
            task_id="load", s3_bucket=bucket, s3_key="typed.parquet", table=f"{schema}.{target}", parquet_copy=copy
        ).execute({})
    counts = [
        pg_conn.execute(q).fetchone()[0]
        for q in (
            "SELECT count(*) FROM typed",
            "SELECT count(*) FROM (SELECT * FROM typed EXCEPT ALL SELECT * FROM typed_csv) d",
            "SELECT count(*) FROM (SELECT * FROM typed_csv EXCEPT ALL SELECT * FROM typed) d",
        )
    ]
    assert counts == [rows, 0, 0]


def test_a_row_rejected_in_binary_copy_names_the_key_row_and_column(
    pg_conn: Any, table: str, bucket: str, s3_client: Any
) -> None:
    pg_conn.execute(f"ALTER TABLE {table} ALTER COLUMN name SET NOT NULL")
    data = pa.table({"id": pa.array([1, 2, 3], pa.int64()), "name": ["a", "b", None]})
    sink = io.BytesIO()
    pq.write_table(data, sink)
    s3_client.put_object(Bucket=bucket, Key="null.parquet", Body=sink.getvalue())
    with pytest.raises(Exception, match=rf"s3://{bucket}/null\.parquet: row 3.*name"):
        S3ToPostgresStreamOperator(task_id="load", s3_bucket=bucket, s3_key="null.parquet", table=table).execute({})
    assert ids(pg_conn, table) == [-1]


def test_each_row_group_is_read_with_one_ranged_get(  # noqa: PLR0917 - pytest fixtures
    pg_conn: Any, table: str, bucket: str, s3_client: Any, s3_proxy: Any, proxy_aws_conn: Any
) -> None:
    body = parquet_bytes()  # 5 row groups of 2 columns
    s3_client.put_object(Bucket=bucket, Key="in/items.parquet", Body=body)
    assert pq.read_metadata(io.BytesIO(body)).num_row_groups == 5
    conn_id = proxy_aws_conn()
    s3_proxy.clear()
    result = S3ToPostgresStreamOperator(
        task_id="load", s3_bucket=bucket, s3_key="in/items.parquet", table=table, aws_conn_id=conn_id
    ).execute({})
    gets = [r for r in s3_proxy.requests if r.op == "GetObject" and r.key == "in/items.parquet"]
    assert result["rows"] == ROWS and ids(pg_conn, table) == [-1, *range(ROWS)]
    assert 1 <= len(gets) <= 5 + 1  # the footer, then one per row group (column by column: 2 per group)


def test_a_row_group_that_does_not_decode_fails_the_load_naming_the_key_and_commits_nothing(
    pg_conn: Any, pg_uri: str, table: str, bucket: str, s3_client: Any
) -> None:
    import psycopg

    rows = 5_000
    data = pa.table({"id": pa.array(range(rows), pa.int64()), "name": [f"n{i}" for i in range(rows)]})
    sink = io.BytesIO()
    pq.write_table(data, sink, row_group_size=1_000, compression="none")
    body = bytearray(sink.getvalue())
    page = pq.read_metadata(io.BytesIO(bytes(body))).row_group(3).column(1).data_page_offset
    body[page : page + 8] = b"\xff" * 8  # row group 4's page header no longer parses
    s3_client.put_object(Bucket=bucket, Key="in/broken.parquet", Body=bytes(body))
    with psycopg.connect(pg_uri) as conn, pytest.raises(SourceError) as info:
        load_into_postgres(
            conn,
            S3StreamHook().get_s3_client(),
            table=table,
            steps=[LoadStep(SourceSpec(bucket, "in/broken.parquet"))],
            options=LoadOptions(mode="append"),
            buffers=TaskResources.for_load(batch_rows=500).load,  # 6 batches COPYed before it
        )
    message = str(info.value)
    assert f"s3://{bucket}/in/broken.parquet: not a readable Parquet file" in message and "page header" in message
    assert ids(pg_conn, table) == [-1]  # the three row groups before it were COPYed, then rolled back
