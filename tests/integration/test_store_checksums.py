"""What an upload's result claims about checksums is what the store really did (moto and Ceph RGW).

The endpoint probe (:mod:`airflow_s3stream.s3.store_checks`) decides what ``auto`` sends and what
``checked_by_store`` may say. RGW refuses a wrong ``Content-MD5`` and ignores ``x-amz-checksum-*``;
moto checks neither on PutObject. Through the proxy, the store is made to answer the probe as AWS
S3 does (400 ``BadDigest`` to a wrong CRC32C), to refuse it, or to forbid it.
"""

from __future__ import annotations

import concurrent.futures
import dataclasses
import hashlib
import logging
import os
import threading
from typing import Any

import pytest

from airflow_s3stream.errors import ChecksumMismatchError, TransientError
from airflow_s3stream.s3.multipart import MultipartConfig, MultipartWriter
from airflow_s3stream.s3.multipart.checksums import PartDigest, PartHasher
from airflow_s3stream.s3.multipart.completion import complete_and_verify
from airflow_s3stream.s3.multipart.part_record import PartRecord
from airflow_s3stream.s3.multipart.session import UploadSession
from airflow_s3stream.s3.retry import RetryPolicy
from airflow_s3stream.s3.store_checks import PROBE_PREFIX, StoreChecks, known_checks, store_checks
from airflow_s3stream.units import MiB
from tests.support.s3proxy import Corrupt, Hold, S3Proxy, S3Request, Status

FAST_RETRY = RetryPolicy(max_attempts=3, base_delay=0.01, max_delay=0.05)
# what each store does with a deliberately wrong checksum on PutObject (measured)
STORE_CHECKS = {
    "rgw": StoreChecks(additional="ignored", content_md5="checked"),
    "moto": StoreChecks(additional="ignored", content_md5="ignored"),
}


def config(**kw: Any) -> MultipartConfig:
    kw.setdefault("part_size", 5 * MiB)
    kw.setdefault("retry", FAST_RETRY)
    return MultipartConfig(**kw)


def head(client: Any, bucket: str, key: str) -> dict[str, Any]:
    return dict(client.head_object(Bucket=bucket, Key=key, ChecksumMode="ENABLED"))


def upload(client: Any, bucket: str, key: str, data: bytes, **kw: Any) -> dict[str, Any]:
    with MultipartWriter(client, bucket, key, config=config(**kw)) as w:
        w.write(data)
    assert w.result is not None
    return w.result.to_dict()


def probes(proxy: S3Proxy) -> list[S3Request]:
    return [r for r in proxy.requests if r.key.startswith(PROBE_PREFIX)]


@pytest.fixture
def proxy_client(s3: Any, s3_proxy: S3Proxy) -> Any:
    """A client through the proxy: a fresh endpoint URL, so this process has not probed it yet."""
    via_proxy = dataclasses.replace(s3, endpoint_url=s3_proxy.endpoint_url, _handle=None)
    return via_proxy.client(retries={"total_max_attempts": 1}, max_pool_connections=16)


def answer_like_aws(request: S3Request) -> Status | None:
    """AWS S3 refuses a PutObject whose CRC32C or Content-MD5 does not match the body (the probe's)."""
    if request.op != "PutObject" or not request.key.startswith(PROBE_PREFIX):
        return None
    if "x-amz-checksum-crc32c" in request.headers:
        return Status(400, "BadDigest", "The CRC32C you specified did not match the calculated checksum.")
    return Status(400, "BadDigest", "The Content-MD5 you specified did not match what we received.")


# -- the probe, on the store itself ------------------------------------------------------------


def test_the_probe_finds_what_this_store_checks(s3: Any, s3_client: Any, bucket: str) -> None:
    assert store_checks(s3_client, bucket, FAST_RETRY) == STORE_CHECKS[s3.origin]
    # the probe objects the store accepted were deleted again
    assert s3_client.list_objects_v2(Bucket=bucket, Prefix=PROBE_PREFIX).get("KeyCount") == 0


def test_a_probe_whose_body_arrives_damaged_learns_nothing(
    s3: Any, bucket: str, proxy_client: Any, s3_proxy: S3Proxy
) -> None:
    s3_proxy.add_fault(lambda r: Corrupt(offset=3) if r.op == "PutObject" else None)
    checks = store_checks(proxy_client, bucket, FAST_RETRY)
    # RGW refuses the damaged body because it no longer matches its signed SHA-256: that says nothing
    # of the wrong CRC32C the probe sent, so no verdict, and the probe is sent again as a retry would;
    # moto checks neither and stores the probe
    assert checks.additional == {"rgw": "unknown", "moto": "ignored"}[s3.origin]
    # the CRC32C probe, then the Content-MD5 probe: on RGW each sent max_attempts times, as a retry would
    assert s3_proxy.count("PutObject") == {"rgw": 2 * FAST_RETRY.max_attempts, "moto": 2}[s3.origin]


