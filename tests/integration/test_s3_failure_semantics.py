"""What a multipart upload does when an S3 answer is lost, refused or slow: honest success or a named failure.

Every test here runs the production retry configuration: clients built as the package's hook
builds them (botocore's retries off, :meth:`S3Service.client`'s default) and the default
:class:`~airflow_s3stream.s3.retry.RetryPolicy` (6 attempts, 0.1 s doubling, full jitter: at most
about 3 s of waiting for one exhausted request, so no test needs faster settings). Faults are
injected at the recording proxy in front of the real endpoint, which also counts what was sent.
"""

from __future__ import annotations

import concurrent.futures
import dataclasses
import gc
import json
import logging
import os
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from airflow_s3stream.errors import (
    ChecksumMismatchError,
    ConcurrentUploadError,
    DestinationError,
    TransientError,
    UploadError,
)
from airflow_s3stream.export import ExportOptions, export_query
from airflow_s3stream.operators import S3MultipartUploadOperator
from airflow_s3stream.s3.multipart import MultipartConfig, MultipartWriter
from airflow_s3stream.s3.objects import head_object
from airflow_s3stream.s3.retry import RetryPolicy
from airflow_s3stream.s3.retry_budget import RETRY_COST, RetryBudget
from airflow_s3stream.units import MiB
from airflow_s3stream.upload.resume import state_key
from airflow_s3stream.upload.state_store import StateStore
from airflow_s3stream.upload.uploader import ResumableUploader
from tests.support.s3proxy import (
    Corrupt,
    Delay,
    DropResponse,
    Hold,
    NoSuchUpload,
    S3Proxy,
    S3Request,
    Status,
    completed_uploads_gone,
)

PART = 5 * MiB
STATE = state_key("k")


@pytest.fixture
def client(s3: Any, s3_proxy: S3Proxy) -> Any:
    """A client through the proxy, configured like the hook's: one attempt per call."""
    via_proxy = dataclasses.replace(s3, endpoint_url=s3_proxy.endpoint_url, _handle=None)
    return via_proxy.client(max_pool_connections=16)


def config(**kw: Any) -> MultipartConfig:
    kw.setdefault("part_size", PART)
    return MultipartConfig(**kw)  # the default RetryPolicy()


def make_file(tmp_path: Path, size: int) -> Path:
    path = tmp_path / "source.bin"
    path.write_bytes(os.urandom(size))
    return path


def read(client: Any, bucket: str, key: str) -> bytes:
    return bytes(client.get_object(Bucket=bucket, Key=key)["Body"].read())


def uploads(client: Any, bucket: str) -> list[dict[str, Any]]:
    return list(client.list_multipart_uploads(Bucket=bucket).get("Uploads", []))


def keys(client: Any, bucket: str) -> list[str]:
    return sorted(o["Key"] for o in client.list_objects_v2(Bucket=bucket).get("Contents", []))


def on(op: str, fault: Any, **query: str) -> Callable[[S3Request], Any]:
    """A rule: ``fault`` for requests of ``op`` whose query has the given values."""
    return lambda r: fault if r.op == op and all(r.query.get(k) == v for k, v in query.items()) else None


def lose_complete_answer(proxy: S3Proxy) -> None:
    """The first CompleteMultipartUpload is carried out but its answer lost; S3 then answers
    NoSuchUpload for that upload id (moto would repeat the success, which tests nothing)."""
    proxy.add_fault(completed_uploads_gone(proxy))
    proxy.add_fault(on("CompleteMultipartUpload", DropResponse()), times=1)


def statuses(proxy: S3Proxy, op: str) -> list[int | None]:
    return [r.status for r in proxy.requests if r.op == op]


# -- 1. CompleteMultipartUpload whose answer is lost ------------------------------------------


def test_lost_complete_answer_is_confirmed_by_the_published_object(
    tmp_path: Path, s3_client: Any, bucket: str, client: Any, s3_proxy: S3Proxy
) -> None:
    path = make_file(tmp_path, 3 * PART + 123)
    lose_complete_answer(s3_proxy)
    result = ResumableUploader(client, bucket, "k", config=config()).upload_file(str(path))
    assert statuses(s3_proxy, "CompleteMultipartUpload") == [200, 404]  # done, answer lost; then NoSuchUpload
    assert read(s3_client, bucket, "k") == path.read_bytes()
    assert (result.parts, result.uploaded_parts, result.size) == (4, 4, path.stat().st_size)
    assert "etag" in result.verified and result.etag.endswith("-4")
    assert uploads(s3_client, bucket) == [] and keys(s3_client, bucket) == ["k"]
    assert s3_proxy.count("AbortMultipartUpload") == 0


