"""S3-compatible stores without additional checksums: ``checksum_algorithm`` ``MD5`` and ``auto``.

The proxy plays such a store (Backblaze B2, some MinIO / Ceph RGW / OBS versions): every request
carrying an ``x-amz-checksum-*``, ``x-amz-sdk-checksum-algorithm`` or ``x-amz-trailer`` header is
answered 400 ``InvalidArgument`` "Unsupported header '<name>' received for this API call." before it
reaches the real endpoint. Clients come from ``S3StreamHook`` through ``proxy_aws_conn`` (the
production configuration), mostly with the connection settings those stores document
(``request_checksum_calculation`` and ``response_checksum_validation`` ``when_required``) and, where
marked, with botocore's defaults (``when_supported``, which adds a CRC32 to PutObject/UploadPart).
"""

from __future__ import annotations

import base64
import dataclasses
import hashlib
import json
import logging
import os
import zipfile
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from airflow.sdk.exceptions import AirflowFailException

from airflow_s3stream.archive.extract import extract_members
from airflow_s3stream.errors import DestinationError, TransientError, UploadError
from airflow_s3stream.hooks.s3 import S3StreamHook
from airflow_s3stream.load.sources import SourceSpec, resolve_source
from airflow_s3stream.operators import PostgresToS3StreamOperator, S3MultipartUploadOperator
from airflow_s3stream.s3.multipart import MultipartConfig, MultipartWriter
from airflow_s3stream.s3.objects import delete_keys
from airflow_s3stream.s3.retry import RetryPolicy
from airflow_s3stream.s3.store_checks import PROBE_PREFIX
from airflow_s3stream.units import MiB
from airflow_s3stream.upload.uploader import ResumableUploader
from tests.support.bags import zip_bytes
from tests.support.s3proxy import Corrupt, S3Proxy, S3Request, Status

FAST_RETRY = RetryPolicy(max_attempts=4, base_delay=0.01, max_delay=0.05)
STORE_SETTINGS = {"request_checksum_calculation": "when_required", "response_checksum_validation": "when_required"}
FALLBACK_WARNING = "refuses additional checksum headers"


def checksum_headers(request: S3Request) -> list[str]:
    """The headers of ``request`` that stores without additional checksums refuse."""
    return sorted(
        name
        for name in request.headers
        if name.startswith("x-amz-checksum-") or name in ("x-amz-sdk-checksum-algorithm", "x-amz-trailer")
    )


def refuse_checksum_headers(request: S3Request) -> Status | None:
    """Answer like such a store: 400 InvalidArgument naming the first checksum header."""
    names = checksum_headers(request)
    if not names:
        return None
    return Status(400, "InvalidArgument", f"Unsupported header '{names[0]}' received for this API call.")


def work(proxy: S3Proxy) -> list[S3Request]:
    """The requests of the uploads themselves, without the endpoint's checksum probe."""
    return [r for r in proxy.requests if not r.key.startswith(PROBE_PREFIX)]


def probe_refusals(proxy: S3Proxy) -> list[list[str]]:
    """The checksum headers of each probe the store refused (the probe is how auto learns it)."""
    probes = [r for r in proxy.requests if r.key.startswith(PROBE_PREFIX) and r.status == 400]
    return [checksum_headers(r) for r in probes if checksum_headers(r)]  # not RGW's BadDigest to a wrong MD5


def carrying_checksums(proxy: S3Proxy) -> list[tuple[str, list[str]]]:
    return [(r.op, checksum_headers(r)) for r in work(proxy) if checksum_headers(r)]


def refused(proxy: S3Proxy) -> int:
    return sum(1 for r in work(proxy) if r.status == 400)


def probe_denied(request: S3Request) -> Status | None:
    """No permission to write the probe key: auto starts with CRC32C, as it did before probing."""
    return Status(403, "AccessDenied", "Access Denied") if request.key.startswith(PROBE_PREFIX) else None


def read(client: Any, bucket: str, key: str) -> bytes:
    return bytes(client.get_object(Bucket=bucket, Key=key)["Body"].read())


def open_uploads(client: Any, bucket: str) -> list[str]:
    return [u["Key"] for u in client.list_multipart_uploads(Bucket=bucket).get("Uploads", [])]


