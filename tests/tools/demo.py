"""``make demo``: every operator of the package, through real Airflow DAG runs, end to end.

1. start (or find) Postgres and S3 with :mod:`tests.support.devservices` (embedded defaults);
2. create this checkout's database ``s3stream_demo_<hash>`` on that server (:func:`demo_database_name`:
   the hash is of the checkout's absolute path, so two checkouts sharing one server never touch each
   other's data; nothing else on the server is read or changed), load ``public.demo_orders`` there
   (``--rows`` rows over 2023-12-31 .. 2024-01-02), create the bucket ``s3stream`` and a few sample files;
3. in a throwaway ``AIRFLOW_HOME`` with SQLite: ``airflow db migrate``, then the real CLI:
   ``airflow dags test s3stream_postgres_to_s3_daily 2024-01-01`` (the export example DAG), then
   ``airflow dags test s3stream_demo_tour`` (:mod:`tests.tools.demo_dags.demo_tour`: load the export
   back, package a BagIt bag, make a tampered copy, upload a file in parts), then the example verify
   DAG ``s3stream_verify_archive`` on the bag and on the tampered copy;
4. print one block per operator, then what to do next.

    python -m tests.tools.demo [--rows 1500000]
"""

from __future__ import annotations

import argparse
import contextlib
import hashlib
import json
import os
import shutil
import sqlite3
import subprocess
import sys
import tempfile
import threading
import time
import urllib.parse
import zlib
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from airflow_s3stream.progress import plural
from tests.support import devservices

__all__ = [
    "BUCKET",
    "DEMO_DATABASE",
    "DatabaseBusyError",
    "SAMPLE_PREFIX",
    "create_demo_database",
    "database_lock",
    "demo_database_name",
    "demo_database_uri",
    "load_demo_data",
    "main",
]

