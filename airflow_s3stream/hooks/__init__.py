"""Thin hooks: Airflow connections in, boto3 clients and psycopg connections out."""

from __future__ import annotations

from airflow_s3stream.hooks.postgres import PostgresStreamHook
from airflow_s3stream.hooks.s3 import S3StreamHook

__all__ = ["PostgresStreamHook", "S3StreamHook"]