def config(algorithm: str, **kw: Any) -> MultipartConfig:
    return MultipartConfig(checksum_algorithm=algorithm, part_size=5 * MiB, retry=FAST_RETRY, **kw)


@pytest.fixture
def store(s3_proxy: S3Proxy) -> S3Proxy:
    """The proxy as a store that refuses additional checksum headers."""
    s3_proxy.add_fault(refuse_checksum_headers)
    return s3_proxy


@pytest.fixture
def store_conn(store: S3Proxy, proxy_aws_conn: Callable[..., str]) -> str:
    """An ``aws`` connection to that store, configured as its documentation asks."""
    return proxy_aws_conn("aws_no_checksums", **STORE_SETTINGS)


@pytest.fixture
def store_client(store_conn: str) -> Any:
    return S3StreamHook(aws_conn_id=store_conn).get_s3_client()


# -- uploads ---------------------------------------------------------------------------------


@pytest.mark.parametrize("algorithm", ["auto", "MD5"])
@pytest.mark.parametrize(
    ("source_kind", "size"),
    [("file", 3 * 5 * MiB + 12_345), ("file", 1234), ("s3copy", 2 * 5 * MiB + 7), ("uri", 2 * 5 * MiB + 7)],
    ids=["file-multipart", "file-single-put", "server-side-copy", "uri-stream"],
)
def test_upload_to_a_store_without_checksums_succeeds_byte_for_byte(  # noqa: PLR0917 - pytest fixtures
    tmp_path: Path,
    s3_client: Any,
    bucket: str,
    store: S3Proxy,
    store_conn: str,
    algorithm: str,
    source_kind: str,
    size: int,
) -> None:
    data = os.urandom(size)
    if source_kind == "file":
        (tmp_path / "src.bin").write_bytes(data)
        source = str(tmp_path / "src.bin")
    else:
        s3_client.put_object(Bucket=bucket, Key="src.bin", Body=data)
        source = f"s3://{bucket}/src.bin"
    op = S3MultipartUploadOperator(
        task_id="up",
        source=source,
        s3_bucket=bucket,
        s3_key="dest.bin",
        aws_conn_id=store_conn,
        part_size=5 * MiB,
        checksum_algorithm=algorithm,
        max_attempts=3,
        source_aws_conn_id=store_conn if source_kind == "uri" else None,  # read by the stream, not copied
    )
    result = op.execute({})
    assert read(s3_client, bucket, "dest.bin") == data
    assert result["checksum_algorithm"] == "MD5"
    assert result["copied"] == (source_kind == "s3copy")
    assert "size" in result["verified"]
    if source_kind != "s3copy":  # a server-side copy has no local MD5s to compare the ETag with
        assert "etag" in result["verified"]
        assert result["checksum"] == result["etag"]  # an MD5 upload's checksum is its ETag
    assert open_uploads(s3_client, bucket) == []
    expected_keys = ["dest.bin"] if source_kind == "file" else ["dest.bin", "src.bin"]
    assert listing(s3_client, bucket, "") == expected_keys  # no resume state left behind
    # MD5: nothing ever carried a checksum header; auto: only its probe did, refused; no upload request
    assert refused(store) == 0
    assert probe_refusals(store) == ([["x-amz-checksum-crc32c"]] if algorithm == "auto" else [])
    assert all(r.status == 400 for r in store.requests if checksum_headers(r))
    if result["parts"]:
        parts = [r for r in store.requests if r.op == "UploadPart" and r.status == 200]
        assert source_kind == "s3copy" or all("content-md5" in r.headers for r in parts)


