"""S3Connection: one task's hook, client and retry policy, built from its TaskResources and connection."""

from __future__ import annotations

import json
from typing import Any

import pytest

from airflow_s3stream.hooks.s3_connection import S3Connection
from airflow_s3stream.resources import TaskResources


@pytest.fixture
def tuned_conn(s3: Any, monkeypatch: pytest.MonkeyPatch) -> str:
    """An ``aws`` connection whose extra asks for 2 attempts per request."""
    conn = {
        "conn_type": "aws",
        "login": s3.access_key_id,
        "password": s3.secret_access_key,
        "extra": {
            "endpoint_url": s3.endpoint_url,
            "region_name": s3.region,
            "config_kwargs": {"retries": {"total_max_attempts": 2}},
        },
    }
    monkeypatch.setenv("AIRFLOW_CONN_AWS_RESOURCES", json.dumps(conn))
    return "aws_resources"


def test_the_client_gets_the_tasks_pool_and_the_connections_retries(tuned_conn: str, bucket: str) -> None:
    resources = TaskResources.for_package(prefetch_objects=16)
    s3 = S3Connection.open(tuned_conn, resources)
    config: Any = s3.client.meta.config
    assert config.max_pool_connections == resources.pool_connections == 27
    assert s3.retry.max_attempts == 2  # the connection's config_kwargs.retries
    assert config.retries["total_max_attempts"] == 1  # botocore itself makes one attempt
    s3.client.put_object(Bucket=bucket, Key="k", Body=b"ok")
    assert s3.client.get_object(Bucket=bucket, Key="k")["Body"].read() == b"ok"


def test_the_tasks_max_attempts_wins_over_the_connections(tuned_conn: str) -> None:
    s3 = S3Connection.open(tuned_conn, TaskResources.for_verify(max_attempts=5))
    assert s3.retry.max_attempts == 5


def test_a_source_connection_gets_the_source_pool(tuned_conn: str) -> None:
    resources = TaskResources.for_package(prefetch_objects=16, separate_source=True)
    source = S3Connection.open(tuned_conn, resources, source=True)
    config: Any = source.client.meta.config
    assert config.max_pool_connections == resources.source_pool_connections == 20
