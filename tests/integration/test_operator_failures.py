"""What leaves each operator when S3 refuses: named, and failed for good or retried by Airflow.

A permanent refusal (``400 InvalidRequest``) must end the task without retries
(``AirflowFailException``); a ``503`` that outlasts the package's retries must be a
``TransientError`` so Airflow retries the task. Either way the message names the ``s3://`` object
the task works on. Faults are injected by the recording proxy in front of the real S3 endpoint.
"""

from __future__ import annotations

import io
import os
import zipfile
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from airflow.sdk.exceptions import AirflowFailException

from airflow_s3stream.errors import TransientError
from airflow_s3stream.operators import PostgresToS3StreamOperator, S3MultipartUploadOperator, S3ZipVerifyOperator
from tests.support.s3proxy import S3Proxy, S3Request, Status

MiB = 1024 * 1024
FAULTS = [
    pytest.param(Status(400, "InvalidRequest"), AirflowFailException, id="permanent-400"),
    pytest.param(Status(503, "SlowDown"), TransientError, id="persistent-503"),
]


def inject(proxy: S3Proxy, op: str, fault: Status, key: str | None = None) -> None:
    """Answer every ``op`` request (on ``key`` when given) with ``fault``."""

    def rule(r: S3Request) -> Status | None:
        return fault if r.op == op and (key is None or r.key == key) else None

    proxy.add_fault(rule)


def assert_fails_naming(run: Callable[[], Any], expected: type[Exception], uri: str) -> None:
    with pytest.raises(expected) as failure:
        run()
    assert uri in str(failure.value), str(failure.value)


@pytest.mark.parametrize(("fault", "expected"), FAULTS)
@pytest.mark.parametrize("op", ["HeadBucket", "PutObject", "UploadPart"])
def test_export_failures_are_named_and_fail_or_retry(  # noqa: PLR0917
    bucket: str, proxy_aws_conn: Callable[..., str], s3_proxy: S3Proxy, op: str, fault: Status, expected: type
) -> None:
    rows = 300_000 if op == "UploadPart" else 10  # a result larger than one part is a multipart upload
    export = PostgresToS3StreamOperator(
        task_id="export",
        sql=f"SELECT g, md5(g::text) AS h FROM generate_series(1, {rows}) g",
        s3_bucket=bucket,
        s3_key="out/data",
        aws_conn_id=proxy_aws_conn(),
        part_size=5 * MiB,
    )
    inject(s3_proxy, op, fault)
    assert_fails_naming(lambda: export.execute({}), expected, f"s3://{bucket}/out/data")
    assert s3_proxy.count(op) >= 1


@pytest.mark.parametrize(("fault", "expected"), FAULTS)
@pytest.mark.parametrize("op", ["GetObject", "PutObject"])
def test_verify_failures_are_named_and_fail_or_retry(  # noqa: PLR0917
    bucket: str,
    s3_client: Any,
    proxy_aws_conn: Callable[..., str],
    s3_proxy: S3Proxy,
    op: str,
    fault: Status,
    expected: type,
) -> None:
    archive = io.BytesIO()
    with zipfile.ZipFile(archive, "w") as zf:
        zf.writestr("a.txt", "hello")
    s3_client.put_object(Bucket=bucket, Key="in/a.zip", Body=archive.getvalue())
    verify = S3ZipVerifyOperator(
        task_id="verify",
        s3_bucket=bucket,
        s3_key="in/a.zip",
        report_key="reports/a.json",  # not under the archive's key, so naming it is not a coincidence
        aws_conn_id=proxy_aws_conn(),
        max_attempts=2,
    )
    inject(s3_proxy, op, fault)  # GetObject of the archive, or PutObject of the report
    assert_fails_naming(lambda: verify.execute({}), expected, f"s3://{bucket}/in/a.zip")
    assert s3_proxy.count(op) >= 1


@pytest.mark.parametrize(("fault", "expected"), FAULTS)
@pytest.mark.parametrize("op", ["PutObject", "UploadPart"])
def test_upload_failures_are_named_and_fail_or_retry(  # noqa: PLR0917
    bucket: str,
    tmp_path: Path,
    proxy_aws_conn: Callable[..., str],
    s3_proxy: S3Proxy,
    op: str,
    fault: Status,
    expected: type,
) -> None:
    source = tmp_path / "data.bin"
    source.write_bytes(os.urandom(6 * MiB if op == "UploadPart" else 1000))  # 2 parts, or one PUT
    upload = S3MultipartUploadOperator(
        task_id="upload",
        source=str(source),
        s3_bucket=bucket,
        s3_key="up/data.bin",
        aws_conn_id=proxy_aws_conn(),
        part_size=5 * MiB,
        max_attempts=2,
    )
    inject(s3_proxy, op, fault, key="up/data.bin")
    assert_fails_naming(lambda: upload.execute({}), expected, f"s3://{bucket}/up/data.bin")
    assert s3_proxy.count(op) >= 1


def test_a_missing_bucket_error_chain_ends_and_names_the_bucket(s3_client: Any, tmp_path: Path) -> None:
    """Code that walks ``__cause__`` (an error reporter, a log formatter) must reach its end."""
    from airflow_s3stream.errors import DestinationError
    from airflow_s3stream.s3.multipart import MultipartConfig, MultipartWriter
    from airflow_s3stream.s3.objects import put_object
    from airflow_s3stream.s3.retry import RetryPolicy

    def chain(exc: BaseException) -> list[str]:
        names: list[str] = []
        current: BaseException | None = exc
        while current is not None and len(names) < 10:
            names.append(type(current).__name__)
            current = current.__cause__
        return names

    with pytest.raises(DestinationError, match="s3://no-such-bucket-s3stream/k") as put:
        put_object(s3_client, "no-such-bucket-s3stream", "k", b"{}", RetryPolicy())
    assert chain(put.value) == ["DestinationError", "NoSuchBucket"]  # botocore's ClientError for the code
    writer = MultipartWriter(s3_client, "no-such-bucket-s3stream", "k", config=MultipartConfig())
    with pytest.raises(DestinationError, match="no-such-bucket-s3stream") as streamed, writer:
        writer.write(os.urandom(1024))
    assert 2 <= len(chain(streamed.value)) < 10
