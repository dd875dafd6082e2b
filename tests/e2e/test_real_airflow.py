"""The example DAGs in a real Airflow: api-server, scheduler and dag-processor as separate processes.

The deployment gets a throwaway ``AIRFLOW_HOME`` with SQLite and a free loopback port, and is
driven only through the REST API v2, with a JWT from the simple auth manager, as the UI drives it:
trigger the verification DAG with form params, read its report back from XCom and its extra
link, backfill three intervals of the daily export, re-run one interval. Every process is
started in one process group and ended by its id.
"""

from __future__ import annotations

import json
import os
import tempfile
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import psycopg
import pytest

from tests.e2e.conftest import DAGS_EXAMPLES
from tests.support import devservices
from tests.support.airflow_stack import AirflowStack, wait_for
from tests.support.bags import make_bag, zip_dir

pytestmark = [pytest.mark.e2e, pytest.mark.slow]

VERIFY_DAG = "s3stream_verify_archive"
DAILY_DAG = "s3stream_postgres_to_s3_daily"
BACKFILL_DAYS = ("2024-01-01", "2024-01-02", "2024-01-03")


@pytest.fixture(scope="module")
def export_bucket(s3_client: Any) -> Iterator[str]:
    """The bucket the daily export DAG writes to in this deployment (``S3STREAM_BUCKET``)."""
    with devservices.throwaway_bucket(s3_client, "e2e") as name:
        yield name


@pytest.fixture(scope="module")
def orders_table(pg_uri: str) -> Iterator[str]:
    """``demo_orders`` in a private schema: rows every 2 minutes over 2024-01-01 .. 2024-01-04."""
    schema = f"e2e_{uuid.uuid4().hex[:12]}"
    with psycopg.connect(pg_uri, autocommit=True) as conn:
        conn.execute(f"CREATE SCHEMA {schema}")
        conn.execute(
            f"""CREATE TABLE {schema}.demo_orders AS
            SELECT g::int8 AS id, 'customer-' || g % 97 AS customer, (g % 1000 * 1.5)::numeric(12, 2) AS amount,
                   (ARRAY['new', 'paid'])[1 + g % 2] AS status,
                   timestamptz '2024-01-01 00:00:00+00' + g * interval '2 minutes' AS created_at,
                   'note ' || g AS note
            FROM generate_series(0, 4 * 720 - 1) AS g"""
        )
        yield f"{schema}.demo_orders"
        conn.execute(f"DROP SCHEMA {schema} CASCADE")


@pytest.fixture(scope="module")
def airflow(
    airflow_connections: dict[str, str], export_bucket: str, orders_table: str, migrated_airflow_db: Path
) -> Iterator[AirflowStack]:
    """A running deployment over ``dags_examples/``; stopped (whole process group) afterwards."""
    home = Path(tempfile.mkdtemp(prefix="s3stream-e2e-airflow-"))
    # The deployment's own SQLite DB and config, never the test session's; the daily export DAG
    # reads its bucket and table from the environment, as a deployer would set them.
    env = {**airflow_connections, "S3STREAM_BUCKET": export_bucket, "S3STREAM_ORDERS_TABLE": orders_table}
    stack = AirflowStack(home / "home", DAGS_EXAMPLES, extra_env=env, metadata_template=migrated_airflow_db)
    try:
        stack.start()
        yield stack
    finally:
        pgid = stack.pgid
        stack.stop()
        assert pgid is not None
        assert not stack.group_alive(), f"processes of group {pgid} survived stop()"
        assert stack.processes_using_home() == [], "an Airflow process outside the group survived stop()"


def _xcom(airflow: AirflowStack, dag_id: str, run_id: str, task_id: str) -> Any:
    entry = airflow.api("GET", f"/dags/{dag_id}/dagRuns/{run_id}/taskInstances/{task_id}/xcomEntries/return_value")
    return entry["value"]


def test_the_dag_processor_imports_every_example_dag_without_errors(airflow: AirflowStack) -> None:
    expected = {"s3stream_verify_archive", "s3stream_verify_prefix", "s3stream_export_partitioned", "s3stream_upload"}
    for dag_id in sorted(expected):
        airflow.wait_for_dag(dag_id)
    assert airflow.api("GET", "/importErrors")["import_errors"] == []
    dag_ids = {dag["dag_id"] for dag in airflow.api("GET", "/dags", params={"limit": 100})["dags"]}
    assert expected <= dag_ids


