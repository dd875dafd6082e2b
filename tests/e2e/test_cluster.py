"""The fan-out DAGs on the cluster of ``make cluster``: CeleryExecutor, two workers capped at 768 MiB.

One cluster for the module (:func:`tests.tools.cluster.running_cluster`), driven through the
REST API as the UI drives it. What must hold, per the small-worker claim:

* ``s3stream_export_partitioned`` over 3M rows in 4 partitions and ``s3stream_verify_prefix``
  over 4 bags succeed at concurrency 2 in 768 MiB per worker, on the first try of every task,
  with no process OOM-killed, and their mapped task instances run on both workers;
* the exported Parquet files hold exactly the table's rows;
* where workers are capped, Airflow's ``SqlToS3Operator`` on the same table is OOM-killed, and
  Airflow reports it as that task's failure, while our operator exports it in the same cap.

Each worker's peak comes from its cgroup's own counter; the figures are printed (``-s``) and
attached to the test report as user properties.
"""

from __future__ import annotations

import io
import json
import os
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import psycopg
import pytest

from tests.support import devservices
from tests.support.airflow_stack import wait_for
from tests.support.bags import make_bag, zip_dir
from tests.support.devservices import DevServices
from tests.tools import stack_spec
from tests.tools.cluster import Cluster, running_cluster

pytestmark = [pytest.mark.e2e, pytest.mark.slow, pytest.mark.timeout(720)]

CLUSTER_DAGS = Path(__file__).resolve().parent / "cluster_dags"
EXPORT_DAG = "s3stream_export_partitioned"
VERIFY_DAG = "s3stream_verify_prefix"
COMPARE_DAG = "s3stream_compare_sql_to_s3"
ROWS = 3_000_000
PARTITIONS = 4
BAGS = 4
RUN_TIMEOUT_S = 420.0
MiB = stack_spec.MiB


@pytest.fixture(scope="module")
def cluster_bucket(s3_client: Any) -> Iterator[str]:
    with devservices.throwaway_bucket(s3_client, "cluster") as name:
        yield name


@pytest.fixture(scope="module")
def orders_3m(pg_uri: str) -> Iterator[str]:
    """3M orders in a private schema, made by ``generate_series`` (a few seconds), keyed on ``id``."""
    schema = f"cluster_{uuid.uuid4().hex[:12]}"
    with psycopg.connect(pg_uri, autocommit=True) as conn:
        conn.execute(f"CREATE SCHEMA {schema}")
        conn.execute(
            f"""CREATE TABLE {schema}.orders AS
            SELECT g::int8 AS id, md5(g::text) AS customer, (g % 100000 * 1.37)::numeric(12, 2) AS amount,
                   (ARRAY['new', 'paid', 'shipped', 'returned'])[1 + g % 4] AS status,
                   timestamptz '2024-01-01 00:00:00+00' + g * interval '1 second' AS created_at,
                   'note ' || g AS note
            FROM generate_series(1, {ROWS}) AS g"""
        )
        conn.execute(f"ALTER TABLE {schema}.orders ADD PRIMARY KEY (id)")
        conn.execute(f"ANALYZE {schema}.orders")
        yield f"{schema}.orders"
        conn.execute(f"DROP SCHEMA {schema} CASCADE")


@pytest.fixture(scope="module")
def cluster(services: DevServices, cluster_bucket: str) -> Iterator[Cluster]:
    with running_cluster(
        services,
        worker_memory=stack_spec.WORKER_MEMORY_BYTES,
        extra_dag_folders=[CLUSTER_DAGS],
        extra_env={"S3STREAM_BUCKET": cluster_bucket},
    ) as running:
        print("\n" + running.describe())
        yield running
        home, pgid = running.home, running.stack.pgid
    # running_cluster has stopped it: nothing of it may be left.
    assert pgid is not None
    assert not running.stack.group_alive(), f"processes of group {pgid} survived"
    assert running.stack.processes_using_home() == [], f"a process of {home} survived"
    assert all(not (w.cgroup and w.cgroup.path.exists()) for w in running.workers), "a cgroup was left behind"


def _trigger(cluster: Cluster, dag_id: str, conf: dict[str, Any]) -> dict[str, Any]:
    """Unpause ``dag_id``, trigger it with ``conf``; return the run once it finished or needs a retry.

    A retry already breaks the requirement, and the DAG's retry delay is minutes: the test stops
    there rather than wait for the retries to finish the run.
    """
    cluster.stack.wait_for_dag(dag_id)
    cluster.stack.unpause(dag_id)
    run_id = cluster.stack.api("POST", f"/dags/{dag_id}/dagRuns", json={"logical_date": None, "conf": conf})[
        "dag_run_id"
    ]

    def finished_or_retrying() -> dict[str, Any] | None:
        cluster.stack.check_alive()
        run = dict(cluster.stack.api("GET", f"/dags/{dag_id}/dagRuns/{run_id}"))
        retrying = any(ti["state"] == "up_for_retry" for ti in _task_instances(cluster, dag_id, run_id))
        return run if retrying or run["state"] in ("success", "failed") else None

    return wait_for(f"run {run_id} of {dag_id} to finish", finished_or_retrying, RUN_TIMEOUT_S, interval_s=2)


