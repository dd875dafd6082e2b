"""A retry budget shared by every stream of one task: a store in trouble is not hammered by all at once.

It is botocore's standard-mode retry quota (``botocore/retries/quota.py``): a bucket of tokens.
Each retry takes :data:`RETRY_COST` tokens (:data:`TIMEOUT_RETRY_COST` after a timeout, which
ties up a connection longer); each call that succeeds puts back what its last retry took, or
:data:`SUCCESS_REFUND` when it needed none, up to the capacity. When the bucket cannot pay for a
retry, :class:`~airflow_s3stream.s3.retry.RetryPolicy` raises the error instead of retrying it,
saying the budget is spent, and Airflow's task-level retry takes over later.

One :class:`RetryBudget` belongs to one :class:`~airflow_s3stream.s3.retry.RetryPolicy` (and to
every copy made with ``dataclasses.replace``), so the parts in flight, the read-ahead GETs and the
single calls of one task draw on the same tokens.
"""

from __future__ import annotations

import threading

__all__ = ["DEFAULT_CAPACITY", "RETRY_COST", "SUCCESS_REFUND", "TIMEOUT_RETRY_COST", "RetryBudget"]

DEFAULT_CAPACITY = 500  # tokens: botocore's INITIAL_RETRY_TOKENS, 100 retries of a failing store
RETRY_COST = 5  # tokens per retry (botocore's RETRY_COST)
TIMEOUT_RETRY_COST = 10  # tokens per retry after a timeout (botocore's TIMEOUT_RETRY_COST)
SUCCESS_REFUND = 1  # tokens a call that needed no retry puts back (botocore's NO_RETRY_INCREMENT)


class RetryBudget:
    """The tokens a task may still spend on retries; thread-safe.

    :param capacity: tokens at the start and at most (``0``: no retry at all).
    """

    def __init__(self, capacity: int = DEFAULT_CAPACITY) -> None:
        if capacity < 0:
            raise ValueError(f"a retry budget must not be negative, got {capacity}")
        self.capacity = capacity
        self._tokens = capacity
        self._lock = threading.Lock()

    @property
    def available(self) -> int:
        """Tokens left now."""
        with self._lock:
            return self._tokens

    def take(self, *, timeout: bool = False) -> int:
        """Pay for one retry: the tokens taken, or ``0`` when the budget cannot pay (do not retry)."""
        cost = TIMEOUT_RETRY_COST if timeout else RETRY_COST
        with self._lock:
            if self._tokens < cost:
                return 0
            self._tokens -= cost
            return cost

    def refund(self, taken: int) -> None:
        """A call succeeded: put back ``taken`` (what its last retry took), or the refund of a call
        that needed no retry when ``taken`` is 0; never above the capacity."""
        with self._lock:
            self._tokens = min(self.capacity, self._tokens + (taken or SUCCESS_REFUND))

    def __getstate__(self) -> dict[str, int]:
        """A copy (an operator deep-copied or pickled by Airflow) keeps the tokens, not the lock."""
        return {"capacity": self.capacity, "tokens": self.available}

    def __setstate__(self, state: dict[str, int]) -> None:
        self.capacity, self._tokens = state["capacity"], state["tokens"]
        self._lock = threading.Lock()

    def __repr__(self) -> str:
        return f"RetryBudget({self.available}/{self.capacity} tokens)"
