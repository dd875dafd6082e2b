"""Data-aware scheduling end to end: a backfill of the export drives the load DAG in a real Airflow.

The api-server, scheduler and dag-processor run as separate processes (``AirflowStack``). Three
days of ``s3stream_postgres_to_s3_daily`` are backfilled through the REST API; each CSV export
emits an event of the asset ``s3stream_orders_csv``, and ``s3stream_load_orders_on_asset``
(scheduled on that asset) loads each published day into a second database through the
``postgres_replica`` connection with ``replace_interval``.

What Airflow 3 guarantees, and so what is asserted: every asset event is consumed by exactly one
asset-triggered run (the runs' event windows do not overlap), and a run consumes *every* event
queued since the previous run, so events that arrive before the scheduler creates the run are
batched into one run. One run per interval is therefore not guaranteed; that every backfilled
interval's event is consumed once, by a successful load run, and that the replica then holds
exactly the source rows of those intervals (``EXCEPT ALL`` both ways) is.
"""

from __future__ import annotations

import tempfile
import urllib.parse
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import psycopg
import pytest

from tests.e2e.conftest import DAGS_EXAMPLES
from tests.support.airflow_stack import AirflowStack, wait_for

pytestmark = [pytest.mark.e2e, pytest.mark.slow, pytest.mark.timeout(420)]

EXPORT_DAG = "s3stream_postgres_to_s3_daily"
LOAD_DAG = "s3stream_load_orders_on_asset"
ASSET = "s3stream_orders_csv"
BACKFILL_DAYS = ("2024-01-01", "2024-01-02", "2024-01-03")
ROWS_PER_DAY = 720  # one row every 2 minutes
COLUMNS = "id, customer, amount, status, created_at, note"
REPLICA_DDL = (
    "CREATE TABLE public.orders_replica (id int8, customer text, amount numeric(12, 2), status text, "
    "created_at timestamptz, note text)"
)


@pytest.fixture(scope="module")
def export_bucket(s3_client: Any) -> Iterator[str]:
    name = f"e2e-load-{uuid.uuid4().hex[:12]}"
    s3_client.create_bucket(Bucket=name)
    yield name
    for page in s3_client.get_paginator("list_objects_v2").paginate(Bucket=name):
        for obj in page.get("Contents", []):
            s3_client.delete_object(Bucket=name, Key=obj["Key"])
    s3_client.delete_bucket(Bucket=name)


@pytest.fixture(scope="module")
def source_table(pg_uri: str) -> Iterator[str]:
    """Orders over 2024-01-01 .. 2024-01-04 in a private schema of the source database."""
    schema = f"e2e_src_{uuid.uuid4().hex[:10]}"
    with psycopg.connect(pg_uri, autocommit=True) as conn:
        conn.execute(f"CREATE SCHEMA {schema}")
        conn.execute(
            f"""CREATE TABLE {schema}.demo_orders AS
            SELECT g::int8 AS id, 'customer-' || g % 97 AS customer, (g % 1000 * 1.5)::numeric(12, 2) AS amount,
                   (ARRAY['new', 'paid'])[1 + g % 2] AS status,
                   timestamptz '2024-01-01 00:00:00+00' + g * interval '2 minutes' AS created_at,
                   CASE WHEN g % 7 = 0 THEN NULL WHEN g % 11 = 0 THEN '' ELSE 'note, "' || g || E'"\\n' END AS note
            FROM generate_series(0, 4 * {ROWS_PER_DAY} - 1) AS g"""
        )
        yield f"{schema}.demo_orders"
        conn.execute(f"DROP SCHEMA {schema} CASCADE")


@pytest.fixture(scope="module")
def replica_uri(pg_uri: str) -> Iterator[str]:
    """A second database on the same server, holding the empty ``public.orders_replica``."""
    name = f"e2e_replica_{uuid.uuid4().hex[:10]}"
    with psycopg.connect(pg_uri, autocommit=True) as conn:
        conn.execute(f"CREATE DATABASE {name}")
    parts = urllib.parse.urlsplit(pg_uri)
    uri = urllib.parse.urlunsplit((parts.scheme, parts.netloc, f"/{name}", parts.query, ""))
    with psycopg.connect(uri, autocommit=True) as conn:
        conn.execute(REPLICA_DDL)
    yield uri
    with psycopg.connect(pg_uri, autocommit=True) as conn:
        conn.execute(f"DROP DATABASE {name} WITH (FORCE)")


@pytest.fixture(scope="module")
def airflow(
    airflow_connections: dict[str, str],
    export_bucket: str,
    source_table: str,
    replica_uri: str,
    migrated_airflow_db: Path,
) -> Iterator[AirflowStack]:
    home = Path(tempfile.mkdtemp(prefix="s3stream-e2e-load-"))
    replica = urllib.parse.urlsplit(replica_uri)
    env = {
        **airflow_connections,
        # Airflow's URI form of a postgres connection (scheme "postgres"), as the deployer sets it.
        "AIRFLOW_CONN_POSTGRES_REPLICA": urllib.parse.urlunsplit(("postgres", *replica[1:4], "")),
        "S3STREAM_BUCKET": export_bucket,
        "S3STREAM_ORDERS_TABLE": source_table,
    }
    stack = AirflowStack(home / "home", DAGS_EXAMPLES, extra_env=env, metadata_template=migrated_airflow_db)
    try:
        stack.start()
        yield stack
    finally:
        stack.stop()
        assert not stack.group_alive()


