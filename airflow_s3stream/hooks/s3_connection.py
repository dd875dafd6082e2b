"""One task's S3 connection: the hook, its client and its retry policy, built once from the task's resources.

An operator opens it in ``execute`` (inside its ``named_failures`` block, so a connection that
fails is named) with the :class:`~airflow_s3stream.resources.TaskResources` it built at parse
time: the client's pool follows the one pool rule and the retry policy is the task's
``max_attempts``, else the connection's ``config_kwargs.retries``, else the default.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

from airflow_s3stream.hooks.s3 import S3StreamHook
from airflow_s3stream.resources import TaskResources
from airflow_s3stream.s3.retry import RetryPolicy

if TYPE_CHECKING:
    from mypy_boto3_s3.client import S3Client

__all__ = ["S3Connection"]


@dataclass(frozen=True)
class S3Connection:
    """The hook, client and retry policy a task uses for one Airflow ``aws`` connection.

    :param hook: the connection's hook (pyarrow settings, listing helpers).
    :param client: its boto3 client, with the task's connection pool and botocore's retries off.
    :param retry: the task's retry policy for this connection's requests.
    """

    hook: S3StreamHook
    client: S3Client
    retry: RetryPolicy

    @classmethod
    def open(cls, aws_conn_id: str | None, resources: TaskResources, *, source: bool = False) -> S3Connection:
        """Connect as ``aws_conn_id`` with the pool and retries of ``resources``.

        :param source: the connection only reads the task's sources (``source_aws_conn_id``): its
            pool is ``resources.source_pool_connections``.
        :raises ConfigurationError: the connection's settings cannot work (see
            :meth:`~airflow_s3stream.hooks.s3.S3StreamHook.get_s3_client`).
        """
        pool = resources.source_pool_connections if source else resources.pool_connections
        if source:
            hook = S3StreamHook.for_source(aws_conn_id, max_pool_connections=pool)
        else:
            hook = S3StreamHook(aws_conn_id=aws_conn_id, max_pool_connections=pool)
        client = hook.get_s3_client()
        return cls(hook=hook, client=client, retry=hook.retry_policy(resources.max_attempts))
