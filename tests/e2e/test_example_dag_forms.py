"""Every example DAG's trigger form has a title and help text for each field; the daily export's
form offers a day to export and says which days the sample data covers, and its empty-interval
warning names the days that have rows; a failed task's real log states its verdict once."""

from __future__ import annotations

import datetime as dt
import json
import logging
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from tests.e2e.conftest import DAGS_EXAMPLES
from tests.tools import demo

pytestmark = pytest.mark.e2e

DAILY = "s3stream_postgres_to_s3_daily"


def _forms(dags: dict[str, Any]) -> dict[str, dict[str, dict[str, Any]]]:
    """``{dag_id: {param name: its JSON schema, with its "title" and "description"}}``: what the
    trigger form shows (the title from the schema, the help text from the Param's description)."""
    return {
        dag_id: {
            name: {
                **dag.params.get_param(name).schema,
                "title": dag.params.get_param(name).schema.get("title"),
                "description": dag.params.get_param(name).description,
            }
            for name in dag.params
        }
        for dag_id, dag in dags.items()
    }


def test_every_example_dag_form_field_has_a_title_and_a_description(example_dags: dict[str, Any]) -> None:
    from airflow.dag_processing.dagbag import DagBag

    tour = DagBag(dag_folder=str(demo.REPO / "tests" / "tools" / "demo_dags"))
    assert tour.import_errors == {}
    forms = _forms({**example_dags, **tour.dags})
    assert sum(len(fields) for fields in forms.values()) >= 20  # the forms were really read
    missing = [
        f"{dag_id}.{name}: {'title' if not field['title'] else 'description'}"
        for dag_id, fields in forms.items()
        for name, field in fields.items()
        if not field["title"] or not field["description"]
    ]
    assert missing == []
    partitioned = forms["s3stream_export_partitioned"]
    assert (partitioned["table"]["title"], partitioned["key_column"]["title"]) == ("Table", "Key column")


def test_the_daily_form_offers_a_day_and_names_the_days_the_sample_data_covers(example_dags: dict[str, Any]) -> None:
    day = _forms(example_dags)[DAILY]["day"]
    assert day["type"] == ["null", "string"] and day["format"] == "date"
    assert "2023-12-31 to 2024-01-02" in day["description"]
    assert "yesterday" in day["description"]


def test_the_daily_dag_exports_the_day_the_form_names_and_an_empty_day_names_the_days_with_data(  # noqa: PLR0917
    airflow_db: str,
    s3_client: Any,
    bucket: str,
    pg_conn: Any,
    monkeypatch: pytest.MonkeyPatch,
    caplog: pytest.LogCaptureFixture,
) -> None:
    from airflow.dag_processing.dagbag import DagBag

    from tests.e2e.test_example_dags import _forget_asset, _run

    schema = pg_conn.execute("SELECT current_schema()").fetchone()[0]
    pg_conn.execute(
        """CREATE TABLE demo_orders AS
        SELECT g::int8 AS id, 'c' || g AS customer, (g * 1.25)::numeric(12, 2) AS amount, 'paid' AS status,
               timestamptz '2024-01-01 00:00:00+00' + g * interval '1 hour' AS created_at, 'note ' || g AS note
        FROM generate_series(0, 71) AS g"""  # 24 rows on each of 2024-01-01, -02, -03
    )
    monkeypatch.setenv("S3STREAM_BUCKET", bucket)
    monkeypatch.setenv("S3STREAM_ORDERS_TABLE", f"{schema}.demo_orders")
    dag = DagBag(dag_folder=str(DAGS_EXAMPLES / "postgres_to_s3_daily.py")).dags[DAILY]
    _forget_asset("s3stream_orders_csv")

    # A run "on" 2024-06-01 exports its interval, 2024-05-31: no rows, and the warning names the days
    # that have some. (First: dag.test() runs tasks in this process, where a run's conf stays on the
    # DAG's Param objects for the runs after it.)
    when = dt.datetime(2024, 6, 1, tzinfo=dt.timezone.utc)
    caplog.set_level(logging.WARNING)
    state, _ = _run(dag, logical_date=when)
    assert state == "success"
    assert "no rows in [2024-05-31" in caplog.text
    assert "has rows from 2024-01-01 to 2024-01-03 (UTC): trigger again with 'Day to export'" in caplog.text

    # The form's day picks 2024-01-03 instead: that day's rows, under that day's prefix.
    state, tasks = _run(dag, logical_date=when, run_conf={"day": "2024-01-03"})
    assert (state, tasks["warn_if_empty"]) == ("success", "success")
    keys = {o["Key"] for o in s3_client.list_objects_v2(Bucket=bucket)["Contents"]}
    assert {key.split("/")[2] for key in keys} == {"2024-05-31", "2024-01-03"}
    manifest = "exports/orders/2024-01-03/csv/_manifest.json"
    assert json.loads(s3_client.get_object(Bucket=bucket, Key=manifest)["Body"].read())["rows"] == 24


@pytest.mark.timeout(300)
def test_a_real_failed_task_log_states_its_verdict_once_without_chained_tracebacks(
    airflow_db: str, bucket: str, tmp_path: Path
) -> None:
    """``airflow dags test`` runs the verify DAG's task through Airflow's task runner on a key that
    does not exist; its task log, as the runner writes it, names the object once."""
    import shutil

    home = tmp_path / "airflow-home"
    home.mkdir()
    shutil.copyfile(Path(airflow_db) / "airflow.db", home / "airflow.db")
    env = {
        **os.environ,
        "AIRFLOW_HOME": str(home),
        "AIRFLOW__DATABASE__SQL_ALCHEMY_CONN": f"sqlite:///{home}/airflow.db",
        "AIRFLOW__CORE__DAGS_FOLDER": str(DAGS_EXAMPLES),
        "AIRFLOW__CORE__LOAD_EXAMPLES": "False",
        "PYTHONPATH": str(demo.REPO),
    }
    conf = {"bucket": bucket, "key": "archives/missing.zip", "mode": "zip", "write_report": False}
    proc = subprocess.run(
        [sys.executable, "-m", "airflow", "dags", "test", "s3stream_verify_archive", "-c", json.dumps(conf)],
        env=env,
        capture_output=True,
        text=True,
        timeout=280,
        check=False,
    )
    log = proc.stdout + proc.stderr
    verdict = f"s3://{bucket}/archives/missing.zip: no such key"
    assert "Task failed with exception" in log, log[-4000:]
    assert sum(verdict in line for line in log.splitlines()) == 1, log[-6000:]
    assert "The above exception was the direct cause" not in log, log[-6000:]
    assert "During handling of the above exception" not in log, log[-6000:]
    assert "botocore" not in log.split("Task failed with exception", 1)[1], log[-6000:]
