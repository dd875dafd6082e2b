"""ResumableUploader over HTTP: local files by range, server-side copies, faults, resume after kill -9."""

from __future__ import annotations

import dataclasses
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytest

from airflow_s3stream.errors import (
    ChecksumMismatchError,
    DestinationError,
    SourceChangedError,
    SourceError,
    TransientError,
    UploadInterruptedError,
)
from airflow_s3stream.s3.multipart import MultipartConfig
from airflow_s3stream.s3.retry import RetryPolicy
from airflow_s3stream.units import MiB
from airflow_s3stream.upload.resume import state_key
from airflow_s3stream.upload.uploader import DEFAULT_STATE_LEASE, ResumableUploader
from tests.support.s3proxy import Corrupt, Delay, Reset, S3Proxy, Status

FAST_RETRY = RetryPolicy(max_attempts=3, base_delay=0.01, max_delay=0.05)
PART = 5 * MiB


@pytest.fixture
def proxy_client(s3: Any, s3_proxy: S3Proxy) -> Any:
    via_proxy = dataclasses.replace(s3, endpoint_url=s3_proxy.endpoint_url, _handle=None)
    return via_proxy.client(retries={"total_max_attempts": 1}, max_pool_connections=16)


def config(**kw: Any) -> MultipartConfig:
    kw.setdefault("part_size", PART)
    kw.setdefault("retry", FAST_RETRY)
    return MultipartConfig(**kw)


def make_file(tmp_path: Path, size: int, name: str = "source.bin") -> Path:
    path = tmp_path / name
    path.write_bytes(os.urandom(size))
    return path


def read(client: Any, bucket: str, key: str) -> bytes:
    return client.get_object(Bucket=bucket, Key=key)["Body"].read()


def uploads(client: Any, bucket: str) -> list[dict[str, Any]]:
    return client.list_multipart_uploads(Bucket=bucket).get("Uploads", [])


def keys(client: Any, bucket: str) -> list[str]:
    return [o["Key"] for o in client.list_objects_v2(Bucket=bucket).get("Contents", [])]


def part_numbers(proxy: S3Proxy, op: str = "UploadPart") -> list[int]:
    return sorted(int(r.query["partNumber"]) for r in proxy.requests if r.op == op)


@pytest.mark.parametrize("concurrency", [1, 5])
def test_file_is_uploaded_by_range_in_parts_of_different_sizes(  # noqa: PLR0917 - pytest fixtures
    tmp_path: Path, s3_client: Any, bucket: str, proxy_client: Any, s3_proxy: S3Proxy, concurrency: int
) -> None:
    path = make_file(tmp_path, 4 * PART + 4321)
    result = ResumableUploader(
        proxy_client, bucket, "dest/obj.bin", config=config(max_concurrency=concurrency), compute_sha256=True
    ).upload_file(str(path))
    assert read(s3_client, bucket, "dest/obj.bin") == path.read_bytes()
    assert sorted(r.body_len for r in s3_proxy.requests if r.op == "UploadPart") == [4321] + [PART] * 4
    assert (result.size, result.parts, result.uploaded_parts, result.resumed_parts) == (path.stat().st_size, 5, 5, 0)
    import hashlib

    assert result.sha256 == hashlib.sha256(path.read_bytes()).hexdigest()
    assert keys(s3_client, bucket) == ["dest/obj.bin"]  # resume state removed after success
    assert uploads(s3_client, bucket) == []


@pytest.mark.parametrize("size", [0, 1234])
def test_file_smaller_than_a_part_is_a_single_put(  # noqa: PLR0917 - pytest fixtures
    tmp_path: Path, s3_client: Any, bucket: str, proxy_client: Any, s3_proxy: S3Proxy, size: int
) -> None:
    path = make_file(tmp_path, size)
    result = ResumableUploader(proxy_client, bucket, "k", config=config()).upload_file(str(path))
    assert read(s3_client, bucket, "k") == path.read_bytes()
    puts = [r for r in s3_proxy.requests if r.op == "PutObject" and r.key == "k"]
    assert (len(puts), s3_proxy.count("CreateMultipartUpload")) == (1, 0)
    assert result.parts == 0 and result.size == size


def test_missing_source_fails_before_any_request(
    tmp_path: Path, bucket: str, proxy_client: Any, s3_proxy: S3Proxy
) -> None:
    with pytest.raises(SourceError, match=r"source file .*nope\.bin does not exist"):
        ResumableUploader(proxy_client, bucket, "k", config=config()).upload_file(str(tmp_path / "nope.bin"))
    assert s3_proxy.count() == 0


