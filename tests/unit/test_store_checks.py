"""The probe's verdicts and the decisions on them: what ``auto`` sends and what a result may claim."""

from __future__ import annotations

from typing import Any

import pytest
from botocore.exceptions import ClientError

from airflow_s3stream.s3.classify import classify
from airflow_s3stream.s3.store_checks import (
    StoreChecks,
    checked_by_store,
    choose_algorithm,
    questions_for,
    verdict_of_probe,
)

AWS = StoreChecks("checked", "checked")
RGW = StoreChecks("ignored", "checked")
MOTO = StoreChecks("ignored", "ignored")
B2 = StoreChecks("refused", "checked")  # refuses x-amz-checksum-* headers outright
DENIED = StoreChecks("unknown", "unknown")


def _answer(code: str, status: int, message: str = "") -> Any:
    response: Any = {"Error": {"Code": code, "Message": message}, "ResponseMetadata": {"HTTPStatusCode": status}}
    return classify(ClientError(response, "PutObject"))


@pytest.mark.parametrize(
    ("failure", "verdict"),
    [
        (None, "ignored"),  # 200: the wrong checksum was stored
        (_answer("BadDigest", 400, "The CRC32C you specified did not match"), "checked"),
        (_answer("InvalidDigest", 400), "checked"),
        (_answer("InvalidChecksum", 400), "checked"),
        (_answer("XAmzContentSHA256Mismatch", 400), "unknown"),  # the body was damaged: no answer
        (_answer("InvalidArgument", 400, "Unsupported header 'x-amz-checksum-crc32c'"), "refused"),
        (_answer("AccessDenied", 403), "unknown"),
        (_answer("InvalidArgument", 400, "Invalid key"), "unknown"),
        (_answer("NoSuchBucket", 404), "unknown"),
    ],
)
def test_a_probe_answer_is_one_verdict(failure: Any, verdict: str) -> None:
    assert verdict_of_probe(failure) == verdict


@pytest.mark.parametrize(
    ("checks", "algorithm"),
    [(AWS, "CRC32C"), (RGW, "MD5"), (MOTO, "MD5"), (B2, "MD5"), (DENIED, "CRC32C"), (StoreChecks(), "CRC32C")],
)
def test_auto_sends_crc32c_only_where_it_may_be_checked(checks: StoreChecks, algorithm: str) -> None:
    assert choose_algorithm("auto", checks) == algorithm
    for explicit in ("CRC32C", "CRC32", "CRC64NVME", "MD5"):
        assert choose_algorithm(explicit, checks) == explicit  # never changed


@pytest.mark.parametrize(
    ("algorithm", "checks", "echoed", "claims"),
    [
        ("CRC32C", AWS, False, ["CRC32C"]),
        ("MD5", AWS, False, ["Content-MD5"]),
        ("MD5", RGW, False, ["Content-MD5"]),
        ("MD5", MOTO, False, []),
        ("CRC32C", RGW, False, []),  # sent, ignored: claiming it would be the lie
        ("CRC32C", DENIED, False, []),
        ("CRC64NVME", AWS, False, []),  # the probe tried CRC32C only
        ("CRC64NVME", DENIED, True, ["CRC64NVME"]),  # the server echoed ours back
        ("MD5", DENIED, True, []),  # nothing echoes Content-MD5
    ],
)
def test_a_result_claims_only_checks_the_store_is_known_to_make(
    algorithm: str, checks: StoreChecks, echoed: bool, claims: list[str]
) -> None:
    assert checked_by_store(algorithm, checks, echoed=echoed) == claims


@pytest.mark.parametrize(
    ("algorithm", "checks", "asks"),
    [
        ("auto", StoreChecks(), (True, True)),
        ("auto", StoreChecks("checked", None), (False, False)),  # CRC32C it is: Content-MD5 is not needed
        ("auto", StoreChecks("ignored", None), (False, True)),
        ("auto", StoreChecks("refused", None), (False, True)),  # a refusal seen at an upload, before any probe
        ("MD5", StoreChecks(), (False, True)),
        ("CRC32C", StoreChecks(), (True, False)),
        ("CRC64NVME", StoreChecks(), (False, False)),  # claimed only when echoed: nothing to probe
        ("MD5", RGW, (False, False)),
    ],
)
def test_a_probe_asks_only_what_the_upload_needs_and_only_once(
    algorithm: str, checks: StoreChecks, asks: tuple[bool, bool]
) -> None:
    assert questions_for(algorithm, checks) == asks
