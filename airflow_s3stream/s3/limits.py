"""S3's own limits on multipart uploads and objects, defined once for the whole package.

Source: Amazon S3 User Guide, "Amazon S3 multipart upload limits"
(https://docs.aws.amazon.com/AmazonS3/latest/userguide/qfacts.html). S3-compatible stores (Ceph
RGW, MinIO) apply the same ones by default.
"""

from __future__ import annotations

from airflow_s3stream.units import GiB, MiB, TiB

__all__ = ["S3_MAX_OBJECT_SIZE", "S3_MAX_PARTS", "S3_MAX_PART_SIZE", "S3_MIN_PART_SIZE"]

S3_MIN_PART_SIZE = 5 * MiB  # bytes, S3 limit: every part of a multipart upload but the last
S3_MAX_PART_SIZE = 5 * GiB  # bytes, S3 limit: one part
S3_MAX_PARTS = 10_000  # S3 limit: part numbers 1..10,000 in one multipart upload
S3_MAX_OBJECT_SIZE = 5 * TiB  # bytes, S3 limit: one object
