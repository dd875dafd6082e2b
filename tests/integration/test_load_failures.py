"""Loads that must fail: each names the S3 object (and line, column) and leaves the table as it was.

Real Postgres and a real S3 endpoint; every test starts from a table holding known rows, so
"nothing committed" is checked as "the rows are exactly the old ones".
"""

from __future__ import annotations

import gzip
import io
import json
import threading
import time
from typing import Any

import psycopg
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from airflow.sdk.exceptions import AirflowFailException

from airflow_s3stream.errors import LoadConnectionError, RowRejectedError, TableNotFoundError
from airflow_s3stream.load import LoadOptions, LoadStep, SourceSpec, load_into_postgres
from airflow_s3stream.operators import PostgresToS3StreamOperator, S3ToPostgresStreamOperator

OLD_ROWS = [(100, "old", 1.0)]


@pytest.fixture
def orders(pg_conn: Any) -> str:
    pg_conn.execute("CREATE TABLE orders (id int PRIMARY KEY, name text, amount numeric(10, 2))")
    pg_conn.execute("INSERT INTO orders VALUES (100, 'old', 1.0)")
    return str(pg_conn.execute("SELECT current_schema()").fetchone()[0])


def table_rows(conn: Any, schema: str) -> list[tuple[Any, ...]]:
    return [(r[0], r[1], float(r[2])) for r in conn.execute(f"SELECT * FROM {schema}.orders ORDER BY id").fetchall()]


def load(bucket: str, key: str, schema: str, **kwargs: Any) -> dict[str, Any]:
    op = S3ToPostgresStreamOperator(task_id="load", s3_bucket=bucket, s3_key=key, table=f"{schema}.orders", **kwargs)
    return op.execute({})


def put(s3_client: Any, bucket: str, key: str, body: bytes) -> None:
    s3_client.put_object(Bucket=bucket, Key=key, Body=body)


def test_a_bad_row_names_the_key_line_and_column_and_commits_nothing(
    pg_conn: Any, orders: str, bucket: str, s3_client: Any
) -> None:
    put(s3_client, bucket, "in/orders.csv", b"id,name,amount\n1,a,1.50\n2,b,2.50\n3,c,not-a-number\n4,d,4\n")
    with pytest.raises(AirflowFailException) as info:
        load(bucket, "in/orders.csv", orders)
    message = str(info.value)
    assert f"s3://{bucket}/in/orders.csv" in message
    assert "line 4, column amount" in message and "not-a-number" in message
    assert table_rows(pg_conn, orders) == OLD_ROWS


def test_a_bad_row_early_in_a_large_compressed_file_is_still_a_data_error(
    pg_conn: Any, orders: str, bucket: str, s3_client: Any
) -> None:
    """Postgres refuses the row while megabytes are still being sent: still the row's error, not
    a lost connection, with the file's own line number."""
    lines = [b"id,name,amount\n", b"1,a,1\n", b"1x,b,2\n"]
    lines += [f"{i},name-{i},{i}.25\n".encode() for i in range(10, 600_000)]
    put(s3_client, bucket, "big/orders.csv.gz", gzip.compress(b"".join(lines), compresslevel=1))
    with pytest.raises(AirflowFailException, match=r"big/orders\.csv\.gz: line 3, column id: .*1x"):
        load(bucket, "big/orders.csv.gz", orders)
    assert table_rows(pg_conn, orders) == OLD_ROWS


def test_parquet_bad_value_names_the_row_and_column(pg_conn: Any, orders: str, bucket: str, s3_client: Any) -> None:
    table = pa.table({"id": pa.array([1, 2, 3_000_000_000], pa.int64()), "name": ["a", "b", "c"]})
    sink = io.BytesIO()
    pq.write_table(table, sink)
    put(s3_client, bucket, "p/orders.parquet", sink.getvalue())
    with pytest.raises(AirflowFailException, match=r"p/orders\.parquet: row 3, column id: .*out of range"):
        load(bucket, "p/orders.parquet", orders)
    assert table_rows(pg_conn, orders) == OLD_ROWS


def test_jsonl_bad_value_names_the_line_and_key(pg_conn: Any, orders: str, bucket: str, s3_client: Any) -> None:
    docs = [{"id": 1, "name": "a", "amount": 1}, {"id": 2, "name": "b"}, {"id": 3, "amount": "lots"}]
    put(s3_client, bucket, "j/orders.jsonl", b"\n".join(json.dumps(d).encode() for d in docs) + b"\n")
    with pytest.raises(AirflowFailException, match=r"j/orders\.jsonl: line 3, key amount: .*lots"):
        load(bucket, "j/orders.jsonl", orders)
    assert table_rows(pg_conn, orders) == OLD_ROWS


