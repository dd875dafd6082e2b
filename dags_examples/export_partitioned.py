"""Fan-out: export one big table as N key-range partitions in parallel, published as ONE export.

This is the pattern for outgrowing one worker. ``plan_ranges`` splits the key column's range into
``partitions`` half-open ranges ``[lo, hi)``; dynamic task mapping (``.partial().expand_kwargs()``)
makes one :class:`~airflow_s3stream.operators.PostgresToS3StreamOperator` per range, and Airflow's
executor (Celery, Kubernetes) runs them on as many workers as are free. Each one streams its
range with ``COPY`` in constant memory; none of them sees the whole table.

The partitions publish nothing themselves (``stage_only=True``): each leaves its file as an open
multipart upload and returns its record. The job commits all of them at once, or none:

* ``plan_ranges``: ``min``/``max`` of ``key_column`` -> ``partitions`` ranges, each with its key
  ``<prefix>/<table>/range-00000.parquet`` ...
* ``export_range`` (mapped, ``stage_only``): ``SELECT * FROM <table> WHERE key >= %(lo)s AND key < %(hi)s``;
  the bounds are parameters, quoted and escaped by psycopg (bound on the client, so they show in
  ``pg_stat_activity``), never pasted into the SQL by the DAG.
* ``commit`` (:class:`~airflow_s3stream.operators.S3StreamCommitOperator`), once every partition
  has staged: completes every upload, deletes the files the previous manifest listed that this
  run did not write (an earlier run with more partitions), and writes
  ``<prefix>/<table>/_manifest.json`` LAST. Readers treat the manifest as "the export is complete".
* ``abort_staged`` (:class:`~airflow_s3stream.operators.S3StreamAbortOperator`, the teardown): when a
  partition failed, aborts everything staged, so the previous export of the whole table (files
  and manifest) stays exactly as it was. After a commit it finds nothing to abort.

Params: ``table`` (schema-qualified name), ``key_column`` (an integer column, ideally indexed),
``partitions``, ``bucket``, ``prefix``. Connections: ``postgres_default``, ``aws_default``.
One run at a time per prefix (``max_active_runs=1``): two runs staging under the same prefix would
abort each other's leftovers.
"""

from __future__ import annotations

import os
from typing import Any

import pendulum
from airflow.sdk import Param, dag, task

from airflow_s3stream.export.partitions import split_key_range
from airflow_s3stream.operators import PostgresToS3StreamOperator, S3StreamAbortOperator, S3StreamCommitOperator

DEFAULT_BUCKET = os.environ.get("S3STREAM_BUCKET", "s3stream")
IDENTIFIER = r"^[A-Za-z_][A-Za-z0-9_]*$"  # one unquoted SQL identifier
QUALIFIED_IDENTIFIER = r"^[A-Za-z_][A-Za-z0-9_]*(\.[A-Za-z_][A-Za-z0-9_]*)?$"


@dag(
    dag_id="s3stream_export_partitioned",
    schedule=None,
    start_date=pendulum.datetime(2024, 1, 1, tz="UTC"),
    catchup=False,
    max_active_runs=1,
    tags=["s3stream", "export", "fan-out"],
    doc_md=__doc__,
    params={
        "table": Param(
            os.environ.get("S3STREAM_ORDERS_TABLE", "public.demo_orders"),
            type="string",
            pattern=QUALIFIED_IDENTIFIER,
            title="Table",
            description="Table to export, optionally schema-qualified, e.g. public.demo_orders (an SQL identifier, "
            "not an expression).",
        ),
        "key_column": Param(
            "id",
            type="string",
            pattern=IDENTIFIER,
            title="Key column",
            description="Integer column the table is split on: each partition exports one range of its values.",
        ),
        "partitions": Param(
            4,
            type="integer",
            minimum=1,
            maximum=256,
            title="Partitions",
            description="Number of range exports run in parallel (mapped tasks), published together by one commit.",
        ),
        "bucket": Param(DEFAULT_BUCKET, type="string", minLength=3, title="Bucket", description="Destination bucket."),
        "prefix": Param(
            "exports/partitioned",
            type="string",
            minLength=1,
            title="Key prefix",
            description="Destination key prefix: the parts and _manifest.json are written under it.",
        ),
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
        stage_only=True,
        max_active_tis_per_dag=4,
        retries=2,
    ).expand_kwargs(plan_ranges())

    base = "{{ params.prefix.rstrip('/') }}/{{ params.table }}"
    commit = S3StreamCommitOperator(
        task_id="commit", s3_bucket="{{ params.bucket }}", s3_prefix=base, staged=exports.output
    )
    abort = S3StreamAbortOperator(
        task_id="abort_staged", s3_bucket="{{ params.bucket }}", s3_prefix=base, staged=exports.output
    )
    commit >> abort.as_teardown()


s3stream_export_partitioned()