def test_transient_faults_are_retried_to_success(
    tmp_path: Path, s3_client: Any, bucket: str, proxy_client: Any, s3_proxy: S3Proxy
) -> None:
    s3_proxy.add_fault(lambda r: Status(503, "SlowDown") if r.op == "UploadPart" else None, times=2)
    s3_proxy.add_fault(lambda r: Status(500, "InternalError") if r.op == "UploadPart" else None, times=1)
    s3_proxy.add_fault(lambda r: Reset() if r.op == "UploadPart" else None, times=1)
    s3_proxy.add_fault(lambda r: Status(503, "SlowDown") if r.op == "CompleteMultipartUpload" else None, times=1)
    path = make_file(tmp_path, 3 * PART)
    ResumableUploader(proxy_client, bucket, "k", config=config(max_concurrency=2)).upload_file(str(path))
    assert read(s3_client, bucket, "k") == path.read_bytes()
    assert s3_proxy.count("UploadPart") == 3 + 4
    assert s3_proxy.count("CompleteMultipartUpload") == 2


def test_access_denied_fails_at_once_and_aborts(
    tmp_path: Path, s3_client: Any, bucket: str, proxy_client: Any, s3_proxy: S3Proxy
) -> None:
    s3_proxy.add_fault(lambda r: Status(403, "AccessDenied") if r.op == "UploadPart" else None)
    path = make_file(tmp_path, 3 * PART)
    with pytest.raises(DestinationError, match=rf"of s3://{bucket}/k: AccessDenied"):
        ResumableUploader(proxy_client, bucket, "k", config=config(max_concurrency=1)).upload_file(str(path))
    assert s3_proxy.count("UploadPart") == 1
    assert s3_proxy.count("AbortMultipartUpload") == 1
    assert uploads(s3_client, bucket) == []
    assert keys(s3_client, bucket) == []  # neither object nor resume state


def test_corruption_on_every_attempt_is_a_checksum_mismatch_and_aborts(  # noqa: PLR0917 - pytest fixtures
    tmp_path: Path, s3: Any, s3_client: Any, bucket: str, proxy_client: Any, s3_proxy: S3Proxy
) -> None:
    s3_proxy.add_fault(lambda r: Corrupt(offset=100) if r.op == "UploadPart" and r.query["partNumber"] == "2" else None)
    path = make_file(tmp_path, 3 * PART)
    # moto checks nothing: the part's MD5 against its ETag catches it; RGW refuses the body itself
    # (it checks the SigV4 payload hash botocore signs over plain HTTP)
    caught = "server refused the checksum" if s3.origin == "rgw" else "MD5 mismatch"
    with pytest.raises(ChecksumMismatchError, match=rf"part 2 of s3://{bucket}/k: {caught}"):
        ResumableUploader(proxy_client, bucket, "k", config=config()).upload_file(str(path))
    assert uploads(s3_client, bucket) == []
    assert keys(s3_client, bucket) == []


def test_transient_failure_keeps_state_and_next_try_sends_only_missing_parts(
    tmp_path: Path, s3_client: Any, bucket: str, proxy_client: Any, s3_proxy: S3Proxy
) -> None:
    path = make_file(tmp_path, 6 * PART + 99)
    s3_proxy.add_fault(
        lambda r: Status(503, "SlowDown") if r.op == "UploadPart" and r.query["partNumber"] == "5" else None
    )
    with pytest.raises(TransientError, match="part 5"):
        ResumableUploader(proxy_client, bucket, "k", config=config(max_concurrency=1)).upload_file(str(path))
    assert len(uploads(s3_client, bucket)) == 1
    assert state_key("k") in keys(s3_client, bucket)

    s3_proxy.clear_faults()
    s3_proxy.clear()
    result = ResumableUploader(proxy_client, bucket, "k", config=config(max_concurrency=1)).upload_file(str(path))
    assert part_numbers(s3_proxy) == [5, 6, 7]
    assert (result.resumed_parts, result.uploaded_parts, result.parts) == (4, 3, 7)
    assert read(s3_client, bucket, "k") == path.read_bytes()
    assert uploads(s3_client, bucket) == [] and keys(s3_client, bucket) == ["k"]