def test_jsonl_unknown_key_fails_unless_ignored(pg_conn: Any, orders: str, bucket: str, s3_client: Any) -> None:
    put(s3_client, bucket, "j/x.jsonl", b'{"id": 1, "name": "a"}\n\n{"id": 2, "colour": "red"}\n')
    with pytest.raises(AirflowFailException, match=r"j/x\.jsonl: line 3: key 'colour' is not a column"):
        load(bucket, "j/x.jsonl", orders)
    assert table_rows(pg_conn, orders) == OLD_ROWS
    result = load(bucket, "j/x.jsonl", orders, ignore_unknown_keys=True)
    assert result["rows"] == 2  # the blank line is skipped
    got = pg_conn.execute(f"SELECT id, name, amount FROM {orders}.orders ORDER BY id").fetchall()
    assert got[:2] == [(1, "a", None), (2, None, None)]


def test_jsonl_line_that_is_not_json_names_its_line(pg_conn: Any, orders: str, bucket: str, s3_client: Any) -> None:
    put(s3_client, bucket, "j/bad.jsonl", b'{"id": 1}\n{"id": 2,\n')
    with pytest.raises(AirflowFailException, match=r"j/bad\.jsonl: line 2.*json"):
        load(bucket, "j/bad.jsonl", orders)


def test_missing_key_missing_bucket_and_missing_table_are_named(
    pg_conn: Any, orders: str, bucket: str, s3_client: Any
) -> None:
    with pytest.raises(AirflowFailException, match=rf"s3://{bucket}/nothing/here.*no objects under the prefix"):
        load(bucket, "nothing/here", orders)
    with pytest.raises(AirflowFailException, match="no-such-bucket-s3stream"):
        load("no-such-bucket-s3stream", "x.csv", orders)
    put(s3_client, bucket, "in/ok.csv", b"id,name,amount\n1,a,1\n")
    with pytest.raises(AirflowFailException, match=rf"table {orders}\.nope does not exist"):
        S3ToPostgresStreamOperator(
            task_id="load", s3_bucket=bucket, s3_key="in/ok.csv", table=f"{orders}.nope"
        ).execute({})


def test_a_missing_table_or_schema_is_its_own_error_raised_before_any_source_is_read(
    pg_conn: Any, orders: str, s3_client: Any
) -> None:
    steps = [LoadStep(SourceSpec("no-such-bucket-s3stream", "x.csv"))]  # reading it would fail
    with pytest.raises(TableNotFoundError, match=rf"^table {orders}\.nope does not exist$"):
        load_into_postgres(pg_conn, s3_client, table=f"{orders}.nope", steps=steps, options=LoadOptions())
    with pytest.raises(TableNotFoundError, match=r"^table nowhere\.orders: schema 'nowhere' does not exist$"):
        load_into_postgres(pg_conn, s3_client, table="nowhere.orders", steps=steps, options=LoadOptions())
    assert not isinstance(TableNotFoundError("t"), RowRejectedError)
    assert table_rows(pg_conn, orders) == OLD_ROWS


def test_header_that_does_not_match_the_columns_fails_naming_both(
    pg_conn: Any, orders: str, bucket: str, s3_client: Any
) -> None:
    put(s3_client, bucket, "in/h.csv", b"id,label,amount\n1,a,1\n")
    with pytest.raises(AirflowFailException, match=r"in/h\.csv: header: 'label' not a column of table"):
        load(bucket, "in/h.csv", orders)
    with pytest.raises(AirflowFailException, match=r"header's columns \['id', 'label', 'amount'\] differ"):
        load(bucket, "in/h.csv", orders, columns=["id", "name", "amount"])
    assert table_rows(pg_conn, orders) == OLD_ROWS


def _export_split(bucket: str, schema: str, key: str) -> dict[str, Any]:
    return PostgresToS3StreamOperator(
        task_id="export",
        sql=f"SELECT * FROM {schema}.source ORDER BY id",
        s3_bucket=bucket,
        s3_key=key,
        max_rows_per_file=2,
        write_manifest=True,
    ).execute({})


@pytest.fixture
def exported(pg_conn: Any, orders: str, bucket: str) -> dict[str, Any]:
    pg_conn.execute(
        "CREATE TABLE source AS SELECT i AS id, 'n' || i AS name, i * 1.5 AS amount FROM generate_series(1, 5) i"
    )
    return _export_split(bucket, orders, "exp/day")


def _manifest(s3_client: Any, bucket: str, key: str) -> dict[str, Any]:
    return dict(json.loads(s3_client.get_object(Bucket=bucket, Key=key)["Body"].read()))


def test_manifest_row_count_mismatch_rolls_back(
    pg_conn: Any, orders: str, bucket: str, s3_client: Any, exported: dict[str, Any]
) -> None:
    manifest = _manifest(s3_client, bucket, exported["manifest_key"])
    manifest["rows"] = 6
    for f in manifest["files"]:
        f.pop("rows", None)  # only the total disagrees
    put(s3_client, bucket, exported["manifest_key"], json.dumps(manifest).encode())
    with pytest.raises(AirflowFailException, match=r"loaded 5 rows, the manifest lists 6; nothing was committed"):
        load(bucket, exported["manifest_key"], orders)
    assert table_rows(pg_conn, orders) == OLD_ROWS


