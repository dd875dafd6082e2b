"""S3MultipartUploadOperator and the stale-upload cleanup, through Airflow connections and real S3."""

from __future__ import annotations

import functools
import http.server
import json
import logging
import os
import threading
from collections.abc import Callable, Iterator
from datetime import timedelta, timezone
from pathlib import Path
from typing import Any

import pytest
from airflow.sdk.exceptions import AirflowFailException

from airflow_s3stream.errors import ConfigurationError, TransientError
from airflow_s3stream.operators import S3MultipartUploadOperator
from airflow_s3stream.s3.multipart.cleanup import abort_stale_uploads
from airflow_s3stream.units import MiB
from tests.support.s3proxy import S3Proxy, Status

PART = 5 * MiB


@pytest.fixture
def proxy_conn(proxy_aws_conn: Callable[..., str]) -> str:
    """An Airflow connection ``aws_mpu_proxy`` through the recording proxy, botocore retries off."""
    return proxy_aws_conn("aws_mpu_proxy", retries={"total_max_attempts": 1})


@pytest.fixture
def http_root(tmp_path: Path) -> Iterator[tuple[Path, str]]:
    """A local HTTP server over ``tmp_path/www``: (directory, base URL)."""
    root = tmp_path / "www"
    root.mkdir()
    handler = functools.partial(http.server.SimpleHTTPRequestHandler, directory=str(root))
    handler.log_message = lambda *a, **k: None  # type: ignore[attr-defined]
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield root, f"http://127.0.0.1:{server.server_address[1]}"
    server.shutdown()
    server.server_close()


def uploads(client: Any, bucket: str) -> list[dict[str, Any]]:
    return client.list_multipart_uploads(Bucket=bucket).get("Uploads", [])


def test_constructor_validates_at_parse_time_without_io() -> None:
    with pytest.raises(ConfigurationError, match=r"up: part_size=1024 bytes is outside S3's limits"):
        S3MultipartUploadOperator(task_id="up", source="/x", s3_bucket="b", s3_key="k", part_size=1024)
    with pytest.raises(ConfigurationError, match="up: max_concurrency"):
        S3MultipartUploadOperator(task_id="up", source="/x", s3_bucket="b", s3_key="k", max_concurrency=0)
    with pytest.raises(ConfigurationError, match="up: s3_key must be a non-empty string"):
        S3MultipartUploadOperator(task_id="up", source="/x", s3_bucket="b", s3_key="")
    with pytest.raises(ConfigurationError, match="CRC64NVME"):
        S3MultipartUploadOperator(
            task_id="up",
            source="/x",
            s3_bucket="b",
            s3_key="k",
            checksum_algorithm="CRC64NVME",
            checksum_type="COMPOSITE",
        )
    # a connection that does not exist is fine until execute(): nothing is looked up here
    op = S3MultipartUploadOperator(
        task_id="up", source="{{ params.src }}", s3_bucket="b", s3_key="k", aws_conn_id="nope", part_size=8 * MiB
    )
    assert S3MultipartUploadOperator.template_fields == ("source", "s3_bucket", "s3_key")
    assert op.config.part_size == 8 * MiB