def _task_instances(cluster: Cluster, dag_id: str, run_id: str) -> list[dict[str, Any]]:
    body = cluster.stack.api("GET", f"/dags/{dag_id}/dagRuns/{run_id}/taskInstances", params={"limit": 100})
    return list(body["task_instances"])


def _label(ti: dict[str, Any]) -> str:
    return ti["task_id"] + ("" if ti["map_index"] < 0 else f"[{ti['map_index']}]")


def _logs(cluster: Cluster, dag_id: str, run_id: str, tis: list[dict[str, Any]]) -> str:
    """The log tails of the task instances that ran and did not succeed on their first try."""
    failed = [ti for ti in tis if ti["try_number"] and (ti["state"] != "success" or ti["try_number"] != 1)]
    return "\n\n".join(
        f"--- {_label(ti)} ({ti['state']}, try {ti['try_number']}, on {ti['hostname']}):\n"
        + cluster.stack.task_log(dag_id, run_id, ti["task_id"], ti["try_number"], ti["map_index"])[-3000:]
        for ti in failed
    )


def _tries(cluster: Cluster, dag_id: str, run_id: str, ti: dict[str, Any]) -> list[dict[str, Any]]:
    """Every try of ``ti`` so far (an OOM-killed first try included), oldest first."""
    path = f"/dags/{dag_id}/dagRuns/{run_id}/taskInstances/{ti['task_id']}"
    path += f"/{ti['map_index']}/tries" if ti["map_index"] >= 0 else "/tries"
    return sorted(cluster.stack.api("GET", path)["task_instances"], key=lambda t: t["try_number"])


def _figures(cluster: Cluster, dag_id: str, run_id: str, tis: list[dict[str, Any]]) -> dict[str, Any]:
    """Each worker's peak (cgroup counter) and OOM kills; per task try, its process's sampled peaks."""
    peaks = cluster.task_peaks()
    tasks = {}
    for ti in tis:
        for tried in _tries(cluster, dag_id, run_id, ti) if ti["try_number"] else []:
            peak = peaks.get(tried["pid"]) if tried["pid"] else None
            tasks[f"{_label(ti)} try {tried['try_number']}"] = {
                "state": tried["state"],
                "hostname": tried["hostname"],
                "peak_rss_mib": round(peak.peak_bytes / MiB) if peak else None,
                "worker_peak_while_running_mib": round(peak.worker_peak_bytes / MiB) if peak else None,
            }
    workers = {
        w.hostname: {
            "peak_mib": round(w.peak_bytes() / MiB),
            "cap_mib": round(w.cgroup.limit_bytes / MiB) if w.cgroup else None,
            "oom_kills": w.oom_kills(),
        }
        for w in cluster.workers
    }
    return {"workers": workers, "tasks": tasks}


def _report(record_property: Callable[[str, object], None], name: str, figures: dict[str, Any]) -> None:
    print(f"\n{name}: {json.dumps(figures, indent=1)}")
    record_property(name, json.dumps(figures))


def _assert_fanout_ok(
    cluster: Cluster,
    dag_id: str,
    run: dict[str, Any],
    mapped_task: str,
    count: int,
    *,
    record_property: Callable[[str, object], None],
) -> list[Any]:
    tis = _task_instances(cluster, dag_id, run["dag_run_id"])
    _report(record_property, dag_id, _figures(cluster, dag_id, run["dag_run_id"], tis))
    if run["state"] not in ("success", "failed"):  # stopped at a retry: end it, so later tests run alone
        cluster.stack.api("PATCH", f"/dags/{dag_id}/dagRuns/{run['dag_run_id']}", json={"state": "failed"})
    logs = _logs(cluster, dag_id, run["dag_run_id"], tis)
    ooms = {w.hostname: w.oom_kills() for w in cluster.workers}
    assert run["state"] == "success", f"{dag_id}: {run['state']}; OOM kills {ooms}\n{logs}"
    assert all(ti["try_number"] == 1 for ti in tis), f"{dag_id}: a task needed a retry\n{logs}"
    assert ooms == dict.fromkeys(ooms, 0), f"{dag_id}: the OOM killer ended a process: {ooms}"
    mapped = [ti for ti in tis if ti["task_id"] == mapped_task]
    assert len(mapped) == count and all(ti["state"] == "success" for ti in mapped)
    assert {ti["hostname"] for ti in mapped} == {w.hostname for w in cluster.workers}, "not spread over both workers"
    return tis


