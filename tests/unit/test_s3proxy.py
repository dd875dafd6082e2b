"""The test proxy itself: it must see what boto3 sends and inject what it is told to."""

from __future__ import annotations

from typing import Any

import pytest
from botocore.exceptions import ClientError

from tests.support.devservices import S3Service
from tests.support.s3proxy import (
    DropResponse,
    Hold,
    S3Proxy,
    Status,
    completed_uploads_gone,
    upload_gone,
)


def _client_via(proxy: S3Proxy, s3: S3Service) -> Any:
    from dataclasses import replace

    return replace(s3, endpoint_url=proxy.endpoint_url, _handle=None).client()  # botocore retries off


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


def test_drop_response_lets_the_server_act_and_resets_the_client(
    s3: S3Service, s3_proxy: S3Proxy, bucket: str, s3_client: Any
) -> None:
    from botocore.exceptions import ConnectionClosedError

    client = _client_via(s3_proxy, s3)
    s3_proxy.add_fault(lambda r: DropResponse() if r.op == "PutObject" else None, times=1)
    with pytest.raises(ConnectionClosedError):
        client.put_object(Bucket=bucket, Key="k", Body=b"stored")
    assert s3_client.get_object(Bucket=bucket, Key="k")["Body"].read() == b"stored"
    assert [(r.status, r.fault) for r in s3_proxy.requests] == [(200, "DropResponse")]


def test_completed_uploads_gone_answers_no_such_upload_after_a_completion(
    s3: S3Service, s3_proxy: S3Proxy, bucket: str
) -> None:
    client = _client_via(s3_proxy, s3)
    s3_proxy.add_fault(completed_uploads_gone(s3_proxy))
    upload_id = client.create_multipart_upload(Bucket=bucket, Key="m")["UploadId"]
    etag = client.upload_part(Bucket=bucket, Key="m", UploadId=upload_id, PartNumber=1, Body=b"x")["ETag"]
    parts = {"Parts": [{"PartNumber": 1, "ETag": etag}]}
    client.complete_multipart_upload(Bucket=bucket, Key="m", UploadId=upload_id, MultipartUpload=parts)
    with pytest.raises(ClientError) as err:  # moto alone would answer 200 again
        client.complete_multipart_upload(Bucket=bucket, Key="m", UploadId=upload_id, MultipartUpload=parts)
    assert (err.value.response["Error"]["Code"], s3_proxy.requests[-1].status) == ("NoSuchUpload", 404)
    other = client.create_multipart_upload(Bucket=bucket, Key="m")["UploadId"]
    s3_proxy.add_fault(upload_gone(other))
    with pytest.raises(ClientError, match="NoSuchUpload"):
        client.list_parts(Bucket=bucket, Key="m", UploadId=other)


def test_hold_keeps_the_answer_back_until_released(s3: S3Service, s3_proxy: S3Proxy, bucket: str) -> None:
    import threading

    client = _client_via(s3_proxy, s3)
    hold = Hold()
    s3_proxy.add_fault(lambda r: hold if r.op == "PutObject" else None, times=1)
    answers: list[Any] = []
    writer = threading.Thread(target=lambda: answers.append(client.put_object(Bucket=bucket, Key="h", Body=b"1")))
    writer.start()
    assert hold.reached.wait(10)
    assert s3_proxy.requests[0].status == 200 and answers == []  # stored, not yet answered
    hold.release()
    writer.join(10)
    assert answers and answers[0]["ResponseMetadata"]["HTTPStatusCode"] == 200
