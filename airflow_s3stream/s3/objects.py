"""Single S3 object and bucket calls, each retried by the one policy and failing with an error naming it.

The export's bucket check, stale-part cleanup and manifest, the uploader's source checks and the
resume state all go through here, so none of them meets a raw botocore error or retries on its own.

DeleteObjects and PutObject carry a CRC botocore adds on its own (DeleteObjects always: it is a
checksum-required operation). A store that refuses checksum headers gets the request again with
``Content-MD5`` instead, and its endpoint is remembered so later requests go straight to it
(:mod:`airflow_s3stream.s3.checksum_headers`).
"""

from __future__ import annotations

import functools
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, TypeVar

from airflow_s3stream.errors import DestinationError, SourceError, UploadError
from airflow_s3stream.s3.checksum_headers import content_md5, without_checksum_headers
from airflow_s3stream.s3.checksum_plan import ChecksumPlan
from airflow_s3stream.s3.classify import classify, raise_error
from airflow_s3stream.s3.retry import RetryPolicy, s3_call
from airflow_s3stream.s3.store_checks import remember_refusal

if TYPE_CHECKING:
    from mypy_boto3_s3.client import S3Client
    from mypy_boto3_s3.type_defs import DeleteTypeDef

__all__ = [
    "S3Object",
    "S3_MAX_DELETE_KEYS",
    "check_bucket",
    "delete_keys",
    "get_object_bytes",
    "head_object",
    "list_keys",
    "list_objects",
    "parse_s3_uri",
    "put_object",
]

S3_MAX_DELETE_KEYS = 1_000  # keys per DeleteObjects request (S3 limit)

T = TypeVar("T")


def parse_s3_uri(uri: str) -> tuple[str, str]:
    """``s3://bucket/key`` -> ``(bucket, key)``; raises :class:`SourceError` if it is not one."""
    if not uri.startswith("s3://"):
        raise SourceError(f"{uri!r} is not an s3:// URI")
    bucket, _, key = uri[5:].partition("/")
    if not bucket or not key:
        raise SourceError(f"{uri!r} must name a bucket and a key: s3://bucket/key")
    return bucket, key


@dataclass(frozen=True)
class S3Object:
    """An object as HeadObject saw it: identified by its ETag (and version, on versioned buckets)."""

    bucket: str
    key: str
    size: int
    etag: str
    version_id: str | None = None

    @property
    def uri(self) -> str:
        return f"s3://{self.bucket}/{self.key}"

    @classmethod
    def head(cls, client: S3Client, uri: str, retry: RetryPolicy | None = None) -> S3Object:
        """HeadObject the source ``uri``: retried when throttled or cut off; a missing or
        forbidden object raises :class:`SourceError` naming it."""
        bucket, key = parse_s3_uri(uri)
        head = head_object(client, bucket, key, retry or RetryPolicy(), reading=True)
        if head is None:
            raise SourceError(f"source {uri}: does not exist")
        version = head.get("VersionId")
        return cls(bucket, key, int(head["ContentLength"]), str(head["ETag"]), version if version != "null" else None)

    def copy_source(self) -> dict[str, str]:
        source = {"Bucket": self.bucket, "Key": self.key}
        if self.version_id:
            source["VersionId"] = self.version_id
        return source


def head_object(
    client: S3Client, bucket: str, key: str, retry: RetryPolicy, *, reading: bool = False, **kwargs: Any
) -> dict[str, Any] | None:
    """HeadObject ``s3://bucket/key`` (``kwargs`` such as ``ChecksumMode``); ``None`` when it does
    not exist. Other refusals raise the package's error naming the object."""
    uri = f"s3://{bucket}/{key}"

    def head() -> dict[str, Any] | None:
        try:
            return dict(client.head_object(Bucket=bucket, Key=key, **kwargs))
        except Exception as exc:
            if classify(exc).not_found:
                return None
            raise

    return s3_call(retry, head, f"HeadObject {uri}", reading=reading)


def check_bucket(client: S3Client, bucket: str, retry: RetryPolicy) -> None:
    """Raise :class:`DestinationError` unless ``bucket`` exists and the credentials may use it.

    Throttling and resets are retried first; what still fails is a ``TransientError``.
    """

    def head() -> None:
        try:
            client.head_bucket(Bucket=bucket)
        except Exception as exc:
            failure = classify(exc)
            if failure.not_found:
                raise DestinationError(f"bucket {bucket!r} does not exist") from exc
            if failure.access_denied:
                raise DestinationError(
                    f"bucket {bucket!r}: access denied for these credentials ({failure.code})"
                ) from exc
            raise

    s3_call(retry, head, f"HeadBucket {bucket!r}")


