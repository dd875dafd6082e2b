"""Abort incomplete multipart uploads under a prefix that are older than an age.

What an S3 lifecycle rule (``AbortIncompleteMultipartUpload``) does, for buckets without one or
for S3-compatible stores that have no lifecycle: forgotten uploads are billed storage until aborted.
"""

from __future__ import annotations

import functools
import logging
from dataclasses import asdict, dataclass
from datetime import datetime, timedelta, timezone
from typing import Any

from airflow_s3stream.errors import ConfigurationError
from airflow_s3stream.s3.classify import to_error
from airflow_s3stream.s3.retry import RetryPolicy

__all__ = ["StaleUpload", "abort_stale_uploads"]

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
    client: Any,
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
        raise to_error(exc, f"listing incomplete uploads under {where}") from exc
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
                    raise to_error(exc, f"aborting upload {item.upload_id} of s3://{bucket}/{item.key}") from exc
                log.info(
                    "aborted stale upload %s of s3://%s/%s (started %s)",
                    item.upload_id,
                    bucket,
                    item.key,
                    item.initiated,
                )
            stale.append(item)
    return stale