def test_auto_sends_content_md5_where_the_store_ignores_crc32c_and_claims_only_what_it_checked(
    s3: Any, s3_client: Any, bucket: str
) -> None:
    data = os.urandom(2 * 5 * MiB + 1000)
    result = upload(s3_client, bucket, "multi.bin", data)
    stored = head(s3_client, bucket, "multi.bin")
    assert result["checksum_algorithm"] == "MD5"
    assert result["checked_by_store"] == {"rgw": ["Content-MD5"], "moto": []}[s3.origin]
    assert result["store_checksum"] is None  # an MD5 upload's stored identity is its ETag
    assert result["etag"] == stored["ETag"].strip('"') and result["etag"].endswith("-3")
    assert result["checksum"] == result["etag"]  # ours (md5 of part MD5s) and the store's agree
    assert "etag" in result["verified"]
    small = upload(s3_client, bucket, "small.bin", b"0123456789")
    assert (small["checksum_algorithm"], small["parts"]) == ("MD5", 0)
    assert small["checked_by_store"] == result["checked_by_store"]
    assert (
        small["etag"]
        == hashlib.md5(b"0123456789").hexdigest()
        == head(s3_client, bucket, "small.bin")["ETag"].strip('"')
    )


def test_explicit_crc32c_is_kept_but_not_claimed_where_the_store_ignores_it(
    s3: Any, s3_client: Any, bucket: str
) -> None:
    data = os.urandom(5 * MiB + 7)
    result = upload(s3_client, bucket, "crc.bin", data, checksum_algorithm="CRC32C")
    stored = head(s3_client, bucket, "crc.bin")
    assert result["checksum_algorithm"] == "CRC32C" and result["checksum"].endswith("-2")  # ours, computed
    assert result["checked_by_store"] == []  # neither store checks a CRC32C (the probe says so)
    assert result["store_checksum"] == str(stored.get("ChecksumCRC32C") or "")
    assert result["etag"] == stored["ETag"].strip('"')


@pytest.mark.parametrize("algorithm", ["auto", "CRC32C"])
def test_etag_is_the_objects_even_without_verification(s3: Any, s3_client: Any, bucket: str, algorithm: str) -> None:
    # RGW answers the first CompleteMultipartUpload with an empty ETag: HeadObject fills it in
    result = upload(
        s3_client,
        bucket,
        "noverify.bin",
        os.urandom(5 * MiB + 1),
        checksum_algorithm=algorithm,
        verify_after_complete=False,
    )
    assert result["verified"] == []
    assert result["etag"] == head(s3_client, bucket, "noverify.bin")["ETag"].strip('"') != ""


# -- the probe through the proxy: once per endpoint; AWS-like, forbidden --------------------------


def test_a_store_that_refuses_a_wrong_crc32c_keeps_auto_on_crc32c_and_is_probed_once(
    s3_client: Any, bucket: str, proxy_client: Any, s3_proxy: S3Proxy
) -> None:
    s3_proxy.add_fault(answer_like_aws)
    data = os.urandom(5 * MiB + 3)
    first = upload(proxy_client, bucket, "a.bin", data)
    second = upload(proxy_client, bucket, "b.bin", data[:100])
    # one probe for both uploads: CRC32C is checked, so Content-MD5 need not be asked
    assert [(r.op, r.status) for r in probes(s3_proxy)] == [("PutObject", 400)]
    assert "x-amz-checksum-crc32c" in probes(s3_proxy)[0].headers
    assert known_checks(proxy_client) == StoreChecks("checked", None)
    for result in (first, second):
        assert (result["checksum_algorithm"], result["checked_by_store"]) == ("CRC32C", ["CRC32C"])
    creates = [r for r in s3_proxy.requests if r.op == "CreateMultipartUpload"]
    assert [r.headers.get("x-amz-checksum-algorithm") for r in creates] == ["CRC32C"]
    assert s3_client.get_object(Bucket=bucket, Key="a.bin")["Body"].read() == data