def test_partitioned_export_of_3m_rows_succeeds_on_both_capped_workers_first_try(
    cluster: Cluster,
    orders_3m: str,
    cluster_bucket: str,
    s3_client: Any,
    record_property: Callable[[str, object], None],
) -> None:
    import pyarrow as pa
    import pyarrow.compute as pc
    import pyarrow.parquet as pq

    cluster.reset_peaks()
    conf = {"table": orders_3m, "key_column": "id", "partitions": PARTITIONS, "bucket": cluster_bucket, "prefix": "p"}

    run = _trigger(cluster, EXPORT_DAG, conf)

    _assert_fanout_ok(cluster, EXPORT_DAG, run, "export_range", PARTITIONS, record_property=record_property)
    base = f"p/{orders_3m}/"
    manifest = json.loads(s3_client.get_object(Bucket=cluster_bucket, Key=base + "_manifest.json")["Body"].read())
    assert manifest["rows"] == ROWS
    assert sorted(f["key"] for f in manifest["files"]) == [f"{base}range-{i:05d}.parquet" for i in range(PARTITIONS)]
    ids = pa.concat_arrays(
        [
            pq.read_table(io.BytesIO(s3_client.get_object(Bucket=cluster_bucket, Key=f["key"])["Body"].read()))
            .column("id")
            .combine_chunks()
            for f in manifest["files"]
        ]
    )
    assert len(ids) == ROWS  # every row once: as many ids as rows, all distinct, spanning 1 .. ROWS
    assert pc.count_distinct(ids).as_py() == ROWS
    assert (pc.min(ids).as_py(), pc.max(ids).as_py()) == (1, ROWS)


def test_prefix_verification_of_4_bags_succeeds_on_both_capped_workers_first_try(
    cluster: Cluster,
    cluster_bucket: str,
    s3_client: Any,
    tmp_path: Path,
    record_property: Callable[[str, object], None],
) -> None:
    cluster.reset_peaks()
    for n in range(BAGS):
        files = {"report.csv": b"id,value\n1,2\n", f"scans/page-{n}.tif": os.urandom(2 * MiB)}
        archive = zip_dir(make_bag(tmp_path, files, checksums=("sha256",), name=f"bag{n}"))
        s3_client.put_object(Bucket=cluster_bucket, Key=f"bags/bag{n}.zip", Body=archive)

    conf = {"bucket": cluster_bucket, "prefix": "bags/", "suffix": ".zip", "mode": "bagit"}
    run = _trigger(cluster, VERIFY_DAG, conf)

    _assert_fanout_ok(cluster, VERIFY_DAG, run, "verify", BAGS, record_property=record_property)
    summary = s3_client.get_object(Bucket=cluster_bucket, Key="bags_verification-summary.json")["Body"].read()
    assert (json.loads(summary)["archives"], json.loads(summary)["invalid"]) == (BAGS, [])


def test_sql_to_s3_operator_is_oom_killed_in_the_cap_where_ours_exports_the_same_table(
    cluster: Cluster,
    orders_3m: str,
    cluster_bucket: str,
    s3_client: Any,
    record_property: Callable[[str, object], None],
) -> None:
    if any(w.cgroup is None for w in cluster.workers):
        pytest.fail(f"the comparison needs capped workers: {cluster.cgroup_problem}")
    cluster.reset_peaks()

    run = _trigger(cluster, COMPARE_DAG, {"table": orders_3m, "bucket": cluster_bucket, "prefix": "cmp"})

    tis = {ti["task_id"]: ti for ti in _task_instances(cluster, COMPARE_DAG, run["dag_run_id"])}
    figures = _figures(cluster, COMPARE_DAG, run["dag_run_id"], list(tis.values()))
    figures["oom_kills_during_run"] = sum(w.oom_kills() for w in cluster.workers)
    _report(record_property, COMPARE_DAG, figures)
    ours, theirs = tis["s3stream_export"], tis["sql_to_s3"]
    assert (ours["state"], ours["try_number"]) == ("success", 1), cluster.stack.task_log(
        COMPARE_DAG, run["dag_run_id"], "s3stream_export"
    )
    result = cluster.stack.api(
        "GET", f"/dags/{COMPARE_DAG}/dagRuns/{run['dag_run_id']}/taskInstances/s3stream_export/xcomEntries/return_value"
    )["value"]
    manifest = s3_client.get_object(Bucket=cluster_bucket, Key=result["manifest_key"])["Body"].read()
    assert result["rows"] == json.loads(manifest)["rows"] == ROWS
    assert run["state"] == "failed"
    assert (theirs["state"], theirs["try_number"]) == ("failed", 1)
    assert figures["oom_kills_during_run"] >= 1, "SqlToS3Operator failed, but not by the OOM killer"
    log = cluster.stack.task_log(COMPARE_DAG, run["dag_run_id"], "sql_to_s3")
    assert "Likely out of memory" in log or "SIGKILL" in log, log[-3000:]
    assert "Contents" not in s3_client.list_objects_v2(Bucket=cluster_bucket, Prefix="cmp/sql_to_s3/")
