"""Stores that refuse additional checksum headers: which endpoints do, and requests sent without them.

Backblaze B2 and some MinIO, Ceph RGW and OBS versions answer 400 ``InvalidArgument`` ("Unsupported
header 'x-amz-checksum-crc32c' received for this API call") to any ``x-amz-checksum-*`` or
``x-amz-sdk-checksum-algorithm`` header (boto/boto3#4392, boto/botocore#3352). The connection
setting ``request_checksum_calculation=when_required`` does not avoid them all: botocore 1.44
still adds a CRC32 to every DeleteObjects (a checksum-required operation), and with the default
``when_supported`` it adds one to each PutObject and UploadPart even when ``Content-MD5`` is given
(``botocore/httpchecksum.py: resolve_request_checksum_algorithm`` only skips on an
``x-amz-checksum-*`` header).

* :func:`without_checksum_headers` makes the calls inside it carry no additional checksum that
  botocore would add: a ``before-call.s3`` handler (registered once per client) drops botocore's
  flexible checksum before it is applied, and gives a checksum-required request with a bytes body
  (DeleteObjects) a ``Content-MD5`` instead. Only calls made inside the block, in that thread, are
  affected; the connection's settings stay as they are for everything else.
* :func:`endpoint_of`: the endpoint URL a client sends to. Which endpoints refuse the headers (and
  which check or ignore them) is remembered per process in one place,
  :mod:`airflow_s3stream.s3.store_checks` (``remember_refusal``, ``refuses_checksum_headers``),
  so a split export of 50 files is refused once, not 50 times.
"""

from __future__ import annotations

import base64
import contextlib
import contextvars
import hashlib
import threading
from collections.abc import Iterator
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from mypy_boto3_s3.client import S3Client

__all__ = ["content_md5", "content_md5_of_hex", "endpoint_of", "without_checksum_headers"]

_HANDLER_ID = "airflow_s3stream.without_checksum_headers"
_ACTIVE: contextvars.ContextVar[bool] = contextvars.ContextVar("s3stream_without_checksum_headers", default=False)
_LOCK = threading.Lock()


def content_md5_of_hex(md5_hex: str) -> str:
    """The ``Content-MD5`` header value (base64 of the 16 digest bytes) for an MD5 given in hex."""
    return base64.b64encode(bytes.fromhex(md5_hex)).decode("ascii")


def content_md5(body: bytes | bytearray | memoryview) -> str:
    """The ``Content-MD5`` header value of ``body``."""
    return content_md5_of_hex(hashlib.md5(body, usedforsecurity=False).hexdigest())


def endpoint_of(client: S3Client) -> str:
    """The endpoint URL a boto3 client sends to (what :mod:`~airflow_s3stream.s3.store_checks` is keyed by)."""
    return str(getattr(getattr(client, "meta", None), "endpoint_url", "") or "")


@contextlib.contextmanager
def without_checksum_headers(client: S3Client) -> Iterator[None]:
    """Calls on ``client`` inside this block (in this thread) get no checksum botocore would add.

    The caller sends its own ``ContentMD5`` where the operation takes one (PutObject, UploadPart);
    a checksum-required operation whose body is bytes (DeleteObjects) gets a ``Content-MD5``
    computed here. Response checksum validation (``response_checksum_validation``) is untouched.
    """
    _register(client)
    token = _ACTIVE.set(True)
    try:
        yield
    finally:
        _ACTIVE.reset(token)


def _register(client: S3Client) -> None:
    """Register the handler once per client (the unique id keeps botocore from adding it twice)."""
    if getattr(client, "_s3stream_checksum_handler", False):
        return
    with _LOCK:
        client.meta.events.register_last("before-call.s3", _drop_flexible_checksum, unique_id=_HANDLER_ID)
        with contextlib.suppress(AttributeError):  # a client refusing attributes registers (idempotently) each time
            setattr(client, "_s3stream_checksum_handler", True)  # noqa: B010 - a marker the stubs do not declare


def _drop_flexible_checksum(params: dict[str, Any], model: Any, **_: Any) -> None:
    """``before-call.s3`` handler: runs after ``resolve_checksum_context`` and before
    ``apply_request_checksum`` (``botocore/client.py: _make_api_call``), so removing the resolved
    ``request_algorithm`` means no ``x-amz-checksum-*``, ``x-amz-sdk-checksum-algorithm`` or
    ``x-amz-trailer`` header is added."""
    if not _ACTIVE.get():
        return
    checksum = params.get("context", {}).get("checksum")
    if not checksum or "request_algorithm" not in checksum:
        return
    headers = params["headers"]
    required = model.http_checksum_required or model.http_checksum.get("requestChecksumRequired")
    if required and not any(name.lower() == "content-md5" for name in headers):
        body = params.get("body")
        if not isinstance(body, (bytes, bytearray)):
            return  # cannot replace the required checksum here: leave botocore's
        headers["Content-MD5"] = content_md5(body)
    checksum.pop("request_algorithm", None)
    checksum.pop("request_algorithm_header", None)