@pytest.mark.parametrize("algorithm", ["auto", "MD5"])
def test_md5_sends_no_checksum_header_even_where_botocore_would_add_one(  # noqa: PLR0917 - pytest fixtures
    tmp_path: Path, s3_client: Any, bucket: str, store: S3Proxy, proxy_aws_conn: Callable[..., str], algorithm: str
) -> None:
    # botocore's default when_supported adds x-amz-checksum-crc32 to every PutObject and UploadPart,
    # Content-MD5 or not; the package keeps it from doing so on its MD5 requests.
    client = S3StreamHook(aws_conn_id=proxy_aws_conn("aws_defaults")).get_s3_client()
    big, small = os.urandom(2 * 5 * MiB + 99), b"a small file\n"
    (tmp_path / "big").write_bytes(big)
    (tmp_path / "small").write_bytes(small)
    for name in ("big", "small"):
        uploader = ResumableUploader(client, bucket, name, config=config(algorithm), resume=False)
        result = uploader.upload_file(str(tmp_path / name))
        assert (result.checksum_algorithm, "etag" in result.verified) == ("MD5", True)
    assert (read(s3_client, bucket, "big"), read(s3_client, bucket, "small")) == (big, small)
    # auto learnt from its probe (refused) that this store takes no checksum header: no upload request had one
    assert carrying_checksums(store) == []
    assert probe_refusals(store) == ([["x-amz-checksum-crc32c"]] if algorithm == "auto" else [])
    puts = [r for r in work(store) if r.op in ("UploadPart", "PutObject") and r.status == 200]
    assert len(puts) == 4 and all("content-md5" in r.headers for r in puts)


def test_md5_part_corrupted_in_transit_is_caught_by_its_etag_and_sent_again(  # noqa: PLR0917 - pytest fixtures
    s3: Any, s3_client: Any, bucket: str, store: S3Proxy, store_client: Any, caplog: pytest.LogCaptureFixture
) -> None:
    store.add_fault(lambda r: Corrupt(offset=1000) if r.op == "UploadPart" else None, times=1)
    data = os.urandom(2 * 5 * MiB + 1)
    with MultipartWriter(store_client, bucket, "k", config=config("MD5")) as w:
        w.write(data)
    assert read(s3_client, bucket, "k") == data
    assert store.count("UploadPart") == 3 + 1
    # moto stored other bytes than the MD5 we computed; RGW checks Content-MD5 and refused them itself
    assert {"moto": "MD5 mismatch", "rgw": "server refused the checksum: "}[s3.origin] in caplog.text
    assert w.result is not None and "etag" in w.result.verified
    assert carrying_checksums(store) == []


def test_auto_uses_crc32c_where_the_store_checks_it(
    bucket: str, s3_client: Any, s3_proxy: S3Proxy, proxy_aws_conn: Callable[..., str]
) -> None:
    # the store answers the probe's wrong CRC32C as AWS S3 does (moto and RGW would store it)
    s3_proxy.add_fault(
        lambda r: (
            Status(400, "BadDigest", "The CRC32C you specified did not match the calculated checksum.")
            if r.key.startswith(PROBE_PREFIX) and "x-amz-checksum-crc32c" in r.headers
            else None
        )
    )
    client = S3StreamHook(aws_conn_id=proxy_aws_conn("aws_plain")).get_s3_client()
    data = os.urandom(2 * 5 * MiB + 5)
    with MultipartWriter(client, bucket, "multi", config=config("auto")) as w:
        w.write(data)
    with MultipartWriter(client, bucket, "single", config=config("auto")) as single:
        single.write(b"tiny")
    assert (read(s3_client, bucket, "multi"), read(s3_client, bucket, "single")) == (data, b"tiny")
    assert w.result is not None and single.result is not None
    assert (w.result.checksum_algorithm, single.result.checksum_algorithm) == ("CRC32C", "CRC32C")
    create = [r for r in s3_proxy.requests if r.op == "CreateMultipartUpload"]
    assert [r.headers.get("x-amz-checksum-algorithm") for r in create] == ["CRC32C"]
    sent = [r for r in work(s3_proxy) if r.op in ("UploadPart", "PutObject")]
    assert len(sent) == 4 and all("x-amz-checksum-crc32c" in r.headers for r in sent)
    assert refused(s3_proxy) == 0
    assert w.result.checked_by_store == single.result.checked_by_store == ["CRC32C"]