def test_operator_succeeds_when_the_complete_answer_is_lost(
    tmp_path: Path, s3_client: Any, bucket: str, proxy_aws_conn: Callable[..., str], s3_proxy: S3Proxy
) -> None:
    path = make_file(tmp_path, 2 * PART + 7)
    lose_complete_answer(s3_proxy)
    op = S3MultipartUploadOperator(
        task_id="up", source=str(path), s3_bucket=bucket, s3_key="in/k", aws_conn_id=proxy_aws_conn(), part_size=PART
    )
    result = op.execute({})
    assert statuses(s3_proxy, "CompleteMultipartUpload") == [200, 404]
    assert (result["parts"], result["size"]) == (3, 2 * PART + 7)
    assert read(s3_client, bucket, "in/k") == path.read_bytes()
    assert uploads(s3_client, bucket) == [] and keys(s3_client, bucket) == ["in/k"]


def test_split_export_keeps_every_part_when_a_complete_answer_is_lost(
    pg_conn: Any, s3_client: Any, bucket: str, client: Any, s3_proxy: S3Proxy
) -> None:
    # about 6 MB per file: each one is a two-part multipart upload
    sql = "SELECT g AS id, repeat(md5(g::text), 31) AS pad FROM generate_series(1, 18000) g"
    s3_proxy.add_fault(completed_uploads_gone(s3_proxy))
    s3_proxy.add_fault(
        lambda r: DropResponse() if r.op == "CompleteMultipartUpload" and r.key.endswith("-00001.csv") else None
    )
    result = export_query(
        pg_conn,
        client,
        sql=sql,
        bucket=bucket,
        key="exp/day",
        options=ExportOptions(max_rows_per_file=6000),
        upload_config=config(),
    )
    names = [f"exp/day/part-0000{i}.csv" for i in range(3)]
    assert [f.key for f in result.files] == names and result.rows == 18000
    # the commit completes the three files at once: one answer lost, its retry told NoSuchUpload
    assert sorted(s or 0 for s in statuses(s3_proxy, "CompleteMultipartUpload")) == [200, 200, 200, 404]
    assert keys(s3_client, bucket) == names  # nothing deleted, no stray object
    assert uploads(s3_client, bucket) == []
    ids = [int(line.split(b",")[0]) for n in names for line in read(s3_client, bucket, n).splitlines()[1:]]
    assert ids == list(range(1, 18001))


def test_lost_complete_answer_is_confirmed_by_the_full_object_checksum_without_md5s(  # noqa: PLR0917
    tmp_path: Path, s3: Any, s3_client: Any, bucket: str, client: Any, s3_proxy: S3Proxy
) -> None:
    path = make_file(tmp_path, 2 * PART + 1)
    lose_complete_answer(s3_proxy)
    cfg = config(checksum_algorithm="CRC64NVME", verify_part_etag=False)
    uploader = ResumableUploader(client, bucket, "k", config=cfg)
    if s3.origin == "rgw":  # RGW keeps no additional checksum, and no part MD5 was computed
        with pytest.raises(UploadError, match=rf"s3://{bucket}/k: .*could not be confirmed"):
            uploader.upload_file(str(path))
    else:
        result = uploader.upload_file(str(path))
        assert "checksum" in result.verified and "etag" not in result.verified
    assert read(s3_client, bucket, "k") == path.read_bytes()  # completed, and left as it is


def test_completion_that_nothing_can_confirm_fails_saying_so(
    tmp_path: Path, s3_client: Any, bucket: str, client: Any, s3_proxy: S3Proxy
) -> None:
    # no part MD5s, and the server reports no composite checksum in S3's form: the object at the
    # key may be ours or not, and the upload does not claim success it cannot prove
    path = make_file(tmp_path, 2 * PART + 1)
    lose_complete_answer(s3_proxy)
    with pytest.raises(UploadError, match=rf"s3://{bucket}/k: .*could not be confirmed"):
        ResumableUploader(
            client, bucket, "k", config=config(checksum_algorithm="CRC32C", verify_part_etag=False)
        ).upload_file(str(path))
    assert uploads(s3_client, bucket) == []


