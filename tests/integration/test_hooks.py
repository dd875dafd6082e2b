"""The thin hooks: Airflow connections in, working clients out, the connection's own settings kept."""

from __future__ import annotations

import inspect
import json
from typing import Any

import psycopg
import pytest

from airflow_s3stream.hooks import PostgresStreamHook, S3StreamHook


def test_s3_hook_sizes_the_pool_keeps_the_connections_config_kwargs_and_takes_over_its_retries(
    s3: Any, bucket: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    conn = {
        "conn_type": "aws",
        "login": s3.access_key_id,
        "password": s3.secret_access_key,
        "extra": {
            "endpoint_url": s3.endpoint_url,
            "region_name": s3.region,
            "config_kwargs": {"retries": {"total_max_attempts": 2}, "s3": {"addressing_style": "path"}},
        },
    }
    monkeypatch.setenv("AIRFLOW_CONN_AWS_TUNED", json.dumps(conn))
    hook = S3StreamHook(aws_conn_id="aws_tuned", max_pool_connections=24)
    client = hook.get_s3_client()
    assert client.meta.config.max_pool_connections == 24
    # the connection's retries become the package's policy; botocore itself makes one attempt
    assert client.meta.config.retries["total_max_attempts"] == 1
    assert hook.max_attempts == 2
    assert client.meta.config.s3["addressing_style"] == "path"
    assert client.meta.endpoint_url == s3.endpoint_url
    client.put_object(Bucket=bucket, Key="k", Body=b"ok")
    assert client.get_object(Bucket=bucket, Key="k")["Body"].read() == b"ok"


def test_s3_hook_never_shrinks_a_larger_pool_from_the_connection(s3: Any, monkeypatch: pytest.MonkeyPatch) -> None:
    conn = {
        "conn_type": "aws",
        "login": s3.access_key_id,
        "password": s3.secret_access_key,
        "extra": {"endpoint_url": s3.endpoint_url, "config_kwargs": {"max_pool_connections": 64}},
    }
    monkeypatch.setenv("AIRFLOW_CONN_AWS_BIG_POOL", json.dumps(conn))
    client = S3StreamHook(aws_conn_id="aws_big_pool", max_pool_connections=8).get_s3_client()
    assert client.meta.config.max_pool_connections == 64


def test_postgres_hook_gives_a_psycopg3_connection() -> None:
    conn = PostgresStreamHook(postgres_conn_id="postgres_default").get_psycopg_connection()
    try:
        assert isinstance(conn, psycopg.Connection)
        assert conn.execute("SELECT 41 + 1").fetchone() == (42,)
    finally:
        conn.close()


def test_s3_hook_names_the_calling_operator_in_the_user_agent_without_reading_source_files(
    s3: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    conn = {
        "conn_type": "aws",
        "login": s3.access_key_id,
        "password": s3.secret_access_key,
        "extra": {"endpoint_url": s3.endpoint_url},
    }
    monkeypatch.setenv("AIRFLOW_CONN_AWS_CALLER", json.dumps(conn))

    def no_stack(*_: Any, **__: Any) -> Any:
        raise AssertionError("inspect.stack() reads a source line per frame")

    monkeypatch.setattr(inspect, "stack", no_stack)

    class ArchiveCheckOperator:
        def execute(self) -> Any:
            return S3StreamHook(aws_conn_id="aws_caller").get_s3_client()

    client = ArchiveCheckOperator().execute()
    assert "Caller/ArchiveCheckOperator" in client.meta.config.user_agent_extra
