"""Fan-out: export one big table as N key-range partitions in parallel, then write one manifest.

This is the pattern for outgrowing one worker. ``plan_ranges`` splits the key column's range into
``partitions`` half-open ranges ``[lo, hi)``; dynamic task mapping (``.partial().expand_kwargs()``)
makes one :class:`~airflow_s3stream.operators.PostgresToS3StreamOperator` per range, and Airflow's
executor (Celery, Kubernetes) runs them on as many workers as are free. Each one streams its
range with ``COPY`` in constant memory; none of them sees the whole table.

Tasks:

* ``plan_ranges``: ``min``/``max`` of ``key_column`` -> ``partitions`` ranges, each with its key
  ``<prefix>/<table>/range-00000.parquet`` ...
* ``export_range`` (mapped): ``SELECT * FROM <table> WHERE key >= %(lo)s AND key < %(hi)s``; the
  bounds are parameters, quoted and escaped by psycopg (bound on the client, so they show in
  ``pg_stat_activity``), never pasted into the SQL by the DAG.
* ``write_manifest``: ``<prefix>/<table>/_manifest.json`` lists every file with rows and bytes,
  and is written last: readers treat its presence as "the export is complete". Files under the
  prefix left by an earlier run with more partitions are deleted first, so a re-run replaces the
  export and never leaves stale parts beside it.

Params: ``table`` (schema-qualified name), ``key_column`` (an integer column, ideally indexed),
``partitions``, ``bucket``, ``prefix``. Connections: ``postgres_default``, ``aws_default``.
"""

from __future__ import annotations

import json
import os
from typing import Any

import pendulum
from airflow.sdk import Param, dag, task

from airflow_s3stream.export.partitions import split_key_range
from airflow_s3stream.operators import PostgresToS3StreamOperator

DEFAULT_BUCKET = os.environ.get("S3STREAM_BUCKET", "s3stream")
IDENTIFIER = r"^[A-Za-z_][A-Za-z0-9_]*$"  # one unquoted SQL identifier
QUALIFIED_IDENTIFIER = r"^[A-Za-z_][A-Za-z0-9_]*(\.[A-Za-z_][A-Za-z0-9_]*)?$"
MANIFEST_NAME = "_manifest.json"


@dag(
    dag_id="s3stream_export_partitioned",
    schedule=None,
    start_date=pendulum.datetime(2024, 1, 1, tz="UTC"),
    catchup=False,
    tags=["s3stream", "export", "fan-out"],
    doc_md=__doc__,
    params={
        "table": Param(
            os.environ.get("S3STREAM_ORDERS_TABLE", "public.demo_orders"),
            type="string",
            pattern=QUALIFIED_IDENTIFIER,
            description="Table to export, optionally schema-qualified (an SQL identifier, not an expression).",
        ),
        "key_column": Param("id", type="string", pattern=IDENTIFIER, description="Integer column the ranges split on."),
        "partitions": Param(4, type="integer", minimum=1, maximum=256, description="Number of parallel range exports."),
        "bucket": Param(DEFAULT_BUCKET, type="string", minLength=3, description="Destination bucket."),
        "prefix": Param("exports/partitioned", type="string", minLength=1, description="Destination key prefix."),
    },
)
def s3stream_export_partitioned() -> None:
    @task
    def plan_ranges(params: dict[str, Any] | None = None) -> list[dict[str, Any]]:
        """One ``{"parameters", "s3_key"}`` per range, for ``expand_kwargs``."""
        from psycopg import sql

        from airflow_s3stream.hooks.postgres import PostgresStreamHook

        assert params is not None
        table = sql.Identifier(*params["table"].split("."))
        column = sql.Identifier(params["key_column"])
        query = sql.SQL("SELECT min({c}), max({c}) FROM {t}").format(c=column, t=table)
        with PostgresStreamHook().get_psycopg_connection() as conn:
            row = conn.execute(query).fetchone()
        assert row is not None  # an aggregate without GROUP BY returns exactly one row
        lowest, highest = row
        ranges = split_key_range(lowest, highest, int(params["partitions"]))
        base = f"{params['prefix'].rstrip('/')}/{params['table']}"
        print(f"{params['table']}.{params['key_column']} in [{lowest}, {highest}] -> {len(ranges)} ranges")
        return [
            {"parameters": {"lo": lo, "hi": hi}, "s3_key": f"{base}/range-{i:05d}"} for i, (lo, hi) in enumerate(ranges)
        ]

    exports = PostgresToS3StreamOperator.partial(
        task_id="export_range",
        sql=(
            "SELECT * FROM {{ params.table }} "
            "WHERE {{ params.key_column }} >= %(lo)s AND {{ params.key_column }} < %(hi)s "
            "ORDER BY {{ params.key_column }}"
        ),
        s3_bucket="{{ params.bucket }}",
        file_format="parquet",
        compression="zstd",
        max_active_tis_per_dag=4,
        retries=2,
    ).expand_kwargs(plan_ranges())

    @task
    def write_manifest(results: list[dict[str, Any]], params: dict[str, Any] | None = None) -> dict[str, Any]:
        """Delete stale files under the prefix, then write the manifest last."""
        from airflow_s3stream.hooks.s3 import S3StreamHook

        assert params is not None
        results = list(results)
        files = [file for result in results for file in result["files"]]
        base = f"{params['prefix'].rstrip('/')}/{params['table']}/"
        manifest_key = base + MANIFEST_NAME
        client = S3StreamHook().get_s3_client()
        current = {file["key"] for file in files} | {manifest_key}
        stale = [
            key for key in S3StreamHook().list_keys(bucket_name=params["bucket"], prefix=base) if key not in current
        ]
        for key in stale:
            client.delete_object(Bucket=params["bucket"], Key=key)
        manifest = {
            "table": params["table"],
            "key_column": params["key_column"],
            "files": files,
            "rows": sum(file["rows"] for file in files),
            "bytes": sum(file["bytes"] for file in files),
        }
        client.put_object(
            Bucket=params["bucket"],
            Key=manifest_key,
            Body=json.dumps(manifest, indent=2).encode(),
            ContentType="application/json",
        )
        print(f"{len(files)} files, {manifest['rows']} rows; removed {len(stale)} stale; manifest {manifest_key}")
        return {"manifest_key": manifest_key, "files": len(files), "rows": manifest["rows"], "removed": stale}

    write_manifest(exports.output)  # type: ignore[arg-type]  # an XComArg: the mapped results, at run time


s3stream_export_partitioned()
