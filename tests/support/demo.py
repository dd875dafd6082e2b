"""``make demo``: export a sample table through a real Airflow DAG run, end to end.

1. start (or find) Postgres and S3 with :mod:`tests.support.devservices` (embedded defaults);
2. load ``public.demo_orders`` (``--rows`` rows over 2023-12-31 .. 2024-01-02) and create the bucket;
   a manual run for 2024-01-01 covers one of those days, whichever way Airflow infers its interval;
3. in a throwaway ``AIRFLOW_HOME`` with SQLite: ``airflow db migrate``, then
   ``airflow dags test s3stream_postgres_to_s3_daily 2024-01-01`` (the real CLI, in a subprocess,
   with connections from ``AIRFLOW_CONN_*`` and the dags folder pointing at ``dags_examples/``);
4. print where the files landed, with rows, bytes, MB/s and the run's peak memory.

    python -m tests.support.demo [--rows 1000000] [--keep-running]
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from tests.support import devservices

__all__ = ["main"]

DAG_ID = "s3stream_postgres_to_s3_daily"
LOGICAL_DATE = "2024-01-01"
BUCKET = "s3stream-demo"
TABLE = "public.demo_orders"
LOAD_SQL = f"""
DROP TABLE IF EXISTS {TABLE};
CREATE TABLE {TABLE} AS
SELECT g::int8 AS id,
       md5(g::text) AS customer,
       (g % 100000 * 1.37)::numeric(12, 2) AS amount,
       (ARRAY['new', 'paid', 'shipped', 'returned'])[1 + g % 4] AS status,
       timestamptz '2023-12-31 00:00:00+00' + (g - 1) * (interval '3 days' / %(rows)s) AS created_at,
       'note, "quoted" ' || md5((g * 7)::text) AS note
FROM generate_series(1, %(rows)s) g;
CREATE INDEX ON {TABLE} (created_at);
ANALYZE {TABLE};
"""
REPO = Path(__file__).resolve().parents[2]  # tests/support/demo.py -> the checkout


def _airflow(args: list[str], env: dict[str, str]) -> tuple[int, float, float, str]:
    """Run ``airflow <args>``; return (exit status, seconds, peak RSS in MiB, output)."""
    started = time.monotonic()
    with tempfile.TemporaryFile("w+") as out:
        proc = subprocess.Popen([sys.executable, "-m", "airflow", *args], stdout=out, stderr=subprocess.STDOUT, env=env)
        _, status, usage = os.wait4(proc.pid, 0)
        out.seek(0)
        return os.waitstatus_to_exitcode(status), time.monotonic() - started, usage.ru_maxrss / 1024, out.read()


def _manifests(client: Any) -> list[tuple[str, dict[str, Any]]]:
    found = []
    for page in client.get_paginator("list_objects_v2").paginate(Bucket=BUCKET, Prefix="exports/"):
        for obj in page.get("Contents", []):
            if obj["Key"].endswith("_manifest.json"):
                body = client.get_object(Bucket=BUCKET, Key=obj["Key"])["Body"].read()
                found.append((obj["Key"], json.loads(body)))
    return sorted(found)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description="Export a sample table to S3 through a real Airflow DAG run.")
    parser.add_argument("--rows", type=int, default=1_500_000, help="rows in the sample table (a third per day)")
    args = parser.parse_args(argv)

    import psycopg

    print("starting services (S3STREAM_POSTGRES_URI / local 5432 / embedded; S3STREAM_S3_ENDPOINT / moto) ...")
    services = devservices.start_all()
    print(f"  postgres: {services.postgres.origin}   s3: {services.s3.origin} at {services.s3.endpoint_url}")
    print(f"loading {args.rows:,} rows into {TABLE} ...")
    with psycopg.connect(services.postgres.uri, autocommit=True) as conn:
        conn.execute(LOAD_SQL.replace("%(rows)s", str(int(args.rows))).encode())
    client = services.s3.client()
    existing = [b["Name"] for b in client.list_buckets().get("Buckets", [])]
    if BUCKET not in existing:
        client.create_bucket(Bucket=BUCKET)

    home = tempfile.mkdtemp(prefix="s3stream-demo-airflow-")
    env = {
        **os.environ,
        **devservices.airflow_connection_env(services),
        "AIRFLOW_HOME": home,
        "AIRFLOW__CORE__DAGS_FOLDER": str(REPO / "dags_examples"),
        "AIRFLOW__CORE__LOAD_EXAMPLES": "False",
        "AIRFLOW__DATABASE__SQL_ALCHEMY_CONN": f"sqlite:///{home}/airflow.db",
        "S3STREAM_BUCKET": BUCKET,
        "S3STREAM_ORDERS_TABLE": TABLE,
        "PYTHONPATH": os.pathsep.join(p for p in (str(REPO), os.environ.get("PYTHONPATH", "")) if p),
    }
    print(f"airflow db migrate (AIRFLOW_HOME={home}) ...")
    status, _, _, output = _airflow(["db", "migrate"], env)
    if status != 0:
        print(output[-4000:])
        return status
    print(f"airflow dags test {DAG_ID} {LOGICAL_DATE} ...")
    status, seconds, peak_mib, output = _airflow(["dags", "test", DAG_ID, LOGICAL_DATE], env)
    log_path = Path(home) / "demo-dags-test.log"
    log_path.write_text(output)
    if status != 0:
        print(output[-6000:])
        print(f"the DAG run failed (exit {status}); full log: {log_path}")
        return status

    manifests = _manifests(client)
    if not manifests:
        print(output[-6000:])
        print(f"no manifest under s3://{BUCKET}/exports/; full log: {log_path}")
        return 1
    print()
    print(f"{'object':<58} {'rows':>10} {'bytes':>13}")
    for key, manifest in manifests:
        for f in manifest["files"]:
            print(f"s3://{BUCKET}/{f['key']:<53} {f['rows']:>10,} {f['bytes']:>13,}")
        mb = manifest["bytes"] / 1e6
        rate = mb / manifest["seconds"] if manifest.get("seconds") else 0.0
        print(
            f"  {manifest['format']}/{manifest['compression']}: {manifest['rows']:,} rows, {mb:,.1f} MB in "
            f"{manifest['seconds']:.1f} s = {rate:.1f} MB/s stored, "
            f"{manifest['rows'] / max(manifest['seconds'], 1e-9):,.0f} rows/s; manifest s3://{BUCKET}/{key}"
        )
    print()
    print(f"airflow dags test took {seconds:.1f} s; peak memory of that process: {peak_mib:.0f} MiB")
    print(f"S3 endpoint: {services.s3.endpoint_url} (stops with this process); task log: {log_path}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
