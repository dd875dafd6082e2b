"""The partitioned export on the cluster of ``make cluster``, with 1 and then 2 capped Celery workers.

    .venv/bin/python -m benchmarks.bench_cluster [--rows 3000000] [--partitions 4] [--workers 1,2]

Loads ``--rows`` rows into one table (``generate_series``, keyed on ``id``), then for each worker
count starts a fresh cluster (:func:`tests.tools.cluster.running_cluster`: CeleryExecutor,
concurrency 2 per worker, each worker in a memory cgroup capped by ``S3STREAM_WORKER_MEMORY``,
default 768 MiB) and triggers ``s3stream_export_partitioned`` over the table once, through the
REST API. Reported per run:

* wall time from the trigger to the run's end, and the export tasks' span (first start to last end);
* every export task's try number, worker and peak RSS (the task process's ``VmHWM``, sampled;
  it counts the pages shared with the worker it was forked from), and the worker cgroup's
  highest charge seen while the task ran;
* each worker's peak from its cgroup's own counter, against the cap, and OOM kills.

One table, one run per worker count: the machine is noisy, and with 2 cores a second worker
cannot double anything. The figures are printed and written as JSON to ``--json`` if given.
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import sys
import time
import uuid
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))  # `python benchmarks/bench_cluster.py`, as `make bench` runs it

MiB = 1024 * 1024
DAG_ID = "s3stream_export_partitioned"
RUN_TIMEOUT_S = 3600.0


def _load_table(pg_uri: str, rows: int) -> str:
    import psycopg

    schema = f"bench_cluster_{uuid.uuid4().hex[:8]}"
    with psycopg.connect(pg_uri, autocommit=True) as conn:
        conn.execute(f"CREATE SCHEMA {schema}")
        conn.execute(
            f"""CREATE UNLOGGED TABLE {schema}.orders AS
            SELECT g::int8 AS id, md5(g::text) AS customer, (g % 100000 * 1.37)::numeric(12, 2) AS amount,
                   (ARRAY['new', 'paid', 'shipped', 'returned'])[1 + g % 4] AS status,
                   timestamptz '2024-01-01 00:00:00+00' + g * interval '1 second' AS created_at,
                   'note ' || g AS note
            FROM generate_series(1, {int(rows)}) AS g"""
        )
        conn.execute(f"ALTER TABLE {schema}.orders ADD PRIMARY KEY (id)")
        conn.execute(f"ANALYZE {schema}.orders")
    return f"{schema}.orders"


def _seconds(start: str | None, end: str | None) -> float | None:
    if not start or not end:
        return None
    return (dt.datetime.fromisoformat(end) - dt.datetime.fromisoformat(start)).total_seconds()


def run_once(services: Any, table: str, bucket: str, workers: int, partitions: int) -> dict[str, Any]:
    """One cluster with ``workers`` workers, one export run; its figures."""
    from tests.tools.cluster import running_cluster

    with running_cluster(services, worker_count=workers, extra_env={"S3STREAM_BUCKET": bucket}) as cluster:
        stack = cluster.stack
        stack.wait_for_dag(DAG_ID)
        stack.unpause(DAG_ID)
        cluster.reset_peaks()
        conf = {"table": table, "key_column": "id", "partitions": partitions, "bucket": bucket, "prefix": "bench"}
        started = time.monotonic()
        run = stack.api("POST", f"/dags/{DAG_ID}/dagRuns", json={"logical_date": None, "conf": conf})
        run = stack.wait_for_run(DAG_ID, run["dag_run_id"], timeout_s=RUN_TIMEOUT_S)
        wall = time.monotonic() - started
        tis = stack.api("GET", f"/dags/{DAG_ID}/dagRuns/{run['dag_run_id']}/taskInstances", params={"limit": 100})
        peaks = cluster.task_peaks()
        exports = [ti for ti in tis["task_instances"] if ti["task_id"] == "export_range"]
        starts = [ti["start_date"] for ti in exports if ti["start_date"]]
        ends = [ti["end_date"] for ti in exports if ti["end_date"]]
        return {
            "workers": workers,
            "state": run["state"],
            "wall_s": round(wall, 1),
            "export_span_s": round(_seconds(min(starts), max(ends)) or 0, 1) if starts and ends else None,
            "tasks": [
                {
                    "map_index": ti["map_index"],
                    "state": ti["state"],
                    "try_number": ti["try_number"],
                    "hostname": ti["hostname"],
                    "seconds": round(ti["duration"] or 0, 1),
                    "peak_rss_mib": round(peaks[ti["pid"]].peak_bytes / MiB) if ti["pid"] in peaks else None,
                    "worker_peak_while_running_mib": (
                        round(peaks[ti["pid"]].worker_peak_bytes / MiB) if ti["pid"] in peaks else None
                    ),
                }
                for ti in sorted(exports, key=lambda ti: ti["map_index"])
            ],
            "worker_peaks": {
                w.hostname: {
                    "peak_mib": round(w.peak_bytes() / MiB),
                    "cap": w.cap_text(),
                    "oom_kills": w.oom_kills(),
                }
                for w in cluster.workers
            },
        }


def _print(result: dict[str, Any], rows: int) -> None:
    rate = rows / result["wall_s"] if result["wall_s"] else 0
    print(
        f"\n{result['workers']} worker(s): run {result['state']} in {result['wall_s']:.1f} s wall "
        f"({rate:,.0f} rows/s), export tasks spanned {result['export_span_s']} s"
    )
    print(f"  {'task':<16} {'state':<14} {'try':>3} {'seconds':>8} {'peak RSS MiB':>13} {'worker MiB':>11}  worker")
    for task in result["tasks"]:
        peak = "-" if task["peak_rss_mib"] is None else str(task["peak_rss_mib"])
        charged = "-" if task["worker_peak_while_running_mib"] is None else str(task["worker_peak_while_running_mib"])
        print(
            f"  export_range[{task['map_index']}] {task['state']:<14} {task['try_number']:>3} "
            f"{task['seconds']:>8.1f} {peak:>13} {charged:>11}  {task['hostname']}"
        )
    for hostname, figures in result["worker_peaks"].items():
        print(f"  {hostname}: peak {figures['peak_mib']} MiB, cap {figures['cap']}, OOM kills {figures['oom_kills']}")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--rows", type=int, default=3_000_000)
    parser.add_argument("--partitions", type=int, default=4)
    parser.add_argument("--workers", default="1,2", help="comma-separated worker counts, one cluster each")
    parser.add_argument("--json", type=Path, help="write the figures here too")
    args = parser.parse_args(argv)

    from tests.support import devservices

    services = devservices.DevServices(postgres=devservices.start_postgres(), s3=devservices.start_s3())
    try:
        bucket = f"bench-cluster-{uuid.uuid4().hex[:8]}"
        services.s3.client().create_bucket(Bucket=bucket)
        print(f"loading {args.rows:,} rows ...", flush=True)
        table = _load_table(services.postgres.uri, args.rows)
        results = []
        for workers in (int(n) for n in args.workers.split(",")):
            print(f"starting a cluster with {workers} worker(s) and exporting {table} ...", flush=True)
            results.append(run_once(services, table, bucket, workers, args.partitions))
            _print(results[-1], args.rows)
        if len(results) == 2 and results[0]["wall_s"] and results[1]["wall_s"]:
            speedup = results[0]["wall_s"] / results[1]["wall_s"]
            print(f"\n{results[1]['workers']} workers vs {results[0]['workers']}: {speedup:.2f}x the wall-time speed")
        if args.json:
            args.json.write_text(json.dumps({"rows": args.rows, "partitions": args.partitions, "runs": results}))
        import psycopg

        with psycopg.connect(services.postgres.uri, autocommit=True) as conn:
            conn.execute(f"DROP SCHEMA {table.split('.')[0]} CASCADE")
    finally:
        services.stop()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
