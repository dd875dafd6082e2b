"""The job commit: partitions staged by separate tasks are published under one manifest, or none is.

Each partition runs ``export_query(stage_only=True)`` as a mapped task would; the job then runs
``commit_job`` (the commit operator's work) or ``abort_job`` (the teardown's). Real Postgres, the
real endpoint through the fault-injecting proxy, the production client (one attempt per call) and
the default retry policy.
"""

from __future__ import annotations

import dataclasses
import json
from typing import Any

import pytest

from airflow_s3stream.errors import ConfigurationError, TransientError, UploadError
from airflow_s3stream.export import ExportOptions, export_query
from airflow_s3stream.export.job import abort_job, commit_job
from airflow_s3stream.s3.multipart import MultipartConfig
from airflow_s3stream.units import MiB
from tests.support.s3proxy import DropResponse, S3Proxy, S3Request, Status, completed_uploads_gone

PREFIX = "exp/orders"
MANIFEST = f"{PREFIX}/_manifest.json"
STATE = f"{PREFIX}/_commit.json"
ROWS = 6000  # rows per partition, about 6 MB: a two-part upload of 5 MiB parts
SQL = (
    "SELECT g AS id, repeat(md5((g + %(seed)s)::text), 31) AS pad FROM generate_series(1, 1000000) g "
    "WHERE g >= %(lo)s AND g < %(hi)s"
)
CONFIG = MultipartConfig(part_size=5 * MiB)


@pytest.fixture
def client(s3: Any, s3_proxy: S3Proxy) -> Any:
    """A client through the proxy, configured like the hook's: one attempt per call."""
    via_proxy = dataclasses.replace(s3, endpoint_url=s3_proxy.endpoint_url, _handle=None)
    return via_proxy.client(max_pool_connections=16)


def stage(conn: Any, client: Any, bucket: str, index: int, *, seed: int) -> dict[str, Any]:
    """What mapped task ``index`` returns: partition ``index`` staged, as XCom (JSON round trip)."""
    result = export_query(
        conn,
        client,
        sql=SQL,
        parameters={"seed": seed, "lo": 1 + index * ROWS, "hi": 1 + (index + 1) * ROWS},
        bucket=bucket,
        key=f"{PREFIX}/range-{index:05d}",
        options=ExportOptions(),
        upload_config=CONFIG,
        stage_only=True,
    )
    return json.loads(json.dumps(result.to_dict()))


def run_job(conn: Any, client: Any, bucket: str, partitions: int, *, seed: int) -> dict[str, Any]:
    staged = [stage(conn, client, bucket, i, seed=seed) for i in range(partitions)]
    return commit_job(client, bucket=bucket, prefix=PREFIX, results=staged, config=CONFIG).to_dict()


def snapshot(client: Any, bucket: str) -> tuple[dict[str, str], bytes]:
    """Every key under the prefix with its ETag, and the manifest's bytes."""
    listed = client.list_objects_v2(Bucket=bucket, Prefix=PREFIX + "/").get("Contents", [])
    etags = {o["Key"]: o["ETag"].strip('"') for o in listed}
    return etags, client.get_object(Bucket=bucket, Key=MANIFEST)["Body"].read()


def open_uploads(client: Any, bucket: str) -> list[str]:
    return [u["Key"] for u in client.list_multipart_uploads(Bucket=bucket).get("Uploads", [])]


def assert_published_whole(client: Any, bucket: str, partitions: int) -> dict[str, Any]:
    """One manifest lists exactly the partitions' files, each present with its listed ETag."""
    etags, raw = snapshot(client, bucket)
    manifest = json.loads(raw)
    assert [f["key"] for f in manifest["files"]] == [f"{PREFIX}/range-{i:05d}.csv" for i in range(partitions)]
    assert {f["key"]: f["etag"] for f in manifest["files"]} == {k: v for k, v in etags.items() if k != MANIFEST}
    assert manifest["rows"] == partitions * ROWS == sum(f["rows"] for f in manifest["files"])
    assert open_uploads(client, bucket) == []
    return manifest


@pytest.fixture
def clean_job(pg_conn: Any, client: Any, s3_client: Any, bucket: str) -> tuple[dict[str, str], bytes]:
    """A clean job of 3 partitions (seed 0); returns the prefix's snapshot."""
    run_job(pg_conn, client, bucket, 3, seed=0)
    assert_published_whole(s3_client, bucket, 3)
    return snapshot(s3_client, bucket)


