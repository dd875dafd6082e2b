"""Single S3 object and bucket calls, each retried by the one policy and failing with an error naming it.

The export's bucket check, stale-part cleanup and manifest, the uploader's source checks and the
resume state all go through here, so none of them meets a raw botocore error or retries on its own.
"""

from __future__ import annotations

import functools
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from typing import Any

from airflow_s3stream.errors import DestinationError, SourceError, UploadError
from airflow_s3stream.s3.classify import classify
from airflow_s3stream.s3.retry import RetryPolicy, s3_call

__all__ = [
    "S3_MAX_DELETE_KEYS",
    "S3Object",
    "check_bucket",
    "delete_keys",
    "head_object",
    "list_keys",
    "parse_s3_uri",
    "put_object",
]

S3_MAX_DELETE_KEYS = 1_000  # keys per DeleteObjects request (S3 limit)


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
    def head(cls, client: Any, uri: str, retry: RetryPolicy | None = None) -> S3Object:
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
    client: Any, bucket: str, key: str, retry: RetryPolicy, *, reading: bool = False, **kwargs: Any
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


def check_bucket(client: Any, bucket: str, retry: RetryPolicy) -> None:
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


def list_keys(client: Any, bucket: str, prefix: str, retry: RetryPolicy) -> Iterator[str]:
    """Every key under ``prefix``, in S3's (UTF-8 binary) order; each page request retried."""
    token: str | None = None
    while True:
        kwargs: dict[str, Any] = {"Bucket": bucket, "Prefix": prefix}
        if token:
            kwargs["ContinuationToken"] = token
        page: dict[str, Any] = s3_call(
            retry, functools.partial(client.list_objects_v2, **kwargs), f"ListObjectsV2 s3://{bucket}/{prefix}"
        )
        for obj in page.get("Contents", []):
            yield str(obj["Key"])
        if not page.get("IsTruncated"):
            return
        token = page.get("NextContinuationToken")


def delete_keys(client: Any, bucket: str, keys: Sequence[str], retry: RetryPolicy) -> None:
    """Delete ``keys`` (1,000 per DeleteObjects request). Deleting is idempotent, so every batch is
    retried as a whole. A key S3 reports it could not delete raises :class:`UploadError` naming it.
    """
    for start in range(0, len(keys), S3_MAX_DELETE_KEYS):
        batch = list(keys[start : start + S3_MAX_DELETE_KEYS])
        what = f"DeleteObjects of {len(batch)} key(s) under s3://{bucket}/ (first {batch[0]!r})"
        request = {"Objects": [{"Key": k} for k in batch], "Quiet": True}
        response: dict[str, Any] = s3_call(
            retry, functools.partial(client.delete_objects, Bucket=bucket, Delete=request), what
        )
        errors = response.get("Errors") or []
        if errors:
            named = ", ".join(f"s3://{bucket}/{e.get('Key')} ({e.get('Code')}: {e.get('Message')})" for e in errors[:5])
            more = f" and {len(errors) - 5} more" if len(errors) > 5 else ""
            raise UploadError(f"could not delete {named}{more}")


def put_object(client: Any, bucket: str, key: str, body: bytes, retry: RetryPolicy, **kwargs: Any) -> dict[str, Any]:
    """PutObject a small ``body`` (a manifest, a report, resume state). A whole-object PUT is
    idempotent, so it is retried; ``kwargs`` carries ``ContentType``, ``IfMatch``, ``IfNoneMatch``."""
    uri = f"s3://{bucket}/{key}"
    return dict(
        s3_call(retry, lambda: client.put_object(Bucket=bucket, Key=key, Body=body, **kwargs), f"PutObject {uri}")
    )
