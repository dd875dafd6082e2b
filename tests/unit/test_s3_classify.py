"""The one classification of S3 failures, and the errors operators see for them."""

from __future__ import annotations

from typing import Any

import pytest
from botocore.exceptions import ClientError, EndpointConnectionError, ReadTimeoutError

from airflow_s3stream.errors import (
    ChecksumMismatchError,
    DestinationError,
    ObjectChangedError,
    SourceError,
    TransientError,
    UploadError,
)
from airflow_s3stream.s3.arrow_fs import ArrowS3Settings, arrow_retry_strategy
from airflow_s3stream.s3.classify import arrow_failure, classify, raise_error, to_error
from airflow_s3stream.s3.retry import RetryPolicy


def _client_error(code: str, status: int, message: str = "") -> ClientError:
    response: Any = {"Error": {"Code": code, "Message": message}, "ResponseMetadata": {"HTTPStatusCode": status}}
    return ClientError(response, "UploadPart")


@pytest.mark.parametrize(
    ("exc", "kind"),
    [
        (_client_error("SlowDown", 503), "retryable"),
        (_client_error("InternalError", 500), "retryable"),
        (_client_error("Whatever", 502), "retryable"),
        (_client_error("TooManyRequests", 429), "retryable"),
        (_client_error("RequestTimeout", 400), "retryable"),
        (EndpointConnectionError(endpoint_url="http://x"), "retryable"),
        (ReadTimeoutError(endpoint_url="http://x"), "retryable"),
        (ConnectionResetError(), "retryable"),
        (_client_error("BadDigest", 400), "checksum"),
        (_client_error("InvalidDigest", 400), "checksum"),
        (_client_error("AccessDenied", 403), "permanent"),
        (_client_error("NoSuchBucket", 404), "permanent"),
        (_client_error("InvalidRequest", 400), "permanent"),
        (_client_error("NoSuchUpload", 404), "permanent"),
        (ValueError("bug"), "permanent"),
    ],
)
def test_every_failure_has_exactly_one_kind(exc: BaseException, kind: str) -> None:
    assert classify(exc).kind == kind


def test_flags_callers_decide_on() -> None:
    assert classify(_client_error("NoSuchUpload", 404)).not_found
    assert classify(_client_error("NoSuchKey", 404)).not_found
    assert classify(_client_error("PreconditionFailed", 412)).precondition_failed
    assert classify(_client_error("SignatureDoesNotMatch", 403)).access_denied
    assert not classify(_client_error("SlowDown", 503)).not_found


def _error_of(operation: str, code: str, status: int, message: str = "") -> ClientError:
    response: Any = {"Error": {"Code": code, "Message": message}, "ResponseMetadata": {"HTTPStatusCode": status}}
    return ClientError(response, operation)


def test_ceph_rgw_answers_for_an_aborted_upload_mean_gone_or_try_again() -> None:
    # ListParts of an aborted upload: RGW 16 says NoSuchKey (S3: NoSuchUpload); both mean "gone"
    listed = classify(_error_of("ListParts", "NoSuchKey", 404))
    assert (listed.kind, listed.not_found, listed.retryable) == ("permanent", True, False)
    # CompleteMultipartUpload of an aborted (or unknown) upload: RGW 16 says 500; retried, then transient
    message = "This multipart completion is already in progress"
    completing = _error_of("CompleteMultipartUpload", "InternalError", 500, message)
    assert (classify(completing).kind, classify(completing).not_found) == ("retryable", False)
    assert isinstance(to_error(completing, "completing s3://b/k"), TransientError)
    # the same NoSuchKey still means a missing object where one is read
    missing = to_error(_error_of("GetObject", "NoSuchKey", 404), "source s3://b/k", reading=True)
    assert isinstance(missing, SourceError) and "no such key" in str(missing)


def test_a_store_refusing_checksum_headers_is_recognised_by_its_400() -> None:
    refused = _client_error("InvalidArgument", 400, "Unsupported header 'x-amz-checksum-crc32c' received")
    assert classify(refused).checksum_headers_refused
    assert not classify(
        _client_error("InvalidArgument", 400, "Part number must be an integer")
    ).checksum_headers_refused
    assert not classify(_client_error("SlowDown", 503, "checksum")).checksum_headers_refused