def test_manifest_file_rows_size_and_etag_are_checked(
    pg_conn: Any, orders: str, bucket: str, s3_client: Any, exported: dict[str, Any]
) -> None:
    key = exported["manifest_key"]
    original = _manifest(s3_client, bucket, key)
    first = original["files"][0]["key"]
    wrong_rows = json.loads(json.dumps(original))
    wrong_rows["files"][1]["rows"] = 1
    put(s3_client, bucket, key, json.dumps(wrong_rows).encode())
    with pytest.raises(
        AirflowFailException, match=rf"{original['files'][1]['key']}: loaded 2 rows, the manifest lists 1"
    ):
        load(bucket, key, orders)
    wrong_size = json.loads(json.dumps(original))
    wrong_size["files"][0]["bytes"] += 1
    put(s3_client, bucket, key, json.dumps(wrong_size).encode())
    with pytest.raises(AirflowFailException, match=rf"{first}: \d+ bytes stored, manifest {key} lists"):
        load(bucket, key, orders)
    wrong_sum = json.loads(json.dumps(original))
    listed = wrong_sum["files"][0]["checksum"]
    assert listed["algorithm"] and listed["value"]  # the export lists the stored checksum ...
    listed["value"] = "AAAAAA==-1"
    put(s3_client, bucket, key, json.dumps(wrong_sum).encode())
    with pytest.raises(AirflowFailException, match=rf"{first}: {listed['algorithm']} \S+ differs from AAAAAA==-1"):
        load(bucket, key, orders)  # ... and the load compares it with what HeadObject reports
    put(s3_client, bucket, key, json.dumps(original).encode())
    body = s3_client.get_object(Bucket=bucket, Key=first)["Body"].read()
    put(s3_client, bucket, first, body.replace(b"n1", b"m1"))  # same size, other bytes: a new ETag
    with pytest.raises(AirflowFailException, match=rf"{first}: ETag .* differs from .* \(replaced since the export\)"):
        load(bucket, key, orders)
    assert table_rows(pg_conn, orders) == OLD_ROWS


def test_manifest_without_version_is_read(pg_conn: Any, orders: str, bucket: str, s3_client: Any) -> None:
    put(s3_client, bucket, "old/part-00000.csv", b"id,name,amount\n1,a,1\n2,b,2\n")
    put(s3_client, bucket, "old/part-00001.csv", b"id,name,amount\n3,c,3\n")
    manifest = {"format": "csv", "files": [{"key": "old/part-00000.csv"}, {"key": "old/part-00001.csv"}], "rows": 3}
    put(s3_client, bucket, "old/_manifest.json", json.dumps(manifest).encode())
    put(s3_client, bucket, "old/part-00002.csv", b"id,name,amount\n9,not-listed,9\n")
    result = load(bucket, "old", orders)  # a prefix holding a manifest: exactly the listed files
    assert result["rows"] == 3
    assert [r[0] for r in pg_conn.execute(f"SELECT id FROM {orders}.orders ORDER BY id")] == [1, 2, 3, 100]


def test_connection_terminated_mid_copy_leaves_the_table_unchanged_and_is_retryable(
    pg_conn: Any, pg_uri: str, orders: str, bucket: str, s3_client: Any
) -> None:
    body = b"id,name,amount\n" + b"".join(f"{i},name-{i},{i}.5\n".encode() for i in range(1000, 1_500_000))
    put(s3_client, bucket, "big/orders.csv", body)
    conn = psycopg.connect(pg_uri)
    conn.execute(f"SET search_path TO {orders}")
    conn.commit()
    pid = conn.info.backend_pid
    killed = threading.Event()

    def kill_when_copying() -> None:
        with psycopg.connect(pg_uri, autocommit=True) as admin:
            deadline = time.monotonic() + 60
            while time.monotonic() < deadline:
                row = admin.execute(
                    "SELECT query FROM pg_stat_activity WHERE pid = %s AND query LIKE 'COPY%%'", (pid,)
                ).fetchone()
                if row is not None:
                    time.sleep(0.3)  # well inside the COPY
                    admin.execute("SELECT pg_terminate_backend(%s)", (pid,))
                    killed.set()
                    return
                time.sleep(0.02)

    killer = threading.Thread(target=kill_when_copying)
    killer.start()
    with pytest.raises(LoadConnectionError) as info:
        load_into_postgres(
            conn,
            s3_client,
            table="orders",
            steps=[LoadStep(SourceSpec(bucket, "big/orders.csv"))],
            options=LoadOptions(),
        )
    killer.join()
    conn.close()
    assert killed.is_set()
    assert not isinstance(info.value, RowRejectedError)
    assert f"s3://{bucket}/big/orders.csv" in str(info.value) and "nothing was committed" in str(info.value)
    assert table_rows(pg_conn, orders) == OLD_ROWS