def test_execute_uploads_a_local_file_and_returns_the_xcom_dict(
    tmp_path: Path, s3: Any, s3_client: Any, bucket: str
) -> None:
    path = tmp_path / "data.bin"
    path.write_bytes(os.urandom(3 * PART + 5))
    op = S3MultipartUploadOperator(
        task_id="up", source=str(path), s3_bucket=bucket, s3_key="in/data.bin", part_size=PART, max_concurrency=3
    )
    result = op.execute({})
    assert s3_client.get_object(Bucket=bucket, Key="in/data.bin")["Body"].read() == path.read_bytes()
    json.dumps(result)  # XCom-serialisable
    for field in (
        "bucket",
        "key",
        "size",
        "parts",
        "part_size",
        "checksum_algorithm",
        "checksum_type",
        "checksum",
        "etag",
        "seconds",
        "mb_per_s",
        "resumed_parts",
    ):
        assert field in result
    assert (result["bucket"], result["key"], result["size"], result["parts"]) == (
        bucket,
        "in/data.bin",
        3 * PART + 5,
        4,
    )
    # neither moto nor RGW checks a CRC32C: auto sends Content-MD5, which RGW checks and moto does not
    assert (result["checksum_algorithm"], result["resumed_parts"], result["copied"]) == ("MD5", 0, False)
    assert result["checked_by_store"] == (["Content-MD5"] if s3.origin == "rgw" else [])
    head = s3_client.head_object(Bucket=bucket, Key="in/data.bin")
    assert result["etag"] == head["ETag"].strip('"') and result["etag"].endswith("-4")


def test_missing_source_fails_without_retry_before_any_upload(
    tmp_path: Path, bucket: str, proxy_conn: str, s3_proxy: S3Proxy
) -> None:
    op = S3MultipartUploadOperator(
        task_id="up", source=str(tmp_path / "absent.csv"), s3_bucket=bucket, s3_key="k", aws_conn_id=proxy_conn
    )
    with pytest.raises(AirflowFailException, match=r"absent\.csv does not exist"):
        op.execute({})
    assert s3_proxy.count("CreateMultipartUpload") + s3_proxy.count("PutObject") == 0


def test_missing_bucket_fails_without_retry_naming_it(tmp_path: Path) -> None:
    path = tmp_path / "f.bin"
    path.write_bytes(os.urandom(PART + 1))
    op = S3MultipartUploadOperator(
        task_id="up", source=str(path), s3_bucket="no-such-bucket-mpu", s3_key="k", part_size=PART
    )
    with pytest.raises(AirflowFailException, match=r"s3://no-such-bucket-mpu/.*NoSuchBucket"):
        op.execute({})


def test_exhausted_transient_errors_propagate_for_airflow_retry_and_keep_resume_state(
    tmp_path: Path, s3_client: Any, bucket: str, proxy_conn: str, s3_proxy: S3Proxy
) -> None:
    path = tmp_path / "f.bin"
    path.write_bytes(os.urandom(3 * PART))
    s3_proxy.add_fault(
        lambda r: Status(503, "SlowDown") if r.op == "UploadPart" and r.query["partNumber"] == "3" else None
    )
    kw: dict[str, Any] = {"source": str(path), "s3_bucket": bucket, "s3_key": "k", "aws_conn_id": proxy_conn}
    op = S3MultipartUploadOperator(task_id="up", part_size=PART, max_concurrency=1, max_attempts=2, **kw)
    with pytest.raises(TransientError):
        op.execute({})
    assert len(uploads(s3_client, bucket)) == 1  # kept for the next try
    s3_proxy.clear_faults()
    s3_proxy.clear()
    result = S3MultipartUploadOperator(task_id="up", part_size=PART, max_concurrency=1, **kw).execute({})
    assert result["resumed_parts"] == 2 and result["uploaded_parts"] == 1
    assert s3_proxy.count("UploadPart") == 1
    assert uploads(s3_client, bucket) == []


def test_s3_source_in_the_same_endpoint_is_copied_server_side(
    s3_client: Any, bucket: str, proxy_conn: str, s3_proxy: S3Proxy
) -> None:
    data = os.urandom(2 * PART + 3)
    s3_client.put_object(Bucket=bucket, Key="src.bin", Body=data)
    op = S3MultipartUploadOperator(
        task_id="cp",
        source=f"s3://{bucket}/src.bin",
        s3_bucket=bucket,
        s3_key="dst.bin",
        aws_conn_id=proxy_conn,
        part_size=PART,
    )
    result = op.execute({})
    assert result["copied"] is True and result["parts"] == 3
    assert s3_proxy.count("UploadPartCopy") == 3 and s3_proxy.count("UploadPart") == 0
    assert s3_client.get_object(Bucket=bucket, Key="dst.bin")["Body"].read() == data


