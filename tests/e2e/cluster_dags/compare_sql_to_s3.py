"""Ours and Airflow's ``SqlToS3Operator`` export the same table, one after the other, in capped workers.

Test tooling, not an example: the cluster e2e test parses this folder as a DAG bundle of its own.
``s3stream_export`` streams the whole table with ``COPY`` into Parquet parts;
``sql_to_s3`` then loads it into one pandas DataFrame, as that operator does, and writes one
Parquet file. On a worker capped at 768 MiB the first must succeed and the second be OOM-killed,
the kill reported by Airflow as that task's failure. No retries: a first try must be the answer.
"""

from __future__ import annotations

import pendulum
from airflow.providers.amazon.aws.transfers.sql_to_s3 import SqlToS3Operator
from airflow.sdk import Param, dag

from airflow_s3stream.operators import PostgresToS3StreamOperator


@dag(
    dag_id="s3stream_compare_sql_to_s3",
    schedule=None,
    start_date=pendulum.datetime(2024, 1, 1, tz="UTC"),
    catchup=False,
    max_active_runs=1,
    tags=["s3stream", "tests"],
    doc_md=__doc__,
    params={
        "table": Param("public.demo_orders", type="string"),
        "bucket": Param("s3stream", type="string"),
        "prefix": Param("compare", type="string"),
    },
)
def s3stream_compare_sql_to_s3() -> None:
    ours = PostgresToS3StreamOperator(
        task_id="s3stream_export",
        sql="SELECT * FROM {{ params.table }}",
        s3_bucket="{{ params.bucket }}",
        s3_key="{{ params.prefix }}/s3stream/orders",
        file_format="parquet",
        compression="zstd",
        write_manifest=True,
        retries=0,
    )
    theirs = SqlToS3Operator(
        task_id="sql_to_s3",
        query="SELECT * FROM {{ params.table }}",
        sql_conn_id="postgres_default",
        s3_bucket="{{ params.bucket }}",
        s3_key="{{ params.prefix }}/sql_to_s3/orders.parquet",
        file_format="parquet",
        replace=True,
        retries=0,
    )
    ours >> theirs


s3stream_compare_sql_to_s3()
