"""Screenshots of the provider view (``docs/ui.md``): every page, standalone and inside the UI.

Starts what it needs, as the playground does: Postgres and S3 (:mod:`tests.support.devservices`)
and a real Airflow (:class:`~tests.support.airflow_stack.AirflowStack`: api-server, scheduler,
dag-processor; every user an admin) over one tour DAG that runs each of our operators on small
data: a tampered bag verified, an export with its manifest, the export loaded back, a file
uploaded in parts. Then Debian's headless Chromium (:func:`tests.tools.screenshots.chromium`)
saves ``ui-*.png`` into the output directory. Everything it started is stopped at the end.

    python -m tests.tools.ui_screenshots [out dir, default docs/images]     (make ui-screenshots)
"""

from __future__ import annotations

import os
import shutil
import sys
import tempfile
import urllib.parse
import uuid
from pathlib import Path

import psycopg

from tests.support import devservices
from tests.support.airflow_stack import AirflowStack
from tests.support.bags import make_bag, zip_dir
from tests.tools.screenshots import Browser, chromium

__all__ = ["TOUR_DAG", "main"]

TOUR_DAG = "s3stream_ui_tour"
BUCKET = "s3stream-ui-tour"
REPO = Path(__file__).resolve().parents[2]

DAG_SOURCE = '''
"""A tour of the provider view: each operator once, on small data."""
import os

from airflow.sdk import DAG

from airflow_s3stream.operators import (
    PostgresToS3StreamOperator,
    S3MultipartUploadOperator,
    S3ToPostgresStreamOperator,
    S3ZipVerifyOperator,
)

BUCKET = os.environ["S3STREAM_UI_BUCKET"]
TABLE = os.environ["S3STREAM_UI_TABLE"]

with DAG("s3stream_ui_tour", schedule=None, catchup=False, tags=["s3stream"]):
    S3ZipVerifyOperator(task_id="verify_bag", s3_bucket=BUCKET, s3_key="bags/acc17.zip", mode="bagit")
    export = PostgresToS3StreamOperator(
        task_id="export_orders",
        sql="""SELECT g AS id, 'customer-' || g % 97 AS customer, (g % 1000 * 1.5)::numeric(12, 2) AS amount,
                      timestamptz '2024-01-01 00:00:00+00' + g * interval '2 minutes' AS created_at
               FROM generate_series(1, 6000) AS g""",
        s3_bucket=BUCKET,
        s3_key="exports/orders",
        compression="gzip",
        max_rows_per_file=2000,
        write_manifest=True,
    )
    load = S3ToPostgresStreamOperator(
        task_id="load_orders", table=TABLE, s3_bucket=BUCKET, s3_key="exports/orders/_manifest.json", mode="replace"
    )
    export >> load
    S3MultipartUploadOperator(
        task_id="upload_scan", source=os.environ["S3STREAM_UI_UPLOAD"], s3_bucket=BUCKET, s3_key="uploads/scan.tif"
    )
'''


def _say(message: str) -> None:
    print(message, flush=True)


def _prepare(services: devservices.DevServices, work: Path) -> dict[str, str]:
    """The tour's data: a tampered bag in S3, an empty target table, a local file to upload."""
    client = services.s3.client()
    if BUCKET not in {b["Name"] for b in client.list_buckets().get("Buckets", [])}:
        client.create_bucket(Bucket=BUCKET)
    bag = make_bag(work, {"report.csv": b"a,b\n1,2\n", "img/scan.tif": b"II*\x00" + os.urandom(200_000)}, name="acc17")
    scan = bag / "data" / "img" / "scan.tif"
    scan.write_bytes(scan.read_bytes()[:-1] + b"\x00")  # one byte changed after the manifest was written
    client.put_object(Bucket=BUCKET, Key="bags/acc17.zip", Body=zip_dir(bag))
    upload = work / "scan.tif"
    upload.write_bytes(os.urandom(12 * 1024 * 1024))
    schema = f"ui_tour_{uuid.uuid4().hex[:8]}"
    with psycopg.connect(services.postgres.uri, autocommit=True) as conn:
        conn.execute(f"CREATE SCHEMA {schema}")
        conn.execute(
            f"CREATE TABLE {schema}.orders (id int8, customer text, amount numeric(12, 2), created_at timestamptz)"
        )
    return {"S3STREAM_UI_BUCKET": BUCKET, "S3STREAM_UI_TABLE": f"{schema}.orders", "S3STREAM_UI_UPLOAD": str(upload)}


