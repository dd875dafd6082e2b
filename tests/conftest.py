"""Session-wide real services for the test suite.

Postgres and S3 are found or started once per session by :mod:`tests.support.devservices`
(``S3STREAM_POSTGRES_URI`` / local 127.0.0.1:5432 / embedded; ``S3STREAM_S3_ENDPOINT`` / the
store of ``--store``: ``moto``, the default, or ``rgw``, a throwaway Ceph RADOS Gateway). The store
matrix is the same tests run once per store (``make test-stores``); where stores differ, a test
asserts each store's behaviour by ``s3.origin``. Each test gets its own bucket and its own schema,
so tests never see each other's data.
Airflow connections ``aws_default`` and ``postgres_default`` point at the same services through
``AIRFLOW_CONN_*`` variables, exactly as a deployment would configure them.
"""

from __future__ import annotations

import json
import os
import tempfile
import uuid
from collections.abc import Callable, Iterator
from typing import Any

import pytest

# Airflow reads its home at import time: give the whole session a throwaway one.
os.environ.setdefault("AIRFLOW_HOME", tempfile.mkdtemp(prefix="s3stream-airflow-home-"))
os.environ.setdefault("AIRFLOW__CORE__LOAD_EXAMPLES", "False")
os.environ.setdefault("AIRFLOW__CORE__UNIT_TEST_MODE", "False")

from tests.support import devservices
from tests.support.s3proxy import S3Proxy

# Every exception a test catches with pytest.raises is checked for loops in its chain.
pytest_plugins = ["tests.support.error_chains"]


def pytest_addoption(parser: pytest.Parser) -> None:
    parser.addoption(
        "--store",
        default=None,
        choices=devservices.STORES,
        help="the S3 implementation the tests run against (default: S3STREAM_STORE, else moto)",
    )


def pytest_report_header(config: pytest.Config) -> str:
    return f"S3 store: {devservices.selected_store(config.getoption('--store'))}"


@pytest.fixture(scope="session")
def services(request: pytest.FixtureRequest) -> Iterator[devservices.DevServices]:
    store = devservices.selected_store(request.config.getoption("--store"))
    svc = devservices.DevServices(postgres=devservices.start_postgres(), s3=devservices.start_s3(store))
    yield svc
    svc.stop()


@pytest.fixture(scope="session")
def s3(services: devservices.DevServices) -> devservices.S3Service:
    return services.s3


@pytest.fixture(scope="session")
def s3_client(s3: devservices.S3Service) -> Any:
    return s3.client()


@pytest.fixture(scope="session")
def pg_uri(services: devservices.DevServices) -> str:
    return services.postgres.uri


@pytest.fixture(scope="session", autouse=True)
def airflow_connections(services: devservices.DevServices) -> Iterator[dict[str, str]]:
    """Point ``aws_default`` and ``postgres_default`` at the session's services."""
    env = devservices.airflow_connection_env(services)
    saved = {k: os.environ.get(k) for k in env}
    os.environ.update(env)
    yield env
    for k, v in saved.items():
        if v is None:
            os.environ.pop(k, None)
        else:
            os.environ[k] = v


def _empty_bucket(client: Any, bucket: str) -> None:
    for upload in client.list_multipart_uploads(Bucket=bucket).get("Uploads", []):
        client.abort_multipart_upload(Bucket=bucket, Key=upload["Key"], UploadId=upload["UploadId"])
    for page in client.get_paginator("list_object_versions").paginate(Bucket=bucket):  # versioned buckets too
        for obj in page.get("Versions", []) + page.get("DeleteMarkers", []):
            client.delete_object(Bucket=bucket, Key=obj["Key"], VersionId=obj["VersionId"])


@pytest.fixture
def bucket(s3_client: Any) -> Iterator[str]:
    """A fresh, empty bucket for this test only; emptied and removed afterwards."""
    name = f"test-{uuid.uuid4().hex[:20]}"
    s3_client.create_bucket(Bucket=name)
    yield name
    _empty_bucket(s3_client, name)
    s3_client.delete_bucket(Bucket=name)


@pytest.fixture
def pg_conn(pg_uri: str) -> Iterator[Any]:
    """An autocommit psycopg connection whose search_path is a schema private to this test."""
    import psycopg

    schema = f"t_{uuid.uuid4().hex[:12]}"
    with psycopg.connect(pg_uri, autocommit=True) as conn:
        conn.execute(f"CREATE SCHEMA {schema}")
        conn.execute(f"SET search_path TO {schema}, public")
        yield conn
        conn.execute(f"DROP SCHEMA {schema} CASCADE")


@pytest.fixture
def s3_proxy(s3: devservices.S3Service) -> Iterator[S3Proxy]:
    """A recording, fault-injecting proxy in front of the session's S3 endpoint."""
    with S3Proxy(s3.endpoint_url) as proxy:
        yield proxy


@pytest.fixture
def proxy_aws_conn(s3_proxy: S3Proxy, s3: devservices.S3Service, monkeypatch: pytest.MonkeyPatch) -> Callable[..., str]:
    """Factory: an Airflow ``aws`` connection that reaches S3 through ``s3_proxy``.

    ``proxy_aws_conn("aws_proxy", retries={"total_max_attempts": 1})`` sets
    ``AIRFLOW_CONN_AWS_PROXY`` for this test (keyword arguments become the extra's
    ``config_kwargs``) and returns the connection id.
    """

    def make(conn_id: str = "aws_proxy", **config_kwargs: Any) -> str:
        extra: dict[str, Any] = {"endpoint_url": s3_proxy.endpoint_url, "region_name": s3.region}
        if config_kwargs:
            extra["config_kwargs"] = config_kwargs
        conn = {"conn_type": "aws", "login": s3.access_key_id, "password": s3.secret_access_key, "extra": extra}
        monkeypatch.setenv(f"AIRFLOW_CONN_{conn_id.upper()}", json.dumps(conn))
        return conn_id

    return make
