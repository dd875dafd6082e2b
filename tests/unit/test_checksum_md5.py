"""checksum_algorithm MD5 and auto: config validation, MD5-only hashing, the ETag checks, the endpoint memo."""

from __future__ import annotations

import base64
import hashlib
import logging
import uuid
from typing import Any

import boto3
import pytest
from botocore.config import Config

from airflow_s3stream.errors import ChecksumMismatchError, ConfigurationError
from airflow_s3stream.s3.classify import S3Failure
from airflow_s3stream.s3.multipart.checksums import PartHasher, content_md5, multipart_etag
from airflow_s3stream.s3.multipart.config import MultipartConfig
from airflow_s3stream.s3.multipart.session import UploadSession
from airflow_s3stream.s3.multipart.verify import ExpectedObject, verify_object
from airflow_s3stream.s3.store_checks import StoreChecks, refuses_checksum_headers, remember_checks, remember_refusal

REFUSAL = S3Failure(
    "permanent", "InvalidArgument", 400, "Unsupported header 'x-amz-checksum-crc32c' received for this API call."
)


def client(endpoint: str) -> Any:
    """A real boto3 client for ``endpoint``; these tests never send a request with it."""
    return boto3.client(
        "s3",
        endpoint_url=endpoint,
        region_name="us-east-1",
        aws_access_key_id="k",
        aws_secret_access_key="s",
        config=Config(retries={"total_max_attempts": 1}),
    )


def fresh_endpoint() -> str:
    return f"http://{uuid.uuid4().hex[:12]}.invalid:9000"


def test_md5_and_auto_are_accepted_whatever_their_case() -> None:
    assert MultipartConfig().checksum_algorithm == "auto"
    assert MultipartConfig(checksum_algorithm="AUTO").checksum_algorithm == "auto"
    md5 = MultipartConfig(checksum_algorithm="md5")
    assert (md5.checksum_algorithm, md5.checksum_type, md5.full_object) == ("MD5", "COMPOSITE", False)
    # with auto, the type applies while CRC32C is used
    assert MultipartConfig(checksum_type="full_object").checksum_type == "FULL_OBJECT"


def test_md5_has_no_full_object_type() -> None:
    with pytest.raises(ConfigurationError, match=r"'FULL_OBJECT' is not available for MD5; .*always COMPOSITE"):
        MultipartConfig(checksum_algorithm="MD5", checksum_type="FULL_OBJECT")


@pytest.mark.parametrize("bad", ["SHA256", "", None, 32])
def test_unknown_algorithms_are_refused_naming_the_choices(bad: Any) -> None:
    with pytest.raises(ConfigurationError, match=r"checksum_algorithm must be 'auto' or one of .*'MD5'"):
        MultipartConfig(checksum_algorithm=bad)


def test_operators_check_the_algorithm_when_the_dag_is_parsed() -> None:
    from airflow_s3stream.operators import PostgresToS3StreamOperator, S3MultipartUploadOperator

    op = PostgresToS3StreamOperator(task_id="e", sql="SELECT 1", s3_bucket="b", s3_key="k", checksum_algorithm="md5")
    assert op.upload_config.checksum_algorithm == "MD5"
    with pytest.raises(ConfigurationError, match="e: checksum_algorithm"):
        PostgresToS3StreamOperator(task_id="e", sql="SELECT 1", s3_bucket="b", s3_key="k", checksum_algorithm="x")
    up = S3MultipartUploadOperator(task_id="u", source="/f", s3_bucket="b", s3_key="k")
    assert up.config.checksum_algorithm == "auto"


def test_md5_hasher_computes_only_the_md5() -> None:
    digest = PartHasher.of("MD5", False, b"hello")
    assert (digest.size, digest.crc, digest.md5) == (5, 0, hashlib.md5(b"hello").hexdigest())
    assert content_md5(digest.md5) == base64.b64encode(hashlib.md5(b"hello").digest()).decode()
    with pytest.raises(KeyError, match="SHA1"):
        PartHasher("SHA1", True)


def expected_md5_upload(parts: list[bytes], uri: str = "s3://b/k") -> ExpectedObject:
    etag = multipart_etag([hashlib.md5(p).hexdigest() for p in parts])
    return ExpectedObject(uri, sum(map(len, parts)), "MD5", etag, False, len(parts), etag)


def test_multipart_etag_of_an_md5_upload_is_verified() -> None:
    expected = expected_md5_upload([b"a" * 10, b"b" * 3])
    head = {"ContentLength": 13, "ETag": f'"{expected.etag}"', "ChecksumMD5": "ignored"}
    assert verify_object(head, expected) == ["size", "etag"]


@pytest.mark.parametrize(
    "stored",
    [
        multipart_etag([hashlib.md5(b"a" * 10).hexdigest(), hashlib.md5(b"X" * 3).hexdigest()]),  # one part differs
        multipart_etag([hashlib.md5(b"a" * 10).hexdigest(), hashlib.md5(b"b" * 3).hexdigest()])[:-2] + "-3",  # count
    ],
    ids=["part-bytes", "part-count"],
)
def test_a_different_multipart_etag_is_a_mismatch_naming_both(stored: str) -> None:
    expected = expected_md5_upload([b"a" * 10, b"b" * 3], "s3://bucket/data.csv")
    message = rf"s3://bucket/data\.csv: ETag mismatch \(computed {expected.etag}, stored {stored}\)"
    with pytest.raises(ChecksumMismatchError, match=message):
        verify_object({"ContentLength": 13, "ETag": f'"{stored}"'}, expected)


