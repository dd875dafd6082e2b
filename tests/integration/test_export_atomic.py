"""A failing re-run of a split export leaves the previous export exactly as it was.

Each test first runs a clean split export, records the prefix (keys, ETags, manifest bytes), then
re-runs the SAME prefix with DIFFERENT data and a fault (a terminated backend, a 500 storm, a lost
answer, a killed worker). The prefix then holds either the old export or the new one, whole, and
no multipart upload is left open. Real Postgres, the real endpoint, faults injected at the proxy.

Within one prefix the parts are replaced in place, so during the commit window (first Complete to
manifest written, ``commit_ms``) a reader holding the OLD manifest can meet replaced parts; the
per-file ``etag`` in the manifest lets it tell. A NEW manifest always lists files that are all there.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import signal
import subprocess
import sys
import threading
import time
from typing import Any

import psycopg
import pytest

from airflow_s3stream.errors import ExportConnectionError, TransientError
from airflow_s3stream.export import ExportOptions, ExportResult, export_query
from airflow_s3stream.s3.multipart import MultipartConfig
from airflow_s3stream.units import MiB
from tests.support.s3proxy import Delay, DropResponse, Hold, S3Proxy, S3Request, Status, completed_uploads_gone

PREFIX = "exp/day"
MANIFEST = f"{PREFIX}/_manifest.json"
STATE = f"{PREFIX}/_commit.json"
ROWS_PER_FILE = 6000  # about 6 MB per file: each one a two-part upload of 5 MiB parts
# ``seed`` changes every row's bytes, so a mix of two runs would show
SQL = "SELECT g AS id, repeat(md5((g + {seed})::text), 31) AS pad, '{marker}' AS m FROM generate_series(1, {n}) g"


@pytest.fixture
def client(s3: Any, s3_proxy: S3Proxy) -> Any:
    """A client through the proxy, configured like the hook's: one attempt per call."""
    via_proxy = dataclasses.replace(s3, endpoint_url=s3_proxy.endpoint_url, _handle=None)
    return via_proxy.client(max_pool_connections=16)


def sql(n: int, seed: int, marker: str = "") -> str:
    return SQL.format(n=n, seed=seed, marker=marker)


def export(conn: Any, client: Any, bucket: str, n: int, *, seed: int, marker: str = "") -> ExportResult:
    return export_query(
        conn,
        client,
        sql=sql(n, seed, marker),
        bucket=bucket,
        key=PREFIX,
        options=ExportOptions(max_rows_per_file=ROWS_PER_FILE, write_manifest=True),
        upload_config=MultipartConfig(part_size=5 * MiB),
    )


def prefix_etags(client: Any, bucket: str) -> dict[str, str]:
    listed = client.list_objects_v2(Bucket=bucket, Prefix=PREFIX + "/").get("Contents", [])
    return {o["Key"]: o["ETag"].strip('"') for o in listed}


def snapshot(client: Any, bucket: str) -> tuple[dict[str, str], bytes]:
    """The prefix as a reader sees it: every key with its ETag, and the manifest's bytes."""
    return prefix_etags(client, bucket), client.get_object(Bucket=bucket, Key=MANIFEST)["Body"].read()


def open_uploads(client: Any, bucket: str) -> list[str]:
    return [u["Key"] for u in client.list_multipart_uploads(Bucket=bucket).get("Uploads", [])]


def assert_published_whole(client: Any, bucket: str, rows: int) -> dict[str, Any]:
    """The manifest lists exactly the parts under the prefix, each with its ETag, and ``rows`` rows."""
    etags, raw = snapshot(client, bucket)
    manifest = json.loads(raw)
    assert manifest["rows"] == rows
    listed = {f["key"]: f["etag"] for f in manifest["files"]}
    assert listed == {k: v for k, v in etags.items() if k != MANIFEST}
    assert all(f["checksum"]["etag"] == f["etag"] for f in manifest["files"])
    assert open_uploads(client, bucket) == []
    return manifest


@pytest.fixture
def clean_run(pg_conn: Any, client: Any, s3_client: Any, bucket: str) -> tuple[dict[str, str], bytes]:
    """A clean export of 3 files (seed 0); returns its snapshot."""
    result = export(pg_conn, client, bucket, 3 * ROWS_PER_FILE, seed=0)
    assert len(result.files) == 3 and result.commit_ms is not None
    print(f"\ncommit window, 3 files of ~6 MB: {result.commit_ms} ms")
    assert_published_whole(s3_client, bucket, 3 * ROWS_PER_FILE)
    return snapshot(s3_client, bucket)


