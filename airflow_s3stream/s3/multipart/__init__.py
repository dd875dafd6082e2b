"""The package's one multipart engine: config, checksums, a streaming writer, completion and cleanup.

No Airflow imports here: callers pass a boto3 S3 client.

    from airflow_s3stream.s3.multipart import MultipartConfig, MultipartWriter, UploadResult
    from airflow_s3stream.s3.multipart import abort_stale_uploads

The resumable upload of known-size sources is the upload operator's core: :mod:`airflow_s3stream.upload`.
"""

from __future__ import annotations

from airflow_s3stream.s3.multipart.cleanup import StaleUpload, abort_stale_uploads
from airflow_s3stream.s3.multipart.config import (
    DEFAULT_MAX_CONCURRENCY,
    DEFAULT_PART_SIZE,
    MultipartConfig,
    PartSizer,
    plan_parts,
    validate_part_size,
)
from airflow_s3stream.s3.multipart.result import UploadResult
from airflow_s3stream.s3.multipart.writer import MultipartWriter

__all__ = [
    "DEFAULT_MAX_CONCURRENCY",
    "DEFAULT_PART_SIZE",
    "MultipartConfig",
    "MultipartWriter",
    "PartSizer",
    "StaleUpload",
    "UploadResult",
    "abort_stale_uploads",
    "plan_parts",
    "validate_part_size",
]
