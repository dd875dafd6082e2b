"""pyarrow's own S3 filesystem, configured like the boto3 client the rest of the package uses.

Parquet needs random access (the footer first, then column chunks). pyarrow reading through a
*Python* file object can abort the interpreter at exit (pyarrow 26: "terminate called without an
active exception", exit code 134), and spooling to local disk needs disk the size of the file.
``pyarrow.fs.S3FileSystem`` reads S3 natively (C++, ranged GETs), with no Python object and no disk.

:class:`ArrowS3Settings` carries what it needs: credentials (never in ``repr``, never logged),
region, endpoint and the number of tries per request, taken from the task's
:class:`~airflow_s3stream.s3.retry.RetryPolicy` (:meth:`ArrowS3Settings.from_client`,
:func:`arrow_retry_strategy`): pyarrow's GETs are sent from C++, outside the package's retry loop,
so its standard retry strategy retries them, as often as the policy retries every other call.
pyarrow finalizes its S3 layer itself at interpreter exit
(``atexit``: ``ensure_s3_finalized``); nothing here keeps a filesystem alive beyond one load.
"""

from __future__ import annotations

import urllib.parse
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from airflow_s3stream.s3.retry import RetryPolicy

if TYPE_CHECKING:
    from mypy_boto3_s3.client import S3Client

__all__ = ["ArrowS3Settings", "arrow_retry_strategy"]

DEFAULT_CONNECT_TIMEOUT_S = 10.0
DEFAULT_REQUEST_TIMEOUT_S = 60.0


@dataclass(frozen=True)
class ArrowS3Settings:
    """How to reach S3 from pyarrow: the same identity, region and endpoint as the boto3 client.

    :param endpoint_url: ``None`` for AWS, else ``http(s)://host:port`` (MinIO, moto, Ceph ...).
    :param max_attempts: tries per request, the first included.
    """

    access_key: str | None = field(default=None, repr=False)
    secret_key: str | None = field(default=None, repr=False)
    session_token: str | None = field(default=None, repr=False)
    region: str | None = None
    endpoint_url: str | None = None
    max_attempts: int = RetryPolicy.max_attempts
    connect_timeout_s: float = DEFAULT_CONNECT_TIMEOUT_S
    request_timeout_s: float = DEFAULT_REQUEST_TIMEOUT_S
    tls_ca_file: str | None = None  # PEM CA bundle for an https endpoint (the connection's ``verify``)

    @classmethod
    def from_client(cls, client: S3Client, retry: RetryPolicy | int | None = None) -> ArrowS3Settings:
        """The settings of a boto3 S3 client: its endpoint, region and (frozen) credentials, and the
        tries per request of ``retry`` (the task's policy; a bare number of attempts is accepted)."""
        max_attempts = retry if isinstance(retry, int) else (retry or RetryPolicy()).max_attempts
        credentials = client._request_signer._credentials  # type: ignore[attr-defined]  # no public accessor
        frozen = credentials.get_frozen_credentials() if credentials is not None else None
        endpoint = str(client.meta.endpoint_url or "")
        host = urllib.parse.urlsplit(endpoint).hostname or ""
        is_aws = host.endswith(".amazonaws.com") or host.endswith(".amazonaws.com.cn")
        return cls(
            access_key=frozen.access_key if frozen else None,
            secret_key=frozen.secret_key if frozen else None,
            session_token=frozen.token if frozen else None,
            region=client.meta.region_name,
            endpoint_url=None if is_aws or not endpoint else endpoint,
            max_attempts=max_attempts,
        )

    def filesystem(self) -> Any:
        """A new ``pyarrow.fs.S3FileSystem`` (read-only use: no bucket creation or deletion)."""
        import pyarrow.fs as pafs

        kwargs: dict[str, Any] = {}
        if self.endpoint_url:
            parts = urllib.parse.urlsplit(self.endpoint_url)
            kwargs["scheme"] = parts.scheme or "https"
            kwargs["endpoint_override"] = parts.netloc + parts.path.rstrip("/")
        if self.access_key and self.secret_key:
            kwargs.update(access_key=self.access_key, secret_key=self.secret_key)
            if self.session_token:
                kwargs["session_token"] = self.session_token
        if self.tls_ca_file:
            kwargs["tls_ca_file_path"] = self.tls_ca_file
        return pafs.S3FileSystem(
            region=self.region or "us-east-1",
            connect_timeout=self.connect_timeout_s,
            request_timeout=self.request_timeout_s,
            retry_strategy=arrow_retry_strategy(RetryPolicy(max_attempts=self.max_attempts)),
            **kwargs,
        )


def arrow_retry_strategy(policy: RetryPolicy) -> Any:
    """pyarrow's retry strategy for ``policy``: AWS's standard strategy with the policy's attempts
    per request. pyarrow takes no other setting (its backoff and its retryable errors are the AWS
    SDK's own), and its retries are not paid from the policy's budget."""
    import pyarrow.fs as pafs

    return pafs.AwsStandardS3RetryStrategy(max_attempts=policy.max_attempts)
