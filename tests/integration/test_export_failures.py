"""PostgresToS3StreamOperator when things go wrong: nothing half-written, the real cause reported.

Every failure leaves the bucket as it was: no object, no incomplete multipart upload. Bad SQL and a
missing bucket are not retryable (``AirflowFailException``); a backend terminated mid-stream is
(the original error propagates so Airflow retries the task).
"""

from __future__ import annotations

import json
import logging
import socket
import threading
import time
import traceback
from typing import Any

import psycopg
import pytest
from airflow.sdk.exceptions import AirflowFailException

from airflow_s3stream.errors import ConfigurationError, ExportConnectionError
from airflow_s3stream.operators import PostgresToS3StreamOperator
from tests.support.error_chains import chain_loop

MiB = 1024 * 1024


def bucket_contents(client: Any, bucket: str) -> tuple[list[str], list[str]]:
    keys = [o["Key"] for o in client.list_objects_v2(Bucket=bucket).get("Contents", [])]
    uploads = [u["Key"] for u in client.list_multipart_uploads(Bucket=bucket).get("Uploads", [])]
    return keys, uploads


def operator(bucket: str, sql: str, **kwargs: Any) -> PostgresToS3StreamOperator:
    return PostgresToS3StreamOperator(task_id="export", sql=sql, s3_bucket=bucket, s3_key="out/data", **kwargs)


def test_sql_error_fails_with_postgres_message_and_writes_nothing(bucket: str, s3_client: Any) -> None:
    with pytest.raises(AirflowFailException, match=r'relation "no_such_table" does not exist'):
        operator(bucket, "SELECT * FROM no_such_table").execute({})
    assert bucket_contents(s3_client, bucket) == ([], [])


@pytest.mark.parametrize("file_format", ["csv", "parquet"])
def test_error_mid_stream_aborts_upload_and_deletes_finished_parts(
    bucket: str, s3_client: Any, file_format: str
) -> None:
    # Division by zero at row 400,000: several 5 MiB parts and two split files are already uploaded.
    sql = "SELECT g, md5(g::text) AS h, 1 / (400000 - g) AS boom FROM generate_series(1, 500000) g"
    op = operator(bucket, sql, file_format=file_format, part_size=5 * MiB, max_rows_per_file=150_000)
    with pytest.raises(AirflowFailException, match="division by zero"):
        op.execute({})
    assert bucket_contents(s3_client, bucket) == ([], [])


def test_missing_bucket_fails_before_the_query_runs(pg_conn: Any, s3_client: Any) -> None:
    pg_conn.execute("CREATE TABLE calls (n int)")
    pg_conn.execute(
        "CREATE FUNCTION noisy() RETURNS int LANGUAGE sql AS $$ INSERT INTO calls VALUES (1) RETURNING n $$"
    )
    schema = pg_conn.execute("SELECT current_schema()").fetchone()[0]
    op = operator("no-such-bucket-s3stream", f"SELECT {schema}.noisy()")
    with pytest.raises(AirflowFailException, match="bucket 'no-such-bucket-s3stream' does not exist"):
        op.execute({})
    assert pg_conn.execute("SELECT count(*) FROM calls").fetchone()[0] == 0


def test_terminated_backend_fails_cleanly_and_is_retryable(bucket: str, s3_client: Any, pg_uri: str) -> None:
    marker = "s3stream_terminate_me"
    sql = f"SELECT g, repeat('x', 200) AS pad, '{marker}' AS m FROM generate_series(1, 20000000) g"
    errors: list[BaseException] = []

    def run() -> None:
        try:
            operator(bucket, sql, part_size=5 * MiB).execute({})
        except BaseException as exc:
            errors.append(exc)

    worker = threading.Thread(target=run)
    worker.start()
    with psycopg.connect(pg_uri, autocommit=True) as admin:
        terminated = False
        deadline = time.monotonic() + 60
        while not terminated and time.monotonic() < deadline:
            time.sleep(1.0)  # let some parts upload first
            row = admin.execute(
                "SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE query LIKE 'COPY%%' AND query LIKE %s "
                "AND pid <> pg_backend_pid()",
                (f"%{marker}%",),
            ).fetchone()
            terminated = bool(row and row[0])
    worker.join(120)
    assert terminated and not worker.is_alive()
    assert len(errors) == 1
    assert isinstance(errors[0], ExportConnectionError)  # not AirflowFailException: Airflow retries
    assert chain_loop(errors[0]) is None  # caught in a thread, out of the error-chain plugin's sight
    assert "terminat" in str(errors[0]).lower()
    assert bucket_contents(s3_client, bucket) == ([], [])


