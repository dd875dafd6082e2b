"""The operators over HTTPS, with an Airflow connection whose extra has ``endpoint_url=https://...``
and ``verify`` = the CA bundle, and the connection's default checksum settings.

Over HTTPS botocore (``request_checksum_calculation="when_supported"``) streams its own CRC32 of a
PutObject / UploadPart body as an ``aws-chunked`` trailer without ``Content-Length``, which Ceph
RGW 16 refuses with 411 ``MissingContentLength`` (over plain HTTP it sends a header). The package's
parts and single PUTs carry their own checksum (no trailer is added); its small PutObjects
(resume state, manifest, report) have botocore's CRC32 moved to a header by the hook.

RGW (``--store=rgw``) has a TLS endpoint: the full round trip runs there, and its 411 is shown.
moto has none: each test then asserts what a local HTTPS server (:mod:`tests.support.tls_server`)
can show, in a branch of the same test, never a skip.
"""

from __future__ import annotations

import io
import json
import os
import zipfile
from pathlib import Path
from typing import Any

import pytest
from airflow.sdk.exceptions import AirflowFailException

from airflow_s3stream.errors import ConfigurationError
from airflow_s3stream.hooks import S3StreamHook
from airflow_s3stream.operators import (
    PostgresToS3StreamOperator,
    S3MultipartUploadOperator,
    S3ToPostgresStreamOperator,
    S3ZipVerifyOperator,
)
from airflow_s3stream.s3.objects import put_object
from airflow_s3stream.s3.retry import RetryPolicy
from tests.support.rgw import self_signed_certificate
from tests.support.tls_server import TlsRecorder

MiB = 1024 * 1024
PART = 5 * MiB
ROWS = 2000


def _tls_conn(monkeypatch: pytest.MonkeyPatch, s3: Any, conn_id: str, endpoint: str, **extra: Any) -> str:
    """An ``aws`` connection to ``endpoint`` trusting ``s3.ca_bundle``; ``extra`` adds to its extra."""
    fields = {"endpoint_url": endpoint, "region_name": s3.region, "verify": s3.ca_bundle}
    conn = {
        "conn_type": "aws",
        "login": s3.access_key_id,
        "password": s3.secret_access_key,
        "extra": fields | {"config_kwargs": {"s3": {"addressing_style": "path"}}} | extra,
    }
    monkeypatch.setenv(f"AIRFLOW_CONN_{conn_id.upper()}", json.dumps(conn))
    return conn_id


def _table(pg_conn: Any) -> str:
    pg_conn.execute("CREATE TABLE src (id int PRIMARY KEY, name text, amount numeric(12,2), seen timestamptz)")
    pg_conn.execute(
        "INSERT INTO src SELECT g, 'name ' || g, g * 1.25, timestamptz '2024-01-01' + g * interval '1 minute' "
        f"FROM generate_series(1, {ROWS}) g"
    )
    pg_conn.execute("CREATE TABLE from_csv (LIKE src)")
    pg_conn.execute("CREATE TABLE from_parquet (LIKE src)")
    return str(pg_conn.execute("SELECT current_schema()").fetchone()[0])


def _same_rows(pg_conn: Any, schema: str, table: str) -> bool:
    differ = pg_conn.execute(
        f"SELECT count(*) FROM ((TABLE {schema}.src EXCEPT ALL TABLE {schema}.{table}) "
        f"UNION ALL (TABLE {schema}.{table} EXCEPT ALL TABLE {schema}.src)) d"
    ).fetchone()[0]
    return bool(differ == 0)


