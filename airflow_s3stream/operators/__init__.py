"""Thin Airflow operators: validate arguments, build clients via hooks, call the streaming core."""

from __future__ import annotations

from airflow_s3stream.operators.bag_package import S3ToBagItZipOperator
from airflow_s3stream.operators.multipart_upload import S3MultipartUploadOperator
from airflow_s3stream.operators.postgres_to_s3 import PostgresToS3StreamOperator
from airflow_s3stream.operators.zip_verify import S3ZipVerifyOperator

__all__ = ["PostgresToS3StreamOperator", "S3MultipartUploadOperator", "S3ToBagItZipOperator", "S3ZipVerifyOperator"]
