"""MultipartWriter against the real S3 endpoint over HTTP, through the recording/faulting proxy."""

from __future__ import annotations

import dataclasses
import hashlib
import os
import time
from typing import Any

import pytest

from airflow_s3stream.errors import ChecksumMismatchError, DestinationError
from airflow_s3stream.publish import Publication, publish
from airflow_s3stream.s3.multipart import MultipartConfig, MultipartWriter
from airflow_s3stream.s3.multipart.staged import abort_staged
from airflow_s3stream.s3.retry import RetryPolicy
from airflow_s3stream.s3.store_checks import PROBE_PREFIX, store_checks
from airflow_s3stream.units import MiB
from tests.support.s3proxy import Corrupt, Delay, S3Proxy, S3Request, Status

FAST_RETRY = RetryPolicy(max_attempts=4, base_delay=0.01, max_delay=0.05)


@pytest.fixture
def proxy_client(s3: Any, s3_proxy: S3Proxy) -> Any:
    """A client that talks to the endpoint through the proxy, without botocore's own retries."""
    via_proxy = dataclasses.replace(s3, endpoint_url=s3_proxy.endpoint_url, _handle=None)
    return via_proxy.client(retries={"total_max_attempts": 1}, max_pool_connections=16)


def config(**kw: Any) -> MultipartConfig:
    kw.setdefault("part_size", 5 * MiB)
    kw.setdefault("retry", FAST_RETRY)
    return MultipartConfig(**kw)


def uploads(proxy: S3Proxy) -> list[S3Request]:
    """The requests of the uploads, without the endpoint's checksum probe (:mod:`~airflow_s3stream.s3.store_checks`)."""
    return [r for r in proxy.requests if not r.key.startswith(PROBE_PREFIX)]


def read(client: Any, bucket: str, key: str) -> bytes:
    return client.get_object(Bucket=bucket, Key=key)["Body"].read()


def write_in_chunks(writer: MultipartWriter, data: bytes, chunk: int = 100_000) -> None:
    view = memoryview(data)
    for i in range(0, len(data), chunk):
        writer.write(view[i : i + chunk])


@pytest.mark.parametrize("concurrency", [1, 6])
def test_parts_of_different_sizes_make_a_byte_identical_object(
    s3_client: Any, bucket: str, proxy_client: Any, s3_proxy: S3Proxy, concurrency: int
) -> None:
    data = os.urandom(3 * 5 * MiB + 12_345)  # three full parts and a short last one
    with MultipartWriter(proxy_client, bucket, "out.bin", config=config(max_concurrency=concurrency)) as w:
        write_in_chunks(w, data, chunk=777_777)  # chunks straddle part boundaries
    assert read(s3_client, bucket, "out.bin") == data
    sizes = sorted(r.body_len for r in s3_proxy.requests if r.op == "UploadPart")
    assert sizes == [12_345, 5 * MiB, 5 * MiB, 5 * MiB]
    assert w.result is not None
    result = w.result.to_dict()
    assert (result["size"], result["parts"], result["part_size"]) == (len(data), 4, 5 * MiB)
    assert result["etag"].endswith("-4")
    assert "size" in result["verified"] and "etag" in result["verified"]
    assert s3_proxy.count("CompleteMultipartUpload") == 1


def test_full_object_crc64nvme_is_sent_and_verified_where_the_store_keeps_it(
    s3: Any, s3_client: Any, bucket: str
) -> None:
    from awscrt.checksums import crc64nvme

    data = os.urandom(2 * 5 * MiB + 1)
    with MultipartWriter(s3_client, bucket, "k", config=config(checksum_algorithm="CRC64NVME")) as w:
        w.write(data)
    assert w.result is not None
    expected = crc64nvme(data).to_bytes(8, "big")
    import base64

    assert w.result.checksum == base64.b64encode(expected).decode()
    assert w.result.checksum_type == "FULL_OBJECT"
    head = s3_client.head_object(Bucket=bucket, Key="k", ChecksumMode="ENABLED")
    assert w.result.store_checksum == head.get("ChecksumCRC64NVME", "")
    assert w.result.checked_by_store == []  # neither store echoes it, and the probe asks about CRC32C only
    if s3.origin == "moto":  # moto keeps the full-object CRC sent with Complete: it must be ours
        assert "checksum" in w.result.verified and w.result.store_checksum == w.result.checksum
    else:  # RGW 16 keeps no additional checksum: nothing to compare, and the result does not pretend
        assert "checksum" not in w.result.verified and w.result.store_checksum == ""