def test_operators_round_trip_over_tls_with_the_connections_default_checksum_settings(
    s3: Any, bucket: str, pg_conn: Any, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    if not s3.tls_endpoint_url:
        # moto serves no TLS: what makes the round trip work on RGW is the request shape of the
        # package's small PutObjects over HTTPS, shown on the wire of a local HTTPS server.
        with TlsRecorder() as server:
            monkeypatch.setattr(s3, "ca_bundle", server.ca_bundle)
            conn = _tls_conn(monkeypatch, s3, "aws_tls", server.endpoint_url)
            client = S3StreamHook(aws_conn_id=conn).get_s3_client()
            put_object(client, "b", "m/_manifest.json", b'{"files": []}', RetryPolicy(max_attempts=1))
            (sent,) = server.requests
        assert sent.headers["content-length"] == "13" and "x-amz-trailer" not in sent.headers
        assert "x-amz-checksum-crc32" in sent.headers  # botocore's checksum kept, in a header
        return

    conn = _tls_conn(monkeypatch, s3, "aws_tls", s3.tls_endpoint_url)
    s3_client = s3.client()  # plain HTTP: reads back what the operators wrote over TLS
    # S3MultipartUploadOperator: several parts (with its resume state), and one single PUT
    big, small = tmp_path / "big.bin", tmp_path / "small.bin"
    big.write_bytes(os.urandom(3 * PART + 11))
    small.write_bytes(b"small object\n")
    up = S3MultipartUploadOperator(
        task_id="up", source=str(big), s3_bucket=bucket, s3_key="in/big.bin", part_size=PART, aws_conn_id=conn
    ).execute({})
    assert (up["size"], up["parts"]) == (3 * PART + 11, 4)
    assert s3_client.get_object(Bucket=bucket, Key="in/big.bin")["Body"].read() == big.read_bytes()
    one = S3MultipartUploadOperator(
        task_id="up1", source=str(small), s3_bucket=bucket, s3_key="in/small.bin", aws_conn_id=conn
    ).execute({})
    assert one["parts"] == 0
    assert s3_client.get_object(Bucket=bucket, Key="in/small.bin")["Body"].read() == b"small object\n"
    # PostgresToS3StreamOperator: CSV with its manifest, and Parquet
    schema = _table(pg_conn)
    sql = f"SELECT * FROM {schema}.src ORDER BY id"
    csv = PostgresToS3StreamOperator(
        task_id="csv", sql=sql, s3_bucket=bucket, s3_key="out/src.csv", write_manifest=True, aws_conn_id=conn
    ).execute({})
    assert csv["rows"] == ROWS and csv["manifest_key"] == "out/_manifest.json"
    manifest = json.loads(s3_client.get_object(Bucket=bucket, Key="out/_manifest.json")["Body"].read())
    assert [f["key"] for f in manifest["files"]] == ["out/src.csv"]
    parquet = PostgresToS3StreamOperator(
        task_id="pq", sql=sql, s3_bucket=bucket, s3_key="out/src.parquet", file_format="parquet", aws_conn_id=conn
    ).execute({})
    assert parquet["rows"] == ROWS
    # S3ToPostgresStreamOperator: both back (Parquet through pyarrow's own S3 client, same CA)
    for key, table in (("out/src.csv", "from_csv"), ("out/src.parquet", "from_parquet")):
        loaded = S3ToPostgresStreamOperator(
            task_id=f"load_{table}", s3_bucket=bucket, s3_key=key, table=f"{schema}.{table}", aws_conn_id=conn
        ).execute({})
        assert loaded["rows"] == ROWS and _same_rows(pg_conn, schema, table)
    # S3ZipVerifyOperator with its report
    archive = io.BytesIO()
    with zipfile.ZipFile(archive, "w", zipfile.ZIP_DEFLATED) as zf:
        zf.writestr("data/a.txt", b"a" * 100_000)
        zf.writestr("data/b.bin", os.urandom(50_000))
    s3_client.put_object(Bucket=bucket, Key="in/a.zip", Body=archive.getvalue())
    verified = S3ZipVerifyOperator(
        task_id="zip", s3_bucket=bucket, s3_key="in/a.zip", report_key="in/a.report.json", aws_conn_id=conn
    ).execute({})
    assert verified["members_checked"] == 2
    report = json.loads(s3_client.get_object(Bucket=bucket, Key="in/a.report.json")["Body"].read())
    assert report["members_checked"] == 2


def test_a_trailing_checksum_the_store_refuses_names_the_connection_and_the_setting(
    s3: Any, bucket: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    body = b"streamed body\n"
    if not s3.tls_endpoint_url:
        # moto serves no TLS: the wire of a local HTTPS server shows the request shape and the setting
        with TlsRecorder() as server:
            monkeypatch.setattr(s3, "ca_bundle", server.ca_bundle)
            default = S3StreamHook(aws_conn_id=_tls_conn(monkeypatch, s3, "aws_d", server.endpoint_url))
            default.get_s3_client().put_object(Bucket="b", Key="k", Body=io.BufferedReader(io.BytesIO(body)))
            required = _tls_conn(
                monkeypatch,
                s3,
                "aws_r",
                server.endpoint_url,
                config_kwargs={"request_checksum_calculation": "when_required"},
            )
            S3StreamHook(aws_conn_id=required).get_s3_client().put_object(
                Bucket="b", Key="k", Body=io.BufferedReader(io.BytesIO(body))
            )
            streamed, fixed = server.requests
        assert streamed.headers["x-amz-trailer"] == "x-amz-checksum-crc32" and "content-length" not in streamed.headers
        assert "x-amz-trailer" not in fixed.headers and fixed.headers["content-length"] == str(len(body))
        return

    # RGW 16: a body botocore streams with a trailing CRC32 (what a user's own call on the hook's
    # client may send; the package itself does not) is refused with 411 MissingContentLength
    conn = _tls_conn(monkeypatch, s3, "aws_tls", s3.tls_endpoint_url)
    client = S3StreamHook(aws_conn_id=conn).get_s3_client()
    with pytest.raises(ConfigurationError) as refused:
        client.put_object(Bucket=bucket, Key="k", Body=io.BufferedReader(io.BytesIO(body)))
    first = str(refused.value).splitlines()[0]
    assert first.startswith(f"AWS connection 'aws_tls' ({s3.tls_endpoint_url}): the store refused PutObject")
    assert '"config_kwargs": {"request_checksum_calculation": "when_required"}' in first
    # ... and the setting the message names is the one that makes the same request succeed
    fixed_conn = _tls_conn(
        monkeypatch,
        s3,
        "aws_tls_fixed",
        s3.tls_endpoint_url,
        config_kwargs={"request_checksum_calculation": "when_required"},
    )
    S3StreamHook(aws_conn_id=fixed_conn).get_s3_client().put_object(
        Bucket=bucket, Key="k", Body=io.BufferedReader(io.BytesIO(body))
    )
    assert client.get_object(Bucket=bucket, Key="k")["Body"].read() == body


def test_a_wrong_or_missing_ca_fails_the_task_naming_the_connection_and_verify(
    s3: Any, bucket: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    source = tmp_path / "small.bin"
    source.write_bytes(b"x" * 100)
    other_ca, _ = self_signed_certificate(tmp_path)  # a CA that did not issue the endpoint's certificate
    with TlsRecorder() as server:
        # moto serves no TLS: a local HTTPS server stands in for the endpoint whose certificate is checked
        endpoint = s3.tls_endpoint_url or server.endpoint_url
        for conn_id, verify, problem in (
            ("aws_wrong_ca", str(other_ca), "the store's TLS certificate is not trusted"),
            ("aws_no_ca", str(tmp_path / "absent.pem"), "is not a file on this worker"),
        ):
            conn = _tls_conn(monkeypatch, s3, conn_id, endpoint, verify=verify)
            op = S3MultipartUploadOperator(
                task_id="up", source=str(source), s3_bucket=bucket, s3_key="k", aws_conn_id=conn
            )
            with pytest.raises(AirflowFailException) as failed:  # failed for good: Airflow does not retry
                op.execute({})
            first = str(failed.value).splitlines()[0]
            assert f"AWS connection '{conn_id}'" in first and problem in first
            assert '"verify"' in first and verify in first
        assert server.requests == []  # nothing was sent to an endpoint the connection does not trust
