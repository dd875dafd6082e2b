"""The test proxy itself: it must see what boto3 sends and inject what it is told to."""

from __future__ import annotations

from typing import Any

import pytest
from botocore.exceptions import ClientError

from tests.support.devservices import S3Service
from tests.support.s3proxy import S3Proxy, Status


def _client_via(proxy: S3Proxy, s3: S3Service) -> Any:
    from dataclasses import replace

    return replace(s3, endpoint_url=proxy.endpoint_url, _handle=None).client(retries={"max_attempts": 1})


def test_proxy_forwards_and_names_operations(s3: S3Service, s3_proxy: S3Proxy, bucket: str) -> None:
    client = _client_via(s3_proxy, s3)
    client.put_object(Bucket=bucket, Key="a/b.txt", Body=b"hello")
    assert client.get_object(Bucket=bucket, Key="a/b.txt", Range="bytes=1-2")["Body"].read() == b"el"
    mpu = client.create_multipart_upload(Bucket=bucket, Key="m")
    client.upload_part(Bucket=bucket, Key="m", UploadId=mpu["UploadId"], PartNumber=1, Body=b"x" * 10)
    client.abort_multipart_upload(Bucket=bucket, Key="m", UploadId=mpu["UploadId"])
    ops = [r.op for r in s3_proxy.requests]
    assert ops == ["PutObject", "GetObject", "CreateMultipartUpload", "UploadPart", "AbortMultipartUpload"]
    assert s3_proxy.requests[1].headers["range"] == "bytes=1-2"
    assert s3_proxy.requests[0].key == "a/b.txt"


def test_proxy_injects_a_status_a_limited_number_of_times(s3: S3Service, s3_proxy: S3Proxy, bucket: str) -> None:
    client = _client_via(s3_proxy, s3)
    s3_proxy.add_fault(lambda r: Status(403, "AccessDenied") if r.op == "PutObject" else None, times=1)
    with pytest.raises(ClientError) as err:
        client.put_object(Bucket=bucket, Key="k", Body=b"1")
    assert err.value.response["Error"]["Code"] == "AccessDenied"
    client.put_object(Bucket=bucket, Key="k", Body=b"1")
    assert [r.status for r in s3_proxy.requests] == [403, 200]