def test_staged_partitions_change_nothing_until_the_job_commit_publishes_them_under_one_manifest(
    pg_conn: Any, client: Any, s3_client: Any, bucket: str
) -> None:
    staged = [stage(pg_conn, client, bucket, i, seed=0) for i in range(3)]

    assert s3_client.list_objects_v2(Bucket=bucket, Prefix=PREFIX + "/").get("KeyCount", 0) == 0
    assert sorted(open_uploads(s3_client, bucket)) == [f"{PREFIX}/range-{i:05d}.csv" for i in range(3)]
    assert all(len(json.dumps(r)) < 2000 for r in staged)  # small enough for XCom: a few hundred bytes per file

    done = commit_job(client, bucket=bucket, prefix=PREFIX, results=staged, config=CONFIG)

    manifest = assert_published_whole(s3_client, bucket, 3)
    assert manifest["version"] == 1 and manifest["format"] == "csv" and manifest["compression"] is None
    assert manifest["csv"] == {"delimiter": ",", "header": True, "null_string": ""}
    assert manifest["query"] == SQL  # the same query text for every partition (the bounds are parameters)
    assert [c["name"] for c in manifest["columns"]] == ["id", "pad"]
    # auto on stores that check no CRC32C (moto, RGW): each file's checksum is its multipart ETag
    assert all(f["checksum"]["algorithm"] == "MD5" and f["checksum"]["value"] for f in manifest["files"])
    assert done.rows == 3 * ROWS and done.deleted_stale == [] and done.commit_ms > 0
    assert s3_client.head_object(Bucket=bucket, Key=f"{PREFIX}/range-00000.csv")["ContentLength"] > 5 * MiB


def test_failed_partition_then_the_teardown_leaves_the_previous_export_exactly(  # noqa: PLR0917 - pytest fixtures
    clean_job: tuple[dict[str, str], bytes], pg_conn: Any, client: Any, s3_client: Any, bucket: str, s3_proxy: S3Proxy
) -> None:
    staged = [stage(pg_conn, client, bucket, i, seed=7) for i in range(2)]

    def storm(r: S3Request) -> Status | None:
        return Status(500) if r.op == "UploadPart" and r.key.endswith("range-00002.csv") else None

    s3_proxy.add_fault(storm)
    with pytest.raises(TransientError, match=r"range-00002\.csv"):  # past the retry budget
        stage(pg_conn, client, bucket, 2, seed=7)
    s3_proxy.clear_faults()

    done = abort_job(client, bucket=bucket, prefix=PREFIX, results=staged, config=CONFIG)

    assert done.aborted == [f"{PREFIX}/range-00000.csv", f"{PREFIX}/range-00001.csv"]
    assert snapshot(s3_client, bucket) == clean_job
    assert open_uploads(s3_client, bucket) == []


def test_a_staged_upload_gone_before_the_commit_fails_it_without_publishing_anything(
    clean_job: tuple[dict[str, str], bytes], pg_conn: Any, client: Any, s3_client: Any, bucket: str
) -> None:
    staged = [stage(pg_conn, client, bucket, i, seed=7) for i in range(3)]
    gone = staged[1]["files"][0]
    s3_client.abort_multipart_upload(Bucket=bucket, Key=gone["key"], UploadId=gone["staged"]["upload_id"])

    with pytest.raises(UploadError, match=r"range-00001\.csv.*Re-run the tasks"):
        commit_job(client, bucket=bucket, prefix=PREFIX, results=staged, config=CONFIG)

    assert snapshot(s3_client, bucket) == clean_job
    assert open_uploads(s3_client, bucket) == []


def test_lost_complete_answer_in_the_job_commit_still_publishes_it_whole(  # noqa: PLR0917 - pytest fixtures
    clean_job: tuple[dict[str, str], bytes], pg_conn: Any, client: Any, s3_client: Any, bucket: str, s3_proxy: S3Proxy
) -> None:
    staged = [stage(pg_conn, client, bucket, i, seed=7) for i in range(3)]
    s3_proxy.clear()
    s3_proxy.add_fault(completed_uploads_gone(s3_proxy))
    s3_proxy.add_fault(
        lambda r: DropResponse() if r.op == "CompleteMultipartUpload" and r.key.endswith("range-00001.csv") else None,
        times=1,
    )

    commit_job(client, bucket=bucket, prefix=PREFIX, results=staged, config=CONFIG)

    assert sorted(r.status or 0 for r in s3_proxy.requests if r.op == "CompleteMultipartUpload") == [200, 200, 200, 404]
    etags, _ = snapshot(s3_client, bucket)
    assert etags != clean_job[0]
    assert_published_whole(s3_client, bucket, 3)


