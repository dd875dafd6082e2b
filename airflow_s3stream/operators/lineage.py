"""OpenLineage datasets for the operators, with OpenLineage itself an optional import.

The naming follows the OpenLineage dataset naming spec: an S3 object is namespace ``s3://bucket``
and name ``key``; a Postgres table is namespace ``postgres://host:port`` and name
``database.schema.table``; a local file is namespace ``file`` and its absolute path. The names
are plain data (:class:`DatasetName`), computed without OpenLineage installed. Only
:func:`operator_lineage` turns them into the ``OperatorLineage`` the OpenLineage provider wants,
and returns ``None`` when that provider is not installed, so lineage costs nothing where it is
not used.

Operators call these from ``get_openlineage_facets_on_complete(task_instance)``, which the
OpenLineage provider looks up by name on any operator.
"""

from __future__ import annotations

import re
import urllib.parse
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

__all__ = [
    "DatasetName",
    "export_lineage",
    "operator_lineage",
    "postgres_tables",
    "s3_dataset",
    "source_dataset",
    "upload_lineage",
    "verify_lineage",
]

POSTGRES_DEFAULT_PORT = 5432  # libpq default
POSTGRES_DEFAULT_SCHEMA = "public"  # search_path default
# psycopg placeholders (%s, %(name)s) are not SQL; the parser reads a literal in their place.
_PLACEHOLDER = re.compile(r"%\(\w+\)s|%s")


@dataclass(frozen=True)
class DatasetName:
    """One OpenLineage dataset identity: ``namespace`` and ``name`` per the naming spec."""

    namespace: str
    name: str


def s3_dataset(bucket: str, key: str) -> DatasetName:
    """The dataset for ``s3://bucket/key`` (a key prefix for a multi-file export)."""
    return DatasetName(namespace=f"s3://{bucket}", name=key.lstrip("/") or "/")


def source_dataset(uri_or_path: str) -> DatasetName:
    """The dataset for an upload source: ``s3://``, ``http(s)://`` or other URI, or a local path."""
    parsed = urllib.parse.urlsplit(uri_or_path)
    if parsed.scheme == "s3":
        return s3_dataset(parsed.netloc, parsed.path)
    if parsed.scheme in ("", "file"):
        return DatasetName(namespace="file", name=parsed.path or uri_or_path)
    # Host and port only: user:password@ and presigned query strings never reach lineage.
    authority = parsed.hostname or ""
    if parsed.port:
        authority += f":{parsed.port}"
    return DatasetName(namespace=f"{parsed.scheme}://{authority}", name=parsed.path.lstrip("/") or "/")


def postgres_tables(
    sql: str, host: str, port: int | None, database: str, default_schema: str = POSTGRES_DEFAULT_SCHEMA
) -> list[DatasetName]:
    """The tables ``sql`` reads, as datasets; empty when the SQL parser is not installed or fails.

    Parsing uses ``openlineage-sql`` (shipped with the OpenLineage provider). psycopg placeholders
    are replaced by ``NULL`` first, since they are not SQL the parser understands.
    """
    try:
        from openlineage_sql import parse
    except ImportError:
        return []
    try:
        parsed = parse([_PLACEHOLDER.sub("NULL", sql)], dialect="postgres", default_schema=default_schema)
    except Exception:  # a parser failure must never fail the task that asked for lineage
        return []
    if parsed is None:
        return []
    namespace = f"postgres://{host}:{port or POSTGRES_DEFAULT_PORT}"
    names = sorted({f"{database}.{table.schema or default_schema}.{table.name}" for table in parsed.in_tables})
    return [DatasetName(namespace=namespace, name=name) for name in names]


def operator_lineage(inputs: Sequence[DatasetName], outputs: Sequence[DatasetName], sql: str | None = None) -> Any:
    """An ``OperatorLineage`` for the OpenLineage provider, or ``None`` when it is not installed."""
    try:
        from airflow.providers.openlineage.extractors import OperatorLineage
        from openlineage.client.event_v2 import Dataset
        from openlineage.client.facet_v2 import sql_job
    except ImportError:
        return None
    job_facets: dict[str, Any] = {}
    if sql is not None:
        job_facets["sql"] = sql_job.SQLJobFacet(query=sql)
    return OperatorLineage(
        inputs=[Dataset(namespace=d.namespace, name=d.name) for d in inputs],
        outputs=[Dataset(namespace=d.namespace, name=d.name) for d in outputs],
        job_facets=job_facets,
    )


def export_lineage(sql: str, postgres_conn_id: str, bucket: str, key: str) -> Any:
    """Lineage of a Postgres export: the tables ``sql`` reads in, the S3 key (or prefix) out.

    Host, port and database come from the Airflow connection ``postgres_conn_id``.
    """
    from airflow.sdk import BaseHook

    conn = BaseHook.get_connection(postgres_conn_id)
    database = conn.schema or "postgres"
    inputs = postgres_tables(sql, host=conn.host or "localhost", port=conn.port, database=database)
    return operator_lineage(inputs, [s3_dataset(bucket, key)], sql=sql)


def upload_lineage(source: str, bucket: str, key: str) -> Any:
    """Lineage of an upload: the source (file, URI or S3 object) in, the S3 object out."""
    return operator_lineage([source_dataset(source)], [s3_dataset(bucket, key)])


def verify_lineage(bucket: str, key: str, report_key: str | None = None) -> Any:
    """Lineage of a verification: the archive in; the JSON report out when one is written."""
    outputs = [s3_dataset(bucket, report_key)] if report_key else []
    return operator_lineage([s3_dataset(bucket, key)], outputs)
