"""The one place where an S3 failure is classified: retryable, permanent, or checksum mismatch.

Every botocore error (and every connection error underneath it) raised by an S3 call of this
package goes through :func:`classify` and nowhere else:

* ``retryable``: throttling (``SlowDown``, 429, 503), other 5xx, resets, timeouts, a body cut
  off mid-way. :class:`~airflow_s3stream.s3.retry.RetryPolicy` retries these, and only these.
* ``checksum``: the bytes the server received do not match the checksum sent with them
  (``BadDigest``, ``InvalidDigest``, ``XAmzContentSHA256Mismatch``, ``InvalidChecksum``), or the
  caller found so in the answer (:class:`CorruptedInTransitError`: a part's ETag is not its MD5).
  Sending the same body again may help, so the one retry loop retries these too, at most
  ``max_attempts`` sends in all.
* ``permanent``: every other answer (4xx). Retrying cannot help. :func:`to_error` turns it into
  the package's exception naming the object, so nothing raw reaches an operator.

Some facts about a permanent failure matter to callers and are flags on :class:`S3Failure`:
``not_found`` (404, ``NoSuchKey``, ``NoSuchUpload``), ``precondition_failed`` (412: an
``If-Match`` lost), ``access_denied`` (401/403 and refused credentials) and
``checksum_headers_refused`` (the 400 that S3-compatible stores without additional checksums
answer to ``x-amz-checksum-*`` headers: boto/boto3#4392).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal, NoReturn

from airflow_s3stream.errors import (
    ChecksumMismatchError,
    DestinationError,
    ObjectChangedError,
    S3StreamError,
    SourceError,
    TransientError,
    UploadError,
)

__all__ = [
    "CorruptedInTransitError",
    "FailureKind",
    "S3Failure",
    "arrow_failure",
    "checksum_problem",
    "classify",
    "error_code",
    "http_status",
    "raise_error",
    "to_error",
]

FailureKind = Literal["retryable", "permanent", "checksum"]

# S3 (and S3-compatible) error codes meaning "try again later", whatever the status.
RETRYABLE_CODES = frozenset(
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
# The bytes received differ from the checksum sent with them.
CHECKSUM_CODES = frozenset({"BadDigest", "InvalidDigest", "XAmzContentSHA256Mismatch", "InvalidChecksum"})
NOT_FOUND_CODES = frozenset({"NoSuchKey", "NoSuchUpload", "NoSuchBucket", "NotFound", "404"})
ACCESS_CODES = frozenset(
    {
        "AccessDenied",
        "AllAccessDisabled",
        "Forbidden",
        "403",
        "InvalidAccessKeyId",
        "SignatureDoesNotMatch",
        "ExpiredToken",
        "InvalidToken",
        "AccountProblem",
    }
)
# How stores without additional checksums refuse x-amz-checksum-* / x-amz-sdk-checksum-algorithm.
HEADER_REFUSAL_CODES = frozenset({"InvalidArgument", "InvalidRequest", "NotImplemented", "BadRequest", "400"})
# Failures without an answer that held a connection until a clock ran out (a retry costs more).
TIMEOUT_CODES = frozenset({"ReadTimeoutError", "ConnectTimeoutError", "TimeoutError", "RequestTimeout"})
CORRUPTED_IN_TRANSIT = "CorruptedInTransit"


class CorruptedInTransitError(Exception):
    """The server answered, but what it stored is not what was sent (its echoed CRC or its ETag
    differs from ours). Raised by the caller that checks the answer, inside the retried call, so
    the one retry loop sends the body again; ``str()`` says what differs."""


@dataclass(frozen=True)
class S3Failure:
    """What went wrong with one S3 call, in the terms callers decide on."""

    kind: FailureKind
    code: str  # the S3 error code, or the exception's type name when there was no answer
    status: int  # the HTTP status, 0 when no answer arrived
    message: str

    @property
    def retryable(self) -> bool:
        return self.kind == "retryable"

    @property
    def worth_retrying(self) -> bool:
        """What the one retry loop retries: a transient failure, or bytes corrupted on the way."""
        return self.kind in ("retryable", "checksum")

    @property
    def timed_out(self) -> bool:
        """A connect or read timeout (or S3's ``RequestTimeout``): a retry takes more of the budget."""
        return self.code in TIMEOUT_CODES

    @property
    def not_found(self) -> bool:
        return self.kind == "permanent" and (self.code in NOT_FOUND_CODES or self.status == 404)

    @property
    def precondition_failed(self) -> bool:
        return self.code == "PreconditionFailed" or self.status == 412

    @property
    def access_denied(self) -> bool:
        return self.kind == "permanent" and (self.code in ACCESS_CODES or self.status in (401, 403))

    @property
    def checksum_headers_refused(self) -> bool:
        """A 400 that names a checksum header: the store has no additional checksums."""
        if self.status != 400 or self.code not in HEADER_REFUSAL_CODES:
            return False
        return "checksum" in self.message.lower()

    def describe(self) -> str:
        """``SlowDown (503): Please reduce your request rate`` or ``ReadTimeoutError: ...``."""
        where = f"{self.code} ({self.status})" if self.status else self.code
        return f"{where}: {self.message}" if self.message and self.message != self.code else where


def checksum_problem(failure: S3Failure) -> str:
    """How an error names a ``checksum`` failure: ``MD5 mismatch (sent ..., server stored ...)``
    found in the answer, or ``server refused the checksum: BadDigest (400): ...``."""
    if failure.code == CORRUPTED_IN_TRANSIT:
        return failure.message
    return f"server refused the checksum: {failure.describe()}"


def error_code(exc: BaseException) -> str:
    """The S3 error code of a botocore ``ClientError`` ('' for anything else)."""
    response = getattr(exc, "response", None)
    if isinstance(response, dict):
        return str(response.get("Error", {}).get("Code", "") or "")
    return ""


def http_status(exc: BaseException) -> int:
    """The HTTP status of a botocore ``ClientError`` (0 when there was no answer)."""
    response = getattr(exc, "response", None)
    if isinstance(response, dict):
        return int(response.get("ResponseMetadata", {}).get("HTTPStatusCode", 0) or 0)
    return 0


def _retryable_without_answer(exc: BaseException) -> bool:
    import urllib3.exceptions
    from botocore.exceptions import (
        ConnectionClosedError,
        ConnectTimeoutError,
        EndpointConnectionError,
        IncompleteReadError,
        ReadTimeoutError,
        ResponseStreamingError,
    )
    from botocore.exceptions import ConnectionError as BotoConnectionError

    transient = (
        BotoConnectionError,
        ConnectionClosedError,
        ConnectTimeoutError,
        EndpointConnectionError,
        IncompleteReadError,
        ReadTimeoutError,
        ResponseStreamingError,
        urllib3.exceptions.HTTPError,
        ConnectionError,  # builtin: ConnectionResetError, BrokenPipeError, ...
        TimeoutError,
    )
    return isinstance(exc, transient)


def classify(exc: BaseException) -> S3Failure:
    """Classify ``exc`` raised by an S3 call. Pure: looks only at the exception."""
    if isinstance(exc, CorruptedInTransitError):
        return S3Failure("checksum", CORRUPTED_IN_TRANSIT, 0, str(exc))
    response = getattr(exc, "response", None)
    if isinstance(response, dict) and "Error" in response:
        code = error_code(exc)
        status = http_status(exc)
        message = str(response.get("Error", {}).get("Message", "") or "")
        if code in CHECKSUM_CODES:
            kind: FailureKind = "checksum"
        elif code in RETRYABLE_CODES or status >= 500 or status == 429:
            kind = "retryable"
        else:
            kind = "permanent"
        return S3Failure(kind, code or str(status), status, message)
    kind = "retryable" if _retryable_without_answer(exc) else "permanent"
    return S3Failure(kind, type(exc).__name__, 0, str(exc))


ARROW_S3_ERROR = "ArrowS3Error"  # pyarrow's S3 layer failed after its own retries
ARROW_UNREADABLE = "ArrowUnreadable"  # pyarrow read the bytes but cannot decode them


def arrow_failure(exc: BaseException) -> S3Failure:
    """Classify an error pyarrow raised while reading S3 (``pyarrow.fs.S3FileSystem``: an ``OSError``
    whose only detail is its text) or decoding what it read. Pure.

    A missing object is ``not_found``, a refused one ``access_denied`` (both ``permanent``); an S3
    or network failure that outlived pyarrow's own retries is ``retryable`` (for Airflow's task
    retry: pyarrow has retried already); anything else is an undecodable file (``permanent``).
    """
    text = " ".join(str(exc).split())
    if isinstance(exc, FileNotFoundError) or "NO_SUCH" in text or "HTTP status 404" in text:
        return S3Failure("permanent", "NoSuchKey", 404, text)
    if "ACCESS_DENIED" in text or "HTTP status 403" in text:
        return S3Failure("permanent", "AccessDenied", 403, text)
    if "AWS Error" in text or "curlCode" in text:
        return S3Failure("retryable", ARROW_S3_ERROR, 0, text)
    return S3Failure("permanent", ARROW_UNREADABLE, 0, text)


def to_error(exc: BaseException, what: str, *, reading: bool = False) -> S3StreamError:
    """The package's exception for ``exc`` raised while doing ``what`` (which names the object).

    Errors of the package pass through unchanged. ``reading`` says the object is a source: a
    missing or forbidden one is then a :class:`SourceError`, a destination's a
    :class:`DestinationError`. A lost ``If-Match`` is :class:`ObjectChangedError`; a checksum
    mismatch :class:`ChecksumMismatchError`; retries exhausted :class:`TransientError`; any other
    refusal :class:`UploadError` (writing) or :class:`SourceError` (reading), with the S3 code.
    """
    if isinstance(exc, S3StreamError):
        return exc
    failure = classify(exc)
    detail = failure.describe()
    if failure.retryable:
        return TransientError(f"{what}: {detail}")
    if failure.kind == "checksum" and failure.code == CORRUPTED_IN_TRANSIT:
        return ChecksumMismatchError(f"{what}: {failure.message}")
    if failure.kind == "checksum":
        return ChecksumMismatchError(f"{what}: the server refused the bytes: {detail}")
    if failure.precondition_failed:
        return ObjectChangedError(f"{what}: the object was replaced meanwhile ({detail})")
    if failure.checksum_headers_refused:
        return DestinationError(
            f"{what}: the store refuses additional checksum headers ({detail}); "
            "use checksum_algorithm='MD5' or 'auto' for this store"
        )
    if reading:
        if failure.not_found:
            missing = {"NoSuchKey": "no such key", "NoSuchBucket": "no such bucket"}.get(failure.code, "does not exist")
            return SourceError(f"{what}: {missing} ({detail})")
        return SourceError(f"{what}: {'access denied' if failure.access_denied else 'refused'} ({detail})")
    if failure.not_found or failure.access_denied:
        return DestinationError(f"{what}: {detail}")
    return UploadError(f"{what}: {detail}")


def raise_error(exc: BaseException, what: str, *, reading: bool = False) -> NoReturn:
    """Raise :func:`to_error` of ``exc``, chained to ``exc``; an error that already is the package's
    is raised as it is, never as its own cause (code that walks ``__cause__`` must end)."""
    error = to_error(exc, what, reading=reading)
    if error is exc:
        raise exc
    raise error from exc