def test_complete_of_an_aborted_upload_fails_naming_it(
    tmp_path: Path, s3_client: Any, bucket: str, client: Any, s3_proxy: S3Proxy
) -> None:
    path = make_file(tmp_path, 2 * PART + 1)

    def abort_first(r: S3Request) -> Any:  # as a lifecycle rule or abort_stale_uploads would
        if r.op != "CompleteMultipartUpload":
            return None
        s3_client.abort_multipart_upload(Bucket=bucket, Key="k", UploadId=r.query["uploadId"])
        return NoSuchUpload()  # S3's answer then (moto fails with a 500)

    s3_proxy.add_fault(abort_first, times=1)
    with pytest.raises(UploadError, match=rf"s3://{bucket}/k does not exist"):
        ResumableUploader(client, bucket, "k", config=config(), resume=False).upload_file(str(path))
    assert keys(s3_client, bucket) == []


# -- 2. CreateMultipartUpload whose answer is lost --------------------------------------------


def test_lost_create_answer_leaves_no_open_upload(
    tmp_path: Path, s3_client: Any, bucket: str, client: Any, s3_proxy: S3Proxy
) -> None:
    earlier = s3_client.create_multipart_upload(Bucket=bucket, Key="k2")["UploadId"]  # another key's
    path = make_file(tmp_path, 2 * PART + 1)
    s3_proxy.add_fault(on("CreateMultipartUpload", DropResponse()), times=1)
    ResumableUploader(client, bucket, "k", config=config()).upload_file(str(path))
    assert statuses(s3_proxy, "CreateMultipartUpload") == [200, 200]  # the first was carried out
    assert read(s3_client, bucket, "k") == path.read_bytes()
    assert [u["UploadId"] for u in uploads(s3_client, bucket)] == [earlier]
    assert s3_proxy.count("AbortMultipartUpload") == 1


def test_lost_create_answer_does_not_abort_an_upload_of_the_key_started_earlier(
    s3_client: Any, bucket: str, client: Any, s3_proxy: S3Proxy
) -> None:
    other_try = s3_client.create_multipart_upload(Bucket=bucket, Key="k")["UploadId"]
    s3_proxy.add_fault(on("CreateMultipartUpload", DropResponse()), times=1)
    with MultipartWriter(client, bucket, "k", config=config()) as w:
        w.write(os.urandom(PART + 10))
    assert [u["UploadId"] for u in uploads(s3_client, bucket)] == [other_try]
    assert s3_proxy.count("AbortMultipartUpload") == 1


# -- 3. resume recognises an upload that was completed ----------------------------------------

CHILD = """
import json, sys
from tests.support.devservices import S3Service
from airflow_s3stream.s3.multipart import MultipartConfig
from airflow_s3stream.upload.uploader import ResumableUploader
endpoint, bucket, key, path = sys.argv[1:5]
client = S3Service.from_child_env(endpoint).client(max_pool_connections=16)
result = ResumableUploader(client, bucket, key, config=MultipartConfig(part_size=5 * 1024 * 1024)).upload_file(path)
print(json.dumps(result.to_dict()))
"""


def test_kill_9_during_complete_next_try_sends_no_part(  # noqa: PLR0917 - pytest fixtures
    tmp_path: Path, s3: Any, s3_client: Any, bucket: str, client: Any, s3_proxy: S3Proxy
) -> None:
    total = 6
    path = make_file(tmp_path, total * PART - 99)
    hold = Hold()
    s3_proxy.add_fault(on("CompleteMultipartUpload", hold), times=1)
    child = subprocess.Popen(
        [sys.executable, "-c", CHILD, s3_proxy.endpoint_url, bucket, "k", str(path)],
        env=s3.child_env(),
        stdout=subprocess.PIPE,
        stderr=subprocess.DEVNULL,
    )
    try:
        assert hold.reached.wait(60), "the child never reached CompleteMultipartUpload"
    finally:
        child.send_signal(signal.SIGKILL)
        child.wait()
    assert child.returncode == -signal.SIGKILL
    hold.release()
    assert STATE in keys(s3_client, bucket)  # the killed try could not clean up

    s3_proxy.clear()
    result = ResumableUploader(client, bucket, "k", config=config()).upload_file(str(path))
    assert s3_proxy.count("UploadPart") == 0 and s3_proxy.count("CreateMultipartUpload") == 0
    assert (result.parts, result.resumed_parts, result.uploaded_parts) == (total, total, 0)
    assert read(s3_client, bucket, "k") == path.read_bytes()
    assert keys(s3_client, bucket) == ["k"] and uploads(s3_client, bucket) == []