def test_concurrent_writers_to_a_new_endpoint_share_one_probe(
    s3: Any, bucket: str, proxy_client: Any, s3_proxy: S3Proxy
) -> None:
    writers = [MultipartWriter(proxy_client, bucket, f"w{i}.bin", config=config()) for i in range(4)]

    def run(w: MultipartWriter) -> list[str]:
        with w:
            w.write(b"x" * 1000)
        assert w.result is not None
        return w.result.checked_by_store

    with concurrent.futures.ThreadPoolExecutor(4) as pool:
        claims = list(pool.map(run, writers))
    assert claims == [{"rgw": ["Content-MD5"], "moto": []}[s3.origin]] * 4
    puts = [r for r in probes(s3_proxy) if r.op == "PutObject"]
    assert len(puts) == 2  # one wrong CRC32C, then (not checked) one wrong Content-MD5, for all four writers
    assert ["x-amz-checksum-crc32c" in r.headers for r in puts] == [True, False]
    assert ["content-md5" in r.headers for r in puts] == [False, True]
    assert known_checks(proxy_client) == STORE_CHECKS[s3.origin]


def test_no_permission_to_probe_keeps_crc32c_and_claims_nothing(
    s3_client: Any, bucket: str, proxy_client: Any, s3_proxy: S3Proxy, caplog: pytest.LogCaptureFixture
) -> None:
    s3_proxy.add_fault(
        lambda r: Status(403, "AccessDenied", "Access Denied") if r.key.startswith(PROBE_PREFIX) else None
    )
    with caplog.at_level(logging.WARNING, logger="airflow_s3stream"):
        results = [upload(proxy_client, bucket, f"{n}.bin", os.urandom(5 * MiB + n)) for n in (1, 2)]
    assert caplog.text.count("no permission to probe") == 1
    assert len(probes(s3_proxy)) == 1  # the CRC32C probe, refused; nothing more is asked
    for result in results:
        assert (result["checksum_algorithm"], result["checked_by_store"]) == ("CRC32C", [])


# -- what a 200 to Complete does not prove ---------------------------------------------------------


def test_an_object_replaced_during_complete_is_reported_and_left_alone(
    s3: Any, s3_client: Any, bucket: str, proxy_client: Any, s3_proxy: S3Proxy
) -> None:
    hold = Hold(timeout=30)
    s3_proxy.add_fault(lambda r: hold if r.op == "CompleteMultipartUpload" else None, times=1)
    writer = MultipartWriter(proxy_client, bucket, "k", config=config())
    writer.write(os.urandom(5 * MiB + 10))
    failure: list[BaseException] = []

    def close() -> None:
        try:
            writer.close()
        except BaseException as exc:
            failure.append(exc)

    closing = threading.Thread(target=close)
    closing.start()
    assert hold.reached.wait(60)
    s3_client.put_object(Bucket=bucket, Key="k", Body=b"another writer's object")
    hold.release()
    closing.join(60)
    assert len(failure) == 1 and isinstance(failure[0], ChecksumMismatchError)
    assert "left as it is" in str(failure[0]) and "size mismatch" in str(failure[0])
    assert s3_client.get_object(Bucket=bucket, Key="k")["Body"].read() == b"another writer's object"


def test_completing_an_upload_the_store_never_held_never_touches_the_object(s3_client: Any, bucket: str) -> None:
    s3_client.put_object(Bucket=bucket, Key="k", Body=b"existing object")
    session = UploadSession(s3_client, bucket, "k", config(checksum_algorithm="MD5"), upload_id="2~bogus-upload-id")
    md5 = hashlib.md5(b"ours").hexdigest()
    # RGW 16: 500 "This multipart completion is already in progress"; moto: 500 (a KeyError inside
    # it). Both are retried, then transient: the caller keeps its state and the next try settles it.
    with pytest.raises(TransientError, match=rf"completing the multipart upload of s3://{bucket}/k: still failing"):
        complete_and_verify(session, [PartRecord(1, 4, f'"{md5}"', "", md5)])
    assert s3_client.get_object(Bucket=bucket, Key="k")["Body"].read() == b"existing object"


def test_an_aborted_upload_is_gone_to_list_parts_and_complete_never_succeeds(s3_client: Any, bucket: str) -> None:
    session = UploadSession(s3_client, bucket, "k", config(checksum_algorithm="MD5"))
    session.create()
    data = b"z" * 100
    record = session.upload_part(1, lambda: data, _digest(data))
    session.abort()
    assert session.list_parts() is None  # RGW: 404 NoSuchKey; moto (and S3): NoSuchUpload
    again = UploadSession(s3_client, bucket, "k", config(checksum_algorithm="MD5"), upload_id=session.upload_id)
    with pytest.raises(TransientError):  # RGW: 500 "already in progress"; moto: 500
        complete_and_verify(again, [record])
    assert s3_client.list_objects_v2(Bucket=bucket).get("KeyCount") == 0


def _digest(data: bytes) -> PartDigest:
    return PartHasher.of("MD5", True, data)