def test_verification_dag_triggered_through_the_rest_api_with_form_params(
    airflow: AirflowStack, s3_client: Any, s3: Any, bucket: str, tmp_path: Path
) -> None:
    bag_dir = make_bag(tmp_path, {"report.csv": b"a,b\n1,2\n", "img/scan.tif": os.urandom(300_000)}, name="acc17")
    s3_client.put_object(Bucket=bucket, Key="bags/acc17.zip", Body=zip_dir(bag_dir))
    dag = airflow.wait_for_dag(VERIFY_DAG)
    assert dag["is_paused"] is True  # new DAGs arrive paused, as in production
    airflow.unpause(VERIFY_DAG)

    # The UI's trigger form posts exactly this: the Params as "conf".
    run = airflow.api(
        "POST",
        f"/dags/{VERIFY_DAG}/dagRuns",
        json={
            "logical_date": None,
            "conf": {"bucket": bucket, "key": "bags/acc17.zip", "mode": "bagit", "write_report": True},
        },
    )
    finished = airflow.wait_for_run(VERIFY_DAG, run["dag_run_id"])
    assert finished["state"] == "success", airflow.task_log(VERIFY_DAG, run["dag_run_id"], "verify")

    report = _xcom(airflow, VERIFY_DAG, run["dag_run_id"], "verify")
    assert report["valid"] is True
    assert report["mode"] == "bagit"
    assert report["payload_files"] == 2
    assert report["errors"] == []
    stored = s3_client.get_object(Bucket=bucket, Key="bags/acc17.zip.verification.json")["Body"].read()
    assert b'"valid": true' in stored
    links = airflow.api("GET", f"/dags/{VERIFY_DAG}/dagRuns/{run['dag_run_id']}/taskInstances/verify/links")
    assert links["extra_links"]["S3 object"] == f"{s3.endpoint_url}/{bucket}/bags/acc17.zip"


def test_trigger_with_a_mode_outside_the_enum_is_refused_by_the_api(airflow: AirflowStack) -> None:
    airflow.wait_for_dag(VERIFY_DAG)
    with pytest.raises(RuntimeError, match="400"):
        airflow.api(
            "POST",
            f"/dags/{VERIFY_DAG}/dagRuns",
            json={"logical_date": None, "conf": {"key": "x.zip", "mode": "tar"}},
        )


def _export_keys(s3_client: Any, bucket: str, days: tuple[str, ...] | None = None) -> dict[str, Any]:
    """Objects under ``exports/orders/`` (only those of ``days`` when given) -> LastModified."""
    found = {}
    for page in s3_client.get_paginator("list_objects_v2").paginate(Bucket=bucket, Prefix="exports/orders/"):
        for obj in page.get("Contents", []):
            if days is None or obj["Key"].split("/")[2] in days:
                found[obj["Key"]] = obj["LastModified"]
    return found


def _task_tries(airflow: AirflowStack, run_id: str) -> dict[str, tuple[str, int]]:
    tis = airflow.api("GET", f"/dags/{DAILY_DAG}/dagRuns/{run_id}/taskInstances")["task_instances"]
    return {ti["task_id"]: (ti["state"], ti["try_number"]) for ti in tis}