def test_parts_stored_after_the_last_state_write_are_adopted_not_resent(
    tmp_path: Path, s3_client: Any, bucket: str, proxy_client: Any, s3_proxy: S3Proxy
) -> None:
    """State writes are coalesced, so a kill can lose parts the server already holds from the state;
    the next try adopts them when ListParts shows their ETag equal to the MD5 of its own bytes."""
    path = make_file(tmp_path, 6 * PART + 99)
    production = config(max_concurrency=1, retry=RetryPolicy())  # the default policy, as in production
    s3_proxy.add_fault(
        lambda r: Status(503, "SlowDown") if r.op == "UploadPart" and r.query["partNumber"] == "5" else None
    )
    with pytest.raises(TransientError, match="part 5"):
        ResumableUploader(proxy_client, bucket, "k", config=production).upload_file(str(path))
    state = json.loads(read(s3_client, bucket, state_key("k")))
    assert [p["number"] for p in state["parts"]] == [1, 2, 3, 4]
    state["parts"] = state["parts"][:1]  # as if parts 2-4 were acknowledged after the last write
    s3_client.put_object(Bucket=bucket, Key=state_key("k"), Body=json.dumps(state).encode())
    with open(path, "r+b") as f:  # and part 3's bytes differ from what the server holds: sent again
        f.seek(2 * PART)
        f.write(b"changed")
    os.utime(path, ns=(int(state["source"]["version"]), int(state["source"]["version"])))

    s3_proxy.clear_faults()
    s3_proxy.clear()
    result = ResumableUploader(proxy_client, bucket, "k", config=production).upload_file(str(path))
    assert part_numbers(s3_proxy) == [3, 5, 6, 7]
    assert (result.resumed_parts, result.uploaded_parts) == (3, 4)
    assert read(s3_client, bucket, "k") == path.read_bytes()


def test_changed_source_is_detected_on_resume_and_upload_restarts(
    tmp_path: Path, s3_client: Any, bucket: str, proxy_client: Any, s3_proxy: S3Proxy
) -> None:
    path = make_file(tmp_path, 4 * PART)
    s3_proxy.add_fault(lambda r: Status(500) if r.op == "UploadPart" and r.query["partNumber"] == "3" else None)
    with pytest.raises(TransientError):
        ResumableUploader(proxy_client, bucket, "k", config=config(max_concurrency=1)).upload_file(str(path))
    old_upload = uploads(s3_client, bucket)[0]["UploadId"]
    s3_proxy.clear_faults()
    s3_proxy.clear()
    with open(path, "r+b") as f:  # same size, one byte different in the middle: caught by the sample CRC
        f.seek(2 * PART)
        byte = f.read(1)
        f.seek(2 * PART)
        f.write(bytes([byte[0] ^ 1]))
    os.utime(path, ns=(path.stat().st_atime_ns, path.stat().st_mtime_ns))  # even with mtime unchanged
    result = ResumableUploader(proxy_client, bucket, "k", config=config(max_concurrency=1)).upload_file(str(path))
    assert result.resumed_parts == 0
    assert part_numbers(s3_proxy) == [1, 2, 3, 4]
    assert [r.query.get("uploadId") for r in s3_proxy.requests if r.op == "AbortMultipartUpload"] == [old_upload]
    assert read(s3_client, bucket, "k") == path.read_bytes()
    assert uploads(s3_client, bucket) == []


def test_source_changing_during_upload_fails_and_publishes_nothing(
    tmp_path: Path, s3_client: Any, bucket: str, proxy_client: Any, s3_proxy: S3Proxy
) -> None:
    path = make_file(tmp_path, 3 * PART)

    def append_once(r: Any) -> None:
        if r.op == "UploadPart" and r.query["partNumber"] == "1":
            with open(path, "ab") as f:
                f.write(b"late writer")

    s3_proxy.add_fault(append_once, times=1)
    with pytest.raises(SourceChangedError, match="changed during the upload"):
        ResumableUploader(proxy_client, bucket, "k", config=config(max_concurrency=1)).upload_file(str(path))
    assert uploads(s3_client, bucket) == []
    assert keys(s3_client, bucket) == []


def test_stop_interrupts_and_keeps_state_for_the_next_try(
    tmp_path: Path, s3_client: Any, bucket: str, proxy_client: Any, s3_proxy: S3Proxy
) -> None:
    path = make_file(tmp_path, 5 * PART)
    uploader = ResumableUploader(proxy_client, bucket, "k", config=config(max_concurrency=1))

    def stop_after_part_2(r: Any) -> None:
        if r.op == "UploadPart" and r.query["partNumber"] == "2":
            uploader.stop()

    s3_proxy.add_fault(stop_after_part_2)
    with pytest.raises(UploadInterruptedError):
        uploader.upload_file(str(path))
    assert len(uploads(s3_client, bucket)) == 1
    s3_proxy.clear_faults()
    s3_proxy.clear()
    result = ResumableUploader(proxy_client, bucket, "k", config=config(max_concurrency=1)).upload_file(str(path))
    assert part_numbers(s3_proxy) == [3, 4, 5]
    assert result.resumed_parts == 2
    assert read(s3_client, bucket, "k") == path.read_bytes()