# -- 4. one live owner per resume state -------------------------------------------------------


def test_second_live_try_cannot_take_over_the_resume_state(
    tmp_path: Path, s3_client: Any, bucket: str, client: Any, s3_proxy: S3Proxy
) -> None:
    path = make_file(tmp_path, 4 * PART)
    s3_proxy.add_fault(on("UploadPart", Delay(0.5)))
    first = ResumableUploader(client, bucket, "k", config=config(max_concurrency=1))
    outcome: list[Any] = []
    worker = threading.Thread(target=lambda: outcome.append(first.upload_file(str(path))))
    worker.start()
    deadline = time.monotonic() + 30
    while STATE not in keys(s3_client, bucket) and time.monotonic() < deadline:
        time.sleep(0.05)
    stored = s3_client.get_object(Bucket=bucket, Key=STATE)
    owner = json.loads(stored["Body"].read())["owner"]

    second = ResumableUploader(client, bucket, "k", config=config(max_concurrency=1))
    with pytest.raises(ConcurrentUploadError, match=rf"s3://{bucket}/k: .*held by {owner}") as err:
        second.upload_file(str(path))
    assert isinstance(err.value, TransientError)  # Airflow retries the task later
    assert owner != second.owner
    worker.join(60)
    assert outcome and outcome[0].uploaded_parts == 4  # the first try was not disturbed
    assert s3_proxy.count("CreateMultipartUpload") == 1 and s3_proxy.count("AbortMultipartUpload") == 0
    assert read(s3_client, bucket, "k") == path.read_bytes()
    assert keys(s3_client, bucket) == ["k"] and uploads(s3_client, bucket) == []


def test_state_created_meanwhile_by_another_try_makes_this_try_back_off(
    tmp_path: Path, s3_client: Any, bucket: str, client: Any, s3_proxy: S3Proxy
) -> None:
    path = make_file(tmp_path, 2 * PART + 1)
    foreign = {"owner": "other-worker/1/abcdef", "note": "written by a try that started at the same moment"}

    def race(r: S3Request) -> None:  # the other try writes its state between our Create and ours
        if r.op == "CreateMultipartUpload":
            s3_client.put_object(Bucket=bucket, Key=STATE, Body=json.dumps(foreign).encode())

    s3_proxy.add_fault(race, times=1)
    with pytest.raises(ConcurrentUploadError, match="other-worker/1/abcdef"):
        ResumableUploader(client, bucket, "k", config=config()).upload_file(str(path))
    assert json.loads(read(s3_client, bucket, STATE)) == foreign  # not overwritten
    assert uploads(s3_client, bucket) == []  # our own new upload was aborted
    assert s3_proxy.count("UploadPart") == 0


def test_state_write_whose_answer_was_lost_is_recognised_as_ours(  # noqa: PLR0917 - pytest fixtures
    tmp_path: Path, s3: Any, s3_client: Any, bucket: str, client: Any, s3_proxy: S3Proxy
) -> None:
    path = make_file(tmp_path, 3 * PART)

    def drop_first_of_each_kind(header: str) -> Callable[[S3Request], Any]:
        return lambda r: DropResponse() if r.op == "PutObject" and r.key == STATE and header in r.headers else None

    s3_proxy.add_fault(drop_first_of_each_kind("if-none-match"), times=1)  # the state's creation
    s3_proxy.add_fault(drop_first_of_each_kind("if-match"), times=1)  # its first update
    result = ResumableUploader(client, bucket, "k", config=config(max_concurrency=1)).upload_file(str(path))
    state_puts = [r.status for r in s3_proxy.requests if r.op == "PutObject" and r.key == STATE]
    if s3.origin == "rgw":  # RGW refuses the quoted If-Match itself: its 412 is lost, then learned once
        assert state_puts[:5] == [200, 412, 412, 412, 200]
    else:
        assert state_puts[:4] == [200, 412, 200, 412]  # each retry met our own write
    assert result.uploaded_parts == 3
    assert read(s3_client, bucket, "k") == path.read_bytes() and keys(s3_client, bucket) == ["k"]


