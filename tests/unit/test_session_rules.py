"""The multipart session's decisions, without a server: answers, the MD5 fallback, when MD5 is needed."""

from __future__ import annotations

from typing import Any

import pytest
from botocore.exceptions import ClientError

from airflow_s3stream.s3.classify import classify
from airflow_s3stream.s3.multipart import session_rules as rules
from airflow_s3stream.s3.multipart.checksums import PartDigest

MD5 = "5d41402abc4b2a76b9719d911017c592"
SENT = "AAAAAQ=="


def _failure(code: str, status: int, message: str = "") -> Any:
    response: Any = {"Error": {"Code": code, "Message": message}, "ResponseMetadata": {"HTTPStatusCode": status}}
    return classify(ClientError(response, "UploadPart"))


REFUSED = _failure("InvalidArgument", 400, "Unsupported header 'x-amz-checksum-crc32c' received")


def test_an_answer_echoing_another_crc_is_a_mismatch() -> None:
    problem = rules.answer_mismatch({"ChecksumCRC32C": "AAAAAg=="}, PartDigest(1, 1), SENT, "CRC32C")
    assert problem == f"CRC32C mismatch (sent {SENT}, server stored AAAAAg==)"


def test_an_etag_that_is_not_our_md5_is_a_mismatch() -> None:
    problem = rules.answer_mismatch({"ETag": '"' + "0" * 32 + '"'}, PartDigest(1, 1, MD5), SENT, "CRC32C")
    assert problem == f"MD5 mismatch (sent {MD5}, server stored {'0' * 32})"


def test_an_answer_matching_what_we_sent_or_saying_nothing_is_no_mismatch() -> None:
    assert (
        rules.answer_mismatch({"ETag": f'"{MD5}"', "ChecksumCRC32C": SENT}, PartDigest(1, 1, MD5), SENT, "CRC32C")
        is None
    )
    assert rules.answer_mismatch({"ETag": '"not-an-md5"'}, PartDigest(1, 1, MD5), SENT, "CRC32C") is None  # SSE-KMS
    assert rules.answer_mismatch({"ETag": '"' + "0" * 32 + '"'}, PartDigest(1, 1), SENT, "CRC32C") is None  # no MD5


def test_a_server_echoes_our_checksum_only_when_it_repeats_it() -> None:
    assert rules.echoes_checksum({"ChecksumCRC32C": SENT}, "CRC32C", SENT)
    assert not rules.echoes_checksum({"ChecksumCRC32C": "AAAAAg=="}, "CRC32C", SENT)
    assert not rules.echoes_checksum({}, "CRC32C", SENT)


def test_auto_may_fall_back_only_before_any_part_is_stored_in_an_upload_it_created() -> None:
    assert rules.can_fall_back(auto=True, algorithm="CRC32C", stored_parts=0, created_here=True)
    assert not rules.can_fall_back(auto=True, algorithm="CRC32C", stored_parts=1, created_here=True)
    assert not rules.can_fall_back(auto=True, algorithm="CRC32C", stored_parts=0, created_here=False)  # resumed
    assert not rules.can_fall_back(auto=False, algorithm="CRC32C", stored_parts=0, created_here=True)
    assert not rules.can_fall_back(auto=True, algorithm="MD5", stored_parts=0, created_here=True)


@pytest.mark.parametrize(
    ("used", "auto", "current", "may_switch", "decision"),
    [
        ("CRC32C", True, "CRC32C", True, "switch"),
        ("CRC32C", True, "MD5", False, "resend"),  # another part switched the upload meanwhile
        ("CRC32C", True, "CRC32C", False, "no"),  # a part is stored with the CRC: too late
        ("CRC32C", False, "CRC32C", True, "no"),  # an explicit algorithm never changes
        ("MD5", True, "MD5", True, "no"),  # nothing left to drop
    ],
)
def test_a_refused_checksum_header_switches_auto_to_md5_once(
    used: str, auto: bool, current: str, may_switch: bool, decision: str
) -> None:
    assert rules.fall_back(REFUSED, used=used, auto=auto, current=current, may_switch=may_switch) == decision


def test_other_failures_never_switch_the_algorithm() -> None:
    for failure in (_failure("AccessDenied", 403), _failure("BadDigest", 400), _failure("InvalidArgument", 400, "x")):
        assert rules.fall_back(failure, used="CRC32C", auto=True, current="CRC32C", may_switch=True) == "no"


def test_md5_is_needed_up_front_for_content_md5_or_a_possible_fallback() -> None:
    assert rules.md5_up_front("MD5", may_fall_back=False)
    assert rules.md5_up_front("CRC32C", may_fall_back=True)
    assert not rules.md5_up_front("CRC32C", may_fall_back=False)


@pytest.mark.parametrize(
    ("up_front", "verify", "echoes", "wanted"),
    [
        (True, False, True, True),
        (False, "auto", False, True),  # auto checks ETags until the server is seen to echo our CRCs
        (False, "auto", True, False),
        (False, True, True, True),
        (False, False, False, False),
    ],
)
def test_when_parts_need_their_md5(up_front: bool, verify: bool | str, echoes: bool, wanted: bool) -> None:
    assert rules.wants_md5(up_front=up_front, verify_part_etag=verify, server_echoes=echoes) is wanted


def test_an_md5_upload_is_composite_whatever_is_configured() -> None:
    assert rules.checksum_type_for("MD5", "FULL_OBJECT") == "COMPOSITE"
    assert rules.checksum_type_for("CRC64NVME", "FULL_OBJECT") == "FULL_OBJECT"
