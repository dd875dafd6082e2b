"""The package's one retry loop for S3 calls: exponential backoff with full jitter, within a budget.

What is retried is decided by :func:`~airflow_s3stream.s3.classify.classify` alone: throttling,
5xx, resets and timeouts, and bytes corrupted on the way (a ``checksum`` failure: the body is sent
again); every other failure propagates at once. Each retry is paid from the policy's
:class:`~airflow_s3stream.s3.retry_budget.RetryBudget`, shared by every stream of the task: when
it is spent, the error is raised instead of retried. A streamed GET cut mid-way is resumed from the
byte it stopped at by :meth:`RetryPolicy.resumable_read`, through this same loop. botocore's own retries are
turned off on the clients the package builds (:func:`~airflow_s3stream.s3.client.single_attempt_config`),
so one logical request is sent at most ``max_attempts`` times, never attempts x attempts. When the
attempts run out, :class:`~airflow_s3stream.errors.TransientError` names what was being done, so
Airflow's task-level retry can take over.

    policy = RetryPolicy(max_attempts=5)
    etag = policy.call(lambda: client.upload_part(...)["ETag"], what="part 7 of s3://b/k")
"""

from __future__ import annotations

import random
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, TypeVar

from airflow_s3stream.errors import ChecksumMismatchError, S3StreamError, TransientError
from airflow_s3stream.s3.classify import S3Failure, checksum_problem, classify, raise_error
from airflow_s3stream.s3.retry_budget import RetryBudget

if TYPE_CHECKING:
    from airflow_s3stream.s3.resumable_read import RangeOpener, ResumableRead

__all__ = ["RetryPolicy", "s3_call"]

T = TypeVar("T")


@dataclass(frozen=True)
class RetryPolicy:
    """How often and how patiently to retry one S3 call.

    :param max_attempts: total tries including the first (1 disables retrying).
    :param base_delay: seconds before the second try; doubles each time (exponential backoff).
    :param max_delay: upper bound on one wait, in seconds.
    :param budget: the retry tokens this policy's calls share (one per task: every copy of the
        policy made with ``dataclasses.replace`` keeps it).
    """

    max_attempts: int = 6
    base_delay: float = 0.1
    max_delay: float = 8.0
    budget: RetryBudget = field(default_factory=RetryBudget, compare=False)

    def __post_init__(self) -> None:
        if self.max_attempts < 1:
            raise ValueError(f"max_attempts must be at least 1, got {self.max_attempts}")
        if self.base_delay < 0 or self.max_delay < 0:
            raise ValueError("retry delays must not be negative")

    def delay(self, attempt: int) -> float:
        """Seconds to wait after failed try number ``attempt`` (1-based): full jitter."""
        return random.uniform(0, min(self.max_delay, self.base_delay * (2 ** (attempt - 1))))

    def call(
        self,
        fn: Callable[[], T],
        what: str,
        sleep: Callable[[float], None] = time.sleep,
        on_retry: Callable[[int, BaseException], None] | None = None,
    ) -> T:
        """Run ``fn`` until it succeeds, retrying transient errors and corrupted bytes.

        Other errors propagate unchanged on the first occurrence. After ``max_attempts``
        failures, or when the retry budget cannot pay for another try, raises
        :class:`TransientError` (or :class:`ChecksumMismatchError` for bytes corrupted on every
        send) naming ``what`` and chained to the last error. ``on_retry(attempt, exc)`` is called
        before each wait.
        """
        taken = 0
        for attempt in range(1, self.max_attempts + 1):
            try:
                result = fn()
            except Exception as exc:
                failure = classify(exc)
                if not failure.worth_retrying:
                    raise
                if attempt == self.max_attempts:
                    raise _gave_up(what, failure, attempt) from exc
                taken = self.budget.take(timeout=failure.timed_out)
                if not taken:
                    raise _gave_up(what, failure, None, self.budget) from exc
                if on_retry is not None:
                    on_retry(attempt, exc)
                sleep(self.delay(attempt))
            else:
                self.budget.refund(taken)
                return result
        raise AssertionError("unreachable")  # pragma: no cover

    def resumable_read(
        self, open_at: RangeOpener, start: int, end: int, what: str, on_resume: Callable[[], None] | None = None
    ) -> ResumableRead:
        """Bytes ``start..end - 1`` of a body ``open_at(offset)`` opens at any offset, as a stream
        whose reads are retried by this policy: a body cut mid-way is opened again at the byte it
        stopped at (:class:`~airflow_s3stream.s3.resumable_read.ResumableRead`)."""
        from airflow_s3stream.s3.resumable_read import ResumableRead

        return ResumableRead(self, open_at, start, end, what, on_resume=on_resume)


def _gave_up(what: str, failure: S3Failure, attempts: int | None, budget: RetryBudget | None = None) -> S3StreamError:
    """The error raised when the loop stops retrying ``failure``: after ``attempts`` tries, or
    (``attempts`` None) because ``budget`` cannot pay for another."""
    if failure.kind == "checksum":
        problem = checksum_problem(failure)
        if attempts is None:
            return ChecksumMismatchError(f"{what}: {problem}; not sent again: the retry budget is spent ({budget})")
        return ChecksumMismatchError(f"{what}: {problem} after {attempts} attempts")
    if attempts is None:
        return TransientError(f"{what}: {failure.describe()}; not retried: the retry budget is spent ({budget})")
    return TransientError(f"{what}: still failing after {attempts} attempts: {failure.describe()}")


def s3_call(policy: RetryPolicy, fn: Callable[[], T], what: str, *, reading: bool = False) -> T:
    """``policy.call(fn)``, with what finally fails translated by :func:`~.classify.to_error`.

    ``what`` names the operation and the object (``"HeadObject s3://b/k"``); ``reading`` says the
    object is a source (a missing one is then a ``SourceError``, not a ``DestinationError``).
    """
    try:
        return policy.call(fn, what=what)
    except Exception as exc:
        raise_error(exc, what, reading=reading)