def test_store_refusing_quoted_if_match_is_learned_once_not_reported_as_another_try(  # noqa: PLR0917
    tmp_path: Path,
    s3: Any,
    s3_client: Any,
    bucket: str,
    client: Any,
    s3_proxy: S3Proxy,
    caplog: pytest.LogCaptureFixture,
) -> None:
    """Ceph RGW 16 answers 412 to an If-Match naming, quoted as every S3 answer quotes ETags, the very
    version it holds. RGW does it itself; on moto the proxy plays that store."""
    if s3.is_moto:
        s3_proxy.add_fault(
            lambda r: (
                Status(412, "PreconditionFailed")
                if r.op == "PutObject" and r.headers.get("if-match", "").startswith('"')
                else None
            )
        )
    path = make_file(tmp_path, 3 * PART)
    with caplog.at_level(logging.WARNING, logger="airflow_s3stream"):
        first = ResumableUploader(client, bucket, "k", config=config(max_concurrency=1)).upload_file(str(path))
        second = ResumableUploader(client, bucket, "k2", config=config(max_concurrency=1)).upload_file(str(path))
    conditional = [r for r in s3_proxy.requests if r.op == "PutObject" and "if-match" in r.headers]
    refused = [r for r in conditional if r.status == 412]
    assert len(refused) == 1 and refused[0].headers["if-match"].startswith('"')  # found out once per endpoint
    later = conditional[conditional.index(refused[0]) + 1 :]
    assert later and all(r.status == 200 and not r.headers["if-match"].startswith('"') for r in later)
    assert sum("refuses a matching If-Match" in m for m in caplog.messages) == 1
    assert not any("another try" in m for m in caplog.messages)
    assert (first.uploaded_parts, second.uploaded_parts) == (3, 3)
    assert read(s3_client, bucket, "k") == read(s3_client, bucket, "k2") == path.read_bytes()
    assert sorted(keys(s3_client, bucket)) == ["k", "k2"] and uploads(s3_client, bucket) == []  # states deleted


def test_a_try_whose_state_was_taken_over_learns_it_at_its_next_write(s3_client: Any, bucket: str) -> None:
    first = StateStore(s3_client, bucket, STATE, RetryPolicy(), destination=f"s3://{bucket}/k")
    first.create(b'{"owner": "first"}', replacing=None)
    stored = s3_client.get_object(Bucket=bucket, Key=STATE)
    second = StateStore(s3_client, bucket, STATE, RetryPolicy(), destination=f"s3://{bucket}/k")
    second.create(b'{"owner": "second", "lease": 120}', replacing=str(stored["ETag"]))  # took the stale state over
    with pytest.raises(ConcurrentUploadError, match=rf"s3://{bucket}/k: .*held by second"):
        first.save(b'{"owner": "first", "parts": 1}')
    second.delete()
    with pytest.raises(ConcurrentUploadError, match="was deleted meanwhile"):
        first.save(b'{"owner": "first", "parts": 2}')
    assert keys(s3_client, bucket) == []


# -- 5. ListParts errors are classified -------------------------------------------------------


def test_list_parts_throttled_then_answered_resumes(
    tmp_path: Path, s3_client: Any, bucket: str, client: Any, s3_proxy: S3Proxy
) -> None:
    path = make_file(tmp_path, 3 * PART)
    s3_proxy.add_fault(on("UploadPart", Status(503, "SlowDown"), partNumber="3"))
    with pytest.raises(TransientError, match="part 3"):
        ResumableUploader(client, bucket, "k", config=config(max_concurrency=1)).upload_file(str(path))
    s3_proxy.clear_faults()
    s3_proxy.clear()
    s3_proxy.add_fault(on("ListParts", Status(503, "SlowDown")), times=2)
    result = ResumableUploader(client, bucket, "k", config=config(max_concurrency=1)).upload_file(str(path))
    assert statuses(s3_proxy, "ListParts") == [503, 503, 200]
    assert (result.resumed_parts, result.uploaded_parts) == (2, 1)
    assert s3_proxy.count("CreateMultipartUpload") == 0
    assert read(s3_client, bucket, "k") == path.read_bytes()


