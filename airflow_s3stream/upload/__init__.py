"""The resumable upload: the upload operator's core, beside export, load and archive.

A known-size source (a local file read by range, or an S3 object copied server side) is uploaded
in parallel parts and can be resumed by a later try; any other URI is streamed through the
multipart writer. No Airflow imports here: callers pass a boto3 S3 client.

    from airflow_s3stream.upload import ResumableUploader, classify_source, upload_uri
"""

from __future__ import annotations

from airflow_s3stream.upload.resume import DEFAULT_STATE_PREFIX, state_key
from airflow_s3stream.upload.sources import SourceSpec, classify_source, redact_uri, upload_uri
from airflow_s3stream.upload.uploader import DEFAULT_STATE_LEASE, ResumableUploader

__all__ = [
    "DEFAULT_STATE_LEASE",
    "DEFAULT_STATE_PREFIX",
    "ResumableUploader",
    "SourceSpec",
    "classify_source",
    "redact_uri",
    "state_key",
    "upload_uri",
]