def _runs(airflow: AirflowStack, dag_id: str, **params: Any) -> list[dict[str, Any]]:
    return list(airflow.api("GET", f"/dags/{dag_id}/dagRuns", params={"limit": 100, **params})["dag_runs"])


def _export_events(airflow: AirflowStack) -> list[dict[str, Any]]:
    events = airflow.api("GET", "/assets/events", params={"source_dag_id": EXPORT_DAG, "limit": 100})
    return [e for e in events["asset_events"] if e["name"] == ASSET]


def _differences(pg_uri: str, source_table: str, replica_uri: str) -> tuple[int, int, int]:
    """(source rows, rows only in the source, rows only in the replica) for the backfilled days."""
    with psycopg.connect(replica_uri) as replica, psycopg.connect(pg_uri) as source:
        # The replica's rows travel to the source server in a temporary table: EXCEPT ALL needs both
        # sides in one database; COPY keeps every value exactly as stored.
        source.execute(f"CREATE TEMP TABLE loaded (LIKE {source_table})")
        with (
            replica.cursor().copy(f"COPY (SELECT {COLUMNS} FROM public.orders_replica) TO STDOUT") as out,
            source.cursor().copy(f"COPY loaded ({COLUMNS}) FROM STDIN") as into,
        ):
            for chunk in out:
                into.write(chunk)
        interval = f"created_at >= '{BACKFILL_DAYS[0]}' AND created_at < date '{BACKFILL_DAYS[-1]}' + 1"
        expected = f"SELECT {COLUMNS} FROM {source_table} WHERE {interval}"
        loaded = f"SELECT {COLUMNS} FROM loaded"
        counts = [
            source.execute(f"SELECT count(*) FROM ({expected}) e").fetchone(),
            source.execute(f"SELECT count(*) FROM ({expected} EXCEPT ALL {loaded}) d").fetchone(),
            source.execute(f"SELECT count(*) FROM ({loaded} EXCEPT ALL {expected}) d").fetchone(),
        ]
    total, missing, extra = (int(c[0]) if c else -1 for c in counts)
    return total, missing, extra


def test_a_backfill_of_three_days_is_loaded_once_per_event_into_the_replica(
    airflow: AirflowStack, pg_uri: str, source_table: str, replica_uri: str
) -> None:
    airflow.wait_for_dag(EXPORT_DAG)
    airflow.wait_for_dag(LOAD_DAG)
    # Unpausing the export also runs its latest interval (catchup=False): a day with no rows. Let it
    # finish first, so the backfill's events are the only ones produced while the load listens.
    airflow.unpause(EXPORT_DAG)
    scheduled = wait_for("the export's scheduled run", lambda: _runs(airflow, EXPORT_DAG) or None, 120, 2)
    for run in scheduled:
        airflow.wait_for_run(EXPORT_DAG, run["dag_run_id"])
    airflow.unpause(LOAD_DAG)
    airflow.api(
        "POST",
        "/backfills",
        json={
            "dag_id": EXPORT_DAG,
            "from_date": f"{BACKFILL_DAYS[0]}T00:00:00Z",
            "to_date": f"{BACKFILL_DAYS[-1]}T00:00:00Z",
            "max_active_runs": 1,
            "reprocess_behavior": "none",
        },
    )

    def backfill_done() -> list[dict[str, Any]] | None:
        runs = _runs(airflow, EXPORT_DAG, run_type="backfill")
        done = len(runs) == len(BACKFILL_DAYS) and all(r["state"] in ("success", "failed") for r in runs)
        return runs if done else None

    backfill = wait_for("the backfill of the export", backfill_done, timeout_s=240, interval_s=3)
    for run in backfill:
        assert run["state"] == "success", airflow.task_log(EXPORT_DAG, run["dag_run_id"], "export_csv")
    backfill_run_ids = {r["dag_run_id"] for r in backfill}

    def every_event_consumed() -> list[dict[str, Any]] | None:
        events = [e for e in _export_events(airflow) if e["source_run_id"] in backfill_run_ids]
        return events if len(events) == len(BACKFILL_DAYS) and all(e["created_dagruns"] for e in events) else None

    events = wait_for("a load run for every backfilled day's event", every_event_consumed, 180, 3)
    assert sorted(str(e["extra"]["key"]).split("/")[2] for e in events) == list(BACKFILL_DAYS)
    consumers = {e["id"]: [r["run_id"] for r in e["created_dagruns"] if r["dag_id"] == LOAD_DAG] for e in events}
    assert all(len(runs) == 1 for runs in consumers.values()), consumers  # each event consumed exactly once
    load_run_ids = {runs[0] for runs in consumers.values()}
    for run_id in sorted(load_run_ids):
        run = airflow.wait_for_run(LOAD_DAG, run_id)
        assert run["run_type"] == "asset_triggered"
        assert run["state"] == "success", airflow.task_log(LOAD_DAG, run_id, "load_day")
    # No more than one run per event: a run may batch several events, never the reverse.
    assert 1 <= len(load_run_ids) <= len(BACKFILL_DAYS)
    print(f"{len(events)} backfilled events consumed by {len(load_run_ids)} load run(s)")

    total, missing, extra = _differences(pg_uri, source_table, replica_uri)
    assert (total, missing, extra) == (len(BACKFILL_DAYS) * ROWS_PER_DAY, 0, 0)