def test_terminated_backend_during_a_rerun_leaves_the_previous_export(  # noqa: PLR0917 - pytest fixtures
    clean_run: tuple[dict[str, str], bytes], client: Any, s3_client: Any, bucket: str, pg_uri: str, s3_proxy: S3Proxy
) -> None:
    marker = "s3stream_atomic_terminate"
    errors: list[BaseException] = []

    def rerun() -> None:
        try:
            with psycopg.connect(pg_uri, autocommit=True) as conn:
                export(conn, client, bucket, 2_000_000, seed=7, marker=marker)
        except BaseException as exc:
            errors.append(exc)

    s3_proxy.clear()
    worker = threading.Thread(target=rerun)
    worker.start()
    with psycopg.connect(pg_uri, autocommit=True) as admin:
        deadline = time.monotonic() + 60
        while s3_proxy.count("UploadPart") < 5 and time.monotonic() < deadline:  # two files staged at least
            time.sleep(0.05)
        row = admin.execute(
            "SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE query LIKE 'COPY%%' AND query LIKE %s "
            "AND pid <> pg_backend_pid()",
            (f"%{marker}%",),
        ).fetchone()
    worker.join(120)
    assert row and row[0] and not worker.is_alive()
    assert len(errors) == 1 and isinstance(errors[0], ExportConnectionError)
    assert s3_proxy.count("CompleteMultipartUpload") == 0 and s3_proxy.count("AbortMultipartUpload") >= 2
    assert snapshot(s3_client, bucket) == clean_run
    assert open_uploads(s3_client, bucket) == []


def test_500_storm_on_one_part_leaves_the_previous_export(  # noqa: PLR0917 - pytest fixtures
    clean_run: tuple[dict[str, str], bytes], pg_conn: Any, client: Any, s3_client: Any, bucket: str, s3_proxy: S3Proxy
) -> None:
    def storm(r: S3Request) -> Status | None:
        hit = r.op == "UploadPart" and r.key.endswith("part-00002.csv") and r.query.get("partNumber") == "1"
        return Status(500) if hit else None

    s3_proxy.add_fault(storm)
    with pytest.raises(TransientError, match=r"part 1 of .*part-00002\.csv"):
        export(pg_conn, client, bucket, 4 * ROWS_PER_FILE, seed=7)  # 4 files: part-00002 never finishes
    assert snapshot(s3_client, bucket) == clean_run
    assert open_uploads(s3_client, bucket) == []


def test_lost_complete_answer_during_the_commit_publishes_the_new_export_whole(  # noqa: PLR0917 - pytest fixtures
    clean_run: tuple[dict[str, str], bytes], pg_conn: Any, client: Any, s3_client: Any, bucket: str, s3_proxy: S3Proxy
) -> None:
    s3_proxy.clear()
    s3_proxy.add_fault(completed_uploads_gone(s3_proxy))
    s3_proxy.add_fault(
        lambda r: DropResponse() if r.op == "CompleteMultipartUpload" and r.key.endswith("-00001.csv") else None,
        times=1,
    )
    result = export(pg_conn, client, bucket, 2 * ROWS_PER_FILE, seed=7)  # 2 files: part-00002 is stale
    # part-00000 completed; part-00001 completed with its answer lost, then NoSuchUpload: confirmed
    assert sorted(r.status or 0 for r in s3_proxy.requests if r.op == "CompleteMultipartUpload") == [200, 200, 404]
    assert result.deleted_stale == [f"{PREFIX}/part-00002.csv"]
    manifest = assert_published_whole(s3_client, bucket, 2 * ROWS_PER_FILE)
    assert [f["key"] for f in manifest["files"]] == [f"{PREFIX}/part-0000{i}.csv" for i in range(2)]
    assert [f.upload and f.upload["etag"] for f in result.files] == [f["etag"] for f in manifest["files"]]
    first = s3_client.get_object(Bucket=bucket, Key=f"{PREFIX}/part-00000.csv")["Body"].read()
    assert first.splitlines()[1].split(b",")[1].startswith(hashlib.md5(b"8").hexdigest().encode())  # row 1, seed 7


CHILD = """
import sys
import psycopg
from tests.support.devservices import S3Service
from tests.integration.test_export_atomic import export
endpoint, bucket, pg_uri = sys.argv[1:4]
client = S3Service.from_child_env(endpoint).client(max_pool_connections=16)
with psycopg.connect(pg_uri, autocommit=True) as conn:
    export(conn, client, bucket, 3 * 6000, seed=7)
"""


