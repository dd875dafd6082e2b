"""The operator extra link: a button in the task view that opens the object a task wrote or checked.

Where it can open something a browser can actually show, and nowhere else:

* on AWS (no ``endpoint_url``, or an ``*.amazonaws.com`` one): the S3 console, which signs the
  user in (the object, or the key prefix of a multi-file export);
* on a custom endpoint (MinIO, SeaweedFS, Ceph, moto): only when the connection extra gives a
  console URL template, ``{"s3stream_console_url": "http://seaweed:8888/buckets/{bucket}/{key}"}``
  (``{bucket}`` and ``{key}`` are filled in, the key path-quoted; a prefix ends in ``/``).
  Without one there is no link: a plain object URL on the endpoint answers 403 to a browser,
  which carries no S3 credentials;
* never a presigned URL: that would put a credential in the UI. A template with a query string
  (``?``) is refused for the same reason.

Airflow 3 computes the link on the worker right after the task ends and stores it in XCom, so the
rendered ``s3_bucket``/``s3_key`` of the operator and its connection are at hand. In Airflow
3.3's UI it is a button under the task instance's Details tab, "Extra Links".
"""

from __future__ import annotations

import urllib.parse
from typing import Any

from airflow.sdk import BaseOperatorLink

__all__ = ["CONSOLE_URL_EXTRA", "S3ObjectLink", "s3_object_url"]

AWS_CONSOLE = "https://console.aws.amazon.com/s3"  # redirects to the right partition's console
AWS_ENDPOINT_SUFFIXES = (".amazonaws.com", ".amazonaws.com.cn")  # public AWS S3 endpoints
CONSOLE_URL_EXTRA = "s3stream_console_url"  # connection extra: the console URL template of a custom endpoint


def s3_object_url(
    bucket: str,
    key: str,
    endpoint_url: str | None = None,
    *,
    region: str | None = None,
    prefix: bool = False,
    console_url: str | None = None,
) -> str:
    """The URL that shows ``s3://bucket/key`` in a browser, or ``""`` when there is none.

    :param endpoint_url: the connection's ``endpoint_url``; ``None`` or an ``*.amazonaws.com``
        host means AWS itself (the S3 console).
    :param prefix: ``key`` names a prefix (several files), so the console lists it instead.
    :param console_url: for a custom endpoint, the template from the connection extra
        ``s3stream_console_url`` with ``{bucket}`` and ``{key}``; without one (or with a query
        string in it) a custom endpoint gets no link.
    """
    host = (urllib.parse.urlsplit(endpoint_url).hostname or "") if endpoint_url else ""
    key = key.lstrip("/")
    if not endpoint_url or host.endswith(AWS_ENDPOINT_SUFFIXES):
        query = {"prefix": key} if prefix else {"prefix": key, "bucketType": "general"}
        if region:
            query = {"region": region, **query}
        view = "buckets" if prefix else "object"
        return f"{AWS_CONSOLE}/{view}/{urllib.parse.quote(bucket)}?{urllib.parse.urlencode(query)}"
    if not console_url or "?" in console_url:
        return ""
    if prefix and not key.endswith("/"):
        key += "/"
    try:
        return console_url.format(bucket=urllib.parse.quote(bucket), key=urllib.parse.quote(key))
    except (KeyError, IndexError, ValueError):  # a template with other fields: no link rather than a wrong one
        return ""


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
        console_url = config.extra_dejson.get(CONSOLE_URL_EXTRA)
        return s3_object_url(
            str(bucket),
            str(key),
            endpoint_url=config.endpoint_url,
            region=config.region_name,
            prefix=bool(getattr(operator, "s3_link_is_prefix", False)),
            console_url=str(console_url) if console_url else None,
        )
