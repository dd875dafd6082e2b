"""Daily, backfill-safe export of an orders table to S3 as gzip CSV and Parquet.

Each run exports exactly its own data interval, so backfills and re-runs are safe:

* the schedule is a data-interval timetable: every run exports one whole UTC day, the half-open
  interval ``[data_interval_start, data_interval_end)``. **Which day a run exports:** the scheduled
  run for day D starts at midnight after D (its data is complete only then) and exports
  ``[D, D+1)``; a *manual* run, or ``airflow dags test <dag> D``, happens "at" D, so Airflow gives
  it the last complete interval before D: ``[D-1, D)``. That is why ``make demo``'s run for
  2024-01-01 writes its files under ``2023-12-31/``, and why a trigger from the UI exports
  yesterday (the interval's start names the key prefix);
* an interval with no rows still publishes a header-only file, and ``warn_if_empty`` logs a
  warning naming the interval and the first and last day the table has rows for (use
  ``empty_result="fail"`` to fail the run instead);
* the trigger form's optional **Day to export** (``params.day``, ``YYYY-MM-DD``) exports that UTC
  day instead of the run's interval: a manual trigger otherwise exports yesterday, which is empty
  in the sample data of ``make demo`` and ``make playground`` (it covers 2023-12-31 to 2024-01-02);
* one export task per interval at a time: ``max_active_tis_per_dag=1`` keeps a manual trigger
  and the scheduled run of the same day (e.g. "unpause on trigger") from writing the same keys
  at once (the staged commit would keep each day's files whole either way, but the two would
  race to publish); runs of different days take turns at each export task;
* the SQL selects ``created_at >= data_interval_start AND created_at < data_interval_end``;
  both bounds are *parameters*, quoted and escaped by psycopg (bound on the client, so they show
  in ``pg_stat_activity``), never pasted into the SQL by the DAG;
* the key prefix is templated per interval (``exports/orders/{{ data_interval_start | ds }}/csv``, or the
  day the form names): re-running a day
  stages every part as an open multipart upload and, only once the query has finished, completes
  them all, deletes parts left over from an earlier, larger run, and writes the ``_manifest.json``
  last (its presence means "this day is complete");
* a failed run aborts its staged uploads: the day's previous export stays exactly as it was;
* the CSV export updates the asset ``s3stream_orders_csv`` (``ORDERS_CSV``): each run's asset event
  carries ``{"bucket", "key", "manifest_key", "rows", "bytes"}`` of the day it published, so a DAG
  scheduled on the asset (``load_orders_on_asset.py``) knows exactly what to load.

Configuration: connections ``postgres_default`` and ``aws_default``; the bucket comes from the
``S3STREAM_BUCKET`` environment variable (default ``s3stream``), the table from
``S3STREAM_ORDERS_TABLE`` (default ``public.demo_orders``, what ``make demo`` loads). Try it with
``airflow dags test s3stream_postgres_to_s3_daily 2024-01-01``.
"""

from __future__ import annotations

import logging
import os
from typing import Any

import pendulum
from airflow.sdk import Asset, CronDataIntervalTimetable, Param, dag, task

from airflow_s3stream.operators import PostgresToS3StreamOperator

BUCKET = os.environ.get("S3STREAM_BUCKET", "s3stream")
TABLE = os.environ.get("S3STREAM_ORDERS_TABLE", "public.demo_orders")  # set by the deployer, not by a trigger
INTERVAL_SQL = f"""
SELECT id, customer, amount, status, created_at, note
FROM {TABLE}
WHERE created_at >= %(start)s AND created_at < %(end)s
ORDER BY id
"""
# The run's interval, or the whole UTC day the trigger form's "Day to export" names.
START = "{{ (params.day ~ 'T00:00:00+00:00') if params.day else data_interval_start }}"
END = "{{ (macros.ds_add(params.day, 1) ~ 'T00:00:00+00:00') if params.day else data_interval_end }}"
DAY = "{{ params.day or (data_interval_start | ds) }}"  # names the key prefix
INTERVAL = {"start": START, "end": END}
SAMPLE_DAYS = "2023-12-31 to 2024-01-02"  # what make demo / make playground load (tests/tools/demo.py)
MiB = 1024 * 1024
# What the CSV export publishes, one interval per asset event (the event's extra names the day's keys).
ORDERS_CSV = Asset(name="s3stream_orders_csv", uri=f"s3://{BUCKET}/exports/orders/")


