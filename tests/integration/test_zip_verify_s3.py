"""S3ZipVerifyOperator and the ranged reader against a real S3 endpoint, counted at the server.

Requests are counted by the recording proxy in front of the endpoint; faults (throttling,
connection resets, an object replaced mid-read) are injected there, never mocked.
"""

from __future__ import annotations

import io
import json
import math
import os
import struct
import zipfile
from collections.abc import Callable
from pathlib import Path
from typing import Any

import boto3
import pytest
from botocore.config import Config

from airflow_s3stream.archive.verify import VerifyConfig, verify_archive
from airflow_s3stream.archive.zip import ZipArchive
from airflow_s3stream.errors import ConfigurationError, TransientError
from airflow_s3stream.operators import S3ZipVerifyOperator
from airflow_s3stream.s3.reader import RangedReader, ReaderConfig, S3ObjectSource
from airflow_s3stream.s3.retry import RetryPolicy
from tests.support.bags import edit_zip, make_bag, zip_bytes, zip_dir, zip_dir_infozip, zip_dir_streamed
from tests.support.s3proxy import S3Proxy, S3Request, Status

MiB = 1024 * 1024
FAST_RETRY = RetryPolicy(max_attempts=4, base_delay=0.01, max_delay=0.05)
FILES = {f"dir{i % 4}/file{i}.bin": os.urandom(40_000 + i) for i in range(40)} | {"readme.txt": b"hello\n" * 500}


def _client(endpoint_url: str, s3: Any) -> Any:
    """A boto3 client for ``endpoint_url`` with botocore's own retries off: ours are under test."""
    return boto3.client(
        "s3",
        endpoint_url=endpoint_url,
        aws_access_key_id=s3.access_key_id,
        aws_secret_access_key=s3.secret_access_key,
        region_name=s3.region,
        config=Config(s3={"addressing_style": "path"}, retries={"total_max_attempts": 1}),
    )


@pytest.fixture
def proxied(s3_proxy: S3Proxy, s3: Any) -> Any:
    return _client(s3_proxy.endpoint_url, s3)


@pytest.fixture
def bag_zip(tmp_path: Path) -> bytes:
    return zip_dir(make_bag(tmp_path, FILES))


@pytest.fixture
def proxy_conn(proxy_aws_conn: Callable[..., str]) -> str:
    """An Airflow connection ``aws_proxy`` that reaches S3 through the recording proxy."""
    return proxy_aws_conn("aws_proxy")


def _gets(proxy: S3Proxy) -> list[S3Request]:
    return [r for r in proxy.requests if r.op == "GetObject"]


def _verify(client: Any, bucket: str, key: str, **config: Any) -> Any:
    reader = ReaderConfig(retry=FAST_RETRY, **config)
    return verify_archive(S3ObjectSource(client, bucket, key), VerifyConfig(reader=reader))


# --- request budget -------------------------------------------------------------------------


def test_bag_verifies_in_one_sequential_pass_of_two_gets(
    bag_zip: bytes, bucket: str, s3_client: Any, proxied: Any, s3_proxy: S3Proxy
) -> None:
    s3_client.put_object(Bucket=bucket, Key="bag.zip", Body=bag_zip)
    report = _verify(proxied, bucket, "bag.zip")
    assert report.valid, report.summary()
    assert report.mode == "bagit" and report.payload_files == len(FILES)
    gets = _gets(s3_proxy)
    assert [r.headers["range"] for r in gets] == ["bytes=-1048576", f"bytes=0-{len(bag_zip) - MiB - 1}"]
    assert (
        "if-match" not in gets[0].headers
        and gets[1].headers["if-match"] == s3_client.head_object(Bucket=bucket, Key="bag.zip")["ETag"]
    )
    assert report.requests == len(gets) == 2
    assert report.bytes_read == len(bag_zip)


def test_on_a_versioned_bucket_later_gets_are_pinned_by_if_match_alone(
    bag_zip: bytes, bucket: str, s3_client: Any, proxied: Any, s3_proxy: S3Proxy
) -> None:
    """No ``versionId`` on any GET: it would need s3:GetObjectVersion, and If-Match already
    catches a replaced object."""
    s3_client.put_bucket_versioning(Bucket=bucket, VersioningConfiguration={"Status": "Enabled"})
    put = s3_client.put_object(Bucket=bucket, Key="bag.zip", Body=bag_zip)
    assert put.get("VersionId")  # the bucket really is versioned
    report = _verify(proxied, bucket, "bag.zip", prefetch_blocks=2, block_size=256 * 1024)
    assert report.valid, report.summary()
    gets = _gets(s3_proxy)
    assert len(gets) > 2
    assert [r for r in gets if "versionId" in r.query] == []
    assert all(r.headers.get("if-match") == put["ETag"] for r in gets[1:])