def test_list_parts_access_denied_raises_naming_the_key_and_keeps_the_upload(
    tmp_path: Path, s3_client: Any, bucket: str, client: Any, s3_proxy: S3Proxy
) -> None:
    path = make_file(tmp_path, 3 * PART)
    s3_proxy.add_fault(on("UploadPart", Status(503, "SlowDown"), partNumber="3"))
    with pytest.raises(TransientError):
        ResumableUploader(client, bucket, "k", config=config(max_concurrency=1)).upload_file(str(path))
    kept = uploads(s3_client, bucket)
    s3_proxy.clear_faults()
    s3_proxy.clear()
    s3_proxy.add_fault(on("ListParts", Status(403, "AccessDenied")))
    with pytest.raises(DestinationError, match=rf"parts of upload .* of s3://{bucket}/k: AccessDenied"):
        ResumableUploader(client, bucket, "k", config=config(max_concurrency=1)).upload_file(str(path))
    assert statuses(s3_proxy, "ListParts") == [403]  # refused: not retried, not read as "gone"
    assert s3_proxy.count("CreateMultipartUpload") == s3_proxy.count("AbortMultipartUpload") == 0
    assert uploads(s3_client, bucket) == kept and STATE in keys(s3_client, bucket)


# -- retries: one layer, named failures --------------------------------------------------------


def test_503_during_the_final_source_check_of_a_copy_is_retried(
    s3_client: Any, bucket: str, client: Any, s3_proxy: S3Proxy
) -> None:
    data = os.urandom(2 * PART + 5)
    s3_client.put_object(Bucket=bucket, Key="src", Body=data)

    def after_the_copy(r: S3Request) -> Any:
        copied = any(x.op == "UploadPartCopy" for x in s3_proxy.requests)
        return Status(503, "SlowDown") if copied and r.op == "HeadObject" and r.key == "src" else None

    s3_proxy.add_fault(after_the_copy, times=2)
    result = ResumableUploader(client, bucket, "dst", config=config()).copy_object(f"s3://{bucket}/src")
    heads = [r.status for r in s3_proxy.requests if r.op == "HeadObject" and r.key == "src"]
    assert heads == [200, 503, 503, 200]  # planning, then the final check retried
    assert result.copied and read(s3_client, bucket, "dst") == data


def test_503_storm_on_one_part_sends_it_exactly_max_attempts_times(
    tmp_path: Path, s3_client: Any, bucket: str, client: Any, s3_proxy: S3Proxy
) -> None:
    path = make_file(tmp_path, 3 * PART)
    s3_proxy.add_fault(on("UploadPart", Status(503, "SlowDown"), partNumber="2"))
    with pytest.raises(TransientError, match=rf"part 2 of s3://{bucket}/k: still failing after 6 attempts"):
        ResumableUploader(client, bucket, "k", config=config(max_concurrency=1), resume=False).upload_file(str(path))
    sends = [r for r in s3_proxy.requests if r.op == "UploadPart" and r.query["partNumber"] == "2"]
    assert len(sends) == RetryPolicy().max_attempts == 6  # not attempts x botocore's attempts
    assert uploads(s3_client, bucket) == []


def test_part_corrupted_on_every_send_is_sent_exactly_max_attempts_times(
    tmp_path: Path, s3_client: Any, bucket: str, client: Any, s3_proxy: S3Proxy
) -> None:
    path = make_file(tmp_path, 3 * PART)
    s3_proxy.add_fault(on("UploadPart", Corrupt(offset=100), partNumber="2"))
    with pytest.raises(ChecksumMismatchError, match=rf"part 2 of s3://{bucket}/k: .* after 6 attempts"):
        ResumableUploader(client, bucket, "k", config=config(max_concurrency=1), resume=False).upload_file(str(path))
    sends = [r for r in s3_proxy.requests if r.op == "UploadPart" and r.query["partNumber"] == "2"]
    assert len(sends) == RetryPolicy().max_attempts == 6  # one loop: not attempts x attempts
    assert uploads(s3_client, bucket) == []


