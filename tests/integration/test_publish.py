"""publish() and abandon(): staged files become visible whole, with their manifest, or not at all.

A "killed try" is played by staging uploads (``MultipartWriter(stage=True)``) and never
publishing them, or by writing its commit state and stopping there. The next try's one call then
finishes or aborts what the killed one left. Runs on moto and, with ``--store=rgw``, on Ceph RGW.
"""

from __future__ import annotations

import json
from typing import Any

import pytest

from airflow_s3stream.errors import UploadError
from airflow_s3stream.publish import Publication, abandon, publish
from airflow_s3stream.publish.manifest import build_manifest, parse_manifest
from airflow_s3stream.publish.state import CommitPlan
from airflow_s3stream.s3.multipart import MultipartConfig, MultipartWriter
from airflow_s3stream.s3.multipart.staged import StagedUpload
from airflow_s3stream.units import MiB

PREFIX = "exp/day"
MANIFEST = f"{PREFIX}/_manifest.json"
STATE = f"{PREFIX}/_commit.json"
CONFIG = MultipartConfig(part_size=5 * MiB)


def part(index: int) -> str:
    return f"{PREFIX}/part-{index:05d}.csv"


def stage(client: Any, bucket: str, key: str, body: bytes) -> StagedUpload:
    """``body`` staged at ``key``: its upload left open, nothing visible."""
    with MultipartWriter(client, bucket, key, config=CONFIG, stage=True, report_progress=False) as writer:
        writer.write(body)
    assert writer.staged is not None
    return writer.staged


def body(index: int, run: str) -> bytes:
    return f"id\n{index}-{run}\n".encode() * 100


def publication(bucket: str, uploads: tuple[StagedUpload, ...], **kwargs: Any) -> Publication:
    """A split export's publication: a manifest listing ``uploads``, recorded, owning ``<prefix>/part-``."""
    files = [{"key": u.key, "rows": 100, "bytes": u.size} for u in uploads]
    document = build_manifest(
        file_format="csv", compression=None, csv=None, query="SELECT 1", columns=[], files=files, seconds=0.5
    )
    return Publication(bucket, uploads, MANIFEST, document, state_key=STATE, owned_prefix=PREFIX + "/part-", **kwargs)


def run(client: Any, bucket: str, files: int, name: str) -> Publication:
    """One try's files, staged (not yet published)."""
    return publication(bucket, tuple(stage(client, bucket, part(i), body(i, name)) for i in range(files)))


def stale_parts(client: Any, bucket: str, uploads: tuple[StagedUpload, ...]) -> Any:
    """What a split export deletes: parts under the prefix that this try did not write."""
    written = {u.key for u in uploads}

    def keys() -> list[str]:
        listed = client.list_objects_v2(Bucket=bucket, Prefix=PREFIX + "/part-").get("Contents", [])
        return [o["Key"] for o in listed if o["Key"] not in written]

    return keys


def visible(client: Any, bucket: str) -> dict[str, bytes]:
    listed = client.list_objects_v2(Bucket=bucket, Prefix=PREFIX + "/").get("Contents", [])
    return {o["Key"]: client.get_object(Bucket=bucket, Key=o["Key"])["Body"].read() for o in listed}


def open_upload_ids(client: Any, bucket: str) -> list[str]:
    return [u["UploadId"] for u in client.list_multipart_uploads(Bucket=bucket).get("Uploads", [])]


def assert_published_whole(client: Any, bucket: str, files: int, name: str) -> None:
    """The manifest lists exactly the parts under the prefix, each holding this try's bytes, with its
    ETag; no commit state and no open upload is left."""
    objects = visible(client, bucket)
    manifest = parse_manifest(objects.pop(MANIFEST), bucket, MANIFEST)
    assert [f.key for f in manifest.files] == [part(i) for i in range(files)]
    assert objects == {part(i): body(i, name) for i in range(files)}
    for listed in manifest.files:
        assert (listed.etag or "").strip('"') == client.head_object(Bucket=bucket, Key=listed.key)["ETag"].strip('"')
    assert open_upload_ids(client, bucket) == []