def test_listing_takes_one_request_and_a_large_directory_one_more(
    bucket: str, s3_client: Any, proxied: Any, s3_proxy: S3Proxy
) -> None:
    small = zip_bytes({f"m{i}": b"x" for i in range(100)}, zipfile.ZIP_STORED)
    large = zip_bytes({f"member-with-a-long-name-{i:06d}": b"" for i in range(70_000)}, zipfile.ZIP_STORED)
    for key, data, expected in (("small.zip", small, 1), ("large.zip", large, 2)):
        s3_client.put_object(Bucket=bucket, Key=key, Body=data)
        s3_proxy.clear()
        with RangedReader(S3ObjectSource(proxied, bucket, key)) as reader:
            archive = ZipArchive.open(reader, reader.size)
        assert len(archive.entries) == (100 if key == "small.zip" else 70_000)
        assert s3_proxy.count() == expected, key


def test_zip64_archive_with_more_than_65535_entries_verifies(
    bucket: str, s3_client: Any, proxied: Any, s3_proxy: S3Proxy
) -> None:
    data = zip_bytes({f"e/{i}": str(i).encode() for i in range(66_000)})
    s3_client.put_object(Bucket=bucket, Key="many.zip", Body=data)
    report = _verify(proxied, bucket, "many.zip")
    assert report.valid and report.members_checked == 66_000
    assert s3_proxy.count("GetObject") <= 3  # tail, directory, one pass