def test_a_commit_interrupted_after_its_first_complete_is_finished_by_the_next_try(  # noqa: PLR0917 - pytest fixtures
    clean_job: tuple[dict[str, str], bytes], pg_conn: Any, client: Any, s3_client: Any, bucket: str, s3_proxy: S3Proxy
) -> None:
    staged = [stage(pg_conn, client, bucket, i, seed=7) for i in range(2)]  # 2 partitions: range-00002 is stale
    s3_proxy.add_fault(lambda r: Status(503, "SlowDown") if r.method == "PUT" and r.key == MANIFEST else None)

    with pytest.raises(TransientError, match=r"_manifest\.json"):
        commit_job(client, bucket=bucket, prefix=PREFIX, results=staged, config=CONFIG)
    s3_proxy.clear_faults()
    assert json.loads(s3_client.get_object(Bucket=bucket, Key=STATE)["Body"].read())["index_key"] == MANIFEST
    assert snapshot(s3_client, bucket)[1] == clean_job[1]  # the old manifest is still the one readers see

    done = commit_job(client, bucket=bucket, prefix=PREFIX, results=staged, config=CONFIG)  # the task's next try

    assert_published_whole(s3_client, bucket, 2)
    assert done.rows == 2 * ROWS
    assert s3_client.list_objects_v2(Bucket=bucket, Prefix=STATE).get("KeyCount", 0) == 0


def test_the_commit_deletes_only_files_the_replaced_manifest_listed(
    clean_job: tuple[dict[str, str], bytes], pg_conn: Any, client: Any, s3_client: Any, bucket: str
) -> None:
    s3_client.put_object(Bucket=bucket, Key=f"{PREFIX}/README.txt", Body=b"not part of the export")

    done = run_job(pg_conn, client, bucket, 2, seed=7)

    assert done["deleted_stale"] == [f"{PREFIX}/range-00002.csv"]
    listed = sorted(o["Key"] for o in s3_client.list_objects_v2(Bucket=bucket, Prefix=PREFIX + "/")["Contents"])
    assert listed == [f"{PREFIX}/README.txt", MANIFEST, f"{PREFIX}/range-00000.csv", f"{PREFIX}/range-00001.csv"]


def test_uploads_left_by_killed_tries_are_aborted_by_the_commit(
    pg_conn: Any, client: Any, s3_client: Any, bucket: str
) -> None:
    leftover = s3_client.create_multipart_upload(Bucket=bucket, Key=f"{PREFIX}/range-00001.csv")["UploadId"]

    run_job(pg_conn, client, bucket, 2, seed=0)

    assert_published_whole(s3_client, bucket, 2)
    # the leftover upload is aborted (ListParts then answers NoSuchUpload on S3 and moto, NoSuchKey on RGW)
    open_ids = [u["UploadId"] for u in s3_client.list_multipart_uploads(Bucket=bucket).get("Uploads", [])]
    assert leftover not in open_ids and open_ids == []


def test_results_that_cannot_make_one_export_are_refused_before_anything_changes(
    pg_conn: Any, client: Any, s3_client: Any, bucket: str
) -> None:
    staged = [stage(pg_conn, client, bucket, 0, seed=0)]

    with pytest.raises(ConfigurationError, match=r"outside the job's prefix s3://.*/other/"):
        commit_job(client, bucket=bucket, prefix="other", results=staged, config=CONFIG)
    with pytest.raises(ConfigurationError, match="staged by two tasks"):
        commit_job(client, bucket=bucket, prefix=PREFIX, results=staged * 2, config=CONFIG)
    unstaged = {**staged[0], "staged": False}
    with pytest.raises(ConfigurationError, match="stage_only=True"):
        commit_job(client, bucket=bucket, prefix=PREFIX, results=[unstaged], config=CONFIG)

    assert s3_client.list_objects_v2(Bucket=bucket, Prefix=PREFIX + "/").get("KeyCount", 0) == 0
    assert open_uploads(s3_client, bucket) == [f"{PREFIX}/range-00000.csv"]  # still staged, still committable