def test_fallback_is_logged_once_and_the_next_upload_goes_straight_to_md5(
    s3_client: Any, bucket: str, store: S3Proxy, store_client: Any, caplog: pytest.LogCaptureFixture
) -> None:
    first, second = os.urandom(5 * MiB + 1), os.urandom(5 * MiB + 2)
    with caplog.at_level(logging.WARNING, logger="airflow_s3stream"):
        for key, data in (("first", first), ("second", second)):
            with MultipartWriter(store_client, bucket, key, config=config("auto")) as w:
                w.write(data)
            assert w.result is not None and w.result.checksum_algorithm == "MD5"
        # another client of the same endpoint (a later task in this process) knows it too
        other = S3StreamHook(aws_conn_id="aws_no_checksums").get_s3_client()
        with MultipartWriter(other, bucket, "third", config=config("auto")) as w:
            w.write(b"small")
    assert (read(s3_client, bucket, "first"), read(s3_client, bucket, "second")) == (first, second)
    assert refused(store) == 0 and probe_refusals(store) == [["x-amz-checksum-crc32c"]]  # the probe, once
    assert store.count("CreateMultipartUpload") == 2  # one per upload: none refused
    assert caplog.text.count(FALLBACK_WARNING) == 1
    assert "Unsupported header 'x-amz-checksum-crc32c'" in caplog.text


@pytest.mark.parametrize("concurrency", [1, 4])
def test_refusal_at_the_first_part_restarts_the_upload_without_checksums(
    s3_client: Any, bucket: str, s3_proxy: S3Proxy, proxy_aws_conn: Callable[..., str], concurrency: int
) -> None:
    # A store that ignores x-amz-checksum-algorithm at CreateMultipartUpload but refuses part checksums,
    # with credentials that may not write the probe key (so auto starts with CRC32C, knowing nothing).
    s3_proxy.add_fault(probe_denied)
    s3_proxy.add_fault(lambda r: refuse_checksum_headers(r) if r.op in ("UploadPart", "PutObject") else None)
    client = S3StreamHook(aws_conn_id=proxy_aws_conn("aws_parts", **STORE_SETTINGS)).get_s3_client()
    data = os.urandom(4 * 5 * MiB + 3)
    with MultipartWriter(client, bucket, "k", config=config("auto", max_concurrency=concurrency)) as w:
        for i in range(0, len(data), 1_000_000):
            w.write(data[i : i + 1_000_000])
    assert read(s3_client, bucket, "k") == data
    assert w.result is not None and (w.result.checksum_algorithm, w.result.parts) == ("MD5", 5)
    creates = [r for r in s3_proxy.requests if r.op == "CreateMultipartUpload"]
    aborts = [r for r in s3_proxy.requests if r.op == "AbortMultipartUpload"]
    assert len(creates) == 2 and len(aborts) == 1  # the CRC upload was aborted, not mixed with MD5 parts
    assert "x-amz-checksum-algorithm" in creates[0].headers and "x-amz-checksum-algorithm" not in creates[1].headers
    stored = [r for r in s3_proxy.requests if r.op == "UploadPart" and r.status == 200]
    assert len(stored) == 5 and all(checksum_headers(r) == [] for r in stored)
    assert 1 <= refused(s3_proxy) <= concurrency
    assert open_uploads(s3_client, bucket) == []


def test_upload_restarted_without_checksums_is_what_its_resume_state_records(
    tmp_path: Path, s3_client: Any, bucket: str, s3_proxy: S3Proxy, proxy_aws_conn: Callable[..., str]
) -> None:
    def parts_refused(r: S3Request) -> Status | None:
        return refuse_checksum_headers(r) if r.op == "UploadPart" else None

    s3_proxy.add_fault(probe_denied)  # auto starts with CRC32C and meets the refusal at the first part
    s3_proxy.add_fault(parts_refused)
    s3_proxy.add_fault(lambda r: Status(503, "SlowDown") if r.op == "CompleteMultipartUpload" else None)
    client = S3StreamHook(aws_conn_id=proxy_aws_conn("aws_parts", **STORE_SETTINGS)).get_s3_client()
    data = os.urandom(3 * 5 * MiB)
    (tmp_path / "src").write_bytes(data)
    with pytest.raises(TransientError):  # the try fails after every part is stored: state kept
        ResumableUploader(client, bucket, "k", config=config("auto")).upload_file(str(tmp_path / "src"))
    [upload] = s3_client.list_multipart_uploads(Bucket=bucket)["Uploads"]  # the CRC one was aborted
    state = json.loads(read(s3_client, bucket, ".s3stream-resume/k.json"))
    assert (state["upload_id"], state["checksum_algorithm"]) == (upload["UploadId"], "MD5")
    assert [p["number"] for p in state["parts"]] == [1, 2, 3]

    s3_proxy.clear_faults()
    s3_proxy.add_fault(refuse_checksum_headers)
    s3_proxy.clear()
    result = ResumableUploader(client, bucket, "k", config=config("auto")).upload_file(str(tmp_path / "src"))
    assert (result.checksum_algorithm, result.resumed_parts, result.uploaded_parts) == ("MD5", 3, 0)
    assert read(s3_client, bucket, "k") == data
    assert s3_proxy.count("UploadPart") == 0 and refused(s3_proxy) == 0
    assert open_uploads(s3_client, bucket) == []