def test_the_retry_budget_stops_a_storm_shared_by_every_stream_of_a_task(
    s3_client: Any, bucket: str, client: Any, s3_proxy: S3Proxy
) -> None:
    for n in range(4):
        s3_client.put_object(Bucket=bucket, Key=f"o{n}", Body=b"x")
    s3_proxy.add_fault(on("HeadObject", Status(503, "SlowDown")))
    policy = RetryPolicy(budget=RetryBudget(capacity=3 * RETRY_COST))  # three retries for the task
    with concurrent.futures.ThreadPoolExecutor(4) as pool:
        heads = [pool.submit(head_object, client, bucket, f"o{n}", policy) for n in range(4)]
        failures = [f.exception() for f in heads]
    assert all(isinstance(e, TransientError) for e in failures)
    assert sum("the retry budget is spent" in str(e) for e in failures) == 4
    assert s3_proxy.count("HeadObject") == 4 + 3  # not 4 x 6


@pytest.mark.parametrize(
    "case", [({"total_max_attempts": 2}, None, 2), ({}, 3, 3)], ids=["connection retries", "operator max_attempts"]
)
def test_operators_take_their_attempts_from_the_connection_unless_given(
    tmp_path: Path, bucket: str, proxy_aws_conn: Callable[..., str], s3_proxy: S3Proxy, case: tuple[Any, ...]
) -> None:
    retries, max_attempts, sends = case
    path = make_file(tmp_path, 2 * PART)
    s3_proxy.add_fault(on("UploadPart", Status(503, "SlowDown"), partNumber="2"))
    conn_id = proxy_aws_conn(retries=retries) if retries else proxy_aws_conn()
    op = S3MultipartUploadOperator(
        task_id="up",
        source=str(path),
        s3_bucket=bucket,
        s3_key="k",
        aws_conn_id=conn_id,
        part_size=PART,
        max_concurrency=1,
        resume=False,
        max_attempts=max_attempts,
    )
    with pytest.raises(TransientError, match=rf"s3://{bucket}/k"):
        op.execute({})
    assert len([r for r in s3_proxy.requests if r.op == "UploadPart" and r.query["partNumber"] == "2"]) == sends


# -- 6. the writer's small promises ------------------------------------------------------------


def test_writer_abort_twice_and_after_a_failed_close_sends_one_abort(
    s3_client: Any, bucket: str, client: Any, s3_proxy: S3Proxy
) -> None:
    w = MultipartWriter(client, bucket, "a", config=config())
    w.write(os.urandom(PART + 1))
    w.abort()
    w.abort()
    assert s3_proxy.count("AbortMultipartUpload") == 1

    s3_proxy.add_fault(on("CompleteMultipartUpload", Status(403, "AccessDenied")))
    w = MultipartWriter(client, bucket, "b", config=config())
    w.write(os.urandom(PART + 1))
    with pytest.raises(DestinationError, match="AccessDenied"):
        w.close()
    w.abort()
    w.close()
    assert s3_proxy.count("AbortMultipartUpload") == 2
    assert uploads(s3_client, bucket) == [] and keys(s3_client, bucket) == []


def test_unclosed_writer_warns_and_makes_no_call_when_collected(
    s3_client: Any, bucket: str, client: Any, s3_proxy: S3Proxy, caplog: pytest.LogCaptureFixture
) -> None:
    w = MultipartWriter(client, bucket, "forgotten", config=config())
    w.write(os.urandom(PART + 1))
    concurrent.futures.wait(w._futures)  # the part is stored before the writer is dropped
    sent = s3_proxy.count()
    with caplog.at_level(logging.WARNING, logger="airflow_s3stream"):
        del w
        gc.collect()
    assert s3_proxy.count() == sent  # nothing on the network from the garbage collector
    assert f"s3://{bucket}/forgotten" in caplog.text and "abort_stale_uploads" in caplog.text
    assert len(uploads(s3_client, bucket)) == 1