@pytest.mark.parametrize("payload", [b"", b"a small csv\n"])
def test_object_smaller_than_a_part_is_one_put(
    s3_client: Any, bucket: str, proxy_client: Any, s3_proxy: S3Proxy, payload: bytes
) -> None:
    with MultipartWriter(proxy_client, bucket, "small", config=config(), extra_args={"ContentType": "text/csv"}) as w:
        w.write(payload)
    assert read(s3_client, bucket, "small") == payload
    assert s3_client.head_object(Bucket=bucket, Key="small")["ContentType"] == "text/csv"
    assert [r.op for r in uploads(s3_proxy)].count("PutObject") == 1
    assert s3_proxy.count("CreateMultipartUpload") == 0
    assert w.result is not None and w.result.parts == 0 and w.result.size == len(payload)
    assert w.result.etag == hashlib.md5(payload).hexdigest()


def test_exception_in_with_block_aborts_and_publishes_nothing(s3_client: Any, bucket: str) -> None:
    with (
        pytest.raises(RuntimeError, match="producer failed"),
        MultipartWriter(s3_client, bucket, "k", config=config()) as w,
    ):
        w.write(os.urandom(11 * MiB))  # two parts already sent
        raise RuntimeError("producer failed")
    assert s3_client.list_multipart_uploads(Bucket=bucket).get("Uploads", []) == []
    assert s3_client.list_objects_v2(Bucket=bucket).get("KeyCount") == 0


def test_explicit_abort_leaves_no_upload(s3_client: Any, bucket: str) -> None:
    w = MultipartWriter(s3_client, bucket, "k", config=config())
    w.write(os.urandom(6 * MiB))
    w.abort()
    assert w.closed
    assert s3_client.list_multipart_uploads(Bucket=bucket).get("Uploads", []) == []
    assert s3_client.list_objects_v2(Bucket=bucket).get("KeyCount") == 0


def test_writer_blocks_while_max_concurrency_parts_are_in_flight(
    bucket: str, proxy_client: Any, s3_proxy: S3Proxy
) -> None:
    s3_proxy.add_fault(lambda r: Delay(0.4) if r.op == "UploadPart" else None)
    part = os.urandom(5 * MiB)
    with MultipartWriter(proxy_client, bucket, "k", config=config(max_concurrency=1)) as w:
        started = time.monotonic()
        for _ in range(4):
            w.write(part)
        writing = time.monotonic() - started
    # parts 2, 3 and 4 each wait for the one before: backpressure, not an unbounded queue
    assert writing >= 3 * 0.4 * 0.9


def test_transient_errors_on_parts_are_retried_to_success(
    s3_client: Any, bucket: str, proxy_client: Any, s3_proxy: S3Proxy
) -> None:
    s3_proxy.add_fault(lambda r: Status(503, "SlowDown") if r.op == "UploadPart" else None, times=2)
    s3_proxy.add_fault(lambda r: Status(500, "InternalError") if r.op == "UploadPart" else None, times=1)
    data = os.urandom(2 * 5 * MiB + 10)
    with MultipartWriter(proxy_client, bucket, "k", config=config(max_concurrency=2)) as w:
        w.write(data)
    assert read(s3_client, bucket, "k") == data
    assert s3_proxy.count("UploadPart") == 3 + 3


def test_access_denied_on_a_part_fails_at_once_naming_part_and_object(
    s3_client: Any, bucket: str, proxy_client: Any, s3_proxy: S3Proxy
) -> None:
    s3_proxy.add_fault(
        lambda r: Status(403, "AccessDenied") if r.op == "UploadPart" and r.query.get("partNumber") == "2" else None
    )
    writer = MultipartWriter(proxy_client, bucket, "k", config=config(max_concurrency=1))
    with pytest.raises(DestinationError, match=rf"part 2 of s3://{bucket}/k: AccessDenied"), writer as w:
        for _ in range(4):
            w.write(os.urandom(5 * MiB))
    part2 = [r for r in s3_proxy.requests if r.op == "UploadPart" and r.query.get("partNumber") == "2"]
    assert len(part2) == 1
    assert s3_client.list_multipart_uploads(Bucket=bucket).get("Uploads", []) == []
    assert s3_client.list_objects_v2(Bucket=bucket).get("KeyCount") == 0


def test_part_corrupted_in_transit_is_detected_and_sent_again(
    s3_client: Any, bucket: str, proxy_client: Any, s3_proxy: S3Proxy
) -> None:
    s3_proxy.add_fault(lambda r: Corrupt(offset=1000) if r.op == "UploadPart" else None, times=1)
    data = os.urandom(2 * 5 * MiB)
    with MultipartWriter(proxy_client, bucket, "k", config=config()) as w:
        w.write(data)
    assert read(s3_client, bucket, "k") == data
    assert s3_proxy.count("UploadPart") == 3