def test_a_killed_tries_staged_uploads_are_aborted_by_the_next_tries_publish(s3_client: Any, bucket: str) -> None:
    killed = run(s3_client, bucket, 3, "killed")  # staged, never published
    assert visible(s3_client, bucket) == {}

    mine = run(s3_client, bucket, 2, "next")
    outcome = publish(s3_client, mine, CONFIG, stale=stale_parts(s3_client, bucket, mine.uploads))

    assert sorted(outcome.results) == [part(0), part(1)] and outcome.deleted == []
    assert_published_whole(s3_client, bucket, 2, "next")
    assert not {u.upload_id for u in killed.uploads} & set(open_upload_ids(s3_client, bucket))


def test_a_commit_recorded_by_a_killed_try_is_finished_first_and_then_replaced_whole(
    s3_client: Any, bucket: str
) -> None:
    killed = run(s3_client, bucket, 3, "killed")
    plan = CommitPlan(bucket, killed.uploads, (), killed.manifest_key, killed.manifest)
    s3_client.put_object(Bucket=bucket, Key=STATE, Body=plan.to_json())  # killed right after recording it

    mine = run(s3_client, bucket, 2, "next")
    outcome = publish(s3_client, mine, CONFIG, stale=stale_parts(s3_client, bucket, mine.uploads))

    # the killed try's third file was published by finishing its commit, then deleted as stale
    assert outcome.deleted == [part(2)]
    assert_published_whole(s3_client, bucket, 2, "next")


def test_a_staged_upload_gone_before_the_publish_publishes_nothing(s3_client: Any, bucket: str) -> None:
    staged = run(s3_client, bucket, 2, "first")
    gone = staged.uploads[1]
    s3_client.abort_multipart_upload(Bucket=bucket, Key=gone.key, UploadId=gone.upload_id)  # e.g. a lifecycle rule

    with pytest.raises(UploadError, match=r"1 of 2 staged files can no longer be committed: .*part-00001\.csv"):
        publish(s3_client, publication(bucket, staged.uploads, staged_elsewhere=True), CONFIG)

    assert visible(s3_client, bucket) == {}
    assert open_upload_ids(s3_client, bucket) == []


def test_abandon_publishes_nothing_and_leaves_the_previous_export_as_it_was(s3_client: Any, bucket: str) -> None:
    first = run(s3_client, bucket, 2, "first")
    publish(s3_client, first, CONFIG)
    before = visible(s3_client, bucket)
    killed = run(s3_client, bucket, 1, "killed")
    failed = run(s3_client, bucket, 3, "failed")
    s3_client.put_object(Bucket=bucket, Key=f"{PREFIX}/extra.csv", Body=b"completed by this run")

    done = abandon(s3_client, failed, CONFIG, completed=[f"{PREFIX}/extra.csv"])

    assert visible(s3_client, bucket) == before
    assert json.loads(before[MANIFEST])["files"][1]["key"] == part(1)
    assert done.aborted == [part(0), part(1), part(2)] and not done.finished_commit
    assert done.deleted == [f"{PREFIX}/extra.csv"]
    assert open_upload_ids(s3_client, bucket) == []
    assert killed.uploads[0].upload_id not in open_upload_ids(s3_client, bucket)


def test_abandon_first_finishes_a_recorded_commit(s3_client: Any, bucket: str) -> None:
    killed = run(s3_client, bucket, 2, "killed")
    plan = CommitPlan(bucket, killed.uploads, (), killed.manifest_key, killed.manifest)
    s3_client.put_object(Bucket=bucket, Key=STATE, Body=plan.to_json())
    failed = run(s3_client, bucket, 1, "failed")

    done = abandon(s3_client, failed, CONFIG)

    assert done.finished_commit and done.aborted == [part(0)]
    assert_published_whole(s3_client, bucket, 2, "killed")


def test_a_single_staged_object_is_published_without_manifest_or_state(s3_client: Any, bucket: str) -> None:
    staged = stage(s3_client, bucket, "bags/one.zip", b"PK" * 1000)
    leftover = stage(s3_client, bucket, "bags/one.zip", b"killed")

    outcome = publish(s3_client, Publication(bucket, (staged,), owned_prefix="bags/one.zip"), CONFIG)

    assert outcome.results["bags/one.zip"].size == 2000
    assert s3_client.get_object(Bucket=bucket, Key="bags/one.zip")["Body"].read() == b"PK" * 1000
    assert [o["Key"] for o in s3_client.list_objects_v2(Bucket=bucket)["Contents"]] == ["bags/one.zip"]
    assert leftover.upload_id not in open_upload_ids(s3_client, bucket) and open_upload_ids(s3_client, bucket) == []