def test_on_kill_cancels_the_query_and_leaves_nothing_behind(bucket: str, s3_client: Any, pg_uri: str) -> None:
    marker = "s3stream_kill_me"
    sql = f"SELECT g, repeat('x', 200) AS pad, '{marker}' AS m FROM generate_series(1, 20000000) g"
    op = operator(bucket, sql, part_size=5 * MiB)
    errors: list[BaseException] = []

    def run() -> None:
        try:
            op.execute({})
        except BaseException as exc:
            errors.append(exc)

    worker = threading.Thread(target=run)
    worker.start()
    deadline = time.monotonic() + 60
    while s3_client.list_multipart_uploads(Bucket=bucket).get("Uploads") is None and time.monotonic() < deadline:
        time.sleep(0.2)  # wait until the export is really streaming into S3
    op.on_kill()
    worker.join(120)
    assert not worker.is_alive()
    assert len(errors) == 1 and "cancel" in str(errors[0]).lower()
    assert chain_loop(errors[0]) is None
    assert bucket_contents(s3_client, bucket) == ([], [])
    with psycopg.connect(pg_uri, autocommit=True) as admin:
        running = admin.execute(
            "SELECT count(*) FROM pg_stat_activity "
            "WHERE query LIKE %s AND state = 'active' AND pid <> pg_backend_pid()",
            (f"%{marker}%",),
        ).fetchone()
    assert running == (0,)


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"file_format": "xlsx"}, "file_format 'xlsx'"),
        ({"compression": "bz2"}, "compression 'bz2'"),
        ({"compression": "zstd", "compression_level": 40}, "compression_level 40"),
        ({"max_rows_per_file": 0}, "max_rows_per_file"),
        ({"delimiter": "::"}, "delimiter"),
        ({"empty_result": "maybe"}, "empty_result"),
        ({"part_size": 1024}, "part_size"),
    ],
)
def test_bad_arguments_fail_when_the_dag_is_parsed(kwargs: dict[str, Any], message: str) -> None:
    with pytest.raises(ConfigurationError, match=message):
        operator("bucket", "SELECT 1", **kwargs)


def test_refused_credentials_fail_before_the_query_runs(
    pg_conn: Any, bucket: str, s3: Any, s3_proxy: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    import json

    from tests.support.s3proxy import Status

    # moto accepts any key pair, so the refusal is injected where S3 would answer it.
    s3_proxy.add_fault(lambda r: Status(403, "InvalidAccessKeyId") if r.op == "HeadBucket" else None)
    conn = {
        "conn_type": "aws",
        "login": "wrong-key",
        "password": "wrong-secret",
        "extra": {"endpoint_url": s3_proxy.endpoint_url, "region_name": s3.region},
    }
    monkeypatch.setenv("AIRFLOW_CONN_AWS_PROXY", json.dumps(conn))
    pg_conn.execute("CREATE TABLE calls (n int)")
    pg_conn.execute(
        "CREATE FUNCTION noisy() RETURNS int LANGUAGE sql AS $$ INSERT INTO calls VALUES (1) RETURNING n $$"
    )
    schema = pg_conn.execute("SELECT current_schema()").fetchone()[0]
    op = operator(bucket, f"SELECT {schema}.noisy()", aws_conn_id="aws_proxy")
    with pytest.raises(AirflowFailException, match="access denied") as failure:
        op.execute({})
    assert "wrong-secret" not in str(failure.value)
    assert pg_conn.execute("SELECT count(*) FROM calls").fetchone()[0] == 0
    assert s3_proxy.count("HeadBucket") >= 1
    assert s3_proxy.count("CreateMultipartUpload") == 0 and s3_proxy.count("PutObject") == 0


def test_unreachable_postgres_is_retryable_and_names_the_connection_never_the_password(
    bucket: str, s3_client: Any, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture, capfd: Any
) -> None:
    with socket.socket() as probe:  # a port nobody listens on: the connection is really refused
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    secret = "Pa55-s3cr3t-never-logged"
    conn = {"conn_type": "postgres", "host": "127.0.0.1", "port": port, "login": "exporter", "password": secret}
    monkeypatch.setenv("AIRFLOW_CONN_PG_DOWN", json.dumps({**conn, "schema": "warehouse"}))
    op = operator(bucket, "SELECT 1 AS x", postgres_conn_id="pg_down")
    with caplog.at_level(logging.DEBUG), pytest.raises(ExportConnectionError) as failure:
        op.execute({})
    message = str(failure.value)
    assert "'pg_down'" in message and f"127.0.0.1:{port}" in message
    assert f"s3://{bucket}/out/data" in message  # and the export it was for
    assert "refused" in message.lower()
    assert secret not in "".join(traceback.format_exception(failure.value))  # the chained cause too
    assert secret not in caplog.text and secret not in "".join(capfd.readouterr())
    assert bucket_contents(s3_client, bucket) == ([], [])