def warn_on_empty_interval(
    result: dict[str, Any], start: Any, end: Any, days_with_data: tuple[Any, Any] | None = None
) -> int:
    """The export's row count; when it is 0, a warning naming the interval and the header-only file,
    and, given ``days_with_data`` (the first and last day the table has rows for), which days to pick."""
    if result["rows"] == 0:
        hint = ""
        if days_with_data is not None:
            first, last = days_with_data
            hint = (
                f"; {TABLE} has rows from {first} to {last} (UTC): trigger again with 'Day to export' "
                f"set to one of those days"
                if first is not None
                else f"; {TABLE} has no rows at all"
            )
        logging.getLogger(__name__).warning(
            "no rows in [%s, %s): published a header-only file under s3://%s/%s%s",
            start,
            end,
            result["bucket"],
            result["files"][0]["key"] if result["files"] else "(nothing)",
            hint,
        )
    return int(result["rows"])


def days_with_data() -> tuple[Any, Any]:
    """The first and last UTC day :data:`TABLE` has rows for (``(None, None)`` when it is empty)."""
    from airflow_s3stream.hooks.postgres import PostgresStreamHook

    query = f"SELECT min(created_at AT TIME ZONE 'UTC')::date, max(created_at AT TIME ZONE 'UTC')::date FROM {TABLE}"
    with PostgresStreamHook().get_psycopg_connection() as conn:
        row = conn.execute(query).fetchone()
    return (row[0], row[1]) if row else (None, None)


@dag(
    dag_id="s3stream_postgres_to_s3_daily",
    # Airflow 3's plain "@daily" runs at a point in time (data_interval_start == end); this
    # timetable gives every run a whole day: [data_interval_start, data_interval_start + 1 day).
    schedule=CronDataIntervalTimetable("@daily", timezone="UTC"),
    start_date=pendulum.datetime(2024, 1, 1, tz="UTC"),
    catchup=False,
    max_active_runs=4,
    tags=["s3stream", "export"],
    doc_md=__doc__,
    params={
        "day": Param(
            None,
            type=["null", "string"],
            format="date",
            title="Day to export (optional)",
            description=(
                "A UTC day (YYYY-MM-DD) to export instead of the run's interval. Left empty, a manual run "
                "exports yesterday, which may have no rows. The sample data of make demo and make playground "
                f"has orders on {SAMPLE_DAYS}."
            ),
        ),
    },
)
def postgres_to_s3_daily() -> None:
    export_csv = PostgresToS3StreamOperator(
        task_id="export_csv",
        sql=INTERVAL_SQL,
        parameters=INTERVAL,
        s3_bucket=BUCKET,
        s3_key=f"exports/orders/{DAY}/csv",
        file_format="csv",
        compression="gzip",
        max_bytes_per_file=64 * MiB,
        write_manifest=True,
        outlets=[ORDERS_CSV],
        max_active_tis_per_dag=1,  # two runs of one day never write the same keys at once
    )
    PostgresToS3StreamOperator(
        task_id="export_parquet",
        sql=INTERVAL_SQL,
        parameters=INTERVAL,
        s3_bucket=BUCKET,
        s3_key=f"exports/orders/{DAY}/parquet",
        file_format="parquet",
        compression="zstd",
        max_rows_per_file=1_000_000,
        write_manifest=True,
        max_active_tis_per_dag=1,
    )

    @task
    def warn_if_empty(result: dict[str, Any], start: str, end: str) -> int:
        """Warn when the interval had no rows (a wrong day, or the source is late), naming the days with data."""
        return warn_on_empty_interval(result, start, end, days_with_data() if result["rows"] == 0 else None)

    warn_if_empty(export_csv.output, START, END)  # type: ignore[arg-type]  # an XComArg: the export's result


postgres_to_s3_daily()