def test_parallel_prefetch_reads_bounded_blocks(
    bag_zip: bytes, bucket: str, s3_client: Any, proxied: Any, s3_proxy: S3Proxy
) -> None:
    data = bag_zip  # ~1.6 MB: small blocks give several GETs
    s3_client.put_object(Bucket=bucket, Key="bag.zip", Body=data)
    report = _verify(proxied, bucket, "bag.zip", block_size=128 * 1024, tail_size=128 * 1024, prefetch_blocks=3)
    assert report.valid, report.summary()
    blocks = -(-(len(data) - 128 * 1024) // (128 * 1024))
    assert s3_proxy.count("GetObject") == report.requests == 1 + blocks


def _stored_bag(tmp_path: Path, files: int, size: int) -> bytes:
    """A bag of ``files`` random payload files of about ``size`` bytes each, zipped without compression."""
    payload = {f"series{i % 4}/item{i:03d}.bin": os.urandom(size + i) for i in range(files)}
    return zip_dir(make_bag(tmp_path, payload), method=zipfile.ZIP_STORED)


@pytest.mark.slow
@pytest.mark.parametrize("prefetch_blocks", [None, 6], ids=["adaptive-default", "six-parallel"])
def test_a_pass_costs_at_most_one_get_per_8_mib_plus_four(
    prefetch_blocks: int | None, *, tmp_path: Path, bucket: str, s3_client: Any, proxied: Any, s3_proxy: S3Proxy
) -> None:
    """The issue's GET budget, size / 8 MiB + 4, counted at the server: with the default reader
    (which may switch from the streamed GET to parallel 8 MiB ranges and back) and with the
    widest read-ahead of the default memory budget. Every byte is fetched once."""
    data = _stored_bag(tmp_path, 40, 1200 * 1024)  # ~48 MB: six 8 MiB blocks
    s3_client.put_object(Bucket=bucket, Key="big.zip", Body=data)
    s3_proxy.clear()
    report = _verify(proxied, bucket, "big.zip", prefetch_blocks=prefetch_blocks)
    assert report.valid, report.summary()
    gets = _gets(s3_proxy)
    assert len(gets) == report.requests <= math.ceil(len(data) / (8 * MiB)) + 4, [r.headers["range"] for r in gets]
    assert report.bytes_read == len(data)


def _data_offset(data: bytes, name: str) -> int:
    info = zipfile.ZipFile(io.BytesIO(data)).getinfo(name)
    nlen, xlen = struct.unpack_from("<2H", data, info.header_offset + 26)
    return info.header_offset + 30 + nlen + xlen


@pytest.mark.parametrize("hash_threads", [0, 2])
def test_a_damaged_member_is_named_whichever_thread_hashed_it(
    hash_threads: int, tmp_path: Path, bucket: str, s3_client: Any, proxied: Any
) -> None:
    data = _stored_bag(tmp_path, 8, 600 * 1024)
    flipped = bytearray(data)
    flipped[_data_offset(data, "bag/data/series2/item006.bin") + 500_000] ^= 0x10
    replaced = edit_zip(data, {"bag/data/series1/item005.bin": os.urandom(600 * 1024 + 5)})
    for key, body in (("flipped.zip", bytes(flipped)), ("replaced.zip", replaced)):
        s3_client.put_object(Bucket=bucket, Key=key, Body=body)
    config = VerifyConfig(hash_threads=hash_threads, reader=ReaderConfig(retry=FAST_RETRY))
    flipped_report = verify_archive(S3ObjectSource(proxied, bucket, "flipped.zip"), config)
    replaced_report = verify_archive(S3ObjectSource(proxied, bucket, "replaced.zip"), config)
    errors = [str(e) for e in flipped_report.errors]
    assert errors[0].startswith("bag/data/series2/item006.bin: CRC-32 mismatch (expected "), errors
    errors = sorted(str(e).split(" (")[0] for e in replaced_report.errors)
    assert errors == ["bag/data/series1/item005.bin: sha256 mismatch", "bag/data/series1/item005.bin: sha512 mismatch"]


# --- archives from different writers -----------------------------------------------------------


@pytest.mark.parametrize("writer", ["zipfile-streamed", "infozip", "infozip-fd"])
def test_bags_from_other_zip_writers_verify(
    writer: str, tmp_path: Path, bucket: str, s3_client: Any, proxied: Any
) -> None:
    bag = make_bag(tmp_path, FILES, checksums=["md5", "sha1"])
    if writer == "zipfile-streamed":
        data = zip_dir_streamed(bag)
    else:
        data = zip_dir_infozip(bag, tmp_path / "out.zip", streamed=writer == "infozip-fd")
    infos = zipfile.ZipFile(io.BytesIO(data)).infolist()
    if writer != "infozip":
        assert all(i.flag_bits & 0x08 for i in infos if not i.is_dir())  # data descriptors in use
    s3_client.put_object(Bucket=bucket, Key="bag.zip", Body=data)
    report = _verify(proxied, bucket, "bag.zip")
    assert report.valid, report.summary()
    assert report.algorithms == ["md5", "sha1"] and report.payload_files == len(FILES)


def test_infozip_streaming_from_stdin_zip64_descriptors_verify(
    tmp_path: Path, bucket: str, s3_client: Any, proxied: Any
) -> None:
    import subprocess

    payload = os.urandom(3 * MiB) + b"tail" * 100_000
    out = tmp_path / "stdin.zip"
    # pipe in, pipe out: zip cannot seek back, so it writes ZIP64 data descriptors
    out.write_bytes(subprocess.run(["zip", "-q", "-", "-"], input=payload, capture_output=True, check=True).stdout)
    (info,) = zipfile.ZipFile(out).infolist()
    assert info.flag_bits & 0x08 and info.file_size == len(payload)
    s3_client.put_object(Bucket=bucket, Key="stdin.zip", Body=out.read_bytes())
    report = _verify(proxied, bucket, "stdin.zip")
    assert report.valid and report.mode == "zip" and report.uncompressed_bytes == len(payload)


# --- transient faults -------------------------------------------------------------------------


def test_throttled_gets_are_retried_by_the_reader(
    bag_zip: bytes, bucket: str, s3_client: Any, proxied: Any, s3_proxy: S3Proxy
) -> None:
    s3_client.put_object(Bucket=bucket, Key="bag.zip", Body=bag_zip)
    s3_proxy.add_fault(lambda r: Status(503, "SlowDown") if r.op == "GetObject" else None, times=3)
    report = _verify(proxied, bucket, "bag.zip")
    assert report.valid
    assert [r.status for r in _gets(s3_proxy)] == [503, 503, 503, 206, 206]


def test_a_reset_connection_is_resumed_at_the_byte_it_stopped(
    bag_zip: bytes, bucket: str, s3_client: Any, proxied: Any, s3_proxy: S3Proxy
) -> None:
    from tests.support.s3proxy import Reset

    s3_client.put_object(Bucket=bucket, Key="bag.zip", Body=bag_zip)
    s3_proxy.add_fault(lambda r: Reset() if r.op == "GetObject" and "if-match" in r.headers else None, times=1)
    report = _verify(proxied, bucket, "bag.zip")
    assert report.valid
    assert s3_proxy.count("GetObject") == 3


def test_throttling_that_outlasts_retries_is_a_transient_error(
    bag_zip: bytes, bucket: str, s3_client: Any, proxied: Any, s3_proxy: S3Proxy
) -> None:
    s3_client.put_object(Bucket=bucket, Key="bag.zip", Body=bag_zip)
    s3_proxy.add_fault(lambda r: Status(503, "SlowDown") if r.op == "GetObject" else None)
    with pytest.raises(TransientError, match=r"s3://.*/bag\.zip: opening: still failing after 4 attempts"):
        _verify(proxied, bucket, "bag.zip")


# --- the operator ------------------------------------------------------------------------------


def test_operator_returns_the_report_and_writes_it_beside_the_archive(
    bag_zip: bytes, bucket: str, s3_client: Any, proxy_conn: str, s3_proxy: S3Proxy
) -> None:
    s3_client.put_object(Bucket=bucket, Key="in/bag.zip", Body=bag_zip)
    op = S3ZipVerifyOperator(
        task_id="verify",
        s3_bucket=bucket,
        s3_key="in/bag.zip",
        aws_conn_id=proxy_conn,
        mode="bagit",
        report_key="in/bag.zip.verification.json",
    )
    result = op.execute({})
    assert result["valid"] is True and result["mode"] == "bagit"
    assert result["payload_files"] == len(FILES) and result["algorithms"] == ["sha256", "sha512"]
    assert result["requests"] == s3_proxy.count("GetObject") == 2
    assert result["aws_conn_id"] == proxy_conn  # the provider view reads S3 through the task's connection
    stored = json.loads(s3_client.get_object(Bucket=bucket, Key="in/bag.zip.verification.json")["Body"].read())
    assert stored == json.loads(json.dumps(result))


def test_operator_fails_without_retry_and_names_each_bad_input(
    bag_zip: bytes, tmp_path: Path, bucket: str, s3_client: Any
) -> None:
    from airflow.sdk.exceptions import AirflowFailException

    manifest = zipfile.ZipFile(io.BytesIO(bag_zip)).read("bag/manifest-sha256.txt")
    corrupt = bytearray(zip_bytes({"a.bin": os.urandom(50_000)}, zipfile.ZIP_STORED))
    corrupt[1000] ^= 0xFF
    cases = {
        "zero.zip": (b"", "zero-byte object"),
        "notzip.zip": (b"%PDF-1.4\n" + os.urandom(3000), "not a ZIP archive"),
        "truncated.zip": (bag_zip[: len(bag_zip) // 2], "truncated"),
        "corrupt.zip": (bytes(corrupt), "error: a.bin: CRC-32 mismatch (expected "),
        "badline.zip": (
            edit_zip(bag_zip, {"bag/manifest-sha256.txt": manifest + b"nonsense\n"}),
            "manifest-sha256.txt: line",
        ),
        "nobagit.zip": (edit_zip(bag_zip, {"bag/bagit.txt": None}), "no bagit.txt"),
    }
    for key, (body, _) in cases.items():
        s3_client.put_object(Bucket=bucket, Key=key, Body=body)
    cases["missing.zip"] = (b"", "no such key")
    for key, (_, reason) in cases.items():
        mode = "bagit" if key in ("nobagit.zip", "badline.zip") else "auto"
        op = S3ZipVerifyOperator(task_id="v", s3_bucket=bucket, s3_key=key, mode=mode)
        with pytest.raises(AirflowFailException) as info:
            op.execute({})
        assert reason in str(info.value), (key, str(info.value))
        assert "Traceback" not in str(info.value)


def test_object_replaced_mid_read_is_reported_not_mixed(
    bag_zip: bytes, bucket: str, s3_client: Any, proxy_conn: str, s3_proxy: S3Proxy
) -> None:
    from airflow.sdk.exceptions import AirflowFailException

    s3_client.put_object(Bucket=bucket, Key="bag.zip", Body=bag_zip)

    def replace_before_second_get(r: S3Request) -> None:
        if r.op == "GetObject" and "if-match" in r.headers:
            s3_client.put_object(Bucket=bucket, Key="bag.zip", Body=bag_zip[::-1])

    s3_proxy.add_fault(replace_before_second_get)  # type: ignore[arg-type]
    op = S3ZipVerifyOperator(task_id="v", s3_bucket=bucket, s3_key="bag.zip", aws_conn_id=proxy_conn)
    with pytest.raises(AirflowFailException, match="replaced while being read"):
        op.execute({})


def test_operator_lets_exhausted_transient_errors_through_for_airflow_retries(
    bag_zip: bytes, bucket: str, s3_client: Any, proxy_conn: str, s3_proxy: S3Proxy
) -> None:
    s3_client.put_object(Bucket=bucket, Key="bag.zip", Body=bag_zip)
    s3_proxy.add_fault(lambda r: Status(500, "InternalError") if r.op == "GetObject" else None)
    op = S3ZipVerifyOperator(task_id="v", s3_bucket=bucket, s3_key="bag.zip", aws_conn_id=proxy_conn, max_attempts=2)
    with pytest.raises(TransientError):
        op.execute({})


def test_operator_validates_arguments_at_parse_time() -> None:
    with pytest.raises(ConfigurationError, match="mode must be one of auto, zip, bagit"):
        S3ZipVerifyOperator(task_id="v", s3_bucket="b", s3_key="k", mode="tar")
    with pytest.raises(ConfigurationError, match="block_size must be at least 64 KiB"):
        S3ZipVerifyOperator(task_id="v", s3_bucket="b", s3_key="k", block_size=10)
    with pytest.raises(ConfigurationError, match="s3_bucket and s3_key are required"):
        S3ZipVerifyOperator(task_id="v", s3_bucket="", s3_key="k")
    assert {"s3_bucket", "s3_key", "report_key"} <= set(S3ZipVerifyOperator.template_fields)


# --- parallel read-ahead under faults, at the server ---------------------------------------------


def _fault_every(kind: str, every: int, hit: set[str]) -> Callable[[S3Request], Any]:
    """Every ``every``-th pinned GET is reset or cut, each range at most once (its retry then
    succeeds, whichever thread sends it and whatever the other rule did)."""
    from tests.support.s3proxy import Reset, Truncate

    seen = {"n": 0}

    def rule(r: S3Request) -> Any:
        if r.op != "GetObject" or "if-match" not in r.headers or r.headers["range"] in hit:
            return None
        seen["n"] += 1
        if seen["n"] % every:
            return None
        hit.add(r.headers["range"])
        return Reset() if kind == "reset" else Truncate(after=20_000)

    return rule


@pytest.mark.parametrize("streams", [1, 4, 16])
def test_parallel_read_ahead_reports_identically_under_resets_and_cut_bodies(
    streams: int, *, bag_zip: bytes, bucket: str, s3_client: Any, proxied: Any, s3_proxy: S3Proxy
) -> None:
    s3_client.put_object(Bucket=bucket, Key="bag.zip", Body=bag_zip)
    small = {"block_size": 64 * 1024, "tail_size": 64 * 1024}
    clean = _verify(proxied, bucket, "bag.zip", prefetch_blocks=0, **small).to_dict()
    s3_proxy.clear()
    hit: set[str] = set()
    s3_proxy.add_fault(_fault_every("reset", 5, hit))
    s3_proxy.add_fault(_fault_every("cut", 3, hit))
    report = _verify(proxied, bucket, "bag.zip", prefetch_blocks=streams, **small)
    faults = [r.fault for r in _gets(s3_proxy) if r.fault]
    assert "Reset" in faults and "Truncate" in faults, faults
    assert report.valid, report.summary()
    volatile = ("requests", "bytes_read", "seconds")
    assert {k: v for k, v in report.to_dict().items() if k not in volatile} == {
        k: v for k, v in clean.items() if k not in volatile
    }
    etag = s3_client.head_object(Bucket=bucket, Key="bag.zip")["ETag"]
    assert all(r.headers.get("if-match") == etag for r in _gets(s3_proxy)[1:])  # every resume stays pinned


@pytest.mark.parametrize("streams", [1, 4, 16])
def test_a_412_mid_read_stops_parallel_read_ahead_with_object_changed(
    streams: int, *, bag_zip: bytes, bucket: str, s3_client: Any, proxied: Any, s3_proxy: S3Proxy
) -> None:
    from airflow_s3stream.errors import ObjectChangedError

    s3_client.put_object(Bucket=bucket, Key="bag.zip", Body=bag_zip)
    pinned = {"n": 0}

    def precondition_failed_from_the_sixth(r: S3Request) -> Any:
        if r.op == "GetObject" and "if-match" in r.headers:
            pinned["n"] += 1
            if pinned["n"] >= 6:
                return Status(412, "PreconditionFailed", "At least one of the pre-conditions did not hold")
        return None

    s3_proxy.add_fault(precondition_failed_from_the_sixth)
    with pytest.raises(ObjectChangedError, match=r"bag\.zip: the object was replaced while being read"):
        _verify(proxied, bucket, "bag.zip", prefetch_blocks=streams, block_size=64 * 1024, tail_size=64 * 1024)
