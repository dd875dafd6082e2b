"""S3ToBagItZipOperator against the real S3 endpoint: round trip, bagit-python, tampering, failures.

The bag is made from objects in the session's S3 endpoint, published by the staged commit, then
checked three ways: by the package's verifier in S3, by bagit-python after unzipping it locally
(with zipfile, in the test), and by flipping one byte of the uploaded ZIP.
"""

from __future__ import annotations

import dataclasses
import io
import os
import random
import zipfile
from pathlib import Path
from typing import Any

import bagit
import pytest
from airflow.sdk.exceptions import AirflowFailException

from airflow_s3stream.archive.verify import VerifyConfig, verify_archive
from airflow_s3stream.errors import ConfigurationError
from airflow_s3stream.operators import S3ToBagItZipOperator
from airflow_s3stream.s3.reader import S3ObjectSource

KiB, MiB = 1024, 1024 * 1024


def _source_objects(count: int, seed: int = 12) -> dict[str, bytes]:
    """``count`` objects of mixed sizes (empty to 3 MiB), some with unicode and awkward names."""
    rng = random.Random(seed)
    names = ["empty.txt", "Überschrift/naïve café.txt", "日本語/ファイル.bin", "100% done.csv", "spaces in name.dat"]
    objects: dict[str, bytes] = {}
    for i in range(count):
        name = names[i] if i < len(names) else f"series{i % 17:02d}/item{i:05d}.bin"
        small = rng.choice([1, 100, 5 * KiB, 20 * KiB, 70 * KiB])
        size = 0 if i == 0 else small if i % 100 else rng.randint(1, 3) * MiB
        text = b"record %d, a line of text that compresses\n" % i
        objects[name] = (text * (size // len(text) + 1))[: size // 2] + rng.randbytes(size - size // 2)
    return objects


def _put_all(client: Any, bucket: str, prefix: str, objects: dict[str, bytes]) -> None:
    from concurrent.futures import ThreadPoolExecutor

    with ThreadPoolExecutor(8) as pool:
        list(pool.map(lambda kv: client.put_object(Bucket=bucket, Key=prefix + kv[0], Body=kv[1]), objects.items()))


@pytest.fixture
def many_objects_cleanup(bucket: str, s3_client: Any) -> Any:
    """Delete this test's objects itself: moto pages object versions past 1,000 unreliably, which
    leaves the shared fixture's bucket non-empty."""
    yield
    for page in s3_client.get_paginator("list_objects_v2").paginate(Bucket=bucket):
        keys = [{"Key": o["Key"]} for o in page.get("Contents", [])]
        if keys:
            s3_client.delete_objects(Bucket=bucket, Delete={"Objects": keys, "Quiet": True})


def _uploads(client: Any, bucket: str) -> list[Any]:
    return list(client.list_multipart_uploads(Bucket=bucket).get("Uploads", []))


@pytest.mark.slow
def test_a_prefix_of_1500_objects_round_trips_through_our_verifier_and_bagit_python(
    tmp_path: Path, bucket: str, s3_client: Any, many_objects_cleanup: None
) -> None:
    objects = _source_objects(1500)
    _put_all(s3_client, bucket, "incoming/acc-42/", objects)
    s3_client.put_object(Bucket=bucket, Key="incoming/acc-42/folder/", Body=b"")  # a console folder marker
    op = S3ToBagItZipOperator(
        task_id="package",
        source_bucket=bucket,
        source_prefix="incoming/acc-42",
        s3_bucket=bucket,
        s3_key="bags/acc-42.zip",
        checksums=["sha256", "sha512"],
        bag_info={"Source-Organization": "Example Archive", "Contact-Name": ["A. Archivist", "B. Keeper"]},
        verify_after=True,
    )
    result = op.execute({})
    payload = sum(len(b) for b in objects.values())
    assert result["key"] == "bags/acc-42.zip" and result["files"] == 1500
    assert result["payload_bytes"] == payload and result["oxum"] == f"{payload}.1500"
    assert result["manifests"] == {"sha256": "acc-42/manifest-sha256.txt", "sha512": "acc-42/manifest-sha512.txt"}
    assert result["verification"] == {"valid": True, "errors": []}
    body = s3_client.get_object(Bucket=bucket, Key="bags/acc-42.zip")["Body"].read()
    assert result["zip_bytes"] == len(body) and result["seconds"] > 0 and result["mb_per_s"] > 0
    assert not _uploads(s3_client, bucket)

    report = verify_archive(S3ObjectSource(s3_client, bucket, "bags/acc-42.zip"), VerifyConfig(mode="bagit"))
    assert report.valid and report.payload_files == 1500 and report.payload_bytes == payload, report.summary()
    assert report.algorithms == ["sha256", "sha512"]

    with zipfile.ZipFile(io.BytesIO(body)) as zf:
        assert all(i.flag_bits & 0x08 for i in zf.infolist())  # data descriptors: written in one pass
        assert zf.infolist()[0].filename == "acc-42/bagit.txt"
        zf.extractall(tmp_path)
    bag = bagit.Bag(str(tmp_path / "acc-42"))
    bag.validate(processes=1)  # raises BagValidationError on any problem
    assert bag.info["Payload-Oxum"] == f"{payload}.1500"
    assert bag.info["Source-Organization"] == "Example Archive"
    assert bag.info["Contact-Name"] == ["A. Archivist", "B. Keeper"]
    assert "Bagging-Date" in bag.info
    for name, content in objects.items():
        assert (tmp_path / "acc-42" / "data" / name).read_bytes() == content

    # one flipped byte inside a payload member is caught, and named
    info = next(i for i in zipfile.ZipFile(io.BytesIO(body)).infolist() if i.filename.endswith("item00100.bin"))
    tampered = bytearray(body)
    tampered[info.header_offset + 30 + len(info.filename.encode()) + 20 + 1000] ^= 0x01
    s3_client.put_object(Bucket=bucket, Key="bags/tampered.zip", Body=bytes(tampered))
    bad = verify_archive(S3ObjectSource(s3_client, bucket, "bags/tampered.zip"), VerifyConfig(mode="bagit"))
    assert not bad.valid
    assert any(e.member == info.filename for e in bad.errors), bad.summary()


def test_listed_keys_in_another_connection_are_packaged_stored(
    bucket: str, s3_client: Any, proxy_aws_conn: Any
) -> None:
    objects = {"a.txt": b"alpha\n" * 1000, "sub/b.bin": os.urandom(50_000), "zero": b""}
    _put_all(s3_client, bucket, "src/", objects)
    s3_client.put_object(Bucket=bucket, Key="src/not-listed.txt", Body=b"left out")
    op = S3ToBagItZipOperator(
        task_id="package",
        source_bucket=bucket,
        source_prefix="src/",
        source_keys=["src/a.txt", "src/sub/b.bin", "src/zero"],
        s3_bucket=bucket,
        s3_key="out/listed.zip",
        bag_name="listed",
        compression="store",
        source_aws_conn_id=proxy_aws_conn("aws_source"),
    )
    result = op.execute({})
    assert result["files"] == 3 and result["oxum"] == f"{6000 + 50_000}.3"
    body = s3_client.get_object(Bucket=bucket, Key="out/listed.zip")["Body"].read()
    with zipfile.ZipFile(io.BytesIO(body)) as zf:
        names = zf.namelist()
        assert "listed/data/not-listed.txt" not in names and "listed/data/sub/b.bin" in names
        assert {i.compress_type for i in zf.infolist()} == {zipfile.ZIP_STORED}
        manifest = zf.read("listed/manifest-sha256.txt").decode()
    assert "data/zero" in manifest


@pytest.mark.parametrize(
    ("key", "reason"),
    [
        ("src/a/../../etc/passwd", "contains a '..' component"),
        ("src/a\\b.txt", "contains a backslash"),
        ("src//abs.txt", "is an absolute path"),
        ("src/a/./b.txt", "contains a '.' component"),
    ],
)
def test_a_key_that_would_unzip_unsafely_fails_and_the_previous_bag_stays(
    key: str, reason: str, bucket: str, s3_client: Any
) -> None:
    s3_client.put_object(Bucket=bucket, Key="out/bag.zip", Body=b"the previous bag")
    _put_all(s3_client, bucket, "src/", {"fine.txt": b"fine"})
    s3_client.put_object(Bucket=bucket, Key=key, Body=b"x")
    op = S3ToBagItZipOperator(
        task_id="p", source_bucket=bucket, source_prefix="src/", s3_bucket=bucket, s3_key="out/bag.zip"
    )
    with pytest.raises(AirflowFailException) as info:
        op.execute({})
    assert f"s3://{bucket}/{key}" in str(info.value) and reason in str(info.value)
    assert s3_client.get_object(Bucket=bucket, Key="out/bag.zip")["Body"].read() == b"the previous bag"
    assert not _uploads(s3_client, bucket)


def test_a_missing_listed_key_fails_naming_it_and_publishes_nothing(bucket: str, s3_client: Any) -> None:
    s3_client.put_object(Bucket=bucket, Key="out/bag.zip", Body=b"the previous bag")
    _put_all(s3_client, bucket, "src/", {"a.bin": os.urandom(7 * MiB)})  # more than one part is staged first
    op = S3ToBagItZipOperator(
        task_id="p",
        source_bucket=bucket,
        source_keys=["src/a.bin", "src/gone.bin"],
        s3_bucket=bucket,
        s3_key="out/bag.zip",
        part_size=5 * MiB,
    )
    with pytest.raises(AirflowFailException, match=rf"s3://{bucket}/src/gone\.bin"):
        op.execute({})
    assert s3_client.get_object(Bucket=bucket, Key="out/bag.zip")["Body"].read() == b"the previous bag"
    assert not _uploads(s3_client, bucket)


def test_arguments_are_validated_at_parse_time() -> None:
    base: dict[str, Any] = {"task_id": "p", "source_bucket": "b", "source_prefix": "x/"}
    base |= {"s3_bucket": "b", "s3_key": "k.zip"}
    cases: list[tuple[dict[str, Any], str]] = [
        ({"checksums": ["md5"]}, "checksums must be distinct values among sha256, sha512"),
        ({"checksums": "sha256"}, "checksums must be a list"),
        ({"checksums": []}, "checksums: give at least one"),
        ({"bag_info": {"Payload-Oxum": "1.1"}}, "'Payload-Oxum' is computed"),
        ({"bag_info": {"Bad:Label": "x"}}, "bag_info label 'Bad:Label'"),
        ({"bag_info": {"Note": "two\nlines"}}, "bag_info 'Note': value must be one line"),
        ({"compression": "lzma"}, "compression must be 'deflate' or 'store'"),
        ({"bag_name": "../up"}, "bag_name '../up' contains a '..' component"),
        ({"source_keys": "one-key"}, "source_keys must be a list"),
        ({"part_size": 1024}, "part_size"),
        ({"s3_key": ""}, "source_bucket, s3_bucket and s3_key are required"),
    ]
    for extra, message in cases:
        with pytest.raises(ConfigurationError, match=message):
            S3ToBagItZipOperator(**{**base, **extra})
    # templated values are checked once rendered, not at parse time
    templated: dict[str, Any] = {**base, "bag_info": "{{ params.info }}", "compression": "{{ params.c }}"}
    S3ToBagItZipOperator(**templated)


@pytest.mark.slow
def test_a_member_over_4_gib_from_a_local_source_is_packaged_with_zip64_and_verifies(tmp_path: Path) -> None:
    from airflow_s3stream.archive.package import PackageConfig, package_bag
    from tests.support.local_sources import LocalFileSource, local_payload

    payload = tmp_path / "payload"
    (payload / "scans").mkdir(parents=True)
    big = payload / "scans" / "über-große.img"
    with open(big, "wb") as f:  # sparse: 4 GiB + 1 MiB of zeros without the disk
        f.truncate(4 * 1024**3 + 1024**2)
    (payload / "empty.txt").write_bytes(b"")
    (payload / "notes.txt").write_bytes("café\n".encode())
    target = tmp_path / "bag.zip"

    with open(target, "wb") as sink:
        result = package_bag(local_payload(payload), sink, PackageConfig(bag_name="big-bag", checksums=("sha256",)))

    assert result.payload_bytes == 4 * 1024**3 + 1024**2 + len("café\n".encode())
    assert result.oxum == f"{result.payload_bytes}.3"
    with zipfile.ZipFile(target) as zf:  # the standard library reads the ZIP64 sizes back
        info = zf.getinfo("big-bag/data/scans/über-große.img")
        assert info.file_size == 4 * 1024**3 + 1024**2 and info.compress_size < 16 * 1024**2
    # zeros deflate about 1,000:1, past the default zip-bomb guard (200:1): this bag's owner raises it
    bomb_guard = VerifyConfig(mode="bagit").limits
    assert not verify_archive(LocalFileSource(target), VerifyConfig(mode="bagit")).valid
    limits = dataclasses.replace(bomb_guard, max_ratio=2000)
    report = verify_archive(LocalFileSource(target), VerifyConfig(mode="bagit", limits=limits))
    assert report.valid, report.summary()
    assert report.payload_files == 3 and report.payload_bytes == result.payload_bytes
