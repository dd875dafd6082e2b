"""Data-aware load: each day the export publishes is loaded into a second database, replacing that day.

``s3stream_postgres_to_s3_daily`` exports each day of orders as gzip CSV under
``exports/orders/<day>/csv/`` and, when its commit has written the manifest, updates the asset
``s3stream_orders_csv`` with the event extra ``{"bucket", "key", "manifest_key", "rows", "bytes"}``.
This DAG is scheduled on that asset, so it runs when a day is published (usually once per day;
see below for batching), with no polling and no sensor:

* ``S3ToPostgresStreamOperator(source_from_asset_event=True)`` reads the manifest named by the
  event: exactly the files it lists, each checked against its listed size, ETag and checksum, the
  total row count reconciled with the manifest's;
* ``mode="replace_interval"``: in ONE transaction it deletes the rows of the producing run's data
  interval (``%(source_interval_start)s`` / ``%(source_interval_end)s``, bound parameters, never
  pasted into SQL) and COPYs the day in. A re-run, or a re-export of the same day, gives the same
  table; a failure (a bad row, a lost connection, a count mismatch) leaves the table as it was;
* Airflow consumes every asset event in exactly one run, but batches the events queued before
  the scheduler creates the run: one run may get several days. Each event's day is then replaced
  in turn, in the same transaction.

Configuration: connection ``postgres_replica`` (the second database; set
``S3STREAM_LOAD_CONN_ID`` to use another) and ``aws_default``; the bucket comes from
``S3STREAM_BUCKET`` (default ``s3stream``) and must match the export's; the target table from
``S3STREAM_LOAD_TABLE`` (default ``public.orders_replica``, same columns as the export's query:
``id, customer, amount, status, created_at, note``).
"""

from __future__ import annotations

import os

import pendulum
from airflow.sdk import Asset, dag

from airflow_s3stream.operators import S3ToPostgresStreamOperator

BUCKET = os.environ.get("S3STREAM_BUCKET", "s3stream")
TABLE = os.environ.get("S3STREAM_LOAD_TABLE", "public.orders_replica")
CONN_ID = os.environ.get("S3STREAM_LOAD_CONN_ID", "postgres_replica")
# The asset s3stream_postgres_to_s3_daily publishes (same name and URI: Airflow matches on both).
ORDERS_CSV = Asset(name="s3stream_orders_csv", uri=f"s3://{BUCKET}/exports/orders/")


@dag(
    dag_id="s3stream_load_orders_on_asset",
    schedule=[ORDERS_CSV],
    start_date=pendulum.datetime(2024, 1, 1, tz="UTC"),
    catchup=False,
    # No max_active_runs=1: Airflow 3 leaves events that arrive while a run is at the cap for a
    # later event (apache/airflow#56050). Runs of different days may overlap; two loads replacing
    # the same day take turns on the table's advisory lock.
    tags=["s3stream", "load", "assets"],
    doc_md=__doc__,
)
def load_orders_on_asset() -> None:
    S3ToPostgresStreamOperator(
        task_id="load_day",
        source_from_asset_event=True,
        table=TABLE,
        postgres_conn_id=CONN_ID,
        mode="replace_interval",
        interval_filter="created_at >= %(source_interval_start)s AND created_at < %(source_interval_end)s",
        retries=2,  # a lost connection or S3 that keeps failing is retried; bad data is not
    )


load_orders_on_asset()
