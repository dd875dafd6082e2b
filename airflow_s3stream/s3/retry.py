"""Retry policy for S3 calls: exponential backoff with full jitter, transient errors only.

Throttling (SlowDown, 503), server errors (5xx), connection resets and timeouts are retried;
client errors (AccessDenied, NoSuchBucket, any other 4xx) fail at once. When the attempts run
out, :class:`~airflow_s3stream.errors.TransientError` is raised naming what was being done, so
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

__all__ = ["RetryPolicy", "is_transient"]

T = TypeVar("T")

# Error codes S3 (and S3-compatible servers) use for "try again later".
TRANSIENT_ERROR_CODES = frozenset(
    {
        "SlowDown",
        "ServiceUnavailable",
        "InternalError",
        "RequestTimeout",
        "RequestTimeTooSkewed",
        "Throttling",
        "ThrottlingException",
        "RequestLimitExceeded",
        "TooManyRequestsException",
        "OperationAborted",
    }
)


def is_transient(exc: BaseException) -> bool:
    """True when ``exc`` is worth retrying: throttling, 5xx, resets, timeouts, cut-off bodies."""
    from botocore.exceptions import (
        ClientError,
        ConnectionClosedError,
        ConnectTimeoutError,
        EndpointConnectionError,
        IncompleteReadError,
        ReadTimeoutError,
        ResponseStreamingError,
    )
    from botocore.exceptions import ConnectionError as BotoConnectionError

    if isinstance(exc, ClientError):
        error = exc.response.get("Error", {})
        status = exc.response.get("ResponseMetadata", {}).get("HTTPStatusCode", 0)
        return error.get("Code") in TRANSIENT_ERROR_CODES or status >= 500 or status == 429
    transient_types = (
        BotoConnectionError,
        ConnectionClosedError,
        ConnectTimeoutError,
        EndpointConnectionError,
        IncompleteReadError,
        ReadTimeoutError,
        ResponseStreamingError,
        ConnectionError,  # builtin: ConnectionResetError, BrokenPipeError, ...
        TimeoutError,
    )
    if isinstance(exc, transient_types):
        return True
    import urllib3.exceptions

    return isinstance(exc, urllib3.exceptions.HTTPError)


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
                if not is_transient(exc):
                    raise
                if attempt == self.max_attempts:
                    raise TransientError(f"{what}: still failing after {attempt} attempts: {exc}") from exc
                if on_retry is not None:
                    on_retry(attempt, exc)
                sleep(self.delay(attempt))
        raise AssertionError("unreachable")  # pragma: no cover