@pytest.mark.parametrize(
    ("fault", "error", "message"),
    [
        (
            Status(400, "InvalidArgument", "Invalid storage class"),
            UploadError,
            r"creating a multipart upload for s3://{bucket}/k: InvalidArgument \(400\): Invalid storage class",
        ),
        (
            Status(400, "InvalidRequest", "Unsupported header 'x-amz-checksum-algorithm' received for this API call."),
            DestinationError,
            r"s3://{bucket}/k: the store refuses additional checksum headers .*'x-amz-checksum-algorithm'",
        ),
    ],
    ids=["not-about-checksums", "checksums-refused-with-crc32c"],
)
def test_other_invalid_requests_stay_permanent_and_name_the_object(  # noqa: PLR0917 - pytest fixtures
    s3_client: Any,
    bucket: str,
    s3_proxy: S3Proxy,
    proxy_aws_conn: Callable[..., str],
    fault: Status,
    error: type[Exception],
    message: str,
) -> None:
    s3_proxy.add_fault(lambda r: fault if r.op == "CreateMultipartUpload" else None)
    client = S3StreamHook(aws_conn_id=proxy_aws_conn("aws_plain")).get_s3_client()
    algorithm = "auto" if error is UploadError else "CRC32C"  # an explicit CRC never falls back
    with (
        pytest.raises(error, match=message.format(bucket=bucket)),
        MultipartWriter(client, bucket, "k", config=config(algorithm)) as w,
    ):
        w.write(os.urandom(6 * MiB))
    assert s3_proxy.count("CreateMultipartUpload") == 1  # neither is sent again with MD5
    assert s3_client.list_objects_v2(Bucket=bucket).get("KeyCount") == 0


# -- export ----------------------------------------------------------------------------------

# ~121 bytes a row: a file of 45,000 rows is 5.4 MB, two parts of 5 MiB
ROWS_SQL = "SELECT g AS id, md5(g::text) AS h, repeat('x', 80) AS pad FROM generate_series(1, {n}) g"


def export(bucket: str, key: str, conn_id: str, n: int, **kwargs: Any) -> dict[str, Any]:
    op = PostgresToS3StreamOperator(
        task_id="export",
        sql=ROWS_SQL.format(n=n),
        s3_bucket=bucket,
        s3_key=key,
        aws_conn_id=conn_id,
        part_size=5 * MiB,
        max_rows_per_file=45_000,
        write_manifest=True,
        **kwargs,
    )
    return op.execute({})


def listing(client: Any, bucket: str, prefix: str) -> list[str]:
    return sorted(o["Key"] for o in client.list_objects_v2(Bucket=bucket, Prefix=prefix).get("Contents", []))


