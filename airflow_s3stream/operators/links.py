"""The operator extra link: a button in the task view that opens the object a task wrote or checked.

On AWS the link opens the S3 console (the object, or the key prefix of a multi-file export). With a
custom endpoint (``endpoint_url`` in the connection extra: MinIO, SeaweedFS, Ceph, moto) it is the
path-style URL of the object on that endpoint. Airflow 3 computes the link on the worker right
after the task ends and stores it in XCom, so the rendered ``s3_bucket``/``s3_key`` of the operator
and its connection are at hand.
"""

from __future__ import annotations

import urllib.parse
from typing import Any

from airflow.sdk import BaseOperatorLink

__all__ = ["S3ObjectLink", "s3_object_url"]

AWS_CONSOLE = "https://console.aws.amazon.com/s3"  # redirects to the right partition's console
AWS_ENDPOINT_SUFFIXES = (".amazonaws.com", ".amazonaws.com.cn")  # public AWS S3 endpoints


def s3_object_url(
    bucket: str, key: str, endpoint_url: str | None = None, region: str | None = None, prefix: bool = False
) -> str:
    """The URL that shows ``s3://bucket/key``: the AWS console, or the object on a custom endpoint.

    :param endpoint_url: the connection's ``endpoint_url``; ``None`` or an ``*.amazonaws.com``
        host means AWS itself.
    :param prefix: ``key`` names a prefix (several files), so the console lists it instead.
    """
    host = (urllib.parse.urlsplit(endpoint_url).hostname or "") if endpoint_url else ""
    key = key.lstrip("/")
    if not endpoint_url or host.endswith(AWS_ENDPOINT_SUFFIXES):
        query = {"prefix": key} if prefix else {"prefix": key, "bucketType": "general"}
        if region:
            query = {"region": region, **query}
        view = "buckets" if prefix else "object"
        return f"{AWS_CONSOLE}/{view}/{urllib.parse.quote(bucket)}?{urllib.parse.urlencode(query)}"
    base = endpoint_url.rstrip("/")
    if prefix:
        return f"{base}/{urllib.parse.quote(bucket)}?{urllib.parse.urlencode({'prefix': key})}"
    return f"{base}/{urllib.parse.quote(bucket)}/{urllib.parse.quote(key)}"


class S3ObjectLink(BaseOperatorLink):
    """ "S3 object": opens ``operator.s3_bucket``/``operator.s3_key`` via ``operator.aws_conn_id``.

    An operator whose ``s3_key`` is a prefix of several files (a split export) sets the class
    attribute ``s3_link_is_prefix = True``.
    """

    name = "S3 object"

    def get_link(self, operator: Any, *, ti_key: Any) -> str:
        bucket = getattr(operator, "s3_bucket", None)
        key = getattr(operator, "s3_key", None)
        if not bucket or not key:
            return ""
        from airflow.providers.amazon.aws.hooks.s3 import S3Hook

        config = S3Hook(aws_conn_id=getattr(operator, "aws_conn_id", S3Hook.default_conn_name)).conn_config
        return s3_object_url(
            str(bucket),
            str(key),
            endpoint_url=config.endpoint_url,
            region=config.region_name,
            prefix=bool(getattr(operator, "s3_link_is_prefix", False)),
        )
