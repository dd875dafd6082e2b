"""A connection id that does not exist fails every operator at its first use, naming the parameter.

Each operator is run once per connection parameter it has, with that parameter set to an id no
secrets backend defines (the others point at the session's services). The task must fail for good
(``AirflowFailException``: retrying cannot define a connection), the first line of the message
must be the verdict (``aws_conn_id 'aws_prod' is not defined``), no secret of the connections
that do exist may appear in it, and nothing may have been written. ``aws_conn_id=None`` (boto3's
own credential chain) and connections defined only in the environment stay valid.
"""

from __future__ import annotations

import io
import zipfile
from collections.abc import Callable
from typing import Any

import pytest
from airflow.sdk.exceptions import AirflowFailException

from airflow_s3stream.errors import ConfigurationError
from airflow_s3stream.hooks import PostgresStreamHook, S3StreamHook
from airflow_s3stream.operators import (
    PostgresToS3StreamOperator,
    S3MultipartUploadOperator,
    S3StreamAbortOperator,
    S3StreamCommitOperator,
    S3ToBagItZipOperator,
    S3ToPostgresStreamOperator,
    S3ZipVerifyOperator,
)
from tests.support.devservices import S3Service

MISSING = {"aws_conn_id": "aws_prod", "source_aws_conn_id": "aws_prod_source", "postgres_conn_id": "postgres_prod"}


def _export(bucket: str, conn: dict[str, Any]) -> Any:
    return PostgresToS3StreamOperator(task_id="export", sql="SELECT 1 AS n", s3_bucket=bucket, s3_key="out/n", **conn)


def _load(bucket: str, conn: dict[str, Any]) -> Any:
    return S3ToPostgresStreamOperator(task_id="load", table="orders", s3_bucket=bucket, s3_key="in/rows.csv", **conn)


def _upload(bucket: str, conn: dict[str, Any]) -> Any:
    return S3MultipartUploadOperator(
        task_id="upload", source=f"s3://{bucket}/in/a.zip", s3_bucket=bucket, s3_key="out/a", **conn
    )


def _verify(bucket: str, conn: dict[str, Any]) -> Any:
    return S3ZipVerifyOperator(task_id="verify", s3_bucket=bucket, s3_key="in/a.zip", **conn)


def _bag(bucket: str, conn: dict[str, Any]) -> Any:
    return S3ToBagItZipOperator(
        task_id="bag", source_bucket=bucket, source_prefix="in/", s3_bucket=bucket, s3_key="out/bag.zip", **conn
    )


def _commit(bucket: str, conn: dict[str, Any]) -> Any:
    return S3StreamCommitOperator(task_id="commit", s3_bucket=bucket, s3_prefix="job", staged=[], **conn)


def _abort(bucket: str, conn: dict[str, Any]) -> Any:
    return S3StreamAbortOperator(task_id="abort", s3_bucket=bucket, s3_prefix="job", staged=[], **conn)


CASES = [
    pytest.param(_export, "aws_conn_id", id="export-aws_conn_id"),
    pytest.param(_export, "postgres_conn_id", id="export-postgres_conn_id"),
    pytest.param(_load, "aws_conn_id", id="load-aws_conn_id"),
    pytest.param(_load, "postgres_conn_id", id="load-postgres_conn_id"),
    pytest.param(_upload, "aws_conn_id", id="upload-aws_conn_id"),
    pytest.param(_upload, "source_aws_conn_id", id="upload-source_aws_conn_id"),
    pytest.param(_verify, "aws_conn_id", id="verify-aws_conn_id"),
    pytest.param(_bag, "aws_conn_id", id="bag-aws_conn_id"),
    pytest.param(_bag, "source_aws_conn_id", id="bag-source_aws_conn_id"),
    pytest.param(_commit, "aws_conn_id", id="commit-aws_conn_id"),
    pytest.param(_abort, "aws_conn_id", id="abort-aws_conn_id"),
]


def _keys(client: Any, bucket: str) -> list[str]:
    return sorted(o["Key"] for o in client.list_objects_v2(Bucket=bucket).get("Contents", []))


@pytest.fixture
def inputs(bucket: str, s3_client: Any, monkeypatch: pytest.MonkeyPatch) -> list[str]:
    """What the operators read (a CSV, a ZIP), so only the connection can fail; their keys."""
    for conn_id in MISSING.values():
        monkeypatch.delenv(f"AIRFLOW_CONN_{conn_id.upper()}", raising=False)
    archive = io.BytesIO()
    with zipfile.ZipFile(archive, "w") as zf:
        zf.writestr("a.txt", "hello")
    s3_client.put_object(Bucket=bucket, Key="in/a.zip", Body=archive.getvalue())
    s3_client.put_object(Bucket=bucket, Key="in/rows.csv", Body=b"n\n1\n")
    return _keys(s3_client, bucket)


@pytest.mark.parametrize(("make", "parameter"), CASES)
def test_an_unknown_connection_fails_the_task_naming_its_parameter_and_id(  # noqa: PLR0917
    bucket: str,
    s3_client: Any,
    s3: S3Service,
    inputs: list[str],
    make: Callable[[str, dict[str, Any]], Any],
    parameter: str,
) -> None:
    operator = make(bucket, {parameter: MISSING[parameter]})
    with pytest.raises(AirflowFailException) as failure:
        operator.execute({})
    message = str(failure.value)
    assert f"{parameter} {MISSING[parameter]!r} is not defined" in message.splitlines()[0], message
    assert s3.secret_access_key not in message
    assert _keys(s3_client, bucket) == inputs  # nothing written


def test_hooks_name_the_unknown_connection_before_any_client_or_session(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("AIRFLOW_CONN_AWS_PROD", raising=False)
    monkeypatch.delenv("AIRFLOW_CONN_POSTGRES_PROD", raising=False)
    with pytest.raises(ConfigurationError, match=r"^aws_conn_id 'aws_prod' is not defined.*AIRFLOW_CONN_AWS_PROD"):
        S3StreamHook(aws_conn_id="aws_prod").get_s3_client()
    with pytest.raises(ConfigurationError, match=r"^source_aws_conn_id 'aws_prod' is not defined"):
        S3StreamHook.for_source("aws_prod").arrow_s3_settings()
    with pytest.raises(ConfigurationError, match=r"^postgres_conn_id 'postgres_prod' is not defined"):
        PostgresStreamHook(postgres_conn_id="postgres_prod").get_psycopg_connection()


def test_no_connection_id_and_an_environment_connection_are_valid(
    s3: S3Service, monkeypatch: pytest.MonkeyPatch
) -> None:
    # None: boto3's default credential chain, here the environment's keys.
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", s3.access_key_id)
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", s3.secret_access_key)
    S3StreamHook(aws_conn_id=None).check_connection()
    assert S3StreamHook(aws_conn_id=None).arrow_s3_settings().access_key == s3.access_key_id
    # aws_default and postgres_default exist only as AIRFLOW_CONN_* variables in this session.
    S3StreamHook(aws_conn_id="aws_default").get_s3_client().list_buckets()
    PostgresStreamHook(postgres_conn_id="postgres_default").get_psycopg_connection().close()
