"""Abort incomplete multipart uploads under a prefix that are older than an age.

What an S3 lifecycle rule (``AbortIncompleteMultipartUpload``) does, for buckets without one or
for S3-compatible stores that have no lifecycle: forgotten uploads are billed storage until aborted.
"""

from __future__ import annotations

import functools
import logging
from dataclasses import asdict, dataclass
from datetime import datetime, timedelta, timezone
from typing import TYPE_CHECKING, Any

from airflow_s3stream.errors import ConfigurationError
from airflow_s3stream.s3.classify import classify, raise_error
from airflow_s3stream.s3.retry import RetryPolicy

if TYPE_CHECKING:
    from mypy_boto3_s3.client import S3Client

__all__ = ["StaleUpload", "abort_stale_uploads", "abort_untracked", "abort_upload", "open_upload_ids"]

log = logging.getLogger("airflow_s3stream.s3.multipart")


@dataclass(frozen=True)
class StaleUpload:
    """One incomplete upload that was (or, in a dry run, would be) aborted."""

    key: str
    upload_id: str
    initiated: str  # ISO 8601, UTC

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def abort_stale_uploads(
    client: S3Client,
    bucket: str,
    prefix: str = "",
    older_than: timedelta = timedelta(days=7),
    *,
    now: datetime | None = None,
    dry_run: bool = False,
    retry: RetryPolicy | None = None,
) -> list[StaleUpload]:
    """Abort every incomplete upload in ``bucket`` under ``prefix`` initiated before ``now - older_than``.

    Uploads started more recently (perhaps still running, or waiting to be resumed) are left
    alone. Returns what was aborted; with ``dry_run`` only lists it. Raises
    :class:`~airflow_s3stream.errors.DestinationError` for a missing bucket or refused credentials.
    """
    if older_than < timedelta(0):
        raise ConfigurationError(f"older_than must not be negative, got {older_than}")
    policy = retry or RetryPolicy()
    cutoff = (now or datetime.now(timezone.utc)) - older_than
    where = f"s3://{bucket}/{prefix}"
    stale: list[StaleUpload] = []
    try:
        pages = policy.call(
            lambda: list(client.get_paginator("list_multipart_uploads").paginate(Bucket=bucket, Prefix=prefix)),
            what=f"listing incomplete uploads under {where}",
        )
    except Exception as exc:
        raise_error(exc, f"listing incomplete uploads under {where}")
    for page in pages:
        for upload in page.get("Uploads", []):
            initiated: datetime = upload["Initiated"]
            if initiated.tzinfo is None:
                initiated = initiated.replace(tzinfo=timezone.utc)
            if initiated > cutoff:
                continue
            item = StaleUpload(upload["Key"], upload["UploadId"], initiated.astimezone(timezone.utc).isoformat())
            if not dry_run:
                try:
                    policy.call(
                        functools.partial(
                            client.abort_multipart_upload, Bucket=bucket, Key=item.key, UploadId=item.upload_id
                        ),
                        what=f"aborting upload {item.upload_id} of s3://{bucket}/{item.key}",
                    )
                except Exception as exc:
                    raise_error(exc, f"aborting upload {item.upload_id} of s3://{bucket}/{item.key}")
                log.info(
                    "aborted stale upload %s of s3://%s/%s (started %s)",
                    item.upload_id,
                    bucket,
                    item.key,
                    item.initiated,
                )
            stale.append(item)
    return stale


def open_upload_ids(client: S3Client, bucket: str, key: str, retry: RetryPolicy) -> set[str] | None:
    """Ids of the open multipart uploads of exactly ``key`` (ListMultipartUploads); ``None`` when the
    credentials may not list them. Other failures raise the package's error naming the key."""
    what = f"listing the open multipart uploads of s3://{bucket}/{key}"

    def listing() -> set[str]:
        ids: set[str] = set()
        for page in client.get_paginator("list_multipart_uploads").paginate(Bucket=bucket, Prefix=key):
            ids.update(str(u["UploadId"]) for u in page.get("Uploads", []) if u.get("Key") == key)
        return ids

    try:
        return retry.call(listing, what=what)
    except Exception as exc:
        if classify(exc).access_denied:
            log.debug("%s: not permitted (%s); a lost Create answer cannot be cleaned up", what, exc)
            return None
        raise_error(exc, what)


def abort_untracked(
    client: S3Client, bucket: str, key: str, retry: RetryPolicy, *, known: set[str] | None, keep: str | None
) -> None:
    """After a CreateMultipartUpload whose answer was lost: abort the uploads of ``key`` that were not
    open before it (``known``) and are not ``keep`` (the one finally returned). Never raises: what
    cannot be listed or aborted is logged and left to the lifecycle rule or :func:`abort_stale_uploads`."""
    uri = f"s3://{bucket}/{key}"
    now = None
    if known is not None:
        try:
            now = open_upload_ids(client, bucket, key, retry)
        except Exception as exc:
            log.warning("%s: could not list open uploads (%s)", uri, exc)
    if now is None or known is None:
        log.warning(
            "a CreateMultipartUpload answer for %s was lost and the uploads it may have started cannot be "
            "listed: they stay until the bucket's lifecycle rule or abort_stale_uploads removes them",
            uri,
        )
        return
    for upload_id in sorted(now - known - {keep}):
        log.warning("aborting upload %s of %s, started by a Create whose answer was lost", upload_id, uri)
        abort_upload(client, bucket, key, upload_id, retry)


def abort_upload(client: S3Client, bucket: str, key: str, upload_id: str, retry: RetryPolicy) -> bool:
    """AbortMultipartUpload ``upload_id`` of ``s3://bucket/key``, retried. True when it is gone (an
    upload already gone included); False when it could not be aborted, which is logged, never raised."""
    try:
        retry.call(
            functools.partial(client.abort_multipart_upload, Bucket=bucket, Key=key, UploadId=upload_id),
            what=f"aborting upload {upload_id} of s3://{bucket}/{key}",
        )
    except Exception as exc:
        if not classify(exc).not_found:
            log.error("could not abort multipart upload %s of s3://%s/%s: %s", upload_id, bucket, key, exc)
            return False
    return True