@pytest.mark.parametrize(
    ("exc", "reading", "error"),
    [
        (_client_error("SlowDown", 503), False, TransientError),
        (_client_error("BadDigest", 400), False, ChecksumMismatchError),
        (_client_error("PreconditionFailed", 412), True, ObjectChangedError),
        (_client_error("NoSuchKey", 404), True, SourceError),
        (_client_error("AccessDenied", 403), True, SourceError),
        (_client_error("NoSuchBucket", 404), False, DestinationError),
        (_client_error("AccessDenied", 403), False, DestinationError),
        (_client_error("InvalidArgument", 400, "x-amz-checksum-crc32c not supported"), False, DestinationError),
        (_client_error("InvalidRequest", 400), False, UploadError),
    ],
)
def test_to_error_names_the_object_and_picks_the_package_error(
    exc: BaseException, reading: bool, error: type[Exception]
) -> None:
    translated = to_error(exc, "PutObject s3://bucket/some/key", reading=reading)
    assert type(translated) is error
    assert "s3://bucket/some/key" in str(translated)
    assert classify(exc).code in str(translated)


def _chain(exc: BaseException) -> list[BaseException]:
    """``exc`` and its causes, as an error reporter walking ``__cause__`` sees them (bounded)."""
    seen: list[BaseException] = []
    current: BaseException | None = exc
    while current is not None and len(seen) < 10:
        seen.append(current)
        current = current.__cause__
    return seen


def test_an_error_of_the_package_is_raised_again_never_as_its_own_cause() -> None:
    original = DestinationError("PutObject s3://missing-bucket/k: NoSuchBucket (404)")
    with pytest.raises(DestinationError) as caught:
        try:
            raise original
        except DestinationError as exc:
            raise_error(exc, "uploading s3://missing-bucket/k")
    assert caught.value is original and caught.value.__cause__ is None
    with pytest.raises(DestinationError) as translated:
        try:
            raise _client_error("NoSuchBucket", 404)
        except Exception as exc:
            raise_error(exc, "PutObject s3://missing-bucket/k")
    chain = _chain(translated.value)
    assert [type(e).__name__ for e in chain] == ["DestinationError", "ClientError"]  # ends, no repeats


@pytest.mark.parametrize(
    ("error", "kind", "code"),
    [
        (FileNotFoundError("s3://b/k"), "permanent", "NoSuchKey"),
        (
            OSError("When reading information for key 'k' in bucket 'b': AWS Error NO_SUCH_KEY"),
            "permanent",
            "NoSuchKey",
        ),
        (OSError("AWS Error ACCESS_DENIED during HeadObject operation"), "permanent", "AccessDenied"),
        (OSError("AWS Error NETWORK_CONNECTION during GetObject operation: curlCode: 7"), "retryable", "ArrowS3Error"),
        (OSError("Parquet magic bytes not found in footer"), "permanent", "ArrowUnreadable"),
    ],
)
def test_pyarrow_failures_are_classified_here_not_by_their_callers(error: Exception, kind: str, code: str) -> None:
    failure = arrow_failure(error)
    assert (failure.kind, failure.code) == (kind, code)
    assert failure.not_found == (code == "NoSuchKey") and failure.access_denied == (code == "AccessDenied")


def test_pyarrow_retries_each_request_as_often_as_the_policy() -> None:
    settings = ArrowS3Settings.from_client(_FakeClient(), RetryPolicy(max_attempts=3))  # type: ignore[arg-type]
    assert settings.max_attempts == 3
    assert arrow_retry_strategy(RetryPolicy(max_attempts=3)).max_attempts == 3


class _FakeClient:
    """Just what ArrowS3Settings.from_client reads of a boto3 client."""

    class _Signer:
        _credentials = None

    class meta:  # noqa: N801 - shaped like a boto3 client's meta
        endpoint_url = "http://127.0.0.1:9000"
        region_name = "us-east-1"

    _request_signer = _Signer()