def test_without_resume_a_transient_failure_aborts(
    tmp_path: Path, s3_client: Any, bucket: str, proxy_client: Any, s3_proxy: S3Proxy
) -> None:
    s3_proxy.add_fault(lambda r: Status(500) if r.op == "UploadPart" and r.query["partNumber"] == "2" else None)
    path = make_file(tmp_path, 3 * PART)
    with pytest.raises(TransientError):
        ResumableUploader(proxy_client, bucket, "k", config=config(), resume=False).upload_file(str(path))
    assert uploads(s3_client, bucket) == []
    assert keys(s3_client, bucket) == []


def test_s3_source_is_copied_server_side_part_by_part(
    s3_client: Any, bucket: str, proxy_client: Any, s3_proxy: S3Proxy
) -> None:
    from airflow_s3stream.s3.multipart import MultipartWriter

    data = os.urandom(3 * PART + 17)
    with MultipartWriter(s3_client, bucket, "src/multi.bin", config=config()) as w:
        w.write(data)
    assert w.result is not None and w.result.parts == 4
    result = ResumableUploader(proxy_client, bucket, "copy/multi.bin", config=config()).copy_object(
        f"s3://{bucket}/src/multi.bin"
    )
    assert result.copied and result.parts == 4
    assert (s3_proxy.count("UploadPartCopy"), s3_proxy.count("UploadPart")) == (4, 0)
    assert [r for r in s3_proxy.requests if r.op == "GetObject" and r.key == "src/multi.bin"] == []  # no bytes read
    assert read(s3_client, bucket, "copy/multi.bin") == data
    assert sorted(keys(s3_client, bucket)) == ["copy/multi.bin", "src/multi.bin"]


def test_missing_s3_source_is_a_source_error(bucket: str, proxy_client: Any, s3_proxy: S3Proxy) -> None:
    with pytest.raises(SourceError, match=rf"s3://{bucket}/absent: does not exist"):
        ResumableUploader(proxy_client, bucket, "k", config=config()).copy_object(f"s3://{bucket}/absent")
    assert s3_proxy.count("CreateMultipartUpload") == 0


def test_s3_source_replaced_during_copy_fails_and_publishes_nothing(
    s3_client: Any, bucket: str, proxy_client: Any, s3_proxy: S3Proxy
) -> None:
    s3_client.put_object(Bucket=bucket, Key="src", Body=os.urandom(2 * PART + 1))

    def replace_source(r: Any) -> None:
        if r.op == "UploadPartCopy" and r.query["partNumber"] == "1":
            s3_client.put_object(Bucket=bucket, Key="src", Body=b"replaced")

    s3_proxy.add_fault(replace_source, times=1)
    with pytest.raises(SourceChangedError, match="was replaced during the copy"):
        ResumableUploader(proxy_client, bucket, "dst", config=config(max_concurrency=1)).copy_object(
            f"s3://{bucket}/src"
        )
    assert uploads(s3_client, bucket) == []
    assert keys(s3_client, bucket) == ["src"]


CHILD = """
import json, sys
from airflow_s3stream.s3.multipart import MultipartConfig
from airflow_s3stream.upload.uploader import ResumableUploader
import boto3
from botocore.config import Config
from airflow_s3stream.s3.client import single_attempt_config
endpoint, key_id, secret, bucket, key, path, conc = sys.argv[1:8]
production = single_attempt_config(Config(s3={"addressing_style": "path"}), max_pool_connections=16)
client = boto3.client("s3", endpoint_url=endpoint, aws_access_key_id=key_id, aws_secret_access_key=secret,
                      region_name="us-east-1", config=production)
config = MultipartConfig(part_size=5 * 1024 * 1024, max_concurrency=int(conc))
result = ResumableUploader(client, bucket, key, config=config).upload_file(path)
print(json.dumps(result.to_dict()))
"""


