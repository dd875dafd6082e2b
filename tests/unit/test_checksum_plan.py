"""ChecksumPlan: the one place that decides what a request carries and whether to ask for a checksum."""

from __future__ import annotations

import base64
import hashlib
from typing import Any

import pytest

from airflow_s3stream.s3.checksum_headers import content_md5, content_md5_of_hex
from airflow_s3stream.s3.checksum_plan import ChecksumPlan
from airflow_s3stream.s3.multipart.checksums import PartDigest, encode_checksum
from airflow_s3stream.s3.store_checks import StoreChecks, forget_endpoint, remember_checks

CHECKS_CRC = StoreChecks(additional="checked", content_md5="checked")  # AWS S3
IGNORES_CRC = StoreChecks(additional="ignored", content_md5="checked")  # Ceph RGW 16
REFUSES = StoreChecks(additional="refused", content_md5="checked")  # Backblaze B2 and others
MD5_HEX = hashlib.md5(b"part").hexdigest()


def test_auto_sends_crc32c_where_the_store_checks_it_or_nothing_is_known() -> None:
    assert ChecksumPlan.choose("auto", CHECKS_CRC).algorithm == "CRC32C"
    assert ChecksumPlan.choose("auto", StoreChecks()).algorithm == "CRC32C"


@pytest.mark.parametrize("checks", [IGNORES_CRC, REFUSES], ids=["ignores", "refuses"])
def test_auto_sends_content_md5_where_the_store_ignores_or_refuses_additional_checksums(checks: StoreChecks) -> None:
    assert ChecksumPlan.choose("auto", checks).algorithm == "MD5"


def test_an_explicit_algorithm_is_kept_whatever_the_store_does() -> None:
    assert ChecksumPlan.choose("CRC64NVME", IGNORES_CRC).algorithm == "CRC64NVME"


def test_a_crc_plan_sends_the_crc_header_and_asks_for_the_stored_checksum() -> None:
    plan = ChecksumPlan("CRC32C", CHECKS_CRC)
    value = plan.value(PartDigest(4, 0x1A2B3C4D))
    assert value == encode_checksum("CRC32C", 0x1A2B3C4D)
    assert plan.send_args(value) == {"ChecksumCRC32C": value}
    assert plan.create_args("COMPOSITE") == {"ChecksumAlgorithm": "CRC32C", "ChecksumType": "COMPOSITE"}
    assert plan.ask_args() == {"ChecksumMode": "ENABLED"}
    assert plan.part_entry(2, '"e"', value) == {"PartNumber": 2, "ETag": '"e"', "ChecksumCRC32C": value}
    assert plan.full_object_args(7) == {"ChecksumCRC32C": encode_checksum("CRC32C", 7), "ChecksumType": "FULL_OBJECT"}
    assert plan.stored({"ChecksumCRC32C": "abc="}) == "abc=" and plan.stored({}) == ""
    assert plan.checked_by_store() == ["CRC32C"]


def test_an_md5_plan_sends_content_md5_only_and_never_asks_for_a_checksum() -> None:
    plan = ChecksumPlan("MD5", IGNORES_CRC)
    value = plan.value(PartDigest(4, 0, MD5_HEX))
    assert value == base64.b64encode(hashlib.md5(b"part").digest()).decode()
    assert plan.send_args(value) == {"ContentMD5": value}
    assert plan.create_args("COMPOSITE") == {}
    assert plan.ask_args() == {}  # its checksum is the ETag
    assert plan.part_entry(1, '"e"', value) == {"PartNumber": 1, "ETag": '"e"'}
    assert plan.full_object_args(7) == {}
    assert plan.stored({"ChecksumCRC32C": "abc="}) is None
    assert plan.checked_by_store() == ["Content-MD5"]


def test_a_store_refusing_checksum_headers_is_never_asked_for_a_checksum() -> None:
    assert ChecksumPlan("CRC32C", REFUSES).ask_args() == {}  # x-amz-checksum-mode is such a header


def test_a_crc_the_store_ignores_is_not_claimed_unless_echoed() -> None:
    plan = ChecksumPlan("CRC32C", IGNORES_CRC)
    assert plan.checked_by_store() == [] and plan.checked_by_store(echoed=True) == ["CRC32C"]


def test_an_md5_plan_needs_the_parts_md5() -> None:
    with pytest.raises(AssertionError, match="MD5"):
        ChecksumPlan("MD5").value(PartDigest(4, 0))


def test_content_md5_is_base64_of_the_digest() -> None:
    expected = base64.b64encode(hashlib.md5(b"body").digest()).decode()
    assert content_md5(b"body") == expected == content_md5_of_hex(hashlib.md5(b"body").hexdigest())


def test_requests_botocore_checksums_itself_go_as_md5_to_a_store_refusing_the_headers() -> None:
    class Client:
        class meta:  # noqa: N801 - shaped like a boto3 client's meta
            endpoint_url = "http://plan-test-refusing:9000"

    client: Any = Client()
    assert ChecksumPlan.for_endpoint(client).algorithm == "CRC32"
    remember_checks(client, REFUSES)
    try:
        assert ChecksumPlan.for_endpoint(client).md5
    finally:
        forget_endpoint(client)