def test_part_corrupted_on_every_attempt_fails_and_publishes_nothing(
    s3: Any, s3_client: Any, bucket: str, proxy_client: Any, s3_proxy: S3Proxy
) -> None:
    s3_proxy.add_fault(
        lambda r: Corrupt(offset=5) if r.op == "UploadPart" and r.query.get("partNumber") == "2" else None
    )
    writer = MultipartWriter(proxy_client, bucket, "k", config=config())
    # moto stores the corrupted bytes (caught by the part's ETag); RGW refuses them itself
    problem = {"moto": "MD5 mismatch", "rgw": "server refused the checksum"}[s3.origin]
    with pytest.raises(ChecksumMismatchError, match=rf"part 2 of s3://{bucket}/k: {problem}"), writer as w:
        w.write(os.urandom(3 * 5 * MiB))
    assert s3_client.list_multipart_uploads(Bucket=bucket).get("Uploads", []) == []
    assert s3_client.list_objects_v2(Bucket=bucket).get("KeyCount") == 0


def test_corrupted_single_put_is_refused_or_deleted_again(
    s3: Any, s3_client: Any, bucket: str, proxy_client: Any, s3_proxy: S3Proxy
) -> None:
    store_checks(proxy_client, bucket, RetryPolicy())  # what the store checks, learnt before the link goes bad
    s3_proxy.add_fault(lambda r: Corrupt(offset=3) if r.op == "PutObject" else None)
    # auto sends Content-MD5 to both stores: RGW refuses the corrupted bytes itself;
    # moto stores them, and the ETag check takes the object down again
    # (RGW answers a damaged body before reading its Content-MD5: its signed SHA-256 no longer matches;
    # each refusal is retried by the one retry loop, and the last one is the error)
    message = {
        "rgw": r"server refused the checksum: XAmzContentSHA256Mismatch \(400\) after \d+ attempts",
        "moto": "MD5 mismatch .*; the object was deleted",
    }
    with (
        pytest.raises(ChecksumMismatchError, match=message[s3.origin]),
        MultipartWriter(proxy_client, bucket, "k", config=config()) as w,
    ):
        w.write(b"0123456789")
    assert s3_client.list_objects_v2(Bucket=bucket).get("KeyCount") == 0


def test_missing_bucket_is_a_destination_error(s3_client: Any) -> None:
    with (
        pytest.raises(DestinationError, match="s3://no-such-bucket-s3stream/k"),
        MultipartWriter(s3_client, "no-such-bucket-s3stream", "k", config=config()) as w,
    ):
        w.write(os.urandom(6 * MiB))


def test_write_only_credentials_complete_the_upload_without_read_back(
    s3_client: Any, bucket: str, proxy_client: Any, s3_proxy: S3Proxy
) -> None:
    s3_proxy.add_fault(lambda r: Status(403, "AccessDenied") if r.op == "HeadObject" else None)
    data = os.urandom(5 * MiB + 1)
    with MultipartWriter(proxy_client, bucket, "k", config=config()) as w:
        w.write(data)
    assert w.result is not None and w.result.verified == []
    assert read(s3_client, bucket, "k") == data


@pytest.mark.parametrize("size", [0, 1234, 2 * 5 * MiB + 7], ids=["empty", "small", "three-parts"])
def test_staged_writer_leaves_the_upload_open_until_the_commit_publishes_it(
    s3_client: Any, bucket: str, proxy_client: Any, s3_proxy: S3Proxy, size: int
) -> None:
    data = os.urandom(size)
    with MultipartWriter(proxy_client, bucket, "staged.bin", config=config(), stage=True) as w:
        write_in_chunks(w, data)
    staged = w.staged
    assert staged is not None and w.result is None
    assert staged.size == size and len(staged.parts) == max(1, -(-size // (5 * MiB)))  # small: one part
    assert s3_client.list_objects_v2(Bucket=bucket).get("KeyCount") == 0  # nothing visible yet
    assert s3_proxy.count("CompleteMultipartUpload") == 0
    assert [r.op for r in uploads(s3_proxy)].count("PutObject") == 0  # the endpoint's probe aside
    outcome = publish(proxy_client, Publication(bucket, (staged,)), config())
    assert read(s3_client, bucket, "staged.bin") == data
    result = outcome.results["staged.bin"]
    assert result.size == size and "etag" in result.verified and outcome.commit_ms > 0
    assert s3_client.list_multipart_uploads(Bucket=bucket).get("Uploads", []) == []


def test_aborted_staged_upload_publishes_nothing(s3_client: Any, bucket: str, proxy_client: Any) -> None:
    with MultipartWriter(proxy_client, bucket, "staged.bin", config=config(), stage=True) as w:
        w.write(os.urandom(6 * MiB))
    assert w.staged is not None
    abort_staged(proxy_client, [w.staged], config())
    assert s3_client.list_objects_v2(Bucket=bucket).get("KeyCount") == 0
    assert s3_client.list_multipart_uploads(Bucket=bucket).get("Uploads", []) == []
