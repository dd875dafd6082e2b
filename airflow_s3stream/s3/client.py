"""How the package's boto3 S3 clients are configured: one retry layer, a pool sized for parallel work.

botocore retries on its own (legacy mode: 5 sends, standard: 3) and the package's
:class:`~airflow_s3stream.s3.retry.RetryPolicy` retries too; stacked, one logical request under a
503 storm was sent 30 times, non-idempotent CreateMultipartUpload and CompleteMultipartUpload
included (``benchmarks/bench_retry_sends.py`` counts it). So the package's clients make exactly
one attempt per call and the policy is the only retry layer: it knows which calls are safe to
repeat, follows a lost CompleteMultipartUpload with a HeadObject instead, and names the object
when it gives up.

The clients the hook builds also get two botocore event handlers for TLS endpoints (Ceph RGW 16 and
others): :func:`checksum_in_header` and :func:`explain_connection_failures`.
"""

from __future__ import annotations

import contextlib
import functools
import io
import logging
import ssl
import urllib.parse
from typing import TYPE_CHECKING, Any

from botocore.config import Config

from airflow_s3stream.errors import ConfigurationError

if TYPE_CHECKING:
    from mypy_boto3_s3.client import S3Client

__all__ = [
    "DEFAULT_POOL_CONNECTIONS",
    "checksum_in_header",
    "configured_max_attempts",
    "explain_connection_failures",
    "single_attempt_config",
    "warn_if_retrying",
]

log = logging.getLogger("airflow_s3stream.s3")

DEFAULT_POOL_CONNECTIONS = 16  # HTTP connections per client; botocore's default is 10

_HEADER_CHECKSUM_ID = "airflow_s3stream.checksum_in_header"
_CERTIFICATE_ID = "airflow_s3stream.untrusted_certificate"
_TRAILER_ID = "airflow_s3stream.refused_trailer"


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


def warn_if_retrying(client: object) -> None:
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
        setattr(client, "_s3stream_checked", True)  # noqa: B010 - a marker the stubs do not declare


def checksum_in_header(client: S3Client) -> None:
    """Have ``client`` send botocore's own checksum of an in-memory body in a header, not a trailer.

    Over HTTPS botocore (``request_checksum_calculation="when_supported"``, its default) sends the
    CRC32 it adds to PutObject and UploadPart as a *trailer*: an ``aws-chunked`` body with
    ``x-amz-trailer`` and no ``Content-Length``. Stores such as Ceph RGW 16 answer that with 411
    ``MissingContentLength``. For a body in memory (``bytes`` or ``io.BytesIO``: the package's
    manifests, reports and resume state) this puts the same CRC32 in an ``x-amz-checksum-crc32``
    header, as botocore itself does over plain HTTP: the checksum is still computed, sent and
    checked where the store checks it; only its place in the request changes. Streamed bodies are
    left alone (the package sends its parts with their own checksum, so botocore adds none to
    them). Idempotent per client.
    """
    client.meta.events.register("before-call.s3", _trailer_to_header, unique_id=_HEADER_CHECKSUM_ID)


def _trailer_to_header(params: dict[str, Any], **_: Any) -> None:
    """``before-call.s3``: runs after ``resolve_checksum_context`` and before ``apply_request_checksum``
    (``botocore/client.py: _make_api_call``), so the resolved location can still be changed."""
    algorithm = params.get("context", {}).get("checksum", {}).get("request_algorithm")
    # botocore has already wrapped a bytes Body in a BytesIO (convert_body_to_file_like_object)
    in_memory = isinstance(params.get("body"), (bytes, bytearray, io.BytesIO))
    if in_memory and isinstance(algorithm, dict) and algorithm.get("in") == "trailer":
        algorithm["in"] = "header"


def explain_connection_failures(client: S3Client, connection: str, verify: bool | str | None) -> None:
    """Turn two failures caused by a connection's settings into a :class:`ConfigurationError` that
    names ``connection`` (``"AWS connection 'aws_default'"``) and the setting to change:

    * the endpoint's TLS certificate is not trusted (``verify`` names no usable CA bundle, or the
      wrong one): retrying cannot help, so nothing is retried;
    * the store answers 411 ``MissingContentLength`` to a body botocore streamed with a trailing
      checksum (a request shape the package itself does not send: :func:`checksum_in_header`).

    Everything else raises as before. Idempotent per client.
    """
    endpoint = _origin(str(client.meta.endpoint_url or ""))
    client.meta.events.register(
        "after-call-error.s3",
        functools.partial(_untrusted_certificate, f"{connection} ({endpoint})", verify),
        unique_id=_CERTIFICATE_ID,
    )
    client.meta.events.register(
        "after-call.s3", functools.partial(_refused_trailer, f"{connection} ({endpoint})"), unique_id=_TRAILER_ID
    )


def _untrusted_certificate(connection: str, verify: bool | str | None, exception: BaseException, **_: Any) -> None:
    """``after-call-error.s3``: a TLS handshake that failed on the certificate or the CA bundle."""
    from botocore.exceptions import SSLError

    if not isinstance(exception, SSLError):
        return
    cause = _find(exception, (ssl.SSLCertVerificationError, FileNotFoundError, IsADirectoryError, PermissionError))
    if cause is None:
        return  # a handshake cut short, for instance: a retry may help
    now = f"now {verify!r}" if isinstance(verify, str) else "now not set: the default CA bundle"
    if isinstance(cause, ssl.SSLCertVerificationError):
        problem = f"the store's TLS certificate is not trusted ({cause.verify_message or cause})"
    else:
        problem = f"the CA bundle cannot be read ({cause})"
    raise ConfigurationError(
        f'{connection}: {problem}; set the connection extra "verify" to the path of the PEM CA bundle '
        f"that issued the store's certificate ({now})"
    ) from exception


def _refused_trailer(
    connection: str, http_response: Any, parsed: dict[str, Any], context: dict[str, Any], **kw: Any
) -> None:
    """``after-call.s3``: 411 ``MissingContentLength`` to a request whose checksum was a trailer."""
    if getattr(http_response, "status_code", 0) != 411:
        return
    if parsed.get("Error", {}).get("Code") != "MissingContentLength":
        return
    algorithm = context.get("checksum", {}).get("request_algorithm")
    if not (isinstance(algorithm, dict) and algorithm.get("in") == "trailer"):
        return
    operation = getattr(kw.get("model"), "name", "the request")
    raise ConfigurationError(
        f"{connection}: the store refused {operation} with a streamed body and a trailing checksum "
        '(411 MissingContentLength); set "config_kwargs": {"request_checksum_calculation": '
        '"when_required"} in the connection extra, or send the request\'s own checksum'
    )


def _find(exc: BaseException, types: tuple[type[BaseException], ...]) -> BaseException | None:
    """The first exception of ``types`` in ``exc``'s chain: causes, contexts and wrapped errors."""
    seen: set[int] = set()
    todo: list[Any] = [exc]
    while todo:
        current = todo.pop()
        if not isinstance(current, BaseException) or id(current) in seen:
            continue
        seen.add(id(current))
        if isinstance(current, types):
            return current
        wrapped = getattr(current, "kwargs", None)
        todo += [current.__cause__, current.__context__, *current.args]
        if isinstance(wrapped, dict):
            todo.append(wrapped.get("error"))
    return None


def _origin(url: str) -> str:
    """``https://host:port`` of an endpoint URL (``the default endpoint`` for '': AWS's own)."""
    parts = urllib.parse.urlsplit(url)
    return f"{parts.scheme}://{parts.netloc}" if parts.netloc else (url or "the default endpoint")
