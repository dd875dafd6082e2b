"""The Postgres -> S3 export engine: COPY / Arrow streaming, formats, compression, parts, manifest.

No Airflow here: :func:`export_query` takes a psycopg 3 connection and a boto3 S3 client.
"""

from __future__ import annotations

from airflow_s3stream.export.columns import Column, describe_query
from airflow_s3stream.export.engine import ExportResult, export_query, multipart_opener
from airflow_s3stream.export.options import COMPRESSIONS, FILE_FORMATS, ExportOptions
from airflow_s3stream.export.writers import ExportedFile

__all__ = [
    "COMPRESSIONS",
    "FILE_FORMATS",
    "Column",
    "ExportOptions",
    "ExportResult",
    "ExportedFile",
    "describe_query",
    "export_query",
    "multipart_opener",
]
