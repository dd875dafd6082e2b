"""How the package's boto3 S3 clients are configured: one retry layer, a pool sized for parallel work.

botocore retries on its own (legacy mode: 5 sends, standard: 3) and the package's
:class:`~airflow_s3stream.s3.retry.RetryPolicy` retries too; stacked, one logical request under a
503 storm was sent 30 times, non-idempotent CreateMultipartUpload and CompleteMultipartUpload
included (``benchmarks/bench_retry_sends.py`` counts it). So the package's clients make exactly
one attempt per call and the policy is the only retry layer: it knows which calls are safe to
repeat, follows a lost CompleteMultipartUpload with a HeadObject instead, and names the object
when it gives up.
"""

from __future__ import annotations

import contextlib
import logging
from typing import Any

from botocore.config import Config

__all__ = ["DEFAULT_POOL_CONNECTIONS", "configured_max_attempts", "single_attempt_config", "warn_if_retrying"]

log = logging.getLogger("airflow_s3stream.s3")

DEFAULT_POOL_CONNECTIONS = 16  # HTTP connections per client; botocore's default is 10


def configured_max_attempts(config: Config | None) -> int | None:
    """The attempts a botocore ``retries`` setting asks for (``total_max_attempts``, or
    ``max_attempts`` retries + 1), or ``None`` when it sets none. Operators use it as their default."""
    retries = getattr(config, "retries", None) or {}
    if "total_max_attempts" in retries:
        return int(retries["total_max_attempts"])
    if "max_attempts" in retries:
        return int(retries["max_attempts"]) + 1
    return None


def single_attempt_config(
    base: Config | None = None, *, max_pool_connections: int = DEFAULT_POOL_CONNECTIONS
) -> Config:
    """``base`` (a connection's own config, kept) with botocore's retries off and a pool of at
    least ``max_pool_connections``. Everything else ``base`` sets (checksum calculation, timeouts,
    addressing style, proxies) is kept as it is."""
    pool = max(max_pool_connections, getattr(base, "max_pool_connections", None) or 0)
    override = Config(max_pool_connections=pool, retries={"total_max_attempts": 1, "mode": "standard"})
    return base.merge(override) if base is not None else override


def warn_if_retrying(client: Any) -> None:
    """Log once per client when botocore would retry on its own (a client not built by the package)."""
    if getattr(client, "_s3stream_checked", False):
        return
    config = getattr(getattr(client, "meta", None), "config", None)
    if config is None:  # not a botocore client (a stand-in in a pure unit test): nothing to say
        return
    retries = getattr(config, "retries", None) or {}
    if retries.get("total_max_attempts") != 1:
        log.warning(
            "this boto3 client retries on its own (%s); with the package's retry policy on top, one "
            "request may be sent many times. Build it with airflow_s3stream.s3.client.single_attempt_config().",
            retries or "botocore defaults",
        )
    with contextlib.suppress(AttributeError):  # a client refusing attributes is checked each time
        client._s3stream_checked = True
