"""S3 side of the provider: an ``aws`` connection turned into a boto3 client for the core.

Everything about the endpoint (``endpoint_url`` and ``verify`` in the connection extra, region,
role assumption, profiles) comes from Airflow's own ``S3Hook``; this hook only sizes the client's
connection pool for parallel work, turns off botocore's own retries (see :meth:`S3StreamHook.config`)
and, for TLS endpoints, keeps botocore's checksum of small bodies in a header and names the
connection when its TLS settings fail (see :meth:`S3StreamHook.get_s3_client`). A connection id
that does not exist fails the first client or credentials with its parameter named
(:mod:`~airflow_s3stream.hooks.connections`).
"""

from __future__ import annotations

import os
import sys
from types import FrameType
from typing import Any

from airflow.providers.amazon.aws.hooks.s3 import S3Hook
from botocore.config import Config

from airflow_s3stream.errors import ConfigurationError
from airflow_s3stream.hooks.connections import require_connection
from airflow_s3stream.s3.arrow_fs import ArrowS3Settings
from airflow_s3stream.s3.client import (
    DEFAULT_POOL_CONNECTIONS,
    checksum_in_header,
    configured_max_attempts,
    explain_connection_failures,
    single_attempt_config,
)
from airflow_s3stream.s3.retry import RetryPolicy

__all__ = ["S3StreamHook"]


class S3StreamHook(S3Hook):
    """``S3Hook`` whose boto3 client can serve ``max_pool_connections`` requests at once.

    :param aws_conn_id: Airflow connection of type ``aws`` (``aws_default``).
    :param max_pool_connections: HTTP connections the client keeps; at least the number of
        parallel parts or ranged reads the caller will run (botocore's default is 10).
    """

    hook_name = "S3 Stream"
    # The operator parameter that named this hook's connection, as messages say it.
    conn_parameter = S3Hook.conn_name_attr
    _connection_checked = False

    def __init__(
        self,
        aws_conn_id: str | None = S3Hook.default_conn_name,
        max_pool_connections: int = DEFAULT_POOL_CONNECTIONS,
        **kwargs: Any,
    ) -> None:
        self.max_pool_connections = max_pool_connections
        super().__init__(aws_conn_id=aws_conn_id, **kwargs)

    @property
    def config(self) -> Config:
        """The botocore config of the connection (its ``config_kwargs`` extra included, checksum
        settings and timeouts too) with a pool of at least ``max_pool_connections`` and botocore's
        retries off: the package's ``RetryPolicy`` is the one retry layer. Passing a ``config`` to
        ``S3Hook`` instead would silently replace everything the connection's extra configures."""
        return single_attempt_config(super().config, max_pool_connections=self.max_pool_connections)

    @property
    def max_attempts(self) -> int | None:
        """Attempts per request that the connection's ``config_kwargs.retries`` asks for, if any;
        the operators use it when they are not given ``max_attempts`` themselves."""
        return configured_max_attempts(super().config)

    def retry_policy(self, max_attempts: int | None = None) -> RetryPolicy:
        """The retry policy for this connection's requests: ``max_attempts`` when given, else the
        connection's ``config_kwargs.retries``, else the policy's default (6 attempts)."""
        attempts = max_attempts or self.max_attempts
        return RetryPolicy(max_attempts=attempts) if attempts else RetryPolicy()

    def arrow_s3_settings(self, max_attempts: int | None = None) -> ArrowS3Settings:
        """What ``pyarrow.fs.S3FileSystem`` needs to read as this connection: its (frozen)
        credentials, region and S3 endpoint, and the tries per request of :meth:`retry_policy`.
        ``get_credentials`` masks the secret key and token in task logs; the settings never show them.

        :raises ConfigurationError: the connection id is not defined (:meth:`check_connection`).
        """
        self.check_connection()
        credentials = self.get_credentials()
        return ArrowS3Settings(
            access_key=credentials.access_key,
            secret_key=credentials.secret_key,
            session_token=credentials.token,
            region=self.conn_region_name,
            endpoint_url=self.conn_config.get_service_endpoint_url("s3"),
            max_attempts=self.retry_policy(max_attempts).max_attempts,
            tls_ca_file=self.verify if isinstance(self.verify, str) else None,
        )

    def get_s3_client(self) -> Any:
        """The boto3 S3 client the streaming core takes as its argument.

        Over HTTPS, botocore's own CRC32 of an in-memory body (manifests, reports, resume state)
        goes in a header instead of an ``aws-chunked`` trailer, which stores such as Ceph RGW 16
        refuse (:func:`~airflow_s3stream.s3.client.checksum_in_header`). An untrusted TLS
        certificate, or a store refusing a trailing checksum, raises :class:`ConfigurationError`
        naming this connection and the extra to change, without retries
        (:func:`~airflow_s3stream.s3.client.explain_connection_failures`).

        :raises ConfigurationError: the connection id is not defined (:meth:`check_connection`), or
            the connection's ``verify`` extra is a path that is not a file.
        """
        self.check_connection()
        verify = self.verify
        if isinstance(verify, str) and not os.path.isfile(verify):
            raise ConfigurationError(
                f'{self._describe()}: the extra "verify" is {verify!r}, which is not a file on this worker; '
                "set it to the path of a PEM CA bundle, or to true (the default bundle) or false (no check)"
            )
        client = self.get_conn()
        checksum_in_header(client)
        explain_connection_failures(client, self._describe(), verify)
        return client

    @staticmethod
    def _find_operator_class_name(target_function_name: str) -> str | None:
        """The class of the innermost ``self`` whose ``target_function_name`` is on the stack
        (``S3Hook`` names it as the ``Caller/`` of the user agent).

        ``AwsBaseHook`` finds it with ``inspect.stack()``, which reads a source line for every
        frame of the task's deep stack, for every client built. Walking the frames finds the same
        class without touching a source file.
        """
        frame: FrameType | None = sys._getframe(1)
        while frame is not None:
            if frame.f_code.co_name == target_function_name and "self" in frame.f_locals:
                return type(frame.f_locals["self"]).__name__
            frame = frame.f_back
        return None

    def _describe(self) -> str:
        """``AWS connection 'aws_default'`` (what messages name)."""
        return f"AWS connection {self.aws_conn_id!r}" if self.aws_conn_id else "AWS (no connection id)"

    @classmethod
    def for_source(cls, aws_conn_id: str | None, **kwargs: Any) -> S3StreamHook:
        """The hook of an operator's ``source_aws_conn_id``: a missing connection is named as that."""
        hook = cls(aws_conn_id=aws_conn_id, **kwargs)
        hook.conn_parameter = "source_aws_conn_id"
        return hook

    def check_connection(self) -> None:
        """Fail unless ``aws_conn_id`` is ``None`` or names a defined connection; looks it up once.

        :raises ConfigurationError: ``aws_conn_id 'aws_prod' is not defined`` (the parameter is
            :attr:`conn_parameter`).
        """
        if not self._connection_checked:
            require_connection(self, self.conn_parameter, self.aws_conn_id)
            self._connection_checked = True