@pytest.mark.parametrize("algorithm", ["auto", "MD5"])
def test_split_export_with_stale_part_cleanup_succeeds_byte_for_byte(
    s3_client: Any, bucket: str, store: S3Proxy, store_conn: str, algorithm: str
) -> None:
    # The reference: the same exports against the endpoint directly, with CRC32C.
    export(bucket, "ref", "aws_default", 150_000)
    reference = export(bucket, "ref", "aws_default", 100_000)
    export(bucket, "out", store_conn, 150_000, checksum_algorithm=algorithm)  # 4 files, 3 of them multipart
    result = export(bucket, "out", store_conn, 100_000, checksum_algorithm=algorithm)  # 3 files: 1 stale
    names = [f["key"].rsplit("/", 1)[1] for f in result["files"]]
    assert (
        names
        == [f["key"].rsplit("/", 1)[1] for f in reference["files"]]
        == [
            "part-00000.csv",
            "part-00001.csv",
            "part-00002.csv",
        ]
    )
    for name in names:
        assert read(s3_client, bucket, f"out/{name}") == read(s3_client, bucket, f"ref/{name}")
    assert listing(s3_client, bucket, "out/") == ["out/_manifest.json"] + [f"out/{n}" for n in names]
    manifest = json.loads(read(s3_client, bucket, "out/_manifest.json"))
    assert {f["checksum"]["algorithm"] for f in manifest["files"]} == {"MD5"}
    assert result["files"][0]["bytes"] > 5 * MiB and store.count("UploadPart") > 0
    deletes = [r for r in store.requests if r.op == "DeleteObjects" and r.status == 200]
    assert len(deletes) == 3  # the commit state twice (one per export), the stale part once
    assert all("content-md5" in r.headers and not checksum_headers(r) for r in deletes)
    # Refused once: under auto its probe (with CRC32C), under MD5 (whose probe sends Content-MD5 only)
    # the first DeleteObjects (the CRC32 botocore always adds); from then on the endpoint is known.
    assert refused(store) + len(probe_refusals(store)) == 1
    assert [r.op for r in work(store) if r.status == 400] == ([] if algorithm == "auto" else ["DeleteObjects"])


@pytest.mark.parametrize("algorithm", ["auto", "MD5"])
def test_failing_export_cleans_up_its_files_on_the_store(
    s3_client: Any, bucket: str, store: S3Proxy, store_conn: str, algorithm: str
) -> None:
    sql = "SELECT g, md5(g::text) AS h, 1 / (150000 - g) AS boom FROM generate_series(1, 200000) g"
    op = PostgresToS3StreamOperator(
        task_id="export",
        sql=sql,
        s3_bucket=bucket,
        s3_key="out/data",
        aws_conn_id=store_conn,
        part_size=5 * MiB,
        max_rows_per_file=60_000,
        checksum_algorithm=algorithm,
    )
    with pytest.raises(AirflowFailException, match="division by zero"):
        op.execute({})
    assert s3_client.list_objects_v2(Bucket=bucket).get("KeyCount") == 0
    assert open_uploads(s3_client, bucket) == []
    # two files were staged before the error: both are aborted, nothing is deleted
    assert store.count("AbortMultipartUpload") >= 2 and store.count("CompleteMultipartUpload") == 0
    assert [r for r in store.requests if r.op == "DeleteObjects"] == []
    assert refused(store) == 0  # auto learnt the refusal from its probe, before any upload request
    assert len(probe_refusals(store)) == (1 if algorithm == "auto" else 0)


# -- DeleteObjects ---------------------------------------------------------------------------


def test_delete_keys_falls_back_to_content_md5_and_still_names_keys_it_could_not_delete(
    s3_client: Any, bucket: str, store: S3Proxy, store_client: Any
) -> None:
    for key in ("a", "b", "keep/c"):
        s3_client.put_object(Bucket=bucket, Key=key, Body=b"x")
    statement = {
        "Effect": "Deny",
        "Principal": "*",
        "Action": "s3:DeleteObject",
        "Resource": f"arn:aws:s3:::{bucket}/keep/*",
    }
    s3_client.put_bucket_policy(Bucket=bucket, Policy=json.dumps({"Version": "2012-10-17", "Statement": [statement]}))
    try:
        with pytest.raises(UploadError, match=rf"could not delete s3://{bucket}/keep/c \(AccessDenied"):
            delete_keys(store_client, bucket, ["a", "keep/c"], FAST_RETRY)
        delete_keys(store_client, bucket, ["b"], FAST_RETRY)  # known now: straight to Content-MD5
    finally:
        s3_client.delete_bucket_policy(Bucket=bucket)
    assert listing(s3_client, bucket, "") == ["keep/c"]
    sent = [(r.status, "content-md5" in r.headers) for r in store.requests if r.op == "DeleteObjects"]
    assert sent == [(400, False), (200, True), (200, True)]


