"""RetryPolicy: which errors are retried, how often, and what is raised at the end."""

from __future__ import annotations

from typing import Any

import pytest
from botocore.exceptions import ClientError

from airflow_s3stream.errors import TransientError
from airflow_s3stream.s3.retry import RetryPolicy


def _client_error(code: str, status: int) -> ClientError:
    response: Any = {"Error": {"Code": code}, "ResponseMetadata": {"HTTPStatusCode": status}}
    return ClientError(response, "UploadPart")


def test_call_retries_transient_errors_until_success() -> None:
    outcomes: list[BaseException | str] = [_client_error("SlowDown", 503), ConnectionResetError(), "ok"]
    waits: list[float] = []
    retried: list[int] = []

    def fn() -> str:
        item = outcomes.pop(0)
        if isinstance(item, BaseException):
            raise item
        return item

    policy = RetryPolicy(max_attempts=3, base_delay=1.0, max_delay=1.5)
    assert policy.call(fn, "part 1", sleep=waits.append, on_retry=lambda n, e: retried.append(n)) == "ok"
    assert retried == [1, 2]
    assert len(waits) == 2 and all(0 <= w <= 1.5 for w in waits)


def test_call_fails_fast_on_client_errors() -> None:
    calls = []

    def fn() -> None:
        calls.append(1)
        raise _client_error("AccessDenied", 403)

    with pytest.raises(ClientError):
        RetryPolicy(max_attempts=5).call(fn, "part 1", sleep=lambda s: None)
    assert len(calls) == 1


def test_call_raises_transient_error_naming_the_work_when_exhausted() -> None:
    def fn() -> None:
        raise _client_error("SlowDown", 503)

    with pytest.raises(TransientError, match=r"part 7 of s3://b/k: still failing after 2 attempts"):
        RetryPolicy(max_attempts=2).call(fn, "part 7 of s3://b/k", sleep=lambda s: None)


def test_policy_rejects_nonsense() -> None:
    with pytest.raises(ValueError, match="max_attempts"):
        RetryPolicy(max_attempts=0)


def test_a_400_is_never_retried_even_on_a_non_idempotent_call() -> None:
    calls = []

    def fn() -> None:
        calls.append(1)
        raise _client_error("InvalidRequest", 400)

    with pytest.raises(ClientError):
        RetryPolicy(max_attempts=5).call(fn, "CreateMultipartUpload s3://b/k", sleep=lambda s: None)
    assert len(calls) == 1
