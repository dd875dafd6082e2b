"""Thin Airflow operators: validate arguments, build clients via hooks, call the streaming core."""

from __future__ import annotations

from airflow_s3stream.operators.bag_package import S3ToBagItZipOperator
from airflow_s3stream.operators.job_commit import S3StreamAbortOperator, S3StreamCommitOperator
from airflow_s3stream.operators.multipart_upload import S3MultipartUploadOperator
from airflow_s3stream.operators.postgres_to_s3 import PostgresToS3StreamOperator
from airflow_s3stream.operators.s3_to_postgres import S3ToPostgresStreamOperator
from airflow_s3stream.operators.zip_verify import S3ZipVerifyOperator

__all__ = [
    "PostgresToS3StreamOperator",
    "S3MultipartUploadOperator",
    "S3StreamAbortOperator",
    "S3StreamCommitOperator",
    "S3ToBagItZipOperator",
    "S3ToPostgresStreamOperator",
    "S3ZipVerifyOperator",
]