def kill_child_at(hold: Hold, s3_proxy: S3Proxy, s3: Any, bucket: str, pg_uri: str) -> None:
    child = subprocess.Popen(
        [sys.executable, "-c", CHILD, s3_proxy.endpoint_url, bucket, pg_uri],
        env=s3.child_env(),
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        assert hold.reached.wait(90), "the child never reached the held request"
    finally:
        child.send_signal(signal.SIGKILL)
        child.wait()
    assert child.returncode == -signal.SIGKILL
    hold.release()


@pytest.mark.parametrize(
    "held",
    [
        pytest.param(("UploadPart", "part-00002.csv"), id="while-staging"),
        pytest.param(("PutObject", "_commit.json"), id="staged-before-the-first-complete"),
    ],
)
def test_kill_9_before_the_commit_leaves_the_previous_export_and_the_next_try_cleans_up(  # noqa: PLR0917 - pytest fixtures
    clean_run: tuple[dict[str, str], bytes],
    pg_conn: Any,
    client: Any,
    s3: Any,
    s3_client: Any,
    bucket: str,
    s3_proxy: S3Proxy,
    pg_uri: str,
    held: tuple[str, str],
) -> None:
    op, suffix = held
    hold = Hold()
    s3_proxy.add_fault(lambda r: hold if r.op == op and r.key.endswith(suffix) else None, times=1)
    kill_child_at(hold, s3_proxy, s3, bucket, pg_uri)
    etags, manifest = snapshot(s3_client, bucket)
    assert manifest == clean_run[1]
    assert {k: v for k, v in etags.items() if k != STATE} == clean_run[0]  # no file of the killed try visible
    assert len(open_uploads(s3_client, bucket)) == 3  # what the killed try staged (and was uploading)

    s3_proxy.clear()
    result = export(pg_conn, client, bucket, 2 * ROWS_PER_FILE, seed=11)
    assert len(result.files) == 2
    assert_published_whole(s3_client, bucket, 2 * ROWS_PER_FILE)
    assert STATE not in prefix_etags(s3_client, bucket)
    manifest_puts = [r for r in s3_proxy.requests if r.op == "PutObject" and r.key == MANIFEST]
    # a recorded commit is finished first (the killed try's export published whole, then replaced)
    assert len(manifest_puts) == (2 if suffix == "_commit.json" else 1)


def test_kill_9_during_the_commit_next_try_finishes_it_first(  # noqa: PLR0917 - pytest fixtures
    clean_run: tuple[dict[str, str], bytes],
    pg_conn: Any,
    client: Any,
    s3: Any,
    s3_client: Any,
    bucket: str,
    s3_proxy: S3Proxy,
    pg_uri: str,
) -> None:
    hold = Hold()
    s3_proxy.add_fault(
        lambda r: hold if r.op == "CompleteMultipartUpload" and r.key.endswith("part-00001.csv") else None, times=1
    )
    # the Completes run at once: part-00002's fails (retried) while the worker is killed
    s3_proxy.add_fault(
        lambda r: Status(500) if r.op == "CompleteMultipartUpload" and r.key.endswith("part-00002.csv") else None
    )
    kill_child_at(hold, s3_proxy, s3, bucket, pg_uri)
    etags, manifest = snapshot(s3_client, bucket)
    assert manifest == clean_run[1] and STATE in etags  # killed inside the commit window
    state = json.loads(s3_client.get_object(Bucket=bucket, Key=STATE)["Body"].read())
    recorded = {u["upload_id"] for u in state["uploads"]}
    assert len(recorded) == 3 and len(open_uploads(s3_client, bucket)) == 1  # 2 completed, 1 still open

    s3_proxy.clear_faults()
    s3_proxy.clear()
    s3_proxy.add_fault(completed_uploads_gone(s3_proxy))
    result = export(pg_conn, client, bucket, 3 * ROWS_PER_FILE, seed=13)
    completes = [r for r in s3_proxy.requests if r.op == "CompleteMultipartUpload"]
    assert {r.query["uploadId"] for r in completes[:3]} == recorded  # the recorded commit, first
    assert len(completes) == 6 and len(result.files) == 3
    assert_published_whole(s3_client, bucket, 3 * ROWS_PER_FILE)
    assert STATE not in prefix_etags(s3_client, bucket)


def test_reader_during_a_rerun_never_loses_the_manifest_and_a_new_one_is_always_whole(  # noqa: PLR0917 - pytest fixtures
    clean_run: tuple[dict[str, str], bytes], pg_conn: Any, client: Any, s3_client: Any, bucket: str, s3_proxy: S3Proxy
) -> None:
    s3_proxy.add_fault(lambda r: Delay(0.2) if r.op == "CompleteMultipartUpload" else None)  # a wider window
    seen: dict[str, int] = {"old": 0, "new": 0, "old_mixed": 0, "new_mixed": 0, "missing": 0}
    stop = threading.Event()

    def reader() -> None:
        while not stop.is_set():
            try:
                raw = s3_client.get_object(Bucket=bucket, Key=MANIFEST)["Body"].read()
            except s3_client.exceptions.NoSuchKey:
                seen["missing"] += 1
                continue
            etags = prefix_etags(s3_client, bucket)  # listed after the manifest was read
            manifest = json.loads(raw)
            which = "old" if raw == clean_run[1] else "new"
            whole = all(etags.get(f["key"]) == f["etag"] for f in manifest["files"])
            seen[which if whole else f"{which}_mixed"] += 1

    thread = threading.Thread(target=reader)
    thread.start()
    try:
        result = export(pg_conn, client, bucket, 3 * ROWS_PER_FILE, seed=7)
        time.sleep(0.3)
    finally:
        stop.set()
        thread.join(30)
    print(f"\nreader during the re-run: {seen}; commit window {result.commit_ms} ms")
    assert seen["missing"] == 0 and seen["new_mixed"] == 0
    assert seen["old"] > 0 and seen["new"] > 0
    # the old manifest can meet replaced files only inside the commit window; its ETags say so
    assert result.commit_ms is not None and result.commit_ms >= 200  # the Completes ran at once
    assert_published_whole(s3_client, bucket, 3 * ROWS_PER_FILE)