def list_keys(client: S3Client, bucket: str, prefix: str, retry: RetryPolicy) -> Iterator[str]:
    """Every key under ``prefix``, in S3's (UTF-8 binary) order; each page request retried."""
    for key, _ in list_objects(client, bucket, prefix, retry):
        yield key


def list_objects(client: S3Client, bucket: str, prefix: str, retry: RetryPolicy) -> Iterator[tuple[str, int]]:
    """(key, size in bytes) of every object under ``prefix``, in S3's order; each page retried."""
    token: str | None = None
    while True:
        kwargs: dict[str, Any] = {"Bucket": bucket, "Prefix": prefix}
        if token:
            kwargs["ContinuationToken"] = token
        page = s3_call(
            retry, functools.partial(client.list_objects_v2, **kwargs), f"ListObjectsV2 s3://{bucket}/{prefix}"
        )
        for obj in page.get("Contents", []):
            yield str(obj["Key"]), int(obj.get("Size", 0))
        if not page.get("IsTruncated"):
            return
        token = page.get("NextContinuationToken")


def _md5_if_refused(client: S3Client, retry: RetryPolicy, send: Callable[[], T], what: str) -> T:
    """``send()`` retried by ``retry``; sent with ``Content-MD5`` instead of botocore's CRC when the
    endpoint refuses checksum headers (known before, or answered so now: then remembered)."""
    if ChecksumPlan.for_endpoint(client).md5:
        return s3_call(retry, functools.partial(_without_checksum_headers, client, send), what)
    try:
        return retry.call(send, what=what)
    except Exception as exc:
        failure = classify(exc)
        if not failure.checksum_headers_refused:
            raise_error(exc, what)
        remember_refusal(client, what, failure)
    return s3_call(retry, functools.partial(_without_checksum_headers, client, send), what)


def _without_checksum_headers(client: S3Client, send: Callable[[], T]) -> T:
    with without_checksum_headers(client):
        return send()


def delete_keys(client: S3Client, bucket: str, keys: Sequence[str], retry: RetryPolicy) -> None:
    """Delete ``keys`` (1,000 per DeleteObjects request). Deleting is idempotent, so every batch is
    retried as a whole. A key S3 reports it could not delete raises :class:`UploadError` naming it.

    A store refusing the CRC32 botocore always adds to DeleteObjects gets ``Content-MD5`` instead
    (and so does every later DeleteObjects to that endpoint in this process).
    """
    for start in range(0, len(keys), S3_MAX_DELETE_KEYS):
        batch = list(keys[start : start + S3_MAX_DELETE_KEYS])
        what = f"DeleteObjects of {len(batch)} key(s) under s3://{bucket}/ (first {batch[0]!r})"
        request: DeleteTypeDef = {"Objects": [{"Key": k} for k in batch], "Quiet": True}
        response = _md5_if_refused(
            client, retry, functools.partial(client.delete_objects, Bucket=bucket, Delete=request), what
        )
        errors = response.get("Errors") or []
        if errors:
            named = ", ".join(f"s3://{bucket}/{e.get('Key')} ({e.get('Code')}: {e.get('Message')})" for e in errors[:5])
            more = f" and {len(errors) - 5} more" if len(errors) > 5 else ""
            raise UploadError(f"could not delete {named}{more}")


def get_object_bytes(client: S3Client, bucket: str, key: str, retry: RetryPolicy, *, what: str) -> bytes | None:
    """The whole body of a small object (a manifest, a commit state), retried; ``None`` when it
    does not exist. Other failures raise the package's error naming ``what``."""
    try:
        return retry.call(lambda: bytes(client.get_object(Bucket=bucket, Key=key)["Body"].read()), what=what)
    except Exception as exc:
        if classify(exc).not_found:
            return None
        raise_error(exc, what)


def put_object(
    client: S3Client, bucket: str, key: str, body: bytes, retry: RetryPolicy, **kwargs: Any
) -> dict[str, Any]:
    """PutObject a small ``body`` (a manifest, a report, resume state). A whole-object PUT is
    idempotent, so it is retried; ``kwargs`` carries ``ContentType``, ``IfMatch``, ``IfNoneMatch``.
    A store refusing the CRC botocore may add (``when_supported``) gets ``Content-MD5`` instead."""
    uri = f"s3://{bucket}/{key}"
    md5 = content_md5(body)

    def send() -> dict[str, Any]:
        extra: dict[str, Any] = {"ContentMD5": md5} if ChecksumPlan.for_endpoint(client).md5 else {}
        return dict(client.put_object(Bucket=bucket, Key=key, Body=body, **extra, **kwargs))

    return _md5_if_refused(client, retry, send, f"PutObject {uri}")