def test_uri_source_is_streamed_and_its_query_string_never_logged(
    http_root: tuple[Path, str], s3_client: Any, bucket: str, caplog: pytest.LogCaptureFixture
) -> None:
    root, base = http_root
    data = os.urandom(2 * PART + 77)
    (root / "export.bin").write_bytes(data)
    secret = "X-Amz-Signature=deadbeefsecret"
    op = S3MultipartUploadOperator(
        task_id="up", source=f"{base}/export.bin?{secret}", s3_bucket=bucket, s3_key="web.bin", part_size=PART
    )
    with caplog.at_level(logging.INFO):  # the task log level; third-party DEBUG logs print URLs
        result = op.execute({})
    assert s3_client.get_object(Bucket=bucket, Key="web.bin")["Body"].read() == data
    assert result["size"] == len(data) and result["parts"] == 3
    assert "deadbeefsecret" not in caplog.text
    assert "deadbeefsecret" not in json.dumps(result)
    assert result["source"] == f"{base}/export.bin?…"


def test_unreachable_uri_fails_without_leaking_the_query(
    http_root: tuple[Path, str], bucket: str, s3_client: Any
) -> None:
    _, base = http_root
    op = S3MultipartUploadOperator(task_id="up", source=f"{base}/missing?token=topsecret", s3_bucket=bucket, s3_key="k")
    with pytest.raises(AirflowFailException) as info:
        op.execute({})
    assert "topsecret" not in str(info.value)
    assert "missing" in str(info.value)
    assert uploads(s3_client, bucket) == []


def test_operator_option_aborts_stale_uploads_of_its_key_first(tmp_path: Path, s3_client: Any, bucket: str) -> None:
    stale = s3_client.create_multipart_upload(Bucket=bucket, Key="out/k")["UploadId"]
    other = s3_client.create_multipart_upload(Bucket=bucket, Key="elsewhere/k")["UploadId"]
    path = tmp_path / "f.bin"
    path.write_bytes(b"small")
    op = S3MultipartUploadOperator(
        task_id="up", source=str(path), s3_bucket=bucket, s3_key="out/k", abort_stale_uploads_older_than=0
    )
    result = op.execute({})
    assert result["stale_uploads_aborted"] == 1
    assert [u["UploadId"] for u in uploads(s3_client, bucket)] == [other]
    assert stale != other


def test_abort_stale_uploads_honours_prefix_and_age(s3_client: Any, bucket: str) -> None:
    keep_other_prefix = s3_client.create_multipart_upload(Bucket=bucket, Key="keep/a")["UploadId"]
    old = s3_client.create_multipart_upload(Bucket=bucket, Key="tmp/b")["UploadId"]
    # moto reports a fixed Initiated date, so "now" is placed relative to what the server says
    initiated = next(u["Initiated"] for u in uploads(s3_client, bucket) if u["UploadId"] == old)
    soon = initiated.astimezone(timezone.utc) + timedelta(minutes=30)
    assert abort_stale_uploads(s3_client, bucket, "tmp/", timedelta(hours=1), now=soon) == []  # too young
    later = soon + timedelta(hours=2)
    planned = abort_stale_uploads(s3_client, bucket, "tmp/", timedelta(hours=1), now=later, dry_run=True)
    assert [(s.key, s.upload_id) for s in planned] == [("tmp/b", old)]
    assert len(uploads(s3_client, bucket)) == 2  # dry run changed nothing
    done = abort_stale_uploads(s3_client, bucket, "tmp/", timedelta(hours=1), now=later)
    assert [s.upload_id for s in done] == [old]
    assert [u["UploadId"] for u in uploads(s3_client, bucket)] == [keep_other_prefix]