def test_immediate_retry_after_kill_9_waits_out_the_lease_and_sends_only_missing_parts(  # noqa: PLR0917
    tmp_path: Path, s3: Any, s3_client: Any, bucket: str, proxy_client: Any, s3_proxy: S3Proxy
) -> None:
    """The production settings (default lease, retry policy, part checks): a retry that starts the
    moment the worker was killed finishes the upload in that same try, sending only missing parts."""
    total, concurrency = 12, 2
    path = make_file(tmp_path, total * PART - 1000)
    s3_proxy.add_fault(lambda r: Delay(0.25) if r.op == "UploadPart" else None)  # slow enough to kill mid-way
    child = subprocess.Popen(
        [
            sys.executable,
            "-c",
            CHILD,
            s3_proxy.endpoint_url,
            s3.access_key_id,
            s3.secret_access_key,
            bucket,
            "big.bin",
            str(path),
            str(concurrency),
        ],
        stdout=subprocess.PIPE,
        stderr=subprocess.DEVNULL,
    )
    deadline = time.monotonic() + 60
    stored = 0
    while time.monotonic() < deadline and stored < 5:
        found = uploads(s3_client, bucket)
        if found:
            listed = s3_client.list_parts(Bucket=bucket, Key="big.bin", UploadId=found[0]["UploadId"])
            stored = len(listed.get("Parts", []))
        time.sleep(0.05)
    child.send_signal(signal.SIGKILL)
    child.wait()
    assert child.returncode == -signal.SIGKILL, "the child finished before it could be killed"
    time.sleep(1)  # parts the proxy had fully received still land, as they may on S3
    found = uploads(s3_client, bucket)
    assert len(found) == 1
    stored_at_kill = {
        p["PartNumber"]
        for p in s3_client.list_parts(Bucket=bucket, Key="big.bin", UploadId=found[0]["UploadId"])["Parts"]
    }
    assert 5 <= len(stored_at_kill) < total
    s3_proxy.clear_faults()
    s3_proxy.clear()

    started = time.monotonic()
    result = ResumableUploader(proxy_client, bucket, "big.bin", config=config(max_concurrency=concurrency,
                               retry=RetryPolicy())).upload_file(str(path))  # fmt: skip
    waited = time.monotonic() - started
    sent = part_numbers(s3_proxy)
    missing = set(range(1, total + 1)) - stored_at_kill
    assert DEFAULT_STATE_LEASE - 10 <= waited <= DEFAULT_STATE_LEASE + 30  # the dead try's lease, nothing more
    assert missing <= set(sent)  # every missing part was sent
    assert len(sent) <= len(missing) + concurrency  # plus at most the parts in flight at the last state write
    assert len(sent) == len(set(sent)) == result.uploaded_parts
    assert result.resumed_parts == total - len(sent)
    assert read(s3_client, bucket, "big.bin") == path.read_bytes()
    assert uploads(s3_client, bucket) == [] and keys(s3_client, bucket) == ["big.bin"]


RSS_CHILD = """
import json, os, sys
import boto3
from botocore.config import Config
from airflow_s3stream.s3.multipart import MultipartConfig, MultipartWriter
from airflow_s3stream.upload.uploader import ResumableUploader
from tests.support.memory import peak_rss_kib
endpoint, key_id, secret, bucket, mode, size_mib = sys.argv[1:7]
client = boto3.client("s3", endpoint_url=endpoint, aws_access_key_id=key_id, aws_secret_access_key=secret,
                      region_name="us-east-1", config=Config(s3={"addressing_style": "path"}, max_pool_connections=16))
config = MultipartConfig(part_size=8 * 1024 * 1024, max_concurrency=4)
client.list_buckets()  # warm everything up before the baseline
baseline = peak_rss_kib()
block = os.urandom(1024 * 1024)
if mode == "writer":
    with MultipartWriter(client, bucket, "rss.bin", config=config) as w:
        for _ in range(int(size_mib)):
            w.write(block)
print(json.dumps({"baseline_kib": baseline, "peak_kib": peak_rss_kib()}))
"""


@pytest.mark.slow
def test_peak_rss_of_a_1gb_streamed_upload_stays_within_the_bound(s3: Any, bucket: str) -> None:
    proc = subprocess.Popen(
        [
            sys.executable,
            "-c",
            RSS_CHILD,
            s3.endpoint_url,
            s3.access_key_id,
            s3.secret_access_key,
            bucket,
            "writer",
            "1024",
        ],
        stdout=subprocess.PIPE,
        text=True,
    )
    assert proc.stdout is not None
    out = proc.stdout.read()
    assert proc.wait() == 0
    measured = json.loads(out.splitlines()[-1])
    baseline_mib, peak_mib = measured["baseline_kib"] / 1024, measured["peak_kib"] / 1024
    bound_mib = baseline_mib + (4 + 1) * 8 + 32  # (max_concurrency + 1) x part_size + small buffers
    assert peak_mib <= bound_mib, f"peak RSS {peak_mib:.0f} MiB > bound {bound_mib:.0f} MiB"