DAG_ID = "s3stream_postgres_to_s3_daily"
TOUR_DAG_ID = "s3stream_demo_tour"
VERIFY_DAG_ID = "s3stream_verify_archive"
BAG_KEY = "archives/sample-bag.zip"  # written by the tour's package task; the verify DAG's default key
TAMPERED_KEY = "archives/sample-bag-tampered.zip"  # written by the tour's tamper task
LOGICAL_DATE = "2024-01-01"
BUCKET = "s3stream"  # the example DAGs' default bucket, so their trigger forms work as they are
TABLE = "public.demo_orders"
LOAD_TABLE = "public.demo_orders_loaded"
UPLOAD_BYTES = 24 * 1024 * 1024  # three 8 MiB parts
SAMPLE_PREFIX = "samples/sample-bag/"
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
DROP TABLE IF EXISTS {LOAD_TABLE};
CREATE TABLE {LOAD_TABLE} (LIKE {TABLE});
"""
REPO = Path(__file__).resolve().parents[2]  # tests/tools/demo.py -> the checkout


def demo_database_name(checkout: Path = REPO, tool: str = "demo") -> str:
    """The database ``tool`` (``demo`` or ``playground``) of ``checkout`` owns on a shared server:
    ``s3stream_<tool>_<first 10 hex digits of the SHA-256 of the checkout's absolute path>``.

    Two checkouts (two clones, two worktrees) get two databases, so their demos, playgrounds and
    tests can share one Postgres server at the same time; the same checkout reuses its own.
    """
    digest = hashlib.sha256(str(checkout.resolve()).encode()).hexdigest()[:10]
    return f"s3stream_{tool}_{digest}"


DEMO_DATABASE = demo_database_name()  # this checkout's; the only database the demo writes to
INTERVAL_NOTE = (
    "Why 2023-12-31: the daily DAG exports whole UTC days [start, end). A run triggered (or tested) "
    "for 2024-01-01 happens at midnight of that day, when only 2023-12-31 is complete, so Airflow "
    "gives it [2023-12-31, 2024-01-01); the key prefix is the interval's start. The scheduled run "
    "for a day D runs once D is over and exports [D, D+1)."
)


def say(line: str = "") -> None:
    print(line, flush=True)


class Ticker:
    """Prints elapsed seconds while a long step runs (in place on a terminal, every 10 s otherwise)."""

    def __init__(self, what: str) -> None:
        self.what = what
        self.started = time.monotonic()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._tty = sys.stdout.isatty()

    def __enter__(self) -> Ticker:
        say(f"  {self.what} ...")
        self._thread.start()
        return self

    def _run(self) -> None:
        interval = 1.0 if self._tty else 10.0
        while not self._stop.wait(interval):
            elapsed = time.monotonic() - self.started
            if self._tty:
                print(f"\r    {elapsed:4.0f} s", end="", flush=True)
            else:
                say(f"    ... {elapsed:.0f} s")

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join()
        if self._tty:
            print("\r", end="")
        say(f"    done in {time.monotonic() - self.started:.0f} s")


def _airflow(args: list[str], env: dict[str, str], what: str) -> tuple[int, float, float, str]:
    """Run ``airflow <args>`` with a ticker; return (exit status, seconds, peak RSS in MiB, output)."""
    started = time.monotonic()
    with tempfile.TemporaryFile("w+") as out, Ticker(what):
        proc = subprocess.Popen([sys.executable, "-m", "airflow", *args], stdout=out, stderr=subprocess.STDOUT, env=env)
        _, status, usage = os.wait4(proc.pid, 0)
        out.seek(0)
        return os.waitstatus_to_exitcode(status), time.monotonic() - started, usage.ru_maxrss / 1024, out.read()


def demo_database_uri(server_uri: str, database: str = DEMO_DATABASE) -> str:
    """``server_uri`` with its database replaced by ``database`` (this checkout's demo database)."""
    parts = urllib.parse.urlsplit(server_uri)
    return urllib.parse.urlunsplit(parts._replace(path="/" + database))


def create_demo_database(server_uri: str, database: str = DEMO_DATABASE) -> str:
    """Create ``database`` on the server unless it exists; return its URI. Nothing else is touched."""
    import psycopg

    with psycopg.connect(server_uri, autocommit=True) as conn:
        exists = conn.execute("SELECT 1 FROM pg_database WHERE datname = %s", (database,)).fetchone()
        if not exists:
            # A run of the same checkout may create it a moment before us (then its lock stops us).
            with contextlib.suppress(psycopg.errors.DuplicateDatabase, psycopg.errors.UniqueViolation):
                conn.execute(f'CREATE DATABASE "{database}"')
    return demo_database_uri(server_uri, database)


DATABASE_LOCK_KEY = 0x5333_5354  # "S3ST": the advisory lock a run holds on its database while it runs


class DatabaseBusyError(RuntimeError):
    """Another run of the same checkout holds the database's lock; the message says which."""


@contextlib.contextmanager
def database_lock(database_uri: str, who: str) -> Iterator[None]:
    """Hold the advisory lock of the demo database at ``database_uri`` for the block.

    Two runs of the *same* checkout (say ``make demo`` twice at once) would otherwise reload each
    other's tables. The second one fails at once with :class:`DatabaseBusyError`, naming the
    holder: its ``who`` (tool, process id, host) and since when. Released when the block ends,
    and by the server if the process dies.
    """
    import psycopg

    with psycopg.connect(database_uri, autocommit=True, application_name=who[:63]) as conn:
        row = conn.execute("SELECT pg_try_advisory_lock(%s)", (DATABASE_LOCK_KEY,)).fetchone()
        if not (row and row[0]):
            holder = conn.execute(
                "SELECT a.application_name, a.backend_start FROM pg_locks l JOIN pg_stat_activity a USING (pid) "
                "WHERE l.locktype = 'advisory' AND l.granted AND l.objid = %s AND l.database = "
                "(SELECT oid FROM pg_database WHERE datname = current_database())",
                (DATABASE_LOCK_KEY,),
            ).fetchone()
            held_by = f"{holder[0]} since {holder[1]:%H:%M:%S %Z}" if holder else "another run (gone a moment ago?)"
            raise DatabaseBusyError(
                f"database {conn.info.dbname} is in use by {held_by}: wait for it to finish "
                "(or stop it), then run again"
            )
        try:
            yield
        finally:
            conn.execute("SELECT pg_advisory_unlock(%s)", (DATABASE_LOCK_KEY,))


def _sample_files() -> dict[str, bytes]:
    """The package example DAG's sample payload (one source of truth for it)."""
    import importlib.util

    spec = importlib.util.spec_from_file_location(
        "s3stream_package_bag_example", REPO / "dags_examples" / "package_bag.py"
    )
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return dict(module.SAMPLE_FILES)


def load_demo_data(services: devservices.DevServices, rows: int, database: str = DEMO_DATABASE) -> tuple[str, Any]:
    """Create ``database``, the orders table, the bucket and the sample files; return (db URI, S3 client)."""
    import psycopg

    demo_uri = create_demo_database(services.postgres.uri, database)
    with psycopg.connect(demo_uri, autocommit=True) as conn:
        conn.execute(LOAD_SQL.replace("%(rows)s", str(int(rows))).encode())
    client = services.s3.client()
    if BUCKET not in [b["Name"] for b in client.list_buckets().get("Buckets", [])]:
        client.create_bucket(Bucket=BUCKET)
    for name, body in _sample_files().items():
        client.put_object(Bucket=BUCKET, Key=SAMPLE_PREFIX + name, Body=body)
    return demo_uri, client


def _manifests(client: Any) -> list[tuple[str, dict[str, Any]]]:
    found = []
    for page in client.get_paginator("list_objects_v2").paginate(Bucket=BUCKET, Prefix="exports/"):
        for obj in page.get("Contents", []):
            if obj["Key"].endswith("_manifest.json"):
                body = client.get_object(Bucket=BUCKET, Key=obj["Key"])["Body"].read()
                found.append((obj["Key"], json.loads(body)))
    return sorted(found)


def _csv_bytes(client: Any, manifest: dict[str, Any]) -> int:
    """Uncompressed size of a gzip CSV export: what the same rows weigh as plain CSV."""
    total = 0
    for f in manifest["files"]:
        inflate = zlib.decompressobj(wbits=47)  # gzip header
        for chunk in client.get_object(Bucket=BUCKET, Key=f["key"])["Body"].iter_chunks(1 << 20):
            total += len(inflate.decompress(chunk))
        total += len(inflate.flush())
    return total


def _xcoms(home: str, dag_id: str) -> dict[str, Any]:
    """The ``return_value`` XCom of every task of the (only) run of ``dag_id``, by task id."""
    with sqlite3.connect(f"{home}/airflow.db") as db:
        rows = db.execute(
            "SELECT task_id, value FROM xcom WHERE dag_id = ? AND key = 'return_value'", (dag_id,)
        ).fetchall()
    values = {}
    for task_id, value in rows:
        decoded = json.loads(value) if isinstance(value, (str, bytes)) else value
        if isinstance(decoded, str) and decoded.startswith("{"):  # stored as a JSON string of JSON
            decoded = json.loads(decoded)
        values[task_id] = decoded
    return values


def _print_export(client: Any, manifests: list[tuple[str, dict[str, Any]]], seconds: float) -> None:
    say()
    say("[PostgresToS3StreamOperator] export (dags_examples/postgres_to_s3_daily.py)")
    for key, manifest in manifests:
        files = manifest["files"]
        mb = manifest["bytes"] / 1e6
        secs = max(manifest["seconds"], 1e-9)
        line = (
            f"  {manifest['format']}/{manifest['compression']}: {plural(manifest['rows'], 'row')} in "
            f"{plural(len(files), 'file')}, "
            f"{mb:,.1f} MB stored in {manifest['seconds']:.1f} s ({mb / secs:.1f} MB/s stored"
        )
        if manifest["format"] == "csv" and manifest.get("compression") == "gzip":
            csv_mb = _csv_bytes(client, manifest) / 1e6
            line += f", {csv_mb / secs:.1f} MB/s as plain CSV: {csv_mb:,.1f} MB uncompressed"
        say(line + f"); {manifest['rows'] / secs:,.0f} rows/s")
        say(f"    s3://{BUCKET}/{key.rsplit('/', 1)[0]}/ ({', '.join(f['key'].rsplit('/', 1)[1] for f in files)})")
    say(f"  {INTERVAL_NOTE}")
    say(f"  the whole `airflow dags test` took {seconds:.0f} s (most of it starting Airflow).")


def _print_tour(xcoms: dict[str, Any], client: Any) -> None:
    load = xcoms.get("load_back") or {}
    say()
    say(
        f"[S3ToPostgresStreamOperator] loaded the CSV export back: {load.get('rows', 0):,} rows into "
        f"{DEMO_DATABASE}.{LOAD_TABLE} (mode {load.get('mode')}) in {load.get('seconds', 0):.1f} s; "
        "the row count was checked against the manifest"
    )
    bag = xcoms.get("package") or {}
    say(
        f"[S3ToBagItZipOperator] packaged s3://{BUCKET}/{SAMPLE_PREFIX} into a BagIt bag: "
        f"s3://{BUCKET}/{bag.get('key', '?')} ({bag.get('zip_bytes', 0):,} bytes, "
        f"{bag.get('files', '?')} payload files, Payload-Oxum {bag.get('oxum')})"
    )
    upload = xcoms.get("upload") or {}
    say(
        f"[S3MultipartUploadOperator] uploaded a {upload.get('size', 0) / 1e6:.0f} MB generated file to "
        f"s3://{BUCKET}/{upload.get('key')} in {upload.get('parts')} parts with {upload.get('checksum_algorithm')} "
        f"checksums ({upload.get('checksum_type')}), verified after completion"
    )


def _report(client: Any, key: str) -> dict[str, Any]:
    """The verify DAG's report beside ``key`` ({} when it wrote none)."""
    try:
        body = client.get_object(Bucket=BUCKET, Key=key + ".verification.json")["Body"].read()
    except client.exceptions.NoSuchKey:
        return {}
    return dict(json.loads(body))


def _print_verify(report: dict[str, Any], bad: dict[str, Any]) -> None:
    say(
        f"[S3ZipVerifyOperator] s3://{BUCKET}/{BAG_KEY}: "
        f"{'VALID' if report.get('valid') else 'INVALID'} as {report.get('mode')}, "
        f"{report.get('members_checked')} members checked (CRC-32, sha256 manifest, Payload-Oxum); "
        f"report beside it as .verification.json"
    )
    first = (bad.get("errors") or [{}])[0]
    reason = f"{first.get('member')}: {first.get('reason')}" if first.get("member") else first.get("reason")
    say(
        f"  and s3://{BUCKET}/{TAMPERED_KEY}, one byte changed: {'VALID' if bad.get('valid') else 'INVALID'}, "
        f"{plural(bad.get('error_count', 0), 'error')}, first: {reason} (the verify DAG's run fails, as it should)"
    )


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        description="Run every operator of airflow-s3stream through real Airflow DAG runs."
    )
    parser.add_argument("--rows", type=int, default=1_500_000, help="rows in the sample table (a third per day)")
    parser.add_argument(
        "--no-verify",
        action="store_true",
        help="skip step 6, the verify DAG runs (they read only S3): a shorter run of the Postgres steps",
    )
    args = parser.parse_args(argv)

    say("[1/6] starting Postgres and S3 (S3STREAM_POSTGRES_URI / local 5432 / embedded; S3STREAM_S3_ENDPOINT / moto)")
    services = devservices.start_all()
    say(
        f"  postgres ({services.postgres.origin}); the demo writes only to this checkout's database {DEMO_DATABASE} "
        f"(named from {REPO})"
    )
    say(f"  s3 ({services.s3.origin}) at {services.s3.endpoint_url}, bucket {BUCKET}")
    demo_uri = create_demo_database(services.postgres.uri)
    try:
        with database_lock(demo_uri, f"make demo pid {os.getpid()} on {os.uname().nodename}"):
            return _run(args, services)
    except DatabaseBusyError as exc:
        say(f"cannot run now: {exc}")
        return 3


