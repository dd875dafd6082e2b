"""The package's one retry layer for S3 calls: exponential backoff with full jitter.

What is retried is decided by :func:`~airflow_s3stream.s3.classify.classify` alone: throttling,
5xx, resets and timeouts; every other failure propagates at once. botocore's own retries are
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
from dataclasses import dataclass
from typing import TypeVar

from airflow_s3stream.errors import TransientError
from airflow_s3stream.s3.classify import classify, raise_error

__all__ = ["RetryPolicy", "s3_call"]

T = TypeVar("T")


@dataclass(frozen=True)
class RetryPolicy:
    """How often and how patiently to retry one S3 call.

    :param max_attempts: total tries including the first (1 disables retrying).
    :param base_delay: seconds before the second try; doubles each time (exponential backoff).
    :param max_delay: upper bound on one wait, in seconds.
    """

    max_attempts: int = 6
    base_delay: float = 0.1
    max_delay: float = 8.0

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
        """Run ``fn`` until it succeeds, retrying transient errors.

        Non-transient errors propagate unchanged on the first occurrence. After
        ``max_attempts`` transient failures, raises :class:`TransientError` naming ``what``
        and chained to the last error.
        """
        for attempt in range(1, self.max_attempts + 1):
            try:
                return fn()
            except Exception as exc:
                failure = classify(exc)
                if not failure.retryable:
                    raise
                if attempt == self.max_attempts:
                    raise TransientError(
                        f"{what}: still failing after {attempt} attempts: {failure.describe()}"
                    ) from exc
                if on_retry is not None:
                    on_retry(attempt, exc)
                sleep(self.delay(attempt))
        raise AssertionError("unreachable")  # pragma: no cover


def s3_call(policy: RetryPolicy, fn: Callable[[], T], what: str, *, reading: bool = False) -> T:
    """``policy.call(fn)``, with what finally fails translated by :func:`~.classify.to_error`.

    ``what`` names the operation and the object (``"HeadObject s3://b/k"``); ``reading`` says the
    object is a source (a missing one is then a ``SourceError``, not a ``DestinationError``).
    """
    try:
        return policy.call(fn, what=what)
    except Exception as exc:
        raise_error(exc, what, reading=reading)
