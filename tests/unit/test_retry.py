"""RetryPolicy: which errors are retried, how often, within what budget, and what is raised at the end."""

from __future__ import annotations

import copy
import dataclasses
import pickle
from typing import Any

import pytest
from botocore.exceptions import ClientError, ReadTimeoutError

from airflow_s3stream.errors import ChecksumMismatchError, TransientError
from airflow_s3stream.s3.classify import CorruptedInTransitError, classify
from airflow_s3stream.s3.retry import RetryPolicy
from airflow_s3stream.s3.retry_budget import (
    DEFAULT_CAPACITY,
    RETRY_COST,
    SUCCESS_REFUND,
    TIMEOUT_RETRY_COST,
    RetryBudget,
)


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


def test_a_checksum_mismatch_is_sent_again_by_the_same_loop() -> None:
    refused, corrupted = _client_error("BadDigest", 400), CorruptedInTransitError("MD5 mismatch")
    outcomes: list[BaseException | str] = [refused, corrupted, "ok"]

    def fn() -> str:
        item = outcomes.pop(0)
        if isinstance(item, BaseException):
            raise item
        return item

    assert RetryPolicy(max_attempts=3).call(fn, "part 1", sleep=lambda s: None) == "ok"


def test_bytes_corrupted_on_every_send_are_a_checksum_mismatch_after_max_attempts() -> None:
    sends = []

    def fn() -> None:
        sends.append(1)
        raise CorruptedInTransitError("MD5 mismatch (sent aa, server stored bb)")

    with pytest.raises(ChecksumMismatchError, match=r"part 2 of s3://b/k: MD5 mismatch \(sent aa.* after 4 attempts"):
        RetryPolicy(max_attempts=4).call(fn, "part 2 of s3://b/k", sleep=lambda s: None)
    assert len(sends) == 4


def test_a_store_refusing_the_bytes_every_time_names_the_refusal() -> None:
    def fn() -> None:
        raise _client_error("BadDigest", 400)

    with pytest.raises(ChecksumMismatchError, match=r"part 2 of s3://b/k: server refused the checksum: BadDigest"):
        RetryPolicy(max_attempts=2).call(fn, "part 2 of s3://b/k", sleep=lambda s: None)


def test_a_spent_retry_budget_raises_instead_of_retrying() -> None:
    policy = RetryPolicy(max_attempts=6, budget=RetryBudget(capacity=2 * RETRY_COST))
    sends = []

    def fn() -> None:
        sends.append(1)
        raise _client_error("SlowDown", 503)

    with pytest.raises(TransientError, match=r"part 3 of s3://b/k: SlowDown \(503\).*retry budget is spent"):
        policy.call(fn, "part 3 of s3://b/k", sleep=lambda s: None)
    assert len(sends) == 3  # the first send and the two retries the budget paid for


def test_every_copy_of_a_policy_draws_on_one_budget() -> None:
    policy = RetryPolicy(budget=RetryBudget(capacity=RETRY_COST))
    failing = [_client_error("SlowDown", 503)]

    def fn() -> str:
        if failing:
            raise failing.pop()
        return "ok"

    assert dataclasses.replace(policy, max_attempts=2).call(fn, "a", sleep=lambda s: None) == "ok"
    assert policy.budget.available == RETRY_COST  # the success put back what its retry took
    policy.budget.take()
    with pytest.raises(TransientError, match="retry budget is spent"):
        policy.call(lambda: (_ for _ in ()).throw(ConnectionResetError()), "b", sleep=lambda s: None)


def test_a_budget_is_botocores_quota() -> None:
    budget = RetryBudget()
    assert budget.available == DEFAULT_CAPACITY == 500
    assert budget.take() == RETRY_COST == 5 and budget.take(timeout=True) == TIMEOUT_RETRY_COST == 10
    budget.refund(0)
    assert budget.available == 500 - 5 - 10 + SUCCESS_REFUND
    budget.refund(1000)
    assert budget.available == 500  # never above the capacity
    with pytest.raises(ValueError, match="negative"):
        RetryBudget(capacity=-1)


def test_timeouts_are_told_apart_from_throttling() -> None:
    assert classify(ReadTimeoutError(endpoint_url="http://x")).timed_out
    assert not classify(_client_error("SlowDown", 503)).timed_out


class _Body:
    """A body over ``data[at:]`` that is cut (raises) after ``cut`` bytes, when given."""

    def __init__(self, data: bytes, at: int, cut: int | None) -> None:
        self.data, self.at, self.cut = data, at, cut

    def read(self, size: int = -1) -> bytes:
        if self.cut is not None and self.cut <= 0:
            raise ConnectionResetError("cut")
        n = len(self.data) - self.at if size < 0 else size
        if self.cut is not None:
            n = min(n, self.cut)
            self.cut -= n
        chunk = self.data[self.at : self.at + n]
        self.at += len(chunk)
        return chunk

    def close(self) -> None:
        pass


def test_a_resumable_read_opens_a_cut_body_again_at_the_byte_it_stopped_at() -> None:
    data = bytes(range(256)) * 40
    opened: list[int] = []

    def open_at(at: int) -> _Body:
        opened.append(at)
        return _Body(data, at, cut=3000 if len(opened) == 1 else None)

    read = RetryPolicy(base_delay=0).resumable_read(open_at, 100, len(data), "s3://b/k")
    view = memoryview(bytearray(len(data) - 100))
    assert read.readinto(view, chunk=1024) == len(view)
    assert bytes(view) == data[100:]
    assert opened == [100, 3100] and read.resumed == 1


def test_a_resumable_read_gives_up_after_max_attempts_at_one_byte() -> None:
    def open_at(at: int) -> _Body:
        raise ConnectionResetError("reset")

    read = RetryPolicy(max_attempts=3, base_delay=0).resumable_read(open_at, 0, 10, "s3://b/k")
    with pytest.raises(TransientError, match=r"s3://b/k at byte 0: still failing after 3 attempts"):
        read.read()
    assert read.resumed == 0  # nothing had arrived: nothing was resumed


def test_a_resumable_read_propagates_what_is_not_worth_retrying() -> None:
    calls = []

    def open_at(at: int) -> _Body:
        calls.append(at)
        raise _client_error("PreconditionFailed", 412)

    with pytest.raises(ClientError):
        RetryPolicy().resumable_read(open_at, 0, 10, "s3://b/k").read()
    assert calls == [0]


def test_a_policy_survives_the_copies_airflow_makes_of_an_operator() -> None:
    policy = RetryPolicy(max_attempts=3, budget=RetryBudget(capacity=20))
    policy.budget.take()
    for copied in (copy.deepcopy(policy), pickle.loads(pickle.dumps(policy))):
        assert copied.max_attempts == 3 and copied.budget.available == 15
        assert copied.budget.take() == RETRY_COST  # with a lock of its own


def test_a_resumable_read_opened_up_front_reads_from_that_body() -> None:
    data = b"0123456789"
    opened: list[int] = []

    def open_at(at: int) -> _Body:
        opened.append(at)
        return _Body(data, at, cut=None)

    read = RetryPolicy().resumable_read(open_at, 2, len(data), "s3://b/k")
    read.open()
    read.open()  # a body is open already: nothing is sent
    assert opened == [2] and read.read(100) == data[2:] and opened == [2]
