"""extract_members: members of a ZIP in S3 streamed to other keys, through the connection's client."""

from __future__ import annotations

import os
import struct
import zipfile
from typing import Any

import pytest

from airflow_s3stream.archive.extract import extract_members
from airflow_s3stream.errors import ArchiveError
from airflow_s3stream.hooks.s3 import S3StreamHook
from tests.support.bags import zip_bytes

MiB = 1024 * 1024


def extract(bucket: str, key: str, dest_prefix: str, members: list[str] | None = None) -> list[dict[str, Any]]:
    client = S3StreamHook().get_s3_client()
    return [m.to_dict() for m in extract_members(client, bucket, key, bucket, dest_prefix=dest_prefix, members=members)]


def test_one_member_is_extracted_byte_for_byte(bucket: str, s3_client: Any) -> None:
    big = os.urandom(12 * MiB)  # more than one 8 MiB part
    s3_client.put_object(Bucket=bucket, Key="a.zip", Body=zip_bytes({"x/small.txt": b"small", "x/big.bin": big}))
    done = extract(bucket, "a.zip", "out/", members=["x/big.bin"])
    assert [(d["member"], d["key"], d["bytes"]) for d in done] == [("x/big.bin", "out/x/big.bin", len(big))]
    assert s3_client.get_object(Bucket=bucket, Key="out/x/big.bin")["Body"].read() == big
    listed = [o["Key"] for o in s3_client.list_objects_v2(Bucket=bucket, Prefix="out/").get("Contents", [])]
    assert listed == ["out/x/big.bin"]


def test_all_members_are_extracted_when_none_are_named(bucket: str, s3_client: Any) -> None:
    members = {"a.txt": b"a" * 1000, "d/b.txt": b"b", "d/": b""}
    s3_client.put_object(Bucket=bucket, Key="a.zip", Body=zip_bytes(members))
    done = extract(bucket, "a.zip", "all/")
    assert sorted(d["key"] for d in done) == ["all/a.txt", "all/d/b.txt"]
    assert s3_client.get_object(Bucket=bucket, Key="all/a.txt")["Body"].read() == b"a" * 1000


def test_corrupt_member_leaves_no_object_and_no_open_upload(bucket: str, s3_client: Any) -> None:
    data = bytearray(zip_bytes({"bad.bin": os.urandom(6 * MiB)}, zipfile.ZIP_STORED))
    data[3 * MiB] ^= 0xFF
    s3_client.put_object(Bucket=bucket, Key="bad.zip", Body=bytes(data))
    with pytest.raises(ArchiveError, match=r"member bad\.bin: CRC-32 mismatch"):
        extract(bucket, "bad.zip", "out/")
    assert "Contents" not in s3_client.list_objects_v2(Bucket=bucket, Prefix="out/")
    assert not s3_client.list_multipart_uploads(Bucket=bucket).get("Uploads")


def test_unknown_member_is_refused_before_anything_is_written(bucket: str, s3_client: Any) -> None:
    s3_client.put_object(Bucket=bucket, Key="a.zip", Body=zip_bytes({"a.txt": b"a"}))
    with pytest.raises(ArchiveError, match=r"no file member named 'nope\.txt'"):
        extract(bucket, "a.zip", "out/", members=["a.txt", "nope.txt"])
    assert "Contents" not in s3_client.list_objects_v2(Bucket=bucket, Prefix="out/")


def test_unsafe_member_names_are_not_extracted(bucket: str, s3_client: Any) -> None:
    s3_client.put_object(Bucket=bucket, Key="evil.zip", Body=zip_bytes({"../../etc/cron.d/x": b"evil"}))
    with pytest.raises(ArchiveError, match=r"contains a '\.\.' component; refusing to extract it"):
        extract(bucket, "evil.zip", "out/")


def test_members_declaring_more_than_the_4_gib_default_are_refused_before_anything_is_written(
    bucket: str, s3_client: Any
) -> None:
    data = bytearray(zip_bytes({"a.bin": b"a" * 1000, "b.bin": b"b" * 1000}))
    pos = 0
    while (pos := data.find(b"PK\x01\x02", pos)) >= 0:  # each directory entry claims 3 GiB uncompressed
        struct.pack_into("<L", data, pos + 24, 3 * 1024 * MiB)
        pos += 4
    s3_client.put_object(Bucket=bucket, Key="claims.zip", Body=bytes(data))
    with pytest.raises(ArchiveError, match=r"expand to 6442450944 bytes, more than max_total_uncompressed 4294967296"):
        extract(bucket, "claims.zip", "out/")
    assert "Contents" not in s3_client.list_objects_v2(Bucket=bucket, Prefix="out/")
    assert not s3_client.list_multipart_uploads(Bucket=bucket).get("Uploads")
