"""How the package's errors leave an operator: named, and either failed for good or retried.

Every operator runs its work inside :func:`named_failures`, so the rule is the same for all:

* retrying cannot help (:class:`~airflow_s3stream.errors.InvalidInputError`: bad SQL, a missing
  source, a corrupt archive; :class:`~airflow_s3stream.errors.UploadError`: S3 refused a write
  for good) -> ``AirflowFailException``, which Airflow does not retry;
* a remote failure that outlived the package's own retries
  (:class:`~airflow_s3stream.errors.TransientError`, ``ExportConnectionError`` included) -> the
  same class, which Airflow retries;
* a raw botocore error that escaped the S3 layer is first classified there
  (:func:`airflow_s3stream.s3.classify.to_error`), then treated as above.

Each message names ``where`` (the ``s3://`` object the task works on) unless it already does.

The error leaves the operator standing alone (:func:`standing_alone`): its message already says
what the causes said (the classified S3 error carries botocore's code and message), so Airflow's
task log shows the verdict once, first, without the chained tracebacks that repeated it. The
whole chain is still logged at DEBUG level and kept on the error as ``s3stream_cause``.
"""

from __future__ import annotations

import contextlib
import logging
from collections.abc import Iterator
from typing import TypeVar

from airflow.sdk.exceptions import AirflowFailException

from airflow_s3stream.errors import InvalidInputError, S3StreamError, UploadError

__all__ = ["named_failures", "standing_alone"]

_log = logging.getLogger(__name__)
E = TypeVar("E", bound=BaseException)


def standing_alone(error: E, cause: BaseException | None = None) -> E:
    """``error`` with no chained cause or context to print (as ``raise error from None``); returned
    for ``raise``.

    ``cause`` (or the cause ``error`` had) is kept as ``error.s3stream_cause`` for code that wants
    it, and its traceback logged at DEBUG level, so a task log's verdict is one line unless asked.
    """
    cause = cause if cause is not None and cause is not error else error.__cause__ or error.__context__
    if cause is not None:
        _log.debug("the chain behind %r", str(error), exc_info=(type(cause), cause, cause.__traceback__))
        error.s3stream_cause = cause  # type: ignore[attr-defined]
    error.__cause__ = None
    error.__suppress_context__ = True
    return error


@contextlib.contextmanager
def named_failures(where: str, *, reading: bool = False) -> Iterator[None]:
    """Translate what the block raises per the module docstring.

    :param where: the object the task works on, e.g. ``s3://bucket/key``; prefixed to messages
        that do not name it yet.
    :param reading: the object is a source (a missing one is then a ``SourceError``).
    """
    from botocore.exceptions import BotoCoreError, ClientError

    try:
        yield
    except (BotoCoreError, ClientError) as exc:
        from airflow_s3stream.s3.classify import to_error

        raise standing_alone(_for_airflow(to_error(exc, where, reading=reading), where), exc) from None
    except S3StreamError as exc:
        error = _for_airflow(exc, where)
        raise standing_alone(error, exc) from None


def _for_airflow(exc: S3StreamError, where: str) -> Exception:
    """``exc`` as it should leave the operator: ``AirflowFailException`` or the same retryable class."""
    text = str(exc)
    message = text if where in text else f"{where}: {text}"
    if isinstance(exc, (InvalidInputError, UploadError)):
        return AirflowFailException(message)
    if message == text:
        return exc
    return type(exc)(message)