def _page(stack: AirflowStack, route: str, **params: str | int) -> str:
    return f"{stack.base_url}/s3stream/{route}?{urllib.parse.urlencode(params)}"


def _shoot(browser: Browser, url: str, path: Path, settle_s: float = 2.0) -> None:
    browser.open(url, settle_s=settle_s)
    browser.screenshot(path)
    _say(f"  {path}")


def take(stack: AirflowStack, run_id: str, out: Path) -> None:
    """Save one PNG per page of the tour's run into ``out``."""
    out.mkdir(parents=True, exist_ok=True)
    ti = {"dag_id": TOUR_DAG, "run_id": run_id}
    manifest_files = stack.api(
        "GET", f"/dags/{TOUR_DAG}/dagRuns/{run_id}/taskInstances/export_orders/xcomEntries/return_value"
    )
    first_key = manifest_files["value"]["files"][0]["key"]
    with chromium() as browser:
        browser.call("Network.enable")
        browser.call("Network.setCookie", name="_token", value=stack.token(), url=stack.base_url)
        _shoot(browser, _page(stack, "ti", **ti, task_id="verify_bag"), out / "ui-verification.png")
        _shoot(browser, _page(stack, "ti", **ti, task_id="export_orders"), out / "ui-export.png")
        _shoot(browser, _page(stack, "preview", **ti, task_id="export_orders", key=first_key), out / "ui-preview.png")
        _shoot(browser, _page(stack, "ti", **ti, task_id="load_orders"), out / "ui-load.png")
        _shoot(browser, _page(stack, "ti", **ti, task_id="upload_scan"), out / "ui-upload.png")
        _shoot(browser, _page(stack, "runs"), out / "ui-runs.png")
        # The same pages where a user meets them: a tab of the task instance, an entry of the nav.
        quoted = urllib.parse.quote(run_id, safe="")
        tab = f"{stack.base_url}/dags/{TOUR_DAG}/runs/{quoted}/tasks/verify_bag/plugin/s3stream-result"
        _shoot(browser, tab, out / "ui-task-tab.png", settle_s=8)
        _shoot(browser, f"{stack.base_url}/plugin/s3stream-runs", out / "ui-nav-runs.png", settle_s=8)


def main(argv: list[str]) -> int:
    out = Path(argv[1]) if len(argv) > 1 else REPO / "docs" / "images"
    if shutil.which("chromium") is None and shutil.which("chromium-browser") is None:
        print("chromium not found: apt-get install chromium", file=sys.stderr)
        return 2
    work = Path(tempfile.mkdtemp(prefix="s3stream-ui-screenshots-"))
    stack: AirflowStack | None = None
    env: dict[str, str] = {}
    services = devservices.start_all()
    try:
        _say("[1/3] Postgres and S3 up; preparing the tour's data")
        env = {**devservices.airflow_connection_env(services), **_prepare(services, work)}
        dags = work / "dags"
        dags.mkdir()
        (dags / "ui_tour.py").write_text(DAG_SOURCE)
        stack = AirflowStack(work / "home", dags, env)
        _say(f"[2/3] starting Airflow (AIRFLOW_HOME={work / 'home'}) and running {TOUR_DAG}")
        stack.start()
        stack.wait_for_dag(TOUR_DAG)
        stack.unpause(TOUR_DAG)
        run = stack.api("POST", f"/dags/{TOUR_DAG}/dagRuns", json={"logical_date": None})
        stack.wait_for_run(TOUR_DAG, run["dag_run_id"])
        _say(f"[3/3] screenshots into {out}")
        take(stack, run["dag_run_id"], out)
    finally:
        if stack is not None:
            stack.stop()
        table = env.get("S3STREAM_UI_TABLE")
        if table:  # the tour's schema, on a Postgres that may outlive this run
            with psycopg.connect(services.postgres.uri, autocommit=True) as conn:
                conn.execute(f"DROP SCHEMA IF EXISTS {table.split('.')[0]} CASCADE")
        services.stop()
        shutil.rmtree(work, ignore_errors=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main(sys.argv))