def _run(args: argparse.Namespace, services: devservices.DevServices) -> int:
    """Steps 2 to 6 (with this checkout's database locked). The temporary ``AIRFLOW_HOME`` is removed
    after a good run and kept, with its path printed, after a failed one."""
    say(f"[2/6] loading {args.rows:,} rows into {DEMO_DATABASE}.{TABLE} and sample files into S3")
    demo_uri, client = load_demo_data(services, args.rows)
    home = tempfile.mkdtemp(prefix="s3stream-demo-airflow-")
    status = 1
    try:
        status = _run_dags(args, services, demo_uri, client, home)
    finally:
        if status == 0:
            shutil.rmtree(home, ignore_errors=True)
            say(f"  (the demo's temporary AIRFLOW_HOME {home} was removed; a failed run keeps it for its logs)")
        else:
            say(f"the demo's temporary AIRFLOW_HOME with Airflow's logs is kept: {home} (rm -rf it when done)")
    return status


def _run_dags(
    args: argparse.Namespace, services: devservices.DevServices, demo_uri: str, client: Any, home: str
) -> int:
    upload_file = Path(home) / "demo-upload.bin"
    with upload_file.open("wb") as f:
        for i in range(UPLOAD_BYTES // (1 << 20)):
            f.write(os.urandom(1 << 16) * 16 if i % 2 else bytes([i]) * (1 << 20))
    demo_services = devservices.DevServices(
        postgres=devservices.PostgresService(uri=demo_uri, origin=services.postgres.origin), s3=services.s3
    )
    env = {
        **os.environ,
        **devservices.airflow_connection_env(demo_services),
        "AIRFLOW_HOME": home,
        "AIRFLOW__CORE__DAGS_FOLDER": str(REPO / "dags_examples"),
        "AIRFLOW__CORE__LOAD_EXAMPLES": "False",
        "AIRFLOW__DATABASE__SQL_ALCHEMY_CONN": f"sqlite:///{home}/airflow.db",
        "S3STREAM_BUCKET": BUCKET,
        "S3STREAM_ORDERS_TABLE": TABLE,
        "S3STREAM_DEMO_LOAD_TABLE": LOAD_TABLE,
        "S3STREAM_DEMO_UPLOAD_FILE": str(upload_file),
        "PYTHONPATH": os.pathsep.join(p for p in (str(REPO), os.environ.get("PYTHONPATH", "")) if p),
    }
    env.pop("AIRFLOW__CORE__SQL_ALCHEMY_CONN", None)
    say(f"[3/6] preparing Airflow's metadata DB (AIRFLOW_HOME={home})")
    status, _, idle_mib, output = _airflow(["db", "migrate"], env, "airflow db migrate")
    if status != 0:
        say(output[-4000:])
        return status
    say(f"[4/6] running the export example DAG: airflow dags test {DAG_ID} {LOGICAL_DATE}")
    status, seconds, peak_mib, output = _airflow(["dags", "test", DAG_ID, LOGICAL_DATE], env, "exporting")
    log_path = Path(home) / "demo-dags-test.log"
    log_path.write_text(output)
    if status != 0:
        say(output[-6000:])
        say(f"the DAG run failed (exit {status}); full log: {log_path}")
        return status
    manifests = _manifests(client)
    csv_manifest = next((k for k, m in manifests if m["format"] == "csv"), None)
    if csv_manifest is None:
        say(output[-6000:])
        say(f"no CSV manifest under s3://{BUCKET}/exports/; full log: {log_path}")
        return 1
    _print_export(client, manifests, seconds)

    say()
    say(f"[5/6] running every other operator: airflow dags test {TOUR_DAG_ID} (tests/tools/demo_dags/demo_tour.py)")
    env["S3STREAM_DEMO_MANIFEST"] = csv_manifest
    env["AIRFLOW__CORE__DAGS_FOLDER"] = str(REPO / "tests" / "tools" / "demo_dags")
    status, _, tour_peak_mib, output = _airflow(
        ["dags", "test", TOUR_DAG_ID], env, "load back, package, tamper a copy, upload"
    )
    tour_log = Path(home) / "demo-tour.log"
    tour_log.write_text(output)
    xcoms = _xcoms(home, TOUR_DAG_ID)
    if status != 0 or not {"load_back", "package", "tamper", "upload"} <= set(xcoms):
        say(output[-6000:])
        say(f"the tour DAG failed (exit {status}, results from {sorted(xcoms)}); full log: {tour_log}")
        return status or 1
    _print_tour(xcoms, client)

    say()
    if args.no_verify:
        say("[6/6] skipped (--no-verify): the verify DAG runs")
    else:
        say(f"[6/6] verifying the bag and its tampered copy through the example verify DAG: {VERIFY_DAG_ID}")
        env["AIRFLOW__CORE__DAGS_FOLDER"] = str(REPO / "dags_examples")
        reports = {}
        for key in (BAG_KEY, TAMPERED_KEY):
            conf = {"bucket": BUCKET, "key": key, "mode": "bagit", "write_report": True}
            _airflow(["dags", "test", VERIFY_DAG_ID, "-c", json.dumps(conf)], env, f"verifying s3://{BUCKET}/{key}")
            reports[key] = _report(client, key)
        if not reports[BAG_KEY].get("valid") or reports[TAMPERED_KEY].get("valid", True):
            say(f"unexpected verification results: {reports}")
            return 1
        _print_verify(reports[BAG_KEY], reports[TAMPERED_KEY])

    say()
    say(
        f"Memory: the export's `airflow dags test` process peaked at {peak_mib:.0f} MiB, the tour's at "
        f"{tour_peak_mib:.0f} MiB, against {idle_mib:.0f} MiB for `airflow db migrate` (Airflow loaded, no data "
        "moved). The difference is the libraries a task imports (pyarrow, boto3) and the streaming buffers, which "
        "memory_budget bounds (128 MiB by default) whatever the table's size."
    )
    say(
        f"Left behind: the database {DEMO_DATABASE} on the Postgres server (reused by the next run of this "
        f'checkout; remove it with DROP DATABASE "{DEMO_DATABASE}"). The embedded services, their data and '
        "the temporary AIRFLOW_HOME go with this process."
    )
    say()
    say("Next:")
    say("  make playground   the Airflow UI on the example DAGs with this sample data (no login needed); trigger")
    say("                    s3stream_verify_archive with its defaults to verify archives/sample-bag.zip")
    say("  make test         lint, type checks and the test suite")
    say("  README.md and docs/ for each operator's parameters.")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