def test_an_opaque_etag_is_unverifiable_not_a_mismatch() -> None:
    # SSE-KMS / SSE-C and some stores answer ETags that are no MD5 of anything we sent
    expected = expected_md5_upload([b"a" * 10, b"b" * 3])
    assert verify_object({"ContentLength": 13, "ETag": '"opaque-etag-from-kms"'}, expected) == ["size"]


def test_single_put_md5_etag_is_verified() -> None:
    md5 = hashlib.md5(b"abc").hexdigest()
    expected = ExpectedObject("s3://b/k", 3, "MD5", md5, True, 0, md5)
    assert verify_object({"ContentLength": 3, "ETag": f'"{md5}"'}, expected) == ["size", "etag"]
    with pytest.raises(ChecksumMismatchError, match="ETag mismatch"):
        verify_object({"ContentLength": 3, "ETag": '"' + "0" * 32 + '"'}, expected)


def probed(endpoint: str, additional: str = "checked", content_md5: str = "checked") -> Any:
    """A client of ``endpoint`` whose probe this process already ran (nothing is sent)."""
    made = client(endpoint)
    remember_checks(made, StoreChecks(additional, content_md5))  # type: ignore[arg-type]
    return made


def test_auto_sends_crc32c_to_a_store_that_checks_it_until_the_endpoint_refused_it(
    caplog: pytest.LogCaptureFixture,
) -> None:
    endpoint = fresh_endpoint()
    first, second, elsewhere = probed(endpoint), client(endpoint), probed(fresh_endpoint())
    assert UploadSession(first, "b", "k", MultipartConfig()).algorithm == "CRC32C"
    with caplog.at_level(logging.WARNING, logger="airflow_s3stream"):
        remember_refusal(first, "part 1 of s3://b/k", REFUSAL)
        remember_refusal(second, "part 1 of s3://b/other", REFUSAL)
    assert caplog.text.count("refuses additional checksum headers") == 1  # once per endpoint
    assert "part 1 of s3://b/k" in caplog.text and "x-amz-checksum-crc32c" in caplog.text
    assert refuses_checksum_headers(second) and not refuses_checksum_headers(elsewhere)
    assert UploadSession(second, "b", "k", MultipartConfig()).algorithm == "MD5"
    assert UploadSession(elsewhere, "b", "k", MultipartConfig()).algorithm == "CRC32C"
    # an explicit algorithm is never changed by the memo
    assert UploadSession(second, "b", "k", MultipartConfig(checksum_algorithm="CRC32")).algorithm == "CRC32"


def test_auto_sends_content_md5_to_a_store_that_ignores_crc32c() -> None:
    ignoring = probed(fresh_endpoint(), additional="ignored")
    session = UploadSession(ignoring, "b", "k", MultipartConfig())
    assert (session.algorithm, session.checksum_type, session.checked_by_store) == ("MD5", "COMPOSITE", ["Content-MD5"])
    explicit = UploadSession(ignoring, "b", "k", MultipartConfig(checksum_algorithm="CRC32C"))
    assert (explicit.algorithm, explicit.checked_by_store) == ("CRC32C", [])  # sent, but nobody checked it


def test_an_md5_session_always_hashes_md5_and_is_composite() -> None:
    never = MultipartConfig(checksum_algorithm="MD5", verify_part_etag=False)
    session = UploadSession(client(fresh_endpoint()), "b", "k", never)
    assert (session.wants_md5, session.checksum_type, session.full_object) == (True, "COMPOSITE", False)
    auto_full = UploadSession(probed(fresh_endpoint()), "b", "k", MultipartConfig(checksum_type="FULL_OBJECT"))
    assert (auto_full.algorithm, auto_full.checksum_type) == ("CRC32C", "FULL_OBJECT")
    # auto hashes MD5s until a part is stored, in case the store refuses the CRC at the first part
    assert UploadSession(probed(fresh_endpoint()), "b", "k", MultipartConfig(verify_part_etag=False)).wants_md5


def test_a_checksum_reported_where_none_was_computed_is_not_a_mismatch() -> None:
    # a server-side copy whose parts' CRCs the server did not return: nothing to compare, so the
    # object must not be called corrupt (and deleted) for the checksum S3 reports
    expected = ExpectedObject("s3://b/k", 10, "CRC32C", "", True, 2, "")
    head = {"ContentLength": 10, "ChecksumCRC32C": "AAAAAA==", "ETag": '"0123456789abcdef0123456789abcdef-2"'}
    assert verify_object(head, expected) == ["size"]
    wrong = ExpectedObject("s3://b/k", 10, "CRC32C", "BBBBBB==", True, 2, "")
    with pytest.raises(ChecksumMismatchError, match="s3://b/k: CRC32C mismatch"):
        verify_object(head, wrong)
