"""The S3 -> Postgres load engine: sources, decoding, COPY FROM, modes, one transaction.

No Airflow here: :func:`load_into_postgres` takes a psycopg 3 connection and a boto3 S3 client.
"""

from __future__ import annotations

from airflow_s3stream.load.engine import LoadedFile, LoadResult, LoadStep, load_into_postgres
from airflow_s3stream.load.options import LOAD_COMPRESSIONS, LOAD_FORMATS, MODES, LoadOptions
from airflow_s3stream.load.sources import LoadFile, SourceSpec, resolve_source
from airflow_s3stream.publish.manifest import Manifest, ManifestFile, parse_manifest

__all__ = [
    "LOAD_COMPRESSIONS",
    "LOAD_FORMATS",
    "MODES",
    "LoadFile",
    "LoadOptions",
    "LoadResult",
    "LoadStep",
    "LoadedFile",
    "Manifest",
    "ManifestFile",
    "SourceSpec",
    "load_into_postgres",
    "parse_manifest",
    "resolve_source",
]