def test_content_md5_of_delete_objects_is_the_md5_of_the_body_sent(
    s3_client: Any, bucket: str, store: S3Proxy, store_client: Any
) -> None:
    seen: list[tuple[str, bytes]] = []

    def observe(request: Any, **_: Any) -> None:  # looks at the prepared request; sends it unchanged
        if request.method == "POST" and "delete" in request.url:
            header = request.headers.get("Content-MD5") or b""  # prepared headers hold bytes
            seen.append((header.decode() if isinstance(header, bytes) else header, bytes(request.body)))

    store_client.meta.events.register("before-send.s3.DeleteObjects", observe)
    s3_client.put_object(Bucket=bucket, Key="a&b <ü>.txt", Body=b"x")  # escaped in the XML body
    delete_keys(store_client, bucket, ["a&b <ü>.txt"], FAST_RETRY)
    assert listing(s3_client, bucket, "") == []
    header, body = seen[-1]
    assert header == base64.b64encode(hashlib.md5(body).digest()).decode()


# -- ZIP extraction --------------------------------------------------------------------------


@pytest.mark.parametrize("algorithm", ["auto", "MD5"])
def test_zip_members_are_extracted_to_a_store_without_checksums(
    s3_client: Any, bucket: str, store: S3Proxy, store_client: Any, algorithm: str
) -> None:
    members = {"big.bin": os.urandom(12 * MiB), "small.txt": b"small member\n", "d/": b""}
    s3_client.put_object(Bucket=bucket, Key="a.zip", Body=zip_bytes(members, zipfile.ZIP_STORED))
    done = extract_members(
        store_client, bucket, "a.zip", bucket, dest_prefix="out/", multipart_config=config(algorithm)
    )
    assert sorted(d.key for d in done) == ["out/big.bin", "out/small.txt"]
    for name in ("big.bin", "small.txt"):
        assert read(s3_client, bucket, f"out/{name}") == members[name]
    assert open_uploads(s3_client, bucket) == []
    assert refused(store) == 0
    assert len(probe_refusals(store)) == (1 if algorithm == "auto" else 0)
    sent = [r for r in work(store) if r.op in ("UploadPart", "PutObject") and r.status == 200]
    assert len(sent) == 4 and all("content-md5" in r.headers for r in sent)


# -- loads -----------------------------------------------------------------------------------


def _manifest_of(s3_client: Any, bucket: str, algorithm: str) -> str:
    """One listed file and a manifest naming its checksum as ``algorithm`` (``MD5``: the ETag)."""
    data = b"a,b\n1,2\n"
    etag = str(s3_client.put_object(Bucket=bucket, Key="in/part-00000.csv", Body=data)["ETag"])
    crc = base64.b64encode(hashlib.md5(data).digest()).decode() if algorithm != "MD5" else ""
    value = etag.strip('"') if algorithm == "MD5" else crc
    listed = {"key": "in/part-00000.csv", "rows": 1, "bytes": len(data), "etag": etag}
    listed["checksum"] = {"algorithm": algorithm, "type": "COMPOSITE", "value": value}
    manifest = {"version": 1, "format": "csv", "files": [listed], "rows": 1, "bytes": len(data)}
    s3_client.put_object(Bucket=bucket, Key="in/_manifest.json", Body=json.dumps(manifest).encode())
    return "in/_manifest.json"


def test_a_load_of_md5_files_asks_no_checksum_of_a_store_without_checksums(
    s3_client: Any, bucket: str, store: S3Proxy, store_client: Any
) -> None:
    key = _manifest_of(s3_client, bucket, "MD5")
    resolved = resolve_source(store_client, SourceSpec(bucket, key), RetryPolicy())
    assert [f.key for f in resolved.files] == ["in/part-00000.csv"]
    heads = [r for r in store.requests if r.op == "HeadObject"]
    assert heads and all(not checksum_headers(r) for r in heads)  # no x-amz-checksum-mode: its ETag is its MD5


def test_a_load_of_crc_files_asks_for_the_stored_checksum(
    s3: Any, s3_client: Any, bucket: str, s3_proxy: S3Proxy
) -> None:
    key = _manifest_of(s3_client, bucket, "CRC32C")
    via_proxy = dataclasses.replace(s3, endpoint_url=s3_proxy.endpoint_url, _handle=None).client()
    resolve_source(via_proxy, SourceSpec(bucket, key), RetryPolicy())
    listed = [r for r in s3_proxy.requests if r.op == "HeadObject" and r.key == "in/part-00000.csv"]
    assert [checksum_headers(r) for r in listed] == [["x-amz-checksum-mode"]]
