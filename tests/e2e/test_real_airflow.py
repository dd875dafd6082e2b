"""The example DAGs in a real Airflow: api-server, scheduler and dag-processor as separate processes.

The deployment gets a throwaway ``AIRFLOW_HOME`` with SQLite and a free loopback port, and is
driven only through the REST API v2, with a JWT from the simple auth manager, as the UI drives it:
trigger the verification DAG with form params, read its report back from XCom and its extra
link, backfill three intervals of the daily export, re-run one interval. Every process is
started in one process group and ended by its id.
"""

from __future__ import annotations

import os
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.e2e.airflow_stack import AirflowStack
from tests.e2e.conftest import DAGS_EXAMPLES
from tests.support.bags import make_bag, zip_dir

pytestmark = [pytest.mark.e2e, pytest.mark.slow]

VERIFY_DAG = "s3stream_verify_archive"


@pytest.fixture(scope="module")
def airflow(airflow_connections: dict[str, str]) -> Iterator[AirflowStack]:
    """A running deployment over ``dags_examples/``; stopped (whole process group) afterwards."""
    home = Path(tempfile.mkdtemp(prefix="s3stream-e2e-airflow-"))
    # The deployment's own SQLite DB and config, never the test session's.
    stack = AirflowStack(home / "home", DAGS_EXAMPLES, extra_env=airflow_connections)
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