def test_backfill_of_three_days_writes_three_partitions_and_a_rerun_replaces_one_in_place(
    airflow: AirflowStack, s3_client: Any, export_bucket: str, orders_table: str, pg_uri: str
) -> None:
    airflow.wait_for_dag(DAILY_DAG)
    backfill = airflow.api(
        "POST",
        "/backfills",
        json={
            "dag_id": DAILY_DAG,
            "from_date": f"{BACKFILL_DAYS[0]}T00:00:00Z",
            "to_date": f"{BACKFILL_DAYS[-1]}T00:00:00Z",
            "max_active_runs": 3,
            "reprocess_behavior": "none",
        },
    )
    airflow.unpause(DAILY_DAG)  # task instances of a paused DAG are never queued, backfill or not

    def backfill_done() -> list[dict[str, Any]] | None:
        runs = airflow.api("GET", f"/dags/{DAILY_DAG}/dagRuns", params={"run_type": "backfill", "limit": 50})
        runs = runs["dag_runs"]
        if len(runs) == len(BACKFILL_DAYS) and all(run["state"] in ("success", "failed") for run in runs):
            return list(runs)
        return None

    runs = wait_for(f"backfill {backfill['id']} of {DAILY_DAG}", backfill_done, timeout_s=300, interval_s=3)
    by_day = {run["logical_date"][:10]: run for run in runs}
    assert sorted(by_day) == list(BACKFILL_DAYS)
    for run in by_day.values():
        assert run["state"] == "success", airflow.task_log(DAILY_DAG, run["dag_run_id"], "export_csv")

    # Unpausing also lets the scheduler run the latest interval (catchup=False); it writes its own day.
    scheduled = airflow.api("GET", f"/dags/{DAILY_DAG}/dagRuns", params={"run_type": "scheduled"})["dag_runs"]
    scheduled_days = {run["logical_date"][:10] for run in scheduled}
    keys = _export_keys(s3_client, export_bucket)
    days = {key.split("/")[2] for key in keys}
    assert days - scheduled_days == set(BACKFILL_DAYS)
    for day in BACKFILL_DAYS:
        prefix = f"exports/orders/{day}/"
        day_keys = sorted(key for key in keys if key.startswith(prefix))
        assert f"{prefix}csv/_manifest.json" in day_keys
        assert f"{prefix}parquet/_manifest.json" in day_keys
        manifest = _json(s3_client, export_bucket, f"{prefix}csv/_manifest.json")
        with psycopg.connect(pg_uri) as c:  # each day's manifest reports exactly that day's rows
            expected = c.execute(
                f"SELECT count(*) FROM {orders_table} WHERE created_at >= %s::date AND created_at < %s::date + 1",
                (day, day),
            ).fetchone()
        assert expected is not None
        assert _manifest_rows(manifest) == expected[0] == 720

    # The export's "S3 object" button lists the interval's prefix on the custom endpoint.
    run_id = by_day[BACKFILL_DAYS[0]]["dag_run_id"]
    links = airflow.api("GET", f"/dags/{DAILY_DAG}/dagRuns/{run_id}/taskInstances/export_csv/links")
    link = links["extra_links"]["S3 object"]
    # (the session's moto connection carries s3stream_console_url = "<endpoint>/{bucket}/{key}")
    assert link == f"{s3_client.meta.endpoint_url}/{export_bucket}/exports/orders/{BACKFILL_DAYS[0]}/csv/"

    # Re-run one interval, as "Clear" in the UI does, and wait for its second try to finish.
    rerun = by_day[BACKFILL_DAYS[1]]["dag_run_id"]
    before = _export_keys(s3_client, export_bucket, BACKFILL_DAYS)
    time.sleep(1.1)  # LastModified has one-second resolution
    airflow.api("POST", f"/dags/{DAILY_DAG}/dagRuns/{rerun}/clear", json={"dry_run": False})

    def rerun_done() -> dict[str, tuple[str, int]] | None:
        tries = _task_tries(airflow, rerun)
        finished = all(try_number >= 2 and state in ("success", "failed") for state, try_number in tries.values())
        return tries if tries and finished else None

    tries = wait_for(f"re-run of {rerun}", rerun_done, timeout_s=240, interval_s=3)
    assert {state for state, _ in tries.values()} == {"success"}, airflow.task_log(DAILY_DAG, rerun, "export_csv", 2)

    after = _export_keys(s3_client, export_bucket, BACKFILL_DAYS)
    assert set(after) == set(before), "re-running an interval must not add or drop files"
    rewritten = [key for key in after if after[key] > before[key]]
    assert rewritten and all(key.startswith(f"exports/orders/{BACKFILL_DAYS[1]}/") for key in rewritten)


def _json(s3_client: Any, bucket: str, key: str) -> dict[str, Any]:
    return dict(json.loads(s3_client.get_object(Bucket=bucket, Key=key)["Body"].read()))


def _manifest_rows(manifest: dict[str, Any]) -> int:
    if "rows" in manifest:
        return int(manifest["rows"])
    return sum(int(file["rows"]) for file in manifest["files"])
